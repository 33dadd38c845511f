//! The Helm chart (deploy/helm/kamaji-rs): lint and template clean, its CRDs
//! the generated ones, a hardened Deployment carrying every manager flag, an
//! install into the local cluster whose pods become Ready (kwok), the
//! PrometheusRule accepted by the API server and parsed by promtool, and a
//! dashboard that is valid JSON.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use serde_json::Value;

use crate::support::{TestNamespace, built, client, cluster, eventually, kubectl, kubectl_ok, on_path};

/// The chart's directory.
pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/kamaji-rs")
}

/// Every optional part switched on.
pub const EVERYTHING: &[&str] = &[
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "grafanaDashboard.enabled=true",
    "--set",
    "podDisruptionBudget.enabled=true",
];

/// Runs the local cluster's helm against its kubeconfig.
pub fn helm(args: &[&str]) -> Output {
    let helm = built("helm");
    Command::new(&helm)
        .arg("--kubeconfig")
        .arg(&cluster().kubeconfig)
        .args(args)
        // Keep helm's caches and repositories out of the user's home.
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("kamaji-rs-helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("kamaji-rs-helm/config"),
        )
        .env("HELM_DATA_HOME", std::env::temp_dir().join("kamaji-rs-helm/data"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", helm.display()))
}

/// helm that must succeed; returns stdout.
pub fn helm_ok(args: &[&str]) -> String {
    let output = helm(args);
    assert!(
        output.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `helm template <release> <chart> -n <namespace> <args>`, as one JSON value per object.
pub fn render(release: &str, namespace: &str, args: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut all = vec![
        "template",
        release,
        chart.to_str().expect("UTF-8 path"),
        "--namespace",
        namespace,
    ];
    all.extend_from_slice(args);
    let yaml = helm_ok(&all);
    serde_saphyr::from_multiple::<Value>(&yaml)
        .unwrap_or_else(|e| panic!("helm template printed invalid YAML: {e}\n{yaml}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The rendered object of `kind` (the only one, or the one named `name`).
pub fn object<'a>(objects: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"] == n))
        .unwrap_or_else(|| panic!("no {kind} {name:?} rendered"))
}

/// Metric names a PromQL text refers to (kamaji_* and process_*).
pub fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (promql[i..].starts_with("kamaji_") || promql[i..].starts_with("process_")) {
            let end = promql[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(promql.len(), |n| i + n);
            names.insert(promql[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// Every `expr` of a rendered PrometheusRule.
pub fn rule_expressions(rule: &Value) -> Vec<String> {
    rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["expr"].as_str().map(str::to_string))
        .collect()
}

/// Every query of the dashboard: panel targets and template variables.
pub fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    fn walk(value: &Value, queries: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "definition", Value::String(q)) => queries.push(q.clone()),
                        _ => walk(value, queries),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, queries)),
            _ => {}
        }
    }
    walk(dashboard, &mut queries);
    queries
}

/// The dashboard JSON from the rendered ConfigMap.
pub fn dashboard(objects: &[Value]) -> Value {
    let config_map = objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-dashboard"))
        })
        .expect("the dashboard ConfigMap is rendered");
    let json = config_map["data"]["kamaji-rs-certificates.json"]
        .as_str()
        .expect("the dashboard key");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("the dashboard is not valid JSON: {e}"))
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated = std::fs::read_to_string(root.join("crds/kamaji.clastix.io.yaml")).expect("crds/");
    let charted = std::fs::read_to_string(chart().join("crds/kamaji.clastix.io.yaml")).expect("chart crds/");
    assert!(
        generated == charted,
        "deploy/helm/kamaji-rs/crds/kamaji.clastix.io.yaml differs from crds/kamaji.clastix.io.yaml: run `make crds`"
    );
}

#[test]
fn helm_lint_and_template_are_clean() {
    let chart = chart();
    let chart = chart.to_str().expect("UTF-8 path");
    for values in [&[][..], EVERYTHING] {
        let mut args = vec!["lint", "--strict", chart];
        args.extend_from_slice(values);
        let out = helm_ok(&args);
        assert!(out.contains("0 chart(s) failed"), "{out}");
        assert!(!out.contains("[WARNING]") && !out.contains("[ERROR]"), "{out}");
    }
    // The schema refuses what the manager would refuse.
    for bad in [
        "manager.keyAlgorithm=DSA",
        "manager.certificateExpirationDeadline=soon",
        "leaderElection.leaseDuration=1.5s",
        "manager.logFormat=xml",
        "unknownValue=1",
    ] {
        let output = helm(&["lint", chart, "--set", bad]);
        assert!(!output.status.success(), "values.schema.json accepted {bad}");
    }

    let objects = render("kamaji-rs", "kamaji-system", EVERYTHING);
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    let expected: BTreeSet<&str> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    .into();
    assert_eq!(kinds, expected);

    // The Deployment: hardened, resourced, probed, in its namespace.
    let deployment = object(&objects, "Deployment", None);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?,
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?,
            ))
        })
        .collect();
    assert!(env.contains(&("POD_NAMESPACE", "metadata.namespace")), "{env:?}");
    assert_eq!(pod["serviceAccountName"], "kamaji-rs");

    // Every flag the chart passes is one `kamaji manager` knows, and every flag
    // of `kamaji manager` can be set from the values.
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "manager");
    let passed: BTreeSet<&str> = args[1..]
        .iter()
        .map(|a| a.split('=').next().unwrap_or(a))
        .collect();
    let help = Command::new(env!("CARGO_BIN_EXE_kamaji"))
        .args(["manager", "--help"])
        .output()
        .expect("kamaji manager --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let known: BTreeSet<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split(['[', '=', '<']).next().unwrap_or(w))
        .filter(|w| *w != "--help")
        .collect();
    for flag in &passed {
        assert!(
            known.contains(flag),
            "the chart passes {flag}, unknown to kamaji manager"
        );
    }
    let with_optional = render(
        "kamaji-rs",
        "kamaji-system",
        &[
            "--set",
            "manager.datastore=default",
            "--set",
            "manager.watchNamespace=tenants",
            "--set",
            "manager.serviceAccountKeyGracePeriod=1h",
        ],
    );
    let optional_args = object(&with_optional, "Deployment", None)["spec"]["template"]["spec"]["containers"]
        [0]["args"]
        .to_string();
    // Set from the environment (POD_NAMESPACE, KUBECONFIG, POD_NAME), not from values.
    let from_environment = [
        "--leader-election-namespace",
        "--kubeconfig",
        "--leader-election-identity",
    ];
    // Kamaji's manager flags are accepted for a Kamaji Deployment; this chart does not pass them.
    let kamaji_only = kamaji::runtime::kamaji_flags::KamajiFlags::FLAGS;
    for flag in known
        .iter()
        .filter(|f| !from_environment.contains(f) && !kamaji_only.contains(f))
    {
        assert!(
            passed.contains(flag) || optional_args.contains(&format!("{flag}=")),
            "kamaji manager {flag} has no value in the chart"
        );
    }

    // Metrics Service, ServiceMonitor (honorLabels keeps the tenant's namespace label).
    let service = object(&objects, "Service", Some("kamaji-rs-metrics"));
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    let monitor = object(&objects, "ServiceMonitor", None);
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);

    // The dashboard parses and has panels.
    let dashboard = dashboard(&objects);
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
    assert_eq!(dashboard["uid"], "kamaji-rs-certificates");
}

#[test]
fn prometheus_rules_parse_with_promtool() {
    let objects = render("kamaji-rs", "kamaji-system", EVERYTHING);
    let rule = object(&objects, "PrometheusRule", None);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, serde_json::to_string_pretty(&rule["spec"]).expect("JSON"))
        .expect("writing the rules");
    let promtool = on_path("promtool", "prometheus");
    let output = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool check rules:\n{report}");
    assert!(report.contains("SUCCESS: 7 rules found"), "{report}");
    // The operator's own selector was substituted.
    let operator_alerts = rule_expressions(rule).join("\n");
    assert!(operator_alerts.contains(r#"kamaji_leader{job="kamaji-rs-metrics",namespace="kamaji-system"}"#));
    assert!(!operator_alerts.contains("__OPERATOR__"));
}

/// A release of the chart in a test namespace; uninstalled on drop (its
/// ClusterRole and ClusterRoleBinding outlive the namespace otherwise).
pub struct Release {
    /// Release name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
}

impl Release {
    /// `helm install` with `args`, CRDs skipped (the tests install them), waiting
    /// for the Deployment to be ready.
    pub fn install(namespace: &str, args: &[&str]) -> Self {
        let name = format!("kamaji-rs-{namespace}");
        let chart = chart();
        let mut all = vec![
            "install",
            &name,
            chart.to_str().expect("UTF-8 path"),
            "--namespace",
            namespace,
            "--skip-crds",
            "--wait",
            "--timeout",
            "120s",
        ];
        all.extend_from_slice(args);
        let release = Self {
            name: name.clone(),
            namespace: namespace.to_string(),
        };
        helm_ok(&all);
        release
    }

    /// The chart's full name for this release (ServiceAccount, ClusterRole, Deployment).
    pub fn fullname(&self) -> String {
        // The release name holds "kamaji-rs", so the chart name is not appended.
        self.name.clone()
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        // Helm 4 does not wait for the deletion unless asked to (--wait).
        let _ = helm(&["uninstall", &self.name, "--namespace", &self.namespace]);
    }
}

/// Applies the minimal prometheus-operator CRDs of tests/fixtures and waits for them.
pub fn install_monitoring_crds() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/monitoring.coreos.com.yaml");
    kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=kamaji-rs-tests",
        "-f",
        fixture.to_str().expect("UTF-8 path"),
    ]);
    kubectl_ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/prometheusrules.monitoring.coreos.com",
        "crd/servicemonitors.monitoring.coreos.com",
    ]);
}

#[tokio::test]
async fn helm_install_succeeds_and_the_operator_pods_become_ready() {
    let client = client().await;
    crate::support::install_crds(&client).await;
    install_monitoring_crds();
    let ns = TestNamespace::create(&client, "helm").await;
    let mut args = EVERYTHING.to_vec();
    args.extend(["--set", "replicaCount=2"]);
    let release = Release::install(&ns.name, &args);

    // kwok plays the kubelet: the pods are scheduled, run and report Ready.
    let deployment = release.fullname();
    eventually("2 ready replicas", Duration::from_secs(90), || async {
        let out = kubectl(&[
            "get",
            "deployment",
            &deployment,
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]);
        (String::from_utf8_lossy(&out.stdout).trim() == "2").then_some(())
    })
    .await;
    let listed = kubectl_ok(&[
        "get",
        "serviceaccount,service,role,rolebinding,prometheusrule,servicemonitor,configmap,poddisruptionbudget",
        "-n",
        &ns.name,
        "-l",
        &format!("app.kubernetes.io/instance={}", release.name),
        "-o",
        "name",
    ]);
    for expected in [
        format!("serviceaccount/{deployment}"),
        format!("service/{deployment}-metrics"),
        format!("role.rbac.authorization.k8s.io/{deployment}-leader-election"),
        format!("rolebinding.rbac.authorization.k8s.io/{deployment}-leader-election"),
        format!("prometheusrule.monitoring.coreos.com/{deployment}"),
        format!("servicemonitor.monitoring.coreos.com/{deployment}"),
        format!("configmap/{deployment}-dashboard"),
        format!("poddisruptionbudget.policy/{deployment}"),
    ] {
        assert!(
            listed.lines().any(|l| l == expected),
            "{expected} not installed:\n{listed}"
        );
    }
    kubectl_ok(&["get", "clusterrole", &deployment]);
    kubectl_ok(&["get", "clusterrolebinding", &deployment]);
    // The PrometheusRule as stored is the rendered one (the API server kept every rule).
    let stored = kubectl_ok(&["get", "prometheusrule", &deployment, "-n", &ns.name, "-o", "json"]);
    let stored: Value = serde_json::from_str(&stored).expect("JSON");
    assert_eq!(rule_expressions(&stored).len(), 7);
    drop(release);
}
