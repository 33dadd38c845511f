//! What every reconcile needs: the client, the event recorder and the
//! operator's settings, shared as `Arc<Context>`.

use std::time::Duration;

use kube::{
    Client,
    runtime::events::{Recorder, Reporter},
};

use crate::pki::KeyAlgorithm;

/// Operator settings (the manager's flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Key algorithm of new keys (kubeadm's `encryptionAlgorithm`).
    pub key_algorithm: KeyAlgorithm,
    /// Validity of leaf certificates (kubeadm's `certificateValidityPeriod`, default 1 year).
    pub certificate_validity: Duration,
    /// DataStore of tenants that name none.
    pub default_datastore: Option<String>,
    /// Only reconcile tenants in this namespace (all namespaces when `None`).
    pub watch_namespace: Option<String>,
    /// Tenants reconciled at once.
    pub max_concurrent_reconciles: u16,
    /// Delay that batches bursts of changes (e.g. `kubectl annotate -l` on several
    /// Secrets) into one reconcile, hence one rollout.
    pub debounce: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            key_algorithm: KeyAlgorithm::default(),
            certificate_validity: crate::pki::authority::LEAF_VALIDITY,
            default_datastore: None,
            watch_namespace: None,
            max_concurrent_reconciles: 4,
            debounce: Duration::from_secs(2),
        }
    }
}

/// Shared state of a controller.
#[derive(Clone)]
pub struct Context {
    /// Client of the management cluster.
    pub client: Client,
    /// Publishes Events on the objects reconciled.
    pub recorder: Recorder,
    /// The operator's settings.
    pub settings: Settings,
}

impl Context {
    /// A context whose events are reported by `kamaji-rs`.
    pub fn new(client: Client, settings: Settings) -> Self {
        let reporter = Reporter {
            controller: "kamaji-rs".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
        }
    }
}
