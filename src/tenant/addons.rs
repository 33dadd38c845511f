//! The CoreDNS addon of `spec.addons.coreDNS`, as kubeadm's addon phase
//! (cmd/kubeadm/app/phases/addons/dns) installs it for the tenant's version:
//! the `coredns` Deployment and ConfigMap (the Corefile for the tenant's cluster
//! domain), the `kube-dns` Service on the tenant's cluster DNS address, the
//! `system:coredns` ClusterRole and binding, and the `coredns` ServiceAccount.
//! The objects equal what `kubeadm init phase addon coredns --print-manifest`
//! renders for the same inputs (tested with the pinned kubeadm), plus our
//! managed-by label, by which the tenant-cluster controller knows what to remove
//! when the addon leaves the spec.
//!
//! Pure: the tenant-cluster controller applies these inside the tenant.

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Service, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::TenantControlPlane,
    tenant::{
        bootstrap::MANAGED_BY,
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

/// Kamaji's `spec.addons.coreDNS` (an AddonSpec).
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

/// The CoreDNS objects for the tenant, `None` when `spec.addons.coreDNS` is absent.
pub fn core_dns(tcp: &TenantControlPlane) -> Result<Option<CoreDns>, KubeadmConfigError> {
    let Some(raw) = tcp.spec.addons.as_ref().and_then(|a| a.core_dns.as_ref()) else {
        return Ok(None);
    };
    let spec: AddonSpec = serde_json::from_value(raw.clone())
        .map_err(|e| KubeadmConfigError::InvalidAddon(format!("spec.addons.coreDNS: {e}")))?;
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
