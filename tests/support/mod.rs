//! Test support for the integration tests: the real local cluster
//! (`tests/cluster/up.sh`, started once and shared), a `kube::Client` for it,
//! the CRDs installed, and a fresh namespace per test that is deleted after it.
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Mutex, OnceLock},
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
    /// Directory holding what up.sh runs: kubectl, kube-apiserver, etcd, kwok, ...
    /// (helm, kubeadm and the node-side programs: [`built`]).
    pub bin: PathBuf,
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A binary `tests/cluster/build.sh` builds (helm, kubeadm, kubelet-bootstrap, ...),
/// built first when missing or stale (cached by pin, so usually instant):
/// each test builds only what it uses. `KAMAJI_CLUSTER_BIN`, when set, is used as it is.
pub fn built(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    if let Some(dir) = std::env::var_os("KAMAJI_CLUSTER_BIN") {
        return PathBuf::from(dir).join(name);
    }
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let build = repo_root().join("tests/cluster/build.sh");
    let output = Command::new(&build)
        .arg(name)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", build.display()));
    assert!(
        output.status.success(),
        "tests/cluster/build.sh {name} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let path = PathBuf::from(dir).join(name);
    built.push((name.to_string(), path.clone()));
    path
}

/// A program from `$PATH` (a Debian package .ci/run installs, e.g. promtool from `prometheus`).
pub fn on_path(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not on PATH: install the Debian package {package} (.ci/run does)")
        })
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

/// The `kamaji manager` binary running against the local cluster, restricted to
/// one namespace so tests running side by side do not share tenants. Killed on drop.
pub struct Operator {
    child: std::process::Child,
    /// Where its log goes.
    pub log: PathBuf,
}

impl Operator {
    /// Starts `kamaji manager --watch-namespace <namespace> <extra...>`.
    pub fn start(namespace: &str, extra: &[&str]) -> Self {
        Self::start_on(&cluster().kubeconfig, namespace, extra)
    }

    /// [`Operator::start`] with `env` added to its environment (e.g. libfaketime's
    /// `LD_PRELOAD` and `FAKETIME` for a skewed clock: the process is the operator
    /// itself, so killing it kills the operator).
    pub fn start_with_env(namespace: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::launch(&cluster().kubeconfig, namespace, extra, env)
    }

    /// [`Self::start`] against another management cluster (a throwaway one a test
    /// stops and restarts).
    pub fn start_on(kubeconfig: &Path, namespace: &str, extra: &[&str]) -> Self {
        Self::launch(kubeconfig, namespace, extra, &[])
    }

    fn launch(kubeconfig: &Path, namespace: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).expect("creating target/test-logs");
        let log = dir.join(format!("operator-{namespace}-{:04x}.log", rand::random::<u16>()));
        let file = std::fs::File::create(&log).expect("creating the operator log");
        let stderr = file.try_clone().expect("log handle");
        // KAMAJI_BIN runs another build (a benchmark comparing two versions).
        let program = std::env::var_os("KAMAJI_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_kamaji").into());
        let child = Command::new(program)
            .envs(env.iter().copied())
            .args([
                "manager",
                "--watch-namespace",
                namespace,
                "--log-level",
                "info,kamaji=debug",
                // Tests run operators side by side: no shared Lease, ephemeral ports
                // (the log says which). `extra` may override any of these.
                "--leader-elect=false",
                // The local cluster has no kube-proxy: a tenant's ClusterIP leads off
                // this host. Tests with a real tenant API server on 127.0.0.1 enable it.
                "--tenant-cluster-setup=false",
                "--metrics-bind-address",
                "127.0.0.1:0",
                "--health-probe-bind-address",
                "127.0.0.1:0",
            ])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(extra)
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .expect("starting kamaji manager");
        Self { child, log }
    }

    /// SIGKILL, as a crash would: no cleanup, no graceful shutdown.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL without giving the handle up (a [`TenantEnv`](tenant::TenantEnv) then
    /// starts the next one in its place).
    pub fn kill_in_place(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The operator's log so far (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DataStore of the etcd driver whose CA (certificate and key) lives in a
/// Secret of the test namespace. Returns its name and the CA; the DataStore is
/// cluster-scoped, so its name carries the namespace.
pub async fn etcd_datastore(
    client: &Client,
    namespace: &str,
    endpoints: &[&str],
) -> (String, kamaji::pki::Authority) {
    let params = kamaji::pki::IssueParams::new(time::OffsetDateTime::now_utc());
    let ca = kamaji::pki::Authority::generate("etcd-ca", params.algorithm, params.ca_validity, params.now)
        .expect("generating the DataStore CA");
    let name = etcd_datastore_with(client, namespace, endpoints, &ca, None).await;
    (name, ca)
}

/// [`etcd_datastore`] with the CA given and, with `admin` (certificate and key PEM),
/// `tlsConfig.clientCertificate` set as in Kamaji's etcd DataStores: the etcd admin
/// kamaji-rs connects as. Returns the DataStore's name.
pub async fn etcd_datastore_with(
    client: &Client,
    namespace: &str,
    endpoints: &[&str],
    ca: &kamaji::pki::Authority,
    admin: Option<(&str, &str)>,
) -> String {
    use k8s_openapi::{ByteString, api::core::v1::Secret};
    let mut secret = Secret::default();
    secret.metadata.name = Some("etcd-ca".into());
    let mut data: std::collections::BTreeMap<String, ByteString> = [
        (
            "ca.crt".to_string(),
            ByteString(ca.certificate_pem().as_bytes().to_vec()),
        ),
        (
            "ca.key".to_string(),
            ByteString(ca.key_pem().expect("generated CA has a key").as_bytes().to_vec()),
        ),
    ]
    .into();
    if let Some((certificate, key)) = admin {
        data.insert("root.crt".into(), ByteString(certificate.as_bytes().to_vec()));
        data.insert("root.key".into(), ByteString(key.as_bytes().to_vec()));
    }
    secret.data = Some(data);
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the DataStore CA Secret");
    let name = format!("etcd-{namespace}");
    let endpoints = endpoints
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let client_certificate = match admin {
        Some(_) => format!(
            "    clientCertificate:\n      certificate:\n        secretReference: {{name: etcd-ca, namespace: \
             {namespace}, keyPath: root.crt}}\n      privateKey:\n        secretReference: {{name: etcd-ca, \
             namespace: {namespace}, keyPath: root.key}}\n"
        ),
        None => String::new(),
    };
    let manifest = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: DataStore\nmetadata:\n  name: {name}\nspec:\n  driver: etcd\n  \
         endpoints: [{endpoints}]\n  tlsConfig:\n    certificateAuthority:\n      certificate:\n        \
         secretReference: {{name: etcd-ca, namespace: {namespace}, keyPath: ca.crt}}\n      privateKey:\n        \
         secretReference: {{name: etcd-ca, namespace: {namespace}, keyPath: ca.key}}\n{client_certificate}"
    );
    let output = kubectl_apply(namespace, &manifest);
    assert!(
        output.status.success(),
        "DataStore rejected: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    name
}

/// A Secret's data key, decoded.
pub async fn secret_value(client: &Client, namespace: &str, name: &str, key: &str) -> Vec<u8> {
    use k8s_openapi::api::core::v1::Secret;
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("reading secret {namespace}/{name}: {e}"));
    secret
        .data
        .and_then(|mut d| d.remove(key))
        .unwrap_or_else(|| panic!("secret {namespace}/{name} has no key {key}"))
        .0
}

/// Runs openssl with `args`; panics with its stderr on failure; returns stdout.
pub fn openssl(args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(
        output.status.success(),
        "openssl {:?} failed: {}{}",
        args,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The serial of a PEM certificate, as `openssl x509 -serial` prints it.
pub fn serial(dir: &Path, pem: &[u8]) -> String {
    let file = dir.join(format!("cert-{:08x}.pem", rand::random::<u32>()));
    std::fs::write(&file, pem).expect("writing a certificate");
    openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-serial".as_ref(),
        "-in".as_ref(),
        file.as_os_str(),
    ])
    .trim()
    .to_string()
}

/// `openssl verify -CAfile ca -untrusted leaf leaf` must print OK: the certificates
/// after the first in `leaf` (a served chain) are the intermediates.
pub fn assert_chain_through_intermediates(dir: &Path, ca: &[u8], leaf: &[u8], what: &str) {
    let ca_file = dir.join(format!("ca-{:08x}.pem", rand::random::<u32>()));
    let leaf_file = dir.join(format!("chain-{:08x}.pem", rand::random::<u32>()));
    std::fs::write(&ca_file, ca).expect("writing the CA");
    std::fs::write(&leaf_file, leaf).expect("writing the chain");
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca_file)
        .arg("-untrusted")
        .arg(&leaf_file)
        .arg(&leaf_file)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(": OK"),
        "{what}: openssl verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl verify -CAfile ca leaf` must print OK.
pub fn assert_chain(dir: &Path, ca: &[u8], leaf: &[u8], what: &str) {
    let ca_file = dir.join(format!("ca-{:08x}.pem", rand::random::<u32>()));
    let leaf_file = dir.join(format!("leaf-{:08x}.pem", rand::random::<u32>()));
    std::fs::write(&ca_file, ca).expect("writing the CA");
    std::fs::write(&leaf_file, leaf).expect("writing the leaf");
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca_file)
        .arg(&leaf_file)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(": OK"),
        "{what}: openssl verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
pub mod konnectivity;
pub mod metrics;
pub mod probe;
pub mod tenant;

/// Waits until the tenant's control plane runs the material now stored: the
/// Deployment's pod template carries the checksum of the mounted Secrets (the
/// operator rolls once a batch of rotations has settled) and every replica runs
/// that template and is ready.
pub async fn wait_material_rolled_out(client: &Client, ns: &str, tenant: &str) {
    use k8s_openapi::api::{apps::v1::Deployment, core::v1::Secret};
    use kamaji::{api::TenantControlPlane, tenant::deployment};
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), ns);
    eventually(
        "the rollout of the stored material to complete",
        Duration::from_secs(120),
        || async {
            let konnectivity = tcps.get(tenant).await.ok()?.spec.konnectivity().is_some();
            let mut data = Vec::new();
            for suffix in deployment::mounted_secret_suffixes(konnectivity) {
                let secret = secrets.get_opt(&format!("{tenant}-{suffix}")).await.ok()?;
                data.push((suffix, kamaji::tenant::desired::secret_data(&secret?)));
            }
            let wanted = deployment::material_checksum(data.iter().map(|(s, d)| (*s, d)));
            let d = deployments.get(tenant).await.ok()?;
            let carried = deployment::deployed_checksum(&d)?;
            (carried == wanted && rolled_out(&d)).then_some(())
        },
    )
    .await;
}

/// Every replica of the Deployment runs its current template and is ready, and no
/// old pod remains.
pub fn rolled_out(d: &k8s_openapi::api::apps::v1::Deployment) -> bool {
    let Some(status) = d.status.as_ref() else {
        return false;
    };
    let want = d.spec.replicas.unwrap_or(1);
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas == Some(want)
        && status.replicas == Some(want)
        && status.ready_replicas == Some(want)
}
