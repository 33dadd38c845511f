//! Leader election with real `kamaji manager` processes: one replica
//! reconciles while the other waits as a ready standby; after a SIGKILL of the
//! leader the standby takes over within the lease duration and reconciles; on
//! SIGTERM the leader stops cleanly and releases the Lease.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use crate::support::{
    TestNamespace, client, cluster, etcd_datastore, eventually, install_crds, kubectl, kubectl_apply,
    kubectl_ok,
    metrics::{http_get, sample_sum, served_address},
};

/// Lease timing of these tests: takeover within 4 s of the last renewal.
const LEASE: &[&str] = &[
    "--leader-election-lease-duration=4s",
    "--leader-election-renew-period=2s",
];
const LEASE_DURATION: Duration = Duration::from_secs(4);

/// A `kamaji manager` process with a log of its own; killed on drop.
pub struct Replica {
    child: Child,
    /// Its log file.
    pub log: PathBuf,
    /// Its leader-election identity.
    pub identity: String,
}

impl Replica {
    /// Starts `kamaji manager` for `namespace` (tenants and Lease) with `kubeconfig`,
    /// ephemeral endpoint ports and `extra` flags.
    pub fn start(identity: &str, namespace: &str, kubeconfig: &Path, extra: &[&str]) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("creating target/test-logs");
        let log = dir.join(format!("{namespace}-{identity}.log"));
        let file = std::fs::File::create(&log).expect("creating the log");
        let stderr = file.try_clone().expect("log handle");
        let child = Command::new(env!("CARGO_BIN_EXE_kamaji"))
            .args([
                "manager",
                "--log-level",
                "info,kamaji=debug",
                "--watch-namespace",
                namespace,
            ])
            .args(["--metrics-bind-address", "127.0.0.1:0"])
            // No route to the tenants' ClusterIPs from this host (no kube-proxy).
            .arg("--tenant-cluster-setup=false")
            .args(["--health-probe-bind-address", "127.0.0.1:0"])
            .args([
                "--leader-election-namespace",
                namespace,
                "--leader-election-identity",
                identity,
            ])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(extra)
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .expect("starting kamaji manager");
        Self {
            child,
            log,
            identity: identity.to_string(),
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address the log says `what` (`/metrics` or `/healthz and /readyz`) is served on.
    pub async fn endpoint(&self, what: &str) -> SocketAddr {
        eventually(
            &format!("{} to serve {what}", self.identity),
            Duration::from_secs(30),
            || async { served_address(&self.log_text(), what) },
        )
        .await
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        let address = self.endpoint("/metrics").await;
        let (status, body) = http_get(address, "/metrics").await;
        assert_eq!(status, 200, "{} /metrics", self.identity);
        body
    }

    /// The status code of `/readyz`.
    pub async fn readyz(&self) -> u16 {
        http_get(self.endpoint("/healthz and /readyz").await, "/readyz")
            .await
            .0
    }

    /// SIGTERM, as the kubelet stops a pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
    }

    /// SIGKILL, as a crash or a node loss would: no cleanup, the Lease is not released.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit.
    pub async fn exited(&mut self, timeout: Duration) -> ExitStatus {
        let identity = self.identity.clone();
        eventually(&format!("{identity} to exit"), timeout, || {
            let status = self.child.try_wait().ok().flatten();
            async move { status }
        })
        .await
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Lease's holder, empty when released.
fn holder(namespace: &str) -> String {
    let out = kubectl(&[
        "get",
        "lease",
        "kamaji-rs",
        "-n",
        namespace,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls the Lease every 50 ms until `identity` holds it; returns when.
async fn held_by(namespace: &str, identity: &str, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if holder(namespace) == identity {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{identity} did not acquire the lease within {timeout:?} (holder: {:?})",
            holder(namespace)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const TENANT: &str = "leader";

async fn wait_ready(namespace: &str, replicas: &[&Replica]) {
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let out = kubectl(&[
                "get",
                "tcp",
                TENANT,
                "-n",
                namespace,
                "-o",
                "jsonpath={.status.kubernetesResources.version.status}",
            ]);
            if String::from_utf8_lossy(&out.stdout).trim() == "Ready" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(
        ready.is_ok(),
        "{TENANT} not Ready; logs:\n{}",
        replicas
            .iter()
            .map(|r| format!("--- {}\n{}", r.identity, r.log_text()))
            .collect::<String>()
    );
}

#[tokio::test]
async fn one_replica_leads_and_a_standby_takes_over_within_the_lease_after_a_kill() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "leader").await;
    let (datastore, _) = etcd_datastore(&client, &ns.name, &["127.0.0.1:2379"]).await;
    let kubeconfig = &cluster().kubeconfig;

    // a leads; b waits, ready, as a standby.
    let mut a = Replica::start("replica-a", &ns.name, kubeconfig, LEASE);
    held_by(&ns.name, "replica-a", Duration::from_secs(30)).await;
    let b = Replica::start("replica-b", &ns.name, kubeconfig, LEASE);
    eventually("b to be a ready standby", Duration::from_secs(30), || async {
        (b.readyz().await == 200).then_some(())
    })
    .await;
    eventually("a to be ready", Duration::from_secs(30), || async {
        (a.readyz().await == 200).then_some(())
    })
    .await;
    assert_eq!(sample_sum(&a.metrics().await, "kamaji_leader"), 1.0);
    assert_eq!(sample_sum(&b.metrics().await, "kamaji_leader"), 0.0);

    // Only the leader reconciles.
    let manifest = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {TENANT}\nspec:\n  \
         dataStore: {datastore}\n  controlPlane:\n    deployment:\n      replicas: 1\n    service:\n      \
         serviceType: ClusterIP\n  kubernetes:\n    version: v1.33.0\n  networkProfile:\n    port: 6443\n"
    );
    let applied = kubectl_apply(&ns.name, &manifest);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    wait_ready(&ns.name, &[&a, &b]).await;
    assert!(sample_sum(&a.metrics().await, "kamaji_reconcile_total") > 0.0);
    assert_eq!(
        sample_sum(&b.metrics().await, "kamaji_reconcile_total"),
        0.0,
        "the standby reconciled:\n{}",
        b.log_text()
    );

    // SIGKILL the leader: it cannot release the lease; b takes over when it expires.
    let killed = Instant::now();
    a.kill();
    let acquired = held_by(&ns.name, "replica-b", LEASE_DURATION + Duration::from_secs(10)).await;
    let takeover = acquired - killed;
    println!("takeover after SIGKILL of the leader: {takeover:?} (lease duration {LEASE_DURATION:?})");
    assert!(
        takeover <= LEASE_DURATION + Duration::from_secs(2),
        "takeover took {takeover:?}, lease duration {LEASE_DURATION:?}"
    );
    eventually("b to report leading", Duration::from_secs(10), || async {
        (sample_sum(&b.metrics().await, "kamaji_leader") == 1.0).then_some(())
    })
    .await;

    // The new leader reconciles: a rotation requested now is carried out by b.
    let secret = format!("{TENANT}-api-server-certificate");
    kubectl_ok(&[
        "annotate",
        "secret",
        &secret,
        "-n",
        &ns.name,
        "certs.kamaji.clastix.io/rotate=",
        "--overwrite",
    ]);
    eventually("b to rotate the Secret", Duration::from_secs(60), || async {
        let out = kubectl(&[
            "get",
            "secret",
            &secret,
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.metadata.annotations.certs\\.kamaji\\.clastix\\.io/rotate}",
        ]);
        let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
        value.parse::<k8s_openapi::jiff::Timestamp>().ok().map(|_| ())
    })
    .await;

    // A third replica waits; SIGTERM to b: in-flight work finishes, the Lease is
    // released, b exits 0, and c takes over without waiting for an expiry.
    let c = Replica::start("replica-c", &ns.name, kubeconfig, LEASE);
    eventually("c to be a ready standby", Duration::from_secs(30), || async {
        (c.readyz().await == 200).then_some(())
    })
    .await;
    let mut b = b;
    let terminated = Instant::now();
    b.terminate();
    let status = b.exited(Duration::from_secs(30)).await;
    let stopped = terminated.elapsed();
    assert!(status.success(), "b exited with {status}:\n{}", b.log_text());
    assert!(
        b.log_text().contains("released the leader lease"),
        "{}",
        b.log_text()
    );
    let acquired = held_by(&ns.name, "replica-c", LEASE_DURATION + Duration::from_secs(10)).await;
    println!(
        "SIGTERM: leader stopped in {stopped:?}; standby leading {:?} after the signal",
        acquired - terminated
    );
    assert!(acquired - terminated <= LEASE_DURATION + Duration::from_secs(2));
    drop(c);
}

#[tokio::test]
async fn the_manager_exits_when_it_cannot_read_the_lease() {
    // No namespace, no Lease: the manager says so and exits non-zero (the pod
    // restarts with backoff) instead of running controllers unelected.
    let mut replica = Replica::start(
        "replica-x",
        "no-such-namespace-kamaji-rs",
        &cluster().kubeconfig,
        LEASE,
    );
    let status = replica.exited(Duration::from_secs(30)).await;
    assert!(!status.success());
    let log = replica.log_text();
    assert!(
        log.contains("leader-election Lease no-such-namespace-kamaji-rs/kamaji-rs"),
        "{log}"
    );
}
