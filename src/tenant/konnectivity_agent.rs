//! The tenant side of the konnectivity addon, as Kamaji installs it
//! (internal/resources/konnectivity: agent.go, service_account_resource.go,
//! cluster_role_binding_resource.go):
//!
//! - the ServiceAccount `kube-system/konnectivity-agent`, whose projected token of
//!   audience `system:konnectivity-server` the agents present to the server;
//! - the ClusterRoleBinding `system:konnectivity-server` → `system:auth-delegator`
//!   for the server's user, so it may review those tokens;
//! - the agents: a DaemonSet, or a Deployment (`agent.mode`), `kube-system/konnectivity-agent`,
//!   dialing the tenant's address on the addon's port and trusting the tenant's root CA
//!   (`kube-root-ca.crt`, which carries both CAs during a CA rotation).
//!
//! Every object carries our managed-by label, by which the tenant-cluster controller
//! knows what to remove when the addon leaves the spec. Pure.

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{ServiceAccount, Toleration},
    rbac::v1::ClusterRoleBinding,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    bootstrap::MANAGED_BY,
    konnectivity::{ADMIN_PORT, AGENT_NAME, AGENT_NAMESPACE, HEALTH_PORT, SERVER_USER},
    kubeadm_config::KubeadmConfigError,
};
use crate::api::{TenantControlPlane, schema};

/// Where the agent's token is mounted, and its file there.
pub const TOKEN_DIR: &str = "/var/run/secrets/tokens";
/// The token's file name (and the volume's name), Kamaji's.
pub const TOKEN_NAME: &str = "konnectivity-agent-token";
/// The CA the agent verifies the server with: the tenant's root CA bundle.
pub const CA_CERT: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// The lifetime of the agent's projected token (the kubelet renews it).
const TOKEN_SECONDS: i64 = 3600;

/// Kamaji's `spec.addons.konnectivity.agent`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Image without tag.
    #[serde(default = "default_image")]
    pub image: String,
    /// Image tag; `v0.<minor>.0` of the tenant's version when empty.
    #[serde(default)]
    pub version: Option<String>,
    /// The pods' tolerations.
    #[serde(default = "default_tolerations")]
    pub tolerations: Vec<Toleration>,
    /// Flags replacing ours of the same name, the others added (Kamaji's merge).
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Run in the nodes' network namespace.
    #[serde(default)]
    pub host_network: bool,
    /// `DaemonSet` (default) or `Deployment`.
    #[serde(default)]
    pub mode: AgentMode,
    /// Replicas of the Deployment mode.
    #[serde(default)]
    pub replicas: Option<i32>,
}

/// How the agents run.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AgentMode {
    /// One agent per node.
    #[default]
    DaemonSet,
    /// A Deployment of `replicas` agents.
    Deployment,
}

fn default_image() -> String {
    schema::KONNECTIVITY_AGENT_IMAGE.to_string()
}

fn default_tolerations() -> Vec<Toleration> {
    vec![Toleration {
        key: Some("CriticalAddonsOnly".into()),
        operator: Some("Exists".into()),
        ..Toleration::default()
    }]
}

/// The agents' workload, per [`AgentMode`].
#[derive(Debug, Clone, PartialEq)]
pub enum AgentWorkload {
    /// `kube-system/konnectivity-agent` as a DaemonSet.
    DaemonSet(Box<DaemonSet>),
    /// `kube-system/konnectivity-agent` as a Deployment.
    Deployment(Box<Deployment>),
}

/// The agent's objects, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// `kube-system/konnectivity-agent`.
    pub service_account: ServiceAccount,
    /// `system:konnectivity-server` → `system:auth-delegator`.
    pub cluster_role_binding: ClusterRoleBinding,
    /// The agents.
    pub workload: AgentWorkload,
}

impl Agent {
    /// How many objects are applied.
    pub const LEN: usize = 3;
}

/// The agent's objects for the tenant whose API server is at `endpoint` (`host:port`),
/// `None` when `spec.addons.konnectivity` is absent.
pub fn desired(tcp: &TenantControlPlane, endpoint: &str) -> Result<Option<Agent>, KubeadmConfigError> {
    let Some(addon) = tcp.spec.konnectivity() else {
        return Ok(None);
    };
    let raw = addon.agent.clone().unwrap_or_else(|| json!({}));
    let spec: AgentSpec = serde_json::from_value(raw)
        .map_err(|e| KubeadmConfigError::InvalidAddon(format!("spec.addons.konnectivity.agent: {e}")))?;
    let version = spec
        .version
        .clone()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| tcp.spec.kubernetes.konnectivity_tag());
    let image = format!("{}:{version}", spec.image);
    let args = agent_args(host_of(endpoint), addon.server.port, &spec.extra_args);
    let template = pod_template(&spec, &image, &args);
    let metadata = meta(AGENT_NAME, Some(AGENT_NAMESPACE), &[]);
    let selector = json!({"matchLabels": {"k8s-app": AGENT_NAME}});
    let workload = match spec.mode {
        AgentMode::DaemonSet => AgentWorkload::DaemonSet(Box::new(typed(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": metadata,
            "spec": {"selector": selector, "template": template},
        }))?)),
        AgentMode::Deployment => {
            let mut spec_json = json!({"selector": selector, "template": template});
            if let Some(replicas) = spec.replicas {
                spec_json["replicas"] = replicas.into();
            }
            AgentWorkload::Deployment(Box::new(typed(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec_json,
            }))?))
        }
    };
    Ok(Some(Agent {
        service_account: typed(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": meta(AGENT_NAME, Some(AGENT_NAMESPACE), &[]),
        }))?,
        cluster_role_binding: typed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(SERVER_USER, None, &[
                ("kubernetes.io/cluster-service", "true"),
                ("addonmanager.kubernetes.io/mode", "Reconcile"),
            ]),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": SERVER_USER}],
        }))?,
        workload,
    }))
}

/// The host of `host:port` (`[v6]:port` too).
fn host_of(endpoint: &str) -> &str {
    let host = endpoint.rsplit_once(':').map_or(endpoint, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Kamaji's agent flags, then the user's: one of the same name replaces ours (Kamaji
/// merges them in a map, the user's last), sorted as Kamaji renders them.
pub fn agent_args(server_host: &str, server_port: i32, extra: &[String]) -> Vec<String> {
    let mut args: Vec<(String, String)> = [
        ("-v", "8".to_string()),
        ("--logtostderr", "true".to_string()),
        ("--ca-cert", CA_CERT.to_string()),
        ("--proxy-server-host", server_host.to_string()),
        ("--proxy-server-port", server_port.to_string()),
        ("--admin-server-port", ADMIN_PORT.to_string()),
        ("--health-server-port", HEALTH_PORT.to_string()),
        (
            "--service-account-token-path",
            format!("{TOKEN_DIR}/{TOKEN_NAME}"),
        ),
    ]
    .into_iter()
    .map(|(flag, value)| (flag.to_string(), value))
    .collect();
    for arg in extra {
        let (flag, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
        args.retain(|(f, _)| f != flag);
        args.push((flag.to_string(), value.to_string()));
    }
    let mut rendered: Vec<String> = args
        .into_iter()
        .map(|(flag, value)| {
            if value.is_empty() {
                flag
            } else {
                format!("{flag}={value}")
            }
        })
        .collect();
    rendered.sort();
    rendered
}

fn pod_template(spec: &AgentSpec, image: &str, args: &[String]) -> Value {
    json!({
        "metadata": {"labels": {"k8s-app": AGENT_NAME}},
        "spec": {
            "priorityClassName": "system-cluster-critical",
            "tolerations": spec.tolerations,
            "hostNetwork": spec.host_network,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "serviceAccountName": AGENT_NAME,
            "volumes": [{"name": TOKEN_NAME, "projected": {
                "defaultMode": 420,
                "sources": [{"serviceAccountToken": {
                    "path": TOKEN_NAME, "audience": SERVER_USER, "expirationSeconds": TOKEN_SECONDS,
                }}],
            }}],
            "containers": [{
                "name": AGENT_NAME,
                "image": image,
                "command": ["/proxy-agent"],
                "args": args,
                "volumeMounts": [{"mountPath": TOKEN_DIR, "name": TOKEN_NAME}],
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": HEALTH_PORT, "scheme": "HTTP"},
                    "initialDelaySeconds": 15, "timeoutSeconds": 15, "periodSeconds": 10,
                    "successThreshold": 1, "failureThreshold": 3,
                },
            }],
        },
    })
}

fn meta(name: &str, namespace: Option<&str>, extra: &[(&str, &str)]) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    labels.insert("k8s-app".into(), AGENT_NAME.into());
    for (key, value) in extra {
        labels.insert((*key).into(), (*value).into());
    }
    let mut meta = json!({"name": name, "labels": labels});
    if let Some(ns) = namespace {
        meta["namespace"] = ns.into();
    }
    meta
}

fn typed<K: serde::de::DeserializeOwned>(value: Value) -> Result<K, KubeadmConfigError> {
    serde_json::from_value(value).map_err(|e| KubeadmConfigError::InvalidAddon(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(addons: &str) -> TenantControlPlane {
        let yaml = format!(
            "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: t\n  \
             namespace: n\nspec:\n  controlPlane:\n    deployment:\n      replicas: 1\n    service:\n      \
             serviceType: ClusterIP\n  kubernetes:\n    version: v1.37.2\n  networkProfile:\n    port: 6443\n\
             {addons}"
        );
        serde_saphyr::from_str(&yaml).expect("a TenantControlPlane")
    }

    fn daemon_set(agent: &Agent) -> &DaemonSet {
        match &agent.workload {
            AgentWorkload::DaemonSet(ds) => ds,
            AgentWorkload::Deployment(_) => panic!("a DaemonSet by default"),
        }
    }

    #[test]
    fn no_addon_no_agent() {
        assert_eq!(desired(&tcp(""), "10.0.0.1:6443").expect("builds"), None);
    }

    #[test]
    fn the_agent_dials_the_tenant_address_on_the_addon_port_with_a_token_for_the_server() {
        let agent = desired(&tcp("  addons:\n    konnectivity: {}\n"), "10.0.0.1:6443")
            .expect("builds")
            .expect("enabled");
        let pod = daemon_set(&agent).spec.template.spec.clone().expect("pod");
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("registry.k8s.io/kas-network-proxy/proxy-agent:v0.37.0")
        );
        let args = container.args.clone().unwrap_or_default();
        for arg in [
            "--proxy-server-host=10.0.0.1",
            "--proxy-server-port=8132",
            "--ca-cert=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            "--service-account-token-path=/var/run/secrets/tokens/konnectivity-agent-token",
        ] {
            assert!(args.iter().any(|a| a == arg), "{arg} in {args:?}");
        }
        let token = pod.volumes.as_ref().expect("volumes")[0]
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_ref())
            .and_then(|s| s[0].service_account_token.clone())
            .expect("a projected token");
        assert_eq!(token.audience.as_deref(), Some(SERVER_USER));
        assert_eq!(pod.service_account_name.as_deref(), Some(AGENT_NAME));
        assert_eq!(pod.tolerations, Some(default_tolerations()));
        let binding = &agent.cluster_role_binding;
        assert_eq!(binding.role_ref.name, "system:auth-delegator");
        assert_eq!(binding.subjects.as_ref().expect("subjects")[0].name, SERVER_USER);
    }

    #[test]
    fn kamaji_agent_fields_are_honoured() {
        let agent = desired(
            &tcp(
                "  addons:\n    konnectivity:\n      server: {port: 9000}\n      agent:\n        mode: Deployment\n        \
                 replicas: 2\n        version: v0.34.0\n        hostNetwork: true\n        \
                 extraArgs: [\"-v=2\", \"--keepalive-time=30s\"]\n        tolerations: [{operator: Exists}]\n",
            ),
            "[fd00::1]:6443",
        )
        .expect("builds")
        .expect("enabled");
        let AgentWorkload::Deployment(deployment) = &agent.workload else {
            panic!("mode: Deployment");
        };
        let spec = &deployment.spec;
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.as_ref().expect("pod");
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(1));
        let args = pod.containers[0].args.clone().unwrap_or_default();
        assert!(args.contains(&"-v=2".to_string()), "{args:?}");
        assert!(!args.contains(&"-v=8".to_string()), "{args:?}");
        assert!(args.contains(&"--keepalive-time=30s".to_string()));
        assert!(args.contains(&"--proxy-server-host=fd00::1".to_string()));
        assert!(args.contains(&"--proxy-server-port=9000".to_string()));
        assert!(
            pod.containers[0]
                .image
                .as_deref()
                .is_some_and(|i| i.ends_with(":v0.34.0"))
        );
    }
}
