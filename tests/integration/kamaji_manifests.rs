//! Kamaji's own manifests against kamaji-rs' CRDs and against Kamaji's CRDs:
//! every TenantControlPlane and DataStore of Kamaji's `config/samples` and of
//! the examples in its documentation (`docs/content`), as published (test data
//! pinned at one Kamaji release, tests/testdata/kamaji/README.md), applied with
//! `kubectl apply --validate=strict --dry-run=server`. kamaji-rs' CRDs are the
//! shared local cluster's; Kamaji's CRDs (same group and kinds) go into a
//! second, throwaway kube-apiserver and etcd this test starts from the cluster's
//! binaries, so the shared cluster never sees them. Accept/reject must agree
//! document by document, except for the differences listed in
//! [`DELIBERATE`], each of which docs/kamaji-compatibility.md explains.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::support::{
    TestNamespace, client, cluster, install_crds,
    tenant::{Process, free_port},
};

/// The pinned Kamaji release the test data comes from.
const KAMAJI: &str = "26.8.2-edge";

/// Documents on which kamaji-rs deliberately decides otherwise than Kamaji's
/// CRDs: (`file#document`, why). The test fails when one of them agrees again,
/// so the list never goes stale.
const DELIBERATE: &[(&str, &str)] = &[
    (
        "docs/content/enterprise-addons/ingress.md#1",
        "a TenantControlPlane without spec: Kamaji's schema takes it, kamaji-rs requires spec.kubernetes.version",
    ),
    (
        "docs/content/concepts/konnectivity.md#1",
        "no spec.kubernetes.kubelet: Kamaji requires it, kamaji-rs (which does not act on it) defaults it",
    ),
];

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/kamaji")
        .join(KAMAJI)
}

/// One document to apply: where it comes from, its kind and name, its text.
struct Manifest {
    source: String,
    kind: String,
    yaml: String,
}

/// Every TenantControlPlane and DataStore document of the samples and the docs.
fn manifests() -> Vec<Manifest> {
    let root = testdata();
    let mut files = Vec::new();
    collect(&root.join("config/samples"), "yaml", &mut files);
    collect(&root.join("docs/content"), "md", &mut files);
    files.sort();
    let env = kamaji_env(&root.join("deploy/kamaji.env"));
    let mut out = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let relative = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        let blocks = if relative.ends_with(".md") {
            code_blocks(&text)
                .into_iter()
                .map(|b| substitute(&b, &env))
                .collect()
        } else {
            vec![text]
        };
        let mut index = 0;
        for block in blocks {
            for document in block.split("\n---") {
                let Some(kind) = kind_of(document) else { continue };
                index += 1;
                out.push(Manifest {
                    source: format!("{relative}#{index}"),
                    kind,
                    yaml: document.trim_start_matches('-').to_string(),
                });
            }
        }
    }
    out
}

fn collect(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// The top-level `kind:` of a document, when it is one of the kinds compared.
fn kind_of(document: &str) -> Option<String> {
    let kind = document
        .lines()
        .find_map(|l| l.strip_prefix("kind:"))
        .map(|k| k.trim().trim_matches('"').to_string())?;
    matches!(
        kind.as_str(),
        "TenantControlPlane" | "DataStore" | "KubeconfigGenerator"
    )
    .then_some(kind)
}

/// The fenced code blocks of a Markdown page; a shell block contributes the
/// bodies of its here-documents (`cat <<EOF | kubectl apply -f -`).
fn code_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<String>)> = None;
    for line in markdown.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some((_, lines)) => blocks.push(lines),
                None => current = Some((indent, Vec::new())),
            }
            continue;
        }
        if let Some((fence, lines)) = current.as_mut() {
            let cut = (*fence).min(indent);
            lines.push(line[cut..].to_string());
        }
    }
    let mut out = Vec::new();
    for lines in blocks {
        let mut heredoc: Option<(String, Vec<String>)> = None;
        let mut found = false;
        for line in &lines {
            if let Some((delimiter, body)) = heredoc.as_mut() {
                if line.trim() == delimiter {
                    out.push(body.join("\n"));
                    heredoc = None;
                } else {
                    body.push(line.clone());
                }
            } else if let Some(at) = line.find("<<") {
                let delimiter: String = line[at + 2..]
                    .trim_start_matches('-')
                    .trim()
                    .trim_matches(|c| c == '\'' || c == '"')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !delimiter.is_empty() {
                    heredoc = Some((delimiter, Vec::new()));
                    found = true;
                }
            }
        }
        if !found {
            out.push(lines.join("\n"));
        }
    }
    out
}

/// `export NAME=value` lines of Kamaji's deploy/kamaji.env (literal values only).
fn kamaji_env(path: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.split(" #").next().unwrap_or(v).trim().trim_matches('"');
            (k.to_string(), v.to_string())
        })
        .filter(|(_, v)| !v.contains('$'))
        .collect()
}

/// The doc examples are shell here-documents: expand the variables a reader
/// sets from Kamaji's kamaji.env; others stay as written.
fn substitute(block: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = block.to_string();
    for (name, value) in env {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    out
}

/// kubectl against a given server (the shared cluster's admin credentials are
/// valid on the throwaway server too: same PKI).
fn kubectl(server: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(cluster().bin.join("kubectl"));
    command.arg("--kubeconfig").arg(&cluster().kubeconfig);
    if let Some(server) = server {
        command.arg(format!("--server={server}"));
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kubectl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writing to kubectl");
    }
    child.wait_with_output().expect("kubectl")
}

/// A second kube-apiserver with its own etcd, serving with the shared cluster's
/// certificates on 127.0.0.1. Both processes are killed when it drops.
struct ThrowawayApiServer {
    url: String,
    _etcd: Process,
    _apiserver: Process,
    _dir: tempfile::TempDir,
}

impl ThrowawayApiServer {
    fn start() -> Self {
        let bin = &cluster().bin;
        let pki = cluster()
            .kubeconfig
            .parent()
            .expect("the kubeconfig lives in the state directory")
            .join("pki");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (client_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd = Process::start(
            "etcd",
            &bin.join("etcd"),
            &[
                "--name=kamaji-crds".to_string(),
                format!("--data-dir={}", dir.path().join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=kamaji-crds=http://127.0.0.1:{peer_port}"),
                "--unsafe-no-fsync".to_string(),
                "--log-level=warn".to_string(),
            ],
            dir.path(),
        );
        let pki_file = |name: &str| pki.join(name).display().to_string();
        let apiserver = Process::start(
            "kube-apiserver",
            &bin.join("kube-apiserver"),
            &[
                "--bind-address=127.0.0.1".to_string(),
                "--advertise-address=127.0.0.1".to_string(),
                "--endpoint-reconciler-type=none".to_string(),
                format!("--secure-port={api_port}"),
                format!("--etcd-servers=http://127.0.0.1:{client_port}"),
                format!("--tls-cert-file={}", pki_file("apiserver.crt")),
                format!("--tls-private-key-file={}", pki_file("apiserver.key")),
                format!("--client-ca-file={}", pki_file("ca.crt")),
                "--authorization-mode=RBAC".to_string(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
                format!("--service-account-key-file={}", pki_file("sa.pub")),
                format!("--service-account-signing-key-file={}", pki_file("sa.key")),
                "--service-cluster-ip-range=10.0.0.0/24".to_string(),
                format!("--cert-dir={}", dir.path().join("certs").display()),
            ],
            dir.path(),
        );
        let mut server = Self {
            url: format!("https://127.0.0.1:{api_port}"),
            _etcd: etcd,
            _apiserver: apiserver,
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            let ready = kubectl(Some(&server.url), &["get", "--raw", "/readyz"], None);
            if ready.status.success() {
                break;
            }
            server._etcd.assert_running();
            server._apiserver.assert_running();
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the throwaway kube-apiserver is not ready after 120s:\n{}",
                server._apiserver.log_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        server
    }
}

/// Applies Kamaji's CRDs (server-side: the TenantControlPlane CRD is too large for
/// the last-applied annotation) and waits until they are served.
fn install_kamaji_crds(server: &str) {
    let crds = testdata().join("charts/kamaji/crds");
    let crds = crds.display().to_string();
    let out = kubectl(Some(server), &["apply", "--server-side", "-f", &crds], None);
    assert!(
        out.status.success(),
        "Kamaji's CRDs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(
        Some(server),
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            &crds,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "Kamaji's CRDs not established: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The document placed in the test's namespace: a published example names the
/// namespace of its walkthrough (`default`, `tenant-system`, `$NS`), which does
/// not exist here. `metadata.namespace` is not part of the CRD schema, so this
/// changes nothing the comparison is about.
fn in_namespace(yaml: &str, namespace: &str) -> String {
    let mut in_metadata = false;
    let mut out = Vec::new();
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_metadata = line.trim_end() == "metadata:";
        }
        if in_metadata && line.starts_with("  namespace:") {
            out.push(format!("  namespace: {namespace}"));
        } else {
            out.push(line.to_string());
        }
    }
    out.join("\n")
}

/// `Ok` when the server accepts the document, else its error on one line.
fn dry_run(server: Option<&str>, namespace: &str, yaml: &str) -> Result<(), String> {
    let out = kubectl(
        server,
        &[
            "apply",
            "--validate=strict",
            "--dry-run=server",
            "-n",
            namespace,
            "-f",
            "-",
        ],
        Some(&in_namespace(yaml, namespace)),
    );
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let joined = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    Err(joined
        .replace(
            "Error from server (BadRequest): error when creating \"STDIN\": ",
            "",
        )
        .replace("Error from server (Invalid): error when creating \"STDIN\": ", ""))
}

fn verdict(result: &Result<(), String>) -> &'static str {
    if result.is_ok() { "accepted" } else { "rejected" }
}

fn short(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let cut: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{cut}…")
}

#[tokio::test]
async fn kamaji_samples_and_doc_examples_are_accepted_and_rejected_as_kamaji_does() {
    let manifests = manifests();
    assert!(
        manifests.len() >= 25,
        "expected Kamaji's samples and doc examples, found {}",
        manifests.len()
    );
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "kamaji-manifests").await;
    let kamaji = tokio::task::spawn_blocking(ThrowawayApiServer::start)
        .await
        .expect("starting the throwaway API server");
    install_kamaji_crds(&kamaji.url);
    let created = kubectl(Some(&kamaji.url), &["create", "namespace", &ns.name], None);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let deliberate: BTreeMap<&str, &str> = DELIBERATE.iter().copied().collect();
    let mut table = vec![format!(
        "{:<62} {:<19} {:<9} {:<9} {}",
        "manifest", "kind", "kamaji-rs", "Kamaji", "agree / why not / kamaji-rs error | Kamaji error"
    )];
    let mut disagreements = Vec::new();
    let mut stale = Vec::new();
    for manifest in &manifests {
        if manifest.kind == "KubeconfigGenerator" {
            table.push(format!(
                "{:<62} {:<19} {:<9} {:<9} not compared: kamaji-rs serves no KubeconfigGenerator",
                short(&manifest.source, 62),
                manifest.kind,
                "-",
                "-"
            ));
            continue;
        }
        let ours = dry_run(None, &ns.name, &manifest.yaml);
        let theirs = dry_run(Some(&kamaji.url), &ns.name, &manifest.yaml);
        let agree = ours.is_ok() == theirs.is_ok();
        let note = match (agree, deliberate.get(manifest.source.as_str())) {
            (true, Some(_)) => {
                stale.push(manifest.source.clone());
                "agree (listed as deliberate: stale)".to_string()
            }
            (true, None) => "agree".to_string(),
            (false, Some(why)) => format!("deliberate: {why}"),
            (false, None) => {
                disagreements.push(manifest.source.clone());
                format!(
                    "DISAGREE: {} | {}",
                    ours.as_ref().err().map_or("-", String::as_str),
                    theirs.as_ref().err().map_or("-", String::as_str)
                )
            }
        };
        let note = if agree && ours.is_err() {
            format!(
                "{note}: {} | {}",
                short(ours.as_ref().err().map_or("", String::as_str), 110),
                short(theirs.as_ref().err().map_or("", String::as_str), 110)
            )
        } else {
            note
        };
        table.push(format!(
            "{:<62} {:<19} {:<9} {:<9} {note}",
            short(&manifest.source, 62),
            manifest.kind,
            verdict(&ours),
            verdict(&theirs)
        ));
    }
    println!("{}", table.join("\n"));
    assert!(
        disagreements.is_empty(),
        "kamaji-rs and Kamaji's CRDs decide differently on {disagreements:?}"
    );
    assert!(
        stale.is_empty(),
        "listed as deliberate differences but agreeing now: {stale:?}"
    );
}
