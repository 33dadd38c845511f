//! The generated PKI, judged by a tool nobody here wrote: `openssl verify` on every
//! leaf against its CA (with the TLS purpose its usages claim), the API server's SANs
//! as `openssl x509` prints them, subjects, and key pairs. Fails (does not skip) when
//! the `openssl` binary is missing: the CI installs it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use kamaji::pki::{
    Authority, KeyAlgorithm,
    authority::CA_VALIDITY,
    catalog::{self, CATALOG, Output, Signer, Usage},
    issue::{IssueParams, TenantInputs, issue_tenant},
    kubeconfig::Kubeconfig,
};
use time::OffsetDateTime;

fn openssl(args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl").args(args).output().unwrap_or_else(|e| {
        panic!(
            "running `openssl` failed ({e}): this test needs the openssl binary on PATH (the CI installs it)"
        )
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn openssl_ok(args: &[&str]) -> String {
    let (ok, text) = openssl(args);
    assert!(ok, "openssl {} failed:\n{text}", args.join(" "));
    text
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tenant() -> TenantInputs {
    TenantInputs {
        name: "k8s-133".into(),
        namespace: "default".into(),
        address: Some("172.18.0.2".into()),
        port: 6443,
        cert_sans: vec!["k8s-133.example.com".into(), "fd00::10".into()],
        service_cidr: "10.96.0.0/16".into(),
        cluster_domain: "cluster.local".into(),
        control_plane_endpoint: "172.18.0.2:6443".into(),
        konnectivity: true,
        datastore_user: "default_k8s_133".into(),
        superseded_groups_granted: true,
    }
}

fn verify_with_openssl(algorithm: KeyAlgorithm) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let now = OffsetDateTime::now_utc();
    let params = IssueParams {
        algorithm,
        ..IssueParams::new(now)
    };
    let datastore_ca = Authority::generate("datastore-ca", algorithm, CA_VALIDITY, now).unwrap();
    let pki = issue_tenant(&tenant(), Some(&datastore_ca), &params).unwrap();

    let ca = write(dir, "ca.crt", pki.ca.certificate_pem().as_bytes());
    let fp_ca = write(
        dir,
        "front-proxy-ca.crt",
        pki.front_proxy_ca.certificate_pem().as_bytes(),
    );
    let ds_ca = write(dir, "datastore-ca.crt", datastore_ca.certificate_pem().as_bytes());

    // The CAs are self-signed CAs.
    for (spec, path) in [(&catalog::TENANT_CA, &ca), (&catalog::FRONT_PROXY_CA, &fp_ca)] {
        let out = openssl_ok(&["verify", "-CAfile", s(path), s(path)]);
        assert!(out.contains(": OK"), "{out}");
        let bc = openssl_ok(&["x509", "-noout", "-ext", "basicConstraints", "-in", s(path)]);
        assert!(bc.contains("CA:TRUE"), "{bc}");
        let subject = openssl_ok(&["x509", "-noout", "-subject", "-in", s(path)]);
        assert_eq!(subject.trim(), format!("subject=CN = {}", spec.common_name));
        let key = write(
            dir,
            &format!("{}.key", spec.name),
            pki.secrets[spec.secret_suffix][spec.key_keys[0]].as_slice(),
        );
        assert_same_public_key(path, &key);
    }

    for spec in CATALOG {
        let data = &pki.secrets[spec.secret_suffix];
        let (cert_pem, key_pem) = match spec.output {
            Output::Pem { cert, key, .. } => (data[cert].clone(), data[key].clone()),
            Output::Kubeconfig { key, .. } => {
                let kc = Kubeconfig::parse(&data[key]).unwrap();
                let cred = kc.client_credentials().unwrap().remove(0);
                // The CA embedded in the kubeconfig is the tenant CA, byte for byte.
                assert_eq!(
                    kc.current_ca_pem().unwrap().unwrap(),
                    pki.ca.certificate_pem().as_bytes()
                );
                (cred.certificate_pem, cred.key_pem.unwrap())
            }
        };
        let cert = write(dir, &format!("{}.crt", spec.name), &cert_pem);
        let key = write(dir, &format!("{}.key", spec.name), &key_pem);
        let (signer, wrong) = match spec.signer {
            Signer::TenantCa => (&ca, &fp_ca),
            Signer::FrontProxyCa => (&fp_ca, &ca),
            Signer::DatastoreCa => (&ds_ca, &ca),
        };

        let out = openssl_ok(&["verify", "-CAfile", s(signer), s(&cert)]);
        assert_eq!(out.trim(), format!("{}: OK", s(&cert)), "{}", spec.name);
        for usage in spec.usages {
            let purpose = match usage {
                Usage::ServerAuth => "sslserver",
                Usage::ClientAuth => "sslclient",
            };
            let out = openssl_ok(&["verify", "-purpose", purpose, "-CAfile", s(signer), s(&cert)]);
            assert!(out.contains(": OK"), "{}: {purpose}: {out}", spec.name);
        }
        let (ok, out) = openssl(&["verify", "-CAfile", s(wrong), s(&cert)]);
        assert!(!ok, "{}: must not verify against another CA: {out}", spec.name);
        assert_same_public_key(&cert, &key);
    }

    // Subjects as kubeadm writes them (O before CN).
    let subject = |name: &str| {
        openssl_ok(&[
            "x509",
            "-noout",
            "-subject",
            "-in",
            s(&dir.join(format!("{name}.crt"))),
        ])
        .trim()
        .to_owned()
    };
    assert_eq!(
        subject("admin.conf"),
        "subject=O = kubeadm:cluster-admins, CN = kubernetes-admin"
    );
    assert_eq!(
        subject("super-admin.conf"),
        "subject=O = system:masters, CN = kubernetes-super-admin"
    );
    assert_eq!(
        subject("apiserver-kubelet-client"),
        "subject=CN = kube-apiserver-kubelet-client"
    );
    assert_eq!(subject("apiserver"), "subject=CN = kube-apiserver");
    assert_eq!(subject("datastore"), "subject=CN = default_k8s_133");

    // The API server's SANs, as openssl prints them.
    let sans = openssl_ok(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        s(&dir.join("apiserver.crt")),
    ]);
    let lines: Vec<&str> = sans.lines().map(str::trim).collect();
    assert_eq!(lines[0], "X509v3 Subject Alternative Name:");
    assert_eq!(
        lines[1],
        "DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, \
         DNS:kubernetes.default.svc.cluster.local, DNS:localhost, DNS:k8s-133, DNS:k8s-133.default.svc, \
         DNS:k8s-133.default.svc.cluster.local, DNS:k8s-133.example.com, IP Address:127.0.0.1, \
         IP Address:10.96.0.1, IP Address:172.18.0.2, IP Address:FD00:0:0:0:0:0:0:10"
    );

    // Leaves are not CAs and carry kubeadm's validity.
    let text = openssl_ok(&["x509", "-noout", "-text", "-in", s(&dir.join("apiserver.crt"))]);
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
    let (ok, _) = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        &(364 * 86400).to_string(),
        "-in",
        s(&dir.join("apiserver.crt")),
    ]);
    assert!(ok, "valid for at least 364 days");
    let (ok, _) = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        &(366 * 86400).to_string(),
        "-in",
        s(&dir.join("apiserver.crt")),
    ]);
    assert!(!ok, "expires within 366 days");

    // The service-account pair: sa.pub is sa.key's public key.
    let sa = &pki.secrets["sa-certificate"];
    let sa_key = write(dir, "sa.key", &sa["sa.key"]);
    let derived = openssl_ok(&["pkey", "-in", s(&sa_key), "-pubout"]);
    assert_eq!(derived.as_bytes(), sa["sa.pub"].as_slice());
}

fn assert_same_public_key(cert: &Path, key: &Path) {
    let from_cert = openssl_ok(&["x509", "-noout", "-pubkey", "-in", s(cert)]);
    let from_key = openssl_ok(&["pkey", "-pubout", "-in", s(key)]);
    assert_eq!(
        from_cert,
        from_key,
        "{} and {} are a pair",
        cert.display(),
        key.display()
    );
}

#[test]
fn openssl_accepts_every_rsa_2048_leaf() {
    verify_with_openssl(KeyAlgorithm::Rsa2048);
}

#[test]
fn openssl_accepts_every_ecdsa_p256_leaf() {
    verify_with_openssl(KeyAlgorithm::EcdsaP256);
}

#[test]
fn an_adopted_openssl_ca_with_traditional_keys_signs_leaves_openssl_accepts() {
    // kubeadm writes PKCS#1 "RSA PRIVATE KEY" and SEC1 "EC PRIVATE KEY"; adopt both.
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    for name in ["rsa", "ec"] {
        let key = dir.join(format!("{name}-ca.key"));
        if name == "rsa" {
            openssl_ok(&["genrsa", "-traditional", "-out", s(&key), "2048"]);
        } else {
            openssl_ok(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                s(&key),
            ]);
        }
        let key_pem = std::fs::read(&key).unwrap();
        let label = if name == "rsa" {
            "RSA PRIVATE KEY"
        } else {
            "EC PRIVATE KEY"
        };
        assert!(
            String::from_utf8_lossy(&key_pem).contains(label),
            "{name}: traditional encoding"
        );
        let cert = dir.join(format!("{name}-ca.crt"));
        openssl_ok(&[
            "req",
            "-x509",
            "-new",
            "-key",
            s(&key),
            "-subj",
            "/O=Example Org/CN=external-ca",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,digitalSignature",
            "-out",
            s(&cert),
        ]);
        let ca = Authority::from_pem(&std::fs::read(&cert).unwrap(), Some(&key_pem)).unwrap();
        assert!(!ca.is_externally_managed());
        assert_eq!(
            ca.key_pem().unwrap().as_bytes(),
            key_pem.as_slice(),
            "{name}: the key keeps its encoding"
        );
        let now = OffsetDateTime::now_utc();
        let leaf = ca
            .sign(
                &kamaji::pki::LeafRequest {
                    common_name: "system:kube-scheduler".into(),
                    usages: vec![Usage::ClientAuth],
                    ..Default::default()
                },
                &IssueParams {
                    algorithm: KeyAlgorithm::EcdsaP256,
                    ..IssueParams::new(now)
                },
            )
            .unwrap();
        let leaf_path = write(dir, &format!("{name}-leaf.crt"), leaf.certificate_pem.as_bytes());
        // The issuer name is re-encoded from the CA's subject: openssl (and Go) must chain it.
        let out = openssl_ok(&[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            s(&cert),
            s(&leaf_path),
        ]);
        assert!(out.contains(": OK"), "{name}: {out}");
        // Capped at the CA's 30 days.
        assert_eq!(leaf.not_after, ca.not_after());
        let issuer = openssl_ok(&["x509", "-noout", "-issuer", "-in", s(&leaf_path)]);
        assert_eq!(issuer.trim(), "issuer=O = Example Org, CN = external-ca");
    }
}

#[test]
fn openssl_reads_rsa_4096_and_ecdsa_p384_keys() {
    // Key generation for the bigger algorithms, checked through openssl's key parser.
    let dir = tempfile::tempdir().unwrap();
    for algorithm in [
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::EcdsaP384,
    ] {
        let key = kamaji::pki::PrivateKey::generate(algorithm).unwrap();
        let path = write(dir.path(), &format!("{algorithm}.key"), key.pem().as_bytes());
        let text = openssl_ok(&["pkey", "-noout", "-text", "-in", s(&path)]);
        let want = match algorithm {
            KeyAlgorithm::Rsa3072 => "3072 bit",
            KeyAlgorithm::Rsa4096 => "4096 bit",
            _ => "NIST CURVE: P-384",
        };
        assert!(
            text.contains(want),
            "{algorithm}: {}",
            text.lines().next().unwrap_or_default()
        );
    }
}
