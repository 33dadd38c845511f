//! Kamaji's metric families, with Kamaji's names and label names, so its
//! dashboards and alerts read kamaji-rs (Kamaji release 26.8.2-edge,
//! `internal/metrics`): `kamaji_build_info`, `kamaji_tenant_control_plane_info`,
//! `kamaji_tenant_control_plane_status`, `kamaji_tenant_control_planes_current`,
//! `kamaji_datastore_info`, `kamaji_datastore_status`, `kamaji_datastores_current`.
//!
//! Derived at scrape time from what is stored (the leader's reflectors over
//! TenantControlPlanes and DataStores), as Kamaji refreshes them from a List:
//! a pure function of the objects, built with prometheus-client's collectors.

use std::borrow::Borrow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::api::{DataStore, TenantControlPlane, tenant_control_plane::KubernetesVersionStatus};

/// Kamaji's DataStore validation condition, whose status is `kamaji_datastore_status`'s `status`.
pub const DATASTORE_VALID_CONDITION: &str = "kamaji.clastix.io/DataStoreValidation";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
    dirty: String,
    repo: String,
    build_time: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantInfoLabels {
    tcp_namespace: String,
    tcp_name: String,
    kubernetes_version: String,
    datastore_driver: String,
    address: String,
    exposure_strategy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantStatusLabels {
    tcp_namespace: String,
    tcp_name: String,
    status: String,
    ready: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    ready: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DataStoreInfoLabels {
    datastore_name: String,
    driver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DataStoreStatusLabels {
    datastore_name: String,
    status: String,
    ready: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DataStoreCountLabels {
    datastore_name: String,
    ready: String,
    driver: String,
}

const DRIVERS: [&str; 4] = ["etcd", "MySQL", "PostgreSQL", "NATS"];

fn flag(value: bool) -> String {
    if value { "true" } else { "false" }.to_string()
}

fn gauge_family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

/// Kamaji's status label: the stored version status, `Unknown` when none.
fn tenant_status(tcp: &TenantControlPlane) -> KubernetesVersionStatus {
    tcp.status
        .as_ref()
        .and_then(|s| s.kubernetes_resources.as_ref())
        .and_then(|r| r.version.as_ref())
        .and_then(|v| v.status)
        .unwrap_or(KubernetesVersionStatus::Unknown)
}

fn tenant_info(tcp: &TenantControlPlane) -> TenantInfoLabels {
    let status = tcp.status.as_ref();
    let version = tcp.spec.kubernetes.version.trim();
    let driver = status
        .and_then(|s| s.storage.as_ref())
        .and_then(|s| s.driver.as_deref())
        .filter(|d| DRIVERS.contains(d))
        .unwrap_or("unknown");
    TenantInfoLabels {
        tcp_namespace: tcp.namespace().unwrap_or_default(),
        tcp_name: tcp.name_any(),
        kubernetes_version: if version.is_empty() { "unknown" } else { version }.to_string(),
        datastore_driver: driver.to_string(),
        // Kamaji: the assigned `<address>:<port>`, empty until one is known.
        address: status
            .and_then(|s| s.control_plane_endpoint.clone())
            .unwrap_or_default(),
        exposure_strategy: if tcp.spec.control_plane.gateway.is_some() {
            "gateway"
        } else {
            "service"
        }
        .to_string(),
    }
}

fn datastore_condition(conditions: &[Condition]) -> &'static str {
    match conditions
        .iter()
        .find(|c| c.type_ == DATASTORE_VALID_CONDITION)
        .map(|c| c.status.as_str())
    {
        Some("True") => "True",
        Some("False") => "False",
        _ => "Unknown",
    }
}

/// Kamaji's metric families, registered in one registry.
struct Families {
    build: Family<BuildLabels, Gauge>,
    tcp_info: Family<TenantInfoLabels, Gauge>,
    tcp_status: Family<TenantStatusLabels, Gauge>,
    tcp_count: Family<ReadyLabels, Gauge>,
    ds_info: Family<DataStoreInfoLabels, Gauge>,
    ds_status: Family<DataStoreStatusLabels, Gauge>,
    ds_count: Family<DataStoreCountLabels, Gauge>,
}

impl Families {
    fn register(registry: &mut Registry) -> Self {
        Self {
            build: gauge_family(registry, "kamaji_build_info", "Build information for Kamaji."),
            tcp_info: gauge_family(
                registry,
                "kamaji_tenant_control_plane_info",
                "Identity and high-level configuration information for TenantControlPlane resources.",
            ),
            tcp_status: gauge_family(
                registry,
                "kamaji_tenant_control_plane_status",
                "Current status and readiness of TenantControlPlane resources.",
            ),
            tcp_count: gauge_family(
                registry,
                "kamaji_tenant_control_planes_current",
                "Current number of TenantControlPlane resources by ready flag.",
            ),
            ds_info: gauge_family(
                registry,
                "kamaji_datastore_info",
                "Identity and high-level configuration information for DataStore resources.",
            ),
            ds_status: gauge_family(
                registry,
                "kamaji_datastore_status",
                "Current status and readiness of DataStore resources.",
            ),
            ds_count: gauge_family(
                registry,
                "kamaji_datastores_current",
                "Current number of DataStore resources by name, ready flag and driver.",
            ),
        }
    }

    fn record_build(&self) {
        self.build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                commit: option_env!("KAMAJI_GIT_COMMIT").unwrap_or("unknown").to_string(),
                dirty: option_env!("KAMAJI_GIT_DIRTY").unwrap_or("unknown").to_string(),
                repo: option_env!("KAMAJI_GIT_REPO").unwrap_or("kamaji-rs").to_string(),
                build_time: option_env!("KAMAJI_BUILD_TIME").unwrap_or("unknown").to_string(),
            })
            .set(1);
    }

    fn record_tenants(&self, tenants: &[impl Borrow<TenantControlPlane>]) {
        let (mut ready, mut not_ready) = (0, 0);
        for tcp in tenants {
            let tcp: &TenantControlPlane = tcp.borrow();
            let status = tenant_status(tcp);
            let is_ready = status == KubernetesVersionStatus::Ready;
            if is_ready {
                ready += 1;
            } else {
                not_ready += 1;
            }
            let info = tenant_info(tcp);
            self.tcp_status
                .get_or_create(&TenantStatusLabels {
                    tcp_namespace: info.tcp_namespace.clone(),
                    tcp_name: info.tcp_name.clone(),
                    status: status.as_str().to_string(),
                    ready: flag(is_ready),
                })
                .set(1);
            self.tcp_info.get_or_create(&info).set(1);
        }
        for (label, count) in [("true", ready), ("false", not_ready)] {
            self.tcp_count
                .get_or_create(&ReadyLabels { ready: label.into() })
                .set(count);
        }
    }

    fn record_datastore(&self, datastore: &DataStore) {
        let name = datastore.name_any();
        let driver = datastore.spec.driver.as_str().to_string();
        let status = datastore.status.as_ref();
        let is_ready = status.is_some_and(|s| s.ready);
        let condition = datastore_condition(status.map(|s| s.conditions.as_slice()).unwrap_or_default());
        self.ds_info
            .get_or_create(&DataStoreInfoLabels {
                datastore_name: name.clone(),
                driver: driver.clone(),
            })
            .set(1);
        self.ds_status
            .get_or_create(&DataStoreStatusLabels {
                datastore_name: name.clone(),
                status: condition.to_string(),
                ready: flag(is_ready),
            })
            .set(1);
        for state in [true, false] {
            self.ds_count
                .get_or_create(&DataStoreCountLabels {
                    datastore_name: name.clone(),
                    ready: flag(state),
                    driver: driver.clone(),
                })
                .set(i64::from(state == is_ready));
        }
    }
}

/// The Kamaji families for these objects, in the OpenMetrics text format
/// without the closing `# EOF` (the caller appends the families to its own).
pub fn encode(tenants: &[impl Borrow<TenantControlPlane>], datastores: &[impl Borrow<DataStore>]) -> String {
    let mut registry = Registry::default();
    let families = Families::register(&mut registry);
    families.record_build();
    families.record_tenants(tenants);
    for datastore in datastores {
        families.record_datastore(datastore.borrow());
    }
    let mut out = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(%error, "encoding Kamaji's metric families failed");
    }
    match out.trim_end().strip_suffix("# EOF") {
        Some(body) => body.to_string(),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        DataStoreSpec, TenantControlPlaneSpec, TenantControlPlaneStatus,
        datastore::{DataStoreStatus, Driver},
        tenant_control_plane::{KubernetesResourcesStatus, KubernetesSpec, StorageStatus, VersionStatus},
    };

    fn tenant(name: &str, status: Option<KubernetesVersionStatus>) -> TenantControlPlane {
        let mut tcp = TenantControlPlane::new(
            name,
            TenantControlPlaneSpec {
                kubernetes: KubernetesSpec {
                    version: "v1.37.2".into(),
                    ..KubernetesSpec::default()
                },
                ..TenantControlPlaneSpec::default()
            },
        );
        tcp.metadata.namespace = Some("ns".into());
        tcp.status = Some(TenantControlPlaneStatus {
            control_plane_endpoint: Some("192.0.2.1:6443".into()),
            kubernetes_resources: Some(KubernetesResourcesStatus {
                version: Some(VersionStatus {
                    version: None,
                    status,
                }),
                deployment: None,
            }),
            storage: Some(StorageStatus {
                driver: Some("etcd".into()),
                ..StorageStatus::default()
            }),
            ..TenantControlPlaneStatus::default()
        });
        tcp
    }

    #[test]
    fn tenants_and_datastores_are_exported_with_kamajis_names_and_labels() {
        let tenants = [
            tenant("ready", Some(KubernetesVersionStatus::Ready)),
            tenant("new", None),
        ];
        let mut datastore = DataStore::new(
            "default",
            DataStoreSpec {
                driver: Driver::Etcd,
                endpoints: vec!["etcd:2379".into()],
                basic_auth: None,
                tls_config: None,
            },
        );
        datastore.status = Some(DataStoreStatus {
            ready: true,
            ..DataStoreStatus::default()
        });
        let text = encode(&tenants.iter().collect::<Vec<_>>(), &[&datastore]);
        for line in [
            "kamaji_tenant_control_plane_status{tcp_namespace=\"ns\",tcp_name=\"ready\",status=\"Ready\",ready=\"true\"} 1",
            "kamaji_tenant_control_plane_status{tcp_namespace=\"ns\",tcp_name=\"new\",status=\"Unknown\",ready=\"false\"} 1",
            "kamaji_tenant_control_plane_info{tcp_namespace=\"ns\",tcp_name=\"ready\",kubernetes_version=\"v1.37.2\",datastore_driver=\"etcd\",address=\"192.0.2.1:6443\",exposure_strategy=\"service\"} 1",
            "kamaji_tenant_control_planes_current{ready=\"true\"} 1",
            "kamaji_tenant_control_planes_current{ready=\"false\"} 1",
            "kamaji_datastore_info{datastore_name=\"default\",driver=\"etcd\"} 1",
            "kamaji_datastore_status{datastore_name=\"default\",status=\"Unknown\",ready=\"true\"} 1",
            "kamaji_datastores_current{datastore_name=\"default\",ready=\"true\",driver=\"etcd\"} 1",
            "kamaji_datastores_current{datastore_name=\"default\",ready=\"false\",driver=\"etcd\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(
            text.contains(&format!(
                "kamaji_build_info{{version=\"{}\"",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
    }
}
