use time::OffsetDateTime;

use super::*;
use crate::pki::{
    KeyAlgorithm,
    catalog::{FRONT_PROXY_CA, TENANT_CA},
};

fn params() -> IssueParams {
    let mut params = IssueParams::new(OffsetDateTime::now_utc());
    params.algorithm = KeyAlgorithm::EcdsaP256;
    params
}

fn settled() -> StoredCa {
    StoredCa::settled(generate_authority(&TENANT_CA, &params()).unwrap_or_else(|e| panic!("{e}")))
}

fn reloaded(ca: &StoredCa, spec: &AuthoritySpec) -> StoredCa {
    StoredCa::load(spec, &ca.secret_data(spec)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn prepare_keeps_the_old_ca_trusted_and_signing_servers_and_cross_signs_the_new_one() {
    let old = settled();
    let old_serial = old.signing.serial().to_string();
    let prepared = old
        .prepare(&TENANT_CA, &params())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(prepared.phase(), Phase::Prepared);
    assert_ne!(prepared.signing.serial(), old_serial);
    assert_eq!(prepared.outgoing().serial(), old_serial);
    let bundle = crate::pki::certificates_der(prepared.bundle_pem().as_bytes());
    assert_eq!(bundle.len(), 2, "signing CA, then the old one");
    assert_eq!(bundle[0], prepared.signing.certificate_der());

    // The cross-signed certificate is the new CA (same subject and key) issued by the old one.
    let (cross, _) = prepared
        .cross_signed
        .as_ref()
        .unwrap_or_else(|| panic!("cross-signed"));
    let previous = prepared.previous.as_ref().unwrap_or_else(|| panic!("previous"));
    previous
        .verify_pem(cross.as_bytes(), None, OffsetDateTime::now_utc())
        .unwrap_or_else(|e| panic!("the old CA signed it: {e}"));
    let adopted = Authority::from_pem(cross.as_bytes(), prepared.signing.key_pem().map(str::as_bytes))
        .unwrap_or_else(|e| panic!("a CA with the new key: {e}"));
    assert_eq!(adopted.common_name(), prepared.signing.common_name());
    assert_eq!(
        prepared.serving_chain(Progress::default(), OffsetDateTime::now_utc()),
        None,
        "no chain before completion"
    );
    let completing = Progress {
        clients_move: true,
        serving_moves: true,
    };
    assert_eq!(
        prepared.serving_chain(completing, OffsetDateTime::now_utc()),
        Some(cross.as_str()),
        "serving certificates the new CA signs carry it cross-signed"
    );

    let again = reloaded(&prepared, &TENANT_CA);
    assert_eq!(
        again.phase(),
        Phase::Prepared,
        "the phase is what the Secret holds"
    );
    assert_eq!(again.signing.serial(), prepared.signing.serial());
    assert_eq!(
        again.layout_differs(&TENANT_CA, &prepared.secret_data(&TENANT_CA)),
        None
    );
}

#[test]
fn complete_retires_the_old_ca_and_serves_the_cross_signed_intermediate() {
    let prepared = settled()
        .prepare(&TENANT_CA, &params())
        .unwrap_or_else(|e| panic!("{e}"));
    let prepared_data = prepared.secret_data(&TENANT_CA);
    let completed = prepared.complete();
    assert_eq!(completed.phase(), Phase::Settled);
    let data = completed.secret_data(&TENANT_CA);
    assert!(!data.contains_key("previous-ca.crt") && !data.contains_key("previous-ca.key"));
    assert_eq!(crate::pki::certificates_der(&data["ca.crt"]).len(), 1);
    assert!(data.contains_key("cross-signed-ca.crt"));
    assert!(
        completed
            .serving_chain(Progress::default(), OffsetDateTime::now_utc())
            .is_some()
    );
    assert_eq!(
        completed.layout_differs(&TENANT_CA, &prepared_data).as_deref(),
        Some("ca.crt, previous-ca.crt, previous-ca.key"),
        "a stored prepared Secret differs from the completed one"
    );
    let later = OffsetDateTime::now_utc() + time::Duration::days(365 * 20);
    assert!(
        completed
            .without_expired_cross_signed(later)
            .cross_signed
            .is_none()
    );
}

#[test]
fn the_front_proxy_ca_rotates_without_a_cross_signed_certificate() {
    let ca =
        StoredCa::settled(generate_authority(&FRONT_PROXY_CA, &params()).unwrap_or_else(|e| panic!("{e}")));
    let prepared = ca
        .prepare(&FRONT_PROXY_CA, &params())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(prepared.cross_signed.is_none());
    let data = prepared.secret_data(&FRONT_PROXY_CA);
    assert!(data.contains_key("previous-front-proxy-ca.crt"));
    assert_eq!(crate::pki::certificates_der(&data["front-proxy-ca.crt"]).len(), 2);
}

#[test]
fn a_settled_secret_missing_tls_crt_is_rewritten_not_replaced() {
    let ca = settled();
    let mut data = ca.secret_data(&TENANT_CA);
    data.remove("tls.crt");
    assert_eq!(ca.layout_differs(&TENANT_CA, &data).as_deref(), Some("tls.crt"));
}
