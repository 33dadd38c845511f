//! A tenant CA as stored, with the rotation it may be in (the manual CA rotation
//! procedure, automated in two phases as Gardener does):
//!
//! - **settled**: one CA signs everything; after a completed rotation its
//!   certificate cross-signed by the retired CA is kept, so serving certificates
//!   can carry it as an intermediate for clients that only trust the old CA;
//! - **prepared** ([`StoredCa::prepare`]): a new CA signs client certificates and
//!   node CSRs, the old one still signs serving certificates, and every bundle
//!   carries both, so no client is refused while credentials move over;
//! - **completed** ([`StoredCa::complete`]): the old CA leaves every bundle and
//!   its key is dropped; serving certificates move to the new CA.
//!
//! The phase is what the Secret holds (`previous-*` keys present or not), so an
//! operator killed at any point resumes where it was: each phase change is one
//! Secret write.

use time::OffsetDateTime;

use super::{
    Authority, SecretData,
    catalog::AuthoritySpec,
    issue::{IssueError, IssueParams, generate_authority},
    pem,
};

/// A CA Secret's content.
#[derive(Debug)]
pub struct StoredCa {
    /// The CA that signs client certificates (and everything once settled).
    pub signing: Authority,
    /// During a rotation: the CA being replaced, still trusted and signing serving certificates.
    pub previous: Option<Authority>,
    /// The signing CA's certificate issued by the CA it replaced (PEM) and its NotAfter.
    pub cross_signed: Option<(String, OffsetDateTime)>,
}

/// Where a CA is in its rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// One CA.
    Settled,
    /// Old and new CA side by side.
    Prepared,
}

impl StoredCa {
    /// A CA that is not rotating.
    pub fn settled(signing: Authority) -> Self {
        Self {
            signing,
            previous: None,
            cross_signed: None,
        }
    }

    /// Reads a CA Secret: the signing CA from the bundle key's first certificate and
    /// the key; the previous CA and the cross-signed certificate when present.
    pub fn load(spec: &AuthoritySpec, data: &SecretData) -> Result<Self, IssueError> {
        let signing = super::issue::load_authority(spec, data)?;
        let (previous_cert, previous_key) = spec.previous_keys;
        let previous = match data.get(previous_cert) {
            None => None,
            Some(cert) => Some(
                Authority::from_pem(cert, data.get(previous_key).map(Vec::as_slice)).map_err(|source| {
                    IssueError::Authority {
                        row: spec.name,
                        source,
                    }
                })?,
            ),
        };
        let cross_signed = spec
            .cross_signed_key
            .and_then(|key| data.get(key))
            .and_then(|pem_bytes| {
                let der = pem::certificates(pem_bytes).ok()?.into_iter().next()?;
                let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
                let not_after = cert.validity().not_after.to_datetime();
                Some((pem::encode("CERTIFICATE", &der), not_after))
            });
        Ok(Self {
            signing,
            previous,
            cross_signed,
        })
    }

    /// Where the rotation is.
    pub fn phase(&self) -> Phase {
        if self.previous.is_some() {
            Phase::Prepared
        } else {
            Phase::Settled
        }
    }

    /// Prepare: a new CA signs from now on, this one stays trusted (and signs serving
    /// certificates) until [`StoredCa::complete`]. The new CA is cross-signed by this
    /// one where the spec keeps a cross-signed certificate.
    pub fn prepare(self, spec: &AuthoritySpec, params: &IssueParams) -> Result<Self, IssueError> {
        let next = generate_authority(spec, params)?;
        let cross_signed = match spec.cross_signed_key {
            Some(_) => {
                let pem = self
                    .signing
                    .cross_sign(&next)
                    .map_err(|source| IssueError::Authority {
                        row: spec.name,
                        source,
                    })?;
                Some((pem, next.not_after().min(self.signing.not_after())))
            }
            None => None,
        };
        Ok(Self {
            signing: next,
            previous: Some(self.signing),
            cross_signed,
        })
    }

    /// Complete: the previous CA is retired (dropped from the bundle, its key deleted).
    pub fn complete(self) -> Self {
        Self {
            previous: None,
            ..self
        }
    }

    /// Drops the cross-signed certificate once it has expired: it verifies nothing any more.
    pub fn without_expired_cross_signed(self, now: OffsetDateTime) -> Self {
        let cross_signed = self.cross_signed.filter(|(_, not_after)| *not_after > now);
        Self { cross_signed, ..self }
    }

    /// The CAs a client must trust now: the signing one, then the one it replaces.
    pub fn trusted(&self) -> impl Iterator<Item = &Authority> {
        std::iter::once(&self.signing).chain(self.previous.as_ref())
    }

    /// The trust bundle (PEM): every CA in [`StoredCa::trusted`].
    pub fn bundle_pem(&self) -> String {
        self.trusted().map(Authority::certificate_pem).collect()
    }

    /// The CA that signs serving certificates: the old one until completion, so a
    /// client that only knows it keeps verifying the server.
    pub fn serving_signer(&self) -> &Authority {
        self.previous.as_ref().unwrap_or(&self.signing)
    }

    /// The intermediate a serving certificate carries: the cross-signed certificate,
    /// once the rotation is complete and while it is valid.
    pub fn serving_chain(&self, now: OffsetDateTime) -> Option<&str> {
        match (&self.previous, &self.cross_signed) {
            (None, Some((pem, not_after))) if *not_after > now => Some(pem.as_str()),
            _ => None,
        }
    }

    /// The intermediate a certificate presented to worker nodes carries: the
    /// cross-signed certificate from the start of a rotation on (the certificate is
    /// then signed by the new CA, which nodes may not trust yet), while it is valid.
    pub fn node_chain(&self, now: OffsetDateTime) -> Option<&str> {
        match &self.cross_signed {
            Some((pem, not_after)) if *not_after > now => Some(pem.as_str()),
            _ => None,
        }
    }

    /// The Secret data for this state.
    pub fn secret_data(&self, spec: &AuthoritySpec) -> SecretData {
        let mut data = SecretData::new();
        for (index, key) in spec.cert_keys.iter().enumerate() {
            let value = if index == 0 {
                self.bundle_pem()
            } else {
                self.signing.certificate_pem().to_owned()
            };
            data.insert((*key).to_owned(), value.into_bytes());
        }
        if let Some(pem) = self.signing.key_pem() {
            for key in spec.key_keys {
                data.insert((*key).to_owned(), pem.as_bytes().to_vec());
            }
        }
        if let Some(previous) = &self.previous {
            let (cert, key) = spec.previous_keys;
            data.insert(cert.to_owned(), previous.certificate_pem().as_bytes().to_vec());
            if let Some(pem) = previous.key_pem() {
                data.insert(key.to_owned(), pem.as_bytes().to_vec());
            }
        }
        if let (Some(key), Some((pem, _))) = (spec.cross_signed_key, &self.cross_signed) {
            data.insert(key.to_owned(), pem.as_bytes().to_vec());
        }
        data
    }

    /// The data keys of `stored` that differ from what this state writes (the bundle
    /// lacks a CA, `tls.crt` is missing, a stray `previous-*` key, ...): the Secret is
    /// rewritten, the CA kept. Certificates are compared as certificates; a key only
    /// has to be present (the signing key was checked against its certificate on load,
    /// and re-encoding it would roll the control plane for nothing).
    pub fn layout_differs(&self, spec: &AuthoritySpec, stored: &SecretData) -> Option<String> {
        let wanted = self.secret_data(spec);
        let is_key = |key: &str| spec.key_keys.contains(&key) || key == spec.previous_keys.1;
        let differing: Vec<&str> = wanted
            .iter()
            .filter(|(key, value)| match stored.get(*key) {
                None => true,
                Some(_) if is_key(key) => false,
                Some(bytes) => !same_certificates(bytes, value),
            })
            .map(|(key, _)| key.as_str())
            .chain(
                stored
                    .keys()
                    .filter(|key| is_rotation_key(spec, key) && !wanted.contains_key(*key))
                    .map(String::as_str),
            )
            .collect();
        (!differing.is_empty()).then(|| differing.join(", "))
    }
}

/// Keys only a rotation writes: a stray one is removed when the rotation is not on.
fn is_rotation_key(spec: &AuthoritySpec, key: &str) -> bool {
    key == spec.previous_keys.0 || key == spec.previous_keys.1 || Some(key) == spec.cross_signed_key
}

/// The same certificates, whatever the PEM line wrapping.
fn same_certificates(stored: &[u8], wanted: &[u8]) -> bool {
    stored == wanted
        || matches!(
            (pem::certificates(stored), pem::certificates(wanted)),
            (Ok(a), Ok(b)) if !a.is_empty() && a == b
        )
}

#[cfg(test)]
mod tests;
