//! Two `kamaji manager` replicas electing a leader on a Lease, supervised as a
//! kubelet would (a replica that exits, e.g. after losing its lease, starts again
//! after a back-off, with a new identity), and sampled every 100 ms: each
//! replica's `kamaji_leader` gauge and the Lease's holder. Two replicas reporting
//! leadership at once, or a leader that is not the holder, is recorded.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::time::Instant;

use crate::support::{
    Operator,
    metrics::{http_get, sample_sum, served_address},
};

/// Lease timing: a standby takes over within 4 s of the last renewal.
const LEASE: [&str; 2] = [
    "--leader-election-lease-duration=4s",
    "--leader-election-renew-period=2s",
];
/// How long an exited replica waits before it starts again.
const BACKOFF: Duration = Duration::from_secs(2);

struct Replica {
    operator: Operator,
    identity: String,
    exited_at: Option<Instant>,
}

/// The replicas, their monitor, and what it saw; everything stops when dropped.
pub struct Election {
    violations: Arc<Mutex<Vec<String>>>,
    restarts: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Starts two replicas watching `namespace` (where the Lease lives too).
    pub fn start(client: &Client, kubeconfig: PathBuf, namespace: &str) -> Self {
        let violations = Arc::new(Mutex::new(Vec::new()));
        let restarts = Arc::new(Mutex::new(0));
        let mut generation = 0;
        let mut replicas: Vec<Replica> = ["a", "b"]
            .iter()
            .map(|name| start_replica(&kubeconfig, namespace, name, &mut generation))
            .collect();
        let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
        let (seen, restarted, ns) = (violations.clone(), restarts.clone(), namespace.to_string());
        let task = tokio::spawn(async move {
            loop {
                for (slot, replica) in replicas.iter_mut().enumerate() {
                    if supervise(replica, &kubeconfig, &ns, slot, &mut generation) {
                        *restarted.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                    }
                }
                if let Some(problem) = sample(&replicas, &leases).await {
                    seen.lock().unwrap_or_else(|p| p.into_inner()).push(problem);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            violations,
            restarts,
            task,
        }
    }

    /// What was seen since the last call: moments with two leaders.
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut *self.violations.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// How many times a replica exited and was started again.
    pub fn restarts(&self) -> usize {
        *self.restarts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        // Aborting the task drops the replicas, which kills them.
        self.task.abort();
    }
}

fn start_replica(kubeconfig: &std::path::Path, namespace: &str, slot: &str, generation: &mut u32) -> Replica {
    *generation += 1;
    let identity = format!("replica-{slot}-{generation}");
    let mut flags = vec![
        "--leader-elect=true",
        "--leader-election-namespace",
        namespace,
        "--leader-election-identity",
        &identity,
    ];
    flags.extend(LEASE);
    Replica {
        operator: Operator::start_on(kubeconfig, namespace, &flags),
        identity: identity.clone(),
        exited_at: None,
    }
}

/// Starts an exited replica again after the back-off; says whether it did.
fn supervise(
    replica: &mut Replica,
    kubeconfig: &std::path::Path,
    namespace: &str,
    slot: usize,
    generation: &mut u32,
) -> bool {
    if replica.operator.running() {
        return false;
    }
    let exited = *replica.exited_at.get_or_insert_with(Instant::now);
    if exited.elapsed() < BACKOFF {
        return false;
    }
    let name = if slot == 0 { "a" } else { "b" };
    println!("  {} exited; starting it again", replica.identity);
    *replica = start_replica(kubeconfig, namespace, name, generation);
    true
}

/// One moment: who reports leading, and who holds the Lease.
async fn sample(replicas: &[Replica], leases: &Api<Lease>) -> Option<String> {
    let mut leading = Vec::new();
    for replica in replicas {
        let Some(address) = served_address(&replica.operator.log_text(), "/metrics") else {
            continue;
        };
        if leader_gauge(address).await == Some(1.0) {
            leading.push(replica.identity.clone());
        }
    }
    let holder = tokio::time::timeout(Duration::from_secs(1), leases.get("kamaji-rs"))
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|l| l.spec?.holder_identity);
    if leading.len() > 1 {
        return Some(format!(
            "two leaders at once: {leading:?} (Lease holder {holder:?})"
        ));
    }
    match (leading.first(), holder) {
        (Some(leader), Some(holder)) if *leader != holder && !holder.is_empty() => Some(format!(
            "{leader} reports leading while the Lease is held by {holder}"
        )),
        _ => None,
    }
}

/// `kamaji_leader` from `/metrics`, `None` when nothing answers.
async fn leader_gauge(address: SocketAddr) -> Option<f64> {
    let (status, body) = http_get(address, "/metrics").await;
    (status == 200).then(|| sample_sum(&body, "kamaji_leader"))
}
