//! Clients that keep making requests to a tenant API server through a rotation and
//! count what happened, per phase: served, refused (a TLS verification failure, 401
//! or 403: what a rotation must never cause) and unavailable (connection refused or
//! reset while the test restarts the control plane on its new material: counted
//! apart, a real rollout replaces pods one by one).
//!
//! A refusal while the server's `/readyz` fails, just before or just after the
//! request, is counted as unavailable: a starting kube-apiserver answers 403 until
//! its authorizer has synced, and a Service sends no traffic to a pod that is not ready.
//!
//! Each request is `kubectl auth whoami` (Go's TLS stack and chain building, as a
//! kubelet has) or the same SelfSubjectReview through kube-rs (rustls), with a
//! fresh connection, so every request verifies the certificate served at that moment.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// What one request saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated and answered.
    Served,
    /// TLS verification failed, or 401/403: the credentials were not accepted.
    Refused(String),
    /// The server was not there (restarting).
    Unavailable,
}

/// Counts of one probe in one phase.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Requests made.
    pub requests: u32,
    /// Served.
    pub served: u32,
    /// Refused.
    pub refused: u32,
    /// Unavailable.
    pub unavailable: u32,
    /// The first refusal's message.
    pub first_refusal: Option<String>,
}

/// How a probe talks to the server.
#[derive(Clone, Copy, Debug)]
pub enum Stack {
    /// `kubectl` (Go).
    Kubectl,
    /// kube-rs (rustls).
    KubeRs,
}

/// The phase label requests are counted under (set by the test).
#[derive(Clone, Default)]
pub struct PhaseLabel(Arc<Mutex<String>>);

impl PhaseLabel {
    /// Counts from now on go to `phase`.
    pub fn set(&self, phase: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = phase.to_string();
    }

    /// Moves to `phase` unless a later one of `order` is set already (two observers
    /// of the same rotation never move it back).
    pub fn advance(&self, order: &[&str], phase: &str) {
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = |p: &str| order.iter().position(|o| *o == p);
        if at(phase) > at(current.as_str()) {
            *current = phase.to_string();
        }
    }

    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A kubeconfig a probe uses; the test may swap it (a kubelet renewing its certificate).
#[derive(Clone)]
pub struct Credentials(Arc<Mutex<Vec<u8>>>);

impl Credentials {
    /// From kubeconfig bytes.
    pub fn new(kubeconfig: Vec<u8>) -> Self {
        Self(Arc::new(Mutex::new(kubeconfig)))
    }

    /// Uses `kubeconfig` from the next request on.
    pub fn replace(&self, kubeconfig: Vec<u8>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = kubeconfig;
    }

    /// The kubeconfig now.
    pub fn get(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A running probe.
pub struct Probe {
    /// Its name in the table.
    pub name: String,
    counts: Arc<Mutex<BTreeMap<String, Counts>>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Probe {
    /// Starts requesting every `interval` with `credentials`, counting under `phase`.
    pub fn start(
        name: &str,
        stack: Stack,
        kubectl: PathBuf,
        dir: &Path,
        credentials: Credentials,
        phase: PhaseLabel,
        interval: Duration,
    ) -> Self {
        let counts: Arc<Mutex<BTreeMap<String, Counts>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let file = dir.join(format!("probe-{name}.conf"));
        let task = {
            let (counts, stop) = (counts.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let label = phase.get();
                    let kubeconfig = credentials.get();
                    let ready_before = server_ready(&kubeconfig).await;
                    let outcome = match stack {
                        Stack::Kubectl => {
                            let (kubectl, file, kubeconfig) =
                                (kubectl.clone(), file.clone(), kubeconfig.clone());
                            tokio::task::spawn_blocking(move || via_kubectl(&kubectl, &file, &kubeconfig))
                                .await
                                .unwrap_or_else(|e| Outcome::Refused(e.to_string()))
                        }
                        Stack::KubeRs => via_kube_rs(&kubeconfig).await,
                    };
                    // A server that is not ready (starting: its authorizer not yet synced)
                    // is one a Service would not route to: unavailable, not a refusal.
                    let outcome = match outcome {
                        Outcome::Refused(_) if !ready_before || !server_ready(&kubeconfig).await => {
                            Outcome::Unavailable
                        }
                        other => other,
                    };
                    record(&counts, &label, outcome);
                    tokio::time::sleep(interval).await;
                }
            })
        };
        Self {
            name: name.to_string(),
            counts,
            stop,
            task: Some(task),
        }
    }

    /// Stops and returns the counts per phase.
    pub async fn finish(mut self) -> BTreeMap<String, Counts> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn record(counts: &Mutex<BTreeMap<String, Counts>>, phase: &str, outcome: Outcome) {
    let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
    let entry = counts.entry(phase.to_string()).or_default();
    entry.requests += 1;
    match outcome {
        Outcome::Served => entry.served += 1,
        Outcome::Unavailable => entry.unavailable += 1,
        Outcome::Refused(why) => {
            entry.refused += 1;
            entry.first_refusal.get_or_insert(why);
        }
    }
}

/// Classifies an error message: refusals are what credentials and trust cause; a
/// server that is not there (or hangs up mid-handshake while stopping) is unavailable.
pub fn classify(message: &str) -> Outcome {
    let lower = message.to_ascii_lowercase();
    let unavailable = [
        "connection refused",
        // kubectl's own wording for ECONNREFUSED.
        "the connection to the server",
        "connection reset",
        "broken pipe",
        "eof",
        "timed out",
        "timeout",
    ];
    let refused = [
        "unauthorized",
        "forbidden",
        "401",
        "403",
        "x509",
        "certificate",
        "unknownissuer",
        "badsignature",
    ];
    if refused.iter().any(|r| lower.contains(r)) {
        Outcome::Refused(message.chars().take(300).collect())
    } else if unavailable.iter().any(|u| lower.contains(u)) {
        Outcome::Unavailable
    } else {
        Outcome::Refused(message.chars().take(300).collect())
    }
}

fn via_kubectl(kubectl: &Path, file: &Path, kubeconfig: &[u8]) -> Outcome {
    if std::fs::write(file, kubeconfig).is_err() {
        return Outcome::Refused("could not write the kubeconfig".into());
    }
    let out = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(file)
        .args(["--request-timeout=5s", "auth", "whoami", "-o", "name"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => Outcome::Served,
        Ok(out) => classify(&String::from_utf8_lossy(&out.stderr)),
        Err(e) => Outcome::Refused(format!("running kubectl: {e}")),
    }
}

async fn via_kube_rs(kubeconfig: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(kubeconfig) else {
        return Outcome::Refused("kubeconfig is not UTF-8".into());
    };
    let parsed = match kube::config::Kubeconfig::from_yaml(text) {
        Ok(k) => k,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let mut config =
        match kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default()).await
        {
            Ok(c) => c,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(5));
    let client = match kube::Client::try_from(config) {
        Ok(c) => c,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let body = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let request = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default());
    let Ok(request) = request else {
        return Outcome::Refused("building the request".into());
    };
    match client.request::<serde_json::Value>(request).await {
        Ok(_) => Outcome::Served,
        Err(kube::Error::Api(status)) if status.code == 401 || status.code == 403 => {
            Outcome::Refused(format!("{} {}", status.code, status.message))
        }
        Err(e) => classify(&with_causes(&e)),
    }
}

/// `/readyz` of the kubeconfig's server answers 200 (anonymously, the server's
/// certificate not verified: this asks whether the process is ready, nothing else).
async fn server_ready(kubeconfig: &[u8]) -> bool {
    let server = std::str::from_utf8(kubeconfig)
        .ok()
        .and_then(|text| kube::config::Kubeconfig::from_yaml(text).ok())
        .and_then(|k| k.clusters.into_iter().next()?.cluster?.server);
    let Some(uri) = server.and_then(|s| s.parse::<http::Uri>().ok()) else {
        return false;
    };
    let mut config = kube::Config::new(uri);
    config.accept_invalid_certs = true;
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(2));
    let Ok(client) = kube::Client::try_from(config) else {
        return false;
    };
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    client
        .request_text(request)
        .await
        .is_ok_and(|body| body.trim() == "ok")
}

fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The probe table: client, phase, requests, refused, unavailable.
pub fn table(rows: &[(String, BTreeMap<String, Counts>)], phases: &[&str]) -> String {
    let mut out = format!(
        "{:<28} {:<12} {:>8} {:>8} {:>8} {:>12}\n",
        "CLIENT", "PHASE", "REQUESTS", "SERVED", "REFUSED", "UNAVAILABLE"
    );
    for (name, counts) in rows {
        for phase in phases {
            let c = counts.get(*phase).cloned().unwrap_or_default();
            out.push_str(&format!(
                "{name:<28} {phase:<12} {:>8} {:>8} {:>8} {:>12}\n",
                c.requests, c.served, c.refused, c.unavailable
            ));
        }
    }
    out
}
