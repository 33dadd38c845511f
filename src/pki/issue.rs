//! Issuing a tenant's material from the catalog: the inputs a tenant gives, the
//! parameters of issuance, and the Secret data of each row, CA and key pair.
//! Also [`check`]: whether stored material is still what would be issued now.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

use super::{
    SecretData,
    authority::{
        Authority, AuthorityError, CA_VALIDITY, LEAF_VALIDITY, LeafRequest, VerifyError, common_name,
    },
    catalog::{AuthoritySpec, CertificateSpec, CommonName, KeyPairSpec, Output, Sans, Server, Signer},
    keys::{KeyAlgorithm, KeyError, PrivateKey, public_key_raw_from_pem},
    kubeconfig::{Kubeconfig, KubeconfigError, KubeconfigParams},
    pem,
    trust::{Progress, StoredCa},
};

/// What a tenant says about itself that ends up in its certificates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantInputs {
    /// TenantControlPlane name.
    pub name: String,
    /// TenantControlPlane namespace.
    pub namespace: String,
    /// `spec.networkProfile.address` (IP or DNS name), if any.
    pub address: Option<String>,
    /// `spec.networkProfile.port`.
    pub port: u16,
    /// `spec.networkProfile.certSANs` (IPs and DNS names).
    pub cert_sans: Vec<String>,
    /// Service CIDR (`10.96.0.0/16`; a comma-separated dual-stack pair is accepted).
    pub service_cidr: String,
    /// Cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// Control-plane endpoint: `host:port` or a URL.
    pub control_plane_endpoint: String,
    /// Whether the konnectivity addon is enabled.
    pub konnectivity: bool,
    /// The tenant's datastore user (CN of the etcd client certificate).
    pub datastore_user: String,
    /// The tenant cluster grants what a catalog row's superseded group granted
    /// (kube-apiserver-kubelet-client is bound to system:kubelet-api-admin): a stored
    /// certificate that still carries the group is re-issued without it.
    pub superseded_groups_granted: bool,
}

impl TenantInputs {
    /// `<tcp>-<suffix>`.
    pub fn secret_name(&self, suffix: &str) -> String {
        format!("{}-{}", self.name, suffix)
    }

    /// The URL a kubeconfig of kind `server` points at.
    pub fn server_url(&self, server: Server) -> Result<String, IssueError> {
        Ok(match server {
            Server::Loopback => format!("https://127.0.0.1:{}", self.port),
            Server::Service => format!("https://{}.{}.svc:{}", self.name, self.namespace, self.port),
            Server::ControlPlaneEndpoint => {
                let endpoint = self.control_plane_endpoint.trim();
                if endpoint.is_empty() {
                    return Err(IssueError::MissingEndpoint);
                }
                if endpoint.contains("://") {
                    endpoint.to_owned()
                } else {
                    format!("https://{endpoint}")
                }
            }
        })
    }
}

/// How to issue: key algorithm, validities and the issuance time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IssueParams {
    /// Key algorithm of new keys (kubeadm's `encryptionAlgorithm`).
    pub algorithm: KeyAlgorithm,
    /// Leaf validity (kubeadm: one year).
    pub validity: Duration,
    /// CA validity (kubeadm: ten years).
    pub ca_validity: Duration,
    /// Issuance time (NotBefore is five minutes earlier).
    pub now: OffsetDateTime,
}

impl IssueParams {
    /// kubeadm's defaults (RSA-2048, one year, ten years) at `now`.
    pub fn new(now: OffsetDateTime) -> Self {
        Self {
            algorithm: KeyAlgorithm::default(),
            validity: LEAF_VALIDITY,
            ca_validity: CA_VALIDITY,
            now,
        }
    }
}

impl Default for IssueParams {
    /// kubeadm's defaults at the current time.
    fn default() -> Self {
        Self::new(OffsetDateTime::now_utc())
    }
}

/// The CAs that sign a tenant's leaves, with the rotation each tenant CA may be in.
#[derive(Clone, Copy, Debug)]
pub struct Signers<'a> {
    /// The tenant CA.
    pub ca: &'a StoredCa,
    /// The front-proxy CA.
    pub front_proxy_ca: &'a StoredCa,
    /// The DataStore CA (etcd driver only).
    pub datastore_ca: Option<&'a Authority>,
    /// How far a rotation of the tenant CA has come (nothing moves when settled).
    pub ca_progress: Progress,
    /// How far a rotation of the front-proxy CA has come.
    pub front_proxy_progress: Progress,
}

impl<'a> Signers<'a> {
    /// Settled CAs (a new tenant), or rotations whose every step may go ahead.
    pub fn new(ca: &'a StoredCa, front_proxy_ca: &'a StoredCa, datastore_ca: Option<&'a Authority>) -> Self {
        let all = Progress {
            clients_move: true,
            serving_moves: true,
        };
        Self {
            ca,
            front_proxy_ca,
            datastore_ca,
            ca_progress: all,
            front_proxy_progress: all,
        }
    }

    /// The signing CA for `signer`, if present.
    pub fn get(&self, signer: Signer) -> Option<&'a Authority> {
        match signer {
            Signer::TenantCa => Some(&self.ca.signing),
            Signer::FrontProxyCa => Some(&self.front_proxy_ca.signing),
            Signer::DatastoreCa => self.datastore_ca,
        }
    }

    fn stored(&self, signer: Signer) -> Option<(&'a StoredCa, Progress)> {
        match signer {
            Signer::TenantCa => Some((self.ca, self.ca_progress)),
            Signer::FrontProxyCa => Some((self.front_proxy_ca, self.front_proxy_progress)),
            Signer::DatastoreCa => None,
        }
    }

    /// Whether `spec`'s certificate is issued by the new CA of a rotation by now.
    fn moved(spec: &CertificateSpec, progress: Progress) -> bool {
        if spec.is_serving() {
            progress.serving_moves
        } else {
            progress.clients_move
        }
    }

    /// The CA that issues `spec`: during a CA rotation, the old CA until its step
    /// ([`Progress`]) moves it to the new one; the signing CA when settled.
    pub fn issuer_of(&self, spec: &CertificateSpec) -> Option<&'a Authority> {
        match self.stored(spec.signer) {
            Some((stored, progress)) if !Self::moved(spec, progress) => Some(stored.outgoing()),
            _ => self.get(spec.signer),
        }
    }

    /// Another CA whose client certificate is kept as it is: while the control plane
    /// does not trust the new CA yet, one already issued by it (before a rollout
    /// began) stays, so issuance never flips back and forth during a rollout.
    fn also_accepted(&self, spec: &CertificateSpec) -> Option<&'a Authority> {
        let (stored, progress) = self.stored(spec.signer)?;
        (stored.previous.is_some() && !spec.is_serving() && !progress.clients_move).then_some(&stored.signing)
    }

    /// The CA bundle a kubeconfig of `signer` carries (every CA trusted now).
    pub fn bundle_of(&self, signer: Signer) -> Option<String> {
        match self.stored(signer) {
            Some((stored, _)) => Some(stored.bundle_pem()),
            None => self.datastore_ca.map(|ca| ca.certificate_pem().to_owned()),
        }
    }

    /// The intermediate `spec`'s certificate carries after its certificate (the new CA
    /// cross-signed by the old one: on serving certificates once the new CA signs them,
    /// on certificates presented to nodes as soon as the new CA signs them), if any.
    pub fn chain_of(&self, spec: &CertificateSpec, now: OffsetDateTime) -> Option<&'a str> {
        let (stored, progress) = self.stored(spec.signer)?;
        if spec.presented_to_nodes {
            // Only a certificate the new CA signs needs the way back to the old one.
            let signed_by_new = stored.previous.is_none() || progress.clients_move;
            stored.node_chain(now).filter(|_| signed_by_new)
        } else if spec.is_serving() {
            stored.serving_chain(progress, now)
        } else {
            None
        }
    }

    /// The chain a certificate the new CA signed carries while it is only also
    /// accepted ([`Signers::also_accepted`]).
    fn chain_of_new(&self, spec: &CertificateSpec, now: OffsetDateTime) -> Option<&'a str> {
        let (stored, _) = self.stored(spec.signer)?;
        stored.node_chain(now).filter(|_| spec.presented_to_nodes)
    }
}

/// What went wrong issuing. Never contains key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IssueError {
    /// A CA could not sign (expired, externally managed, ...).
    #[error("{row}: {source}")]
    Authority {
        /// The catalog row or CA name.
        row: &'static str,
        /// The CA's error.
        source: AuthorityError,
    },
    /// The row needs the DataStore CA, and none was given.
    #[error("{row}: no DataStore CA was given (needed for the etcd driver)")]
    MissingDatastoreCa {
        /// The catalog row.
        row: &'static str,
    },
    /// The datastore client certificate needs a user name.
    #[error("{row}: the tenant's datastore user is empty")]
    MissingDatastoreUser {
        /// The catalog row.
        row: &'static str,
    },
    /// No control-plane endpoint for admin.conf.
    #[error("the control-plane endpoint is empty")]
    MissingEndpoint,
    /// The service CIDR does not parse or has no host addresses.
    #[error("invalid service CIDR {0:?}")]
    InvalidServiceCidr(String),
    /// A certSAN or address is neither an IP nor a DNS name.
    #[error("invalid subject alternative name {0:?}")]
    InvalidSan(String),
    /// Key generation failed.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// Kubeconfig serialisation failed.
    #[error("{0}")]
    Kubeconfig(#[from] KubeconfigError),
    /// A CA Secret lacks its certificate.
    #[error("{row}: the Secret has no {key}")]
    MissingKey {
        /// The CA name.
        row: &'static str,
        /// The missing data key.
        key: &'static str,
    },
}

/// The API server's subject alternative names (DESIGN.md section 2): the in-cluster
/// `kubernetes` names, `localhost`, the tenant Service names, every certSAN; IPs
/// `127.0.0.1`, the first IP of each service CIDR and the address. The control-plane
/// endpoint's host is added too (as kubeadm does), so admin.conf always verifies.
/// Duplicates are dropped; the order is stable.
pub fn api_server_sans(tenant: &TenantInputs) -> Result<(Vec<String>, Vec<IpAddr>), IssueError> {
    let domain = tenant.cluster_domain.trim_matches('.');
    let (name, ns) = (&tenant.name, &tenant.namespace);
    let mut dns: Vec<String> = vec![
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{domain}"),
        "localhost".into(),
        name.clone(),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.{domain}"),
    ];
    let mut ips: Vec<IpAddr> = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    ips.extend(service_ips(&tenant.service_cidr)?);
    let endpoint_host = endpoint_host(&tenant.control_plane_endpoint);
    let extra = tenant
        .address
        .iter()
        .map(String::as_str)
        .chain(endpoint_host)
        .chain(tenant.cert_sans.iter().map(String::as_str));
    for entry in extra {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        match entry
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => ips.push(ip),
            Err(_) if is_dns_name(entry) => dns.push(entry.to_ascii_lowercase()),
            Err(_) => return Err(IssueError::InvalidSan(entry.chars().take(253).collect())),
        }
    }
    let mut seen_dns = std::collections::HashSet::new();
    dns.retain(|d| seen_dns.insert(d.clone()));
    let mut seen_ips = std::collections::HashSet::new();
    ips.retain(|ip| seen_ips.insert(*ip));
    Ok((dns, ips))
}

/// The first host address of each comma-separated CIDR (`10.96.0.0/16` → `10.96.0.1`):
/// the ClusterIP of the `kubernetes` Service.
pub fn service_ips(cidrs: &str) -> Result<Vec<IpAddr>, IssueError> {
    let invalid = || IssueError::InvalidServiceCidr(cidrs.chars().take(100).collect());
    cidrs
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|cidr| {
            let (ip, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
            let prefix: u32 = prefix.parse().map_err(|_| invalid())?;
            match ip.parse::<IpAddr>().map_err(|_| invalid())? {
                IpAddr::V4(ip) if prefix < 32 => {
                    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                    Ok(IpAddr::V4(Ipv4Addr::from((u32::from(ip) & mask) + 1)))
                }
                IpAddr::V6(ip) if prefix < 128 => {
                    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                    Ok(IpAddr::V6(Ipv6Addr::from((u128::from(ip) & mask) + 1)))
                }
                _ => Err(invalid()),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|ips| if ips.is_empty() { Err(invalid()) } else { Ok(ips) })
}

/// The host of `host:port`, `[v6]:port` or a URL.
fn endpoint_host(endpoint: &str) -> Option<&str> {
    let rest = endpoint.trim();
    let rest = rest.split_once("://").map_or(rest, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next();
    }
    if rest.parse::<IpAddr>().is_ok() {
        return Some(rest);
    }
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    (!host.is_empty()).then_some(host)
}

fn is_dns_name(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// What the row's certificate should say about its subject for this tenant.
pub fn leaf_request(spec: &CertificateSpec, tenant: &TenantInputs) -> Result<LeafRequest, IssueError> {
    let common_name = match spec.common_name {
        CommonName::Fixed(cn) => cn.to_owned(),
        CommonName::DatastoreUser if tenant.datastore_user.trim().is_empty() => {
            return Err(IssueError::MissingDatastoreUser { row: spec.name });
        }
        CommonName::DatastoreUser => tenant.datastore_user.trim().to_owned(),
    };
    let (dns_names, ip_addresses) = match spec.sans {
        Sans::None => (Vec::new(), Vec::new()),
        Sans::ApiServer => api_server_sans(tenant)?,
    };
    Ok(LeafRequest {
        common_name,
        organization: spec.organization.map(str::to_owned),
        usages: spec.usages.to_vec(),
        dns_names,
        ip_addresses,
    })
}

/// Issues one catalog row: a new key, a certificate signed by the row's CA, and the
/// Secret data under the row's keys (PEM pair, or a kubeconfig).
pub fn issue(
    spec: &CertificateSpec,
    tenant: &TenantInputs,
    signers: &Signers<'_>,
    params: &IssueParams,
) -> Result<SecretData, IssueError> {
    issue_with_key(
        spec,
        tenant,
        signers,
        params,
        PrivateKey::generate(params.algorithm)?,
    )
}

/// As [`issue`], with a key generated beforehand (e.g. taken from a pool filled off the
/// reconcile path: RSA generation is the slow part of issuing).
pub fn issue_with_key(
    spec: &CertificateSpec,
    tenant: &TenantInputs,
    signers: &Signers<'_>,
    params: &IssueParams,
    key: PrivateKey,
) -> Result<SecretData, IssueError> {
    let ca = signers
        .issuer_of(spec)
        .ok_or(IssueError::MissingDatastoreCa { row: spec.name })?;
    let request = leaf_request(spec, tenant)?;
    let mut issued = ca
        .sign_key(&request, key, params)
        .map_err(|source| IssueError::Authority {
            row: spec.name,
            source,
        })?;
    if let Some(intermediate) = signers.chain_of(spec, params.now) {
        issued.certificate_pem.push_str(intermediate);
    }
    let mut data = SecretData::new();
    match spec.output {
        Output::Pem {
            cert,
            key,
            ca: ca_key,
        } => {
            data.insert(cert.to_owned(), issued.certificate_pem.into_bytes());
            data.insert(key.to_owned(), issued.key.pem().as_bytes().to_vec());
            if let Some(ca_key) = ca_key {
                data.insert(ca_key.to_owned(), ca.certificate_pem().as_bytes().to_vec());
            }
        }
        Output::Kubeconfig { key, server } => {
            let server = tenant.server_url(server)?;
            let bundle = signers
                .bundle_of(spec.signer)
                .unwrap_or_else(|| ca.certificate_pem().to_owned());
            let kubeconfig = Kubeconfig::new(&KubeconfigParams {
                cluster_name: &tenant.name,
                server: &server,
                ca_pem: &bundle,
                user: &request.common_name,
                client_certificate_pem: &issued.certificate_pem,
                client_key_pem: issued.key.pem(),
            });
            data.insert(key.to_owned(), kubeconfig.to_yaml()?.into_bytes());
        }
    }
    Ok(data)
}

/// Issues every applicable row stored in the Secret `<tcp>-<suffix>` together (every
/// key of a kubeconfig Secret rotates at once). The etcd datastore row applies when a
/// DataStore CA is given.
pub fn issue_secret(
    suffix: &str,
    tenant: &TenantInputs,
    signers: &Signers<'_>,
    params: &IssueParams,
) -> Result<SecretData, IssueError> {
    let mut data = SecretData::new();
    for spec in super::catalog::rows_in_secret(suffix) {
        if spec.applies(tenant.konnectivity, signers.datastore_ca.is_some()) {
            data.extend(issue(spec, tenant, signers, params)?);
        }
    }
    Ok(data)
}

/// A whole new tenant PKI: both CAs, the service-account pair and every applicable leaf
/// Secret, keyed by Secret suffix (`ca`, `sa-certificate`, `admin-kubeconfig`, ...).
/// `Debug` shows the Secrets' data keys, never their values (they hold private keys).
pub struct TenantPki {
    /// The tenant CA.
    pub ca: Authority,
    /// The front-proxy CA.
    pub front_proxy_ca: Authority,
    /// Secret suffix to Secret data.
    pub secrets: BTreeMap<&'static str, SecretData>,
}

impl std::fmt::Debug for TenantPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data_keys: BTreeMap<&str, Vec<&str>> = self
            .secrets
            .iter()
            .map(|(suffix, data)| (*suffix, data.keys().map(String::as_str).collect()))
            .collect();
        f.debug_struct("TenantPki")
            .field("ca", &self.ca)
            .field("front_proxy_ca", &self.front_proxy_ca)
            .field("secrets", &data_keys)
            .finish()
    }
}

/// Issues a whole tenant PKI from scratch (what a new TenantControlPlane gets). The etcd
/// datastore certificate is included when `datastore_ca` is given.
pub fn issue_tenant(
    tenant: &TenantInputs,
    datastore_ca: Option<&Authority>,
    params: &IssueParams,
) -> Result<TenantPki, IssueError> {
    use super::catalog::{FRONT_PROXY_CA, SERVICE_ACCOUNT, TENANT_CA, leaf_secret_suffixes};
    let ca = StoredCa::settled(generate_authority(&TENANT_CA, params)?);
    let front_proxy_ca = StoredCa::settled(generate_authority(&FRONT_PROXY_CA, params)?);
    let mut secrets = BTreeMap::new();
    secrets.insert(TENANT_CA.secret_suffix, ca.secret_data(&TENANT_CA));
    secrets.insert(
        FRONT_PROXY_CA.secret_suffix,
        front_proxy_ca.secret_data(&FRONT_PROXY_CA),
    );
    secrets.insert(
        SERVICE_ACCOUNT.secret_suffix,
        service_account_secret_data(&SERVICE_ACCOUNT, params.algorithm)?,
    );
    let signers = Signers::new(&ca, &front_proxy_ca, datastore_ca);
    for suffix in leaf_secret_suffixes() {
        let data = issue_secret(suffix, tenant, &signers, params)?;
        if !data.is_empty() {
            secrets.insert(suffix, data);
        }
    }
    Ok(TenantPki {
        ca: ca.signing,
        front_proxy_ca: front_proxy_ca.signing,
        secrets,
    })
}

/// Creates one of the tenant's CAs (CN from the spec, `params.ca_validity`).
pub fn generate_authority(spec: &AuthoritySpec, params: &IssueParams) -> Result<Authority, IssueError> {
    Authority::generate(spec.common_name, params.algorithm, params.ca_validity, params.now).map_err(
        |source| IssueError::Authority {
            row: spec.name,
            source,
        },
    )
}

/// A CA's Secret data: the certificate under every cert key, the key under every key
/// key (omitted for an externally managed CA).
pub fn authority_secret_data(spec: &AuthoritySpec, ca: &Authority) -> SecretData {
    let mut data = SecretData::new();
    for key in spec.cert_keys {
        data.insert((*key).to_owned(), ca.certificate_pem().as_bytes().to_vec());
    }
    if let Some(pem) = ca.key_pem() {
        for key in spec.key_keys {
            data.insert((*key).to_owned(), pem.as_bytes().to_vec());
        }
    }
    data
}

/// Loads a CA from its Secret data (first cert key, first key key if present).
pub fn load_authority(spec: &AuthoritySpec, data: &SecretData) -> Result<Authority, IssueError> {
    let cert_key = spec.cert_keys.first().copied().unwrap_or("ca.crt");
    let cert = data.get(cert_key).ok_or(IssueError::MissingKey {
        row: spec.name,
        key: cert_key,
    })?;
    let key = spec
        .key_keys
        .first()
        .and_then(|k| data.get(*k))
        .map(Vec::as_slice);
    Authority::from_pem(cert, key).map_err(|source| IssueError::Authority {
        row: spec.name,
        source,
    })
}

/// A new service-account key pair's Secret data (`sa.pub` as `PUBLIC KEY`, `sa.key`).
pub fn service_account_secret_data(
    spec: &KeyPairSpec,
    algorithm: KeyAlgorithm,
) -> Result<SecretData, IssueError> {
    let key = PrivateKey::generate(algorithm)?;
    Ok(BTreeMap::from([
        (spec.public_key.to_owned(), key.public_key_pem().into_bytes()),
        (spec.private_key.to_owned(), key.pem().as_bytes().to_vec()),
    ]))
}

/// The service-account Secret after a rotation: a new key signs (`sa.key`), and
/// `sa.pub` lists its public key first, then every key it held before, so tokens
/// signed by the previous key keep verifying (kube-apiserver's
/// `--service-account-key-file` accepts several keys).
pub fn rotated_service_account_data(
    spec: &KeyPairSpec,
    algorithm: KeyAlgorithm,
    previous: &SecretData,
) -> Result<SecretData, IssueError> {
    let mut data = service_account_secret_data(spec, algorithm)?;
    let kept = previous
        .get(spec.public_key)
        .and_then(|bytes| pem::public_keys(bytes).ok())
        .unwrap_or_default();
    if let Some(public) = data.get_mut(spec.public_key) {
        for der in kept {
            public.extend_from_slice(pem::encode("PUBLIC KEY", &der).as_bytes());
        }
    }
    Ok(data)
}

/// How many public keys `sa.pub` holds besides the signing key's.
pub fn previous_service_account_keys(spec: &KeyPairSpec, data: &SecretData) -> usize {
    data.get(spec.public_key)
        .and_then(|bytes| pem::public_keys(bytes).ok())
        .map_or(0, |keys| keys.len().saturating_sub(1))
}

/// The service-account data with only the signing key's public key in `sa.pub`:
/// tokens signed by the previous keys are refused from then on.
pub fn retire_previous_service_account_keys(spec: &KeyPairSpec, data: &SecretData) -> SecretData {
    let mut data = data.clone();
    if let Some(first) = data
        .get(spec.public_key)
        .and_then(|bytes| pem::public_keys(bytes).ok())
        .and_then(|keys| keys.into_iter().next())
    {
        data.insert(
            spec.public_key.to_owned(),
            pem::encode("PUBLIC KEY", &first).into_bytes(),
        );
    }
    data
}

/// Whether stored service-account data is a usable, matching pair.
pub fn check_service_account(spec: &KeyPairSpec, data: &SecretData) -> Result<(), Stale> {
    let public = data.get(spec.public_key).ok_or(Stale::Missing {
        key: spec.public_key.into(),
    })?;
    let private = data.get(spec.private_key).ok_or(Stale::Missing {
        key: spec.private_key.into(),
    })?;
    let public = public_key_raw_from_pem(public).map_err(|e| Stale::Unreadable {
        key: spec.public_key.into(),
        reason: e.to_string(),
    })?;
    let private = PrivateKey::from_pem(private).map_err(|e| Stale::Unreadable {
        key: spec.private_key.into(),
        reason: e.to_string(),
    })?;
    if !private.matches_public_key(&public) {
        return Err(Stale::KeyMismatch {
            key: spec.private_key.into(),
        });
    }
    Ok(())
}

/// Why stored material is not what would be issued now: the reconciler re-issues it.
/// Expiry deadlines are the lifecycle controller's; this only says "unusable now" or
/// "no longer matches the tenant".
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Stale {
    /// A data key is absent.
    #[error("{key} is missing")]
    Missing {
        /// Data key.
        key: String,
    },
    /// A value does not parse.
    #[error("{key} is unreadable: {reason}")]
    Unreadable {
        /// Data key.
        key: String,
        /// What is wrong (never the content).
        reason: String,
    },
    /// Not issued by the current CA, or not valid now (expired, not yet valid).
    #[error("{key} does not verify against the current CA: {reason}")]
    NotFromCurrentCa {
        /// Data key.
        key: String,
        /// The verification error.
        reason: VerifyError,
    },
    /// The key is not the certificate's.
    #[error("{key} does not match its certificate")]
    KeyMismatch {
        /// Data key.
        key: String,
    },
    /// Subject CN/O differ from the catalog.
    #[error("{key} has a different subject than the catalog asks for")]
    SubjectChanged {
        /// Data key.
        key: String,
    },
    /// Subject alternative names differ from the tenant's (certSANs, address changed).
    #[error("{key} has different subject alternative names than the tenant needs")]
    SansChanged {
        /// Data key.
        key: String,
    },
    /// A kubeconfig points at another server.
    #[error("{key} points at another server")]
    ServerChanged {
        /// Data key.
        key: String,
    },
    /// A kubeconfig or a carried `ca.crt` holds another CA than the current one.
    #[error("{key} carries another CA certificate than the current one")]
    CaChanged {
        /// Data key.
        key: String,
    },
    /// A serving certificate lacks (or carries a stale) intermediate of a CA rotation.
    #[error("{key} {}", chain_mismatch(*carried, *wanted))]
    ChainChanged {
        /// Data key.
        key: String,
        /// Intermediates stored after the certificate.
        carried: usize,
        /// Intermediates it should carry now.
        wanted: usize,
    },
    /// The CA needed to check it is absent or unusable.
    #[error("{0}")]
    Issue(#[from] IssueError),
}

/// Checks a row's stored data: present, readable, issued by the row's current CA,
/// valid at `now`, key matching, subject and SANs as the tenant needs them, and for
/// kubeconfigs the server URL and embedded CA. `Ok` means "keep it".
pub fn check(
    spec: &CertificateSpec,
    data: &SecretData,
    tenant: &TenantInputs,
    signers: &Signers<'_>,
    now: OffsetDateTime,
) -> Result<(), Stale> {
    let ca = signers
        .issuer_of(spec)
        .ok_or(IssueError::MissingDatastoreCa { row: spec.name })?;
    let stored = match spec.output {
        Output::Pem {
            cert,
            key,
            ca: ca_key,
        } => stored_pem(spec, data, signers, ca, (cert, key, ca_key))?,
        Output::Kubeconfig { key, server } => {
            stored_kubeconfig(spec, data, tenant, signers, ca, key, server)?
        }
    };
    check_issuer(spec, signers, ca, &stored, now)?;
    check_subject(spec, tenant, &stored)
}

/// A row's certificate and key as stored, under the data key reported when stale.
struct StoredLeaf {
    key_name: &'static str,
    /// The data key of the private key (a kubeconfig holds both under one key).
    private_key_name: &'static str,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// A PEM row: certificate, key and (when the Secret carries it) the issuing CA.
fn stored_pem(
    spec: &CertificateSpec,
    data: &SecretData,
    signers: &Signers<'_>,
    ca: &Authority,
    (cert, key, ca_key): (&'static str, &'static str, Option<&'static str>),
) -> Result<StoredLeaf, Stale> {
    if let Some(ca_key) = ca_key {
        let carried = data.get(ca_key).ok_or(Stale::Missing { key: ca_key.into() })?;
        let also = signers.also_accepted(spec);
        if !same_certificate(carried, ca.certificate_der())
            && !also.is_some_and(|a| same_certificate(carried, a.certificate_der()))
        {
            return Err(Stale::CaChanged { key: ca_key.into() });
        }
    }
    Ok(StoredLeaf {
        key_name: cert,
        private_key_name: key,
        cert_pem: data.get(cert).ok_or(Stale::Missing { key: cert.into() })?.clone(),
        key_pem: data.get(key).ok_or(Stale::Missing { key: key.into() })?.clone(),
    })
}

/// A kubeconfig row: server and CA bundle as the tenant needs them, then the client
/// certificate and key of the user its current context uses.
fn stored_kubeconfig(
    spec: &CertificateSpec,
    data: &SecretData,
    tenant: &TenantInputs,
    signers: &Signers<'_>,
    ca: &Authority,
    key: &'static str,
    server: Server,
) -> Result<StoredLeaf, Stale> {
    let raw = data.get(key).ok_or(Stale::Missing { key: key.into() })?;
    let unreadable = |e: KubeconfigError| Stale::Unreadable {
        key: key.into(),
        reason: e.to_string(),
    };
    let kubeconfig = Kubeconfig::parse(raw).map_err(unreadable)?;
    let current = kubeconfig
        .current_server()
        .ok_or(Stale::ServerChanged { key: key.into() })?;
    if current != tenant.server_url(server)? {
        return Err(Stale::ServerChanged { key: key.into() });
    }
    let bundle = signers
        .bundle_of(spec.signer)
        .unwrap_or_else(|| ca.certificate_pem().to_owned());
    match kubeconfig.current_ca_pem().map_err(unreadable)? {
        Some(pem) if same_certificates(&pem, bundle.as_bytes()) => {}
        _ => return Err(Stale::CaChanged { key: key.into() }),
    }
    let mut creds = kubeconfig.client_credentials().map_err(unreadable)?;
    // Our kubeconfigs have one user; check the one the current context uses.
    let user = kubeconfig
        .current_user()
        .map(|u| u.name.clone())
        .unwrap_or_default();
    let index = creds.iter().position(|c| c.user == user).unwrap_or(0);
    let cred = creds.swap_remove(index);
    let key_pem = cred.key_pem.ok_or(Stale::Missing { key: key.into() })?;
    Ok(StoredLeaf {
        key_name: key,
        private_key_name: key,
        cert_pem: cred.certificate_pem,
        key_pem,
    })
}

/// Issued by `ca` (or, mid-rotation, by a CA also accepted), valid now, with its key,
/// carrying the intermediate it should.
fn check_issuer(
    spec: &CertificateSpec,
    signers: &Signers<'_>,
    ca: &Authority,
    stored: &StoredLeaf,
    now: OffsetDateTime,
) -> Result<(), Stale> {
    let StoredLeaf {
        key_name,
        private_key_name,
        cert_pem,
        key_pem,
    } = stored;
    let also = signers.also_accepted(spec);
    let verified = match (ca.verify_pem(cert_pem, Some(key_pem), now), also) {
        (Err(VerifyError::BadSignature | VerifyError::IssuerMismatch { .. }), Some(also)) => {
            also.verify_pem(cert_pem, Some(key_pem), now)
        }
        (result, _) => result,
    };
    let chain = match also {
        // Issued by the new CA before its trust rolled out: it carries the new CA's chain.
        Some(also) if verified.is_ok() && also.verify_pem(cert_pem, None, now).is_ok() => {
            signers.chain_of_new(spec, now)
        }
        _ => signers.chain_of(spec, now),
    };
    check_chain(key_name, cert_pem, chain)?;
    let key = (*key_name).to_string();
    match verified {
        Ok(()) => Ok(()),
        Err(VerifyError::KeyMismatch) => Err(Stale::KeyMismatch {
            key: (*private_key_name).to_string(),
        }),
        Err(VerifyError::Key(e)) => Err(Stale::Unreadable {
            key: (*private_key_name).to_string(),
            reason: e.to_string(),
        }),
        Err(VerifyError::Unreadable(reason)) => Err(Stale::Unreadable { key, reason }),
        Err(reason) => Err(Stale::NotFromCurrentCa { key, reason }),
    }
}

/// Subject (CN, O) and SANs as the tenant needs them now.
fn check_subject(spec: &CertificateSpec, tenant: &TenantInputs, stored: &StoredLeaf) -> Result<(), Stale> {
    let key_name = stored.key_name;
    let wanted = leaf_request(spec, tenant)?;
    let der = pem::certificates(&stored.cert_pem)
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .ok_or_else(|| Stale::Unreadable {
            key: key_name.into(),
            reason: "no certificate".into(),
        })?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|_| Stale::Unreadable {
        key: key_name.into(),
        reason: "not X.509".into(),
    })?;
    let organizations: Vec<&str> = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .collect();
    let kept_until_granted = !tenant.superseded_groups_granted
        && spec.superseded_organization.is_some_and(|o| organizations == [o]);
    if common_name(&cert) != wanted.common_name
        || (organizations != wanted.organization.as_deref().into_iter().collect::<Vec<_>>()
            && !kept_until_granted)
    {
        return Err(Stale::SubjectChanged { key: key_name.into() });
    }
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(b) => ips.extend(ip_from_bytes(b)),
                _ => {}
            }
        }
    }
    let (mut want_dns, mut want_ips) = (wanted.dns_names, wanted.ip_addresses);
    for list in [&mut dns, &mut want_dns] {
        list.sort_unstable();
        list.dedup();
    }
    for list in [&mut ips, &mut want_ips] {
        list.sort_unstable();
        list.dedup();
    }
    if dns != want_dns || ips != want_ips {
        return Err(Stale::SansChanged { key: key_name.into() });
    }
    Ok(())
}

/// How a stored chain differs from the one a CA rotation wants (counts alone cannot
/// tell two different intermediates apart).
fn chain_mismatch(carried: usize, wanted: usize) -> String {
    if carried == wanted {
        "carries another intermediate certificate than the current CA rotation's".into()
    } else {
        format!("carries {carried} intermediate certificate(s) where the current CA rotation wants {wanted}")
    }
}

/// A serving certificate carries exactly the intermediate it should (the cross-signed
/// new CA after a completed rotation, nothing otherwise).
fn check_chain(key: &str, cert_pem: &[u8], intermediate: Option<&str>) -> Result<(), Stale> {
    let carried: Vec<Vec<u8>> = pem::certificates(cert_pem)
        .map(|certs| certs.into_iter().skip(1).collect())
        .unwrap_or_default();
    let wanted: Vec<Vec<u8>> = intermediate
        .and_then(|pem_str| pem::certificates(pem_str.as_bytes()).ok())
        .unwrap_or_default();
    if carried == wanted {
        Ok(())
    } else {
        Err(Stale::ChainChanged {
            key: key.into(),
            carried: carried.len(),
            wanted: wanted.len(),
        })
    }
}

/// The same list of certificates.
fn same_certificates(a: &[u8], b: &[u8]) -> bool {
    matches!((pem::certificates(a), pem::certificates(b)), (Ok(a), Ok(b)) if !a.is_empty() && a == b)
}

fn same_certificate(pem_bytes: &[u8], der: &[u8]) -> bool {
    pem::certificates(pem_bytes).is_ok_and(|certs| certs.first().is_some_and(|c| c == der))
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(|b| IpAddr::V4(b.into())),
        16 => <[u8; 16]>::try_from(bytes).ok().map(|b| IpAddr::V6(b.into())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantInputs {
        TenantInputs {
            name: "k8s-133".into(),
            namespace: "default".into(),
            address: Some("172.18.0.2".into()),
            port: 6443,
            cert_sans: vec!["api.example.com".into(), "10.1.2.3".into(), "localhost".into()],
            service_cidr: "10.96.0.0/16".into(),
            cluster_domain: "cluster.local".into(),
            control_plane_endpoint: "172.18.0.2:6443".into(),
            konnectivity: false,
            datastore_user: "default_k8s_133".into(),
            superseded_groups_granted: true,
        }
    }

    #[test]
    fn first_service_ip_for_both_families() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(service_ips("10.96.0.0/16").unwrap(), vec![ip("10.96.0.1")]);
        assert_eq!(service_ips("10.96.12.34/12").unwrap(), vec![ip("10.96.0.1")]);
        assert_eq!(
            service_ips("fd00:10:96::/108").unwrap(),
            vec![ip("fd00:10:96::1")]
        );
        assert_eq!(
            service_ips("10.96.0.0/16, fd00::/112").unwrap(),
            vec![ip("10.96.0.1"), ip("fd00::1")]
        );
        assert_eq!(service_ips("0.0.0.0/0").unwrap(), vec![ip("0.0.0.1")]);
        for bad in ["", "10.96.0.0", "10.96.0.0/33", "10.96.0.1/32", "x/16", "::1/128"] {
            assert!(service_ips(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_server_sans_are_design_section_2() {
        let (dns, ips) = api_server_sans(&tenant()).unwrap();
        assert_eq!(
            dns,
            [
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
                "k8s-133",
                "k8s-133.default.svc",
                "k8s-133.default.svc.cluster.local",
                "api.example.com",
            ]
        );
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["127.0.0.1", "10.96.0.1", "172.18.0.2", "10.1.2.3"]);
    }

    #[test]
    fn dns_address_and_url_endpoint_become_dns_sans() {
        let t = TenantInputs {
            address: Some("tenant.example.com".into()),
            control_plane_endpoint: "https://lb.example.com:443".into(),
            cert_sans: vec!["*.apps.example.com".into()],
            ..tenant()
        };
        let (dns, _) = api_server_sans(&t).unwrap();
        assert!(dns.contains(&"tenant.example.com".to_owned()));
        assert!(dns.contains(&"lb.example.com".to_owned()));
        assert!(dns.contains(&"*.apps.example.com".to_owned()));
        let bad = TenantInputs {
            cert_sans: vec!["not a name".into()],
            ..tenant()
        };
        assert_eq!(
            api_server_sans(&bad),
            Err(IssueError::InvalidSan("not a name".into()))
        );
    }

    #[test]
    fn endpoint_hosts() {
        assert_eq!(endpoint_host("10.0.0.1:6443"), Some("10.0.0.1"));
        assert_eq!(endpoint_host("[fd00::1]:6443"), Some("fd00::1"));
        assert_eq!(endpoint_host("fd00::1"), Some("fd00::1"));
        assert_eq!(
            endpoint_host("https://api.example.com:443/"),
            Some("api.example.com")
        );
        assert_eq!(endpoint_host("api.example.com"), Some("api.example.com"));
        assert_eq!(endpoint_host(""), None);
    }

    #[test]
    fn server_urls() {
        let t = tenant();
        assert_eq!(
            t.server_url(Server::ControlPlaneEndpoint).unwrap(),
            "https://172.18.0.2:6443"
        );
        assert_eq!(t.server_url(Server::Loopback).unwrap(), "https://127.0.0.1:6443");
        assert_eq!(
            t.server_url(Server::Service).unwrap(),
            "https://k8s-133.default.svc:6443"
        );
        let url = TenantInputs {
            control_plane_endpoint: "https://lb:443".into(),
            ..tenant()
        };
        assert_eq!(
            url.server_url(Server::ControlPlaneEndpoint).unwrap(),
            "https://lb:443"
        );
        let none = TenantInputs {
            control_plane_endpoint: String::new(),
            ..tenant()
        };
        assert_eq!(
            none.server_url(Server::ControlPlaneEndpoint),
            Err(IssueError::MissingEndpoint)
        );
    }
}
