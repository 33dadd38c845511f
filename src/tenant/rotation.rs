//! When a prepared CA rotation completes (pure). Completing retires the old CA:
//! from then on nothing it signed is accepted, so it waits for what the operator
//! can verify (the control plane runs the prepared material; every worker node's
//! kubelet client certificate was issued by the new CA, as observed in the tenant)
//! and for a grace period after the start, unless a person asks for it at once
//! with [`crate::api::labels::COMPLETE_CA_ROTATION`] on the TenantControlPlane.

use std::time::Duration;

use time::OffsetDateTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::rotation::{CaRotation, CaRotationPhase, NodeCredentials};

/// What the decision is made from.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The completion annotation is on the TenantControlPlane.
    pub requested: bool,
    /// The control plane runs with the prepared material and nothing is left to re-issue.
    pub rolled_out: bool,
    /// The signing CA's serial (the new CA).
    pub signing_ca_serial: &'a str,
    /// What the tenant-side controller observed of the nodes, if anything.
    pub nodes: Option<&'a NodeCredentials>,
    /// When the rotation started.
    pub initiated_at: Option<OffsetDateTime>,
    /// How long after the start completion may happen by itself.
    pub grace: Duration,
    /// Now.
    pub now: OffsetDateTime,
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Complete now, and why.
    Complete(String),
    /// Not yet: what it waits for, and when to look again (if time alone will change it).
    Wait {
        /// Shown in `status.credentials.rotation.certificateAuthorities.waitingFor`.
        waiting_for: String,
        /// Look again after this long.
        recheck_in: Option<Duration>,
    },
}

/// Decides whether the prepared rotation completes now.
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let wait = |waiting_for: String, recheck_in| Decision::Wait {
        waiting_for,
        recheck_in,
    };
    if inputs.requested {
        return Decision::Complete(format!(
            "asked for with {}",
            crate::api::labels::COMPLETE_CA_ROTATION
        ));
    }
    if !inputs.rolled_out {
        return wait("the control plane to roll out with both CAs trusted".into(), None);
    }
    let nodes = inputs
        .nodes
        .filter(|n| n.signing_ca_serial == inputs.signing_ca_serial);
    let Some(nodes) = nodes else {
        return wait(
            "the worker nodes to be observed in the tenant (or the complete-ca-rotation annotation)".into(),
            None,
        );
    };
    if !nodes.pending.is_empty() {
        return wait(
            format!(
                "kubelet client certificates from the new CA on nodes {}",
                nodes.pending.join(", ")
            ),
            None,
        );
    }
    let due = inputs.initiated_at.map_or(inputs.now, |at| at + inputs.grace);
    if inputs.now < due {
        let left = Duration::try_from(due - inputs.now).unwrap_or(Duration::ZERO);
        return wait(
            format!(
                "the grace period: every node renewed, completing at {}",
                due.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            ),
            Some(left),
        );
    }
    Decision::Complete(format!(
        "the control plane rolled out, {} node(s) renewed and the grace period passed",
        nodes.renewed.len()
    ))
}

/// What the rotation status is derived from.
#[derive(Debug)]
pub struct StatusInputs<'a> {
    /// The previous `status.credentials.rotation.certificateAuthorities`.
    pub previous: Option<&'a CaRotation>,
    /// A CA is in its prepared phase, as stored after the pass.
    pub prepared: bool,
    /// Its completion has begun: the new CA signs serving certificates.
    pub completing: bool,
    /// The control plane rolls out a CA change (`CertificateAuthorityRotating`).
    pub rolling: bool,
    /// What completion waits for, while prepared.
    pub waiting_for: Option<&'a str>,
    /// The time of the pass.
    pub now: Time,
}

/// `status.credentials.rotation.certificateAuthorities` after a pass: the phase
/// follows from what is stored (a previous CA present or not) and whether the
/// control plane still rolls; each phase's first pass stamps its time.
pub fn status(inputs: &StatusInputs<'_>) -> Option<CaRotation> {
    use CaRotationPhase::{Completed, Completing, Prepared, Preparing};
    let previous_phase = inputs.previous.and_then(|p| p.phase);
    let in_rotation = matches!(previous_phase, Some(Preparing | Prepared | Completing));
    let phase = match (inputs.prepared, inputs.rolling) {
        (true, _) if inputs.completing => Completing,
        (true, true) => Preparing,
        (true, false) => Prepared,
        (false, true) if in_rotation => Completing,
        (false, false) if in_rotation => Completed,
        _ => return inputs.previous.cloned(),
    };
    let mut next = inputs.previous.cloned().unwrap_or_default();
    let now = || Some(inputs.now.clone());
    let entered = |earlier: &[CaRotationPhase]| previous_phase.is_none_or(|p| !earlier.contains(&p));
    match phase {
        Preparing | Prepared if entered(&[Preparing, Prepared]) => {
            next.last_initiation_time = now();
            next.last_initiation_finished_time = None;
            next.last_completion_triggered_time = None;
            next.last_completion_time = None;
        }
        _ => {}
    }
    if phase == Prepared && previous_phase != Some(Prepared) {
        next.last_initiation_finished_time = now();
    }
    if matches!(phase, Completing | Completed) && entered(&[Completing, Completed]) {
        next.last_completion_triggered_time = now();
    }
    if phase == Completed && previous_phase != Some(Completed) {
        next.last_completion_time = now();
    }
    next.phase = Some(phase);
    next.waiting_for = match phase {
        Preparing | Prepared => inputs.waiting_for.map(str::to_string),
        Completing | Completed => None,
    };
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(serial: &str, renewed: &[&str], pending: &[&str]) -> NodeCredentials {
        NodeCredentials {
            signing_ca_serial: serial.into(),
            renewed: renewed.iter().map(|s| s.to_string()).collect(),
            pending: pending.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn inputs<'a>(nodes: Option<&'a NodeCredentials>, rolled_out: bool, hours_ago: i64) -> Inputs<'a> {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        Inputs {
            requested: false,
            rolled_out,
            signing_ca_serial: "new",
            nodes,
            initiated_at: Some(now - time::Duration::hours(hours_ago)),
            grace: Duration::from_secs(24 * 3600),
            now,
        }
    }

    fn waits(decision: Decision) -> String {
        match decision {
            Decision::Wait { waiting_for, .. } => waiting_for,
            Decision::Complete(why) => panic!("completed: {why}"),
        }
    }

    #[test]
    fn completes_once_rolled_out_every_node_renewed_and_the_grace_period_passed() {
        let all = nodes("new", &["a", "b"], &[]);
        assert!(matches!(
            decide(&inputs(Some(&all), true, 25)),
            Decision::Complete(_)
        ));
        assert!(waits(decide(&inputs(Some(&all), false, 25))).contains("roll out"));
        match decide(&inputs(Some(&all), true, 23)) {
            Decision::Wait { recheck_in, .. } => assert_eq!(recheck_in, Some(Duration::from_secs(3600))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_the_nodes_still_holding_old_ca_certificates() {
        let some = nodes("new", &["a"], &["b", "c"]);
        assert!(waits(decide(&inputs(Some(&some), true, 48))).contains("nodes b, c"));
    }

    #[test]
    fn node_observations_of_another_rotation_or_none_do_not_count() {
        let stale = nodes("old", &["a"], &[]);
        assert!(waits(decide(&inputs(Some(&stale), true, 48))).contains("observed"));
        assert!(waits(decide(&inputs(None, true, 48))).contains("observed"));
    }

    #[test]
    fn the_phases_follow_what_is_stored_and_stamp_their_times() {
        use CaRotationPhase::*;
        let at = |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap_or_default());
        let step = |previous: Option<&CaRotation>, prepared, rolling, t| {
            status(&StatusInputs {
                previous,
                prepared,
                completing: false,
                rolling,
                waiting_for: Some("nodes a"),
                now: at(t),
            })
        };
        assert_eq!(step(None, false, false, 1), None, "never rotated: no status");
        let preparing = step(None, true, true, 1).unwrap_or_default();
        assert_eq!(preparing.phase, Some(Preparing));
        let prepared = step(Some(&preparing), true, false, 2).unwrap_or_default();
        assert_eq!(prepared.phase, Some(Prepared));
        assert_eq!(prepared.last_initiation_time, Some(at(1)));
        assert_eq!(prepared.last_initiation_finished_time, Some(at(2)));
        assert_eq!(prepared.waiting_for.as_deref(), Some("nodes a"));
        let again = step(Some(&prepared), true, false, 3).unwrap_or_default();
        assert_eq!(again, prepared, "a pass in the same phase changes nothing");
        let serving_step = status(&StatusInputs {
            previous: Some(&prepared),
            prepared: true,
            completing: true,
            rolling: false,
            waiting_for: None,
            now: at(4),
        })
        .unwrap_or_default();
        assert_eq!(serving_step.phase, Some(Completing), "serving certificates move");
        let completing = step(Some(&serving_step), false, true, 5).unwrap_or_default();
        assert_eq!(completing.phase, Some(Completing));
        assert_eq!(
            completing.last_completion_triggered_time,
            Some(at(4)),
            "triggered when serving certificates began to move"
        );
        assert_eq!(completing.waiting_for, None);
        let completed = step(Some(&completing), false, false, 6).unwrap_or_default();
        assert_eq!(completed.phase, Some(Completed));
        assert_eq!(completed.last_completion_time, Some(at(6)));
        assert_eq!(step(Some(&completed), false, false, 7), Some(completed.clone()));
        let next = step(Some(&completed), true, true, 8).unwrap_or_default();
        assert_eq!(
            (next.phase, next.last_initiation_time, next.last_completion_time),
            (Some(Preparing), Some(at(8)), None)
        );
    }

    #[test]
    fn the_annotation_completes_at_once() {
        let mut at_once = inputs(None, false, 0);
        at_once.requested = true;
        assert!(matches!(decide(&at_once), Decision::Complete(_)));
    }
}
