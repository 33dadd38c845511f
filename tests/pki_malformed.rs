//! The malformed corpus (tests/fixtures/malformed): every input gives a clear error
//! naming the data key and what is wrong, never a panic, never the content.
//! Certificate/key mismatches are generated here (a fixture would need a private key).

use std::{collections::BTreeMap, path::Path};

use kamaji::pki::{
    KeyAlgorithm, Lifecycle,
    inspect::{InspectError, inspect},
    issue::{IssueParams, TenantInputs, issue_tenant},
    kubeconfig::Kubeconfig,
};
use time::OffsetDateTime;

/// Fixture file, how it is read (lifecycle, data key), the expected error reason.
const CORPUS: &[(&str, Lifecycle, &str, &str)] = &[
    (
        "truncated-no-end-line.pem",
        Lifecycle::X509,
        "tls.crt",
        "MalformedPem",
    ),
    (
        "truncated-body.pem",
        Lifecycle::X509,
        "apiserver.crt",
        "MalformedCertificate",
    ),
    ("begin-line-only.pem", Lifecycle::X509, "tls.crt", "MalformedPem"),
    ("bad-base64.pem", Lifecycle::X509, "server.crt", "MalformedPem"),
    (
        "wrong-block-public-key.pem",
        Lifecycle::X509,
        "tls.crt",
        "NotACertificate",
    ),
    (
        "wrong-block-csr.pem",
        Lifecycle::X509,
        "tls.crt",
        "NotACertificate",
    ),
    (
        "wrong-block-unknown.pem",
        Lifecycle::X509,
        "tls.crt",
        "NotACertificate",
    ),
    (
        "not-der-in-certificate-block.pem",
        Lifecycle::X509,
        "tls.crt",
        "MalformedCertificate",
    ),
    ("binary-junk.bin", Lifecycle::X509, "tls.crt", "NoPemBlock"),
    ("der-not-pem.der", Lifecycle::X509, "server.crt", "NoPemBlock"),
    ("empty.pem", Lifecycle::X509, "tls.crt", "Empty"),
    (
        "kubeconfig-without-users.yaml",
        Lifecycle::Kubeconfig,
        "admin.conf",
        "KubeconfigWithoutUsers",
    ),
    (
        "kubeconfig-users-null.yaml",
        Lifecycle::Kubeconfig,
        "admin.conf",
        "KubeconfigWithoutUsers",
    ),
    (
        "kubeconfig-token-user.yaml",
        Lifecycle::Kubeconfig,
        "scheduler.conf",
        "UserWithoutClientCertificate",
    ),
    (
        "kubeconfig-bad-base64.yaml",
        Lifecycle::Kubeconfig,
        "admin.conf",
        "InvalidBase64",
    ),
    (
        "kubeconfig-certificate-not-pem.yaml",
        Lifecycle::Kubeconfig,
        "admin.conf",
        "NoPemBlock",
    ),
    (
        "kubeconfig-not-yaml.yaml",
        Lifecycle::Kubeconfig,
        "admin.conf",
        "MalformedKubeconfig",
    ),
    (
        "kubeconfig-wrong-shape.yaml",
        Lifecycle::Kubeconfig,
        "admin.conf",
        "MalformedKubeconfig",
    ),
    (
        "kubeconfig-alias-bomb.yaml",
        Lifecycle::Kubeconfig,
        "admin.conf",
        "MalformedKubeconfig",
    ),
];

fn corpus_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/malformed"))
}

/// No base64-looking run (12+ characters) of the input appears in the message.
fn assert_no_content(message: &str, input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let base64ish = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=';
    for word in text.split(|c: char| !base64ish(c)) {
        if word.len() >= 12 {
            assert!(
                !message.contains(word),
                "error message leaks input {word:?}: {message}"
            );
        }
    }
}

#[test]
fn every_malformed_input_gives_a_clear_error() {
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "README.md")
        .collect();
    files.sort();
    let mut listed: Vec<String> = CORPUS.iter().map(|c| c.0.to_owned()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every fixture has an expectation, and every expectation a fixture"
    );

    for &(file, lifecycle, key, reason) in CORPUS {
        let bytes = std::fs::read(corpus_dir().join(file)).unwrap();
        let data = [(key, bytes.as_slice())];
        let err = inspect(data, lifecycle).expect_err(file);
        assert_eq!(err.reason(), reason, "{file}: {err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{key}: ")),
            "{file}: the error names the key: {message}"
        );
        assert_no_content(&message, &bytes);

        // Read the other way round, it must fail cleanly too.
        let other = match lifecycle {
            Lifecycle::X509 => Lifecycle::Kubeconfig,
            Lifecycle::Kubeconfig => Lifecycle::X509,
        };
        let other_key = if other == Lifecycle::X509 {
            "tls.crt"
        } else {
            "admin.conf"
        };
        let _ = inspect([(other_key, bytes.as_slice())], other);
    }
}

#[test]
fn wrong_block_type_is_named() {
    let bytes = std::fs::read(corpus_dir().join("wrong-block-public-key.pem")).unwrap();
    let err = inspect([("tls.crt", bytes.as_slice())], Lifecycle::X509).unwrap_err();
    assert_eq!(
        err,
        InspectError::NotACertificate {
            key: "tls.crt".into(),
            found_block_type: "PUBLIC KEY".into()
        }
    );
    let bytes = std::fs::read(corpus_dir().join("wrong-block-unknown.pem")).unwrap();
    let err = inspect([("tls.crt", bytes.as_slice())], Lifecycle::X509).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tls.crt: expected a CERTIFICATE block, found OPENSSH PRIVATE KEY"
    );
}

fn pki() -> kamaji::pki::issue::TenantPki {
    let tenant = TenantInputs {
        name: "t".into(),
        namespace: "ns".into(),
        port: 6443,
        service_cidr: "10.96.0.0/16".into(),
        cluster_domain: "cluster.local".into(),
        control_plane_endpoint: "10.0.0.1:6443".into(),
        ..TenantInputs::default()
    };
    let params = IssueParams {
        algorithm: KeyAlgorithm::EcdsaP256,
        ..IssueParams::new(OffsetDateTime::now_utc())
    };
    issue_tenant(&tenant, None, &params).unwrap()
}

#[test]
fn certificate_and_key_mismatch_is_caught() {
    let pki = pki();
    let apiserver = &pki.secrets["api-server-certificate"];
    let other_key = &pki.secrets["front-proxy-client-certificate"]["front-proxy-client.key"];
    let mut data: BTreeMap<&str, &[u8]> = apiserver
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    data.insert("apiserver.key", other_key);
    let err = inspect(data.clone(), Lifecycle::X509).unwrap_err();
    assert_eq!(
        err,
        InspectError::KeyMismatch {
            key: "apiserver.key".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "apiserver.key: the private key does not match the certificate"
    );

    data.insert(
        "apiserver.key",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let err = inspect(data, Lifecycle::X509).unwrap_err();
    assert_eq!(err.reason(), "MalformedPrivateKey", "{err}");

    // A kubeconfig whose client key is another user's.
    let admin = Kubeconfig::parse(&pki.secrets["admin-kubeconfig"]["admin.conf"]).unwrap();
    let scheduler = Kubeconfig::parse(&pki.secrets["scheduler-kubeconfig"]["scheduler.conf"]).unwrap();
    let mut mixed = admin.clone();
    let scheduler_user = scheduler.auth_infos[0].auth_info.as_ref().expect("a user");
    mixed.auth_infos[0]
        .auth_info
        .as_mut()
        .expect("a user")
        .client_key_data = scheduler_user.client_key_data.clone();
    let yaml = mixed.to_yaml().unwrap();
    let err = inspect([("admin.conf", yaml.as_bytes())], Lifecycle::Kubeconfig).unwrap_err();
    assert_eq!(
        err,
        InspectError::KeyMismatch {
            key: "admin.conf".into()
        }
    );
}

#[test]
fn one_bad_key_fails_the_secret_and_names_that_key() {
    let pki = pki();
    let kubeconfigs = &pki.secrets["admin-kubeconfig"];
    let junk = std::fs::read(corpus_dir().join("kubeconfig-without-users.yaml")).unwrap();
    let mut data: BTreeMap<&str, &[u8]> = kubeconfigs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    data.insert("super-admin.conf", &junk);
    let err = inspect(data, Lifecycle::Kubeconfig).unwrap_err();
    assert_eq!(
        err,
        InspectError::KubeconfigWithoutUsers {
            key: "super-admin.conf".into()
        }
    );
}

#[test]
fn truncating_good_material_anywhere_never_panics() {
    let pki = pki();
    for (suffix, lifecycle) in [
        ("api-server-certificate", Lifecycle::X509),
        ("admin-kubeconfig", Lifecycle::Kubeconfig),
    ] {
        for (key, value) in &pki.secrets[suffix] {
            for cut in (0..value.len()).step_by(7) {
                let _ = inspect([(key.as_str(), &value[..cut])], lifecycle);
            }
        }
    }
}
