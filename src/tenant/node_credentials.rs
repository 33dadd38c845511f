//! Which worker nodes hold a kubelet client certificate from the new CA during a
//! CA rotation, observed in the tenant (pure). The kubelet renews its client
//! certificate through a CSR (`kubernetes.io/kube-apiserver-client-kubelet`) that
//! the tenant's controller-manager signs with the signing CA; an issued CSR whose
//! certificate verifies against the new CA shows the node moved over. Issued CSRs
//! are garbage-collected after an hour, so what was seen is kept in the status
//! (`renewed`) for as long as the same CA signs.

use std::collections::BTreeSet;

use k8s_openapi::api::{certificates::v1::CertificateSigningRequest, core::v1::Node};
use kube::ResourceExt;
use time::OffsetDateTime;

use crate::{api::rotation::NodeCredentials, pki::Authority};

/// The signer of kubelet client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Kubelet client certificates are `CN=system:node:<node name>`.
const NODE_USER_PREFIX: &str = "system:node:";

/// The nodes' state for the rotation whose signing CA is `signing`.
pub fn observe(
    nodes: &[Node],
    csrs: &[CertificateSigningRequest],
    signing: &Authority,
    previous: Option<&NodeCredentials>,
    now: OffsetDateTime,
) -> NodeCredentials {
    let names: BTreeSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    let mut renewed: BTreeSet<String> = previous
        .filter(|p| p.signing_ca_serial == signing.serial())
        .map(|p| p.renewed.iter().cloned().collect())
        .unwrap_or_default();
    renewed.extend(csrs.iter().filter_map(|csr| renewed_node(csr, signing, now)));
    renewed.retain(|name| names.contains(name));
    let pending = names.difference(&renewed).cloned().collect();
    NodeCredentials {
        signing_ca_serial: signing.serial().to_string(),
        renewed: renewed.into_iter().collect(),
        pending,
    }
}

/// The node an issued kubelet client CSR was for, if the CA signed its certificate.
fn renewed_node(csr: &CertificateSigningRequest, signing: &Authority, now: OffsetDateTime) -> Option<String> {
    if csr.spec.signer_name != KUBELET_CLIENT_SIGNER {
        return None;
    }
    let issued = csr.status.as_ref()?.certificate.as_ref()?;
    let der = crate::pki::first_certificate_der(&issued.0)?;
    signing.verify_der(&der, now).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    common_name.strip_prefix(NODE_USER_PREFIX).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        ByteString,
        api::certificates::v1::{CertificateSigningRequestSpec, CertificateSigningRequestStatus},
    };

    use super::*;
    use crate::pki::{IssueParams, KeyAlgorithm, LeafRequest, catalog::Usage};

    fn ca(now: OffsetDateTime) -> Authority {
        Authority::generate(
            "kubernetes",
            KeyAlgorithm::EcdsaP256,
            std::time::Duration::from_secs(3600 * 24),
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn node(name: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n
    }

    fn csr(ca: &Authority, node: &str, now: OffsetDateTime) -> CertificateSigningRequest {
        let mut params = IssueParams::new(now);
        params.algorithm = KeyAlgorithm::EcdsaP256;
        let issued = ca
            .sign(
                &LeafRequest {
                    common_name: format!("system:node:{node}"),
                    organization: Some("system:nodes".into()),
                    usages: vec![Usage::ClientAuth],
                    dns_names: vec![],
                    ip_addresses: vec![],
                },
                &params,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                signer_name: KUBELET_CLIENT_SIGNER.into(),
                ..Default::default()
            },
            status: Some(CertificateSigningRequestStatus {
                certificate: Some(ByteString(issued.certificate_pem.into_bytes())),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_is_renewed_once_a_csr_signed_by_the_new_ca_was_issued_for_it() {
        let now = OffsetDateTime::now_utc();
        let (old, new) = (ca(now), ca(now));
        let nodes = [node("a"), node("b"), node("c")];
        let csrs = [csr(&old, "a", now), csr(&new, "b", now)];
        let seen = observe(&nodes, &csrs, &new, None, now);
        assert_eq!(seen.renewed, ["b"]);
        assert_eq!(seen.pending, ["a", "c"]);
        assert_eq!(seen.signing_ca_serial, new.serial());

        // The CSR of b is gone (garbage-collected); what was seen is kept, a's renewal adds.
        let later = observe(&nodes, &[csr(&new, "a", now)], &new, Some(&seen), now);
        assert_eq!(later.renewed, ["a", "b"]);
        assert_eq!(later.pending, ["c"]);

        // Another rotation starts over; a deleted node is forgotten.
        let next = ca(now);
        let other = observe(&nodes[..2], &[], &next, Some(&later), now);
        assert!(other.renewed.is_empty());
        assert_eq!(other.pending, ["a", "b"]);
    }
}
