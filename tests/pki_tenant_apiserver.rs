//! The PKI used for real: a tenant's generated material runs an actual etcd (client
//! certificate auth, DataStore CA) and kube-apiserver from the local cluster's
//! binaries, and kubectl/curl drive it with the generated kubeconfigs and certificates.
//!
//! Binaries: `$KAMAJI_CLUSTER_BIN`, else the directory `tests/cluster/build.sh cluster` prints
//! (instant when the cache is fresh; a cold build takes many minutes).

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use kamaji::pki::{
    Authority, KeyAlgorithm, LeafRequest,
    authority::CA_VALIDITY,
    catalog::Usage,
    issue::{IssueParams, TenantInputs, TenantPki, issue_tenant},
    kubeconfig::{Kubeconfig, KubeconfigParams},
};
use time::OffsetDateTime;

/// A child process killed (and reaped) when the test ends, however it ends.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(name: &'static str, program: &Path, args: &[String], dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        Self { name, child, log }
    }

    /// Panics with the log's tail if the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, tail(&self.log));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KAMAJI_CLUSTER_BIN") {
        return PathBuf::from(dir);
    }
    let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/build.sh");
    // Only the cluster set: this test runs etcd and kube-apiserver.
    let output = Command::new(&build)
        .arg("cluster")
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", build.display()));
    assert!(
        output.status.success(),
        "{} failed ({})",
        build.display(),
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(
        stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .expect("build.sh printed the bin dir")
            .trim(),
    )
}

struct Kubectl {
    bin: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn run(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--request-timeout=20s")
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let out = self.run(kubeconfig, args);
        assert!(
            out.status.success(),
            "kubectl --kubeconfig {} {} failed:\n{}",
            kubeconfig.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn whoami(&self, kubeconfig: &Path) -> (String, Vec<String>) {
        let json: serde_json::Value =
            serde_json::from_str(&self.ok(kubeconfig, &["auth", "whoami", "-o", "json"])).unwrap();
        let user = &json["status"]["userInfo"];
        let groups = user["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
        (
            user["username"].as_str().unwrap_or_default().to_owned(),
            groups.unwrap_or_default(),
        )
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&path, bytes).unwrap();
    path
}

/// Runs curl; returns (success, stdout, stderr).
fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl on PATH");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn generated_pki_runs_a_real_kube_apiserver() {
    let bin = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (port, etcd_port, etcd_peer) = (free_port(), free_port(), free_port());
    let now = OffsetDateTime::now_utc();
    let params = IssueParams {
        algorithm: KeyAlgorithm::EcdsaP256,
        ..IssueParams::new(now)
    };

    let tenant = TenantInputs {
        name: "pki-tenant".into(),
        namespace: "default".into(),
        address: Some("127.0.0.1".into()),
        port,
        cert_sans: vec![],
        service_cidr: "10.96.0.0/16".into(),
        cluster_domain: "cluster.local".into(),
        control_plane_endpoint: format!("127.0.0.1:{port}"),
        konnectivity: false,
        datastore_user: "default_pki_tenant".into(),
        superseded_groups_granted: true,
    };
    let datastore_ca = Authority::generate("datastore-ca", params.algorithm, CA_VALIDITY, now).unwrap();
    let pki = issue_tenant(&tenant, Some(&datastore_ca), &params).unwrap();
    let etcd_server = datastore_ca
        .sign(
            &LeafRequest {
                common_name: "etcd-server".into(),
                usages: vec![Usage::ServerAuth, Usage::ClientAuth],
                dns_names: vec!["localhost".into()],
                ip_addresses: vec!["127.0.0.1".parse().unwrap()],
                ..LeafRequest::default()
            },
            &params,
        )
        .unwrap();

    // Lay the Secrets out as Kamaji's Deployment mounts them (/etc/kubernetes/pki).
    let pki_dir = dir.join("pki");
    let secret = |suffix: &str, key: &str| pki.secrets[suffix][key].clone();
    let file = |suffix: &str, key: &str, path: &str| write(&pki_dir, path, &secret(suffix, key));
    let ca = file("ca", "ca.crt", "ca.crt");
    file("ca", "ca.key", "ca.key");
    let apiserver_crt = file("api-server-certificate", "apiserver.crt", "apiserver.crt");
    let apiserver_key = file("api-server-certificate", "apiserver.key", "apiserver.key");
    let kubelet_crt = file(
        "api-server-kubelet-client-certificate",
        "apiserver-kubelet-client.crt",
        "apiserver-kubelet-client.crt",
    );
    let kubelet_key = file(
        "api-server-kubelet-client-certificate",
        "apiserver-kubelet-client.key",
        "apiserver-kubelet-client.key",
    );
    let fp_ca = file(
        "front-proxy-ca-certificate",
        "front-proxy-ca.crt",
        "front-proxy-ca.crt",
    );
    let fp_crt = file(
        "front-proxy-client-certificate",
        "front-proxy-client.crt",
        "front-proxy-client.crt",
    );
    let fp_key = file(
        "front-proxy-client-certificate",
        "front-proxy-client.key",
        "front-proxy-client.key",
    );
    let sa_pub = file("sa-certificate", "sa.pub", "sa.pub");
    let sa_key = file("sa-certificate", "sa.key", "sa.key");
    let etcd_ca = file("datastore-certificate", "ca.crt", "etcd/ca.crt");
    let etcd_crt = file("datastore-certificate", "server.crt", "etcd/server.crt");
    let etcd_key = file("datastore-certificate", "server.key", "etcd/server.key");
    let etcd_server_crt = write(
        dir,
        "etcd-serving/server.crt",
        etcd_server.certificate_pem.as_bytes(),
    );
    let etcd_server_key = write(dir, "etcd-serving/server.key", etcd_server.key.pem().as_bytes());
    let conf = |key: &str| write(dir, key, &pki.secrets[kubeconfig_secret(key)][key]);
    let (super_admin, admin) = (conf("super-admin.conf"), conf("admin.conf"));
    let (controller_manager, scheduler) = (conf("controller-manager.conf"), conf("scheduler.conf"));

    let etcd_url = format!("https://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{etcd_peer}");
    let mut etcd = Process::start(
        "etcd",
        &bin.join("etcd"),
        &[
            "--name=pki".into(),
            format!("--data-dir={}", dir.join("etcd-data").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=pki={peer_url}"),
            "--client-cert-auth".into(),
            format!(
                "--trusted-ca-file={}",
                datastore_ca_path(dir, &datastore_ca).display()
            ),
            format!("--cert-file={}", etcd_server_crt.display()),
            format!("--key-file={}", etcd_server_key.display()),
            "--log-level=warn".into(),
        ],
        dir,
    );

    let mut apiserver = Process::start(
        "kube-apiserver",
        &bin.join("kube-apiserver"),
        &[
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            // A loopback advertise address is refused by the default lease reconciler.
            "--endpoint-reconciler-type=none".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", dir.join("apiserver-cert-dir").display()),
            format!("--etcd-servers={etcd_url}"),
            format!("--etcd-cafile={}", etcd_ca.display()),
            format!("--etcd-certfile={}", etcd_crt.display()),
            format!("--etcd-keyfile={}", etcd_key.display()),
            "--etcd-prefix=/pki-tenant".into(),
            format!("--client-ca-file={}", ca.display()),
            format!("--tls-cert-file={}", apiserver_crt.display()),
            format!("--tls-private-key-file={}", apiserver_key.display()),
            format!("--kubelet-client-certificate={}", kubelet_crt.display()),
            format!("--kubelet-client-key={}", kubelet_key.display()),
            format!("--requestheader-client-ca-file={}", fp_ca.display()),
            "--requestheader-allowed-names=front-proxy-client".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            format!("--proxy-client-cert-file={}", fp_crt.display()),
            format!("--proxy-client-key-file={}", fp_key.display()),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--allow-privileged=true".into(),
        ],
        dir,
    );

    let kubectl = Kubectl {
        bin: bin.join("kubectl"),
        cache: dir.join("kubectl-cache"),
    };
    // The API server is ready once /readyz answers through the generated super-admin.conf.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        etcd.assert_running();
        apiserver.assert_running();
        let out = kubectl.run(&super_admin, &["get", "--raw", "/readyz"]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kube-apiserver not ready in 240s: {}\n--- kube-apiserver log ---\n{}\n--- etcd log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&apiserver.log),
            tail(&etcd.log)
        );
        sleep(Duration::from_millis(500));
    }

    // super-admin.conf (system:masters) writes and reads through the tenant, into etcd.
    kubectl.ok(
        &super_admin,
        &[
            "create",
            "configmap",
            "pki-proof",
            "-n",
            "default",
            "--from-literal=issued-by=kamaji-rs",
        ],
    );
    let listed = kubectl.ok(
        &super_admin,
        &["get", "configmaps", "-n", "default", "-o", "name"],
    );
    assert!(listed.lines().any(|l| l == "configmap/pki-proof"), "{listed}");
    assert_eq!(kubectl.whoami(&super_admin).0, "kubernetes-super-admin");
    assert!(
        kubectl
            .whoami(&super_admin)
            .1
            .contains(&"system:masters".to_owned())
    );

    // admin.conf authenticates as kubeadm's admin; its group grants nothing until the
    // kubeadm:cluster-admins binding exists, then everything.
    let (user, groups) = kubectl.whoami(&admin);
    assert_eq!(user, "kubernetes-admin");
    assert!(
        groups.contains(&"kubeadm:cluster-admins".to_owned()),
        "{groups:?}"
    );
    let denied = kubectl.run(&admin, &["get", "configmaps", "-n", "default"]);
    assert!(!denied.status.success() && String::from_utf8_lossy(&denied.stderr).contains("Forbidden"));
    kubectl.ok(
        &super_admin,
        &[
            "create",
            "clusterrolebinding",
            "kubeadm:cluster-admins",
            "--clusterrole=cluster-admin",
            "--group=kubeadm:cluster-admins",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubectl
        .run(&admin, &["get", "configmap", "pki-proof", "-n", "default"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "admin.conf still forbidden after the kubeadm:cluster-admins binding"
        );
        sleep(Duration::from_millis(300));
    }

    // The loopback kubeconfigs of the control-plane components.
    assert_eq!(
        kubectl.whoami(&controller_manager).0,
        "system:kube-controller-manager"
    );
    assert_eq!(kubectl.whoami(&scheduler).0, "system:kube-scheduler");

    // A client certificate from another CA is refused (401), even with the right server CA.
    let stranger = issue_tenant(&tenant, None, &params).unwrap();
    let foreign = foreign_kubeconfig(&stranger, &pki, port);
    let foreign_path = write(dir, "foreign.conf", foreign.to_yaml().unwrap().as_bytes());
    let refused = kubectl.run(&foreign_path, &["get", "configmaps", "-n", "default"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("Unauthorized"),
        "{stderr}"
    );
    let cred = foreign.client_credentials().unwrap().remove(0);
    let foreign_crt = write(dir, "foreign.crt", &cred.certificate_pem);
    let foreign_key = write(dir, "foreign.key", &cred.key_pem.unwrap());
    let api = format!("https://127.0.0.1:{port}/api");
    let (_, code, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        s(&ca),
        "--cert",
        s(&foreign_crt),
        "--key",
        s(&foreign_key),
        &api,
    ]);
    assert_eq!(code, "401");

    // Front proxy: the front-proxy client certificate may assert a user by header.
    let review = format!("https://127.0.0.1:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews");
    let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let (_, out, err) = curl(&[
        "--cacert",
        s(&ca),
        "--cert",
        s(&fp_crt),
        "--key",
        s(&fp_key),
        "-H",
        "X-Remote-User: alice",
        "-H",
        "X-Remote-Group: team-a",
        "-H",
        "Content-Type: application/json",
        "-X",
        "POST",
        "-d",
        body,
        &review,
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
    assert_eq!(json["status"]["userInfo"]["username"], "alice", "{out}");

    // Service accounts: a token signed with sa.key is verified with sa.pub.
    kubectl.ok(
        &super_admin,
        &["create", "serviceaccount", "robot", "-n", "default"],
    );
    let token = kubectl.ok(&super_admin, &["create", "token", "robot", "-n", "default"]);
    let empty = write(dir, "empty.conf", b"apiVersion: v1\nkind: Config\n");
    let server = format!("https://127.0.0.1:{port}");
    let who = kubectl.ok(
        &empty,
        &[
            "--server",
            &server,
            "--certificate-authority",
            s(&ca),
            "--token",
            token.trim(),
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(who, "system:serviceaccount:default:robot");

    // etcd enforces client certificates from the DataStore CA: the tenant's datastore
    // certificate gets in, a tenant-CA certificate does not.
    let health = format!("{etcd_url}/health");
    let (ok, body, err) = curl(&[
        "--cacert",
        s(&etcd_ca),
        "--cert",
        s(&etcd_crt),
        "--key",
        s(&etcd_key),
        &health,
    ]);
    assert!(ok && body.contains("\"health\":\"true\""), "{body}{err}");
    let admin_cred = Kubeconfig::parse(&fs::read(&admin).unwrap())
        .unwrap()
        .client_credentials()
        .unwrap()
        .remove(0);
    let admin_crt = write(dir, "admin.crt", &admin_cred.certificate_pem);
    let admin_key = write(dir, "admin.key", &admin_cred.key_pem.unwrap());
    let (ok, body, _) = curl(&[
        "--cacert",
        s(&etcd_ca),
        "--cert",
        s(&admin_crt),
        "--key",
        s(&admin_key),
        &health,
    ]);
    assert!(
        !ok && body.is_empty(),
        "etcd must refuse a client certificate it does not trust: {body}"
    );
    let (ok, _, _) = curl(&["--cacert", s(&etcd_ca), &health]);
    assert!(!ok, "etcd must refuse a client without a certificate");
}

/// The DataStore CA certificate, where etcd's --trusted-ca-file reads it.
fn datastore_ca_path(dir: &Path, ca: &Authority) -> PathBuf {
    write(dir, "etcd-serving/ca.crt", ca.certificate_pem().as_bytes())
}

fn kubeconfig_secret(key: &str) -> &'static str {
    match key {
        "controller-manager.conf" => "controller-manager-kubeconfig",
        "scheduler.conf" => "scheduler-kubeconfig",
        _ => "admin-kubeconfig",
    }
}

/// Trusts our server (so TLS succeeds) but presents another tenant's super-admin certificate.
fn foreign_kubeconfig(stranger: &TenantPki, ours: &TenantPki, port: u16) -> Kubeconfig {
    let theirs = Kubeconfig::parse(&stranger.secrets["admin-kubeconfig"]["super-admin.conf"]).unwrap();
    let cred = theirs.client_credentials().unwrap().remove(0);
    let server = format!("https://127.0.0.1:{port}");
    Kubeconfig::new(&KubeconfigParams {
        cluster_name: "pki-tenant",
        server: &server,
        ca_pem: ours.ca.certificate_pem(),
        user: "kubernetes-super-admin",
        client_certificate_pem: std::str::from_utf8(&cred.certificate_pem).unwrap(),
        client_key_pem: std::str::from_utf8(cred.key_pem.as_deref().unwrap()).unwrap(),
    })
}
