//! Every type of this module that holds private-key bytes prints none of them
//! through `Debug`: a `?value` in a log line, a panic message or an error chain
//! must never carry a key. Each test builds the type from real keys and searches
//! its `Debug` output for the PEM header, the base64 body and the DER bytes of
//! every key it holds.

use std::collections::BTreeMap;

use base64::Engine as _;
use time::OffsetDateTime;

use super::{
    Authority, IssueParams, KeyAlgorithm, LeafRequest, PrivateKey, StoredCa, TenantInputs, catalog,
    expiration::SecretView,
    issue::issue_tenant,
    kubeconfig::{Kubeconfig, KubeconfigParams},
};

/// The forms a key could leak in: its PEM header, a run of its base64 body, its DER
/// and its PEM text as `Debug` prints a byte slice (`[48, 129, ...]`), its DER as hex.
fn leak_forms(key_pem: &str) -> Vec<String> {
    let body: String = key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .expect("a PEM body");
    let decimal = |bytes: &[u8]| bytes.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
    let hex: String = der[..16].iter().map(|b| format!("{b:02x}")).collect();
    vec![
        "PRIVATE KEY".to_string(),
        body[20..60].to_string(),
        decimal(&der[..16]),
        // The PEM text as `Debug` prints a `Vec<u8>` of it.
        decimal(&body.as_bytes()[20..36]),
        hex,
    ]
}

fn assert_hides(what: &str, debug: &str, key_pems: &[&str]) {
    assert!(!key_pems.is_empty(), "{what}: no key to look for");
    for pem in key_pems {
        for form in leak_forms(pem) {
            assert!(
                !debug.contains(&form),
                "{what} prints key material ({form:?}):\n{debug}"
            );
        }
    }
}

fn params() -> IssueParams {
    IssueParams {
        algorithm: KeyAlgorithm::EcdsaP256,
        ..IssueParams::new(OffsetDateTime::now_utc())
    }
}

fn authority(name: &str) -> Authority {
    let params = params();
    Authority::generate(name, params.algorithm, params.ca_validity, params.now).expect("a CA")
}

#[test]
fn private_keys_and_authorities_print_no_key() {
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
        let key = PrivateKey::generate_fresh(algorithm).expect("a key");
        assert_hides("PrivateKey", &format!("{key:?}"), &[key.pem()]);
    }
    let ca = authority("kubernetes");
    let key = ca.key_pem().expect("a generated CA has its key");
    assert_hides("Authority", &format!("{ca:?}"), &[key]);
    assert_hides("Authority (pretty)", &format!("{ca:#?}"), &[key]);
}

#[test]
fn an_issued_leaf_prints_no_key() {
    let ca = authority("kubernetes");
    let request = LeafRequest {
        common_name: "kube-apiserver".into(),
        ..LeafRequest::default()
    };
    let issued = ca.sign(&request, &params()).expect("a leaf");
    assert_hides("IssuedCertificate", &format!("{issued:?}"), &[issued.key.pem()]);
}

#[test]
fn a_stored_ca_in_rotation_prints_none_of_its_keys() {
    let settled = StoredCa::settled(authority("kubernetes"));
    let old_key = settled.signing.key_pem().expect("key").to_string();
    let prepared = settled
        .prepare(&catalog::TENANT_CA, &params())
        .expect("a prepared rotation");
    let new_key = prepared.signing.key_pem().expect("key").to_string();
    assert_hides("StoredCa", &format!("{prepared:?}"), &[&old_key, &new_key]);
}

/// Every private key in a tenant's Secret data.
fn keys_in(secrets: &BTreeMap<&'static str, super::SecretData>) -> Vec<String> {
    let mut keys = Vec::new();
    for value in secrets.values().flat_map(|data| data.values()) {
        let text = String::from_utf8_lossy(value);
        if text.contains("PRIVATE KEY") && text.starts_with("-----BEGIN") {
            keys.push(text.into_owned());
        }
    }
    for value in secrets.values().flat_map(|data| data.values()) {
        if let Ok(kubeconfig) = Kubeconfig::parse(value) {
            for credentials in kubeconfig.client_credentials().expect("readable credentials") {
                let key = credentials.key_pem.expect("an issued kubeconfig has its key");
                keys.push(String::from_utf8(key).expect("PEM"));
            }
        }
    }
    keys
}

#[test]
fn a_whole_tenant_pki_prints_no_key() {
    let tenant = TenantInputs {
        name: "k8s-133".into(),
        namespace: "default".into(),
        port: 6443,
        service_cidr: "10.96.0.0/16".into(),
        cluster_domain: "cluster.local".into(),
        control_plane_endpoint: "10.0.0.1:6443".into(),
        datastore_user: "default_k8s_133".into(),
        ..TenantInputs::default()
    };
    let datastore_ca = authority("etcd-ca");
    let pki = issue_tenant(&tenant, Some(&datastore_ca), &params()).expect("a tenant PKI");
    let keys = keys_in(&pki.secrets);
    // Both CAs, the SA key, every x509 leaf and every kubeconfig user.
    assert!(keys.len() >= 10, "only {} keys found", keys.len());
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_hides("TenantPki", &format!("{pki:?}"), &keys);
    assert_hides("TenantPki (pretty)", &format!("{pki:#?}"), &keys);
}

#[test]
fn kubeconfigs_their_parameters_and_credentials_print_no_key() {
    let ca = authority("kubernetes");
    let request = LeafRequest {
        common_name: "kubernetes-admin".into(),
        ..LeafRequest::default()
    };
    let issued = ca.sign(&request, &params()).expect("a leaf");
    let kubeconfig_params = KubeconfigParams {
        cluster_name: "k8s-133",
        server: "https://10.0.0.1:6443",
        ca_pem: ca.certificate_pem(),
        user: "kubernetes-admin",
        client_certificate_pem: &issued.certificate_pem,
        client_key_pem: issued.key.pem(),
    };
    let key = issued.key.pem();
    assert_hides("KubeconfigParams", &format!("{kubeconfig_params:?}"), &[key]);
    let kubeconfig = Kubeconfig::new(&kubeconfig_params);
    assert_hides("Kubeconfig", &format!("{kubeconfig:?}"), &[key]);
    let credentials = kubeconfig.client_credentials().expect("credentials");
    assert_hides("ClientCredentials", &format!("{credentials:?}"), &[key]);
}

#[test]
fn a_secret_as_the_expiry_report_reads_it_prints_no_key() {
    let ca = authority("kubernetes");
    let key = ca.key_pem().expect("key");
    let view = SecretView {
        name: "k8s-133-ca",
        lifecycle: None,
        data: BTreeMap::from([
            ("ca.crt", ca.certificate_pem().as_bytes()),
            ("ca.key", key.as_bytes()),
        ]),
    };
    let debug = format!("{view:?}");
    assert_hides("SecretView", &debug, &[key]);
    assert!(debug.contains("ca.key"), "the data keys are shown: {debug}");
}
