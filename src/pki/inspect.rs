//! Reading a Secret the way the CertificateLifecycle controller must: the
//! certificates actually in use and when they expire.
//!
//! * `x509` Secrets: the certificate keys (`*.crt`: `apiserver.crt`, `tls.crt`,
//!   `server.crt`, ...), never a CA the Secret merely carries (`ca.crt`,
//!   `*-ca.crt`). When the matching `*.key` is present it must be the
//!   certificate's key.
//! * `kubeconfig` Secrets: every key, every user's embedded client certificate
//!   (and key, when present).
//!
//! The earliest NotAfter decides. Errors name the data key and what is wrong,
//! never the content. Parsers here must not panic on any input (fuzzed).

use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

use super::{
    authority::{common_name, serial_hex},
    catalog::Lifecycle,
    keys::{KeyError, PrivateKey},
    kubeconfig::{Kubeconfig, KubeconfigError},
    pem::{self, PemProblem},
};

/// One certificate found in a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The data key it was read from.
    pub data_key: String,
    /// For kubeconfigs, the user it belongs to.
    pub user: Option<String>,
    /// Subject CN.
    pub common_name: String,
    /// Issuer CN.
    pub issuer_common_name: String,
    /// Serial, lower-case hex.
    pub serial: String,
    /// NotBefore.
    pub not_before: OffsetDateTime,
    /// NotAfter.
    pub not_after: OffsetDateTime,
}

/// The certificates of a Secret (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// Every certificate in use, in data-key order.
    pub certificates: Vec<CertificateInfo>,
}

impl Inspection {
    /// The certificate that expires first: it decides when the Secret is rotated.
    pub fn earliest(&self) -> Option<&CertificateInfo> {
        self.certificates.iter().min_by_key(|c| c.not_after)
    }

    /// The earliest NotAfter.
    pub fn not_after(&self) -> Option<OffsetDateTime> {
        self.earliest().map(|c| c.not_after)
    }
}

/// What is wrong with a Secret's data. Variants name the data key; none carries content.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum InspectError {
    /// The Secret has no data at all.
    #[error("the Secret has no data")]
    NoData,
    /// An x509 Secret without any certificate key.
    #[error("the Secret has no certificate key (expected *.crt such as tls.crt or server.crt)")]
    NoCertificateKey,
    /// The value is empty.
    #[error("{key}: empty value")]
    Empty {
        /// Data key.
        key: String,
    },
    /// No PEM block at all (binary junk, DER, text).
    #[error("{key}: no PEM block found")]
    NoPemBlock {
        /// Data key.
        key: String,
    },
    /// Broken PEM.
    #[error("{key}: malformed PEM: {reason}")]
    MalformedPem {
        /// Data key.
        key: String,
        /// What is broken.
        reason: &'static str,
    },
    /// PEM without a CERTIFICATE block.
    #[error("{key}: expected a CERTIFICATE block, found {found_block_type}")]
    NotACertificate {
        /// Data key.
        key: String,
        /// Label of the block found instead.
        found_block_type: String,
    },
    /// The CERTIFICATE block is not X.509 DER.
    #[error("{key}: the CERTIFICATE block is not a valid X.509 certificate")]
    MalformedCertificate {
        /// Data key.
        key: String,
    },
    /// The private key next to the certificate is unreadable.
    #[error("{key}: unusable private key: {reason}")]
    MalformedPrivateKey {
        /// Data key.
        key: String,
        /// What is wrong.
        reason: KeyError,
    },
    /// The private key is not the certificate's.
    #[error("{key}: the private key does not match the certificate")]
    KeyMismatch {
        /// Data key (of the key, or of the kubeconfig).
        key: String,
    },
    /// Not YAML/JSON or not a kubeconfig.
    #[error("{key}: not a valid kubeconfig (YAML/JSON error at line {line}, column {column})")]
    MalformedKubeconfig {
        /// Data key.
        key: String,
        /// 1-based line, 0 if unknown.
        line: u64,
        /// 1-based column, 0 if unknown.
        column: u64,
    },
    /// A kubeconfig with no users.
    #[error("{key}: the kubeconfig has no users")]
    KubeconfigWithoutUsers {
        /// Data key.
        key: String,
    },
    /// A kubeconfig user without an embedded client certificate.
    #[error("{key}: user {user:?} has no embedded client certificate")]
    UserWithoutClientCertificate {
        /// Data key.
        key: String,
        /// User name.
        user: String,
    },
    /// An embedded kubeconfig field is not base64.
    #[error("{key}: {field} of {name:?} is not valid base64")]
    InvalidBase64 {
        /// Data key.
        key: String,
        /// User or cluster name.
        name: String,
        /// Field name.
        field: &'static str,
    },
}

impl InspectError {
    /// A short CamelCase reason for events and metrics (`MalformedPem`, `KeyMismatch`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoData => "NoData",
            Self::NoCertificateKey => "NoCertificateKey",
            Self::Empty { .. } => "Empty",
            Self::NoPemBlock { .. } => "NoPemBlock",
            Self::MalformedPem { .. } => "MalformedPem",
            Self::NotACertificate { .. } => "NotACertificate",
            Self::MalformedCertificate { .. } => "MalformedCertificate",
            Self::MalformedPrivateKey { .. } => "MalformedPrivateKey",
            Self::KeyMismatch { .. } => "KeyMismatch",
            Self::MalformedKubeconfig { .. } => "MalformedKubeconfig",
            Self::KubeconfigWithoutUsers { .. } => "KubeconfigWithoutUsers",
            Self::UserWithoutClientCertificate { .. } => "UserWithoutClientCertificate",
            Self::InvalidBase64 { .. } => "InvalidBase64",
        }
    }

    fn from_pem(key: &str, problem: PemProblem) -> Self {
        let key = key.to_owned();
        match problem {
            PemProblem::Empty => Self::Empty { key },
            PemProblem::NoBlock => Self::NoPemBlock { key },
            PemProblem::Malformed(reason) => Self::MalformedPem { key, reason },
            PemProblem::WrongType(found_block_type) => Self::NotACertificate {
                key,
                found_block_type,
            },
        }
    }

    fn from_kubeconfig(key: &str, err: KubeconfigError) -> Self {
        let key = key.to_owned();
        match err {
            KubeconfigError::Malformed { line, column } => Self::MalformedKubeconfig { key, line, column },
            KubeconfigError::WithoutUsers => Self::KubeconfigWithoutUsers { key },
            KubeconfigError::UserWithoutClientCertificate { user } => {
                Self::UserWithoutClientCertificate { key, user }
            }
            KubeconfigError::InvalidBase64 { name, field } => Self::InvalidBase64 { key, name, field },
            KubeconfigError::Serialize => Self::MalformedKubeconfig {
                key,
                line: 0,
                column: 0,
            },
        }
    }
}

/// Whether an x509 Secret's data key holds a certificate in use (rather than a CA the
/// Secret carries for its consumers).
pub fn is_certificate_key(key: &str) -> bool {
    key.ends_with(".crt") && key != "ca.crt" && !key.ends_with("-ca.crt")
}

/// Inspects a Secret's data according to its lifecycle label.
pub fn inspect<'a, I>(data: I, lifecycle: Lifecycle) -> Result<Inspection, InspectError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut entries: Vec<(&str, &[u8])> = data.into_iter().collect();
    if entries.is_empty() {
        return Err(InspectError::NoData);
    }
    // Deterministic order whatever map the caller holds: the first error is stable.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut certificates = Vec::new();
    match lifecycle {
        Lifecycle::X509 => {
            for &(key, value) in entries.iter().filter(|(k, _)| is_certificate_key(k)) {
                let info = inspect_certificate(key, value)?;
                let key_name = format!("{}.key", key.trim_end_matches(".crt"));
                if let Some((_, key_pem)) = entries.iter().find(|(k, _)| *k == key_name) {
                    check_key(&key_name, value, key_pem)?;
                }
                certificates.push(info);
            }
            if certificates.is_empty() {
                return Err(InspectError::NoCertificateKey);
            }
        }
        Lifecycle::Kubeconfig => {
            for &(key, value) in &entries {
                certificates.extend(inspect_kubeconfig(key, value)?);
            }
        }
    }
    Ok(Inspection { certificates })
}

/// The first certificate of a PEM value (the leaf of a chain).
pub fn inspect_certificate(key: &str, value: &[u8]) -> Result<CertificateInfo, InspectError> {
    let ders = pem::certificates(value).map_err(|p| InspectError::from_pem(key, p))?;
    let der = ders
        .first()
        .ok_or_else(|| InspectError::from_pem(key, PemProblem::NoBlock))?;
    certificate_info(key, None, der)
}

/// Every user's client certificate of a kubeconfig value, checked against its key.
pub fn inspect_kubeconfig(key: &str, value: &[u8]) -> Result<Vec<CertificateInfo>, InspectError> {
    let kubeconfig = Kubeconfig::parse(value).map_err(|e| InspectError::from_kubeconfig(key, e))?;
    let credentials = kubeconfig
        .client_credentials()
        .map_err(|e| InspectError::from_kubeconfig(key, e))?;
    credentials
        .iter()
        .map(|cred| {
            let ders =
                pem::certificates(&cred.certificate_pem).map_err(|p| InspectError::from_pem(key, p))?;
            let der = ders
                .first()
                .ok_or_else(|| InspectError::from_pem(key, PemProblem::NoBlock))?;
            let info = certificate_info(key, Some(&cred.user), der)?;
            if let Some(key_pem) = &cred.key_pem {
                check_key(key, &cred.certificate_pem, key_pem)?;
            }
            Ok(info)
        })
        .collect()
}

fn certificate_info(key: &str, user: Option<&str>, der: &[u8]) -> Result<CertificateInfo, InspectError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| InspectError::MalformedCertificate { key: key.to_owned() })?;
    let issuer_common_name = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(CertificateInfo {
        data_key: key.to_owned(),
        user: user.map(str::to_owned),
        common_name: common_name(&cert),
        issuer_common_name,
        serial: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

/// `key_name` is reported on failure; `cert_pem` was already parsed successfully.
fn check_key(key_name: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), InspectError> {
    let key = PrivateKey::from_pem(key_pem).map_err(|reason| InspectError::MalformedPrivateKey {
        key: key_name.to_owned(),
        reason,
    })?;
    let der = pem::certificates(cert_pem)
        .ok()
        .and_then(|c| c.into_iter().next())
        .unwrap_or_default();
    let matches = X509Certificate::from_der(&der)
        .map(|(_, cert)| key.matches_public_key(&cert.public_key().subject_public_key.data))
        .unwrap_or(false);
    if matches {
        Ok(())
    } else {
        Err(InspectError::KeyMismatch {
            key: key_name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_keys_skip_carried_cas() {
        for key in ["apiserver.crt", "tls.crt", "server.crt", "front-proxy-client.crt"] {
            assert!(is_certificate_key(key), "{key}");
        }
        for key in [
            "ca.crt",
            "front-proxy-ca.crt",
            "etcd-ca.crt",
            "server.key",
            "admin.conf",
        ] {
            assert!(!is_certificate_key(key), "{key}");
        }
    }

    #[test]
    fn empty_secrets_are_reported() {
        assert_eq!(
            inspect(std::iter::empty(), Lifecycle::X509),
            Err(InspectError::NoData)
        );
        let only_ca = [("ca.crt", &b"x"[..])];
        assert_eq!(
            inspect(only_ca, Lifecycle::X509),
            Err(InspectError::NoCertificateKey)
        );
    }
}
