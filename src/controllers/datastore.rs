//! DataStore status, as Kamaji writes it: `usedBy` (the tenants on it), the
//! `kamaji.clastix.io/DataStoreValidation` condition and `ready` (every Secret it
//! references is readable and usable), and the finalizer that keeps a DataStore
//! in use from being deleted under its tenants
//! (`kamaji.clastix.io/DataStoreAllowedDeletion` says why it waits).
//!
//! Everything is server-side applied, with `usedBy` a set: operators started with
//! `--watch-namespace` each own the entries of their own tenants (and their own
//! claim on the finalizer), so two of them sharing a DataStore neither fight nor
//! drop each other's tenants.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};
use tracing::{info, warn};

use crate::{
    api::{DataStore, TenantControlPlane, labels},
    controllers::{Context, Error, tenant_control_plane::datastore::material},
    runtime::kamaji_metrics::DATASTORE_VALID_CONDITION,
    tenant::status::set_condition_at,
};

/// Kamaji's finalizer on a DataStore used by tenants.
pub const FINALIZER: &str = "kamaji.clastix.io/TenantControlPlane";
/// Kamaji's condition on a DataStore being deleted.
pub const ALLOWED_DELETION_CONDITION: &str = "kamaji.clastix.io/DataStoreAllowedDeletion";
/// Secrets a DataStore references are not watched: validation is repeated this often.
const REVALIDATE: Duration = Duration::from_secs(300);

/// Runs the DataStore controller until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let tcps: Api<TenantControlPlane> = match &ctx.settings.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let default_datastore = ctx.settings.default_datastore.clone();
    Controller::new(Api::<DataStore>::all(client), watcher::Config::default())
        .watches(tcps, watcher::Config::default(), move |tcp| {
            used_datastore(&tcp, default_datastore.as_deref()).map(|name| ObjectRef::new(&name))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "datastore reconcile failed");
            }
        })
        .await;
}

fn error_policy(datastore: Arc<DataStore>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(datastore = %datastore.name_any(), reason = error.reason(), %error, "datastore reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// The DataStore a tenant is on: the one it was provisioned on, else the one it names,
/// else the manager's `--datastore`.
pub fn used_datastore(tcp: &TenantControlPlane, default_datastore: Option<&str>) -> Option<String> {
    let provisioned = tcp
        .status
        .as_ref()
        .and_then(|s| s.storage.as_ref())
        .and_then(|s| s.data_store_name.clone());
    provisioned
        .or_else(|| tcp.spec.data_store.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| default_datastore.map(str::to_owned))
}

/// `<namespace>/<name>` of the tenants on `datastore`, sorted.
pub fn used_by(tcps: &[TenantControlPlane], datastore: &str, default_datastore: Option<&str>) -> Vec<String> {
    let mut users: Vec<String> = tcps
        .iter()
        .filter(|tcp| used_datastore(tcp, default_datastore).as_deref() == Some(datastore))
        .map(|tcp| format!("{}/{}", tcp.namespace().unwrap_or_default(), tcp.name_any()))
        .collect();
    users.sort();
    users.dedup();
    users
}

/// This operator's field manager on DataStores: one per watched namespace.
fn field_manager(ctx: &Context) -> String {
    match &ctx.settings.watch_namespace {
        Some(ns) => format!("{}-datastore-{ns}", labels::FIELD_MANAGER),
        None => labels::FIELD_MANAGER.to_string(),
    }
}

async fn reconcile(datastore: Arc<DataStore>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = datastore.name_any();
    if datastore.annotations().contains_key(labels::PAUSED) {
        return Ok(Action::await_change());
    }
    let tcps: Api<TenantControlPlane> = match &ctx.settings.watch_namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let list = tcps
        .list(&Default::default())
        .await
        .map_err(Error::kube("list", "tenantcontrolplanes".to_string()))?;
    let users = used_by(&list.items, &name, ctx.settings.default_datastore.as_deref());
    let deleting = datastore.metadata.deletion_timestamp.is_some();
    if ctx.settings.watch_namespace.is_some() && users.is_empty() {
        // Another namespace's DataStore, or ours no longer: leave it to its operators.
        if manages(&datastore, &field_manager(&ctx)) {
            release(&ctx, &name).await?;
        }
        return Ok(Action::await_change());
    }
    claim(&ctx, &name, !users.is_empty()).await?;
    let stored = datastore.status.clone().unwrap_or_default();
    let validation = material(&ctx.client, &datastore, "validation").await.err();
    let conditions = conditions(&datastore, &users, validation.as_deref(), Timestamp::now());
    if let Some(reason) = &validation
        && stored.ready
    {
        warn!(datastore = %name, %reason, "datastore unusable");
    } else if validation.is_none() && !stored.ready {
        info!(datastore = %name, tenants = users.len(), "datastore ready");
    }
    let status = serde_json::json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1",
        "kind": "DataStore",
        "status": {
            "usedBy": users,
            "ready": validation.is_none(),
            "conditions": conditions,
            "observedGeneration": datastore.metadata.generation,
        },
    });
    // Applied every pass: an apply that changes nothing is not a write. Not once the
    // claim is released on a deleted DataStore, which may be gone by now.
    if !(deleting && users.is_empty()) {
        Api::<DataStore>::all(ctx.client.clone())
            .patch_status(
                &name,
                &PatchParams::apply(&field_manager(&ctx)).force(),
                &Patch::Apply(&status),
            )
            .await
            .map_err(Error::kube("apply status", format!("datastore {name}")))?;
    }
    Ok(Action::requeue(REVALIDATE))
}

/// The validation condition, and the deletion one while the DataStore is deleted.
fn conditions(
    datastore: &DataStore,
    users: &[String],
    invalid: Option<&str>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut conditions = datastore
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    set_condition_at(
        &mut conditions,
        DATASTORE_VALID_CONDITION,
        invalid.is_none(),
        if invalid.is_some() {
            "DataStoreUnusable"
        } else {
            "DataStoreIsValid"
        },
        invalid.unwrap_or_default().to_string(),
        datastore.metadata.generation,
        now,
    );
    if datastore.metadata.deletion_timestamp.is_some() {
        let used = !users.is_empty();
        set_condition_at(
            &mut conditions,
            ALLOWED_DELETION_CONDITION,
            !used,
            if used {
                "DataStoreStillUsed"
            } else {
                "DataStoreUnused"
            },
            if used {
                format!("still used by {}", users.join(", "))
            } else {
                String::new()
            },
            datastore.metadata.generation,
            now,
        );
    }
    conditions
}

/// This operator applied something to the DataStore.
fn manages(datastore: &DataStore, manager: &str) -> bool {
    datastore
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|m| m.manager.as_deref() == Some(manager))
}

/// Gives up everything this operator applied (its `usedBy` entries, its claim on the
/// finalizer): applying an object without them releases them.
async fn release(ctx: &Context, name: &str) -> Result<(), Error> {
    let empty = serde_json::json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1",
        "kind": "DataStore",
        "metadata": {"name": name},
    });
    let api = Api::<DataStore>::all(ctx.client.clone());
    let params = PatchParams::apply(&field_manager(ctx)).force();
    api.patch_status(name, &params, &Patch::Apply(&empty))
        .await
        .map_err(Error::kube("release status", format!("datastore {name}")))?;
    api.patch(name, &params, &Patch::Apply(&empty))
        .await
        .map_err(Error::kube("release finalizer", format!("datastore {name}")))?;
    Ok(())
}

/// Holds (or releases) this operator's claim on the finalizer: server-side apply of
/// `metadata.finalizers` as a set, so the finalizer goes once no operator holds it.
async fn claim(ctx: &Context, name: &str, hold: bool) -> Result<(), Error> {
    let finalizers: &[&str] = if hold { &[FINALIZER] } else { &[] };
    let patch = serde_json::json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1",
        "kind": "DataStore",
        "metadata": {"name": name, "finalizers": finalizers},
    });
    Api::<DataStore>::all(ctx.client.clone())
        .patch(
            name,
            &PatchParams::apply(&field_manager(ctx)).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::kube("apply finalizer", format!("datastore {name}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(
        namespace: &str,
        name: &str,
        spec_datastore: Option<&str>,
        provisioned_on: Option<&str>,
    ) -> TenantControlPlane {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kamaji.clastix.io/v1alpha1",
            "kind": "TenantControlPlane",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"dataStore": spec_datastore, "kubernetes": {"version": "v1.37.2"}},
            "status": {"storage": {"dataStoreName": provisioned_on}},
        }))
        .expect("a TenantControlPlane")
    }

    #[test]
    fn a_tenant_uses_the_datastore_it_was_provisioned_on_then_the_named_one_then_the_default() {
        let tenants = [
            tcp("a", "one", Some("etcd"), None),
            tcp("b", "two", None, None),
            tcp("a", "three", Some("other"), Some("etcd")),
            tcp("c", "four", Some("other"), None),
        ];
        assert_eq!(
            used_by(&tenants, "etcd", Some("etcd")),
            ["a/one", "a/three", "b/two"]
        );
        assert_eq!(used_by(&tenants, "etcd", None), ["a/one", "a/three"]);
        assert_eq!(used_by(&tenants, "other", None), ["c/four"]);
    }
}
