//! Certificate authorities: create one, adopt one from PEM, tell an externally
//! managed one (certificate without key) apart, sign leaves, and verify that a
//! leaf really belongs to the CA.

use std::{net::IpAddr, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

use super::{
    catalog::Usage,
    issue::IssueParams,
    keys::{KeyAlgorithm, KeyError, PrivateKey},
    pem::{self, PemProblem},
};

/// kubeadm's CA validity: ten years.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// kubeadm's leaf validity: one year.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// NotBefore is backdated by this much to tolerate clock skew (kubeadm's `CertificateBackdate`).
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// How far in the future a NotBefore may lie and the certificate still count as valid
/// now: the operator's clock may be behind the one that issued it (another replica, a
/// host whose clock was corrected). Stored material is not re-issued for skew alone.
pub const CLOCK_SKEW_TOLERANCE: Duration = Duration::from_secs(60 * 60);

/// What went wrong creating, loading or using a CA. Never contains key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthorityError {
    /// The CA certificate value is empty.
    #[error("the CA certificate is empty")]
    EmptyCertificate,
    /// The CA certificate value is not PEM, or is broken PEM.
    #[error("the CA certificate is not readable PEM: {0}")]
    MalformedPem(&'static str),
    /// The PEM holds no CERTIFICATE block.
    #[error("expected a CERTIFICATE block for the CA, found {0}")]
    NotACertificate(String),
    /// The certificate does not parse as X.509.
    #[error("the CA certificate is not valid X.509")]
    MalformedCertificate,
    /// The certificate is not a CA (basicConstraints CA:TRUE missing).
    #[error("the certificate {common_name:?} is not a CA (basicConstraints CA:TRUE is missing)")]
    NotACa {
        /// Subject common name of the certificate.
        common_name: String,
    },
    /// The CA key is unreadable.
    #[error("the CA private key is unusable: {0}")]
    Key(#[from] KeyError),
    /// The CA key is not the certificate's key.
    #[error("the CA private key does not match the CA certificate {common_name:?}")]
    KeyMismatch {
        /// Subject common name of the CA.
        common_name: String,
    },
    /// Signing was asked of a CA without its key.
    #[error("the CA {common_name:?} is externally managed (no private key): it cannot sign")]
    ExternallyManaged {
        /// Subject common name of the CA.
        common_name: String,
    },
    /// The CA has expired (or expires before the backdated NotBefore of a new leaf).
    #[error("the CA {common_name:?} has expired: it cannot sign")]
    Expired {
        /// Subject common name of the CA.
        common_name: String,
    },
    /// The CA certificate is outside its validity period now (and beyond
    /// [`CLOCK_SKEW_TOLERANCE`] of it).
    #[error("the CA certificate {common_name:?} is not valid now: {reason}")]
    NotValidNow {
        /// Subject common name of the CA.
        common_name: String,
        /// `expired at <NotAfter>` or `not valid before <NotBefore>`.
        reason: String,
    },
    /// A requested name cannot go into a certificate.
    #[error("invalid subject alternative name or subject {0:?}")]
    InvalidName(String),
    /// The validity does not fit the calendar.
    #[error("the requested validity is out of range")]
    ValidityOutOfRange,
    /// rcgen refused to build the certificate.
    #[error("building the certificate failed: {0}")]
    Signing(String),
}

impl From<PemProblem> for AuthorityError {
    fn from(problem: PemProblem) -> Self {
        match problem {
            PemProblem::Empty => Self::EmptyCertificate,
            PemProblem::NoBlock => Self::MalformedPem("no PEM block found"),
            PemProblem::Malformed(reason) => Self::MalformedPem(reason),
            PemProblem::WrongType(found) => Self::NotACertificate(found),
        }
    }
}

/// Why a leaf does not belong to a CA (or is not usable now).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The leaf certificate is unreadable.
    #[error("the certificate is unreadable: {0}")]
    Unreadable(String),
    /// The leaf's issuer name is not the CA's subject.
    #[error("the certificate was issued by {issuer:?}, not by this CA")]
    IssuerMismatch {
        /// The leaf's issuer, as text.
        issuer: String,
    },
    /// The signature does not verify with the CA's key.
    #[error("the certificate's signature does not verify with the CA's public key")]
    BadSignature,
    /// Not yet valid at the given time.
    #[error("the certificate is not valid before {not_before}")]
    NotYetValid {
        /// NotBefore.
        not_before: OffsetDateTime,
    },
    /// Expired at the given time.
    #[error("the certificate expired at {not_after}")]
    Expired {
        /// NotAfter.
        not_after: OffsetDateTime,
    },
    /// The private key is not the certificate's.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// The private key is unreadable.
    #[error("the private key is unusable: {0}")]
    Key(#[from] KeyError),
}

/// What a leaf certificate should say about its subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeafRequest {
    /// Subject CN (the Kubernetes user name for client certificates).
    pub common_name: String,
    /// Subject O (the Kubernetes group), if any.
    pub organization: Option<String>,
    /// Extended key usages.
    pub usages: Vec<Usage>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
}

/// A freshly signed leaf and its new key.
#[derive(Debug)]
pub struct IssuedCertificate {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The certificate's private key.
    pub key: PrivateKey,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// NotAfter (capped at the CA's NotAfter).
    pub not_after: OffsetDateTime,
}

/// A certificate authority: its certificate and, unless externally managed, its key.
#[derive(Debug)]
pub struct Authority {
    certificate_pem: String,
    certificate_der: Vec<u8>,
    key: Option<PrivateKey>,
    common_name: String,
    serial: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Authority {
    /// Creates a self-signed CA, as kubeadm does: CN `common_name` (also its one DNS
    /// subject alternative name, as kubeadm's `NewSelfSignedCACert` writes it), keyUsage
    /// digitalSignature + keyCertSign (+ keyEncipherment for RSA), NotBefore backdated by
    /// [`BACKDATE`], NotAfter `now + validity` ([`CA_VALIDITY`] for kubeadm's ten years).
    pub fn generate(
        common_name: &str,
        algorithm: KeyAlgorithm,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, AuthorityError> {
        let key = PrivateKey::generate(algorithm)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name, None)?;
        params.subject_alt_names = ca_subject_alt_names(common_name)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = key_usages(algorithm.is_rsa(), true);
        params.serial_number = Some(random_serial());
        params.not_before = offset(now, BACKDATE, false)?;
        params.not_after = offset(now, validity, true)?;
        let cert = params
            .self_signed(key.key_pair())
            .map_err(|e| AuthorityError::Signing(e.to_string()))?;
        Self::from_parts(
            pem::encode("CERTIFICATE", cert.der()),
            cert.der().to_vec(),
            Some(key),
        )
    }

    /// Adopts a CA from its PEM certificate and, unless externally managed, its PEM key.
    /// The key must match the certificate; the certificate must be a CA.
    pub fn from_pem(certificate_pem: &[u8], key_pem: Option<&[u8]>) -> Result<Self, AuthorityError> {
        let der = pem::certificates(certificate_pem)?
            .into_iter()
            .next()
            .ok_or(AuthorityError::EmptyCertificate)?;
        let key = match key_pem {
            Some(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => Some(PrivateKey::from_pem(bytes)?),
            _ => None,
        };
        Self::from_parts(pem::encode("CERTIFICATE", &der), der, key)
    }

    fn from_parts(
        certificate_pem: String,
        certificate_der: Vec<u8>,
        key: Option<PrivateKey>,
    ) -> Result<Self, AuthorityError> {
        let (_, cert) =
            X509Certificate::from_der(&certificate_der).map_err(|_| AuthorityError::MalformedCertificate)?;
        let common_name = common_name(&cert);
        if !cert.is_ca() {
            return Err(AuthorityError::NotACa { common_name });
        }
        // rcgen re-encodes the CA subject as the issuer of every leaf; it supports only
        // single-valued RDNs, so refuse others here rather than when signing.
        if cert.subject().iter().any(|rdn| rdn.iter().count() != 1) {
            return Err(AuthorityError::InvalidName(cert.subject().to_string()));
        }
        if let Some(key) = &key
            && !key.matches_public_key(&cert.public_key().subject_public_key.data)
        {
            return Err(AuthorityError::KeyMismatch { common_name });
        }
        let serial = serial_hex(cert.raw_serial());
        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        Ok(Self {
            certificate_pem,
            certificate_der,
            key,
            common_name,
            serial,
            not_before,
            not_after,
        })
    }

    /// Whether the CA certificate is valid at `now` (a NotBefore up to
    /// [`CLOCK_SKEW_TOLERANCE`] ahead counts as valid).
    pub fn check_valid_at(&self, now: OffsetDateTime) -> Result<(), AuthorityError> {
        let reason = if now >= self.not_after {
            format!("expired at {}", super::expiration::rfc3339(self.not_after))
        } else if now + CLOCK_SKEW_TOLERANCE < self.not_before {
            format!("not valid before {}", super::expiration::rfc3339(self.not_before))
        } else {
            return Ok(());
        };
        Err(AuthorityError::NotValidNow {
            common_name: self.common_name.clone(),
            reason,
        })
    }

    /// A CA whose key we do not hold (kubeadm's "externally managed"): it is never
    /// rotated, and its leaves cannot be re-issued here.
    pub fn is_externally_managed(&self) -> bool {
        self.key.is_none()
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The CA key, PEM, when held.
    pub fn key_pem(&self) -> Option<&str> {
        self.key.as_ref().map(PrivateKey::pem)
    }

    /// Subject common name.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// Serial number, lower-case hex.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// NotBefore.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// NotAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Signs a leaf with a new key of `params.algorithm`: NotBefore `now - 5m`, NotAfter
    /// `now + validity` capped at the CA's NotAfter, random 128-bit serial, SKI and AKI,
    /// keyUsage digitalSignature (+ keyEncipherment for RSA), basicConstraints CA:FALSE.
    pub fn sign(
        &self,
        request: &LeafRequest,
        params: &IssueParams,
    ) -> Result<IssuedCertificate, AuthorityError> {
        let key = PrivateKey::generate(params.algorithm)?;
        self.sign_key(request, key, params)
    }

    /// As [`Authority::sign`], for a key the caller already has (a pre-generated pool key).
    pub fn sign_key(
        &self,
        request: &LeafRequest,
        key: PrivateKey,
        params: &IssueParams,
    ) -> Result<IssuedCertificate, AuthorityError> {
        let not_before = offset(params.now, BACKDATE, false)?;
        let not_after = offset(params.now, params.validity, true)?.min(self.not_after);
        if not_after <= not_before || not_after <= params.now {
            return Err(AuthorityError::Expired {
                common_name: self.common_name.clone(),
            });
        }

        let mut leaf = CertificateParams::default();
        leaf.distinguished_name = distinguished_name(&request.common_name, request.organization.as_deref())?;
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = key_usages(key.algorithm().is_some_and(KeyAlgorithm::is_rsa), false);
        leaf.extended_key_usages = request
            .usages
            .iter()
            .map(|u| match u {
                Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
                Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            })
            .collect();
        leaf.subject_alt_names = subject_alt_names(request)?;
        leaf.use_authority_key_identifier_extension = true;
        leaf.not_before = not_before;
        leaf.not_after = not_after;
        let serial = random_serial();
        leaf.serial_number = Some(serial.clone());

        let issuer = self.issuer()?;
        let cert = leaf
            .signed_by(key.key_pair(), &issuer)
            .map_err(|e| AuthorityError::Signing(e.to_string()))?;
        Ok(IssuedCertificate {
            certificate_pem: pem::encode("CERTIFICATE", cert.der()),
            key,
            serial: serial_hex(&serial.to_bytes()),
            not_after,
        })
    }

    /// `successor`'s CA certificate issued by this CA: same subject, key and subject key
    /// identifier as `successor`'s own self-signed certificate, NotAfter capped at this
    /// CA's. Served as an intermediate after a CA rotation completes, it lets a client
    /// that only trusts this (old) CA verify a server certificate `successor` signed.
    pub fn cross_sign(&self, successor: &Authority) -> Result<String, AuthorityError> {
        let successor_key = successor.own_key()?;
        let (_, successor_cert) = X509Certificate::from_der(&successor.certificate_der)
            .map_err(|_| AuthorityError::MalformedCertificate)?;
        let mut params = CertificateParams::default();
        // The successor is a CA generated here (`Authority::generate`): the same name, encoded the same way.
        params.distinguished_name = distinguished_name(&successor.common_name, None)?;
        params.subject_alt_names = ca_subject_alt_names(&successor.common_name)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = key_usages(successor_key.algorithm().is_some_and(KeyAlgorithm::is_rsa), true);
        params.serial_number = Some(random_serial());
        // Leaves name their issuer by its key identifier: it must be the successor's own.
        if let Some(id) = successor_cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
        {
            params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(id);
        }
        params.use_authority_key_identifier_extension = true;
        params.not_before = successor.not_before;
        params.not_after = successor.not_after.min(self.not_after);
        if params.not_after <= params.not_before {
            return Err(AuthorityError::Expired {
                common_name: self.common_name.clone(),
            });
        }
        let issuer = self.issuer()?;
        let cert = params
            .signed_by(successor_key.key_pair(), &issuer)
            .map_err(|e| AuthorityError::Signing(e.to_string()))?;
        Ok(pem::encode("CERTIFICATE", cert.der()))
    }

    /// The CA's key; an externally managed CA has none and signs nothing.
    fn own_key(&self) -> Result<&PrivateKey, AuthorityError> {
        self.key
            .as_ref()
            .ok_or_else(|| AuthorityError::ExternallyManaged {
                common_name: self.common_name.clone(),
            })
    }

    /// rcgen's issuer for this CA: its certificate and key.
    fn issuer(&self) -> Result<Issuer<'_, &rcgen::KeyPair>, AuthorityError> {
        Issuer::from_ca_cert_der(
            &CertificateDer::from(self.certificate_der.as_slice()),
            self.own_key()?.key_pair(),
        )
        .map_err(|e| AuthorityError::Signing(e.to_string()))
    }

    /// Checks that a PEM leaf was issued by this CA (issuer name and signature) and is
    /// valid at `now`; with `key_pem`, also that the key is the certificate's.
    pub fn verify_pem(
        &self,
        certificate_pem: &[u8],
        key_pem: Option<&[u8]>,
        now: OffsetDateTime,
    ) -> Result<(), VerifyError> {
        let der = pem::certificates(certificate_pem)
            .map_err(|p| VerifyError::Unreadable(AuthorityError::from(p).to_string()))?;
        let der = der
            .first()
            .ok_or_else(|| VerifyError::Unreadable("no certificate".into()))?;
        self.verify_der(der, now)?;
        if let Some(key_pem) = key_pem {
            let key = PrivateKey::from_pem(key_pem)?;
            let (_, cert) =
                X509Certificate::from_der(der).map_err(|_| VerifyError::Unreadable("not X.509".into()))?;
            if !key.matches_public_key(&cert.public_key().subject_public_key.data) {
                return Err(VerifyError::KeyMismatch);
            }
        }
        Ok(())
    }

    /// Checks that a DER leaf was issued by this CA and is valid at `now`.
    pub fn verify_der(&self, der: &[u8], now: OffsetDateTime) -> Result<(), VerifyError> {
        let (_, leaf) =
            X509Certificate::from_der(der).map_err(|_| VerifyError::Unreadable("not X.509".into()))?;
        let (_, ca) = X509Certificate::from_der(&self.certificate_der)
            .map_err(|_| VerifyError::Unreadable("CA is not X.509".into()))?;
        if leaf.issuer().as_raw() != ca.subject().as_raw() {
            return Err(VerifyError::IssuerMismatch {
                issuer: leaf.issuer().to_string(),
            });
        }
        leaf.verify_signature(Some(ca.public_key()))
            .map_err(|_| VerifyError::BadSignature)?;
        let not_before = leaf.validity().not_before.to_datetime();
        let not_after = leaf.validity().not_after.to_datetime();
        if now + CLOCK_SKEW_TOLERANCE < not_before {
            return Err(VerifyError::NotYetValid { not_before });
        }
        if now > not_after {
            return Err(VerifyError::Expired { not_after });
        }
        Ok(())
    }
}

/// A DER certificate as PEM.
pub fn pem_encode_certificate(der: &[u8]) -> String {
    pem::encode("CERTIFICATE", der)
}

/// A serial as lower-case hex without the sign byte DER adds (what openssl prints).
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

/// The first common name of a certificate's subject, or `""`.
pub(crate) fn common_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn distinguished_name(
    common_name: &str,
    organization: Option<&str>,
) -> Result<DistinguishedName, AuthorityError> {
    if common_name.is_empty() {
        return Err(AuthorityError::InvalidName(String::new()));
    }
    let mut dn = DistinguishedName::new();
    // Go (kubeadm) writes O before CN; keep the same order so subjects read the same.
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, common_name);
    Ok(dn)
}

fn key_usages(rsa: bool, ca: bool) -> Vec<KeyUsagePurpose> {
    let mut usages = vec![KeyUsagePurpose::DigitalSignature];
    if rsa {
        usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    if ca {
        usages.push(KeyUsagePurpose::KeyCertSign);
    }
    usages
}

/// A generated CA's subject alternative names: its common name as a DNS name, as
/// kubeadm gives every CA it creates (`DNS:kubernetes`, `DNS:front-proxy-ca`).
fn ca_subject_alt_names(common_name: &str) -> Result<Vec<SanType>, AuthorityError> {
    let ia5 = common_name
        .to_owned()
        .try_into()
        .map_err(|_| AuthorityError::InvalidName(common_name.to_owned()))?;
    Ok(vec![SanType::DnsName(ia5)])
}

fn subject_alt_names(request: &LeafRequest) -> Result<Vec<SanType>, AuthorityError> {
    let mut sans = Vec::with_capacity(request.dns_names.len() + request.ip_addresses.len());
    for name in &request.dns_names {
        let ia5 = name
            .clone()
            .try_into()
            .map_err(|_| AuthorityError::InvalidName(name.clone()))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(request.ip_addresses.iter().copied().map(SanType::IpAddress));
    Ok(sans)
}

/// A random positive 128-bit serial (RFC 5280 allows up to 20 octets).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    if bytes == [0u8; 16] {
        bytes[15] = 1;
    }
    SerialNumber::from_slice(&bytes)
}

fn offset(now: OffsetDateTime, by: Duration, forward: bool) -> Result<OffsetDateTime, AuthorityError> {
    let by = time::Duration::try_from(by).map_err(|_| AuthorityError::ValidityOutOfRange)?;
    let at = if forward {
        now.checked_add(by)
    } else {
        now.checked_sub(by)
    };
    // X.509 GeneralizedTime stops at year 9999.
    at.filter(|t| (0..=9999).contains(&t.year()))
        .ok_or(AuthorityError::ValidityOutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn params(now: OffsetDateTime) -> IssueParams {
        IssueParams {
            algorithm: KeyAlgorithm::EcdsaP256,
            now,
            ..IssueParams::new(now)
        }
    }

    #[test]
    fn generated_ca_is_a_ten_year_ca() {
        let now = now();
        let ca = Authority::generate("kubernetes", KeyAlgorithm::EcdsaP256, CA_VALIDITY, now).unwrap();
        assert_eq!(ca.common_name(), "kubernetes");
        assert!(!ca.is_externally_managed());
        assert_eq!(
            ca.not_after() - ca.not_before(),
            time::Duration::days(3650) + time::Duration::minutes(5)
        );
        let (_, cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();
        assert!(cert.is_ca());
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.digital_signature());
        assert!(cert.verify_signature(None).is_ok());
        assert!(ca.serial().len() <= 32 && !ca.serial().starts_with("00"));
        // kubeadm's CAs name themselves as their one SAN.
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(
            san.general_names,
            [x509_parser::extensions::GeneralName::DNSName("kubernetes")]
        );
    }

    #[test]
    fn adopting_a_ca_without_key_is_externally_managed() {
        let ca = Authority::generate("kubernetes", KeyAlgorithm::EcdsaP256, CA_VALIDITY, now()).unwrap();
        let external = Authority::from_pem(ca.certificate_pem().as_bytes(), None).unwrap();
        assert!(external.is_externally_managed());
        let err = external.sign(
            &LeafRequest {
                common_name: "x".into(),
                ..Default::default()
            },
            &params(now()),
        );
        assert!(matches!(err, Err(AuthorityError::ExternallyManaged { .. })));
        let blank = Authority::from_pem(ca.certificate_pem().as_bytes(), Some(b"  \n")).unwrap();
        assert!(blank.is_externally_managed());
    }

    #[test]
    fn adopting_a_ca_with_someone_elses_key_fails() {
        let a = Authority::generate("a", KeyAlgorithm::EcdsaP256, CA_VALIDITY, now()).unwrap();
        let b = Authority::generate("b", KeyAlgorithm::EcdsaP256, CA_VALIDITY, now()).unwrap();
        let err = Authority::from_pem(a.certificate_pem().as_bytes(), b.key_pem().map(str::as_bytes));
        assert_eq!(
            err.unwrap_err(),
            AuthorityError::KeyMismatch {
                common_name: "a".into()
            }
        );
    }

    #[test]
    fn a_leaf_is_not_a_ca() {
        let now = now();
        let ca = Authority::generate("kubernetes", KeyAlgorithm::EcdsaP256, CA_VALIDITY, now).unwrap();
        let leaf = ca
            .sign(
                &LeafRequest {
                    common_name: "leaf".into(),
                    ..Default::default()
                },
                &params(now),
            )
            .unwrap();
        let err = Authority::from_pem(leaf.certificate_pem.as_bytes(), None).unwrap_err();
        assert_eq!(
            err,
            AuthorityError::NotACa {
                common_name: "leaf".into()
            }
        );
    }

    #[test]
    fn leaves_verify_against_their_ca_only() {
        let now = now();
        let ca = Authority::generate("kubernetes", KeyAlgorithm::Rsa2048, CA_VALIDITY, now).unwrap();
        let other = Authority::generate("kubernetes", KeyAlgorithm::Rsa2048, CA_VALIDITY, now).unwrap();
        let leaf = ca
            .sign(
                &LeafRequest {
                    common_name: "leaf".into(),
                    usages: vec![Usage::ClientAuth],
                    ..Default::default()
                },
                &IssueParams::new(now),
            )
            .unwrap();
        let cert = leaf.certificate_pem.as_bytes();
        ca.verify_pem(cert, Some(leaf.key.pem().as_bytes()), now).unwrap();
        // Same subject name, different key: the signature check is what refuses it.
        assert_eq!(other.verify_pem(cert, None, now), Err(VerifyError::BadSignature));
        let stranger = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
        assert_eq!(
            ca.verify_pem(cert, Some(stranger.pem().as_bytes()), now),
            Err(VerifyError::KeyMismatch)
        );
        let later = now + time::Duration::days(366);
        assert!(matches!(
            ca.verify_pem(cert, None, later),
            Err(VerifyError::Expired { .. })
        ));
        // A clock ten minutes behind the issuer's still accepts it (NotBefore is only
        // backdated five minutes); one two hours behind does not.
        let skewed = now - time::Duration::minutes(10);
        ca.verify_pem(cert, None, skewed).unwrap();
        let earlier = now - time::Duration::hours(2);
        assert!(matches!(
            ca.verify_pem(cert, None, earlier),
            Err(VerifyError::NotYetValid { .. })
        ));
    }

    #[test]
    fn a_ca_outside_its_validity_is_not_valid_now_beyond_the_skew_tolerance() {
        let now = now();
        let ca = Authority::generate(
            "kubernetes",
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(3600),
            now,
        )
        .unwrap();
        ca.check_valid_at(now).unwrap();
        ca.check_valid_at(now - time::Duration::minutes(10)).unwrap();
        let expired = ca.check_valid_at(now + time::Duration::hours(2)).unwrap_err();
        assert!(expired.to_string().contains("expired at"), "{expired}");
        let early = ca.check_valid_at(now - time::Duration::hours(2)).unwrap_err();
        assert!(early.to_string().contains("not valid before"), "{early}");
    }

    #[test]
    fn leaves_never_outlive_their_ca() {
        let now = now();
        let ca =
            Authority::generate("short", KeyAlgorithm::EcdsaP256, Duration::from_secs(3600), now).unwrap();
        let leaf = ca
            .sign(
                &LeafRequest {
                    common_name: "leaf".into(),
                    ..Default::default()
                },
                &params(now),
            )
            .unwrap();
        assert_eq!(leaf.not_after, ca.not_after());
        let expired =
            Authority::generate("gone", KeyAlgorithm::EcdsaP256, Duration::from_secs(60), now).unwrap();
        let later = IssueParams {
            now: now + time::Duration::minutes(2),
            ..params(now)
        };
        let err = expired.sign(
            &LeafRequest {
                common_name: "leaf".into(),
                ..Default::default()
            },
            &later,
        );
        assert!(matches!(err, Err(AuthorityError::Expired { .. })));
    }

    #[test]
    fn serials_are_random_and_positive() {
        let a = random_serial().to_bytes();
        let b = random_serial().to_bytes();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }
}
