//! kubeadm as the oracle (issue 14): every certificate, key pair and kubeconfig
//! kamaji-rs issues for a tenant has what kubeadm's own code gives the same
//! certificate for the same inputs. The pinned kubeadm (`tests/cluster/build.sh
//! kubeadm`, the `k8s.io/kubernetes` module of `tests/cluster/go.mod`) runs
//! `kubeadm init phase certs all` and `kubeadm init phase kubeconfig all` (files
//! only: no root, no server, nothing is dialled) with a v1beta4 configuration
//! holding the tenant's inputs; kamaji-rs issues the tenant's PKI with its pure
//! `pki` code from the same inputs; both are read back with x509-parser and
//! compared field by field, for RSA-2048 and ECDSA-P256 (kubeadm's
//! `encryptionAlgorithm`).
//!
//! A difference fails the test, naming the certificate and the field, unless it is
//! one of [`DELIBERATE`] (each with its reason; docs/kamaji-compatibility.md,
//! "Certificates compared with kubeadm", carries the same table, which
//! `the_deliberate_differences_are_the_documented_ones` keeps in step). A
//! deliberate difference that is no longer there fails too, so the table never
//! outlives what it explains.
//!
//! Binaries: `$KAMAJI_CLUSTER_BIN/kubeadm`, else what `tests/cluster/build.sh kubeadm`
//! builds (cached by pin; a cold build takes minutes). A missing binary fails the
//! test: nothing is skipped.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use kamaji::pki::{
    Authority, KeyAlgorithm, PrivateKey,
    authority::CA_VALIDITY,
    catalog::{AUTHORITIES, CATALOG, Output, SERVICE_ACCOUNT, Signer},
    issue::{IssueParams, TenantInputs, issue_tenant},
    kubeconfig::Kubeconfig,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use time::OffsetDateTime;
use x509_parser::{
    certificate::X509Certificate,
    extensions::GeneralName,
    objects::{oid_registry, oid2sn},
    prelude::FromDer,
    public_key::PublicKey,
    x509::SubjectPublicKeyInfo,
};

// The inputs, given to both. Literal values recur in DELIBERATE below.
const TCP: &str = "oracle";
const NAMESPACE: &str = "tenants";
/// `spec.networkProfile.address`: only written into certificates, never dialled.
const ADDRESS: &str = "10.0.0.5";
const PORT: u16 = 8443;
const SERVICE_CIDR: &str = "10.112.0.0/16";
const CLUSTER_DOMAIN: &str = "cluster.example";
const CERT_SANS: &[&str] = &[
    "api.oracle.example.com",
    "*.apps.oracle.example.com",
    "192.0.2.10",
];
/// kubeadm's `nodeRegistration.name` (the host kubeadm runs on; a tenant has none).
const NODE_NAME: &str = "kubeadm-node";
const DATASTORE_USER: &str = "tenants_oracle";

/// How far two durations may differ: kubeadm's kubeconfig client certificates take
/// their NotBefore from the CA (written by the earlier `certs` run), so their validity
/// is longer by the time between the two runs; and a process starts a little after it
/// is spawned.
const TOLERANCE: Duration = Duration::from_secs(120);
/// How long one kubeadm phase may take (RSA keys on a busy two-core machine).
const KUBEADM_TIMEOUT: Duration = Duration::from_secs(180);

/// Each kamaji-rs item and the kubeadm file (below kubeadm's output directory,
/// without `.crt`/`.key`/`.pub`) it is compared with. Items are the catalog's row
/// names and the CA and key-pair names.
const COUNTERPARTS: &[(&str, &str)] = &[
    ("ca", "pki/ca"),
    ("front-proxy-ca", "pki/front-proxy-ca"),
    ("sa", "pki/sa"),
    ("apiserver", "pki/apiserver"),
    ("apiserver-kubelet-client", "pki/apiserver-kubelet-client"),
    ("front-proxy-client", "pki/front-proxy-client"),
    // The etcd driver's client certificate: what kubeadm's API server uses for etcd.
    ("datastore", "pki/apiserver-etcd-client"),
    ("admin.conf", "kubeconfig/admin.conf"),
    ("admin.svc", "kubeconfig/admin.conf"),
    ("super-admin.conf", "kubeconfig/super-admin.conf"),
    ("super-admin.svc", "kubeconfig/super-admin.conf"),
    ("controller-manager.conf", "kubeconfig/controller-manager.conf"),
    ("scheduler.conf", "kubeconfig/scheduler.conf"),
];

/// Catalog rows kubeadm has nothing to compare with.
const OURS_ONLY: &[(&str, &str)] = &[
    ("konnectivity", "kubeadm installs no konnectivity server"),
    (
        "konnectivity-server.conf",
        "kubeadm installs no konnectivity server",
    ),
];

/// Files kubeadm writes that kamaji-rs does not issue for a tenant.
const KUBEADM_ONLY: &[(&str, &str)] = &[
    (
        "pki/etcd/ca",
        "the etcd CA is the DataStore's, not the tenant's (kamaji-rs signs with it, never creates it)",
    ),
    (
        "pki/etcd/server",
        "etcd is the DataStore's, run outside the tenant",
    ),
    ("pki/etcd/peer", "etcd is the DataStore's, run outside the tenant"),
    (
        "pki/etcd/healthcheck-client",
        "etcd is the DataStore's, run outside the tenant",
    ),
    (
        "kubeconfig/kubelet.conf",
        "a tenant control plane runs no kubelet; worker nodes join with bootstrap tokens",
    ),
];

/// A compared property of a certificate, key pair or kubeconfig.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    SubjectCn,
    SubjectO,
    SubjectOrder,
    IssuerCn,
    SignedBy,
    Version,
    Serial,
    SignatureAlgorithm,
    PublicKey,
    KeyUsage,
    ExtendedKeyUsage,
    BasicConstraints,
    SanDns,
    SanIp,
    SanOther,
    Extensions,
    Validity,
    Backdate,
    Chain,
    PrivateKeyPem,
    KeyPair,
    PublicKeyPem,
    KubeconfigServer,
    KubeconfigCa,
    KubeconfigCluster,
    KubeconfigUser,
    KubeconfigContext,
    KubeconfigEntries,
}

impl Field {
    const fn name(self) -> &'static str {
        match self {
            Self::SubjectCn => "subject CN",
            Self::SubjectO => "subject O",
            Self::SubjectOrder => "subject attribute order",
            Self::IssuerCn => "issuer CN",
            Self::SignedBy => "signature",
            Self::Version => "version",
            Self::Serial => "serial number",
            Self::SignatureAlgorithm => "signature algorithm",
            Self::PublicKey => "key algorithm and size",
            Self::KeyUsage => "key usage",
            Self::ExtendedKeyUsage => "extended key usage",
            Self::BasicConstraints => "basic constraints",
            Self::SanDns => "SAN DNS",
            Self::SanIp => "SAN IP",
            Self::SanOther => "SAN other",
            Self::Extensions => "extensions present",
            Self::Validity => "validity (NotAfter - NotBefore)",
            Self::Backdate => "NotBefore backdate",
            Self::Chain => "certificates in the file",
            Self::PrivateKeyPem => "private key PEM encoding",
            Self::KeyPair => "private key matches",
            Self::PublicKeyPem => "public key PEM",
            Self::KubeconfigServer => "kubeconfig server",
            Self::KubeconfigCa => "kubeconfig CA",
            Self::KubeconfigCluster => "kubeconfig cluster name",
            Self::KubeconfigUser => "kubeconfig user name",
            Self::KubeconfigContext => "kubeconfig current context",
            Self::KubeconfigEntries => "kubeconfig entries",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A field's value: a set of strings (a scalar is a set of one), or a duration
/// compared within [`TOLERANCE`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Set(BTreeSet<String>),
    Seconds(i64),
}

fn one(value: impl Into<String>) -> Value {
    Value::Set(BTreeSet::from([value.into()]))
}

fn set<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Value {
    Value::Set(values.into_iter().map(Into::into).collect())
}

fn show(values: &BTreeSet<String>) -> String {
    if values.is_empty() {
        "(none)".into()
    } else {
        values.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

type Profile = BTreeMap<Field, Value>;

/// A difference kamaji-rs makes on purpose: for these items and this field, exactly
/// these values are kubeadm's only and exactly these kamaji-rs' only.
struct Deliberate {
    items: &'static [&'static str],
    field: Field,
    /// Key algorithms it applies to (empty: every one).
    algorithms: &'static [KeyAlgorithm],
    kubeadm_only: &'static [&'static str],
    ours_only: &'static [&'static str],
    reason: &'static str,
}

const EVERY_CERTIFICATE: &[&str] = &[
    "ca",
    "front-proxy-ca",
    "apiserver",
    "apiserver-kubelet-client",
    "front-proxy-client",
    "datastore",
    "admin.conf",
    "admin.svc",
    "super-admin.conf",
    "super-admin.svc",
    "controller-manager.conf",
    "scheduler.conf",
];
const EVERY_KEY: &[&str] = &[
    "ca",
    "front-proxy-ca",
    "sa",
    "apiserver",
    "apiserver-kubelet-client",
    "front-proxy-client",
    "datastore",
    "admin.conf",
    "admin.svc",
    "super-admin.conf",
    "super-admin.svc",
    "controller-manager.conf",
    "scheduler.conf",
];
const EVERY_LEAF: &[&str] = &[
    "apiserver",
    "apiserver-kubelet-client",
    "front-proxy-client",
    "datastore",
    "admin.conf",
    "admin.svc",
    "super-admin.conf",
    "super-admin.svc",
    "controller-manager.conf",
    "scheduler.conf",
];
const ECDSA: &[KeyAlgorithm] = &[KeyAlgorithm::EcdsaP256];
const RSA: &[KeyAlgorithm] = &[KeyAlgorithm::Rsa2048];

/// Every difference between what kubeadm and kamaji-rs issue that is meant. Anything
/// else is a bug (or a new kubeadm behaviour to decide on).
const DELIBERATE: &[Deliberate] = &[
    Deliberate {
        items: &["apiserver"],
        field: Field::SanDns,
        algorithms: &[],
        kubeadm_only: &["kubeadm-node"],
        ours_only: &[
            "localhost",
            "oracle",
            "oracle.tenants.svc",
            "oracle.tenants.svc.cluster.example",
        ],
        reason: "kubeadm names the node it runs on; a tenant control plane has no node of its own. \
                 kamaji-rs adds the names Kamaji passes to kubeadm as certSANs: localhost (the \
                 controller-manager and scheduler dial the API server in their pod) and the \
                 tenant Service's names inside the management cluster",
    },
    Deliberate {
        items: &["apiserver"],
        field: Field::SanIp,
        algorithms: &[],
        kubeadm_only: &[],
        ours_only: &["127.0.0.1"],
        reason: "as Kamaji: the controller-manager and scheduler kubeconfigs point at \
                 https://127.0.0.1:<port>, the API server in the same pod",
    },
    Deliberate {
        items: &["controller-manager.conf", "scheduler.conf"],
        field: Field::KubeconfigServer,
        algorithms: &[],
        kubeadm_only: &["https://10.0.0.5:8443"],
        ours_only: &["https://127.0.0.1:8443"],
        reason: "kubeadm points them at the node's advertise address; in a tenant they run in the \
                 API server's pod, which Kamaji reaches at 127.0.0.1 (DESIGN.md section 2)",
    },
    Deliberate {
        items: &["admin.svc", "super-admin.svc"],
        field: Field::KubeconfigServer,
        algorithms: &[],
        kubeadm_only: &["https://10.0.0.5:8443"],
        ours_only: &["https://oracle.tenants.svc:8443"],
        reason: "the *.svc variants exist for clients inside the management cluster (the operator \
                 itself): they point at the tenant Service; kubeadm has no such file",
    },
    Deliberate {
        items: &["datastore"],
        field: Field::SubjectCn,
        algorithms: &[],
        kubeadm_only: &["kube-apiserver-etcd-client"],
        ours_only: &["tenants_oracle"],
        reason: "tenants share a DataStore: each tenant's API server is its own etcd user, \
                 authorised for its own key prefix only (as Kamaji)",
    },
    Deliberate {
        items: EVERY_CERTIFICATE,
        field: Field::Serial,
        algorithms: &[],
        kubeadm_only: &["random, at most 63 bits"],
        ours_only: &["random, 64 to 128 bits"],
        reason: "DESIGN.md: random 128-bit serials (CA/Browser Forum: at least 64 bits of \
                 entropy); Go's kubeadm draws from [1, 2^63)",
    },
    Deliberate {
        items: EVERY_LEAF,
        field: Field::Extensions,
        algorithms: &[],
        kubeadm_only: &[],
        ours_only: &["subjectKeyIdentifier"],
        reason: "rcgen writes a subject key identifier on every certificate (RFC 5280 4.2.1.2: \
                 SHOULD be included in end-entity certificates); Go writes it on CAs only",
    },
    Deliberate {
        items: EVERY_KEY,
        field: Field::PrivateKeyPem,
        algorithms: RSA,
        kubeadm_only: &["PKCS#1 (RSA PRIVATE KEY)"],
        ours_only: &["PKCS#8 (PRIVATE KEY)"],
        reason: "rcgen writes PKCS#8; every Kubernetes component (keyutil.ParsePrivateKeyPEM) and \
                 kamaji-rs read PKCS#1, SEC1 and PKCS#8 alike, and keys adopted from Kamaji keep \
                 their encoding",
    },
    Deliberate {
        items: EVERY_KEY,
        field: Field::PrivateKeyPem,
        algorithms: ECDSA,
        kubeadm_only: &["SEC1 (EC PRIVATE KEY)"],
        ours_only: &["PKCS#8 (PRIVATE KEY)"],
        reason: "as for RSA: rcgen writes PKCS#8, which every reader accepts",
    },
    Deliberate {
        items: EVERY_CERTIFICATE,
        field: Field::KeyUsage,
        algorithms: ECDSA,
        kubeadm_only: &["keyEncipherment"],
        ours_only: &[],
        reason: "an ECDSA key cannot encipher keys: RFC 5480 section 3 does not allow \
                 keyEncipherment for id-ecPublicKey; kubeadm sets it whatever the key (it is \
                 meaningful for RSA, where both set it)",
    },
];

/// The tenant as kamaji-rs sees it.
fn tenant() -> TenantInputs {
    TenantInputs {
        name: TCP.into(),
        namespace: NAMESPACE.into(),
        address: Some(ADDRESS.into()),
        port: PORT,
        cert_sans: CERT_SANS.iter().map(|s| (*s).to_owned()).collect(),
        service_cidr: SERVICE_CIDR.into(),
        cluster_domain: CLUSTER_DOMAIN.into(),
        control_plane_endpoint: format!("{ADDRESS}:{PORT}"),
        konnectivity: false,
        datastore_user: DATASTORE_USER.into(),
        superseded_groups_granted: true,
    }
}

/// The same tenant as a kubeadm configuration: the validity periods at their v1beta4
/// defaults, written out; the cluster named after the tenant, as Kamaji does; the
/// Kubernetes version pinned so kubeadm does not look one up on the internet.
fn kubeadm_config(cert_dir: &Path, algorithm: KeyAlgorithm) -> String {
    let sans: String = CERT_SANS.iter().map(|s| format!("\n  - \"{s}\"")).collect();
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: {ADDRESS}
  bindPort: {PORT}
nodeRegistration:
  name: {NODE_NAME}
  criSocket: unix:///var/run/containerd/containerd.sock
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: {version}
clusterName: {TCP}
controlPlaneEndpoint: \"{ADDRESS}:{PORT}\"
certificatesDir: {cert_dir}
encryptionAlgorithm: {algorithm}
certificateValidityPeriod: 8760h0m0s
caCertificateValidityPeriod: 87600h0m0s
networking:
  serviceSubnet: {SERVICE_CIDR}
  dnsDomain: {CLUSTER_DOMAIN}
apiServer:
  certSANs:{sans}
",
        version = kubernetes_version(),
        cert_dir = cert_dir.display(),
    )
}

/// `KUBERNETES_VERSION` of tests/cluster/versions.env: the version kubeadm is built from.
fn kubernetes_version() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/versions.env");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION="))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("{} has no KUBERNETES_VERSION", path.display()))
}

/// The pinned kubeadm: `$KAMAJI_CLUSTER_BIN/kubeadm`, else built (or found fresh in the
/// cache) by `tests/cluster/build.sh kubeadm`.
fn kubeadm_binary() -> PathBuf {
    let path = match std::env::var_os("KAMAJI_CLUSTER_BIN") {
        Some(dir) => PathBuf::from(dir).join("kubeadm"),
        None => {
            let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/build.sh");
            let output = Command::new(&build)
                .arg("kubeadm")
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", build.display()));
            assert!(
                output.status.success(),
                "{} kubeadm failed ({}): kubeadm is the oracle of this test and cannot be skipped",
                build.display(),
                output.status
            );
            let stdout = String::from_utf8_lossy(&output.stdout);
            let dir = stdout
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            PathBuf::from(dir.trim()).join("kubeadm")
        }
    };
    assert!(
        path.is_file(),
        "{} is missing: build it with `tests/cluster/build.sh kubeadm` (or unset KAMAJI_CLUSTER_BIN)",
        path.display()
    );
    path
}

/// Runs kubeadm (output to `log`), failing the test on a non-zero exit or after
/// [`KUBEADM_TIMEOUT`].
fn run_kubeadm(kubeadm: &Path, args: &[&str], log: &Path) {
    let out = fs::File::create(log).unwrap();
    let mut child = Command::new(kubeadm)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", kubeadm.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > KUBEADM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kubeadm {} did not finish in {KUBEADM_TIMEOUT:?}:\n{}",
                args.join(" "),
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "kubeadm {} failed ({status}):\n{}",
        args.join(" "),
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// What one side issued: profiles by kamaji-rs item (ours) or kubeadm file (kubeadm).
struct Issued {
    profiles: BTreeMap<String, Profile>,
}

/// kamaji-rs' PKI for the tenant, issued with its pure code at `now`.
fn ours(algorithm: KeyAlgorithm) -> Issued {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let params = IssueParams {
        algorithm,
        ..IssueParams::new(now)
    };
    // The DataStore's CA: an etcd cluster's CA, named as kubeadm names its own.
    let datastore_ca = Authority::generate("etcd-ca", algorithm, CA_VALIDITY, now).unwrap();
    let pki = issue_tenant(&tenant(), Some(&datastore_ca), &params).unwrap();
    let mut profiles = BTreeMap::new();
    let tenant_ca_pem = pki.ca.certificate_pem().as_bytes().to_vec();
    for spec in AUTHORITIES {
        let data = &pki.secrets[spec.secret_suffix];
        let cert = &data[spec.cert_keys[0]];
        let key = &data[spec.key_keys[0]];
        profiles.insert(spec.name.to_owned(), certificate(cert, key, cert, now));
    }
    let sa = &pki.secrets[SERVICE_ACCOUNT.secret_suffix];
    profiles.insert(
        SERVICE_ACCOUNT.name.to_owned(),
        key_pair(&sa[SERVICE_ACCOUNT.public_key], &sa[SERVICE_ACCOUNT.private_key]),
    );
    for spec in CATALOG.iter().filter(|s| s.applies(false, true)) {
        let data = &pki.secrets[spec.secret_suffix];
        let issuer = match spec.signer {
            Signer::TenantCa => tenant_ca_pem.clone(),
            Signer::FrontProxyCa => pki.front_proxy_ca.certificate_pem().as_bytes().to_vec(),
            Signer::DatastoreCa => datastore_ca.certificate_pem().as_bytes().to_vec(),
        };
        let profile = match spec.output {
            Output::Pem { cert, key, .. } => certificate(&data[cert], &data[key], &issuer, now),
            Output::Kubeconfig { key, .. } => kubeconfig(&data[key], &issuer, now),
        };
        profiles.insert(spec.name.to_owned(), profile);
    }
    Issued { profiles }
}

/// kubeadm's PKI for the same inputs, written by the pinned kubeadm into a new directory.
fn kubeadm(kubeadm: &Path, algorithm: KeyAlgorithm) -> Issued {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let kubeconfigs = dir.path().join("kubeconfig");
    fs::create_dir_all(&kubeconfigs).unwrap();
    let config = dir.path().join("kubeadm.yaml");
    fs::write(&config, kubeadm_config(&pki, algorithm)).unwrap();
    let config = config.to_str().unwrap();
    // kubeadm's start time (its StartTimeUTC, taken when the process starts): the
    // NotBefore of everything it issues, kubeconfigs included (they take the CA's), is
    // five minutes before it.
    let started = OffsetDateTime::now_utc();
    run_kubeadm(
        kubeadm,
        &["init", "phase", "certs", "all", "--config", config],
        &dir.path().join("certs.log"),
    );
    run_kubeadm(
        kubeadm,
        &[
            "init",
            "phase",
            "kubeconfig",
            "all",
            "--config",
            config,
            "--kubeconfig-dir",
            kubeconfigs.to_str().unwrap(),
        ],
        &dir.path().join("kubeconfig.log"),
    );
    let read = |path: PathBuf| fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut profiles = BTreeMap::new();
    for file in written(dir.path()) {
        let path = dir.path().join(&file);
        let profile = if file.starts_with("kubeconfig/") {
            kubeconfig(&read(path), &read(pki.join("ca.crt")), started)
        } else if file == "pki/sa" {
            key_pair(&read(pki.join("sa.pub")), &read(pki.join("sa.key")))
        } else {
            let issuer = match file.as_str() {
                "pki/front-proxy-client" => pki.join("front-proxy-ca.crt"),
                f if f.ends_with("-ca") || f.ends_with("/ca") => path.with_extension("crt"),
                f if f.starts_with("pki/etcd/") || f == "pki/apiserver-etcd-client" => {
                    pki.join("etcd/ca.crt")
                }
                _ => pki.join("ca.crt"),
            };
            certificate(
                &read(path.with_extension("crt")),
                &read(path.with_extension("key")),
                &read(issuer),
                started,
            )
        };
        profiles.insert(file, profile);
    }
    Issued { profiles }
}

/// What kubeadm wrote, as `pki/<base>` (for `<base>.crt`/`.key`/`.pub`) and
/// `kubeconfig/<file>`.
fn written(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sub in ["pki", "pki/etcd", "kubeconfig"] {
        for entry in fs::read_dir(root.join(sub)).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_type().unwrap().is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let name = if sub == "kubeconfig" {
                name
            } else {
                name.rsplit_once('.')
                    .map_or(name.clone(), |(base, _)| base.to_owned())
            };
            out.insert(format!("{sub}/{name}"));
        }
    }
    out
}

fn pem_labels(pem: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(pem)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
        .map(str::to_owned)
        .collect()
}

fn private_key_encoding(pem: &[u8]) -> String {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(PrivateKeyDer::Pkcs1(_)) => "PKCS#1 (RSA PRIVATE KEY)".into(),
        Ok(PrivateKeyDer::Sec1(_)) => "SEC1 (EC PRIVATE KEY)".into(),
        Ok(PrivateKeyDer::Pkcs8(_)) => "PKCS#8 (PRIVATE KEY)".into(),
        Ok(_) => "another encoding".into(),
        Err(e) => format!("unreadable ({e:?})"),
    }
}

fn oid_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    oid2sn(oid, oid_registry()).map_or_else(|_| oid.to_id_string(), str::to_owned)
}

fn public_key(spki: &SubjectPublicKeyInfo<'_>) -> String {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {} bits", rsa.key_size()),
        Ok(PublicKey::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map_or_else(|| "no curve".into(), |oid| oid_name(&oid));
            format!("EC {curve} ({} bits)", point.key_size())
        }
        Ok(other) => format!("other ({} bits)", other.key_size()),
        Err(e) => format!("unreadable ({e})"),
    }
}

fn key_matches(key_pem: &[u8], spki: &SubjectPublicKeyInfo<'_>) -> Value {
    one(match PrivateKey::from_pem(key_pem) {
        Ok(key) if key.matches_public_key(&spki.subject_public_key.data) => "yes".to_owned(),
        Ok(_) => "no: another key".to_owned(),
        Err(e) => format!("no: {e}"),
    })
}

/// A certificate with its key, signed by `issuer_pem`'s first certificate, issued at `issued_at`.
fn certificate(cert_pem: &[u8], key_pem: &[u8], issuer_pem: &[u8], issued_at: OffsetDateTime) -> Profile {
    let ders: Vec<_> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .expect("certificate PEM");
    let issuer_der = CertificateDer::from_pem_slice(issuer_pem).expect("issuer PEM");
    let (_, cert) = X509Certificate::from_der(&ders[0]).expect("X.509 certificate");
    let (_, issuer) = X509Certificate::from_der(&issuer_der).expect("X.509 issuer");
    let mut p = names(&cert, &issuer);
    p.extend(usages(&cert));
    p.extend(alt_names(&cert));
    p.insert(Field::Version, one(format!("v{}", cert.version().0 + 1)));
    let bits = cert.serial.bits();
    p.insert(
        Field::Serial,
        one(match bits {
            0 => "zero".to_owned(),
            1..=63 => "random, at most 63 bits".to_owned(),
            64..=128 => "random, 64 to 128 bits".to_owned(),
            _ => format!("{bits} bits"),
        }),
    );
    p.insert(
        Field::SignatureAlgorithm,
        one(oid_name(&cert.signature_algorithm.algorithm)),
    );
    p.insert(Field::PublicKey, one(public_key(cert.public_key())));
    let extensions = cert.extensions().iter().map(|e| {
        let name = oid_name(&e.oid);
        if e.critical {
            format!("{name} (critical)")
        } else {
            name
        }
    });
    p.insert(Field::Extensions, set(extensions));
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    p.insert(
        Field::Validity,
        Value::Seconds((not_after - not_before).whole_seconds()),
    );
    p.insert(
        Field::Backdate,
        Value::Seconds((issued_at - not_before).whole_seconds()),
    );
    p.insert(Field::Chain, one(format!("{} certificate(s)", ders.len())));
    p.insert(Field::PrivateKeyPem, one(private_key_encoding(key_pem)));
    p.insert(Field::KeyPair, key_matches(key_pem, cert.public_key()));
    p
}

/// Subject, issuer and whether `issuer` really signed it.
fn names(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Profile {
    let strings = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        Value::Set(
            it.map(|a| a.as_str().unwrap_or("(not a string)").to_owned())
                .collect(),
        )
    };
    let order: Vec<String> = cert
        .subject()
        .iter_attributes()
        .map(|a| oid_name(a.attr_type()))
        .collect();
    let signed = cert.issuer().as_raw() == issuer.subject().as_raw()
        && cert.verify_signature(Some(issuer.public_key())).is_ok();
    Profile::from([
        (Field::SubjectCn, strings(&mut cert.subject().iter_common_name())),
        (Field::SubjectO, strings(&mut cert.subject().iter_organization())),
        (Field::SubjectOrder, one(order.join(","))),
        (Field::IssuerCn, strings(&mut cert.issuer().iter_common_name())),
        (
            Field::SignedBy,
            one(if signed { "its CA's" } else { "NOT its CA's" }),
        ),
    ])
}

/// Key usage, extended key usage and basic constraints.
fn usages(cert: &X509Certificate<'_>) -> Profile {
    let key_usage = cert.key_usage().expect("key usage").map(|ku| {
        let ku = ku.value;
        [
            (ku.digital_signature(), "digitalSignature"),
            (ku.non_repudiation(), "nonRepudiation"),
            (ku.key_encipherment(), "keyEncipherment"),
            (ku.data_encipherment(), "dataEncipherment"),
            (ku.key_agreement(), "keyAgreement"),
            (ku.key_cert_sign(), "keyCertSign"),
            (ku.crl_sign(), "cRLSign"),
            (ku.encipher_only(), "encipherOnly"),
            (ku.decipher_only(), "decipherOnly"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect::<Vec<_>>()
    });
    let eku = cert.extended_key_usage().expect("extended key usage").map(|e| {
        let e = e.value;
        let mut names: Vec<String> = [
            (e.any, "any"),
            (e.server_auth, "serverAuth"),
            (e.client_auth, "clientAuth"),
            (e.code_signing, "codeSigning"),
            (e.email_protection, "emailProtection"),
            (e.time_stamping, "timeStamping"),
            (e.ocsp_signing, "OCSPSigning"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_owned())
        .collect();
        names.extend(e.other.iter().map(oid_name));
        names
    });
    let bc = cert.basic_constraints().expect("basic constraints").map_or_else(
        || "absent".to_owned(),
        |bc| match (bc.value.ca, bc.value.path_len_constraint) {
            (true, Some(n)) => format!("CA:TRUE pathlen:{n}"),
            (true, None) => "CA:TRUE".to_owned(),
            (false, _) => "CA:FALSE".to_owned(),
        },
    );
    Profile::from([
        (Field::KeyUsage, set(key_usage.unwrap_or_default())),
        (Field::ExtendedKeyUsage, set(eku.unwrap_or_default())),
        (Field::BasicConstraints, one(bc)),
    ])
}

/// Subject alternative names: DNS, IP, anything else.
fn alt_names(cert: &X509Certificate<'_>) -> Profile {
    let (mut dns, mut ips, mut other) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    if let Some(san) = cert.subject_alternative_name().expect("SAN") {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    dns.insert((*d).to_owned());
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                        _ => None,
                    };
                    ips.insert(ip.map_or_else(|| format!("{b:?}"), |ip| ip.to_string()));
                }
                other_name => {
                    other.insert(format!("{other_name:?}"));
                }
            }
        }
    }
    Profile::from([
        (Field::SanDns, Value::Set(dns)),
        (Field::SanIp, Value::Set(ips)),
        (Field::SanOther, Value::Set(other)),
    ])
}

/// A key pair (the service-account signing key): `sa.pub` and `sa.key`.
fn key_pair(public_pem: &[u8], private_pem: &[u8]) -> Profile {
    use rustls_pki_types::SubjectPublicKeyInfoDer;
    let der = SubjectPublicKeyInfoDer::from_pem_slice(public_pem).expect("PUBLIC KEY PEM");
    let (_, spki) = SubjectPublicKeyInfo::from_der(&der).expect("SubjectPublicKeyInfo");
    let mut p = Profile::new();
    p.insert(Field::PublicKey, one(public_key(&spki)));
    p.insert(Field::PublicKeyPem, set(pem_labels(public_pem)));
    p.insert(Field::PrivateKeyPem, one(private_key_encoding(private_pem)));
    p.insert(Field::KeyPair, key_matches(private_pem, &spki));
    p
}

/// A kubeconfig with an embedded client certificate issued by `ca_pem`, at `issued_at`.
fn kubeconfig(bytes: &[u8], ca_pem: &[u8], issued_at: OffsetDateTime) -> Profile {
    let kc = Kubeconfig::parse(bytes).expect("kubeconfig");
    let user = kc.current_user().map(|u| u.name.clone()).unwrap_or_default();
    let credentials = kc.client_credentials().expect("client certificate");
    let credentials = credentials
        .iter()
        .find(|c| c.user == user)
        .expect("the current user's credentials");
    let mut p = certificate(
        &credentials.certificate_pem,
        credentials.key_pem.as_deref().expect("an embedded key"),
        ca_pem,
        issued_at,
    );
    p.insert(
        Field::KubeconfigServer,
        one(kc.current_server().unwrap_or("(none)")),
    );
    let embedded = kc.current_ca_pem().expect("CA data").unwrap_or_default();
    let same_ca = CertificateDer::pem_slice_iter(&embedded)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        == CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .ok();
    p.insert(
        Field::KubeconfigCa,
        one(if same_ca {
            "the issuing CA's certificate, alone"
        } else {
            "another bundle"
        }),
    );
    p.insert(
        Field::KubeconfigCluster,
        one(kc.current_cluster().map_or("(none)", |c| c.name.as_str())),
    );
    p.insert(Field::KubeconfigUser, one(user));
    p.insert(
        Field::KubeconfigContext,
        one(kc.0.current_context.clone().unwrap_or_default()),
    );
    p.insert(
        Field::KubeconfigEntries,
        one(format!(
            "{} cluster(s), {} context(s), {} user(s)",
            kc.0.clusters.len(),
            kc.0.contexts.len(),
            kc.0.auth_infos.len()
        )),
    );
    p
}

/// The outcome of comparing one field of one item.
enum Outcome {
    Same,
    /// As the [`DELIBERATE`] entry of this index says.
    Deliberate(usize),
    Differs(String),
}

/// One field of one item: the same (durations within [`TOLERANCE`]), different exactly
/// as a [`DELIBERATE`] entry says, or different.
fn compare_field(
    algorithm: KeyAlgorithm,
    item: &str,
    field: Field,
    kubeadm: Option<&Value>,
    ours: Option<&Value>,
) -> Outcome {
    let (a, b) = match (kubeadm, ours) {
        (Some(Value::Seconds(a)), Some(Value::Seconds(b))) if a.abs_diff(*b) <= TOLERANCE.as_secs() => {
            return Outcome::Same;
        }
        (Some(Value::Seconds(a)), Some(Value::Seconds(b))) => {
            return Outcome::Differs(format!(
                "kubeadm {a} s, kamaji-rs {b} s (more than {TOLERANCE:?} apart)"
            ));
        }
        (Some(Value::Set(a)), Some(Value::Set(b))) => (a, b),
        (a, b) => return Outcome::Differs(format!("kubeadm {a:?}, kamaji-rs {b:?}")),
    };
    let kubeadm_only: BTreeSet<String> = a.difference(b).cloned().collect();
    let ours_only: BTreeSet<String> = b.difference(a).cloned().collect();
    let entry = DELIBERATE.iter().position(|d| {
        d.field == field
            && d.items.contains(&item)
            && (d.algorithms.is_empty() || d.algorithms.contains(&algorithm))
    });
    let Some(entry) = entry else {
        return if kubeadm_only.is_empty() && ours_only.is_empty() {
            Outcome::Same
        } else {
            Outcome::Differs(format!(
                "kubeadm {}, kamaji-rs {} (not a deliberate difference)",
                show(a),
                show(b)
            ))
        };
    };
    let listed = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    let (expected_kubeadm, expected_ours) = (
        listed(DELIBERATE[entry].kubeadm_only),
        listed(DELIBERATE[entry].ours_only),
    );
    if expected_kubeadm == kubeadm_only && expected_ours == ours_only {
        return Outcome::Deliberate(entry);
    }
    Outcome::Differs(format!(
        "kubeadm {}, kamaji-rs {} (the table of deliberate differences expects kubeadm-only {}, \
         kamaji-rs-only {}; found kubeadm-only {}, kamaji-rs-only {})",
        show(a),
        show(b),
        show(&expected_kubeadm),
        show(&expected_ours),
        show(&kubeadm_only),
        show(&ours_only)
    ))
}

/// Compares every counterpart, field by field. Returns the rows of a report table
/// and the failures.
fn compare(algorithm: KeyAlgorithm, ours: &Issued, theirs: &Issued) -> (Vec<String>, Vec<String>) {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut used = BTreeSet::new();
    for (item, file) in COUNTERPARTS {
        let (Some(o), Some(k)) = (ours.profiles.get(*item), theirs.profiles.get(*file)) else {
            failures.push(format!(
                "{algorithm} {item}: kamaji-rs issued it: {}, kubeadm wrote {file}: {}",
                ours.profiles.contains_key(*item),
                theirs.profiles.contains_key(*file)
            ));
            continue;
        };
        let fields: BTreeSet<Field> = o.keys().chain(k.keys()).copied().collect();
        let (mut same, mut deliberate) = (Vec::new(), Vec::new());
        for field in fields {
            let outcome = compare_field(algorithm, item, field, k.get(&field), o.get(&field));
            match outcome {
                Outcome::Same => same.push(field.name()),
                Outcome::Deliberate(entry) => {
                    used.insert(entry);
                    deliberate.push(field.name());
                }
                Outcome::Differs(what) => {
                    failures.push(format!("{algorithm} {item} (kubeadm {file}): {field}: {what}"));
                }
            }
        }
        report.push(format!(
            "| {algorithm} | {item} | {file} | {} | {} |",
            same.join(", "),
            if deliberate.is_empty() {
                "-".to_owned()
            } else {
                deliberate.join(", ")
            }
        ));
    }
    for (i, d) in DELIBERATE.iter().enumerate() {
        let applies = d.algorithms.is_empty() || d.algorithms.contains(&algorithm);
        if applies && !used.contains(&i) {
            failures.push(format!(
                "{algorithm}: the deliberate difference of {} in {} was not found as listed: \
                 update or remove its row of DELIBERATE (and docs/kamaji-compatibility.md)",
                d.field,
                d.items.join(", ")
            ));
        }
    }
    (report, failures)
}

/// Every catalog row, CA and key pair is compared or listed as kamaji-rs only; every
/// file kubeadm wrote is compared or listed as kubeadm only.
fn accounted_for(theirs: &Issued) -> Vec<String> {
    let mut failures = Vec::new();
    let ours_items = AUTHORITIES
        .iter()
        .map(|a| a.name)
        .chain([SERVICE_ACCOUNT.name])
        .chain(CATALOG.iter().map(|s| s.name));
    for item in ours_items {
        let compared = COUNTERPARTS.iter().any(|(o, _)| *o == item);
        let listed = OURS_ONLY.iter().any(|(o, _)| *o == item);
        if compared == listed {
            failures.push(format!(
                "{item}: must be in exactly one of COUNTERPARTS and OURS_ONLY (compared: {compared}, \
                 listed as kamaji-rs only: {listed})"
            ));
        }
    }
    for file in theirs.profiles.keys() {
        let compared = COUNTERPARTS.iter().any(|(_, k)| k == file);
        let listed = KUBEADM_ONLY.iter().any(|(k, _)| k == file);
        if compared == listed {
            failures.push(format!(
                "kubeadm's {file}: must be in exactly one of COUNTERPARTS and KUBEADM_ONLY \
                 (compared: {compared}, listed as kubeadm only: {listed})"
            ));
        }
    }
    let expected: BTreeSet<&str> = KUBEADM_ONLY
        .iter()
        .map(|(file, _)| *file)
        .chain(COUNTERPARTS.iter().map(|(_, file)| *file))
        .collect();
    for file in expected {
        if !theirs.profiles.contains_key(file) {
            failures.push(format!("kubeadm no longer writes {file}: update the tables"));
        }
    }
    failures
}

fn compare_with_kubeadm(algorithm: KeyAlgorithm) {
    let kubeadm_bin = kubeadm_binary();
    let started = Instant::now();
    let theirs = kubeadm(&kubeadm_bin, algorithm);
    let kubeadm_took = started.elapsed();
    let ours = ours(algorithm);
    let mut failures = accounted_for(&theirs);
    let (report, compared) = compare(algorithm, &ours, &theirs);
    failures.extend(compared);
    println!(
        "kubeadm {} ({kubeadm_took:.1?}) and kamaji-rs, {algorithm}:\n\
         | algorithm | kamaji-rs | kubeadm | same | deliberately different |\n|---|---|---|---|---|\n{}",
        kubeadm_bin.display(),
        report.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} difference(s) between kamaji-rs and kubeadm {} for {algorithm}:\n  {}",
        failures.len(),
        kubernetes_version(),
        failures.join("\n  ")
    );
}

#[test]
fn rsa_2048_pki_is_what_kubeadm_issues() {
    compare_with_kubeadm(KeyAlgorithm::Rsa2048);
}

#[test]
fn ecdsa_p256_pki_is_what_kubeadm_issues() {
    compare_with_kubeadm(KeyAlgorithm::EcdsaP256);
}

/// The markdown table of [`DELIBERATE`], as docs/kamaji-compatibility.md carries it.
fn deliberate_markdown() -> String {
    let list = |v: &[&str]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        }
    };
    let mut out = String::from(
        "| certificates | field | key algorithm | kubeadm only | kamaji-rs only | why |\n\
         |---|---|---|---|---|---|\n",
    );
    for d in DELIBERATE {
        let items = if d.items == EVERY_CERTIFICATE {
            "every certificate".to_owned()
        } else if d.items == EVERY_KEY {
            "every key".to_owned()
        } else if d.items == EVERY_LEAF {
            "every leaf".to_owned()
        } else {
            d.items.join(", ")
        };
        let algorithms = if d.algorithms.is_empty() {
            "all".to_owned()
        } else {
            d.algorithms
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| {items} | {} | {algorithms} | {} | {} | {} |\n",
            d.field,
            list(d.kubeadm_only),
            list(d.ours_only),
            d.reason
        ));
    }
    out
}

#[test]
fn the_deliberate_differences_are_the_documented_ones() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/kamaji-compatibility.md");
    let doc = fs::read_to_string(&path).unwrap();
    let table = deliberate_markdown();
    assert!(
        doc.contains("## Certificates compared with kubeadm") && doc.contains(&table),
        "{} must have a section \"Certificates compared with kubeadm\" with this table \
         (tests/pki_kubeadm_oracle.rs DELIBERATE):\n{table}",
        path.display()
    );
    for d in DELIBERATE {
        assert!(!d.reason.trim().is_empty(), "{}: no reason", d.field);
    }
    for (name, why) in OURS_ONLY.iter().chain(KUBEADM_ONLY) {
        assert!(!why.trim().is_empty(), "{name}: no reason");
    }
    // Every catalog row is accounted for without kubeadm too.
    for spec in CATALOG {
        assert!(
            COUNTERPARTS.iter().any(|(o, _)| *o == spec.name)
                || OURS_ONLY.iter().any(|(o, _)| *o == spec.name),
            "catalog row {} is neither compared with kubeadm nor listed as kamaji-rs only",
            spec.name
        );
    }
}
