//! Every version of a namespace's Secrets a watch delivers, reduced to what they
//! issue (the CA that signs, the service-account key, each leaf's certificate):
//! a CA replaced twice, or a certificate re-issued twice, shows as more versions
//! than the flow asked for, even when both happened between two snapshots.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};

use crate::tenant_state::{Snapshot, certificate_fingerprint, fingerprint};

/// Secret name → the distinct values it issued, in order, each with the sequence
/// number of the event that brought it.
type History = BTreeMap<String, Vec<(u64, String)>>;

/// The watch and what it recorded; the watch stops when dropped.
pub struct Ledger {
    history: Arc<Mutex<History>>,
    sequence: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Ledger {
    /// Starts watching the Secrets of `namespace` (a watch resumes by itself after
    /// the API server comes back).
    pub fn start(client: &Client, namespace: &str) -> Self {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let history = Arc::new(Mutex::new(History::new()));
        let sequence = Arc::new(Mutex::new(0u64));
        let (h, s) = (history.clone(), sequence.clone());
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
                }
            }
        });
        Self {
            history,
            sequence,
            task,
        }
    }

    /// A point in the record: [`Self::versions_since`] counts from here.
    pub fn mark(&self) -> u64 {
        *self.sequence.lock().unwrap_or_else(|p| p.into_inner())
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

/// What a tenant Secret issues: the signing CA of `<tcp>-ca`, the front-proxy CA,
/// the service-account public key, or every certificate of a leaf or kubeconfig
/// Secret. `None` for other Secrets.
fn issued(secret: &Secret) -> Option<String> {
    let name = secret.metadata.name.as_deref()?;
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let suffix = crate::tenant_state::SECRETS
        .iter()
        .find(|s| name.ends_with(&format!("-{s}")))?;
    match *suffix {
        "ca" => certificate_fingerprint(data.get("tls.crt")?),
        "front-proxy-ca-certificate" => certificate_fingerprint(data.get("front-proxy-ca.crt")?),
        "sa-certificate" => data.get("sa.pub").map(|k| fingerprint(k)),
        "datastore-config" => None,
        _ => {
            let snapshot = Snapshot {
                secrets: [(suffix.to_string(), data)].into(),
                ..Snapshot::default()
            };
            snapshot.issued(suffix).map(|all| all.join(","))
        }
    }
}
