//! `kamaji_tenant_status{namespace,tenant,status}`: each TenantControlPlane's
//! `status.kubernetesResources.version.status` as a one-hot gauge (1 for the
//! current status, 0 for the others), the way kube-state-metrics exports a pod's
//! phase. It is what the "stuck in CertificateAuthorityRotating" alert reads.
//!
//! Read from a reflector over TenantControlPlanes that the leader runs, so it is
//! exactly what is stored (the status a `kubectl get tcp` shows), whichever
//! controller wrote it; a standby exports no series. The same reflectors (and
//! one over DataStores) feed Kamaji's families ([`super::kamaji_metrics`]).

use std::{
    fmt::Write as _,
    sync::{Arc, RwLock},
};

use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use tokio::task::JoinHandle;

use crate::api::{DataStore, TenantControlPlane, tenant_control_plane::KubernetesVersionStatus};

/// Every value of [`KubernetesVersionStatus`], in Kamaji's order.
const STATUSES: [KubernetesVersionStatus; 9] = [
    KubernetesVersionStatus::Provisioning,
    KubernetesVersionStatus::CertificateAuthorityRotating,
    KubernetesVersionStatus::Upgrading,
    KubernetesVersionStatus::Migrating,
    KubernetesVersionStatus::Ready,
    KubernetesVersionStatus::NotReady,
    KubernetesVersionStatus::Sleeping,
    KubernetesVersionStatus::WriteLimited,
    KubernetesVersionStatus::Unknown,
];

/// The family name.
pub const METRIC: &str = "kamaji_tenant_status";

/// Shared handle: empty until [`TenantStatuses::start`] runs (on the leader).
#[derive(Clone, Default)]
pub struct TenantStatuses {
    store: Arc<RwLock<Option<Store<TenantControlPlane>>>>,
    datastores: Arc<RwLock<Option<Store<DataStore>>>>,
}

impl TenantStatuses {
    /// Starts the reflector; the returned task runs until aborted.
    pub fn start(&self, client: Client, namespace: Option<&str>) -> JoinHandle<()> {
        let datastores = self.reflect_datastores(Api::all(client.clone()));
        let api: Api<TenantControlPlane> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let (reader, writer) = reflector::store();
        if let Ok(mut slot) = self.store.write() {
            *slot = Some(reader);
        }
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            // Only the status is read: the spec and managed fields need not be kept.
            .modify(|tcp| {
                tcp.managed_fields_mut().clear();
                tcp.annotations_mut().clear();
            })
            .reflect(writer)
            .applied_objects();
        tokio::spawn(async move {
            let tenants = stream.for_each(|_| futures::future::ready(()));
            futures::future::join(tenants, datastores).await;
        })
    }

    /// The DataStore reflector (cluster-scoped: Kamaji's `kamaji_datastore_*` families).
    fn reflect_datastores(&self, api: Api<DataStore>) -> impl std::future::Future<Output = ()> + use<> {
        let (reader, writer) = reflector::store();
        if let Ok(mut slot) = self.datastores.write() {
            *slot = Some(reader);
        }
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|ds| ds.managed_fields_mut().clear())
            .reflect(writer)
            .applied_objects();
        stream.for_each(|_| futures::future::ready(()))
    }

    /// Appends the family (HELP, TYPE and one series per tenant and status).
    pub fn encode(&self, out: &mut String) {
        let tenants = match self.store.read() {
            Ok(slot) => slot.as_ref().map(Store::state).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let mut rows: Vec<(String, String, KubernetesVersionStatus)> = tenants
            .iter()
            .filter_map(|tcp| {
                let status = tcp
                    .status
                    .as_ref()?
                    .kubernetes_resources
                    .as_ref()?
                    .version
                    .as_ref()?
                    .status?;
                Some((tcp.namespace()?, tcp.name_any(), status))
            })
            .collect();
        rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        encode_rows(out, &rows);
        if let Ok(slot) = self.store.read()
            && slot.is_some()
        {
            let datastores = match self.datastores.read() {
                Ok(slot) => slot.as_ref().map(Store::state).unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            out.push_str(&super::kamaji_metrics::encode(&tenants, &datastores));
        }
    }
}

fn encode_rows(out: &mut String, rows: &[(String, String, KubernetesVersionStatus)]) {
    let _ = write!(
        out,
        "# HELP {METRIC} The status of each TenantControlPlane (status.kubernetesResources.version.status): \
         1 for the current one.\n# TYPE {METRIC} gauge\n"
    );
    for (namespace, tenant, current) in rows {
        for status in STATUSES {
            let _ = writeln!(
                out,
                "{METRIC}{{namespace=\"{}\",tenant=\"{}\",status=\"{}\"}} {}",
                escape(namespace),
                escape(tenant),
                status.as_str(),
                u8::from(status == *current)
            );
        }
    }
}

/// Label-value escaping of the text formats (names are DNS labels, so this is
/// only a safeguard).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_a_series_and_only_the_current_one_is_1() {
        let mut out = String::new();
        encode_rows(
            &mut out,
            &[(
                "ns".into(),
                "k8s-133".into(),
                KubernetesVersionStatus::CertificateAuthorityRotating,
            )],
        );
        assert!(out.starts_with("# HELP kamaji_tenant_status "));
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with("kamaji_tenant_status{"))
                .count(),
            9
        );
        assert!(out.contains(
            "kamaji_tenant_status{namespace=\"ns\",tenant=\"k8s-133\",status=\"CertificateAuthorityRotating\"} 1\n"
        ));
        assert!(
            out.contains("kamaji_tenant_status{namespace=\"ns\",tenant=\"k8s-133\",status=\"Ready\"} 0\n")
        );
    }

    #[test]
    fn a_standby_exports_the_family_without_series() {
        let mut out = String::new();
        TenantStatuses::default().encode(&mut out);
        assert_eq!(out.lines().count(), 2);
    }
}
