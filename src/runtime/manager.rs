//! `kamaji manager`: runs the controllers against a management cluster, behind
//! leader election, with health probes and metrics. Flag names follow Kamaji's
//! where Kamaji has them (`--metrics-bind-address`, `--health-probe-bind-address`,
//! `--leader-elect`, `--datastore`, `--max-concurrent-tcp-reconciles`,
//! `--certificate-expiration-deadline`). Every other flag of Kamaji's manager is
//! accepted too ([`KamajiFlags`]): a Kamaji Deployment starts kamaji-rs unchanged.
//!
//! Lifecycle: bind the HTTP endpoints, join the election (standby), acquire the
//! lease, run the controllers. SIGTERM: the controllers finish their in-flight
//! reconciles (bounded by `--graceful-shutdown-timeout`), then the lease is
//! released so a standby takes over at once. A lost lease stops the process
//! with an error at once: another replica may already be writing.

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use clap::Args;
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    durations,
    health::{Health, Phase},
    http,
    kamaji_flags::{KamajiFlags, go_bool, go_duration},
    leader::{self, Candidate, ElectionConfig},
    rbac,
    telemetry::{self, LogFormat},
    tenant_status::TenantStatuses,
};
use crate::{
    controllers::{self, Context, Settings},
    pki::KeyAlgorithm,
};

/// Flags of `kamaji manager`.
#[derive(Args, Debug, Clone)]
pub struct ManagerArgs {
    /// Rotate a certificate when it expires within this duration (humantime: 7d, 36h, 1w).
    #[arg(long, default_value = "24h", value_parser = parse_deadline, help_heading = "Certificates")]
    pub certificate_expiration_deadline: Duration,
    /// Validity of issued leaf certificates and kubeconfigs (kubeadm's certificateValidityPeriod).
    #[arg(long, default_value = "365d", value_parser = parse_positive_duration, help_heading = "Certificates")]
    pub certificate_validity: Duration,
    /// Key algorithm of new keys: RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384.
    #[arg(long, default_value_t = KeyAlgorithm::default(), help_heading = "Certificates")]
    pub key_algorithm: KeyAlgorithm,
    /// Keys of --key-algorithm generated ahead in the background, so rotations do not wait
    /// for key generation (0 disables the pool).
    #[arg(long, default_value_t = 16, help_heading = "Certificates")]
    pub key_pool_size: usize,
    /// A tenant's control plane rolls once its mounted material has been unchanged this
    /// long, so a burst of rotations is one rollout (rotated Secrets are written at once;
    /// `0` rolls on every change).
    #[arg(long, default_value = "2s", value_parser = durations::parse, help_heading = "Certificates")]
    pub rollout_batch_window: Duration,
    /// The longest service-account token lifetime a tenant allows (1h or more; passed
    /// to kube-apiserver as its flag of the same name). After a key rotation the
    /// previous public key keeps verifying this long, so no live token is refused.
    #[arg(long, default_value = "24h", value_parser = parse_token_lifetime, help_heading = "Certificates")]
    pub service_account_max_token_expiration: Duration,
    /// How long previous service-account public keys keep verifying after a key
    /// rotation (default: the max token lifetime above; shorter refuses live tokens).
    #[arg(long, value_parser = parse_positive_duration, help_heading = "Certificates")]
    pub service_account_key_grace_period: Option<Duration>,
    /// A prepared CA rotation completes by itself this long after it started, once the
    /// control plane runs the prepared material and every worker node renewed its
    /// kubelet client certificate under the new CA (or at once with the
    /// certs.kamaji.clastix.io/complete-ca-rotation annotation on the TenantControlPlane).
    #[arg(long, default_value = "24h", value_parser = durations::parse, help_heading = "Certificates")]
    pub ca_rotation_grace_period: Duration,
    /// The lifecycle controller starts a CA rotation once this share of the CA's
    /// lifetime has passed (percent, as OpenShift's certrotation does), early enough
    /// for nodes to follow; the expiration deadline still applies if it is earlier.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100), help_heading = "Certificates")]
    pub ca_rotation_start_percent: u8,
    /// DataStore used by TenantControlPlanes that set no spec.dataStore.
    #[arg(long, help_heading = "Controllers")]
    pub datastore: Option<String>,
    /// TenantControlPlanes reconciled concurrently.
    #[arg(long, default_value_t = 4, help_heading = "Controllers")]
    pub max_concurrent_tcp_reconciles: u16,
    /// Only manage TenantControlPlanes of this namespace (default: all namespaces).
    #[arg(long, help_heading = "Controllers")]
    pub watch_namespace: Option<String>,
    /// Kubeconfig of the management cluster (default: in-cluster, then $KUBECONFIG, then ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Address of /metrics: host:port, :port for every interface, 0 to disable.
    #[arg(long, default_value = ":8080", help_heading = "Endpoints")]
    pub metrics_bind_address: BindAddress,
    /// Address of /healthz and /readyz: host:port, :port for every interface, 0 to disable.
    #[arg(long, default_value = ":8081", help_heading = "Endpoints")]
    pub health_probe_bind_address: BindAddress,

    /// Connect to each Ready tenant's API server (super-admin) to keep kubeadm's bindings and
    /// kube-public/cluster-info in place. Needs a route to the tenants' endpoints (ClusterIP or
    /// address): disable it where the operator cannot reach them.
    #[arg(
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub tenant_cluster_setup: bool,

    /// Run the controllers only while holding the leader Lease (use --leader-elect=false for a single
    /// process outside a cluster).
    #[arg(
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool,
        help_heading = "Leader election"
    )]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "kamaji-system",
        alias = "pod-namespace",
        help_heading = "Leader election"
    )]
    pub leader_election_namespace: String,
    /// Name of the leader-election Lease (replicas sharing it elect one leader).
    #[arg(long, default_value = "kamaji-rs", help_heading = "Leader election")]
    pub leader_election_id: String,
    /// A standby takes over at most this long after the leader stopped renewing (whole seconds).
    #[arg(long, default_value = "15s", value_parser = parse_positive_duration, help_heading = "Leader election")]
    pub leader_election_lease_duration: Duration,
    /// The leader renews the Lease this often; shorter than the lease duration, the difference being the
    /// clock skew tolerated between replicas (whole seconds).
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration, help_heading = "Leader election")]
    pub leader_election_renew_period: Duration,
    /// This replica's identity in the Lease (default: $POD_NAME or the host name, plus a random suffix).
    #[arg(long, help_heading = "Leader election")]
    pub leader_election_identity: Option<String>,

    /// On SIGTERM, wait at most this long for in-flight reconciles before stopping (keep it below the
    /// pod's terminationGracePeriodSeconds).
    #[arg(long, default_value = "20s", value_parser = go_duration)]
    pub graceful_shutdown_timeout: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, help_heading = "Logging")]
    pub log_format: LogFormat,
    /// Log level or filter directive (RUST_LOG overrides).
    #[arg(long, default_value = "info", help_heading = "Logging")]
    pub log_level: String,

    /// Kamaji's manager flags kamaji-rs has no use for (accepted, logged once as unused).
    #[command(flatten)]
    pub kamaji: KamajiFlags,
}

/// A listen address: `host:port`, `:port` (every IPv4 interface, as Go's
/// `:8080`), or `0` (disabled, as controller-runtime's `--metrics-bind-address=0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindAddress(Option<SocketAddr>);

impl BindAddress {
    /// The socket address, `None` when disabled.
    pub fn socket(self) -> Option<SocketAddr> {
        self.0
    }
}

impl FromStr for BindAddress {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "0" {
            return Ok(Self(None));
        }
        if let Some(port) = value.strip_prefix(':') {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("{value:?}: the port must be a number"))?;
            return Ok(Self(Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))));
        }
        value.parse().map(|a| Self(Some(a))).map_err(|_| {
            format!("{value:?} is not host:port, :port or 0 (e.g. 127.0.0.1:8080, [::]:8080, :8080)")
        })
    }
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("0"),
        }
    }
}

/// A duration that must be positive: `0s` would rotate continuously. humantime
/// (`7d`, `36h`, `1w`) or Go syntax (`24h0m0s`, `1.5h`), as a Kamaji value reads.
fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    let duration =
        go_duration(value).map_err(|_| format!("{value:?} is not a duration such as 7d, 36h or 1w"))?;
    if duration.is_zero() {
        return Err(format!("{value:?} must be greater than zero"));
    }
    Ok(duration)
}

/// `--service-account-max-token-expiration`: kube-apiserver takes 1 hour to 2^32 seconds.
fn parse_token_lifetime(value: &str) -> Result<Duration, String> {
    let duration = parse_positive_duration(value)?;
    if duration < Duration::from_secs(3600) || duration.as_secs() > u64::from(u32::MAX) {
        return Err(format!(
            "{value:?}: kube-apiserver accepts a max token lifetime from 1h to 2^32 seconds"
        ));
    }
    Ok(duration)
}

/// `--certificate-expiration-deadline`: a positive humantime duration.
pub fn parse_deadline(value: &str) -> Result<Duration, String> {
    parse_positive_duration(value)
}

impl ManagerArgs {
    /// The election settings, `None` with `--leader-elect=false`.
    pub fn election(&self) -> anyhow::Result<Option<ElectionConfig>> {
        if !self.leader_elect {
            return Ok(None);
        }
        let config = ElectionConfig {
            namespace: self.leader_election_namespace.clone(),
            lease_name: self.leader_election_id.clone(),
            identity: self
                .leader_election_identity
                .clone()
                .unwrap_or_else(leader::default_identity),
            lease_duration: self.leader_election_lease_duration,
            renew_period: self.leader_election_renew_period,
        };
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(Some(config))
    }
}

/// A client for the management cluster.
pub async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Client> {
    Ok(Client::try_from(config(kubeconfig).await?)?)
}

/// A client for the management cluster that counts its requests in `metrics`
/// (`kamaji_kube_requests_total`): at steady state the operator sends none.
pub async fn counted_client(
    kubeconfig: Option<&PathBuf>,
    metrics: Arc<crate::runtime::metrics::Metrics>,
) -> anyhow::Result<Client> {
    let layer = tower::util::MapRequestLayer::new(move |request: ::http::Request<kube::client::Body>| {
        let (verb, resource) = crate::runtime::requests::classify(request.method(), request.uri());
        metrics.kube_request(verb, resource);
        request
    });
    Ok(kube::client::ClientBuilder::try_from(config(kubeconfig).await?)?
        .with_layer(&layer)
        .build())
}

async fn config(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    })
}

/// SIGTERM or Ctrl-C, seen by every holder of the receiver.
fn shutdown_signal() -> anyhow::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => info!("interrupted: shutting down"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

async fn signalled(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens after it sent.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Runs the manager until SIGTERM or Ctrl-C (Ok), or until it loses the lease (Err).
pub async fn run(args: ManagerArgs) -> anyhow::Result<()> {
    telemetry::init(
        args.kamaji.log_format(args.log_format),
        &args.kamaji.log_level(&args.log_level),
    )?;
    let unused = args.kamaji.unused();
    if !unused.is_empty() {
        info!(
            flags = %unused.join(" "),
            "Kamaji manager flags accepted but not used by kamaji-rs (see README, Kamaji flags)"
        );
    }
    let election = args.election()?;
    let mut shutdown = shutdown_signal()?;
    let metrics = Arc::new(crate::runtime::metrics::Metrics::new());
    let client = counted_client(args.kubeconfig.as_ref(), metrics.clone()).await?;
    if let Some(pool) = crate::pki::pool::install(args.key_algorithm, args.key_pool_size) {
        info!(algorithm = %pool.algorithm(), size = pool.capacity(), "pre-generating keys in the background");
    }
    let settings = args.settings();
    log_start(&args, election.as_ref());
    let ctx = Arc::new(Context::with_metrics(client.clone(), settings, metrics.clone()));

    let health = Health::default();
    let tenants = TenantStatuses::default();
    let _servers = http::start(
        args.metrics_bind_address,
        args.health_probe_bind_address,
        http::Exported {
            health: health.clone(),
            registry: Arc::new(move || metrics.render()),
            tenants: tenants.clone(),
        },
    )
    .await?;

    let leading = Leading {
        ctx,
        health: health.clone(),
        tenants,
        grace: args.graceful_shutdown_timeout,
    };
    let Some(config) = election else {
        let result = leading.run(&mut shutdown, None).await;
        if result.is_ok() {
            info!("manager stopped");
        }
        return result;
    };

    let mut candidate = tokio::select! {
        joined = Candidate::join(client, config) => joined?,
        _ = signalled(&mut shutdown) => return Ok(()),
    };
    health.set(Phase::Standby);
    tokio::select! {
        acquired = candidate.acquired() => acquired?,
        _ = signalled(&mut shutdown) => {
            health.set(Phase::ShuttingDown);
            candidate.release(Duration::from_secs(5)).await;
            info!("manager stopped");
            return Ok(());
        }
    }
    let result = leading.run(&mut shutdown, Some(&mut candidate)).await;
    if result.is_ok() {
        candidate.release(Duration::from_secs(5)).await;
        info!("manager stopped");
    }
    result
}

impl ManagerArgs {
    /// What the controllers read from the flags.
    fn settings(&self) -> Settings {
        Settings {
            key_algorithm: self.key_algorithm,
            certificate_validity: self.certificate_validity,
            certificate_expiration_deadline: self.certificate_expiration_deadline,
            default_datastore: self.datastore.clone(),
            watch_namespace: self.watch_namespace.clone(),
            max_concurrent_reconciles: self.max_concurrent_tcp_reconciles.max(1),
            tenant_cluster_setup: self.tenant_cluster_setup,
            batch_window: self.rollout_batch_window,
            ca_rotation_grace: self.ca_rotation_grace_period,
            ca_rotation_start_percent: self.ca_rotation_start_percent,
            tokens: crate::tenant::deployment::TokenSettings {
                max_expiration: self.service_account_max_token_expiration,
                previous_keys_grace: self
                    .service_account_key_grace_period
                    .unwrap_or(self.service_account_max_token_expiration),
            },
            identity: format!("{}/{}", self.leader_election_namespace, self.leader_election_id),
        }
    }
}

/// The start line, and a warning for a validity no longer than the deadline.
fn log_start(args: &ManagerArgs, election: Option<&ElectionConfig>) {
    info!(
        deadline = %humantime::format_duration(args.certificate_expiration_deadline),
        validity = %humantime::format_duration(args.certificate_validity),
        algorithm = %args.key_algorithm,
        namespace = args.watch_namespace.as_deref().unwrap_or("<all>"),
        leader_election = %election.map_or("off".to_string(), |e| format!(
            "{}/{} as {}", e.namespace, e.lease_name, e.identity
        )),
        "starting kamaji-rs manager"
    );
    if args.certificate_validity <= args.certificate_expiration_deadline {
        warn!(
            "--certificate-validity is not longer than --certificate-expiration-deadline: \
             every certificate is rotated once right after it is issued, then reported as expiring"
        );
    }
}

/// What the leader runs.
struct Leading {
    ctx: Arc<Context>,
    health: Health,
    tenants: TenantStatuses,
    grace: Duration,
}

impl Leading {
    /// Runs the controllers until shutdown (Ok) or a lost lease (Err).
    async fn run(
        self,
        shutdown: &mut watch::Receiver<bool>,
        candidate: Option<&mut Candidate>,
    ) -> anyhow::Result<()> {
        let Self {
            ctx,
            health,
            tenants,
            grace,
        } = self;
        health.set(Phase::Leading { synced: false });
        let watch_namespace = ctx.settings.watch_namespace.clone();
        let exporter = tenants.start(ctx.client.clone(), watch_namespace.as_deref());
        let sync = tokio::spawn({
            let (client, health) = (ctx.client.clone(), health.clone());
            async move {
                let mut attempt = 0u32;
                loop {
                    match rbac::list_watched(&client, watch_namespace.as_deref()).await {
                        Ok(()) => {
                            info!("every watched kind can be listed: ready");
                            health.set(Phase::Leading { synced: true });
                            return;
                        }
                        Err(error) => {
                            warn!(%error, "not ready: a watched kind cannot be listed");
                            attempt = attempt.saturating_add(1);
                            tokio::time::sleep(Duration::from_secs(u64::from(attempt.min(15)))).await;
                        }
                    }
                }
            }
        });
        let mut controllers = tokio::spawn(controllers::run_all(ctx));
        let lost = async {
            match candidate {
                Some(candidate) => candidate.lost().await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            _ = &mut controllers => {
                // The controllers stop on SIGTERM themselves; anything else is unexpected.
                let signalled = tokio::time::timeout(Duration::from_secs(1), signalled(shutdown)).await.is_ok();
                health.set(Phase::ShuttingDown);
                if signalled {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("the controllers stopped without a shutdown signal"))
                }
            }
            _ = signalled(shutdown) => {
                health.set(Phase::ShuttingDown);
                info!(timeout = %humantime::format_duration(grace), "waiting for in-flight reconciles");
                if tokio::time::timeout(grace, &mut controllers).await.is_err() {
                    warn!("in-flight reconciles did not finish in time; stopping anyway");
                    controllers.abort();
                }
                Ok(())
            }
            lost = lost => {
                health.set(Phase::Starting);
                controllers.abort();
                Err(anyhow::anyhow!("leader election lost: {lost}"))
            }
        };
        sync.abort();
        exporter.abort();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    #[command(args_override_self = true)]
    struct Cli {
        #[command(flatten)]
        args: ManagerArgs,
    }

    fn parse(args: &[&str]) -> Result<ManagerArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("manager").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn defaults_follow_kamaji() {
        let args = parse(&[]).expect("defaults parse");
        assert_eq!(
            args.metrics_bind_address.socket(),
            Some("0.0.0.0:8080".parse().expect("addr"))
        );
        assert_eq!(
            args.health_probe_bind_address.socket(),
            Some("0.0.0.0:8081".parse().expect("addr"))
        );
        assert!(args.leader_elect);
        assert_eq!(args.leader_election_id, "kamaji-rs");
        if std::env::var_os("POD_NAMESPACE").is_none() {
            assert_eq!(args.leader_election_namespace, "kamaji-system");
        }
        let election = args.election().expect("valid").expect("on by default");
        assert_eq!(election.lease_duration, Duration::from_secs(15));
        assert_eq!(election.renew_period, Duration::from_secs(10));
    }

    #[test]
    fn leader_elect_reads_like_a_go_bool_flag() {
        assert!(parse(&["--leader-elect"]).expect("bare").leader_elect);
        assert!(!parse(&["--leader-elect=false"]).expect("=false").leader_elect);
        assert!(
            parse(&["--leader-elect=false", "--leader-elect=true"])
                .expect("last wins")
                .leader_elect
        );
        assert!(
            parse(&["--leader-elect=false"])
                .expect("off")
                .election()
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn bind_addresses_accept_go_forms_and_zero() {
        let parsed = |v: &str| v.parse::<BindAddress>().map(BindAddress::socket);
        assert_eq!(parsed(":9090"), Ok(Some("0.0.0.0:9090".parse().expect("addr"))));
        assert_eq!(
            parsed("127.0.0.1:0"),
            Ok(Some("127.0.0.1:0".parse().expect("addr")))
        );
        assert_eq!(parsed("[::]:8080"), Ok(Some("[::]:8080".parse().expect("addr"))));
        assert_eq!(parsed("0"), Ok(None));
        assert!(parsed("localhost").is_err());
        assert!(parsed(":http").is_err());
    }

    /// Every flag of Kamaji's `manager` command (cmd/manager/cmd.go at 26.8.2-edge, plus the zap
    /// flags controller-runtime binds), with a value of the type Kamaji parses.
    const KAMAJI_MANAGER_FLAGS: &[&str] = &[
        "--metrics-bind-address=:8080",
        "--health-probe-bind-address=:8081",
        "--pprof-bind-address=",
        "--leader-elect",
        "--tmp-directory=/tmp/kamaji",
        "--kine-image=rancher/kine:v0.11.10-amd64",
        "--datastore=default",
        "--migrate-image=docker.io/clastix/kamaji:v1.0.0",
        "--max-concurrent-tcp-reconciles=1",
        "--pod-namespace=kamaji-system",
        "--webhook-service-name=kamaji-webhook-service",
        "--serviceaccount-name=kamaji-controller-manager",
        "--webhook-ca-path=/tmp/k8s-webhook-server/serving-certs/ca.crt",
        "--controller-reconcile-timeout=30s",
        "--cache-resync-period=10h0m0s",
        "--disable-telemetry",
        "--certificate-expiration-deadline=24h0m0s",
        "--zap-devel",
        "--zap-encoder=console",
        "--zap-log-level=info",
        "--zap-stacktrace-level=error",
        "--zap-time-encoding=rfc3339",
    ];

    #[test]
    fn every_kamaji_manager_flag_is_accepted() {
        let args = parse(KAMAJI_MANAGER_FLAGS).expect("Kamaji's flags parse");
        assert_eq!(args.datastore.as_deref(), Some("default"));
        assert_eq!(args.max_concurrent_tcp_reconciles, 1);
        assert_eq!(args.leader_election_namespace, "kamaji-system");
        assert_eq!(args.certificate_expiration_deadline, Duration::from_secs(86_400));
        assert_eq!(args.kamaji.cache_resync_period, Some(Duration::from_secs(36_000)));
        assert_eq!(
            args.kamaji.unused(),
            [
                "--pprof-bind-address",
                "--tmp-directory",
                "--kine-image",
                "--migrate-image",
                "--webhook-service-name",
                "--webhook-ca-path",
                "--serviceaccount-name",
                "--controller-reconcile-timeout",
                "--cache-resync-period",
                "--disable-telemetry",
                "--zap-stacktrace-level",
                "--zap-time-encoding",
            ]
        );
        // Space-separated values and Go booleans, as pflag reads them.
        let spaced = parse(&[
            "--tmp-directory",
            "/x",
            "--disable-telemetry=F",
            "--leader-elect=0",
        ])
        .expect("parses");
        assert_eq!(spaced.kamaji.tmp_directory.as_deref(), Some("/x"));
        assert_eq!(spaced.kamaji.disable_telemetry, Some(false));
        assert!(!spaced.leader_elect);
    }

    #[test]
    fn kamaji_flags_are_validated_as_kamaji_does() {
        for bad in [
            "--tmp-directory=",
            "--controller-reconcile-timeout=0s",
            "--zap-encoder=text",
            "--zap-log-level=warn",
            "--cache-resync-period=soon",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_renew_period_not_shorter_than_the_lease_is_refused() {
        let args = parse(&[
            "--leader-election-lease-duration=10s",
            "--leader-election-renew-period=10s",
        ])
        .expect("parses");
        assert!(args.election().is_err());
    }
}
