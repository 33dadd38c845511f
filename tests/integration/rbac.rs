//! The chart's RBAC: its ClusterRole and leader-election Role grant exactly the
//! API calls of `kamaji::runtime::rbac::API_ACCESS` (nothing the code does not
//! use), and that is enough: provisioning, rotation and CA rotation pass with the
//! operator running as the chart's ServiceAccount (a token from the TokenRequest
//! API), without a single forbidden call. The same operator's /metrics then
//! exports every metric the chart's dashboard and alerts query.

use std::{collections::BTreeSet, path::Path, time::Duration};

use kamaji::runtime::rbac::{API_ACCESS, Scope};
use serde_json::Value;

use super::{
    helm::{
        EVERYTHING, Release, dashboard, dashboard_queries, metric_names, object, render, rule_expressions,
    },
    leader::Replica,
};
use crate::support::{
    TestNamespace, client, etcd_datastore, eventually, install_crds, kubectl, kubectl_apply, kubectl_ok,
    kubectl_with,
};

/// (group, resource, verb) triples granted by a rendered Role or ClusterRole.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {key}: {rule}"))
                .iter()
                .map(|v| v.as_str().expect("a string").to_string())
                .collect()
        };
        assert!(
            rule.get("nonResourceURLs").is_none() && rule.get("resourceNames").is_none(),
            "{rule}"
        );
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    assert!(
                        group != "*" && resource != "*" && verb != "*",
                        "wildcards grant what the code does not use: {rule}"
                    );
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    granted
}

fn table(scope: Scope) -> BTreeSet<(String, String, String)> {
    API_ACCESS
        .iter()
        .filter(|a| a.scope == scope)
        .flat_map(|a| {
            a.verbs
                .iter()
                .map(move |v| (a.group.to_string(), a.resource.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn the_chart_grants_exactly_the_api_calls_the_operator_makes() {
    let objects = render("kamaji-rs", "kamaji-system", &[]);
    let cluster_role = object(&objects, "ClusterRole", None);
    assert_eq!(
        grants(cluster_role),
        table(Scope::Cluster),
        "ClusterRole (left) vs src/runtime/rbac.rs (right)"
    );
    let role = object(&objects, "Role", None);
    assert_eq!(role["metadata"]["namespace"], "kamaji-system");
    assert_eq!(
        grants(role),
        table(Scope::LeaderElection),
        "Role (left) vs src/runtime/rbac.rs (right)"
    );
    // Bound to the chart's ServiceAccount, in the release namespace.
    for binding in ["ClusterRoleBinding", "RoleBinding"] {
        let subject = &object(&objects, binding, None)["subjects"][0];
        assert_eq!(subject["kind"], "ServiceAccount");
        assert_eq!(subject["name"], "kamaji-rs");
        assert_eq!(subject["namespace"], "kamaji-system");
    }
    // Without leader election there is no Lease to grant.
    let unelected = render(
        "kamaji-rs",
        "kamaji-system",
        &["--set", "leaderElection.enabled=false"],
    );
    assert!(!unelected.iter().any(|o| o["kind"] == "Role"));
}

/// A kubeconfig for the local cluster that authenticates with `token`.
pub fn token_kubeconfig(dir: &Path, token: &str) -> std::path::PathBuf {
    let field = |path: &str| {
        kubectl_ok(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    let server = field("{.clusters[0].cluster.server}");
    let ca = field("{.clusters[0].cluster.certificate-authority-data}");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: kamaji-rs\n  user:\n    token: {token}\n\
         contexts:\n- name: kamaji-rs\n  context:\n    cluster: local\n    user: kamaji-rs\ncurrent-context: kamaji-rs\n"
    );
    let path = dir.join("kamaji-rs-serviceaccount.kubeconfig");
    std::fs::write(&path, kubeconfig).expect("writing the kubeconfig");
    path
}

const TENANT: &str = "rbac";

fn tcp_status(ns: &str) -> String {
    let out = kubectl(&[
        "get",
        "tcp",
        TENANT,
        "-n",
        ns,
        "-o",
        "jsonpath={.status.kubernetesResources.version.status}",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The rotation annotation of a Secret, when it is an RFC 3339 time.
fn rotated_at(ns: &str, secret: &str) -> Option<String> {
    let out = kubectl(&[
        "get",
        "secret",
        secret,
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.annotations.certs\\.kamaji\\.clastix\\.io/rotate}",
    ]);
    let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
    value.parse::<k8s_openapi::jiff::Timestamp>().ok().map(|_| value)
}

/// Sample names in a Prometheus/OpenMetrics text.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn provisioning_and_rotation_pass_under_the_chart_service_account() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "rbac").await;
    // The chart's identity and grants only; no pods needed.
    let release = Release::install(&ns.name, &["--set", "replicaCount=0"]);
    let token = kubectl_ok(&[
        "create",
        "token",
        &release.fullname(),
        "-n",
        &ns.name,
        "--duration=2h",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = token_kubeconfig(dir.path(), token.trim());
    // It is the ServiceAccount, not the admin: pods are not ours to list.
    let pods = kubectl_with(&kubeconfig, &["get", "pods", "-n", &ns.name]);
    assert!(
        !pods.status.success() && String::from_utf8_lossy(&pods.stderr).contains("forbidden"),
        "the token kubeconfig can list pods: {}",
        String::from_utf8_lossy(&pods.stderr)
    );

    let (datastore, _) = etcd_datastore(&client, &ns.name, &["127.0.0.1:2379"]).await;
    // With leader election, in the release namespace, as in the chart.
    let operator = Replica::start("rbac", &ns.name, &kubeconfig, &["--leader-elect=true"]);
    let manifest = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {TENANT}\nspec:\n  \
         dataStore: {datastore}\n  controlPlane:\n    deployment:\n      replicas: 1\n    service:\n      \
         serviceType: ClusterIP\n  kubernetes:\n    version: v1.33.0\n  networkProfile:\n    port: 6443\n  \
         addons:\n    konnectivity:\n      server:\n        port: 8132\n"
    );
    let applied = kubectl_apply(&ns.name, &manifest);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let ready = |what: &'static str| {
        let (ns, operator) = (&ns.name, &operator);
        async move {
            let reached = tokio::time::timeout(Duration::from_secs(120), async {
                while tcp_status(ns) != "Ready" {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
            .await;
            assert!(
                reached.is_ok(),
                "{what}: not Ready ({}):\n{}",
                tcp_status(ns),
                operator.log_text()
            );
        }
    };
    ready("provisioning").await;

    // Rotation of every x509 Secret by annotation.
    let x509 = "kamaji.clastix.io/certificate_lifecycle_controller=x509";
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        "-l",
        x509,
        "certs.kamaji.clastix.io/rotate=",
    ]);
    let names = kubectl_ok(&[
        "get",
        "secret",
        "-n",
        &ns.name,
        "-l",
        x509,
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let names: Vec<String> = names.split_whitespace().map(str::to_string).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    eventually("every x509 Secret rotated", Duration::from_secs(90), || async {
        names
            .iter()
            .all(|n| rotated_at(&ns.name, n).is_some())
            .then_some(())
    })
    .await;
    ready("after the x509 rotation").await;

    // CA rotation.
    let ca = format!("{TENANT}-ca");
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        &ca,
        "certs.kamaji.clastix.io/rotate=",
    ]);
    eventually("the CA rotated", Duration::from_secs(90), || async {
        rotated_at(&ns.name, &ca).map(|_| ())
    })
    .await;
    ready("after the CA rotation").await;

    // Not one call was refused, and the events (events.k8s.io) were written.
    let log = operator.log_text();
    for refused in ["forbidden", "Forbidden"] {
        assert!(!log.contains(refused), "a call was refused ({refused}):\n{log}");
    }
    let events = kubectl_ok(&["get", "events.v1.events.k8s.io", "-n", &ns.name, "-o", "json"]);
    let events: Value = serde_json::from_str(&events).expect("JSON");
    let reasons: BTreeSet<&str> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reportingController"] == "kamaji-rs")
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(reasons.contains("Rotated"), "events: {reasons:?}");
    assert!(reasons.contains("CaRotationStarted"), "events: {reasons:?}");
    // The Lease was taken through the chart's Role.
    let holder = kubectl_ok(&[
        "get",
        "lease",
        "kamaji-rs",
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder.trim(), "rbac");

    // Every metric the dashboard and the alerts query is exported: by this
    // operator's /metrics, or, for the error counter (no series without an
    // error), by the registry once an error is recorded.
    let metrics = operator.metrics().await;
    let mut exported = exported_names(&metrics);
    let registry = kamaji::runtime::metrics::Metrics::new();
    registry.reconcile_failed("tenantcontrolplane", "KubeApiError");
    exported.extend(exported_names(&registry.render()));
    let objects = render("kamaji-rs", &ns.name, EVERYTHING);
    let mut queried = BTreeSet::new();
    for expr in rule_expressions(object(&objects, "PrometheusRule", None)) {
        queried.extend(metric_names(&expr));
    }
    for query in dashboard_queries(&dashboard(&objects)) {
        queried.extend(metric_names(&query));
    }
    assert!(queried.len() >= 10, "{queried:?}");
    let missing: Vec<&String> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "queried by the dashboard or alerts but not exported: {missing:?}\n/metrics:\n{metrics}"
    );
    println!("metrics queried by the chart, all exported: {queried:?}");
    drop(release);
}
