//! Key hygiene: through a full provisioning, a rotation of every certificate
//! and kubeconfig, and a CA rotation (prepared, then completed), the operator's
//! log at debug level, the events, /metrics and every status the tenant went
//! through carry no private key: no PEM `PRIVATE KEY` header and none of the
//! keys the operator issued (read back from the Secrets at every stage), in
//! any encoding a leak would take (the PEM body, the base64 of the PEM as in
//! Secret data and kubeconfigs, the DER in hex). The operator writes nothing to
//! disk: it runs in empty working, temporary and home directories that stay
//! empty, and no file it holds open is open for writing but its log. And with
//! the chart's RBAC only its ServiceAccount may read the tenants' Secrets.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use base64::Engine as _;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Secret;
use kamaji::api::TenantControlPlane;
use kube::{
    Api, Client,
    api::ListParams,
    runtime::{WatchStreamExt, watcher},
};

use super::{
    helm::Release,
    lifecycle::{free_port, scrape},
    rbac::token_kubeconfig,
};
use crate::support::{
    TestNamespace, client, etcd_datastore, eventually, install_crds, kubectl, kubectl_apply, kubectl_ok,
};

const TENANT: &str = "hygiene";

/// `kamaji manager` at debug level, in a sandbox of empty directories; killed on drop.
struct Sandboxed {
    child: Child,
    log: PathBuf,
    /// Working directory, TMPDIR and HOME.
    dirs: [tempfile::TempDir; 3],
    metrics_port: u16,
}

impl Sandboxed {
    fn start(namespace: &str, kubeconfig: &Path) -> Self {
        let log_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-logs");
        std::fs::create_dir_all(&log_dir).expect("creating target/test-logs");
        let log = log_dir.join(format!("{namespace}-hygiene.log"));
        let file = std::fs::File::create(&log).expect("creating the log");
        let stderr = file.try_clone().expect("log handle");
        let dirs = [(); 3].map(|_| tempfile::tempdir().expect("tempdir"));
        let metrics_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_kamaji"))
            .args(["manager", "--log-level", "debug", "--watch-namespace", namespace])
            .args(["--leader-elect=false", "--tenant-cluster-setup=false"])
            .args(["--metrics-bind-address", &format!("127.0.0.1:{metrics_port}")])
            .args(["--health-probe-bind-address", "127.0.0.1:0"])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .current_dir(dirs[0].path())
            .env("TMPDIR", dirs[1].path())
            .env("HOME", dirs[2].path())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .expect("starting kamaji manager");
        Self {
            child,
            log,
            dirs,
            metrics_port,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Samples, every 100 ms until the returned flag is set, the regular files the
    /// process holds open for writing other than its log; the thread returns them.
    fn watch_files(&self) -> (Arc<AtomicBool>, std::thread::JoinHandle<BTreeSet<PathBuf>>) {
        let stop = Arc::new(AtomicBool::new(false));
        let (pid, log, stopped) = (self.child.id(), self.log.clone(), stop.clone());
        let sampler = std::thread::spawn(move || {
            let mut written = BTreeSet::new();
            while !stopped.load(Ordering::Relaxed) {
                written.extend(files_open_for_writing(pid, &log));
                std::thread::sleep(Duration::from_millis(100));
            }
            written
        });
        (stop, sampler)
    }
}

/// Regular files process `pid` holds open for writing, other than `log`.
fn files_open_for_writing(pid: u32, log: &Path) -> BTreeSet<PathBuf> {
    let fds = Path::new("/proc").join(pid.to_string()).join("fd");
    let mut written = BTreeSet::new();
    for entry in std::fs::read_dir(&fds).into_iter().flatten().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let info = fds.with_file_name("fdinfo").join(entry.file_name());
        let flags = std::fs::read_to_string(info).unwrap_or_default();
        let flags = flags
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .unwrap_or_default();
        // O_WRONLY | O_RDWR, on a regular file (not a socket, pipe or anon inode).
        if flags & 0o3 != 0 && target.is_file() && target != log {
            written.insert(target);
        }
    }
    written
}

impl Drop for Sandboxed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every private key PEM the tenant's Secrets hold now (kubeconfig keys included).
async fn keys_stored(client: &Client, ns: &str) -> BTreeSet<String> {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("kamaji.clastix.io/name={TENANT}")))
        .await
        .expect("listing Secrets");
    let mut keys = BTreeSet::new();
    for value in secrets
        .items
        .into_iter()
        .flat_map(|s| s.data.unwrap_or_default().into_values())
    {
        let text = String::from_utf8_lossy(&value.0).into_owned();
        if text.contains("PRIVATE KEY-----") {
            keys.insert(text);
        } else if let Ok(kubeconfig) = kamaji::pki::kubeconfig::Kubeconfig::parse(&value.0) {
            // Plain values (a password, a schema) parse as an empty kubeconfig: no users.
            for credentials in kubeconfig.client_credentials().into_iter().flatten() {
                keys.extend(credentials.key_pem.and_then(|k| String::from_utf8(k).ok()));
            }
        }
    }
    keys
}

/// The forms a leaked key would take: runs of its PEM body, of the base64 of its
/// PEM (Secret data, `client-key-data`), and its DER in hex.
fn leak_forms(pem: &str) -> Vec<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = engine.decode(&body).expect("PEM body");
    let doubled = engine.encode(pem);
    let hex: String = der[8..24].iter().map(|b| format!("{b:02x}")).collect();
    vec![
        body[16..56].to_string(),
        body[body.len() - 48..body.len() - 8].to_string(),
        doubled[40..80].to_string(),
        hex,
    ]
}

fn annotate(ns: &str, args: &[&str]) {
    let mut all = vec!["annotate", "-n", ns];
    all.extend_from_slice(args);
    kubectl_ok(&all);
}

fn value_of(ns: &str, kind: &str, name: &str, jsonpath: &str) -> String {
    let out = kubectl(&["get", kind, name, "-n", ns, "-o", &format!("jsonpath={jsonpath}")]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn ready(ns: &str, what: &str, operator: &Sandboxed) {
    let status = "{.status.kubernetesResources.version.status}";
    let reached = tokio::time::timeout(Duration::from_secs(180), async {
        while value_of(ns, "tcp", TENANT, status) != "Ready" {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{what}: not Ready\n{}", operator.log_text());
}

/// Every rotate stamp of the lifecycle-labelled Secrets is an RFC 3339 time.
fn every_labelled_secret_rotated(ns: &str) -> bool {
    let stamps = kubectl_ok(&[
        "get",
        "secrets",
        "-n",
        ns,
        "-l",
        "kamaji.clastix.io/certificate_lifecycle_controller",
        "-o",
        "jsonpath={range .items[*]}{.metadata.annotations.certs\\.kamaji\\.clastix\\.io/rotate}{\"\\n\"}{end}",
    ]);
    stamps.lines().count() == 9
        && stamps
            .lines()
            .all(|l| l.parse::<k8s_openapi::jiff::Timestamp>().is_ok())
}

/// What the operator showed the world, as text: events, /metrics, and (from the
/// watch) every status.
struct Outputs {
    statuses: Arc<Mutex<Vec<String>>>,
    metrics: Vec<String>,
}

fn events_text(ns: &str) -> String {
    kubectl_ok(&["get", "events", "-n", ns, "-o", "json"])
        + &kubectl_ok(&["get", "events.v1.events.k8s.io", "-n", ns, "-o", "json"])
}

#[tokio::test]
async fn no_key_leaks_into_logs_events_metrics_status_or_disk_and_only_the_operator_reads_secrets() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "hygiene").await;
    let release = Release::install(&ns.name, &["--set", "replicaCount=0"]);
    let token = kubectl_ok(&[
        "create",
        "token",
        &release.fullname(),
        "-n",
        &ns.name,
        "--duration=2h",
    ]);
    let kube_dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = token_kubeconfig(kube_dir.path(), token.trim());
    assert_only_the_operator_reads_secrets(&ns.name, &release.fullname());
    for verb in ["get", "list", "watch"] {
        assert!(
            !anonymous_can(&client, &ns.name, verb).await,
            "anonymous may {verb} secrets"
        );
    }

    let (datastore, _) = etcd_datastore(&client, &ns.name, &["127.0.0.1:2379"]).await;
    let operator = Sandboxed::start(&ns.name, &kubeconfig);
    let mut outputs = Outputs {
        statuses: Arc::default(),
        metrics: Vec::new(),
    };
    let watch = watch_statuses(&client, &ns.name, outputs.statuses.clone());
    let mut keys = BTreeSet::new();
    let (stop_sampling, sampler) = operator.watch_files();
    let manifest = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {TENANT}\nspec:\n  \
         dataStore: {datastore}\n  controlPlane:\n    deployment:\n      replicas: 1\n  kubernetes:\n    \
         version: v1.33.0\n  networkProfile:\n    port: 6443\n  addons:\n    konnectivity:\n      server:\n        \
         port: 8132\n"
    );
    let applied = kubectl_apply(&ns.name, &manifest);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    for stage in Stage::ALL {
        stage.run(&ns.name, &operator).await;
        keys.extend(keys_stored(&client, &ns.name).await);
        outputs
            .metrics
            .push(scrape(operator.metrics_port).expect("/metrics"));
    }
    watch.abort();
    stop_sampling.store(true, Ordering::Relaxed);
    let opened = sampler.join().expect("the file sampler");

    // Provisioning, a rotation and a CA rotation: many keys, every one checked.
    println!("{} distinct private keys issued", keys.len());
    assert!(keys.len() >= 30, "only {} keys seen", keys.len());
    // The search finds keys where they are: the Secrets themselves (data is base64 of the PEM).
    let stored = kubectl_ok(&["get", "secrets", "-n", &ns.name, "-o", "json"]);
    let found = keys
        .iter()
        .filter(|k| leak_forms(k).iter().any(|f| stored.contains(f)))
        .count();
    assert!(
        found >= 10,
        "the search finds only {found} keys in the Secrets themselves"
    );
    let log = operator.log_text();
    assert!(log.contains("DEBUG"), "the log is at debug level");
    let haystacks = [
        ("the operator's log", log),
        ("the events", events_text(&ns.name)),
        ("/metrics", outputs.metrics.join("\n")),
        ("the statuses", outputs.statuses.lock().expect("lock").join("\n")),
    ];
    for (what, text) in &haystacks {
        assert!(
            !text.contains("PRIVATE KEY"),
            "{what} carries a PEM private key header"
        );
        for key in &keys {
            for form in leak_forms(key) {
                assert!(
                    !text.contains(&form),
                    "{what} carries an issued private key ({form})"
                );
            }
        }
        println!("{what}: {} bytes, no key", text.len());
    }
    assert!(opened.is_empty(), "files open for writing: {opened:?}");
    for dir in &operator.dirs {
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("sandbox")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "the operator wrote {left:?}");
    }
    drop(release);
}

/// The flows the test drives, in order.
#[derive(Clone, Copy, Debug)]
enum Stage {
    Provisioning,
    Rotation,
    CaRotationPrepared,
    CaRotationCompleted,
}

impl Stage {
    const ALL: [Stage; 4] = [
        Stage::Provisioning,
        Stage::Rotation,
        Stage::CaRotationPrepared,
        Stage::CaRotationCompleted,
    ];

    async fn run(self, ns: &str, operator: &Sandboxed) {
        let what = format!("{self:?}");
        let phase = "{.status.credentials.rotation.certificateAuthorities.phase}";
        match self {
            Stage::Provisioning => {}
            Stage::Rotation => {
                let lifecycle = "kamaji.clastix.io/certificate_lifecycle_controller";
                annotate(
                    ns,
                    &["secret", "-l", lifecycle, "certs.kamaji.clastix.io/rotate="],
                );
                eventually(&what, Duration::from_secs(120), || async {
                    every_labelled_secret_rotated(ns).then_some(())
                })
                .await;
            }
            Stage::CaRotationPrepared => {
                annotate(
                    ns,
                    &[
                        "secret",
                        &format!("{TENANT}-ca"),
                        "certs.kamaji.clastix.io/rotate=",
                    ],
                );
                eventually(&what, Duration::from_secs(120), || async {
                    (value_of(ns, "tcp", TENANT, phase) == "Prepared").then_some(())
                })
                .await;
            }
            Stage::CaRotationCompleted => {
                annotate(
                    ns,
                    &["tcp", TENANT, "certs.kamaji.clastix.io/complete-ca-rotation="],
                );
                eventually(&what, Duration::from_secs(120), || async {
                    (value_of(ns, "tcp", TENANT, phase) == "Completed").then_some(())
                })
                .await;
            }
        }
        ready(ns, &what, operator).await;
    }
}

/// Records every status the tenant goes through.
fn watch_statuses(
    client: &Client,
    ns: &str,
    statuses: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let stream = watcher(tcps, watcher::Config::default()).applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(tcp)) = stream.try_next().await {
            let status = serde_json::to_string(&tcp.status).unwrap_or_default();
            statuses.lock().expect("lock").push(status);
        }
    })
}

/// Whether an anonymous request may `verb` Secrets in `ns`, as the API server's
/// authorizer answers (`kubectl auth can-i --as system:anonymous` cannot ask: anonymous
/// users may not create the SelfSubjectAccessReview it sends).
async fn anonymous_can(client: &Client, ns: &str, verb: &str) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("system:anonymous".into()),
            groups: Some(vec!["system:unauthenticated".into()]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.into()),
                verb: Some(verb.into()),
                resource: Some("secrets".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&Default::default(), &review)
        .await
        .expect("a SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

/// `kubectl auth can-i` for the tenants' Secrets: yes for the chart's ServiceAccount,
/// no for anyone else.
fn assert_only_the_operator_reads_secrets(ns: &str, service_account: &str) {
    let operator = format!("system:serviceaccount:{ns}:{service_account}");
    let default = format!("system:serviceaccount:{ns}:default");
    let can = |verb: &str, who: &[&str]| {
        let mut args = vec!["auth", "can-i", verb, "secrets", "-n", ns];
        args.extend_from_slice(who);
        let out = kubectl(&args);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for verb in ["get", "list", "watch"] {
        assert_eq!(can(verb, &["--as", &operator]), "yes", "{verb}: the operator");
        for who in [
            vec!["--as", default.as_str()],
            vec!["--as", "jane"],
            vec!["--as", "jane", "--as-group", "system:authenticated"],
            vec!["--as", "system:serviceaccount:kube-system:default"],
        ] {
            assert_eq!(can(verb, &who), "no", "{verb} secrets as {who:?}");
        }
    }
}
