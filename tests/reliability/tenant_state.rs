//! A tenant as stored at one moment (its Secrets by name, its Deployment, its
//! status), read the way a user would with kubectl, and the invariants every
//! converged tenant holds: every Secret present, every leaf verifying (openssl)
//! against a CA the tenant trusts, every kubeconfig carrying the tenant's CA bundle.

use std::{collections::BTreeMap, path::Path, process::Command};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Secret};
use kamaji::{
    api::{TenantControlPlane, rotation::CaRotationPhase, tenant_control_plane::KubernetesVersionStatus},
    pki::{certificates_der, kubeconfig::Kubeconfig},
    tenant::deployment,
};
use kube::{Api, Client};
use sha2::{Digest, Sha256};

/// Every Secret of a tenant without the konnectivity addon (DESIGN.md section 2).
pub const SECRETS: &[&str] = &[
    "ca",
    "front-proxy-ca-certificate",
    "sa-certificate",
    "api-server-certificate",
    "api-server-kubelet-client-certificate",
    "front-proxy-client-certificate",
    "datastore-certificate",
    "admin-kubeconfig",
    "controller-manager-kubeconfig",
    "scheduler-kubeconfig",
    "datastore-config",
];

/// The one Secret that issues nothing ([`Snapshot::issued_value`]): a configuration.
pub const ISSUES_NOTHING: &str = "datastore-config";

/// Who signs a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// The tenant CA (`<tcp>-ca`).
    Tenant,
    /// The front-proxy CA.
    FrontProxy,
    /// The DataStore's CA (the `ca.crt` beside the certificate).
    DataStore,
}

/// The leaf certificate Secrets (lifecycle label `x509`): suffix, certificate key, signer.
pub const LEAVES: &[(&str, &str, Signer)] = &[
    ("api-server-certificate", "apiserver.crt", Signer::Tenant),
    (
        "api-server-kubelet-client-certificate",
        "apiserver-kubelet-client.crt",
        Signer::Tenant,
    ),
    (
        "front-proxy-client-certificate",
        "front-proxy-client.crt",
        Signer::FrontProxy,
    ),
    ("datastore-certificate", "server.crt", Signer::DataStore),
];

/// The kubeconfig Secrets (lifecycle label `kubeconfig`); every data key is a kubeconfig.
pub const KUBECONFIGS: &[&str] = &[
    "admin-kubeconfig",
    "controller-manager-kubeconfig",
    "scheduler-kubeconfig",
];

/// `sha256:<first 16 hex digits>` of bytes: names a certificate or key without printing it.
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("sha256:{}", &hex::encode(Sha256::digest(bytes))[..16])
}

/// The fingerprint of the first certificate in PEM bytes.
pub fn certificate_fingerprint(pem: &[u8]) -> Option<String> {
    certificates_der(pem).first().map(|der| fingerprint(der))
}

/// A tenant as stored at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Secret suffix → data (only the tenant's Secrets, known by name).
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Secret suffix → the rotate annotation's value, when set.
    pub rotate: BTreeMap<String, String>,
    /// The Deployment.
    pub deployment: Option<Deployment>,
    /// The TenantControlPlane.
    pub tcp: Option<TenantControlPlane>,
}

impl Snapshot {
    /// Reads the tenant's objects; a failed read leaves that part empty.
    pub async fn read(client: &Client, namespace: &str, tenant: &str) -> Self {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let mut snapshot = Snapshot::default();
        for secret in secrets
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let name = secret.metadata.name.clone().unwrap_or_default();
            let Some(suffix) = name.strip_prefix(&format!("{tenant}-")) else {
                continue;
            };
            if !SECRETS.contains(&suffix) {
                continue;
            }
            if let Some(value) = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(kamaji::api::labels::ROTATE))
            {
                snapshot.rotate.insert(suffix.to_string(), value.clone());
            }
            let data = secret.data.unwrap_or_default();
            let data = data.into_iter().map(|(k, v)| (k, v.0)).collect();
            snapshot.secrets.insert(suffix.to_string(), data);
        }
        snapshot.deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
            .get_opt(tenant)
            .await
            .ok()
            .flatten();
        snapshot.tcp = Api::<TenantControlPlane>::namespaced(client.clone(), namespace)
            .get_opt(tenant)
            .await
            .ok()
            .flatten();
        snapshot
    }

    /// A data key of a Secret.
    pub fn value(&self, suffix: &str, key: &str) -> Option<&[u8]> {
        self.secrets.get(suffix)?.get(key).map(Vec::as_slice)
    }

    /// The tenant CA that signs now (`tls.crt` of `<tcp>-ca`).
    pub fn signing_ca(&self) -> Option<String> {
        certificate_fingerprint(self.value("ca", "tls.crt")?)
    }

    /// Every CA the tenant trusts (`ca.crt` of `<tcp>-ca`, one or two certificates).
    pub fn trusted_cas(&self) -> Vec<String> {
        certificates_der(self.value("ca", "ca.crt").unwrap_or_default())
            .iter()
            .map(|der| fingerprint(der))
            .collect()
    }

    /// A CA rotation is prepared: the previous CA is kept beside the new one.
    pub fn previous_ca_kept(&self) -> bool {
        self.value("ca", "previous-ca.crt").is_some()
    }

    /// The front-proxy CA.
    pub fn front_proxy_ca(&self) -> Option<String> {
        certificate_fingerprint(self.value("front-proxy-ca-certificate", "front-proxy-ca.crt")?)
    }

    /// The service-account key pair (its public key).
    pub fn service_account_key(&self) -> Option<String> {
        self.value("sa-certificate", "sa.pub").map(fingerprint)
    }

    /// The fingerprints of the certificates a leaf or kubeconfig Secret issues (one per
    /// kubeconfig key), or `None` when absent.
    pub fn issued(&self, suffix: &str) -> Option<Vec<String>> {
        if let Some((_, key, _)) = LEAVES.iter().find(|(s, _, _)| *s == suffix) {
            return Some(vec![certificate_fingerprint(self.value(suffix, key)?)?]);
        }
        let data = self.secrets.get(suffix)?;
        data.values()
            .map(|bytes| {
                let client = Kubeconfig::parse(bytes).ok()?.client_credentials().ok()?;
                certificate_fingerprint(&client.first()?.certificate_pem)
            })
            .collect()
    }

    /// What a Secret issues, as one comparable value: the signing CA of `ca`, the
    /// front-proxy CA, the service-account public key, or every certificate of a
    /// leaf or kubeconfig Secret. `None` for `datastore-config`, or when absent.
    pub fn issued_value(&self, suffix: &str) -> Option<String> {
        match suffix {
            "ca" => self.signing_ca(),
            "front-proxy-ca-certificate" => self.front_proxy_ca(),
            "sa-certificate" => self.service_account_key(),
            ISSUES_NOTHING => None,
            _ => self.issued(suffix).map(|all| all.join(",")),
        }
    }

    /// `deployment.kubernetes.io/revision`: how many rollouts the Deployment has had.
    pub fn revision(&self) -> i64 {
        self.deployment
            .as_ref()
            .and_then(|d| {
                d.metadata
                    .annotations
                    .as_ref()?
                    .get("deployment.kubernetes.io/revision")
            })
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    }

    /// The Deployment runs, fully rolled out, a template carrying the material stored now.
    pub fn runs_stored_material(&self) -> bool {
        let Some(d) = self.deployment.as_ref() else {
            return false;
        };
        let empty = BTreeMap::new();
        let mounted = deployment::mounted_secret_suffixes(false);
        let wanted = deployment::material_checksum(
            mounted
                .iter()
                .map(|s| (*s, self.secrets.get(*s).unwrap_or(&empty))),
        );
        deployment::deployed_checksum(d) == Some(wanted) && crate::support::rolled_out(d)
    }

    /// `status.kubernetesResources.version.status`.
    pub fn version_status(&self) -> Option<KubernetesVersionStatus> {
        self.tcp
            .as_ref()?
            .status
            .as_ref()?
            .kubernetes_resources
            .as_ref()?
            .version
            .as_ref()?
            .status
    }

    /// The TCP is Ready.
    pub fn ready(&self) -> bool {
        self.version_status() == Some(KubernetesVersionStatus::Ready)
    }

    /// The CA rotation phase in the status.
    pub fn ca_phase(&self) -> Option<CaRotationPhase> {
        self.tcp.as_ref()?.status.as_ref()?.ca_rotation_phase()
    }

    /// An annotation of the TCP is set.
    pub fn tcp_annotated(&self, key: &str) -> bool {
        self.tcp
            .as_ref()
            .and_then(|t| t.metadata.annotations.as_ref())
            .is_some_and(|a| a.contains_key(key))
    }

    /// Every data key of every Secret: what a later snapshot must still hold.
    pub fn keys(&self) -> BTreeMap<String, Vec<String>> {
        self.secrets
            .iter()
            .map(|(suffix, data)| (suffix.clone(), data.keys().cloned().collect()))
            .collect()
    }
}

/// What of `expected` (Secret → data keys) a snapshot lacks: each missing Secret or
/// data key is one object lost.
pub fn lost(expected: &BTreeMap<String, Vec<String>>, now: &Snapshot) -> Vec<String> {
    let mut lost = Vec::new();
    for (suffix, keys) in expected {
        match now.secrets.get(suffix) {
            None => lost.push(format!("Secret {suffix}")),
            Some(data) => lost.extend(
                keys.iter()
                    .filter(|k| !data.contains_key(*k))
                    .map(|k| format!("{suffix}/{k}")),
            ),
        }
    }
    if now.deployment.is_none() {
        lost.push("Deployment".into());
    }
    lost
}

/// The invariants of a converged tenant; each violation is one line.
pub fn violations(now: &Snapshot, scratch: &Path) -> Vec<String> {
    let mut found: Vec<String> = SECRETS
        .iter()
        .filter(|s| !now.secrets.contains_key(**s))
        .map(|s| format!("Secret {s} missing"))
        .collect();
    let bundle = now.value("ca", "ca.crt").unwrap_or_default();
    for (suffix, key, signer) in LEAVES {
        let Some(leaf) = now.value(suffix, key) else {
            found.push(format!("{suffix}/{key} missing"));
            continue;
        };
        let ca = match signer {
            Signer::Tenant => bundle,
            Signer::FrontProxy => now
                .value("front-proxy-ca-certificate", "front-proxy-ca.crt")
                .unwrap_or_default(),
            Signer::DataStore => now.value(suffix, "ca.crt").unwrap_or_default(),
        };
        if let Err(error) = openssl_verify(scratch, ca, leaf) {
            found.push(format!("{suffix}/{key} does not verify against its CA: {error}"));
        }
    }
    for suffix in KUBECONFIGS {
        for (key, bytes) in now.secrets.get(*suffix).into_iter().flatten() {
            if let Err(error) = kubeconfig_trusts(scratch, bytes, bundle) {
                found.push(format!("{suffix}/{key}: {error}"));
            }
        }
    }
    found
}

/// A kubeconfig carries the tenant's CA bundle and a client certificate it verifies.
fn kubeconfig_trusts(scratch: &Path, kubeconfig: &[u8], bundle: &[u8]) -> Result<(), String> {
    let parsed = Kubeconfig::parse(kubeconfig).map_err(|e| format!("not a kubeconfig: {e}"))?;
    let carried = parsed
        .current_ca_pem()
        .map_err(|e| format!("unreadable CA data: {e}"))?
        .ok_or("no certificate-authority-data")?;
    if certificates_der(&carried) != certificates_der(bundle) {
        return Err(format!(
            "carries {} CA(s) that are not the tenant's bundle of {}",
            certificates_der(&carried).len(),
            certificates_der(bundle).len()
        ));
    }
    let client = parsed
        .client_credentials()
        .map_err(|e| format!("no client certificate: {e}"))?;
    let certificate = client.first().ok_or("no user")?;
    openssl_verify(scratch, bundle, &certificate.certificate_pem)
}

/// `openssl verify -CAfile <ca> -untrusted <chain> <chain>`: the chain (a leaf and
/// any intermediates it is served with) verifies against a CA in `ca`.
pub fn openssl_verify(scratch: &Path, ca: &[u8], chain: &[u8]) -> Result<(), String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let tag = rand::random::<u32>();
    let ca_file = scratch.join(format!("ca-{tag:08x}.pem"));
    let chain_file = scratch.join(format!("chain-{tag:08x}.pem"));
    std::fs::write(&ca_file, ca).map_err(|e| e.to_string())?;
    std::fs::write(&chain_file, chain).map_err(|e| e.to_string())?;
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca_file)
        .arg("-untrusted")
        .arg(&chain_file)
        .arg(&chain_file)
        .output()
        .map_err(|e| format!("running openssl: {e}"))?;
    let _ = std::fs::remove_file(&ca_file);
    let _ = std::fs::remove_file(&chain_file);
    if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(": OK") {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().replace('\n', " "))
    }
}
