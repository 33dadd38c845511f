//! What the probes and the `kamaji_leader`/`kamaji_ready` gauges report: the
//! phase the manager is in, set by the manager and read by the HTTP server.
//!
//! Readiness, by phase:
//! - `Starting`: not ready (no client, no lease read yet).
//! - `Standby`: ready. A replica waiting for the lease is a healthy standby: it
//!   could read the Lease, and it takes over when the leader goes. Were standbys
//!   unready, a rolling update of a one-replica Deployment (maxUnavailable 0)
//!   would wait forever for a new pod that cannot lead while the old one holds
//!   the lease.
//! - `Leading { synced: false }`: not ready until the API server has answered a
//!   list of every kind the controllers watch (the CRDs are served and RBAC allows
//!   it: the two reasons a watch never syncs).
//! - `Leading { synced: true }`: ready.
//! - `ShuttingDown`: not ready (finishing in-flight reconciles, releasing the lease).

use tokio::sync::watch;

/// The manager's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Connecting, reading the lease.
    Starting,
    /// Waiting for the lease held by another replica.
    Standby,
    /// Running the controllers; `synced` once every watched kind could be listed.
    Leading {
        /// Every watched kind listed successfully.
        synced: bool,
    },
    /// Stopping after SIGTERM or Ctrl-C.
    ShuttingDown,
}

impl Phase {
    /// What `/readyz` answers.
    pub fn ready(self) -> bool {
        matches!(self, Phase::Standby | Phase::Leading { synced: true })
    }

    /// Whether this replica runs the controllers.
    pub fn leading(self) -> bool {
        matches!(self, Phase::Leading { .. })
    }

    /// A short word for logs and the readiness body.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Standby => "standby",
            Phase::Leading { synced: false } => "leading, listing watched kinds",
            Phase::Leading { synced: true } => "leading",
            Phase::ShuttingDown => "shutting down",
        }
    }
}

/// The manager's phase, shared between the manager (writer) and the HTTP
/// server (readers). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Health {
    phase: watch::Sender<Phase>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            phase: watch::Sender::new(Phase::Starting),
        }
    }
}

impl Health {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Moves to `phase`.
    pub fn set(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// A receiver that sees every phase change (tests, waiting code).
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_is_ready_and_a_leader_only_once_synced() {
        assert!(!Phase::Starting.ready());
        assert!(Phase::Standby.ready());
        assert!(!Phase::Standby.leading());
        assert!(!Phase::Leading { synced: false }.ready());
        assert!(Phase::Leading { synced: true }.ready());
        assert!(Phase::Leading { synced: false }.leading());
        assert!(!Phase::ShuttingDown.ready());
    }

    #[test]
    fn phase_changes_are_seen_by_readers() {
        let health = Health::default();
        let reader = health.clone();
        health.set(Phase::Leading { synced: true });
        assert_eq!(reader.phase(), Phase::Leading { synced: true });
    }
}
