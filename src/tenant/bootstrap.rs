//! What kubeadm's `init` creates inside a cluster for its certificates to be
//! usable, as desired objects of the tenant cluster (not the management one):
//!
//! - `kubeadm:cluster-admins` → `cluster-admin`: admin.conf's group grants nothing without it;
//! - `kubeadm:apiserver-kubelet-client` → `system:kubelet-api-admin` for the user
//!   `kube-apiserver-kubelet-client`: the API server's kubelet client is not a cluster-admin;
//! - the bootstrap-token bindings that let a joining node post a CSR, have it
//!   auto-approved and check its Node, and the binding that auto-approves kubelet
//!   client-certificate renewals (`selfnodeclient` for `system:nodes`);
//! - `kube-public/cluster-info`: the tenant CA and endpoint joining nodes discover,
//!   readable by `system:anonymous` through `kubeadm:bootstrap-signer-clusterinfo`.
//!
//! Pure: the tenant-cluster controller applies these with server-side apply.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::{
    api::{
        core::v1::ConfigMap,
        rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use crate::pki::kubeconfig::{Cluster, Kubeconfig, KubeconfigError, NamedCluster};

/// The group of kubeadm's default bootstrap tokens (`kubeadm token create`).
pub const BOOTSTRAP_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// The group of admin.conf's certificate (kubeadm ≥ 1.29).
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";
/// The group every kubelet client certificate carries.
pub const NODES_GROUP: &str = "system:nodes";
/// Namespace of the public bootstrap objects.
pub const PUBLIC_NAMESPACE: &str = "kube-public";
/// The ConfigMap joining nodes read before they trust the API server.
pub const CLUSTER_INFO: &str = "cluster-info";
/// Its data key holding the kubeconfig.
pub const CLUSTER_INFO_KEY: &str = "kubeconfig";
/// The Role and RoleBinding that make `cluster-info` readable anonymously.
pub const CLUSTER_INFO_RBAC: &str = "kubeadm:bootstrap-signer-clusterinfo";
/// The ClusterRole that lets bootstrap tokens read Nodes (kubeadm join checks the name is free).
pub const GET_NODES: &str = "kubeadm:get-nodes";
/// Label on every object kamaji-rs applies in a tenant.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kamaji-rs");

/// The user of the API server's kubelet client certificate (kubeadm's `APIServerKubeletClientCertCommonName`).
pub const APISERVER_KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// Who a binding grants its role to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grantee {
    /// A group, e.g. a certificate's O or a bootstrap token's group.
    Group(&'static str),
    /// A user, e.g. a certificate's CN.
    User(&'static str),
}

/// One ClusterRoleBinding of kubeadm's init, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Binding name (kubeadm's).
    pub name: &'static str,
    /// The ClusterRole bound.
    pub cluster_role: &'static str,
    /// Who it is bound to.
    pub grantee: Grantee,
}

/// kubeadm init's ClusterRoleBindings that certificates depend on.
pub const CLUSTER_ROLE_BINDINGS: &[Binding] = &[
    // admin.conf (O=kubeadm:cluster-admins) is cluster-admin only through this binding.
    Binding {
        name: "kubeadm:cluster-admins",
        cluster_role: "cluster-admin",
        grantee: Grantee::Group(CLUSTER_ADMINS_GROUP),
    },
    // The API server's kubelet client (no O since kubeadm 1.3x) reaches kubelets
    // (logs, exec, port-forward) only through this binding.
    Binding {
        name: "kubeadm:apiserver-kubelet-client",
        cluster_role: "system:kubelet-api-admin",
        grantee: Grantee::User(APISERVER_KUBELET_CLIENT_USER),
    },
    // A bootstrap token may create a CSR...
    Binding {
        name: "kubeadm:kubelet-bootstrap",
        cluster_role: "system:node-bootstrapper",
        grantee: Grantee::Group(BOOTSTRAP_TOKEN_GROUP),
    },
    // ...which csrapproving approves (SAR on certificatesigningrequests/nodeclient).
    Binding {
        name: "kubeadm:node-autoapprove-bootstrap",
        cluster_role: "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        grantee: Grantee::Group(BOOTSTRAP_TOKEN_GROUP),
    },
    // A kubelet renewing its own client certificate is approved (…/selfnodeclient).
    Binding {
        name: "kubeadm:node-autoapprove-certificate-rotation",
        cluster_role: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        grantee: Grantee::Group(NODES_GROUP),
    },
    // kubeadm join reads its Node before it bootstraps.
    Binding {
        name: GET_NODES,
        cluster_role: GET_NODES,
        grantee: Grantee::Group(BOOTSTRAP_TOKEN_GROUP),
    },
];

/// Everything kamaji-rs ensures in one tenant cluster, in apply order.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantObjects {
    /// ClusterRoles kubeadm creates (the built-in ones are the API server's).
    pub cluster_roles: Vec<ClusterRole>,
    /// [`CLUSTER_ROLE_BINDINGS`].
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// `kube-public/cluster-info`.
    pub cluster_info: ConfigMap,
    /// `kube-public/kubeadm:bootstrap-signer-clusterinfo`.
    pub cluster_info_role: Role,
    /// Binds it to `system:anonymous`.
    pub cluster_info_role_binding: RoleBinding,
}

impl TenantObjects {
    /// How many objects are applied.
    pub fn len(&self) -> usize {
        self.cluster_roles.len() + self.cluster_role_bindings.len() + 3
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(BTreeMap::from([(
            MANAGED_BY.0.to_string(),
            MANAGED_BY.1.to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

fn subject(grantee: Grantee) -> Subject {
    let (kind, name) = match grantee {
        Grantee::Group(name) => ("Group", name),
        Grantee::User(name) => ("User", name),
    };
    Subject {
        kind: kind.into(),
        name: name.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        namespace: None,
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
    }
}

/// A ClusterRoleBinding row as an object.
pub fn cluster_role_binding(binding: &Binding) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(binding.name, None),
        role_ref: role_ref("ClusterRole", binding.cluster_role),
        subjects: Some(vec![subject(binding.grantee)]),
    }
}

/// The `cluster-info` kubeconfig: one unnamed cluster with the CA and the
/// endpoint, no users and no contexts, as kubeadm writes it.
pub fn cluster_info_kubeconfig(ca_pem: &[u8], server: &str) -> Kubeconfig {
    Kubeconfig(kube::config::Kubeconfig {
        api_version: Some("v1".into()),
        clusters: vec![NamedCluster {
            cluster: Some(Cluster {
                certificate_authority_data: Some(base64::engine::general_purpose::STANDARD.encode(ca_pem)),
                server: Some(server.to_string()),
                ..Cluster::default()
            }),
            name: String::new(),
            ..NamedCluster::default()
        }],
        current_context: Some(String::new()),
        kind: Some("Config".into()),
        ..kube::config::Kubeconfig::default()
    })
}

/// The CA bundle a `cluster-info` ConfigMap hands to joining nodes, if it holds one.
pub fn cluster_info_ca(config_map: &ConfigMap) -> Option<Vec<u8>> {
    let raw = config_map.data.as_ref()?.get(CLUSTER_INFO_KEY)?;
    Kubeconfig::parse(raw.as_bytes()).ok()?.current_ca_pem().ok()?
}

/// The objects for a tenant whose CA is `ca_pem` and whose API server is at
/// `server` (`https://host:port`).
pub fn desired(ca_pem: &[u8], server: &str) -> Result<TenantObjects, KubeconfigError> {
    let kubeconfig = cluster_info_kubeconfig(ca_pem, server).to_yaml()?;
    Ok(TenantObjects {
        cluster_roles: vec![ClusterRole {
            metadata: meta(GET_NODES, None),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["nodes".into()]),
                verbs: vec!["get".into()],
                ..PolicyRule::default()
            }]),
            aggregation_rule: None,
        }],
        cluster_role_bindings: CLUSTER_ROLE_BINDINGS.iter().map(cluster_role_binding).collect(),
        cluster_info: ConfigMap {
            metadata: meta(CLUSTER_INFO, Some(PUBLIC_NAMESPACE)),
            // Only our key: the bootstrap signer adds `jws-kubeconfig-<token-id>` keys beside it.
            data: Some(BTreeMap::from([(CLUSTER_INFO_KEY.to_string(), kubeconfig)])),
            ..ConfigMap::default()
        },
        cluster_info_role: Role {
            metadata: meta(CLUSTER_INFO_RBAC, Some(PUBLIC_NAMESPACE)),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                resource_names: Some(vec![CLUSTER_INFO.into()]),
                verbs: vec!["get".into()],
                ..PolicyRule::default()
            }]),
        },
        cluster_info_role_binding: RoleBinding {
            metadata: meta(CLUSTER_INFO_RBAC, Some(PUBLIC_NAMESPACE)),
            role_ref: role_ref("Role", CLUSTER_INFO_RBAC),
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: "system:anonymous".into(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                namespace: None,
            }]),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn binding<'a>(objects: &'a TenantObjects, name: &str) -> &'a ClusterRoleBinding {
        objects
            .cluster_role_bindings
            .iter()
            .find(|b| b.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no binding {name}"))
    }

    fn subject(b: &ClusterRoleBinding) -> (&str, &str) {
        let s = &b.subjects.as_ref().expect("subjects")[0];
        (s.kind.as_str(), s.name.as_str())
    }

    #[test]
    fn admin_conf_group_is_bound_to_cluster_admin() {
        let objects = desired(CA, "https://127.0.0.1:6443").expect("desired");
        let b = binding(&objects, "kubeadm:cluster-admins");
        assert_eq!(b.role_ref.name, "cluster-admin");
        assert_eq!(subject(b), ("Group", "kubeadm:cluster-admins"));
    }

    #[test]
    fn the_api_server_kubelet_client_may_use_the_kubelet_api() {
        let objects = desired(CA, "https://127.0.0.1:6443").expect("desired");
        let b = binding(&objects, "kubeadm:apiserver-kubelet-client");
        assert_eq!(b.role_ref.name, "system:kubelet-api-admin");
        assert_eq!(subject(b), ("User", "kube-apiserver-kubelet-client"));
    }

    #[test]
    fn kubelet_csr_bindings_match_kubeadm() {
        let objects = desired(CA, "https://127.0.0.1:6443").expect("desired");
        let bootstrap = binding(&objects, "kubeadm:node-autoapprove-bootstrap");
        assert_eq!(
            bootstrap.role_ref.name,
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient"
        );
        assert_eq!(subject(bootstrap), ("Group", BOOTSTRAP_TOKEN_GROUP));
        let rotation = binding(&objects, "kubeadm:node-autoapprove-certificate-rotation");
        assert_eq!(
            rotation.role_ref.name,
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"
        );
        assert_eq!(subject(rotation), ("Group", "system:nodes"));
        let post = binding(&objects, "kubeadm:kubelet-bootstrap");
        assert_eq!(post.role_ref.name, "system:node-bootstrapper");
        // Every ClusterRole a binding names is built in or created with it.
        let created: Vec<_> = objects
            .cluster_roles
            .iter()
            .filter_map(|r| r.metadata.name.as_deref())
            .collect();
        assert_eq!(binding(&objects, GET_NODES).role_ref.name, GET_NODES);
        assert!(created.contains(&GET_NODES));
    }

    #[test]
    fn cluster_info_holds_the_ca_and_endpoint_and_is_readable_anonymously() {
        let objects = desired(CA, "https://10.0.0.7:6443").expect("desired");
        let cm = &objects.cluster_info;
        assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-public"));
        assert_eq!(cluster_info_ca(cm).as_deref(), Some(CA));
        let raw = &cm.data.as_ref().expect("data")[CLUSTER_INFO_KEY];
        let parsed = Kubeconfig::parse(raw.as_bytes()).expect("a kubeconfig");
        assert_eq!(parsed.clusters.len(), 1);
        let cluster = parsed.clusters[0].cluster.as_ref().expect("a cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.7:6443"));
        assert!(
            parsed.auth_infos.is_empty(),
            "cluster-info is public: no credentials"
        );
        let role = &objects.cluster_info_role;
        let rule = &role.rules.as_ref().expect("rules")[0];
        assert_eq!(rule.verbs, ["get"]);
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["cluster-info".to_string()][..])
        );
        let binding = &objects.cluster_info_role_binding;
        assert_eq!(binding.role_ref.name, CLUSTER_INFO_RBAC);
        assert_eq!(
            binding.subjects.as_ref().expect("subjects")[0].name,
            "system:anonymous"
        );
    }

    #[test]
    fn a_new_ca_changes_only_the_cluster_info() {
        let old = desired(CA, "https://127.0.0.1:6443").expect("desired");
        let new_ca = b"-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
        let new = desired(new_ca, "https://127.0.0.1:6443").expect("desired");
        assert_eq!(old.cluster_role_bindings, new.cluster_role_bindings);
        assert_ne!(old.cluster_info, new.cluster_info);
        assert_eq!(cluster_info_ca(&new.cluster_info).as_deref(), Some(&new_ca[..]));
    }
}
