//! The TenantControlPlane reconciler (DESIGN.md section 3), a pipeline:
//! **observe** the tenant's objects by name, compute the **desired** objects
//! (pure, [`crate::tenant::desired`]), **apply** them in one loop, **derive** the
//! status (pure, [`crate::tenant::derive`]) and write it once. Every step is
//! derived from what is stored, so a restarted operator converges from wherever
//! the last one stopped.

pub mod apply;
mod claim;
pub mod datastore;
pub mod etcd_auth;
pub mod etcd_client;
pub mod events;
pub mod finalizer;
pub mod observe;
pub mod status;

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::Service},
    jiff::Timestamp,
};
use kube::{
    Api, ResourceExt,
    runtime::{
        Controller,
        controller::{Action, Config as ControllerConfig},
        events::EventType,
        reflector::ObjectRef,
        watcher,
    },
};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::{
    api::{
        DataStore, TenantControlPlane, labels,
        tenant_control_plane::{KubernetesVersionStatus, TenantControlPlaneStatus},
    },
    controllers::{Context, Error},
    pki::IssueParams,
    tenant::{
        datastore::{SOURCE_EXPIRING_RECHECK, source_expiry_warning},
        derive,
        desired::{self, Desired, Observed, Problem},
        meta::TenantRef,
    },
};

/// Runs the controller until the stream ends (shutdown).
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let (tcps, secrets, deployments, services): (
        Api<TenantControlPlane>,
        Api<_>,
        Api<Deployment>,
        Api<Service>,
    ) = match &ctx.settings.watch_namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // Owned objects are watched through our label only: never every Secret of the cluster.
    let owned = watcher::Config::default().labels(&format!("{}={}", labels::PROJECT, labels::PROJECT_VALUE));
    let controller = Controller::new(tcps, watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(ctx.settings.max_concurrent_reconciles))
        .owns(secrets, owned.clone())
        .owns(deployments, owned.clone())
        .owns(services, owned);
    let store = controller.store();
    let default_datastore = ctx.settings.default_datastore.clone();
    controller
        .watches(
            Api::<DataStore>::all(client),
            watcher::Config::default(),
            move |datastore| {
                let name = datastore.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|tcp| tcp.spec.data_store.as_ref().or(default_datastore.as_ref()) == Some(&name))
                    .map(|tcp| ObjectRef::from_obj(&*tcp))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "tenant control plane reconcile failed");
            }
        })
        .await;
}

/// Retries a failed pass with exponential backoff and jitter; an error is
/// reported as a Warning event once, not again while it repeats.
pub fn error_policy(tcp: Arc<TenantControlPlane>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(CONTROLLER, error.reason());
    let namespace = tcp.namespace().unwrap_or_default();
    let retry = ctx
        .retries
        .failed(CONTROLLER, &namespace, &tcp.name_any(), &error.to_string());
    warn!(tenant = %tcp.name_any(), %namespace, reason = error.reason(), %error, retry_in = ?retry.after, "reconcile failed");
    if retry.report {
        let (note, reason) = (error.to_string(), error.reason());
        tokio::spawn(async move {
            events::publish(&ctx, &tcp, EventType::Warning, reason, note).await;
        });
    }
    Action::requeue(retry.after)
}

/// The `controller` label of this controller's metrics.
pub const CONTROLLER: &str = "tenantcontrolplane";

/// One pass over a tenant: observe, desired, apply, derive.
pub async fn reconcile(tcp: Arc<TenantControlPlane>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    if let Some(action) = claim::not_ours(&ctx, &tcp).await? {
        return Ok(action);
    }
    if tcp.metadata.deletion_timestamp.is_some() {
        // Before the paused check: a deleted tenant is never held by its annotation.
        return finalizer::finalize(&ctx, &tcp).await;
    }
    if tcp.annotations().contains_key(labels::PAUSED) {
        info!(tenant = %tcp.name_any(), "paused: {} is set", labels::PAUSED);
        return Ok(Action::await_change());
    }
    let tenant = TenantRef::of(&tcp)?;
    let mut observed = observe::observe(&ctx, &tcp, &tenant).await?;
    etcd_auth::give_access(&ctx, &tcp, &tenant, &mut observed).await?;
    let (desired, observed) = compute(&ctx, &tcp, &tenant, observed).await?;
    if desired.ca_rotation {
        let (reason, note) = events::ca_phase_note(&tenant, &desired);
        events::publish(&ctx, &tcp, EventType::Normal, reason, note).await;
        // Announced before the CA Secret is written: a crash in between never leaves `Ready` stored.
        status::write(&ctx, &tcp, &tenant, derive::announce_ca_rotation(&tcp)).await?;
    }
    let stored = apply::apply(&ctx, &tenant, observed, &desired.objects).await?;
    if desired.remove_completion_request {
        // After the completion is stored: a crash before this line completes nothing twice.
        status::remove_completion_request(&ctx, &tenant).await?;
    }
    if !desired.rotated.is_empty() {
        let rotated: Vec<String> = desired
            .rotated
            .iter()
            .map(|(n, r)| format!("{n} ({r})"))
            .collect();
        info!(tenant = %tenant.name, namespace = %tenant.namespace, secrets = ?rotated, "re-issued");
    }
    let status = derive::status(&derive::Inputs {
        tcp: &tcp,
        tenant: &tenant,
        endpoint: desired.endpoint.as_deref(),
        secrets: &stored.secrets,
        deployment: stored.deployment.as_ref(),
        datastore: stored
            .datastore
            .as_ref()
            .ok()
            .map(|d| (d.name.as_str(), d.driver.as_str())),
        problems: &desired.problems,
        ca_rotation_waiting_for: desired.ca_rotation_waiting_for.as_deref(),
        now: Timestamp::now(),
    });
    events::publish_outcome(&ctx, &tcp, &desired, &status).await;
    let source_expiring = datastore_source_warning(&ctx, &tcp, &stored).await;
    let action = next_action(&desired, &status, source_expiring);
    status::write(&ctx, &tcp, &tenant, status).await?;
    if let Some(retry) = datastore_retry(&desired.problems) {
        // Everything that does not depend on the DataStore is done; retry the rest with backoff.
        return Err(retry);
    }
    ctx.retries.succeeded(CONTROLLER, &tenant.namespace, &tenant.name);
    Ok(action)
}

/// The error that retries a pass whose DataStore was unusable, worded as the pass
/// worded the problem.
fn datastore_retry(problems: &[Problem]) -> Option<Error> {
    problems.iter().find_map(|problem| match problem {
        Problem::DataStore(reason) => Some(Error::DataStoreProblem(reason.clone())),
        _ => None,
    })
}

/// The desired objects, computed off the async runtime (issuing generates keys).
async fn compute(
    ctx: &Context,
    tcp: &TenantControlPlane,
    tenant: &TenantRef,
    observed: Observed,
) -> Result<(Desired, Observed), Error> {
    let mut params = IssueParams::new(OffsetDateTime::now_utc());
    params.algorithm = ctx.settings.key_algorithm;
    params.validity = ctx.settings.certificate_validity;
    let provisioned = tcp
        .status
        .as_ref()
        .and_then(|s| s.certificates.as_ref())
        .and_then(|c| c.ca.as_ref())
        .and_then(|c| c.checksum.as_ref())
        .is_some();
    let (tenant, spec) = (tenant.clone(), tcp.spec.clone());
    let (batch_window, tokens) = (ctx.settings.batch_window, ctx.settings.tokens);
    let ca_rotation = desired::CaRotationInputs {
        complete_requested: tcp.annotations().contains_key(labels::COMPLETE_CA_ROTATION),
        nodes: tcp.status.as_ref().and_then(|s| s.ca_rotation_nodes().cloned()),
        grace: ctx.settings.ca_rotation_grace,
        start_percent: ctx.settings.ca_rotation_start_percent,
    };
    let superseded_groups_granted = kubelet_client_authorized(tcp);
    tokio::task::spawn_blocking(move || {
        let inputs = desired::Inputs {
            tenant: &tenant,
            spec: &spec,
            provisioned,
            params,
            batch_window,
            tokens,
            ca_rotation,
            superseded_groups_granted,
        };
        (desired::desired(&inputs, &observed), observed)
    })
    .await
    .map_err(|e| Error::IssuanceTask(e.to_string()))
}

/// A Warning when the client certificate copied from a non-etcd DataStore expires
/// within the deadline at its source; says whether one was posted.
async fn datastore_source_warning(ctx: &Context, tcp: &TenantControlPlane, stored: &Observed) -> bool {
    let Some((name, copied)) = stored
        .datastore
        .as_ref()
        .ok()
        .and_then(|d| Some((d.name.as_str(), d.copied_certificate.as_ref()?)))
    else {
        return false;
    };
    let deadline = ctx.settings.certificate_expiration_deadline;
    let Some(warning) = source_expiry_warning(name, copied, deadline, OffsetDateTime::now_utc()) else {
        return false;
    };
    events::publish(
        ctx,
        tcp,
        EventType::Warning,
        "DataStoreCertificateExpiring",
        warning,
    )
    .await;
    true
}

/// The tenant-side controller applied `kubeadm:apiserver-kubelet-client` in the
/// tenant: the API server's kubelet client may drop `kubeadm:cluster-admins`.
fn kubelet_client_authorized(tcp: &TenantControlPlane) -> bool {
    tcp.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == crate::controllers::tenant_cluster::KUBELET_CLIENT_CONDITION && c.status == "True"
        })
    })
}

/// When to look again. Nothing is requeued on a timer unless something will
/// change then: a held rollout, previous service-account keys to retire, a
/// rollout in progress, a copied certificate expiring at its source. Everything else wakes the tenant through its watches.
fn next_action(desired: &Desired, status: &TenantControlPlaneStatus, source_expiring: bool) -> Action {
    let timer = [desired.rollout_held_for, desired.next_change_in]
        .into_iter()
        .flatten()
        .min();
    if let Some(wait) = timer {
        return Action::requeue(wait + Duration::from_millis(100));
    }
    let version = status
        .kubernetes_resources
        .as_ref()
        .and_then(|r| r.version.as_ref())
        .and_then(|v| v.status);
    let rolling = matches!(
        version,
        Some(
            KubernetesVersionStatus::Provisioning
                | KubernetesVersionStatus::CertificateAuthorityRotating
                | KubernetesVersionStatus::Upgrading
        )
    );
    if source_expiring {
        // The source Secret is not watched: look again later, without a retry storm.
        Action::requeue(SOURCE_EXPIRING_RECHECK)
    } else if rolling && desired.endpoint.is_some() {
        // The Deployment's status wakes us; this is only a safety net while it rolls.
        Action::requeue(Duration::from_secs(60))
    } else {
        Action::await_change()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datastore_retry_names_the_datastore_once_as_the_pass_worded_it() {
        let problems = [
            Problem::WaitingForAddress("tenant-00".into()),
            Problem::DataStore("DataStore default: not found".into()),
        ];
        let retry = datastore_retry(&problems).map(|e| (e.reason(), e.to_string()));
        assert_eq!(
            retry,
            Some(("DataStoreUnusable", "DataStore default: not found".to_string()))
        );
        assert!(datastore_retry(&problems[..1]).is_none());
    }
}
