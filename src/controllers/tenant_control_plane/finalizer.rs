//! The tenant's finalizer ([`FINALIZER`], Kamaji's name): set while kamaji-rs holds
//! an etcd user and role for the tenant, and removed once a deleted tenant's user,
//! role and keys are gone from its DataStore.
//!
//! Unlike Kamaji, which retries a cleanup forever, a DataStore that cannot be
//! cleaned up holds the tenant for [`CLEANUP_GRACE`] after its deletion and no
//! longer: then the finalizer is removed with a Warning naming what was left in etcd.
//! A DataStore that no longer exists holds nothing.

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::{datastore, etcd_auth, etcd_client::EtcdError, events};
use crate::{
    api::{TenantControlPlane, datastore::Driver},
    controllers::{Context, Error},
    tenant::{
        datastore::schema_and_user,
        etcd_access::{CLEANUP_GRACE, FINALIZER, cleanup_grace_over},
        meta::TenantRef,
    },
};

/// Adds the finalizer unless the tenant has it. The JSON patch tests the list it
/// extends: a concurrent change of the finalizers fails the pass instead of being lost.
pub async fn ensure(ctx: &Context, tcp: &TenantControlPlane, tenant: &TenantRef) -> Result<(), Error> {
    if tcp.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let patch = match &tcp.metadata.finalizers {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        Some(current) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    };
    patch_finalizers(ctx, tenant, patch, "add finalizer").await
}

/// A deleted tenant: with the finalizer, its etcd access and keys are removed and
/// then the finalizer; the owned objects go with the TenantControlPlane.
pub async fn finalize(ctx: &Context, tcp: &TenantControlPlane) -> Result<Action, Error> {
    let Some(index) = tcp.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(Action::await_change());
    };
    let tenant = TenantRef::of(tcp)?;
    match cleanup(ctx, tcp, &tenant).await {
        Ok(Cleanup::Done(note)) => {
            info!(tenant = %tenant.name, namespace = %tenant.namespace, %note, "datastore cleaned up");
            events::publish(ctx, tcp, EventType::Normal, "DataStoreCleanedUp", note).await;
        }
        Ok(Cleanup::Skipped(note)) => {
            warn!(tenant = %tenant.name, namespace = %tenant.namespace, %note, "datastore cleanup skipped");
            events::publish(ctx, tcp, EventType::Warning, "DataStoreCleanupSkipped", note).await;
        }
        Err(reason) if grace_over(tcp) => {
            let note = format!(
                "{reason}; gave up after {} and released the TenantControlPlane: remove the {} by hand",
                humantime::format_duration(CLEANUP_GRACE),
                etcd_auth::access_of(tcp, &tenant).describe()
            );
            warn!(tenant = %tenant.name, namespace = %tenant.namespace, %note, "datastore cleanup abandoned");
            events::publish(ctx, tcp, EventType::Warning, "DataStoreCleanupAbandoned", note).await;
        }
        Err(reason) => {
            return Err(Error::DataStoreCleanup {
                tenant: format!("{}/{}", tenant.namespace, tenant.name),
                reason,
            });
        }
    }
    let patch = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]);
    patch_finalizers(ctx, &tenant, patch, "remove finalizer").await?;
    Ok(Action::await_change())
}

/// How a deleted tenant's DataStore was dealt with.
enum Cleanup {
    /// Its etcd access and keys are gone (the note says what was removed).
    Done(String),
    /// Nothing kamaji-rs can remove (the note says why and what a human may want to).
    Skipped(String),
}

/// Removes the tenant's etcd role, keys and user; `Err` (retried) when the DataStore
/// cannot be reached or refuses.
async fn cleanup(ctx: &Context, tcp: &TenantControlPlane, tenant: &TenantRef) -> Result<Cleanup, String> {
    let resolved = match datastore::resolve(ctx, tcp).await {
        Ok(resolved) => resolved,
        Err(Error::DataStoreUnusable { name, reason }) if reason == "not found" => {
            return Ok(Cleanup::Skipped(format!(
                "DataStore {name} no longer exists: nothing to clean up in it"
            )));
        }
        Err(error) => return Err(error.to_string()),
    };
    let (schema, user) = schema_and_user(&tcp.spec, &tenant.namespace, &tenant.name);
    let Some(admin) = resolved.etcd_admin.as_ref() else {
        return Ok(Cleanup::Skipped(match resolved.driver {
            Driver::Etcd => format!(
                "DataStore {} gives no admin certificate (tlsConfig.clientCertificate): the keys under /{schema}/ are kept",
                resolved.name
            ),
            driver => format!(
                "kamaji-rs does not remove {} databases: schema {schema} and user {user} of DataStore {} are kept",
                driver.as_str(),
                resolved.name
            ),
        }));
    };
    let access = etcd_auth::access_of(tcp, tenant);
    let failed = |e: EtcdError| {
        format!(
            "DataStore {}: cannot remove the {} of tenant {}/{}: {e}",
            resolved.name,
            access.describe(),
            tenant.namespace,
            tenant.name
        )
    };
    let etcd = etcd_auth::connect(&resolved.wiring.etcd_servers, admin)
        .await
        .map_err(failed)?;
    let revoked = etcd_auth::revoke(&etcd, &access).await.map_err(failed)?;
    Ok(Cleanup::Done(format!(
        "DataStore {}: removed role {} ({}), user {} ({}) and {} keys under {}",
        resolved.name,
        access.role,
        if revoked.role { "deleted" } else { "already gone" },
        access.user,
        if revoked.user { "deleted" } else { "already gone" },
        revoked.keys,
        String::from_utf8_lossy(&access.key)
    )))
}

/// Whether the tenant was deleted longer than [`CLEANUP_GRACE`] ago.
fn grace_over(tcp: &TenantControlPlane) -> bool {
    let Some(deleted) = tcp.metadata.deletion_timestamp.as_ref() else {
        return false;
    };
    OffsetDateTime::from_unix_timestamp(deleted.0.as_second())
        .is_ok_and(|deleted| cleanup_grace_over(deleted, OffsetDateTime::now_utc()))
}

async fn patch_finalizers(
    ctx: &Context,
    tenant: &TenantRef,
    patch: serde_json::Value,
    verb: &'static str,
) -> Result<(), Error> {
    let object = format!("tenantcontrolplane {}/{}", tenant.namespace, tenant.name);
    let patch = json_patch_of(patch);
    let api: Api<TenantControlPlane> = Api::namespaced(ctx.client.clone(), &tenant.namespace);
    api.patch(&tenant.name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(Error::kube(verb, object))?;
    Ok(())
}

/// Our own JSON patch literals as the typed patch kube sends.
fn json_patch_of(patch: serde_json::Value) -> json_patch::Patch {
    serde_json::from_value(patch).expect("the finalizer patches are well-formed JSON patches")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_patches_are_json_patches() {
        for patch in [
            json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                   {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]),
            json!([{"op": "test", "path": "/metadata/finalizers", "value": ["x"]},
                   {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}]),
            json!([{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                   {"op": "remove", "path": "/metadata/finalizers/0"}]),
        ] {
            assert_eq!(json_patch_of(patch).0.len(), 2);
        }
    }
}
