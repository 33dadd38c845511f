//! The reconciler's first step: is this tenant ours ([`crate::tenant::ownership`])?
//! An unclaimed tenant is claimed with the annotation, conditional on the version
//! read (of two instances claiming at once, one gets a conflict and backs off).

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};
use tracing::info;

use crate::{
    api::TenantControlPlane,
    controllers::{Context, Error},
    tenant::ownership::{MANAGED_BY, Owner, not_ours_note, owner},
};

use super::events;

/// `Some` (what to do instead of reconciling) when the tenant is another operator's.
pub async fn not_ours(ctx: &Context, tcp: &TenantControlPlane) -> Result<Option<Action>, Error> {
    let identity = &ctx.settings.identity;
    let (namespace, name) = (tcp.namespace().unwrap_or_default(), tcp.name_any());
    let found = owner(&tcp.metadata, identity);
    match &found {
        Owner::Us => Ok(None),
        // Nothing to claim on the way out: what it holds is finished as it is.
        Owner::Unclaimed if tcp.metadata.deletion_timestamp.is_some() => Ok(None),
        Owner::Unclaimed => {
            let patch = serde_json::json!({"metadata": {
                "resourceVersion": tcp.resource_version(),
                "annotations": {MANAGED_BY: identity},
            }});
            Api::<TenantControlPlane>::namespaced(ctx.client.clone(), &namespace)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::kube(
                    "claim",
                    format!("tenantcontrolplane {namespace}/{name}"),
                ))?;
            info!(tenant = %name, %namespace, %identity, "claimed");
            Ok(None)
        }
        Owner::Operator(_) | Owner::Kamaji => {
            let note = not_ours_note(&found, &namespace, &name).unwrap_or_default();
            info!(tenant = %name, %namespace, "{note}");
            let reason = if found == Owner::Kamaji {
                "ManagedByKamaji"
            } else {
                "ManagedByAnotherOperator"
            };
            events::publish(ctx, tcp, EventType::Warning, reason, note).await;
            Ok(Some(Action::await_change()))
        }
    }
}
