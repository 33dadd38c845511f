//! Test support for the integration tests: the real local cluster
//! (`tests/cluster/up.sh`, started once and shared), a `kube::Client` for it,
//! the CRDs installed, and a fresh namespace per test that is deleted after it.
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{await_condition, conditions},
};

/// The local cluster every integration test talks to.
pub struct Cluster {
    /// Admin kubeconfig of the management cluster.
    pub kubeconfig: PathBuf,
    /// Directory holding kubectl, kube-apiserver, etcd, helm, ...
    pub bin: PathBuf,
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the local cluster, or reuses the one already running (up.sh is
/// idempotent and serialises concurrent callers), once per test process.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let up = repo_root().join("tests/cluster/up.sh");
        let output = Command::new(&up)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", up.display()));
        assert!(
            output.status.success(),
            "tests/cluster/up.sh failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let kubeconfig = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let state = kubeconfig
            .parent()
            .expect("kubeconfig lives in the state directory");
        let bin = std::fs::read_to_string(state.join("bin")).expect("up.sh records the bin directory");
        Cluster {
            kubeconfig,
            bin: PathBuf::from(bin.trim()),
        }
    })
}

/// A client for the local cluster's admin.
pub async fn client() -> Client {
    client_for(&cluster().kubeconfig).await
}

/// A client for any kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("valid kubeconfig");
    Client::try_from(config).expect("client from kubeconfig")
}

/// Applies kamaji-rs' CRDs (server-side, idempotent) and waits until the API
/// server serves them.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in kamaji::api::crds() {
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("kamaji-rs-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not established within 30s"))
            .expect("watching the CRD");
    }
}

/// A namespace of the test's own, deleted (without waiting) when dropped, so a
/// failing test cleans up too.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    /// Creates `<prefix>-<random>`.
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(name.clone());
        namespace.metadata.labels = Some([("kamaji-rs.test".to_string(), "true".to_string())].into());
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("creating the test namespace");
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("KAMAJI_TEST_KEEP_NAMESPACES").is_some() {
            eprintln!("keeping namespace {} (KAMAJI_TEST_KEEP_NAMESPACES)", self.name);
            return;
        }
        let _ = kubectl(&[
            "delete",
            "namespace",
            &self.name,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

/// Runs the cluster's kubectl against the local cluster.
pub fn kubectl(args: &[&str]) -> Output {
    kubectl_with(&cluster().kubeconfig, args)
}

/// Runs kubectl with another kubeconfig (e.g. a tenant's admin.conf).
pub fn kubectl_with(kubeconfig: &Path, args: &[&str]) -> Output {
    let kubectl = cluster().bin.join("kubectl");
    Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", kubectl.display()))
}

/// kubectl that must succeed; returns its stdout.
pub fn kubectl_ok(args: &[&str]) -> String {
    let output = kubectl(args);
    assert!(
        output.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `kubectl apply -f -` with `manifest` on stdin.
pub fn kubectl_apply(namespace: &str, manifest: &str) -> Output {
    use std::io::Write;
    let kubectl = cluster().bin.join("kubectl");
    let mut child = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&cluster().kubeconfig)
        .args(["apply", "--validate=strict", "-n", namespace, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("writing the manifest");
    child.wait_with_output().expect("kubectl apply")
}

/// Polls `check` every 250 ms until it returns `Some`, or panics after `timeout`
/// naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
