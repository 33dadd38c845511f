//! The addons of `spec.addons`, as kubeadm's addon phase
//! (cmd/kubeadm/app/phases/addons/dns and proxy) installs them for the tenant's version:
//!
//! - CoreDNS (`coreDNS`): the `coredns` Deployment and ConfigMap (the Corefile for
//!   the tenant's cluster domain), the `kube-dns` Service on the tenant's cluster DNS
//!   address, the `system:coredns` ClusterRole and binding, the `coredns` ServiceAccount;
//! - kube-proxy (`kubeProxy`): the `kube-proxy` DaemonSet, its ConfigMap (the
//!   KubeProxyConfiguration with the tenant's pod CIDR, a kubeconfig aimed at the
//!   tenant's endpoint), ServiceAccount, `kubeadm:node-proxier` binding, and the
//!   Role that lets joining nodes read the ConfigMap.
//!
//! The objects equal what `kubeadm init phase addon coredns|kube-proxy
//! --print-manifest` renders for the same inputs (tested with the pinned kubeadm),
//! plus our managed-by label, by which the tenant-cluster controller knows what to
//! remove when an addon leaves the spec.
//!
//! Pure: the tenant-cluster controller applies these inside the tenant.

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{ConfigMap, Service, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::TenantControlPlane,
    tenant::{
        bootstrap::{BOOTSTRAP_TOKEN_GROUP, MANAGED_BY},
        kubeadm_config::{KubeadmConfigError, SYSTEM_NAMESPACE, cluster_dns},
    },
};

/// kubeadm's CoreDNS version for Kubernetes 1.37 (`constants.CoreDNSVersion`).
pub const COREDNS_VERSION: &str = "v1.14.6";
/// kubeadm's CoreDNS image repository (`registry.k8s.io` + `/coredns`).
pub const COREDNS_REPOSITORY: &str = "registry.k8s.io/coredns";
/// Name of the Deployment, ConfigMap and ServiceAccount.
pub const COREDNS: &str = "coredns";
/// Name of the Service (kubeadm keeps kube-dns's).
pub const KUBE_DNS: &str = "kube-dns";
/// Name of the ClusterRole and ClusterRoleBinding.
pub const SYSTEM_COREDNS: &str = "system:coredns";

/// kube-proxy's image repository (kubeadm's default `imageRepository`).
pub const KUBE_PROXY_REPOSITORY: &str = "registry.k8s.io";
/// Name of kube-proxy's DaemonSet, ConfigMap, ServiceAccount, Role and RoleBinding.
pub const KUBE_PROXY: &str = "kube-proxy";
/// Name of the ClusterRoleBinding to `system:node-proxier`.
pub const NODE_PROXIER: &str = "kubeadm:node-proxier";
/// kubeadm 1.37's KubeProxyConfiguration as it renders it, `{cluster_cidr}` to fill.
const KUBE_PROXY_CONFIG: &str = include_str!("kube-proxy-config.conf");

/// Kamaji's `spec.addons.coreDNS` or `kubeProxy` (an AddonSpec).
#[derive(Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AddonSpec {
    /// Registry and path of the image, without its name.
    #[serde(default)]
    pub image_repository: Option<String>,
    /// Tag of the image.
    #[serde(default)]
    pub image_tag: Option<String>,
}

/// The CoreDNS objects, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreDns {
    /// `kube-system/coredns`.
    pub service_account: ServiceAccount,
    /// `system:coredns`.
    pub cluster_role: ClusterRole,
    /// `system:coredns` → the ServiceAccount.
    pub cluster_role_binding: ClusterRoleBinding,
    /// `kube-system/coredns` with the Corefile.
    pub config_map: ConfigMap,
    /// `kube-system/kube-dns`.
    pub service: Service,
    /// `kube-system/coredns`.
    pub deployment: Deployment,
}

impl CoreDns {
    /// How many objects are applied.
    pub const LEN: usize = 6;
}

/// The kube-proxy objects, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeProxy {
    /// `kube-system/kube-proxy`.
    pub service_account: ServiceAccount,
    /// `kubeadm:node-proxier` → `system:node-proxier`.
    pub cluster_role_binding: ClusterRoleBinding,
    /// `kube-system/kube-proxy`: get the ConfigMap.
    pub role: Role,
    /// For bootstrap tokens.
    pub role_binding: RoleBinding,
    /// `kube-system/kube-proxy`: config.conf and kubeconfig.conf.
    pub config_map: ConfigMap,
    /// `kube-system/kube-proxy`.
    pub daemon_set: DaemonSet,
}

impl KubeProxy {
    /// How many objects are applied.
    pub const LEN: usize = 6;
}

fn addon_spec(raw: &Value, field: &str) -> Result<AddonSpec, KubeadmConfigError> {
    serde_json::from_value(raw.clone())
        .map_err(|e| KubeadmConfigError::InvalidAddon(format!("spec.addons.{field}: {e}")))
}

/// The kube-proxy objects for the tenant whose API server is at `endpoint`
/// (`host:port`), `None` when `spec.addons.kubeProxy` is absent.
pub fn kube_proxy(tcp: &TenantControlPlane, endpoint: &str) -> Result<Option<KubeProxy>, KubeadmConfigError> {
    let Some(raw) = tcp.spec.addons.as_ref().and_then(|a| a.kube_proxy.as_ref()) else {
        return Ok(None);
    };
    let spec = addon_spec(raw, "kubeProxy")?;
    let version = tcp.spec.kubernetes.version.trim();
    let version = if version.starts_with('v') {
        version.to_string()
    } else {
        format!("v{version}")
    };
    let image = format!(
        "{}/kube-proxy:{}",
        spec.image_repository.as_deref().unwrap_or(KUBE_PROXY_REPOSITORY),
        spec.image_tag.as_deref().unwrap_or(&version)
    );
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: \
         /var/run/secrets/kubernetes.io/serviceaccount/ca.crt\n    server: https://{endpoint}\n  name: default\n\
         contexts:\n- context:\n    cluster: default\n    namespace: default\n    user: default\n  name: default\n\
         current-context: default\nusers:\n- name: default\n  user:\n    tokenFile: \
         /var/run/secrets/kubernetes.io/serviceaccount/token"
    );
    let config = KUBE_PROXY_CONFIG
        .trim_end_matches('\n')
        .replace("{cluster_cidr}", &tcp.spec.network_profile.pod_cidr);
    let service_account_subject =
        json!([{"kind": "ServiceAccount", "name": KUBE_PROXY, "namespace": SYSTEM_NAMESPACE}]);
    Ok(Some(KubeProxy {
        service_account: typed(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": meta(KUBE_PROXY, Some(SYSTEM_NAMESPACE), None),
        }))?,
        cluster_role_binding: typed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(NODE_PROXIER, None, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-proxier"},
            "subjects": service_account_subject,
        }))?,
        role: typed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(KUBE_PROXY, Some(SYSTEM_NAMESPACE), None),
            "rules": [{"apiGroups": [""], "resourceNames": [KUBE_PROXY], "resources": ["configmaps"], "verbs": ["get"]}],
        }))?,
        role_binding: typed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(KUBE_PROXY, Some(SYSTEM_NAMESPACE), None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": KUBE_PROXY},
            "subjects": [{"kind": "Group", "name": BOOTSTRAP_TOKEN_GROUP}],
        }))?,
        config_map: typed(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta(KUBE_PROXY, Some(SYSTEM_NAMESPACE), Some(("app", "kube-proxy"))),
            "data": {"kubeconfig.conf": kubeconfig, "config.conf": config},
        }))?,
        daemon_set: typed(kube_proxy_daemon_set(&image))?,
    }))
}

fn kube_proxy_daemon_set(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": meta(KUBE_PROXY, Some(SYSTEM_NAMESPACE), Some(("k8s-app", "kube-proxy"))),
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"k8s-app": "kube-proxy"}},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "containers": [{
                        "name": "kube-proxy",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                            "--hostname-override=$(NODE_NAME)"],
                        "securityContext": {"privileged": true},
                        "volumeMounts": [
                            {"mountPath": "/var/lib/kube-proxy", "name": "kube-proxy"},
                            {"mountPath": "/run/xtables.lock", "name": "xtables-lock", "readOnly": false},
                            {"mountPath": "/lib/modules", "name": "lib-modules", "readOnly": true},
                        ],
                        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    }],
                    "hostNetwork": true,
                    "serviceAccountName": KUBE_PROXY,
                    "volumes": [
                        {"name": "kube-proxy", "configMap": {"name": KUBE_PROXY}},
                        {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                        {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                    ],
                    "tolerations": [{"operator": "Exists"}],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                },
            },
        },
    })
}

/// The CoreDNS objects for the tenant, `None` when `spec.addons.coreDNS` is absent.
pub fn core_dns(tcp: &TenantControlPlane) -> Result<Option<CoreDns>, KubeadmConfigError> {
    let Some(raw) = tcp.spec.addons.as_ref().and_then(|a| a.core_dns.as_ref()) else {
        return Ok(None);
    };
    let spec = addon_spec(raw, "coreDNS")?;
    let image = format!(
        "{}/coredns:{}",
        spec.image_repository.as_deref().unwrap_or(COREDNS_REPOSITORY),
        spec.image_tag.as_deref().unwrap_or(COREDNS_VERSION)
    );
    let dns_ip = cluster_dns(tcp)?
        .into_iter()
        .next()
        .ok_or_else(|| KubeadmConfigError::InvalidAddon("no cluster DNS address".into()))?;
    let domain = &tcp.spec.network_profile.cluster_domain;
    Ok(Some(CoreDns {
        service_account: typed(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": meta(COREDNS, Some(SYSTEM_NAMESPACE), None),
        }))?,
        cluster_role: typed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(SYSTEM_COREDNS, None, None),
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                 "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        }))?,
        cluster_role_binding: typed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(SYSTEM_COREDNS, None, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SYSTEM_COREDNS},
            "subjects": [{"kind": "ServiceAccount", "name": COREDNS, "namespace": SYSTEM_NAMESPACE}],
        }))?,
        config_map: typed(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta(COREDNS, Some(SYSTEM_NAMESPACE), None),
            "data": {"Corefile": corefile(domain)},
        }))?,
        service: typed(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": KUBE_DNS, "namespace": SYSTEM_NAMESPACE,
                "labels": labels(&[("k8s-app", "kube-dns"), ("kubernetes.io/cluster-service", "true"),
                    ("kubernetes.io/name", "CoreDNS")]),
                "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
            },
            "spec": {
                "clusterIP": dns_ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
                "selector": {"k8s-app": "kube-dns"},
            },
        }))?,
        deployment: typed(deployment(&image))?,
    }))
}

/// kubeadm's Corefile for a cluster domain.
pub fn corefile(domain: &str) -> String {
    format!(
        ".:53 {{\n    errors\n    health {{\n       lameduck 5s\n    }}\n    ready\n    \
         kubernetes {domain} in-addr.arpa ip6.arpa {{\n       pods insecure\n       \
         fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }}\n    prometheus :9153\n    \
         forward . /etc/resolv.conf {{\n       max_concurrent 1000\n    }}\n    cache 30 {{\n       \
         disable success {domain}\n       disable denial {domain}\n    }}\n    loop\n    reload\n    \
         loadbalance\n}}\n"
    )
}

fn deployment(image: &str) -> Value {
    let port = |container_port: u16, name: &str, protocol: &str| json!({"containerPort": container_port, "name": name, "protocol": protocol});
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(COREDNS, Some(SYSTEM_NAMESPACE), Some(("k8s-app", "kube-dns"))),
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "template": {
                "metadata": {"labels": {"k8s-app": "kube-dns"}},
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": COREDNS,
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchExpressions": [
                                {"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }]}},
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                    ],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [{
                        "name": "coredns",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": true}],
                        "ports": [
                            port(53, "dns", "UDP"), port(53, "dns-tcp", "TCP"), port(9153, "metrics", "TCP"),
                            port(8080, "liveness-probe", "TCP"), port(8181, "readiness-probe", "TCP"),
                        ],
                        "livenessProbe": {
                            "httpGet": {"path": "/health", "port": "liveness-probe", "scheme": "HTTP"},
                            "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1,
                            "failureThreshold": 5,
                        },
                        "readinessProbe": {
                            "httpGet": {"path": "/ready", "port": "readiness-probe", "scheme": "HTTP"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                            "readOnlyRootFilesystem": true,
                        },
                    }],
                    "dnsPolicy": "Default",
                    "volumes": [{"name": "config-volume", "configMap": {
                        "name": COREDNS, "items": [{"key": "Corefile", "path": "Corefile"}]}}],
                },
            },
        },
    })
}

fn labels(pairs: &[(&str, &str)]) -> Value {
    let mut map = serde_json::Map::new();
    map.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    for (k, v) in pairs {
        map.insert((*k).into(), (*v).into());
    }
    Value::Object(map)
}

fn meta(name: &str, namespace: Option<&str>, label: Option<(&str, &str)>) -> Value {
    let mut meta = json!({"name": name, "labels": labels(label.as_slice())});
    if let Some(ns) = namespace {
        meta["namespace"] = ns.into();
    }
    meta
}

fn typed<K: serde::de::DeserializeOwned>(value: Value) -> Result<K, KubeadmConfigError> {
    serde_json::from_value(value).map_err(|e| KubeadmConfigError::InvalidAddon(e.to_string()))
}

/// Whether an object in the tenant is one kamaji-rs applied (and may remove).
pub fn managed_by_us(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(addons: &str) -> TenantControlPlane {
        let yaml = format!(
            "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: t\n  \
             namespace: n\nspec:\n  controlPlane:\n    deployment:\n      replicas: 1\n    service:\n      \
             serviceType: ClusterIP\n  kubernetes:\n    version: v1.37.2\n  networkProfile:\n    port: 6443\n    \
             serviceCidr: 10.0.0.0/24\n    clusterDomain: tenant.local\n{addons}"
        );
        serde_saphyr::from_str(&yaml).expect("a TenantControlPlane")
    }

    #[test]
    fn no_addon_no_objects() {
        assert_eq!(core_dns(&tcp("")).expect("builds"), None);
    }

    #[test]
    fn coredns_serves_the_tenant_domain_on_its_dns_address() {
        let dns = core_dns(&tcp("  addons:\n    coreDNS: {}\n"))
            .expect("builds")
            .expect("enabled");
        assert_eq!(
            dns.service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()),
            Some("10.0.0.10")
        );
        let corefile = &dns.config_map.data.as_ref().expect("data")["Corefile"];
        assert!(corefile.contains("kubernetes tenant.local in-addr.arpa ip6.arpa {"));
        let pod = dns.deployment.spec.template.spec.as_ref().expect("pod");
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("registry.k8s.io/coredns/coredns:v1.14.6")
        );
        assert!(managed_by_us(&dns.deployment.metadata));
    }

    #[test]
    fn kube_proxy_uses_the_tenant_version_pod_cidr_and_endpoint() {
        let proxy = kube_proxy(&tcp("  addons:\n    kubeProxy: {}\n"), "10.1.2.3:6443")
            .expect("builds")
            .expect("enabled");
        let data = proxy.config_map.data.as_ref().expect("data");
        assert!(data["config.conf"].contains("clusterCIDR: 10.244.0.0/16"));
        assert!(data["kubeconfig.conf"].contains("server: https://10.1.2.3:6443"));
        let pod = proxy.daemon_set.spec.template.spec.as_ref().expect("pod");
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("registry.k8s.io/kube-proxy:v1.37.2")
        );
        assert_eq!(kube_proxy(&tcp(""), "10.1.2.3:6443").expect("builds"), None);
    }

    #[test]
    fn kamaji_image_overrides_are_honoured() {
        let dns = core_dns(&tcp(
            "  addons:\n    coreDNS:\n      imageRepository: mirror.example/dns\n      imageTag: v1.12.0\n",
        ))
        .expect("builds")
        .expect("enabled");
        let pod = dns.deployment.spec.template.spec.as_ref().expect("pod");
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("mirror.example/dns/coredns:v1.12.0")
        );
    }
}
