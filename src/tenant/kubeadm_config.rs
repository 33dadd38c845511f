//! What `kubeadm join` reads from a control plane, as kubeadm's `init` leaves it
//! (cmd/kubeadm/app/phases/uploadconfig and phases/kubelet), for one tenant:
//!
//! - `kube-system/kubeadm-config`, key `ClusterConfiguration`: a
//!   `kubeadm.k8s.io/v1beta4` ClusterConfiguration with the tenant's endpoint,
//!   networking (`spec.networkProfile`), certificate validity, encryption algorithm
//!   and Kubernetes version;
//! - `kube-system/kubelet-config`, key `kubelet`: the KubeletConfiguration every
//!   joining node starts from, kubeadm's defaults with `spec.kubernetes.kubelet`
//!   honoured as Kamaji does (`cgroupfs` sets the cgroup driver,
//!   `configurationJSONPatches` are RFC 6902 patches applied last);
//! - the Roles and RoleBindings that let bootstrap tokens
//!   (`system:bootstrappers:kubeadm:default-node-token`) and nodes read them:
//!   `kubeadm:nodes-kubeadm-config` and `kubeadm:kubelet-config`.
//!
//! Pure: the tenant-cluster controller applies these inside the tenant.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use k8s_openapi::{
    api::{
        core::v1::ConfigMap,
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::TenantControlPlane,
    pki::{KeyAlgorithm, authority::CA_VALIDITY},
    tenant::bootstrap::{BOOTSTRAP_TOKEN_GROUP, MANAGED_BY, NODES_GROUP},
};

/// Namespace of kubeadm's configuration.
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// The ConfigMap holding the ClusterConfiguration (kubeadm's `KubeadmConfigConfigMap`).
pub const KUBEADM_CONFIG: &str = "kubeadm-config";
/// Its data key (kubeadm's `ClusterConfigurationConfigMapKey`).
pub const CLUSTER_CONFIGURATION_KEY: &str = "ClusterConfiguration";
/// The ConfigMap holding the nodes' KubeletConfiguration (`KubeletBaseConfigurationConfigMap`).
pub const KUBELET_CONFIG: &str = "kubelet-config";
/// Its data key (`KubeletBaseConfigurationConfigMapKey`).
pub const KUBELET_CONFIG_KEY: &str = "kubelet";
/// Role and RoleBinding that expose `kubeadm-config` (uploadconfig's `NodesKubeadmConfigClusterRoleName`).
pub const NODES_KUBEADM_CONFIG_RBAC: &str = "kubeadm:nodes-kubeadm-config";
/// Role and RoleBinding that expose `kubelet-config` (`KubeletBaseConfigMapRole`).
pub const KUBELET_CONFIG_RBAC: &str = "kubeadm:kubelet-config";
/// kubeadm's address order for reaching kubelets (Kamaji's default of `preferredAddressTypes`).
pub const DEFAULT_PREFERRED_ADDRESS_TYPES: &[&str] = &["InternalIP", "ExternalIP", "Hostname"];
/// Where kubeadm puts certificates on a node.
const CERTIFICATES_DIR: &str = "/etc/kubernetes/pki";

/// Why the join configuration cannot be built (reported in the tenant condition).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KubeadmConfigError {
    /// `spec.kubernetes.kubelet` does not have Kamaji's shape.
    #[error("spec.kubernetes.kubelet is invalid: {0}")]
    InvalidKubeletSpec(String),
    /// A `configurationJSONPatches` entry does not apply to the KubeletConfiguration.
    #[error("spec.kubernetes.kubelet.configurationJSONPatches[{index}] does not apply: {reason}")]
    KubeletPatch {
        /// Position of the operation.
        index: usize,
        /// What failed.
        reason: String,
    },
    /// `spec.networkProfile.serviceCidr` has no tenth address for the cluster DNS.
    #[error("spec.networkProfile.serviceCidr {0:?} is not a CIDR with a tenth address for the cluster DNS")]
    ServiceCidr(String),
    /// An addon of `spec.addons` does not have Kamaji's shape.
    #[error("{0}")]
    InvalidAddon(String),
    /// A document could not be written as YAML.
    #[error("cannot encode {0} as YAML")]
    Encode(&'static str),
}

/// Kamaji's `spec.kubernetes.kubelet`.
#[derive(Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubeletSpec {
    /// RFC 6902 patches applied to the KubeletConfiguration.
    #[serde(default, rename = "configurationJSONPatches")]
    pub configuration_json_patches: Vec<Value>,
    /// Address types the API server tries, in order, to reach a kubelet.
    #[serde(default)]
    pub preferred_address_types: Vec<String>,
    /// The cgroup driver (`systemd` or `cgroupfs`), Kamaji's field name.
    #[serde(default)]
    pub cgroupfs: Option<String>,
}

impl KubeletSpec {
    /// Reads `spec.kubernetes.kubelet` (absent: Kamaji's defaults).
    pub fn of(tcp: &TenantControlPlane) -> Result<Self, KubeadmConfigError> {
        Self::of_spec(&tcp.spec)
    }

    /// [`Self::of`] from the spec alone.
    pub fn of_spec(spec: &crate::api::TenantControlPlaneSpec) -> Result<Self, KubeadmConfigError> {
        match &spec.kubernetes.kubelet {
            None => Ok(Self::default()),
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|e| KubeadmConfigError::InvalidKubeletSpec(e.to_string())),
        }
    }
}

/// What the join configuration depends on besides the TenantControlPlane: the
/// operator's PKI settings and the endpoint the control plane reports.
#[derive(Debug, Clone, Copy)]
pub struct JoinInputs<'a> {
    /// `status.controlPlaneEndpoint` (`host:port`).
    pub endpoint: &'a str,
    /// Validity of leaf certificates (`--certificate-validity`).
    pub certificate_validity: Duration,
    /// Key algorithm of issued certificates (`--key-algorithm`).
    pub key_algorithm: KeyAlgorithm,
}

/// The objects `kubeadm join` reads, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinObjects {
    /// `kube-system/kubeadm-config`.
    pub kubeadm_config: ConfigMap,
    /// `kube-system/kubelet-config`.
    pub kubelet_config: ConfigMap,
    /// `kubeadm:nodes-kubeadm-config` and `kubeadm:kubelet-config`.
    pub roles: Vec<Role>,
    /// Their bindings to bootstrap tokens and nodes.
    pub role_bindings: Vec<RoleBinding>,
}

impl JoinObjects {
    /// How many objects are applied.
    pub fn len(&self) -> usize {
        2 + self.roles.len() + self.role_bindings.len()
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Everything `kubeadm join` reads from the tenant.
pub fn desired(tcp: &TenantControlPlane, inputs: &JoinInputs<'_>) -> Result<JoinObjects, KubeadmConfigError> {
    let kubelet = KubeletSpec::of(tcp)?;
    let cluster = yaml(&cluster_configuration(tcp, inputs), "the ClusterConfiguration")?;
    let kubelet_yaml = yaml(&kubelet_configuration(tcp, &kubelet)?, "the KubeletConfiguration")?;
    Ok(JoinObjects {
        kubeadm_config: config_map(KUBEADM_CONFIG, CLUSTER_CONFIGURATION_KEY, cluster),
        kubelet_config: config_map(KUBELET_CONFIG, KUBELET_CONFIG_KEY, kubelet_yaml),
        roles: vec![
            read_config_map_role(NODES_KUBEADM_CONFIG_RBAC, KUBEADM_CONFIG),
            read_config_map_role(KUBELET_CONFIG_RBAC, KUBELET_CONFIG),
        ],
        role_bindings: vec![
            nodes_and_tokens_binding(NODES_KUBEADM_CONFIG_RBAC),
            nodes_and_tokens_binding(KUBELET_CONFIG_RBAC),
        ],
    })
}

/// The tenant's version as kubeadm writes it (`v1.37.2`).
fn kubernetes_version(tcp: &TenantControlPlane) -> String {
    let version = tcp.spec.kubernetes.version.trim();
    if version.starts_with('v') {
        version.to_string()
    } else {
        format!("v{version}")
    }
}

/// A Go `time.Duration` string as kubeadm prints it (`8760h0m0s`).
pub fn go_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60)
}

/// The ClusterConfiguration `kubeadm init` would upload for this tenant.
pub fn cluster_configuration(tcp: &TenantControlPlane, inputs: &JoinInputs<'_>) -> Value {
    let network = &tcp.spec.network_profile;
    let mut api_server = json!({});
    if !network.cert_sans.is_empty() {
        api_server["certSANs"] = json!(network.cert_sans);
    }
    let addons = tcp.spec.addons.as_ref();
    let dns_enabled = addons.is_some_and(|a| a.core_dns.is_some());
    let proxy_enabled = addons.is_some_and(|a| a.kube_proxy.is_some());
    json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "apiServer": api_server,
        "caCertificateValidityPeriod": go_duration(CA_VALIDITY),
        "certificateValidityPeriod": go_duration(inputs.certificate_validity),
        "certificatesDir": CERTIFICATES_DIR,
        "clusterName": tcp.metadata.name.clone().unwrap_or_default(),
        "controlPlaneEndpoint": inputs.endpoint,
        "controllerManager": {},
        // The addons are the operator's (spec.addons), not kubeadm upgrade's.
        "dns": { "disabled": !dns_enabled },
        "encryptionAlgorithm": inputs.key_algorithm.as_str(),
        "imageRepository": "registry.k8s.io",
        "kubernetesVersion": kubernetes_version(tcp),
        "networking": {
            "dnsDomain": network.cluster_domain,
            "podSubnet": network.pod_cidr,
            "serviceSubnet": network.service_cidr,
        },
        "proxy": { "disabled": !proxy_enabled },
        "scheduler": {},
    })
}

/// The cluster DNS addresses kubelets hand to pods: `spec.networkProfile.dnsServiceIPs`,
/// else kubeadm's choice, the tenth address of the service CIDR.
pub fn cluster_dns(tcp: &TenantControlPlane) -> Result<Vec<String>, KubeadmConfigError> {
    let network = &tcp.spec.network_profile;
    if !network.dns_service_ips.is_empty() {
        return Ok(network.dns_service_ips.clone());
    }
    let cidr = &network.service_cidr;
    let invalid = || KubeadmConfigError::ServiceCidr(cidr.clone());
    let (base, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
    let base: IpAddr = base.parse().map_err(|_| invalid())?;
    let prefix: u32 = prefix.parse().map_err(|_| invalid())?;
    let ip = match base {
        IpAddr::V4(v4) if prefix <= 28 => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            IpAddr::from(std::net::Ipv4Addr::from((u32::from(v4) & mask) + 10))
        }
        IpAddr::V6(v6) if prefix <= 124 => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::from(std::net::Ipv6Addr::from((u128::from(v6) & mask) + 10))
        }
        _ => return Err(invalid()),
    };
    Ok(vec![ip.to_string()])
}

/// The KubeletConfiguration kubeadm's defaults give every node of this tenant
/// (componentconfigs/kubelet.go), `spec.kubernetes.kubelet` applied.
pub fn kubelet_configuration(
    tcp: &TenantControlPlane,
    kubelet: &KubeletSpec,
) -> Result<Value, KubeadmConfigError> {
    let mut config = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "enabled": true },
            "x509": { "clientCAFile": format!("{CERTIFICATES_DIR}/ca.crt") },
        },
        "authorization": { "mode": "Webhook" },
        "cgroupDriver": kubelet.cgroupfs.as_deref().unwrap_or("systemd"),
        "clusterDNS": cluster_dns(tcp)?,
        "clusterDomain": tcp.spec.network_profile.cluster_domain,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        // Client certificates renew through CSRs the tenant approves (selfnodeclient).
        "rotateCertificates": true,
        "staticPodPath": "/etc/kubernetes/manifests",
    });
    apply_patches(&mut config, &kubelet.configuration_json_patches)?;
    Ok(config)
}

/// Applies RFC 6902 operations in order. A `remove` of a field that is not there
/// is skipped: Kamaji users remove fields its fully defaulted configuration
/// carries and older kubelets reject; kubeadm's configuration has none of them.
pub fn apply_patches(config: &mut Value, patches: &[Value]) -> Result<(), KubeadmConfigError> {
    for (index, raw) in patches.iter().enumerate() {
        let failed = |reason: String| KubeadmConfigError::KubeletPatch { index, reason };
        let operation: json_patch::PatchOperation =
            serde_json::from_value(raw.clone()).map_err(|e| failed(e.to_string()))?;
        if let json_patch::PatchOperation::Remove(remove) = &operation
            && config.pointer(remove.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(config, &[operation]).map_err(|e| failed(e.to_string()))?;
    }
    Ok(())
}

/// The API server's `--kubelet-preferred-address-types` for this tenant
/// (`spec.kubernetes.kubelet.preferredAddressTypes`, Kamaji's default otherwise).
pub fn kubelet_preferred_address_types(
    spec: &crate::api::TenantControlPlaneSpec,
) -> Result<String, KubeadmConfigError> {
    let kubelet = KubeletSpec::of_spec(spec)?;
    if kubelet.preferred_address_types.is_empty() {
        return Ok(DEFAULT_PREFERRED_ADDRESS_TYPES.join(","));
    }
    Ok(kubelet.preferred_address_types.join(","))
}

fn yaml(value: &Value, what: &'static str) -> Result<String, KubeadmConfigError> {
    serde_saphyr::to_string(value).map_err(|_| KubeadmConfigError::Encode(what))
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(SYSTEM_NAMESPACE.to_string()),
        labels: Some(BTreeMap::from([(
            MANAGED_BY.0.to_string(),
            MANAGED_BY.1.to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

fn config_map(name: &str, key: &str, document: String) -> ConfigMap {
    ConfigMap {
        metadata: meta(name),
        data: Some(BTreeMap::from([(key.to_string(), document)])),
        ..ConfigMap::default()
    }
}

fn read_config_map_role(name: &str, config_map: &str) -> Role {
    Role {
        metadata: meta(name),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec![config_map.into()]),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }]),
    }
}

fn nodes_and_tokens_binding(name: &str) -> RoleBinding {
    let group = |name: &str| Subject {
        kind: "Group".into(),
        name: name.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        namespace: None,
    };
    RoleBinding {
        metadata: meta(name),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.into(),
        },
        subjects: Some(vec![group(BOOTSTRAP_TOKEN_GROUP), group(NODES_GROUP)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(yaml: &str) -> TenantControlPlane {
        serde_saphyr::from_str(yaml).expect("a TenantControlPlane")
    }

    const BASIC: &str = "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  \
        name: k8s-133\n  namespace: tenants\nspec:\n  controlPlane:\n    deployment:\n      replicas: 1\n    \
        service:\n      serviceType: ClusterIP\n  kubernetes:\n    version: v1.37.2\n  networkProfile:\n    \
        port: 6443\n";

    fn inputs() -> JoinInputs<'static> {
        JoinInputs {
            endpoint: "127.0.0.1:6443",
            certificate_validity: crate::pki::authority::LEAF_VALIDITY,
            key_algorithm: KeyAlgorithm::EcdsaP256,
        }
    }

    fn parsed(cm: &ConfigMap, key: &str) -> Value {
        let raw = &cm.data.as_ref().expect("data")[key];
        serde_saphyr::from_str(raw).expect("YAML")
    }

    #[test]
    fn cluster_configuration_carries_the_tenant_endpoint_networking_and_pki_settings() {
        let objects = desired(&tcp(BASIC), &inputs()).expect("desired");
        let cm = &objects.kubeadm_config;
        assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(cm.metadata.name.as_deref(), Some("kubeadm-config"));
        let config = parsed(cm, "ClusterConfiguration");
        assert_eq!(config["apiVersion"], "kubeadm.k8s.io/v1beta4");
        assert_eq!(config["kind"], "ClusterConfiguration");
        assert_eq!(config["controlPlaneEndpoint"], "127.0.0.1:6443");
        assert_eq!(config["kubernetesVersion"], "v1.37.2");
        assert_eq!(config["clusterName"], "k8s-133");
        assert_eq!(config["networking"]["serviceSubnet"], "10.96.0.0/16");
        assert_eq!(config["networking"]["podSubnet"], "10.244.0.0/16");
        assert_eq!(config["networking"]["dnsDomain"], "cluster.local");
        assert_eq!(config["certificateValidityPeriod"], "8760h0m0s");
        assert_eq!(config["caCertificateValidityPeriod"], "87600h0m0s");
        assert_eq!(config["encryptionAlgorithm"], "ECDSA-P256");
        assert_eq!(config["dns"]["disabled"], true, "no coreDNS addon");
        assert_eq!(config["proxy"]["disabled"], true, "no kubeProxy addon");
    }

    #[test]
    fn addons_and_cert_sans_show_in_the_cluster_configuration() {
        let with = format!(
            "{BASIC}    certSANs: [tenant.example.com]\n  addons:\n    coreDNS: {{}}\n    kubeProxy: {{}}\n"
        );
        let config = cluster_configuration(&tcp(&with), &inputs());
        assert_eq!(config["dns"]["disabled"], false);
        assert_eq!(config["proxy"]["disabled"], false);
        assert_eq!(config["apiServer"]["certSANs"], json!(["tenant.example.com"]));
    }

    #[test]
    fn kubelet_configuration_has_kubeadm_defaults() {
        let objects = desired(&tcp(BASIC), &inputs()).expect("desired");
        let config = parsed(&objects.kubelet_config, "kubelet");
        assert_eq!(config["kind"], "KubeletConfiguration");
        assert_eq!(config["cgroupDriver"], "systemd");
        assert_eq!(config["clusterDNS"], json!(["10.96.0.10"]));
        assert_eq!(config["clusterDomain"], "cluster.local");
        assert_eq!(config["rotateCertificates"], true);
        assert_eq!(config["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(
            config["authentication"]["x509"]["clientCAFile"],
            "/etc/kubernetes/pki/ca.crt"
        );
        assert_eq!(config["authorization"]["mode"], "Webhook");
    }

    #[test]
    fn kamaji_kubelet_settings_are_honoured() {
        let mut tenant = tcp(BASIC);
        tenant.spec.network_profile.dns_service_ips = vec!["10.96.0.53".into()];
        tenant.spec.network_profile.cluster_domain = "tenant.local".into();
        tenant.spec.kubernetes.kubelet = Some(json!({
            "cgroupfs": "cgroupfs",
            "preferredAddressTypes": ["InternalIP"],
            "configurationJSONPatches": [
                {"op": "add", "path": "/featureGates", "value": {"KubeletCrashLoopBackOffMax": false}},
                {"op": "remove", "path": "/crashLoopBackOff"},
                {"op": "replace", "path": "/healthzPort", "value": 10249},
            ],
        }));
        let kubelet = KubeletSpec::of(&tenant).expect("kubelet spec");
        let config = kubelet_configuration(&tenant, &kubelet).expect("config");
        assert_eq!(config["cgroupDriver"], "cgroupfs");
        assert_eq!(config["clusterDNS"], json!(["10.96.0.53"]));
        assert_eq!(config["clusterDomain"], "tenant.local");
        assert_eq!(config["featureGates"]["KubeletCrashLoopBackOffMax"], false);
        assert_eq!(config["healthzPort"], 10249);
        assert!(config.get("crashLoopBackOff").is_none());
        assert_eq!(
            kubelet_preferred_address_types(&tenant.spec).expect("types"),
            "InternalIP"
        );
        assert_eq!(
            kubelet_preferred_address_types(&tcp(BASIC).spec).expect("types"),
            "InternalIP,ExternalIP,Hostname"
        );
    }

    #[test]
    fn a_patch_that_does_not_apply_is_an_error_naming_its_index() {
        let mut config = json!({"a": 1});
        let patches = vec![
            json!({"op": "add", "path": "/b", "value": 2}),
            json!({"op": "replace", "path": "/missing/deep", "value": 3}),
        ];
        match apply_patches(&mut config, &patches) {
            Err(KubeadmConfigError::KubeletPatch { index: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        let bogus = vec![json!({"op": "frobnicate", "path": "/a"})];
        assert!(matches!(
            apply_patches(&mut json!({}), &bogus),
            Err(KubeadmConfigError::KubeletPatch { index: 0, .. })
        ));
    }

    #[test]
    fn cluster_dns_is_the_tenth_service_address() {
        let v6 = BASIC.replace("port: 6443\n", "port: 6443\n    serviceCidr: fd00:10:96::/112\n");
        assert_eq!(cluster_dns(&tcp(&v6)).expect("dns"), ["fd00:10:96::a"]);
        let small = BASIC.replace("port: 6443\n", "port: 6443\n    serviceCidr: 10.0.0.0/24\n");
        assert_eq!(cluster_dns(&tcp(&small)).expect("dns"), ["10.0.0.10"]);
        let tiny = BASIC.replace("port: 6443\n", "port: 6443\n    serviceCidr: 10.0.0.0/30\n");
        assert!(cluster_dns(&tcp(&tiny)).is_err());
    }

    #[test]
    fn bootstrap_tokens_and_nodes_may_read_both_config_maps_and_nothing_else() {
        let objects = desired(&tcp(BASIC), &inputs()).expect("desired");
        for (role, binding, config_map) in [
            (&objects.roles[0], &objects.role_bindings[0], KUBEADM_CONFIG),
            (&objects.roles[1], &objects.role_bindings[1], KUBELET_CONFIG),
        ] {
            let rule = &role.rules.as_ref().expect("rules")[0];
            assert_eq!(rule.verbs, ["get"]);
            assert_eq!(
                rule.resource_names.as_deref(),
                Some(&[config_map.to_string()][..])
            );
            assert_eq!(binding.role_ref.name, role.metadata.name.clone().expect("name"));
            let subjects: Vec<_> = binding
                .subjects
                .iter()
                .flatten()
                .map(|s| (s.kind.as_str(), s.name.as_str()))
                .collect();
            assert_eq!(
                subjects,
                [("Group", BOOTSTRAP_TOKEN_GROUP), ("Group", NODES_GROUP)]
            );
        }
        assert_eq!(objects.len(), 6);
    }
}
