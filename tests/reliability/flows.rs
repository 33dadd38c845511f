//! The flows faults are injected into, each as the list of work items a user can
//! check on the stored objects: done or not, at any moment. At a fault, the items
//! not yet done are what the fault interrupted (a kill with some done and some
//! undone landed mid-batch); the flow has converged when every item is done.

use kamaji::api::{labels, rotation::CaRotationPhase};

use crate::tenant_state::{KUBECONFIGS, LEAVES, SECRETS, Snapshot};

/// The last work item of every flow: the status says the flow is done.
pub const SETTLED: &str = "status Ready";

/// A flow of work on one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// A new TenantControlPlane: every Secret, the Deployment, its rollout, Ready.
    Provisioning,
    /// `certs.kamaji.clastix.io/rotate=""` on every x509 and kubeconfig Secret.
    Rotation,
    /// `certs.kamaji.clastix.io/rotate=""` on `<tcp>-ca`: the prepare phase.
    CaPrepare,
    /// `certs.kamaji.clastix.io/complete-ca-rotation` on the TCP: the complete phase.
    CaComplete,
}

impl Flow {
    /// Rollouts (Deployment revisions) the flow makes: one per batch of material,
    /// two per CA rotation phase (DESIGN.md section 3: the bundle first, then the
    /// certificates issued by the new CA; the serving certificates, then the
    /// old CA retired).
    pub fn rollouts(self) -> i64 {
        match self {
            Flow::Provisioning | Flow::Rotation => 1,
            Flow::CaPrepare | Flow::CaComplete => 2,
        }
    }

    /// Each work item of the flow and whether it is done in `now`, relative to
    /// `before` (the tenant as it was when the flow was asked for).
    pub fn items(self, before: &Snapshot, now: &Snapshot) -> Vec<(String, bool)> {
        let mut items = match self {
            Flow::Provisioning => SECRETS
                .iter()
                .map(|s| (format!("Secret {s} written"), now.secrets.contains_key(*s)))
                .chain([("Deployment created".to_string(), now.deployment.is_some())])
                .collect(),
            Flow::Rotation => rotation_items(before, now),
            Flow::CaPrepare => prepare_items(before, now),
            Flow::CaComplete => complete_items(before, now),
        };
        let rolled = now.revision() >= before.revision() + self.rollouts() && now.runs_stored_material();
        items.push((format!("{} rollout(s) done", self.rollouts()), rolled));
        let settled = now.ready()
            && match self {
                Flow::CaPrepare => now.ca_phase() == Some(CaRotationPhase::Prepared),
                Flow::CaComplete => {
                    now.ca_phase() == Some(CaRotationPhase::Completed)
                        && !now.tcp_annotated(labels::COMPLETE_CA_ROTATION)
                }
                _ => true,
            };
        items.push((SETTLED.to_string(), settled));
        items
    }
}

/// Every x509 and kubeconfig Secret re-issued (every certificate new, the rotate
/// annotation holding its time).
fn rotation_items(before: &Snapshot, now: &Snapshot) -> Vec<(String, bool)> {
    LEAVES
        .iter()
        .map(|(s, _, _)| *s)
        .chain(KUBECONFIGS.iter().copied())
        .map(|suffix| {
            let rotated = match (before.issued(suffix), now.issued(suffix)) {
                (Some(old), Some(new)) => new.len() == old.len() && new.iter().all(|n| !old.contains(n)),
                _ => false,
            };
            let stamped = now.rotate.get(suffix).is_some_and(|v| !v.is_empty());
            (format!("{suffix} re-issued"), rotated && stamped)
        })
        .collect()
}

/// A new CA beside the old; every kubeconfig trusts both and holds a client
/// certificate of the new CA; the API server's kubelet client certificate too.
fn prepare_items(before: &Snapshot, now: &Snapshot) -> Vec<(String, bool)> {
    let new_ca = now
        .signing_ca()
        .filter(|ca| Some(ca) != before.signing_ca().as_ref());
    let mut items = vec![(
        "new CA stored beside the old".to_string(),
        new_ca.is_some() && now.previous_ca_kept(),
    )];
    let reissued = |suffix: &str| match (before.issued(suffix), now.issued(suffix)) {
        (Some(old), Some(new)) => new.iter().all(|n| !old.contains(n)),
        _ => false,
    };
    for suffix in KUBECONFIGS {
        let trusts_both = now.trusted_cas().len() == 2;
        items.push((format!("{suffix} on the new CA"), trusts_both && reissued(suffix)));
    }
    items.push((
        "api-server-kubelet-client-certificate on the new CA".to_string(),
        reissued("api-server-kubelet-client-certificate"),
    ));
    items
}

/// The serving certificate moved to the new CA and the old CA retired.
fn complete_items(before: &Snapshot, now: &Snapshot) -> Vec<(String, bool)> {
    let serving_moved = match (
        before.issued("api-server-certificate"),
        now.issued("api-server-certificate"),
    ) {
        (Some(old), Some(new)) => old != new,
        _ => false,
    };
    vec![
        ("serving certificate on the new CA".to_string(), serving_moved),
        (
            "old CA retired".to_string(),
            !now.previous_ca_kept() && now.trusted_cas().len() == 1,
        ),
    ]
}

/// The items not done.
pub fn undone(items: &[(String, bool)]) -> Vec<String> {
    items
        .iter()
        .filter(|(_, done)| !done)
        .map(|(what, _)| what.clone())
        .collect()
}
