//! Fuzzes everything that reads Secret data from the cluster: `inspect` in both
//! lifecycles (PEM certificates and keys, kubeconfigs and their embedded credentials),
//! kubeconfig parsing, private-key and CA loading. Any panic is a bug: these run on
//! whatever a user (or a broken controller) puts into a labelled Secret.
//!
//! Input layout: up to four values separated by NUL bytes, assigned to data keys
//! that exercise the key-pairing rules (`tls.crt`/`tls.key`, a carried `ca.crt`).

#![no_main]

use kamaji::pki::{Authority, Lifecycle, PrivateKey, inspect, kubeconfig::Kubeconfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let values: Vec<&[u8]> = data.splitn(4, |b| *b == 0).collect();

    let x509_keys = ["tls.crt", "tls.key", "ca.crt", "server.crt"];
    let x509 = x509_keys.iter().copied().zip(values.iter().copied());
    if let Ok(inspection) = inspect(x509, Lifecycle::X509) {
        assert!(!inspection.certificates.is_empty());
    }

    let kubeconfig_keys = ["admin.conf", "super-admin.conf", "scheduler.conf", "admin.svc"];
    let kubeconfigs = kubeconfig_keys.iter().copied().zip(values.iter().copied());
    let _ = inspect(kubeconfigs, Lifecycle::Kubeconfig);

    if let Ok(kubeconfig) = Kubeconfig::parse(data) {
        let _ = kubeconfig.client_credentials();
        let _ = kubeconfig.current_ca_pem();
        let _ = kubeconfig.to_yaml();
    }

    let _ = PrivateKey::from_pem(data);
    let _ = Authority::from_pem(values[0], values.get(1).copied());
});
