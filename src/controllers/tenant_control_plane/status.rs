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
    crate::controllers::tenant_cluster::KUBELET_CLIENT_CONDITION,
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
    // The nodes' renewal is observed and written by the tenant-side controller.
    if let Some(rotation) = status
        .credentials
        .as_mut()
        .and_then(|c| c.rotation.as_mut())
        .and_then(|r| r.certificate_authorities.as_mut())
    {
        rotation.nodes = None;
    }
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

/// Removes [`labels::COMPLETE_CA_ROTATION`] from the TenantControlPlane once the
/// rotation it asked to complete is complete (or none was in progress).
pub async fn remove_completion_request(ctx: &Context, tenant: &TenantRef) -> Result<(), Error> {
    let api: Api<TenantControlPlane> = Api::namespaced(ctx.client.clone(), &tenant.namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {labels::COMPLETE_CA_ROTATION: null}}});
    api.patch(&tenant.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(
            "remove annotation",
            format!("tenantcontrolplane {}/{}", tenant.namespace, tenant.name),
        ))?;
    Ok(())
}
