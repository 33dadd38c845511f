//! A tenant's etcd user and role on an etcd DataStore that gives kamaji-rs its admin
//! certificate (`tlsConfig.clientCertificate`): given before the control plane is
//! deployed, taken back with the tenant's keys when the tenant is deleted.
//!
//! Each step reads first and writes only what is missing: an auth change bumps
//! etcd's auth revision, which makes every password-authenticated client of the
//! cluster authenticate again, so a pass that finds everything in place writes nothing.

use std::time::Instant;

use tracing::info;

use super::etcd_client::{ClientTls, EtcdClient, EtcdError, Permission};
use crate::{
    api::TenantControlPlane,
    controllers::{Context, Error},
    tenant::{
        datastore::{EtcdAdmin, schema_and_user},
        desired::Observed,
        etcd_access::EtcdAccess,
        meta::TenantRef,
    },
};

/// Connects to the DataStore's etcd as its admin.
pub async fn connect(endpoints: &[String], admin: &EtcdAdmin) -> Result<EtcdClient, EtcdError> {
    let tls = ClientTls {
        ca_pem: &admin.ca_pem,
        certificate_pem: &admin.certificate_pem,
        key_pem: &admin.key_pem,
    };
    EtcdClient::connect(endpoints, &tls).await
}

/// Gives the tenant its user, its role and the role's permission on its prefix.
/// Idempotent: what exists already is left as it is.
pub async fn grant(etcd: &EtcdClient, access: &EtcdAccess) -> Result<(), EtcdError> {
    let started = Instant::now();
    let mut written = Vec::new();
    let roles = match etcd.user_roles(&access.user).await? {
        Some(roles) => roles,
        None => {
            tolerate(etcd.user_add(&access.user).await, EtcdError::is_already_exists)
                .map_err(unknown_caller)?;
            written.push("user");
            Vec::new()
        }
    };
    let permissions = match etcd.role_permissions(&access.role).await? {
        Some(permissions) => permissions,
        None => {
            tolerate(etcd.role_add(&access.role).await, EtcdError::is_already_exists)?;
            written.push("role");
            Vec::new()
        }
    };
    if !permissions.contains(&Permission::readwrite(&access.key, &access.range_end)) {
        etcd.role_grant_readwrite(&access.role, &access.key, &access.range_end)
            .await?;
        written.push("permission");
    }
    if !roles.contains(&access.role) {
        etcd.user_grant_role(&access.user, &access.role).await?;
        written.push("grant");
    }
    if !written.is_empty() {
        info!(user = %access.user, role = %access.role, written = ?written, elapsed = ?started.elapsed(), "etcd access given");
    }
    Ok(())
}

/// What [`revoke`] removed.
#[derive(Debug, Default)]
pub struct Revoked {
    /// Whether the role existed.
    pub role: bool,
    /// Whether the user existed.
    pub user: bool,
    /// How many keys were under the tenant's prefix.
    pub keys: i64,
}

/// Takes the tenant's access back and deletes its keys, in Kamaji's order: the role
/// first (its API server, possibly still running, can write nothing more), then the
/// keys under its prefix, then the user. Idempotent: what is gone already is skipped.
pub async fn revoke(etcd: &EtcdClient, access: &EtcdAccess) -> Result<Revoked, EtcdError> {
    let role = removed(etcd.role_delete(&access.role).await)?;
    let keys = etcd.delete_range(&access.key, &access.range_end).await?;
    let user = removed(etcd.user_delete(&access.user).await)?;
    Ok(Revoked { role, user, keys })
}

/// etcd answers "user name not found" to a caller whose CN is no etcd user, even
/// when adding a user: say which user is missing.
fn unknown_caller(error: EtcdError) -> EtcdError {
    match error {
        EtcdError::Call { method, status } if status.message().ends_with("user name not found") => {
            let message = format!(
                "{}: the CN of the DataStore's tlsConfig.clientCertificate is no etcd user \
                 (it must be a user with the root role, e.g. root)",
                status.message()
            );
            EtcdError::Call {
                method,
                status: tonic::Status::new(status.code(), message),
            }
        }
        other => other,
    }
}

/// A result whose error `benign` says is success (e.g. "already exists").
fn tolerate(result: Result<(), EtcdError>, benign: fn(&EtcdError) -> bool) -> Result<(), EtcdError> {
    match result {
        Err(error) if !benign(&error) => Err(error),
        _ => Ok(()),
    }
}

/// A deletion's result: whether there was something to delete.
fn removed(result: Result<(), EtcdError>) -> Result<bool, EtcdError> {
    match result {
        Ok(()) => Ok(true),
        Err(error) if error.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}

/// The pass's etcd step. When the DataStore gives kamaji-rs its admin certificate,
/// the finalizer is set first (so whatever is created in etcd is removed when the
/// tenant is deleted, even after a crash in between), then the tenant's access is
/// given. A failure is a DataStore problem of the pass: what depends on the
/// DataStore (its certificate and config, the Deployment) waits and is retried with
/// backoff; the rest of the tenant goes on.
pub async fn give_access(
    ctx: &Context,
    tcp: &TenantControlPlane,
    tenant: &TenantRef,
    observed: &mut Observed,
) -> Result<(), Error> {
    let Ok(resolved) = &observed.datastore else {
        return Ok(());
    };
    let Some(admin) = &resolved.etcd_admin else {
        return Ok(());
    };
    super::finalizer::ensure(ctx, tcp, tenant).await?;
    let access = access_of(tcp, tenant);
    let given = async {
        let etcd = connect(&resolved.wiring.etcd_servers, admin).await?;
        grant(&etcd, &access).await
    };
    if let Err(error) = given.await {
        // Worded as every other DataStore problem of the pass (see observe).
        let unusable = Error::DataStoreUnusable {
            name: resolved.name.clone(),
            reason: format!(
                "cannot give tenant {}/{} its {}: {error}",
                tenant.namespace,
                tenant.name,
                access.describe()
            ),
        };
        observed.datastore = Err(unusable.to_string());
    }
    Ok(())
}

/// The tenant's user, role and key range, from its spec.
pub fn access_of(tcp: &TenantControlPlane, tenant: &TenantRef) -> EtcdAccess {
    let (schema, user) = schema_and_user(&tcp.spec, &tenant.namespace, &tenant.name);
    EtcdAccess::new(&schema, &user)
}
