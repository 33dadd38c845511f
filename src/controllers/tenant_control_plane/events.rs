//! The events of a pass, decided from its outcome: what was re-issued, a CA
//! rotation starting or completing, and problems not already reported in the
//! previous status (a problem that persists is not re-posted on every pass).

use kube::{
    Resource,
    runtime::events::{Event, EventType},
};
use tracing::warn;

use crate::{
    api::{
        TenantControlPlane, TenantControlPlaneStatus, rotation::CaRotationPhase,
        tenant_control_plane::KubernetesVersionStatus,
    },
    controllers::Context,
    tenant::{
        certificates::{self, Reason},
        desired::{Desired, Problem},
        meta::{TenantRef, suffix},
    },
};

/// Publishes one event on the tenant (failures to publish are logged, not fatal).
pub async fn publish(ctx: &Context, tcp: &TenantControlPlane, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        // Event notes are limited to 1 KiB by the API server.
        note: Some(crate::controllers::truncate(note, 1000)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &tcp.object_ref(&())).await {
        warn!(%error, reason, "publishing an event failed");
    }
}

/// The reason of a problem's Warning event.
pub fn problem_reason(problem: &Problem) -> &'static str {
    match problem {
        Problem::WaitingForAddress(_) => "WaitingForAddress",
        Problem::DataStore(_) => "DataStoreUnusable",
        Problem::DriverNotSupported(_) => "DriverNotSupported",
        Problem::SecretType { .. } => "SecretTypeMismatch",
        Problem::RotateAnnotation { .. } => "InvalidRotateAnnotation",
        Problem::Pki(certificates::Problem::Unreadable { .. }) => "CertificateUnreadable",
        Problem::Pki(certificates::Problem::CaWithoutKey { .. }) => "ExternallyManagedCa",
        Problem::Pki(certificates::Problem::IssueFailed { .. }) => "IssueFailed",
    }
}

/// Whether the previous status already reports `problem` (in one of its conditions).
fn already_reported(previous: Option<&TenantControlPlaneStatus>, problem: &Problem) -> bool {
    let text = problem.to_string();
    previous.into_iter().flat_map(|s| s.conditions.iter()).any(|c| {
        c.status != "True" && c.message.contains(&text)
            || c.type_ == "DriverNotSupported" && c.message == text
    })
}

/// Events of a pass whose outcome is `desired` and whose new status is `status`.
pub async fn publish_outcome(
    ctx: &Context,
    tcp: &TenantControlPlane,
    desired: &Desired,
    status: &TenantControlPlaneStatus,
) {
    if !desired.rotated.is_empty() {
        // With why: a user who broke a leaf reads what was wrong with it.
        let names: Vec<String> = desired
            .rotated
            .iter()
            .map(|(name, reason)| format!("{name} ({reason})"))
            .collect();
        publish(
            ctx,
            tcp,
            EventType::Normal,
            "Rotated",
            format!("re-issued {}", names.join(", ")),
        )
        .await;
    }
    for problem in &desired.problems {
        if matches!(problem, Problem::WaitingForAddress(_)) || already_reported(tcp.status.as_ref(), problem)
        {
            continue;
        }
        publish(
            ctx,
            tcp,
            EventType::Warning,
            problem_reason(problem),
            problem.to_string(),
        )
        .await;
    }
    let version = |s: &TenantControlPlaneStatus| {
        s.kubernetes_resources
            .as_ref()
            .and_then(|r| r.version.as_ref())
            .and_then(|v| v.status)
    };
    let was_rotating =
        tcp.status.as_ref().and_then(version) == Some(KubernetesVersionStatus::CertificateAuthorityRotating);
    if was_rotating && version(status).is_some_and(KubernetesVersionStatus::serving) {
        let (reason, note) = match status.ca_rotation_phase() {
            Some(CaRotationPhase::Prepared) => (
                "CaRotationPrepared",
                "the control plane trusts the old and the new CA; clients hold new-CA certificates, \
                 the API server still serves an old-CA one"
                    .to_string(),
            ),
            _ => (
                "CaRotationCompleted",
                "the control plane runs with the new CA only".to_string(),
            ),
        };
        publish(ctx, tcp, EventType::Normal, reason, note).await;
    }
}

/// The event announcing a change of the tenant CA's phase in this pass.
pub fn ca_phase_note(tenant: &TenantRef, desired: &Desired) -> (&'static str, String) {
    let ca = tenant.object_name(suffix::CA);
    let reason = desired
        .rotated
        .iter()
        .find(|(name, _)| *name == ca)
        .map(|(_, reason)| reason);
    match reason {
        Some(Reason::RotationCompleted) => (
            "CaRotationCompleting",
            format!(
                "completing the rotation of {ca}: the old CA is retired, serving certificates move to the new \
                 CA (with the new CA cross-signed by the old one as intermediate), the control plane rolls once"
            ),
        ),
        Some(Reason::CaDeleted) => (
            "CaRecreated",
            format!(
                "{ca} was deleted: a new CA replaces it at once, everything it signs is re-issued and the control \
                 plane rolled once; nodes and downloaded kubeconfigs need the new CA"
            ),
        ),
        _ => (
            "CaRotationStarted",
            format!(
                "preparing the rotation of {ca}: a new CA beside the old one, every bundle trusts both, client \
                 certificates are re-issued under the new CA, the control plane rolls once"
            ),
        ),
    }
}
