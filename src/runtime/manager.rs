//! `kamaji manager`: runs the controllers against a management cluster.
//! Flag names follow Kamaji's where Kamaji has them.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::Args;
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use tracing::{info, warn};

use super::telemetry::{self, LogFormat};
use crate::{
    controllers::{self, Context, Settings},
    pki::KeyAlgorithm,
};

/// Flags of `kamaji manager`.
#[derive(Args, Debug, Clone)]
pub struct ManagerArgs {
    /// Rotate a certificate when it expires within this duration (humantime: 7d, 36h, 1w).
    #[arg(long, default_value = "24h", value_parser = parse_deadline)]
    pub certificate_expiration_deadline: Duration,
    /// Validity of issued leaf certificates and kubeconfigs (kubeadm's certificateValidityPeriod).
    #[arg(long, default_value = "365d", value_parser = parse_positive_duration)]
    pub certificate_validity: Duration,
    /// Key algorithm of new keys: RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384.
    #[arg(long, default_value_t = KeyAlgorithm::default())]
    pub key_algorithm: KeyAlgorithm,
    /// DataStore used by TenantControlPlanes that set no spec.dataStore.
    #[arg(long)]
    pub datastore: Option<String>,
    /// TenantControlPlanes reconciled concurrently.
    #[arg(long, default_value_t = 4)]
    pub max_concurrent_tcp_reconciles: u16,
    /// Only manage TenantControlPlanes of this namespace (default: all namespaces).
    #[arg(long)]
    pub watch_namespace: Option<String>,
    /// Kubeconfig of the management cluster (default: in-cluster, then $KUBECONFIG, then ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level or filter directive (RUST_LOG overrides).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// A humantime duration that must be positive: `0s` would rotate continuously.
fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|e| format!("{value:?} is not a duration such as 7d, 36h or 1w: {e}"))?;
    if duration.is_zero() {
        return Err(format!("{value:?} must be greater than zero"));
    }
    Ok(duration)
}

/// `--certificate-expiration-deadline`: a positive humantime duration.
pub fn parse_deadline(value: &str) -> Result<Duration, String> {
    parse_positive_duration(value)
}

/// A client for the management cluster.
pub async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Runs the manager until SIGTERM or Ctrl-C.
pub async fn run(args: ManagerArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, &args.log_level)?;
    let client = client(args.kubeconfig.as_ref()).await?;
    let settings = Settings {
        key_algorithm: args.key_algorithm,
        certificate_validity: args.certificate_validity,
        certificate_expiration_deadline: args.certificate_expiration_deadline,
        default_datastore: args.datastore.clone(),
        watch_namespace: args.watch_namespace.clone(),
        max_concurrent_reconciles: args.max_concurrent_tcp_reconciles.max(1),
        ..Settings::default()
    };
    info!(
        deadline = %humantime::format_duration(args.certificate_expiration_deadline),
        validity = %humantime::format_duration(args.certificate_validity),
        algorithm = %args.key_algorithm,
        namespace = args.watch_namespace.as_deref().unwrap_or("<all>"),
        "starting kamaji-rs manager"
    );
    if args.certificate_validity <= args.certificate_expiration_deadline {
        warn!(
            "--certificate-validity is not longer than --certificate-expiration-deadline: \
             every certificate is rotated once right after it is issued, then reported as expiring"
        );
    }
    let metrics = Arc::new(crate::runtime::metrics::Metrics::new());
    let ctx = Arc::new(Context::with_metrics(client, settings, metrics));
    controllers::run_all(ctx).await;
    info!("manager stopped");
    Ok(())
}
