//! A tenant CA as stored, with the rotation it may be in (the manual CA rotation
//! procedure, automated in two phases as Gardener does):
//!
//! - **settled**: one CA signs everything; after a completed rotation its
//!   certificate cross-signed by the retired CA is kept, so serving certificates
//!   can carry it as an intermediate for clients that only trust the old CA;
//! - **prepared** ([`StoredCa::prepare`]): every bundle carries both CAs; once the
//!   control plane runs with that bundle, the new CA signs client certificates and
//!   node CSRs ([`Progress::clients_move`]); the old one still signs serving
//!   certificates, so no client is refused while credentials move over;
//! - **completing** ([`Progress::serving_moves`]): serving certificates move to the
//!   new CA and carry it cross-signed by the old one, both CAs still trusted;
//! - **completed** ([`StoredCa::complete`]), once the control plane serves those:
//!   the old CA leaves every bundle and its key is dropped.
//!
//! Each step waits for the control plane to run the previous one, so a credential
//! handed out is accepted (and the server it names verifies) the moment it is
//! written. The phase is what is stored (`previous-*` keys present or not; whose
//! serving certificates the new CA signed), so an operator killed at any point
//! resumes where it was.

use time::OffsetDateTime;

use super::{
    Authority, SecretData,
    catalog::{self, AuthoritySpec, Signer},
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

/// How far one CA's prepared rotation has come, as the running control plane sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The running control plane trusts the new CA: client certificates move to it.
    pub clients_move: bool,
    /// Completion is under way: serving certificates move to the new CA.
    pub serving_moves: bool,
}

/// Certificates a CA signs, as stored: how many the new CA of a rotation signs
/// already, out of how many there are (serving ones or client ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Signed by the signing (new) CA.
    pub moved: usize,
    /// Stored.
    pub stored: usize,
}

/// Serving certificates ([`Moved::count`]).
pub type ServingMoved = Moved;

impl Moved {
    /// Counts `ca`'s serving certificates in the tenant's Secrets (`data_of` a suffix).
    pub fn count<'a>(
        spec: &AuthoritySpec,
        ca: &StoredCa,
        data_of: impl Fn(&str) -> Option<&'a SecretData>,
        now: OffsetDateTime,
    ) -> Self {
        Self::count_rows(spec, ca, data_of, now, true)
    }

    /// Counts `ca`'s client certificates (kubeconfigs included).
    pub fn count_clients<'a>(
        spec: &AuthoritySpec,
        ca: &StoredCa,
        data_of: impl Fn(&str) -> Option<&'a SecretData>,
        now: OffsetDateTime,
    ) -> Self {
        Self::count_rows(spec, ca, data_of, now, false)
    }

    fn count_rows<'a>(
        spec: &AuthoritySpec,
        ca: &StoredCa,
        data_of: impl Fn(&str) -> Option<&'a SecretData>,
        now: OffsetDateTime,
        serving: bool,
    ) -> Self {
        let signer = if spec.name == catalog::TENANT_CA.name {
            Signer::TenantCa
        } else {
            Signer::FrontProxyCa
        };
        catalog::CATALOG
            .iter()
            .filter(|row| row.signer == signer && row.is_serving() == serving)
            .filter_map(|row| certificate_of(row, data_of(row.secret_suffix)?))
            .fold(Self::default(), |count, cert| Self {
                moved: count.moved + usize::from(ca.signing.verify_pem(&cert, None, now).is_ok()),
                stored: count.stored + 1,
            })
    }

    /// The new CA signs some of them.
    pub fn underway(self) -> bool {
        self.moved > 0
    }

    /// The new CA signs every stored one (true when there are none).
    pub fn all(self) -> bool {
        self.moved == self.stored
    }
}

/// A row's certificate (PEM) in its Secret: the PEM key, or a kubeconfig's client certificate.
fn certificate_of(row: &catalog::CertificateSpec, data: &SecretData) -> Option<Vec<u8>> {
    let stored = data.get(row.certificate_key())?;
    match row.output {
        catalog::Output::Pem { .. } => Some(stored.clone()),
        catalog::Output::Kubeconfig { .. } => super::kubeconfig::Kubeconfig::parse(stored)
            .ok()?
            .client_credentials()
            .ok()?
            .into_iter()
            .next()
            .map(|c| c.certificate_pem),
    }
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

    /// The CA being replaced during a rotation, else the signing one: what signs a
    /// certificate that has not moved to the new CA yet.
    pub fn outgoing(&self) -> &Authority {
        self.previous.as_ref().unwrap_or(&self.signing)
    }

    /// The intermediate a serving certificate carries: the cross-signed certificate,
    /// once the new CA signs serving certificates and while it is valid.
    pub fn serving_chain(&self, progress: Progress, now: OffsetDateTime) -> Option<&str> {
        match (&self.previous, &self.cross_signed) {
            (None, Some((pem, not_after))) if *not_after > now => Some(pem.as_str()),
            (Some(_), Some((pem, not_after))) if progress.serving_moves && *not_after > now => {
                Some(pem.as_str())
            }
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
