//! What every reconcile needs: the client, the event recorder, the metrics and
//! the operator's settings, shared as `Arc<Context>`.

use std::{sync::Arc, time::Duration};

use kube::{Client, runtime::events::Reporter};

use crate::{
    controllers::{event_recorder::EventRecorder, retry::Retries},
    pki::KeyAlgorithm,
    runtime::metrics::Metrics,
};

/// Operator settings (the manager's flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Key algorithm of new keys (kubeadm's `encryptionAlgorithm`).
    pub key_algorithm: KeyAlgorithm,
    /// Validity of leaf certificates (kubeadm's `certificateValidityPeriod`, default 1 year).
    pub certificate_validity: Duration,
    /// A certificate is rotated when it expires within this duration
    /// (`--certificate-expiration-deadline`, default 24h).
    pub certificate_expiration_deadline: Duration,
    /// DataStore of tenants that name none.
    pub default_datastore: Option<String>,
    /// Only reconcile tenants in this namespace (all namespaces when `None`).
    pub watch_namespace: Option<String>,
    /// Tenants reconciled at once.
    pub max_concurrent_reconciles: u16,
    /// How long a tenant's mounted material must be unchanged before its control
    /// plane rolls: a burst of rotations (e.g. `kubectl annotate -l` on several
    /// Secrets) is one rollout. Rotated material is written at once; only the
    /// rollout waits.
    pub batch_window: Duration,
    /// A verified, prepared CA rotation completes this long after it started.
    pub ca_rotation_grace: Duration,
    /// Share of a CA's lifetime (percent) after which its rotation starts by itself.
    pub ca_rotation_start_percent: u8,
    /// Run the tenant-side controller (it connects to each tenant's API server).
    pub tenant_cluster_setup: bool,
    /// Service-account token lifetime and the overlap of keys after a key rotation.
    pub tokens: crate::tenant::deployment::TokenSettings,
    /// This instance, as it claims tenants (`<leader-election namespace>/<id>`,
    /// [`crate::tenant::ownership`]).
    pub identity: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            key_algorithm: KeyAlgorithm::default(),
            certificate_validity: crate::pki::authority::LEAF_VALIDITY,
            certificate_expiration_deadline: Duration::from_secs(24 * 60 * 60),
            default_datastore: None,
            watch_namespace: None,
            max_concurrent_reconciles: 4,
            batch_window: Duration::from_secs(2),
            ca_rotation_grace: Duration::from_secs(24 * 60 * 60),
            ca_rotation_start_percent: 80,
            tenant_cluster_setup: true,
            tokens: crate::tenant::deployment::TokenSettings::default(),
            identity: "kamaji-system/kamaji-rs".into(),
        }
    }
}

/// Shared state of a controller.
#[derive(Clone)]
pub struct Context {
    /// Client of the management cluster.
    pub client: Client,
    /// Publishes Events on the objects reconciled.
    pub recorder: Arc<EventRecorder>,
    /// The operator's settings.
    pub settings: Settings,
    /// The operator's Prometheus metrics (rendered on `/metrics`).
    pub metrics: Arc<Metrics>,
    /// Backoff and last error of failing objects.
    pub retries: Arc<Retries>,
}

impl Context {
    /// A context whose events are reported by `kamaji-rs`, with metrics of its own.
    pub fn new(client: Client, settings: Settings) -> Self {
        Self::with_metrics(client, settings, Arc::new(Metrics::new()))
    }

    /// A context recording into `metrics` (the registry the manager serves).
    pub fn with_metrics(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: "kamaji-rs".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Arc::new(EventRecorder::new(client.clone(), reporter)),
            client,
            settings,
            metrics,
            retries: Arc::default(),
        }
    }
}
