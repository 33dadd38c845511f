//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager):
//! one replica runs the controllers, the others wait as standbys.
//!
//! kube-lease-manager acquires, renews and releases the Lease. It reports a lost
//! lease only once it can read the Lease again, so a leader cut off from the API
//! server would keep reconciling after its lease expired. A watchdog therefore
//! reads the Lease between renewals and declares the lease lost when it cannot
//! confirm it holds it shortly before it expires, as client-go's renew deadline
//! does; the manager then stops (and the pod restarts as a standby).

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{sync::watch, task::JoinHandle};
use tracing::{debug, info, warn};

/// How a replica takes part in the election (the manager's `--leader-election-*` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity (holderIdentity).
    pub identity: String,
    /// How long a lease is valid after its last renewal; a standby takes over
    /// at most this long after the leader stopped renewing.
    pub lease_duration: Duration,
    /// How often the leader renews; shorter than `lease_duration`, the difference
    /// being the clock skew tolerated between replicas.
    pub renew_period: Duration,
}

impl ElectionConfig {
    /// Checks the durations: whole seconds (the Lease API counts seconds), at
    /// least one second, and a renew period shorter than the lease duration.
    pub fn validate(&self) -> Result<(), String> {
        let whole = |d: Duration, flag: &str| {
            if d.subsec_nanos() != 0 || d.as_secs() == 0 {
                Err(format!("{flag} must be a whole number of seconds, at least 1s"))
            } else {
                Ok(())
            }
        };
        whole(self.lease_duration, "--leader-election-lease-duration")?;
        whole(self.renew_period, "--leader-election-renew-period")?;
        if self.renew_period >= self.lease_duration {
            return Err(format!(
                "--leader-election-renew-period ({}s) must be shorter than --leader-election-lease-duration ({}s)",
                self.renew_period.as_secs(),
                self.lease_duration.as_secs()
            ));
        }
        if self.namespace.is_empty() || self.lease_name.is_empty() {
            return Err("the leader election namespace and lease name must not be empty".into());
        }
        Ok(())
    }

    /// `namespace/name` of the Lease, as logs and errors name it.
    fn lease_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.lease_name)
    }

    /// Renew this long before the lease expires (kube-lease-manager's grace).
    fn grace(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_period)
    }
}

/// An identity unique to this process: the pod (or host) name and a random
/// suffix, so a restarted container is not mistaken for its predecessor.
pub fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "kamaji-rs".to_string());
    format!("{host}_{:08x}", rand::random::<u32>())
}

/// A replica in the election: created once the Lease could be read (or created).
pub struct Candidate {
    config: ElectionConfig,
    client: Client,
    leading: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

/// Why leadership ended without us giving it up.
#[derive(Debug, thiserror::Error)]
pub enum LeaseLost {
    /// The lease manager saw another holder.
    #[error("the lease {namespace}/{name} is no longer held by {identity}")]
    Taken {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// Our identity.
        identity: String,
    },
    /// The watchdog could not confirm the lease before it would expire.
    #[error("could not confirm the lease {namespace}/{name} before it expires: {detail}")]
    Unconfirmed {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What the last check saw.
        detail: String,
    },
    /// The lease manager task ended.
    #[error("the lease manager stopped: {0}")]
    ManagerStopped(String),
}

impl Candidate {
    /// Reads (or creates) the Lease and starts competing for it in the background.
    /// An API server that cannot be reached, or fails, is retried with backoff, as
    /// client-go's election retries: a standby that exited instead would crash-loop
    /// through an outage and come back long after it (the kubelet's backoff). A
    /// refusal (no such namespace, no permission) is a configuration error: it ends
    /// the manager with an error naming the Lease.
    pub async fn join(client: Client, config: ElectionConfig) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let manager = lease_manager(&client, &config)
            .await
            .map_err(|e| anyhow::anyhow!("reading the leader-election Lease {}: {e}", config.lease_ref()))?;
        let (leading, task) = manager.watch().await;
        info!(
            lease = %config.lease_ref(),
            identity = %config.identity,
            "waiting for the leader lease"
        );
        Ok(Self {
            config,
            client,
            leading,
            task,
        })
    }

    /// Resolves once this replica holds the lease.
    pub async fn acquired(&mut self) -> Result<(), LeaseLost> {
        loop {
            if *self.leading.borrow_and_update() {
                info!(identity = %self.config.identity, "acquired the leader lease");
                return Ok(());
            }
            tokio::select! {
                changed = self.leading.changed() => if changed.is_err() {
                    return Err(LeaseLost::ManagerStopped("the lease manager closed its channel".into()));
                },
                ended = &mut self.task => return Err(LeaseLost::ManagerStopped(describe(ended))),
            }
        }
    }

    /// Resolves when leadership is lost: the lease manager reports another holder,
    /// its task ends, or the watchdog cannot confirm the lease in time.
    pub async fn lost(&mut self) -> LeaseLost {
        let watchdog = watchdog(
            Api::namespaced(self.client.clone(), &self.config.namespace),
            self.config.clone(),
        );
        tokio::pin!(watchdog);
        loop {
            tokio::select! {
                lost = &mut watchdog => return lost,
                changed = self.leading.changed() => match changed {
                    Ok(()) if !*self.leading.borrow_and_update() => {
                        return LeaseLost::Taken {
                            namespace: self.config.namespace.clone(),
                            name: self.config.lease_name.clone(),
                            identity: self.config.identity.clone(),
                        };
                    }
                    Ok(()) => {}
                    Err(_) => return LeaseLost::ManagerStopped("the lease manager closed its channel".into()),
                },
                ended = &mut self.task => return LeaseLost::ManagerStopped(describe(ended)),
            }
        }
    }

    /// Gives the lease up (when held) so a standby need not wait for it to expire,
    /// and stops competing. Waits at most `timeout`.
    pub async fn release(self, timeout: Duration) {
        let Self {
            leading,
            task,
            config,
            ..
        } = self;
        // Closing the channel makes the lease manager release the lease and return.
        drop(leading);
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Ok(_))) => info!(identity = %config.identity, "released the leader lease"),
            Ok(Ok(Err(error))) => warn!(%error, "releasing the leader lease failed; it expires on its own"),
            Ok(Err(error)) => warn!(%error, "the lease manager task failed"),
            Err(_) => warn!("releasing the leader lease timed out; it expires on its own"),
        }
    }
}

/// Builds the lease manager (it reads or creates the Lease), retrying until it can
/// unless the API server refuses.
async fn lease_manager(
    client: &Client,
    config: &ElectionConfig,
) -> Result<LeaseManager, kube_lease_manager::LeaseManagerError> {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(config.renew_period)
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(config.lease_duration.as_secs())
            .with_grace(config.grace().as_secs())
            .with_field_manager(format!("kamaji-rs-leader-election/{}", config.identity))
            .build()
            .await;
        let error = match built {
            Err(error) if !refused(&error) => error,
            built => return built,
        };
        let retry_in = delays.next().unwrap_or(config.renew_period);
        warn!(
            lease = %config.lease_ref(),
            %error,
            ?retry_in,
            "reading the leader-election Lease failed; retrying"
        );
        tokio::time::sleep(retry_in).await;
    }
}

/// The API server answered with a client error other than "too many requests":
/// asking again will not help.
fn refused(error: &kube_lease_manager::LeaseManagerError) -> bool {
    matches!(
        error,
        kube_lease_manager::LeaseManagerError::KubeError(kube::Error::Api(status))
            if (400..500).contains(&status.code) && status.code != 429
    )
}

fn describe(ended: Result<kube_lease_manager::Result<LeaseManager>, tokio::task::JoinError>) -> String {
    match ended {
        Ok(Ok(_)) => "it returned".into(),
        Ok(Err(error)) => error.to_string(),
        Err(error) => error.to_string(),
    }
}

/// When a read Lease, held by `identity`, expires.
fn held_until(lease: &Lease, identity: &str) -> Result<SystemTime, String> {
    let spec = lease.spec.as_ref().ok_or("the lease has no spec")?;
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => {}
        Some(holder) => return Err(format!("held by {holder}")),
        None => return Err("held by nobody".into()),
    }
    let renewed: SystemTime = spec.renew_time.as_ref().ok_or("no renewTime")?.0.into();
    let seconds = spec.lease_duration_seconds.ok_or("no leaseDurationSeconds")?;
    let seconds = u64::try_from(seconds).map_err(|_| format!("leaseDurationSeconds {seconds}"))?;
    Ok(renewed + Duration::from_secs(seconds))
}

/// Reads the Lease every quarter of the renew grace and returns when this
/// replica cannot confirm, a quarter of the grace before the last confirmed
/// expiry, that it still holds it. The leader renews a full grace before expiry,
/// so a healthy renewal is seen with half the grace to spare.
async fn watchdog(api: Api<Lease>, config: ElectionConfig) -> LeaseLost {
    let quarter = (config.grace() / 4).max(Duration::from_millis(250));
    let mut confirmed_until = SystemTime::now() + config.lease_duration;
    let mut last_problem = String::from("no successful read yet");
    loop {
        tokio::time::sleep(quarter).await;
        match api.get(&config.lease_name).await {
            Ok(lease) => match held_until(&lease, &config.identity) {
                Ok(until) => {
                    confirmed_until = until;
                    last_problem.clear();
                }
                Err(held) => {
                    return LeaseLost::Taken {
                        namespace: config.namespace.clone(),
                        name: config.lease_name.clone(),
                        identity: format!("{} (now {held})", config.identity),
                    };
                }
            },
            Err(error) => {
                debug!(%error, "reading the leader lease failed");
                last_problem = format!("reading it failed: {error}");
            }
        }
        if SystemTime::now() + quarter >= confirmed_until {
            let detail = if last_problem.is_empty() {
                "it was not renewed in time".to_string()
            } else {
                last_problem
            };
            return LeaseLost::Unconfirmed {
                namespace: config.namespace.clone(),
                name: config.lease_name.clone(),
                detail,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{api::coordination::v1::LeaseSpec, apimachinery::pkg::apis::meta::v1::MicroTime};

    use super::*;

    fn config(duration: u64, renew: u64) -> ElectionConfig {
        ElectionConfig {
            namespace: "kamaji-system".into(),
            lease_name: "kamaji-rs".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(duration),
            renew_period: Duration::from_secs(renew),
        }
    }

    #[test]
    fn durations_are_validated_instead_of_panicking_in_the_lease_manager() {
        assert!(config(15, 10).validate().is_ok());
        assert!(config(10, 10).validate().is_err());
        assert!(config(10, 0).validate().is_err());
        let mut fractional = config(15, 10);
        fractional.lease_duration = Duration::from_millis(15_500);
        assert!(fractional.validate().is_err());
        assert_eq!(config(15, 10).grace(), Duration::from_secs(5));
    }

    #[test]
    fn only_a_refusal_ends_the_wait_for_the_lease() {
        use kube_lease_manager::LeaseManagerError;
        let answered = |code: u16| {
            LeaseManagerError::KubeError(kube::Error::Api(
                kube::core::Status {
                    code,
                    ..kube::core::Status::failure("no", "Test")
                }
                .boxed(),
            ))
        };
        assert!(refused(&answered(404)), "no such namespace");
        assert!(refused(&answered(403)), "no permission");
        assert!(!refused(&answered(429)), "throttled: ask again");
        assert!(!refused(&answered(503)), "the API server is starting");
        assert!(
            !refused(&LeaseManagerError::LeaseAlreadyExists("kamaji-rs".into())),
            "another replica created it"
        );
    }

    #[test]
    fn identities_are_unique_per_process_start() {
        assert_ne!(default_identity(), default_identity());
    }

    #[test]
    fn a_lease_held_by_someone_else_is_not_confirmed() {
        let renew = k8s_openapi::jiff::Timestamp::now();
        let lease = |holder: Option<&str>| Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                renew_time: Some(MicroTime(renew)),
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
            ..Default::default()
        };
        let until = held_until(&lease(Some("a")), "a").expect("held");
        let expected: SystemTime = SystemTime::from(renew) + Duration::from_secs(15);
        assert_eq!(until, expected);
        assert_eq!(held_until(&lease(Some("b")), "a"), Err("held by b".to_string()));
        assert_eq!(held_until(&lease(None), "a"), Err("held by nobody".to_string()));
    }
}
