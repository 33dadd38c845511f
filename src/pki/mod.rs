//! Pure PKI: keys, authorities, the certificate catalog, kubeconfigs and inspection.
//!
//! Values in, values out: nothing here talks to a cluster. The reconciler calls
//! [`issue`] with a tenant's [`issue::TenantInputs`] and its CAs to get the Secret
//! data of each [`catalog`] row; the lifecycle controller calls [`inspect::inspect`]
//! on a labelled Secret to learn when it expires; `kamaji certs check-expiration`
//! renders [`expiration`] reports.

pub mod authority;
pub mod catalog;
pub mod expiration;
pub mod inspect;
pub mod issue;
pub mod keys;
pub mod kubeconfig;
mod pem;
pub mod pool;
#[cfg(test)]
mod redaction;
pub mod trust;

use std::collections::BTreeMap;

pub use authority::{Authority, AuthorityError, LeafRequest, VerifyError};
pub use catalog::{CATALOG, CertificateSpec, Lifecycle};
pub use inspect::{InspectError, Inspection, inspect};
pub use issue::{IssueError, IssueParams, Signers, TenantInputs};
pub use keys::{KeyAlgorithm, PrivateKey};
pub use trust::{Moved, Phase, Progress, ServingMoved, StoredCa};

/// A Secret's `data`: data key to raw bytes (the API's base64 is the client's business).
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// The DER of the first certificate in PEM bytes, if any.
pub fn first_certificate_der(pem_bytes: &[u8]) -> Option<Vec<u8>> {
    pem::certificates(pem_bytes).ok()?.into_iter().next()
}

/// Every certificate in PEM bytes, as DER (empty when none parse).
pub fn certificates_der(pem_bytes: &[u8]) -> Vec<Vec<u8>> {
    pem::certificates(pem_bytes).unwrap_or_default()
}
