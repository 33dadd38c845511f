//! Every call the operator makes to the management cluster's API, as a table:
//! the source of the Helm chart's ClusterRole and leader-election Role (a test
//! renders the chart and requires its rules to equal this table, no more, no
//! less), and of the readiness check, which lists every watched kind.
//!
//! Each row names the files that make the calls; a unit test checks that those
//! files still do, so a row outlives its code only until the tests run. That
//! the table is complete is proven by the integration test that runs the whole
//! provisioning and rotation flow under the chart's ServiceAccount.
//!
//! `kamaji certs check-expiration` runs with the user's own credentials and is
//! not part of this table; neither are the calls into tenant clusters, which use
//! each tenant's super-admin credentials.

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, ListParams},
};

use crate::api::labels;

/// Where a grant lives in the chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The ClusterRole: tenants live in any namespace, DataStores are cluster-scoped.
    Cluster,
    /// The Role in the leader-election namespace.
    LeaderElection,
}

/// One resource and the verbs the operator uses on it.
#[derive(Clone, Copy, Debug)]
pub struct ApiAccess {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Version the code uses.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Resource (plural), with `/subresource` where one is used.
    pub resource: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Verbs, sorted.
    pub verbs: &'static [&'static str],
    /// ClusterRole or leader-election Role.
    pub scope: Scope,
    /// What the calls are for.
    pub why: &'static str,
    /// Source files making the calls, each with a string that shows the call.
    pub used_by: &'static [(&'static str, &'static str)],
}

/// The table. Server-side apply of an object that does not exist yet is
/// authorized as `create` as well as `patch`, hence `create` next to `patch`.
pub const API_ACCESS: &[ApiAccess] = &[
    ApiAccess {
        group: "kamaji.clastix.io",
        version: "v1alpha1",
        kind: "TenantControlPlane",
        resource: "tenantcontrolplanes",
        namespaced: true,
        verbs: &["get", "list", "patch", "watch"],
        scope: Scope::Cluster,
        why: "the controllers watch tenants; CertificateLifecycle reads a Secret's tenant; the etcd \
              finalizer, the CA rotation completion request and the managed-by claim are patched",
        used_by: &[
            ("src/controllers/tenant_control_plane/claim.rs", "Patch::Merge"),
            (
                "src/controllers/tenant_control_plane/mod.rs",
                "Controller::new(tcps",
            ),
            ("src/controllers/tenant_control_plane/finalizer.rs", "api.patch("),
            ("src/controllers/tenant_control_plane/status.rs", "api.patch("),
            ("src/controllers/tenant_cluster.rs", "Controller::new(tcps"),
            ("src/controllers/certificate_lifecycle.rs", ".get_opt("),
            ("src/runtime/tenant_status.rs", "watcher(api"),
        ],
    },
    ApiAccess {
        group: "kamaji.clastix.io",
        version: "v1alpha1",
        kind: "TenantControlPlane",
        resource: "tenantcontrolplanes/status",
        namespaced: true,
        verbs: &["patch"],
        scope: Scope::Cluster,
        why: "status, conditions and certificate checksums (server-side apply on /status)",
        used_by: &[
            ("src/controllers/tenant_control_plane/status.rs", "patch_status("),
            ("src/controllers/tenant_cluster.rs", "patch_status("),
            ("src/controllers/certificate_lifecycle.rs", "patch_status("),
        ],
    },
    ApiAccess {
        group: "kamaji.clastix.io",
        version: "v1alpha1",
        kind: "DataStore",
        resource: "datastores",
        namespaced: false,
        verbs: &["create", "get", "list", "patch", "watch"],
        scope: Scope::Cluster,
        why: "a tenant's DataStore is read; its tenants are reconciled again when it changes; \
              the finalizer that keeps a DataStore in use from deletion (server-side apply)",
        used_by: &[
            (
                "src/controllers/tenant_control_plane/datastore.rs",
                "Api<DataStore>",
            ),
            (
                "src/controllers/tenant_control_plane/mod.rs",
                "Api::<DataStore>::all",
            ),
            (
                "src/controllers/datastore.rs",
                "Controller::new(Api::<DataStore>::all",
            ),
            ("src/controllers/datastore.rs", "api.patch("),
        ],
    },
    ApiAccess {
        group: "kamaji.clastix.io",
        version: "v1alpha1",
        kind: "DataStore",
        resource: "datastores/status",
        namespaced: false,
        verbs: &["patch"],
        scope: Scope::Cluster,
        why: "DataStore status: usedBy, ready, the validation and deletion conditions",
        used_by: &[("src/controllers/datastore.rs", "patch_status(")],
    },
    ApiAccess {
        group: "",
        version: "v1",
        kind: "Secret",
        resource: "secrets",
        namespaced: true,
        verbs: &["create", "get", "list", "patch", "watch"],
        scope: Scope::Cluster,
        why: "tenant certificates and kubeconfigs (applied, watched by label), DataStore \
              CA and client certificate Secrets (read by name), rotation requests (annotated)",
        used_by: &[
            ("src/controllers/tenant_control_plane/apply.rs", "Patch::Apply"),
            ("src/controllers/tenant_control_plane/observe.rs", "get::<Secret>"),
            ("src/controllers/tenant_control_plane/datastore.rs", ".get_opt("),
            ("src/controllers/tenant_control_plane/mod.rs", ".owns(secrets"),
            (
                "src/controllers/certificate_lifecycle.rs",
                "Controller::new(secrets",
            ),
            ("src/controllers/certificate_lifecycle.rs", "Patch::Merge"),
            ("src/controllers/tenant_cluster.rs", "api.get_opt(name)"),
        ],
    },
    ApiAccess {
        group: "",
        version: "v1",
        kind: "Service",
        resource: "services",
        namespaced: true,
        verbs: &["create", "get", "list", "patch", "watch"],
        scope: Scope::Cluster,
        why: "each tenant's API server Service (read by name, applied, watched by label)",
        used_by: &[
            (
                "src/controllers/tenant_control_plane/observe.rs",
                "get::<Service>",
            ),
            ("src/controllers/tenant_control_plane/apply.rs", "Object::Service"),
            ("src/controllers/tenant_control_plane/mod.rs", ".owns(services"),
        ],
    },
    ApiAccess {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        resource: "configmaps",
        namespaced: true,
        verbs: &["create", "delete", "get", "patch"],
        scope: Scope::Cluster,
        why: "each konnectivity tenant's egress selector configuration (read by name, applied, \
              deleted when the addon is removed)",
        used_by: &[
            (
                "src/controllers/tenant_control_plane/observe.rs",
                "get::<ConfigMap>",
            ),
            (
                "src/controllers/tenant_control_plane/apply.rs",
                "Object::ConfigMap",
            ),
            ("src/controllers/tenant_control_plane/apply.rs", "api.delete("),
        ],
    },
    ApiAccess {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        resource: "deployments",
        namespaced: true,
        verbs: &["create", "get", "list", "patch", "watch"],
        scope: Scope::Cluster,
        why: "each tenant's control-plane Deployment (read by name, applied, watched by label for rollouts)",
        used_by: &[
            (
                "src/controllers/tenant_control_plane/observe.rs",
                "get::<Deployment>",
            ),
            (
                "src/controllers/tenant_control_plane/apply.rs",
                "Object::Deployment",
            ),
            ("src/controllers/tenant_control_plane/mod.rs", ".owns(deployments"),
        ],
    },
    ApiAccess {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        resource: "events",
        namespaced: true,
        verbs: &["create", "patch"],
        scope: Scope::Cluster,
        why: "events on tenants and Secrets (kube's Recorder creates, then patches repeats)",
        used_by: &[
            (
                "src/controllers/tenant_control_plane/events.rs",
                "recorder.publish(",
            ),
            ("src/controllers/certificate_lifecycle.rs", "recorder.publish("),
            ("src/controllers/tenant_cluster.rs", "recorder.publish("),
        ],
    },
    ApiAccess {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        resource: "leases",
        namespaced: true,
        verbs: &["create", "get", "patch"],
        scope: Scope::LeaderElection,
        why: "the leader-election Lease (kube-lease-manager: get, create if absent, patch to renew/release)",
        used_by: &[("src/runtime/leader.rs", "LeaseManagerBuilder::new")],
    },
];

/// Rows whose resource the controllers watch (the readiness check lists them).
pub fn watched() -> impl Iterator<Item = &'static ApiAccess> {
    API_ACCESS
        .iter()
        .filter(|a| a.verbs.contains(&"watch") && !a.resource.contains('/'))
}

/// Lists one object of every watched kind, as the controllers' watches do
/// (same namespace restriction, the project label on owned kinds). Fails with
/// what cannot be listed: a CRD not installed, a missing permission.
pub async fn list_watched(client: &Client, watch_namespace: Option<&str>) -> Result<(), String> {
    for access in watched() {
        let resource = ApiResource {
            group: access.group.into(),
            version: access.version.into(),
            api_version: if access.group.is_empty() {
                access.version.into()
            } else {
                format!("{}/{}", access.group, access.version)
            },
            kind: access.kind.into(),
            plural: access.resource.into(),
        };
        let api: Api<DynamicObject> = match (access.namespaced, watch_namespace) {
            (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
            _ => Api::all_with(client.clone(), &resource),
        };
        let mut params = ListParams::default().limit(1);
        if access.group.is_empty() || access.group == "apps" {
            params = params.labels(&format!("{}={}", labels::PROJECT, labels::PROJECT_VALUE));
        }
        api.list_metadata(&params)
            .await
            .map_err(|e| format!("listing {}: {e}", access.resource))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_points_at_code_that_makes_the_calls() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for access in API_ACCESS {
            assert!(!access.used_by.is_empty(), "{} names no code", access.resource);
            for (file, needle) in access.used_by {
                let source = std::fs::read_to_string(root.join(file))
                    .unwrap_or_else(|e| panic!("{}: {file}: {e}", access.resource));
                assert!(
                    source.contains(needle),
                    "{}: {file} no longer contains {needle:?}: update the table (and the chart)",
                    access.resource
                );
            }
        }
    }

    #[test]
    fn verbs_are_sorted_and_rows_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for access in API_ACCESS {
            let mut sorted = access.verbs.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted, access.verbs, "{}", access.resource);
            assert!(
                seen.insert((access.group, access.resource)),
                "{} twice",
                access.resource
            );
        }
    }
}
