//! Every version of a namespace's Secrets a watch delivers, reduced to what they
//! issue (the CA that signs, the service-account key, each leaf's certificate):
//! a CA replaced twice, or a certificate re-issued twice, shows as more versions
//! than the flow asked for, even when both happened between two snapshots.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};

use crate::tenant_state::{ISSUES_NOTHING, SECRETS, Snapshot};

/// The Secrets of `tenant` the ledger records versions of: every one that issues
/// something ([`ISSUES_NOTHING`] does not).
pub fn recorded_secrets(tenant: &str) -> Vec<String> {
    SECRETS
        .iter()
        .filter(|s| **s != ISSUES_NOTHING)
        .map(|s| format!("{tenant}-{s}"))
        .collect()
}

/// Secret name → the distinct values it issued, in order, each with the sequence
/// number of the event that brought it.
type History = BTreeMap<String, Vec<(u64, String)>>;

/// The watch and what it recorded; the watch stops when dropped.
pub struct Ledger {
    history: Arc<Mutex<History>>,
    sequence: Arc<Mutex<u64>>,
    /// Woken on every new version.
    recorded: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Ledger {
    /// Starts watching the Secrets of `namespace` (a watch resumes by itself after
    /// the API server comes back).
    pub fn start(client: &Client, namespace: &str) -> Self {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let history = Arc::new(Mutex::new(History::new()));
        let sequence = Arc::new(Mutex::new(0u64));
        let recorded = Arc::new(tokio::sync::Notify::new());
        let (h, s, r) = (history.clone(), sequence.clone(), recorded.clone());
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = stream.next().await {
                let Ok(secret) = event else { continue };
                let Some(issued) = issued(&secret) else { continue };
                let name = secret.metadata.name.unwrap_or_default();
                let mut seq = s.lock().unwrap_or_else(|p| p.into_inner());
                *seq += 1;
                let mut history = h.lock().unwrap_or_else(|p| p.into_inner());
                let versions = history.entry(name).or_default();
                if versions.last().map(|(_, v)| v) != Some(&issued) {
                    versions.push((*seq, issued));
                    r.notify_waiters();
                }
            }
        });
        Self {
            history,
            sequence,
            recorded,
            task,
        }
    }

    /// Waits (up to `within`) until one of `secrets` has issued `versions` values
    /// since `mark` ([`Self::versions_since`]), and returns it: the moment the watch
    /// delivers it, so a fault can land right after one write of a batch.
    pub async fn first_to_reach(
        &self,
        secrets: &[String],
        mark: u64,
        versions: usize,
        within: Duration,
    ) -> Option<String> {
        let mut reached = None;
        self.wait_for(within, |ledger| {
            reached = secrets
                .iter()
                .find(|s| ledger.versions_since(s, mark) >= versions)
                .cloned();
            reached.is_some()
        })
        .await;
        reached
    }

    /// Waits (up to `within`) until `count` of `secrets` have been written since
    /// `mark`, none held before it (a new tenant's); whether they were. Returns the
    /// moment the watch delivers the last of them.
    pub async fn written(&self, secrets: &[String], mark: u64, count: usize, within: Duration) -> bool {
        self.wait_for(within, |ledger| {
            let written = secrets
                .iter()
                .filter(|s| ledger.versions_since(s, mark) > 0)
                .count();
            written >= count
        })
        .await
    }

    /// Waits (up to `within`) until `reached` holds of the record, checked again on
    /// every new version; whether it did.
    async fn wait_for(&self, within: Duration, mut reached: impl FnMut(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Registered before the check, so a version recorded in between wakes it.
            let recorded = self.recorded.notified();
            tokio::pin!(recorded);
            recorded.as_mut().enable();
            if reached(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, recorded).await.is_err() {
                return false;
            }
        }
    }

    /// A point in the record: [`Self::versions_since`] counts from here.
    pub fn mark(&self) -> u64 {
        *self.sequence.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (up to `within`) until the watch has delivered what each of
    /// `tenant`'s Secrets holds in `stored`. A watch still reconnecting after an
    /// outage delivers the last flow's versions late, and they would count as the
    /// next flow's: take a [`Self::mark`] only once caught up.
    pub async fn catch_up(&self, stored: &Snapshot, tenant: &str, within: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let behind = self.behind(stored, tenant);
            if behind.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the ledger's watch had not delivered the stored {behind:?} within {within:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `tenant`'s Secrets whose value in `stored` the watch has not delivered yet
    /// (each issued value is new, so having seen it once is enough).
    fn behind(&self, stored: &Snapshot, tenant: &str) -> Vec<String> {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        SECRETS
            .iter()
            .filter_map(|suffix| {
                let value = stored.issued_value(suffix)?;
                let name = format!("{tenant}-{suffix}");
                let seen = history
                    .get(&name)
                    .is_some_and(|v| v.iter().any(|(_, x)| *x == value));
                (!seen).then_some(name)
            })
            .collect()
    }

    /// How many distinct values `secret` issued from `mark` on, the one it held at
    /// `mark` included.
    pub fn versions_since(&self, secret: &str, mark: u64) -> usize {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let Some(versions) = history.get(secret) else {
            return 0;
        };
        let held = versions.iter().rposition(|(seq, _)| *seq <= mark);
        let later = versions.iter().filter(|(seq, _)| *seq > mark).count();
        later + usize::from(held.is_some())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a tenant Secret issues ([`Snapshot::issued_value`]), known by its name's
/// suffix. `None` for other Secrets.
fn issued(secret: &Secret) -> Option<String> {
    let name = secret.metadata.name.as_deref()?;
    let suffix = SECRETS.iter().find(|s| name.ends_with(&format!("-{s}")))?;
    let data = secret.data.clone().unwrap_or_default();
    let data = data.into_iter().map(|(k, v)| (k, v.0)).collect();
    let snapshot = Snapshot {
        secrets: [(suffix.to_string(), data)].into(),
        ..Snapshot::default()
    };
    snapshot.issued_value(suffix)
}
