//! The bodies of the fuzz targets, one function per parser family of external
//! input. A target in `fuzz_targets/` is one line calling one of these, so a
//! crash found by one target replays through the same code from `smoke.sh`.
//!
//! Every function takes whatever bytes a user (or a broken controller) could put
//! where kamaji-rs reads: Secret data, kubeconfigs, annotations, flags, the
//! tenant's CSRs and the user's JSON patches. Any panic is a bug.

use std::time::Duration;

use k8s_openapi::{
    ByteString,
    api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestStatus},
    api::core::v1::Node,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kamaji::{
    controllers::certificate_lifecycle,
    pki::{
        Authority, KeyAlgorithm, Lifecycle, PrivateKey, SecretData, StoredCa, catalog::AUTHORITIES, inspect,
        kubeconfig::Kubeconfig,
    },
    runtime::{kamaji_flags, manager},
    tenant::{kubeadm_config, node_credentials},
};
use time::OffsetDateTime;

/// Up to `n` values separated by NUL bytes: one input fills several data keys.
fn values(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |b| *b == 0).collect()
}

/// Lossy text: annotations, flags and patches are strings.
fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The PEM labels a Secret's values carry, so raw bytes reach the DER parsers
/// without the fuzzer first having to discover base64.
const PEM_LABELS: &[&str] = &[
    "CERTIFICATE",
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "PUBLIC KEY",
];

fn pem_block(label: &str, der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .filter_map(|l| std::str::from_utf8(l).ok())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
    .into_bytes()
}

/// Secret data of both lifecycles through `inspect`, kubeconfig parsing and
/// credential decoding, private-key and CA loading.
pub fn secret_values(data: &[u8]) {
    let values = values(data, 4);
    let x509_keys = ["tls.crt", "tls.key", "ca.crt", "server.crt"];
    if let Ok(inspection) = inspect(
        x509_keys.iter().copied().zip(values.iter().copied()),
        Lifecycle::X509,
    ) {
        assert!(!inspection.certificates.is_empty());
    }
    let kubeconfig_keys = ["admin.conf", "super-admin.conf", "scheduler.conf", "admin.svc"];
    let _ = inspect(
        kubeconfig_keys.iter().copied().zip(values.iter().copied()),
        Lifecycle::Kubeconfig,
    );
    kubeconfig(data);
    let _ = PrivateKey::from_pem(data);
    let _ = Authority::from_pem(values[0], values.get(1).copied());
}

/// Raw DER (certificates, keys of every encoding kamaji-rs reads) wrapped in each
/// PEM label, through every reader of certificates and keys.
pub fn der(data: &[u8]) {
    let values = values(data, 2);
    for label in PEM_LABELS {
        let block = pem_block(label, values[0]);
        let _ = PrivateKey::from_pem(&block);
        let _ = kamaji::pki::keys::public_key_raw_from_pem(&block);
        let _ = Authority::from_pem(&block, None);
        let key = values.get(1).map(|key| pem_block("PRIVATE KEY", key));
        let _ = Authority::from_pem(&block, key.as_deref());
        let pair = [
            ("tls.crt", block.as_slice()),
            ("tls.key", key.as_deref().unwrap_or_default()),
        ];
        let _ = inspect(pair.into_iter(), Lifecycle::X509);
    }
}

/// A CA Secret (signing CA, key, previous CA and key, cross-signed certificate)
/// of each authority, and what the reconciler asks of a loaded one.
pub fn ca_secret(data: &[u8]) {
    let values = values(data, 5);
    for spec in AUTHORITIES {
        let mut keys: Vec<&str> = spec.cert_keys.iter().chain(spec.key_keys).copied().collect();
        keys.extend([spec.previous_keys.0, spec.previous_keys.1]);
        keys.extend(spec.cross_signed_key);
        let secret: SecretData = keys
            .iter()
            .enumerate()
            .map(|(i, key)| (key.to_string(), values[i % values.len()].to_vec()))
            .collect();
        if let Ok(stored) = StoredCa::load(spec, &secret) {
            let _ = stored.phase();
            let _ = stored.bundle_pem();
            let _ = stored.trusted().count();
            let _ = stored.without_expired_cross_signed(OffsetDateTime::now_utc());
        }
    }
}

/// A kubeconfig as kubectl would read it (YAML or JSON), its credentials and CA.
pub fn kubeconfig(data: &[u8]) {
    if let Ok(kubeconfig) = Kubeconfig::parse(data) {
        let _ = kubeconfig.client_credentials();
        let _ = kubeconfig.current_ca_pem();
        let _ = kubeconfig.current_server();
        let _ = kubeconfig.to_yaml();
    }
}

/// The rotate annotation's value (empty, an RFC 3339 time, or anything a user
/// typed) against certificates inside and outside the deadline.
pub fn rotate_annotation(data: &[u8]) {
    let value = text(data);
    let now = OffsetDateTime::now_utc();
    let deadline = Duration::from_secs(7 * 86_400);
    for not_after in [
        now - time::Duration::days(1),
        now + time::Duration::days(3),
        now + time::Duration::days(365),
    ] {
        let _ = certificate_lifecycle::decide(not_after, now, deadline, Some(&value));
    }
}

/// Every duration and boolean flag parser (kamaji-rs's and Kamaji's syntax).
pub fn flags(data: &[u8]) {
    let value = text(data);
    let _ = kamaji_flags::go_duration(&value);
    let _ = kamaji_flags::go_bool(&value);
    let _ = manager::parse_deadline(&value);
}

/// `spec.kubernetes.kubelet.configurationJSONPatches` applied to the
/// KubeletConfiguration: a user writes them.
pub fn kubelet_patches(data: &[u8]) {
    let Ok(patches) = serde_json::from_slice::<Vec<serde_json::Value>>(data) else {
        return;
    };
    let mut config = serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        "clusterDNS": ["10.96.0.10"],
        "rotateCertificates": true,
    });
    let _ = kubeadm_config::apply_patches(&mut config, &patches);
}

/// An issued kubelet CSR in the tenant (its certificate is whatever the tenant's
/// signer wrote) observed during a CA rotation.
pub fn node_csr(data: &[u8]) {
    let values = values(data, 2);
    let Ok(signing) = fuzz_ca() else {
        return;
    };
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some("csr-fuzz".into()),
            ..ObjectMeta::default()
        },
        spec: k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec {
            signer_name: node_credentials::KUBELET_CLIENT_SIGNER.into(),
            request: ByteString(values.get(1).copied().unwrap_or_default().to_vec()),
            ..Default::default()
        },
        status: Some(CertificateSigningRequestStatus {
            certificate: Some(ByteString(values[0].to_vec())),
            ..Default::default()
        }),
    };
    let node = Node {
        metadata: ObjectMeta {
            name: Some("node-fuzz".into()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    let _ = node_credentials::observe(&[node], &[csr], signing, None, OffsetDateTime::now_utc());
}

/// One CA for the whole run: generating a key per input would drown the fuzzer.
fn fuzz_ca() -> Result<&'static Authority, ()> {
    static CA: std::sync::OnceLock<Option<Authority>> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let day = Duration::from_secs(86_400);
        Authority::generate("fuzz-ca", KeyAlgorithm::EcdsaP256, day, OffsetDateTime::now_utc()).ok()
    })
    .as_ref()
    .ok_or(())
}
