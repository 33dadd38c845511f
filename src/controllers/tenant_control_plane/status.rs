//! Writing the TenantControlPlane status: only when it changed, through the
//! status subresource, with our field manager.

use kube::{
    Api,
    api::{Patch, PatchParams},
};

use crate::{
    api::{TenantControlPlane, TenantControlPlaneStatus, labels},
    controllers::{Context, Error},
    tenant::meta::TenantRef,
};

/// Condition types other controllers own (`status.conditions` is a list keyed by type).
const FOREIGN_CONDITIONS: &[&str] = &[
    crate::controllers::certificate_lifecycle::CONDITION,
    crate::controllers::tenant_cluster::CONDITION,
];

/// Writes the status if it differs from what is stored; says whether it wrote.
pub async fn write(
    ctx: &Context,
    tcp: &TenantControlPlane,
    tenant: &TenantRef,
    status: TenantControlPlaneStatus,
) -> Result<bool, Error> {
    if tcp.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let api: Api<TenantControlPlane> = Api::namespaced(ctx.client.clone(), &tenant.namespace);
    // Conditions of other controllers (written with their own field manager) are kept
    // out of our apply: applying them would make them ours, and later drop them.
    let mut status = status;
    status
        .conditions
        .retain(|c| !FOREIGN_CONDITIONS.contains(&c.type_.as_str()));
    let patch = serde_json::json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1",
        "kind": "TenantControlPlane",
        "status": status,
    });
    api.patch_status(
        &tenant.name,
        &PatchParams::apply(labels::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube(
        "apply status",
        format!("tenantcontrolplane {}/{}", tenant.namespace, tenant.name),
    ))?;
    Ok(true)
}
