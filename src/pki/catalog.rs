//! The certificate catalog: one row per certificate or kubeconfig a tenant control
//! plane needs (DESIGN.md section 2), as kubeadm's `certlist.go` is one table.
//!
//! Issuing ([`super::issue`]), inspecting ([`super::inspect`]), checking expiry
//! ([`super::expiration`]) and naming Secrets all iterate these rows: a new
//! certificate is a new row, not a new module.

use std::{fmt, str::FromStr};

/// Who signs a row's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signer {
    /// The tenant CA (`<tcp>-ca`, CN `kubernetes`).
    TenantCa,
    /// The front-proxy CA (`<tcp>-front-proxy-ca-certificate`).
    FrontProxyCa,
    /// The DataStore's CA (etcd driver), owned by the DataStore, not the tenant.
    DatastoreCa,
}

impl Signer {
    /// The CA's name in `check-expiration` output (kubeadm's `CERTIFICATE AUTHORITY` column).
    pub const fn ca_name(self) -> &'static str {
        match self {
            Self::TenantCa => "ca",
            Self::FrontProxyCa => "front-proxy-ca",
            Self::DatastoreCa => "datastore-ca",
        }
    }
}

/// The value of the `kamaji.clastix.io/certificate_lifecycle_controller` label:
/// how the CertificateLifecycle controller reads a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// PEM certificates under `*.crt` keys.
    X509,
    /// kubeconfigs with embedded client certificates, under every key.
    Kubeconfig,
}

impl Lifecycle {
    /// The label key (same string as [`crate::api::labels::CERTIFICATE_LIFECYCLE`]).
    pub const LABEL: &'static str = crate::api::labels::CERTIFICATE_LIFECYCLE;

    /// The label value: `x509` or `kubeconfig`.
    pub const fn label_value(self) -> &'static str {
        match self {
            Self::X509 => "x509",
            Self::Kubeconfig => "kubeconfig",
        }
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label_value())
    }
}

/// An unknown lifecycle label value.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("unknown certificate lifecycle {0:?}: expected x509 or kubeconfig")]
pub struct UnknownLifecycle(pub String);

impl FromStr for Lifecycle {
    type Err = UnknownLifecycle;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x509" => Ok(Self::X509),
            "kubeconfig" => Ok(Self::Kubeconfig),
            other => Err(UnknownLifecycle(other.chars().take(64).collect())),
        }
    }
}

/// An extended key usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Usage {
    /// TLS server (`serverAuth`).
    ServerAuth,
    /// TLS client (`clientAuth`).
    ClientAuth,
}

/// Where a row's common name comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommonName {
    /// A fixed name (kubeadm's constants).
    Fixed(&'static str),
    /// The tenant's datastore user ([`super::issue::TenantInputs::datastore_user`]).
    DatastoreUser,
}

/// Which subject alternative names a row carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sans {
    /// None (client certificates).
    None,
    /// The API server's names ([`super::issue::api_server_sans`]).
    ApiServer,
}

/// When a row applies to a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Every tenant.
    Always,
    /// Only with the konnectivity addon.
    Konnectivity,
    /// Only when the DataStore driver is etcd (other drivers bring their own client certificate).
    EtcdDatastore,
}

/// Which server URL a kubeconfig points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The control-plane endpoint (`status.controlPlaneEndpoint`), as admin.conf in kubeadm.
    ControlPlaneEndpoint,
    /// `https://127.0.0.1:<port>`: components in the API server's pod.
    Loopback,
    /// `https://<tcp>.<namespace>.svc:<port>`: clients inside the management cluster.
    Service,
}

/// How a row's material is laid out in its Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// PEM certificate and key under two data keys, optionally with the signer's
    /// certificate under a third (the datastore Secret carries `ca.crt`).
    Pem {
        /// Data key of the certificate.
        cert: &'static str,
        /// Data key of the private key.
        key: &'static str,
        /// Data key of the signing CA's certificate, if the Secret carries it.
        ca: Option<&'static str>,
    },
    /// A kubeconfig with embedded CA, client certificate and key under one data key.
    Kubeconfig {
        /// Data key of the kubeconfig.
        key: &'static str,
        /// The server URL it points at.
        server: Server,
    },
}

/// The `type` of a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretType {
    /// `Opaque`.
    Opaque,
    /// `kubernetes.io/tls`.
    Tls,
}

impl SecretType {
    /// The Secret `type` string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Opaque => "Opaque",
            Self::Tls => "kubernetes.io/tls",
        }
    }
}

/// A container of the control-plane pod that mounts tenant material.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    /// `kube-apiserver`.
    ApiServer,
    /// `kube-controller-manager`.
    ControllerManager,
    /// `kube-scheduler`.
    Scheduler,
    /// `konnectivity-server` (only with the addon).
    Konnectivity,
}

impl Component {
    /// The container's name in the Deployment.
    pub const fn container(self) -> &'static str {
        match self {
            Self::ApiServer => "kube-apiserver",
            Self::ControllerManager => "kube-controller-manager",
            Self::Scheduler => "kube-scheduler",
            Self::Konnectivity => "konnectivity-server",
        }
    }
}

/// Where the control-plane pod finds one data key of a Secret: a path below
/// `/etc/kubernetes` (kubeadm's layout), in the containers that need it and no other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The Secret's data key.
    pub key: &'static str,
    /// Path below `/etc/kubernetes` (`pki/apiserver.crt`, `scheduler.conf`).
    pub path: &'static str,
    /// The containers that mount it.
    pub components: &'static [Component],
}

const fn mount(key: &'static str, path: &'static str, components: &'static [Component]) -> Mount {
    Mount {
        key,
        path,
        components,
    }
}

/// Which Kamaji status field (`status.certificates.*`, `status.kubeconfig.*`,
/// `status.storage.certificate`, `status.addons.konnectivity.*`) reports a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusField {
    /// `status.certificates.ca` (the CA of the last completed rollout).
    Ca,
    /// `status.certificates.frontProxyCA`.
    FrontProxyCa,
    /// `status.certificates.sa`.
    ServiceAccount,
    /// `status.certificates.apiServer`.
    ApiServer,
    /// `status.certificates.apiServerKubeletClient`.
    ApiServerKubeletClient,
    /// `status.certificates.frontProxyClient`.
    FrontProxyClient,
    /// `status.storage.certificate`.
    DatastoreCertificate,
    /// `status.addons.konnectivity.certificate`.
    KonnectivityCertificate,
    /// `status.kubeconfig.admin`.
    AdminKubeconfig,
    /// `status.kubeconfig.controllerManager`.
    ControllerManagerKubeconfig,
    /// `status.kubeconfig.scheduler`.
    SchedulerKubeconfig,
    /// `status.addons.konnectivity.kubeconfig`.
    KonnectivityKubeconfig,
}

/// One certificate of a tenant and where it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertificateSpec {
    /// kubeadm-style name, shown by `check-expiration` (`apiserver`, `admin.conf`).
    pub name: &'static str,
    /// The Secret is `<tcp>-<secret_suffix>`; rows sharing a suffix share a Secret.
    pub secret_suffix: &'static str,
    /// The Secret's type.
    pub secret_type: SecretType,
    /// The Secret's lifecycle label.
    pub lifecycle: Lifecycle,
    /// Subject common name.
    pub common_name: CommonName,
    /// Subject organization (the Kubernetes group), if any.
    pub organization: Option<&'static str>,
    /// Extended key usages.
    pub usages: &'static [Usage],
    /// The issuing CA.
    pub signer: Signer,
    /// Subject alternative names.
    pub sans: Sans,
    /// Data keys and format.
    pub output: Output,
    /// Which tenants need it.
    pub when: When,
    /// Where the control-plane pod mounts its data keys.
    pub mounts: &'static [Mount],
    /// The status field reporting its Secret.
    pub status: StatusField,
    /// Presented to worker nodes, which may trust only an old CA (kubelets verify the
    /// API server's kubelet client certificate with their own `clientCAFile`): once
    /// signed by a new CA it carries that CA cross-signed by the old one.
    pub presented_to_nodes: bool,
    /// A group an earlier kamaji-rs put in this certificate's subject, which a stored
    /// certificate may keep until the tenant grants the subject without it (the
    /// binding first, then the re-issued certificate: access never lapses).
    pub superseded_organization: Option<&'static str>,
}

impl CertificateSpec {
    /// Whether this row applies to a tenant with these features.
    pub const fn applies(&self, konnectivity: bool, etcd_datastore: bool) -> bool {
        match self.when {
            When::Always => true,
            When::Konnectivity => konnectivity,
            When::EtcdDatastore => etcd_datastore,
        }
    }

    /// A certificate servers present (`serverAuth`): it stays with the old CA until a
    /// CA rotation completes, so clients that only know the old CA keep verifying it.
    pub fn is_serving(&self) -> bool {
        self.usages.contains(&Usage::ServerAuth)
    }

    /// The data key holding this row's certificate (the kubeconfig key for kubeconfigs).
    pub const fn certificate_key(&self) -> &'static str {
        match self.output {
            Output::Pem { cert, .. } => cert,
            Output::Kubeconfig { key, .. } => key,
        }
    }

    /// Every data key this row writes.
    pub fn data_keys(&self) -> Vec<&'static str> {
        match self.output {
            Output::Pem { cert, key, ca } => [Some(cert), Some(key), ca].into_iter().flatten().collect(),
            Output::Kubeconfig { key, .. } => vec![key],
        }
    }
}

/// A self-signed CA of the tenant and its Secret layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthoritySpec {
    /// kubeadm's name (`ca`, `front-proxy-ca`).
    pub name: &'static str,
    /// The Secret is `<tcp>-<secret_suffix>`.
    pub secret_suffix: &'static str,
    /// Subject common name.
    pub common_name: &'static str,
    /// Data keys holding certificates. The first is the trust bundle every consumer
    /// reads (kubeadm's `ca.crt`): the signing CA first, then, during a rotation, the
    /// CA it replaces. The others hold the signing CA alone (Cluster API's `tls.crt`;
    /// the controller-manager's signing certificate must be a single one).
    pub cert_keys: &'static [&'static str],
    /// Data keys that each hold the signing CA's private key (the first is the canonical one).
    pub key_keys: &'static [&'static str],
    /// During a rotation: the replaced CA's certificate and key (its certificate is
    /// also in the bundle; its key keeps signing serving certificates until completion).
    pub previous_keys: (&'static str, &'static str),
    /// The signing CA's certificate issued by the CA it replaced, served with serving
    /// certificates after completion so clients trusting only the old CA still verify
    /// them. `None` for a CA that signs no serving certificate.
    pub cross_signed_key: Option<&'static str>,
    /// Where the control-plane pod mounts its data keys.
    pub mounts: &'static [Mount],
    /// The status field reporting its Secret.
    pub status: StatusField,
}

/// The service-account signing key pair and its Secret layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPairSpec {
    /// kubeadm's name (`sa`).
    pub name: &'static str,
    /// The Secret is `<tcp>-<secret_suffix>`.
    pub secret_suffix: &'static str,
    /// Data key of the public key (`PUBLIC KEY` PEM).
    pub public_key: &'static str,
    /// Data key of the private key.
    pub private_key: &'static str,
    /// Where the control-plane pod mounts its data keys.
    pub mounts: &'static [Mount],
    /// The status field reporting its Secret.
    pub status: StatusField,
}

/// The tenant CA. `tls.*` repeat the CA for Cluster API, as Kamaji does.
pub const TENANT_CA: AuthoritySpec = AuthoritySpec {
    name: "ca",
    secret_suffix: "ca",
    common_name: "kubernetes",
    cert_keys: &["ca.crt", "tls.crt"],
    key_keys: &["ca.key", "tls.key"],
    previous_keys: ("previous-ca.crt", "previous-ca.key"),
    cross_signed_key: Some("cross-signed-ca.crt"),
    mounts: &[
        // The bundle: the API server trusts it for clients; the controller-manager
        // publishes it as kube-root-ca.crt.
        mount(
            "ca.crt",
            "pki/ca.crt",
            &[Component::ApiServer, Component::ControllerManager],
        ),
        // The controller-manager signs kubelet certificates with the signing CA alone.
        mount("tls.crt", "pki/signing-ca.crt", &[Component::ControllerManager]),
        mount("ca.key", "pki/ca.key", &[Component::ControllerManager]),
    ],
    status: StatusField::Ca,
};

/// The front-proxy (aggregation layer) CA.
pub const FRONT_PROXY_CA: AuthoritySpec = AuthoritySpec {
    name: "front-proxy-ca",
    secret_suffix: "front-proxy-ca-certificate",
    common_name: "front-proxy-ca",
    cert_keys: &["front-proxy-ca.crt"],
    key_keys: &["front-proxy-ca.key"],
    previous_keys: ("previous-front-proxy-ca.crt", "previous-front-proxy-ca.key"),
    cross_signed_key: None,
    mounts: &[mount(
        "front-proxy-ca.crt",
        "pki/front-proxy-ca.crt",
        &[Component::ApiServer, Component::ControllerManager],
    )],
    status: StatusField::FrontProxyCa,
};

/// The tenant's own CAs, in `check-expiration` order.
pub static AUTHORITIES: &[AuthoritySpec] = &[TENANT_CA, FRONT_PROXY_CA];

/// The service-account key pair.
pub const SERVICE_ACCOUNT: KeyPairSpec = KeyPairSpec {
    name: "sa",
    secret_suffix: "sa-certificate",
    public_key: "sa.pub",
    private_key: "sa.key",
    mounts: &[
        mount("sa.pub", "pki/sa.pub", &[Component::ApiServer]),
        mount(
            "sa.key",
            "pki/sa.key",
            &[Component::ApiServer, Component::ControllerManager],
        ),
    ],
    status: StatusField::ServiceAccount,
};

const SERVER: &[Usage] = &[Usage::ServerAuth];
const CLIENT: &[Usage] = &[Usage::ClientAuth];
const CLIENT_SERVER: &[Usage] = &[Usage::ClientAuth, Usage::ServerAuth];

// One argument per column of DESIGN.md's certificate table.
#[allow(clippy::too_many_arguments)]
const fn x509(
    name: &'static str,
    secret_suffix: &'static str,
    cert: &'static str,
    key: &'static str,
    common_name: &'static str,
    organization: Option<&'static str>,
    usages: &'static [Usage],
    signer: Signer,
    status: StatusField,
) -> CertificateSpec {
    CertificateSpec {
        name,
        secret_suffix,
        secret_type: SecretType::Opaque,
        lifecycle: Lifecycle::X509,
        common_name: CommonName::Fixed(common_name),
        organization,
        usages,
        signer,
        sans: Sans::None,
        output: Output::Pem { cert, key, ca: None },
        when: When::Always,
        mounts: &[],
        status,
        presented_to_nodes: false,
        superseded_organization: None,
    }
}

const fn kubeconfig(
    key: &'static str,
    secret_suffix: &'static str,
    common_name: &'static str,
    organization: Option<&'static str>,
    server: Server,
    status: StatusField,
) -> CertificateSpec {
    CertificateSpec {
        name: key,
        secret_suffix,
        secret_type: SecretType::Opaque,
        lifecycle: Lifecycle::Kubeconfig,
        common_name: CommonName::Fixed(common_name),
        organization,
        usages: CLIENT,
        signer: Signer::TenantCa,
        sans: Sans::None,
        output: Output::Kubeconfig { key, server },
        when: When::Always,
        mounts: &[],
        status,
        presented_to_nodes: false,
        superseded_organization: None,
    }
}

const CLUSTER_ADMINS: Option<&str> = Some("kubeadm:cluster-admins");
const SYSTEM_MASTERS: Option<&str> = Some("system:masters");
const API_SERVER: &[Component] = &[Component::ApiServer];

/// Every leaf certificate and kubeconfig of a tenant (DESIGN.md section 2).
pub static CATALOG: &[CertificateSpec] = &[
    CertificateSpec {
        sans: Sans::ApiServer,
        mounts: &[
            mount("apiserver.crt", "pki/apiserver.crt", API_SERVER),
            mount("apiserver.key", "pki/apiserver.key", API_SERVER),
        ],
        ..x509(
            "apiserver",
            "api-server-certificate",
            "apiserver.crt",
            "apiserver.key",
            "kube-apiserver",
            None,
            SERVER,
            Signer::TenantCa,
            StatusField::ApiServer,
        )
    },
    CertificateSpec {
        presented_to_nodes: true,
        // kamaji-rs 0.1.0 issued it with O=kubeadm:cluster-admins (a cluster-admin
        // credential); kubeadm and Kamaji issue it with no group and grant it
        // system:kubelet-api-admin through kubeadm:apiserver-kubelet-client.
        superseded_organization: CLUSTER_ADMINS,
        mounts: &[
            mount(
                "apiserver-kubelet-client.crt",
                "pki/apiserver-kubelet-client.crt",
                API_SERVER,
            ),
            mount(
                "apiserver-kubelet-client.key",
                "pki/apiserver-kubelet-client.key",
                API_SERVER,
            ),
        ],
        ..x509(
            "apiserver-kubelet-client",
            "api-server-kubelet-client-certificate",
            "apiserver-kubelet-client.crt",
            "apiserver-kubelet-client.key",
            "kube-apiserver-kubelet-client",
            None,
            CLIENT,
            Signer::TenantCa,
            StatusField::ApiServerKubeletClient,
        )
    },
    CertificateSpec {
        mounts: &[
            mount("front-proxy-client.crt", "pki/front-proxy-client.crt", API_SERVER),
            mount("front-proxy-client.key", "pki/front-proxy-client.key", API_SERVER),
        ],
        ..x509(
            "front-proxy-client",
            "front-proxy-client-certificate",
            "front-proxy-client.crt",
            "front-proxy-client.key",
            "front-proxy-client",
            None,
            CLIENT,
            Signer::FrontProxyCa,
            StatusField::FrontProxyClient,
        )
    },
    CertificateSpec {
        common_name: CommonName::DatastoreUser,
        output: Output::Pem {
            cert: "server.crt",
            key: "server.key",
            ca: Some("ca.crt"),
        },
        when: When::EtcdDatastore,
        mounts: &[
            mount("ca.crt", "pki/etcd/ca.crt", API_SERVER),
            mount("server.crt", "pki/etcd/server.crt", API_SERVER),
            mount("server.key", "pki/etcd/server.key", API_SERVER),
        ],
        ..x509(
            "datastore",
            "datastore-certificate",
            "",
            "",
            "",
            None,
            CLIENT,
            Signer::DatastoreCa,
            StatusField::DatastoreCertificate,
        )
    },
    CertificateSpec {
        secret_type: SecretType::Tls,
        when: When::Konnectivity,
        // konnectivity-server presents it to the agents, which dial the tenant's
        // address (the Service's port beside the API server's): the API server's names.
        sans: Sans::ApiServer,
        mounts: &[
            mount("tls.crt", "pki/konnectivity/tls.crt", &[Component::Konnectivity]),
            mount("tls.key", "pki/konnectivity/tls.key", &[Component::Konnectivity]),
        ],
        ..x509(
            "konnectivity",
            "konnectivity-certificate",
            "tls.crt",
            "tls.key",
            "system:konnectivity-server",
            None,
            CLIENT_SERVER,
            Signer::TenantCa,
            StatusField::KonnectivityCertificate,
        )
    },
    kubeconfig(
        "admin.conf",
        "admin-kubeconfig",
        "kubernetes-admin",
        CLUSTER_ADMINS,
        Server::ControlPlaneEndpoint,
        StatusField::AdminKubeconfig,
    ),
    kubeconfig(
        "admin.svc",
        "admin-kubeconfig",
        "kubernetes-admin",
        CLUSTER_ADMINS,
        Server::Service,
        StatusField::AdminKubeconfig,
    ),
    kubeconfig(
        "super-admin.conf",
        "admin-kubeconfig",
        "kubernetes-super-admin",
        SYSTEM_MASTERS,
        Server::ControlPlaneEndpoint,
        StatusField::AdminKubeconfig,
    ),
    kubeconfig(
        "super-admin.svc",
        "admin-kubeconfig",
        "kubernetes-super-admin",
        SYSTEM_MASTERS,
        Server::Service,
        StatusField::AdminKubeconfig,
    ),
    CertificateSpec {
        mounts: &[mount(
            "controller-manager.conf",
            "controller-manager.conf",
            &[Component::ControllerManager],
        )],
        ..kubeconfig(
            "controller-manager.conf",
            "controller-manager-kubeconfig",
            "system:kube-controller-manager",
            None,
            Server::Loopback,
            StatusField::ControllerManagerKubeconfig,
        )
    },
    CertificateSpec {
        mounts: &[mount("scheduler.conf", "scheduler.conf", &[Component::Scheduler])],
        ..kubeconfig(
            "scheduler.conf",
            "scheduler-kubeconfig",
            "system:kube-scheduler",
            None,
            Server::Loopback,
            StatusField::SchedulerKubeconfig,
        )
    },
    CertificateSpec {
        when: When::Konnectivity,
        mounts: &[mount(
            "konnectivity-server.conf",
            "konnectivity-server.conf",
            &[Component::Konnectivity],
        )],
        ..kubeconfig(
            "konnectivity-server.conf",
            "konnectivity-kubeconfig",
            "system:konnectivity-server",
            None,
            Server::Loopback,
            StatusField::KonnectivityKubeconfig,
        )
    },
];

/// One row of the tenant's PKI, whatever its kind: a CA, the service-account
/// key pair, or a leaf certificate/kubeconfig. The Deployment's volumes, the
/// status fields and the reconciler's list of Secrets iterate [`rows`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Row {
    /// A self-signed CA of the tenant.
    Authority(&'static AuthoritySpec),
    /// The service-account signing key pair.
    KeyPair(&'static KeyPairSpec),
    /// A leaf certificate or kubeconfig.
    Leaf(&'static CertificateSpec),
}

impl Row {
    /// The Secret is `<tcp>-<suffix>`.
    pub const fn secret_suffix(&self) -> &'static str {
        match self {
            Row::Authority(a) => a.secret_suffix,
            Row::KeyPair(k) => k.secret_suffix,
            Row::Leaf(l) => l.secret_suffix,
        }
    }

    /// The Secret's type.
    pub const fn secret_type(&self) -> SecretType {
        match self {
            Row::Leaf(l) => l.secret_type,
            _ => SecretType::Opaque,
        }
    }

    /// The lifecycle label of its Secret (CAs and the key pair carry none).
    pub const fn lifecycle(&self) -> Option<Lifecycle> {
        match self {
            Row::Leaf(l) => Some(l.lifecycle),
            _ => None,
        }
    }

    /// Where the pod mounts it.
    pub const fn mounts(&self) -> &'static [Mount] {
        match self {
            Row::Authority(a) => a.mounts,
            Row::KeyPair(k) => k.mounts,
            Row::Leaf(l) => l.mounts,
        }
    }

    /// The status field reporting its Secret.
    pub const fn status(&self) -> StatusField {
        match self {
            Row::Authority(a) => a.status,
            Row::KeyPair(k) => k.status,
            Row::Leaf(l) => l.status,
        }
    }

    /// Every data key it writes.
    pub fn data_keys(&self) -> Vec<&'static str> {
        match self {
            Row::Authority(a) => a.cert_keys.iter().chain(a.key_keys).copied().collect(),
            Row::KeyPair(k) => vec![k.public_key, k.private_key],
            Row::Leaf(l) => l.data_keys(),
        }
    }

    /// Whether it applies to a tenant with these features.
    pub const fn applies(&self, konnectivity: bool, etcd_datastore: bool) -> bool {
        match self {
            Row::Leaf(l) => l.applies(konnectivity, etcd_datastore),
            _ => true,
        }
    }
}

/// Every row of the tenant's PKI: CAs first, then the key pair, then the leaves
/// (the order they are issued in: nothing before what signs it).
pub fn rows() -> impl Iterator<Item = Row> {
    AUTHORITIES
        .iter()
        .map(Row::Authority)
        .chain(std::iter::once(Row::KeyPair(&SERVICE_ACCOUNT)))
        .chain(CATALOG.iter().map(Row::Leaf))
}

/// The distinct Secret suffixes of every row, in [`rows`] order.
pub fn secret_suffixes() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for row in rows() {
        if !out.contains(&row.secret_suffix()) {
            out.push(row.secret_suffix());
        }
    }
    out
}

/// The rows of the Secret `<tcp>-<suffix>`.
pub fn rows_of_secret(suffix: &str) -> impl Iterator<Item = Row> + '_ {
    rows().filter(move |row| row.secret_suffix() == suffix)
}

/// The row named `name` (`apiserver`, `admin.conf`, ...).
pub fn find(name: &str) -> Option<&'static CertificateSpec> {
    CATALOG.iter().find(|spec| spec.name == name)
}

/// The rows stored in the Secret `<tcp>-<suffix>`.
pub fn rows_in_secret(suffix: &str) -> impl Iterator<Item = &'static CertificateSpec> + '_ {
    CATALOG.iter().filter(move |spec| spec.secret_suffix == suffix)
}

/// The distinct Secret suffixes of the leaf rows, in catalog order.
pub fn leaf_secret_suffixes() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for spec in CATALOG {
        if !out.contains(&spec.secret_suffix) {
            out.push(spec.secret_suffix);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_data_keys_are_unique() {
        let mut names: Vec<_> = CATALOG.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len());
        for suffix in leaf_secret_suffixes() {
            let mut keys: Vec<_> = rows_in_secret(suffix).flat_map(|s| s.data_keys()).collect();
            let n = keys.len();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), n, "{suffix}");
        }
    }

    #[test]
    fn rows_sharing_a_secret_agree_on_its_type_and_label() {
        for suffix in leaf_secret_suffixes() {
            let rows: Vec<_> = rows_in_secret(suffix).collect();
            assert!(
                rows.iter()
                    .all(|r| r.lifecycle == rows[0].lifecycle && r.secret_type == rows[0].secret_type)
            );
        }
    }

    #[test]
    fn design_section_2_secrets_are_all_there() {
        let expected = [
            (
                "api-server-certificate",
                Lifecycle::X509,
                "Opaque",
                vec!["apiserver.crt", "apiserver.key"],
            ),
            (
                "api-server-kubelet-client-certificate",
                Lifecycle::X509,
                "Opaque",
                vec!["apiserver-kubelet-client.crt", "apiserver-kubelet-client.key"],
            ),
            (
                "front-proxy-client-certificate",
                Lifecycle::X509,
                "Opaque",
                vec!["front-proxy-client.crt", "front-proxy-client.key"],
            ),
            (
                "datastore-certificate",
                Lifecycle::X509,
                "Opaque",
                vec!["server.crt", "server.key", "ca.crt"],
            ),
            (
                "konnectivity-certificate",
                Lifecycle::X509,
                "kubernetes.io/tls",
                vec!["tls.crt", "tls.key"],
            ),
            (
                "admin-kubeconfig",
                Lifecycle::Kubeconfig,
                "Opaque",
                vec!["admin.conf", "admin.svc", "super-admin.conf", "super-admin.svc"],
            ),
            (
                "controller-manager-kubeconfig",
                Lifecycle::Kubeconfig,
                "Opaque",
                vec!["controller-manager.conf"],
            ),
            (
                "scheduler-kubeconfig",
                Lifecycle::Kubeconfig,
                "Opaque",
                vec!["scheduler.conf"],
            ),
            (
                "konnectivity-kubeconfig",
                Lifecycle::Kubeconfig,
                "Opaque",
                vec!["konnectivity-server.conf"],
            ),
        ];
        assert_eq!(
            leaf_secret_suffixes(),
            expected.iter().map(|e| e.0).collect::<Vec<_>>()
        );
        for (suffix, lifecycle, ty, keys) in expected {
            let rows: Vec<_> = rows_in_secret(suffix).collect();
            assert_eq!(rows[0].lifecycle, lifecycle, "{suffix}");
            assert_eq!(rows[0].secret_type.as_str(), ty, "{suffix}");
            assert_eq!(
                rows.iter().flat_map(|r| r.data_keys()).collect::<Vec<_>>(),
                keys,
                "{suffix}"
            );
        }
    }

    #[test]
    fn addon_rows_only_apply_with_the_addon() {
        let applying = |k, e| {
            CATALOG
                .iter()
                .filter(|s| s.applies(k, e))
                .map(|s| s.name)
                .collect::<Vec<_>>()
        };
        assert!(!applying(false, true).contains(&"konnectivity"));
        assert!(!applying(false, true).contains(&"konnectivity-server.conf"));
        assert!(applying(true, true).contains(&"konnectivity-server.conf"));
        assert!(!applying(false, false).contains(&"datastore"));
    }

    #[test]
    fn lifecycle_label_values() {
        assert_eq!("x509".parse::<Lifecycle>().unwrap(), Lifecycle::X509);
        assert_eq!(Lifecycle::Kubeconfig.to_string(), "kubeconfig");
        assert!("X509".parse::<Lifecycle>().is_err());
        assert_eq!(
            Lifecycle::LABEL,
            "kamaji.clastix.io/certificate_lifecycle_controller"
        );
    }
}
