//! The TenantControlPlane status derived from what is stored: the Deployment's
//! rollout, the CA the running pods were rolled out with, and the spec. Nothing
//! here is remembered in memory, so a restarted operator derives the same
//! status (CA rotation is crash-safe because of it).

use k8s_openapi::{
    api::apps::v1::Deployment,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

use crate::api::tenant_control_plane::KubernetesVersionStatus;

/// How far the control-plane Deployment has rolled out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    /// Desired replicas.
    pub desired: i32,
    /// Replicas that exist.
    pub replicas: i32,
    /// Replicas running the current template.
    pub updated: i32,
    /// Ready replicas.
    pub ready: i32,
    /// The Deployment controller has seen the current template.
    pub observed: bool,
}

impl Rollout {
    /// Reads a Deployment as stored.
    pub fn of(deployment: &Deployment) -> Self {
        let desired = deployment.spec.replicas.unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        let observed = match (status.observed_generation, deployment.metadata.generation) {
            (Some(seen), Some(generation)) => seen >= generation,
            _ => false,
        };
        Self {
            desired,
            replicas: status.replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            observed,
        }
    }

    /// Every replica runs the current template and is ready, and no old pod remains.
    pub fn complete(&self) -> bool {
        self.observed
            && self.updated == self.desired
            && self.replicas == self.desired
            && self.ready == self.desired
    }
}

/// What the status is derived from.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The spec's Kubernetes version.
    pub spec_version: &'a str,
    /// The version recorded as installed, if any rollout ever completed.
    pub installed_version: Option<&'a str>,
    /// Checksum of the CA now stored in `<tcp>-ca`.
    pub stored_ca_checksum: &'a str,
    /// Checksum of the CA the last completed rollout ran with.
    pub rolled_out_ca_checksum: Option<&'a str>,
    /// The Deployment, if it exists.
    pub rollout: Option<Rollout>,
    /// The Deployment's pod template carries the material now stored (a rollout held
    /// for a batch to settle has not started yet).
    pub material_rolled_out: bool,
    /// A CA rotation has a step to take (client certificates to move to the new CA,
    /// or the old CA to retire once serving certificates moved): rotating throughout.
    pub ca_step_pending: bool,
    /// A CA rotation is prepared: a rollout in the meantime is one of its steps.
    pub ca_prepared: bool,
    /// `spec.writePermissions` blocks some writes.
    pub write_limited: bool,
}

/// The derived version status, and what to record once it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    /// `status.kubernetesResources.version.status`.
    pub status: KubernetesVersionStatus,
    /// `status.kubernetesResources.version.version`.
    pub installed_version: Option<String>,
    /// The CA checksum to record as rolled out.
    pub rolled_out_ca_checksum: Option<String>,
}

/// Kamaji's status rules, with CA rotation derived from stored state: the
/// tenant is rotating its CA while the CA in `<tcp>-ca` differs from the one
/// the last completed rollout ran with.
pub fn derive(inputs: &Inputs<'_>) -> Derived {
    let rollout = inputs.rollout.unwrap_or_default();
    let complete = inputs.rollout.is_some() && rollout.complete() && inputs.material_rolled_out;
    let ca_changed = inputs
        .rolled_out_ca_checksum
        .is_some_and(|c| c != inputs.stored_ca_checksum);
    let status = if inputs.rollout.is_some() && rollout.desired == 0 && !ca_changed {
        KubernetesVersionStatus::Sleeping
    } else if inputs.ca_step_pending || ((ca_changed || inputs.ca_prepared) && !complete) {
        KubernetesVersionStatus::CertificateAuthorityRotating
    } else if inputs.installed_version.is_none() && !complete {
        KubernetesVersionStatus::Provisioning
    } else if rollout.ready == 0 && !complete {
        KubernetesVersionStatus::NotReady
    } else if inputs.write_limited {
        // Kamaji: WriteLimited whenever the control plane serves with writes limited.
        KubernetesVersionStatus::WriteLimited
    } else if complete {
        KubernetesVersionStatus::Ready
    } else if inputs.installed_version != Some(inputs.spec_version) {
        KubernetesVersionStatus::Upgrading
    } else {
        // Kamaji's Unknown: serving while a rollout that is neither the first, an
        // upgrade nor a CA rotation step progresses (new leaf material, a spec change).
        KubernetesVersionStatus::Unknown
    };
    let (installed_version, rolled_out_ca_checksum) = if complete {
        (
            Some(inputs.spec_version.to_string()),
            Some(inputs.stored_ca_checksum.to_string()),
        )
    } else {
        (
            inputs.installed_version.map(str::to_string),
            inputs.rolled_out_ca_checksum.map(str::to_string),
        )
    };
    Derived {
        status,
        installed_version,
        rolled_out_ca_checksum,
    }
}

/// Sets a `metav1.Condition`, keeping its lastTransitionTime unless the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) {
    set_condition_at(
        conditions,
        type_,
        status,
        reason,
        message,
        generation,
        Timestamp::now(),
    );
}

/// [`set_condition`] at a given time (a flip's lastTransitionTime).
pub fn set_condition_at(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if existing.status != status {
            existing.last_transition_time = Time(now);
        }
        existing.status = status;
        existing.reason = reason.to_string();
        existing.message = message;
        existing.observed_generation = generation;
        return;
    }
    conditions.push(Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    });
}

/// Removes a condition that no longer applies.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(desired: i32, replicas: i32, updated: i32, ready: i32) -> Option<Rollout> {
        Some(Rollout {
            desired,
            replicas,
            updated,
            ready,
            observed: true,
        })
    }

    fn inputs<'a>(installed: Option<&'a str>, rolled_ca: Option<&'a str>, r: Option<Rollout>) -> Inputs<'a> {
        Inputs {
            spec_version: "v1.37.2",
            installed_version: installed,
            stored_ca_checksum: "ca-2",
            rolled_out_ca_checksum: rolled_ca,
            rollout: r,
            material_rolled_out: true,
            ca_step_pending: false,
            ca_prepared: false,
            write_limited: false,
        }
    }

    #[test]
    fn provisioning_until_the_first_rollout_completes_then_ready() {
        let first = derive(&inputs(None, None, rollout(2, 2, 2, 1)));
        assert_eq!(first.status, KubernetesVersionStatus::Provisioning);
        assert_eq!(first.installed_version, None);
        let done = derive(&inputs(None, None, rollout(2, 2, 2, 2)));
        assert_eq!(done.status, KubernetesVersionStatus::Ready);
        assert_eq!(done.installed_version.as_deref(), Some("v1.37.2"));
        assert_eq!(done.rolled_out_ca_checksum.as_deref(), Some("ca-2"));
    }

    #[test]
    fn a_ca_rotation_with_a_step_to_take_is_rotating_even_between_rollouts() {
        let mut between = inputs(Some("v1.37.2"), Some("ca-2"), rollout(2, 2, 2, 2));
        between.ca_step_pending = true;
        assert_eq!(
            derive(&between).status,
            KubernetesVersionStatus::CertificateAuthorityRotating
        );
        let mut rolling = inputs(Some("v1.37.2"), Some("ca-2"), rollout(2, 4, 2, 2));
        rolling.ca_prepared = true;
        assert_eq!(
            derive(&rolling).status,
            KubernetesVersionStatus::CertificateAuthorityRotating,
            "a rollout during a prepared rotation is one of its steps"
        );
        let mut settled = inputs(Some("v1.37.2"), Some("ca-2"), rollout(2, 2, 2, 2));
        settled.ca_prepared = true;
        assert_eq!(derive(&settled).status, KubernetesVersionStatus::Ready);
    }

    #[test]
    fn a_new_stored_ca_means_rotating_until_its_rollout_completes() {
        let rotating = derive(&inputs(Some("v1.37.2"), Some("ca-1"), rollout(2, 4, 2, 2)));
        assert_eq!(
            rotating.status,
            KubernetesVersionStatus::CertificateAuthorityRotating
        );
        assert_eq!(
            rotating.rolled_out_ca_checksum.as_deref(),
            Some("ca-1"),
            "old CA kept until done"
        );
        let done = derive(&inputs(Some("v1.37.2"), Some("ca-1"), rollout(2, 2, 2, 2)));
        assert_eq!(done.status, KubernetesVersionStatus::Ready);
        assert_eq!(done.rolled_out_ca_checksum.as_deref(), Some("ca-2"));
    }

    #[test]
    fn sleeping_upgrading_and_not_ready() {
        assert_eq!(
            derive(&inputs(Some("v1.37.2"), Some("ca-2"), rollout(0, 0, 0, 0))).status,
            KubernetesVersionStatus::Sleeping
        );
        assert_eq!(
            derive(&inputs(Some("v1.36.0"), Some("ca-2"), rollout(2, 3, 1, 2))).status,
            KubernetesVersionStatus::Upgrading
        );
        assert_eq!(
            derive(&inputs(Some("v1.37.2"), Some("ca-2"), rollout(2, 2, 2, 0))).status,
            KubernetesVersionStatus::NotReady
        );
        assert_eq!(
            derive(&inputs(Some("v1.37.2"), Some("ca-2"), rollout(2, 3, 1, 2))).status,
            KubernetesVersionStatus::Unknown,
            "Kamaji's status while new material rolls out"
        );
    }

    #[test]
    fn write_limited_while_serving_with_writes_blocked() {
        let limited = |r| Inputs {
            write_limited: true,
            ..inputs(Some("v1.37.2"), Some("ca-2"), r)
        };
        assert_eq!(
            derive(&limited(rollout(2, 2, 2, 2))).status,
            KubernetesVersionStatus::WriteLimited
        );
        assert_eq!(
            derive(&limited(rollout(2, 3, 1, 2))).status,
            KubernetesVersionStatus::WriteLimited
        );
        assert_eq!(
            derive(&limited(rollout(2, 2, 2, 0))).status,
            KubernetesVersionStatus::NotReady
        );
        assert_eq!(
            derive(&limited(rollout(0, 0, 0, 0))).status,
            KubernetesVersionStatus::Sleeping
        );
        // Installed: the version is recorded as for Ready.
        assert_eq!(
            derive(&limited(rollout(2, 2, 2, 2))).installed_version.as_deref(),
            Some("v1.37.2")
        );
    }

    #[test]
    fn condition_transition_time_moves_only_on_a_flip() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            "Ready",
            false,
            "Provisioning",
            "starting".into(),
            Some(1),
        );
        let first = conditions[0].last_transition_time.clone();
        set_condition(
            &mut conditions,
            "Ready",
            false,
            "Provisioning",
            "still".into(),
            Some(1),
        );
        assert_eq!(conditions[0].last_transition_time, first);
        assert_eq!(conditions[0].message, "still");
    }
}
