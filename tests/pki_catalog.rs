//! Every catalog row, issued for a tenant, checked against DESIGN.md section 2 written
//! out literally here (not read back from the catalog): subject, SANs, usages,
//! validity, chain, Secret layout and kubeconfig contents.

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use kamaji::pki::{
    Authority, KeyAlgorithm, SecretData, StoredCa,
    authority::{CA_VALIDITY, VerifyError},
    catalog::{self, CATALOG},
    inspect::{CertificateInfo, inspect},
    issue::{self, IssueParams, Signers, Stale, TenantInputs, TenantPki, issue_tenant},
    kubeconfig::Kubeconfig,
};
use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

fn tenant() -> TenantInputs {
    TenantInputs {
        name: "k8s-133".into(),
        namespace: "tenants".into(),
        address: Some("172.18.0.2".into()),
        port: 6443,
        cert_sans: vec!["api.k8s-133.example.com".into(), "10.10.10.10".into()],
        service_cidr: "10.96.0.0/16".into(),
        cluster_domain: "cluster.local".into(),
        control_plane_endpoint: "172.18.0.2:6443".into(),
        konnectivity: true,
        datastore_user: "tenants_k8s_133".into(),
        superseded_groups_granted: true,
    }
}

/// A row of DESIGN.md's certificate table.
struct Design {
    row: &'static str,
    cn: &'static str,
    o: Option<&'static str>,
    client: bool,
    server: bool,
    ca_cn: &'static str,
}

const fn d(
    row: &'static str,
    cn: &'static str,
    o: Option<&'static str>,
    usage: &str,
    ca_cn: &'static str,
) -> Design {
    let (client, server) = match usage.as_bytes() {
        b"client" => (true, false),
        b"server" => (false, true),
        _ => (true, true),
    };
    Design {
        row,
        cn,
        o,
        client,
        server,
        ca_cn,
    }
}

const ADMINS: Option<&str> = Some("kubeadm:cluster-admins");
const MASTERS: Option<&str> = Some("system:masters");

/// DESIGN.md's certificate table: row, CN, O, usages, CA CN.
const DESIGN: &[Design] = &[
    d("apiserver", "kube-apiserver", None, "server", "kubernetes"),
    d(
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        None,
        "client",
        "kubernetes",
    ),
    d(
        "front-proxy-client",
        "front-proxy-client",
        None,
        "client",
        "front-proxy-ca",
    ),
    d("admin.conf", "kubernetes-admin", ADMINS, "client", "kubernetes"),
    d("admin.svc", "kubernetes-admin", ADMINS, "client", "kubernetes"),
    d(
        "super-admin.conf",
        "kubernetes-super-admin",
        MASTERS,
        "client",
        "kubernetes",
    ),
    d(
        "super-admin.svc",
        "kubernetes-super-admin",
        MASTERS,
        "client",
        "kubernetes",
    ),
    d(
        "controller-manager.conf",
        "system:kube-controller-manager",
        None,
        "client",
        "kubernetes",
    ),
    d(
        "scheduler.conf",
        "system:kube-scheduler",
        None,
        "client",
        "kubernetes",
    ),
    d(
        "konnectivity",
        "system:konnectivity-server",
        None,
        "client+server",
        "kubernetes",
    ),
    d(
        "konnectivity-server.conf",
        "system:konnectivity-server",
        None,
        "client",
        "kubernetes",
    ),
    d("datastore", "tenants_k8s_133", None, "client", "datastore-ca"),
];

struct Issued {
    pki: TenantPki,
    datastore_ca: Authority,
    params: IssueParams,
}

fn issue_all(algorithm: KeyAlgorithm) -> Issued {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let params = IssueParams {
        algorithm,
        ..IssueParams::new(now)
    };
    let datastore_ca = Authority::generate("datastore-ca", algorithm, CA_VALIDITY, now).unwrap();
    let pki = issue_tenant(&tenant(), Some(&datastore_ca), &params).unwrap();
    Issued {
        pki,
        datastore_ca,
        params,
    }
}

/// The row's leaf certificate (DER) and key (PEM), out of its Secret.
fn leaf(issued: &Issued, row: &str) -> (Vec<u8>, Vec<u8>, Option<Kubeconfig>) {
    let spec = catalog::find(row).unwrap();
    let data = &issued.pki.secrets[spec.secret_suffix];
    match spec.output {
        catalog::Output::Pem { cert, key, .. } => (pem_der(&data[cert]), data[key].clone(), None),
        catalog::Output::Kubeconfig { key, .. } => {
            let kc = Kubeconfig::parse(&data[key]).unwrap();
            let creds = kc.client_credentials().unwrap();
            assert_eq!(creds.len(), 1, "{row}: one user");
            (
                pem_der(&creds[0].certificate_pem),
                creds[0].key_pem.clone().unwrap(),
                Some(kc),
            )
        }
    }
}

fn pem_der(pem: &[u8]) -> Vec<u8> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

fn sans(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<IpAddr>) {
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Some(san) = cert.subject_alternative_name().unwrap() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()))
                }
                GeneralName::IPAddress(b) => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
    }
    (dns, ips)
}

fn ski(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions().find_map(|e| match e.parsed_extension() {
        x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
        _ => None,
    })
}

fn aki(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions().find_map(|e| match e.parsed_extension() {
        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(k) => {
            k.key_identifier.as_ref().map(|k| k.0.to_vec())
        }
        _ => None,
    })
}

fn check_every_row(algorithm: KeyAlgorithm) {
    let issued = issue_all(algorithm);
    let now = issued.params.now;
    assert_eq!(
        DESIGN.len(),
        CATALOG.len(),
        "every catalog row is in DESIGN.md's table"
    );
    let mut serials = BTreeSet::new();
    for &Design {
        row,
        cn,
        o,
        client,
        server,
        ca_cn,
    } in DESIGN
    {
        let (der, key_pem, kubeconfig) = leaf(&issued, row);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();

        // Subject.
        let cns: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        let os: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cns, [cn], "{row}: CN");
        assert_eq!(os, o.into_iter().collect::<Vec<_>>(), "{row}: O");
        let issuer_cn: Vec<_> = cert
            .issuer()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(issuer_cn, [ca_cn], "{row}: issuer");

        // Usages.
        let eku = cert.extended_key_usage().unwrap().expect("EKU").value;
        assert_eq!((eku.client_auth, eku.server_auth), (client, server), "{row}: EKU");
        assert!(!eku.any && eku.other.is_empty(), "{row}: no other EKU");
        let ku = cert.key_usage().unwrap().expect("key usage").value;
        assert!(ku.digital_signature(), "{row}");
        assert_eq!(
            ku.key_encipherment(),
            algorithm.is_rsa(),
            "{row}: keyEncipherment only for RSA"
        );
        assert!(!ku.key_cert_sign(), "{row}");
        let bc = cert.basic_constraints().unwrap().expect("basicConstraints").value;
        assert!(!bc.ca, "{row}: not a CA");

        // Validity: kubeadm's year, backdated five minutes.
        assert_eq!(
            cert.validity().not_before.to_datetime(),
            now - time::Duration::minutes(5),
            "{row}"
        );
        assert_eq!(
            cert.validity().not_after.to_datetime(),
            now + time::Duration::days(365),
            "{row}"
        );

        // Serial: random, positive, at most 128 bits.
        let serial = cert.raw_serial();
        assert!(serial.len() <= 17 && serial[0] & 0x80 == 0, "{row}: serial");
        assert!(serials.insert(serial.to_vec()), "{row}: serial is unique");

        // Chain: signed by the right CA (and only by it), key identifiers linked, key matches.
        let signer = match ca_cn {
            "kubernetes" => &issued.pki.ca,
            "front-proxy-ca" => &issued.pki.front_proxy_ca,
            _ => &issued.datastore_ca,
        };
        let pem = to_pem(&der);
        signer
            .verify_pem(pem.as_bytes(), Some(&key_pem), now)
            .unwrap_or_else(|e| panic!("{row}: {e}"));
        let (_, ca_cert) = X509Certificate::from_der(signer.certificate_der()).unwrap();
        assert_eq!(aki(&cert), ski(&ca_cert), "{row}: AKI is the CA's SKI");
        assert!(ski(&cert).is_some(), "{row}: SKI");
        for other in [&issued.pki.ca, &issued.pki.front_proxy_ca, &issued.datastore_ca] {
            if !std::ptr::eq(other, signer) {
                assert!(
                    other.verify_pem(pem.as_bytes(), None, now).is_err(),
                    "{row}: only its CA"
                );
            }
        }

        // SANs: the API server's list (on konnectivity's too: agents dial the tenant's
        // address beside the API server), nothing for the others.
        let (dns, ips) = sans(&cert);
        if row == "apiserver" || row == "konnectivity" {
            assert_eq!(
                dns,
                [
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                    "localhost",
                    "k8s-133",
                    "k8s-133.tenants.svc",
                    "k8s-133.tenants.svc.cluster.local",
                    "api.k8s-133.example.com",
                ]
            );
            let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
            assert_eq!(ips, ["127.0.0.1", "10.96.0.1", "172.18.0.2", "10.10.10.10"]);
        } else {
            assert!(dns.is_empty() && ips.is_empty(), "{row}: no SANs");
        }

        // Kubeconfigs: kubeadm naming, the right server, the tenant CA.
        if let Some(kc) = kubeconfig {
            let server = match row {
                "admin.conf" | "super-admin.conf" => "https://172.18.0.2:6443",
                "admin.svc" | "super-admin.svc" => "https://k8s-133.tenants.svc:6443",
                _ => "https://127.0.0.1:6443",
            };
            assert_eq!(kc.clusters.len(), 1);
            assert_eq!(kc.clusters[0].name, "k8s-133");
            let cluster = kc.clusters[0].cluster.as_ref().expect("a cluster");
            assert_eq!(cluster.server.as_deref(), Some(server), "{row}");
            assert_eq!(kc.auth_infos[0].name, cn, "{row}: user named after the CN");
            assert_eq!(
                kc.current_context.as_deref(),
                Some(format!("{cn}@k8s-133").as_str())
            );
            let context = kc.contexts[0].context.as_ref().expect("a context");
            assert_eq!(context.cluster, "k8s-133");
            assert_eq!(
                kc.current_ca_pem().unwrap().unwrap(),
                issued.pki.ca.certificate_pem().as_bytes()
            );
        }
    }
}

fn to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[test]
fn every_row_matches_design_with_rsa_2048() {
    check_every_row(KeyAlgorithm::Rsa2048);
}

#[test]
fn every_row_matches_design_with_ecdsa_p384() {
    check_every_row(KeyAlgorithm::EcdsaP384);
}

#[test]
fn secrets_hold_exactly_design_data_keys() {
    let issued = issue_all(KeyAlgorithm::EcdsaP256);
    let keys = |suffix: &str| issued.pki.secrets[suffix].keys().cloned().collect::<Vec<_>>();
    let expected: &[(&str, &[&str])] = &[
        ("ca", &["ca.crt", "ca.key", "tls.crt", "tls.key"]),
        (
            "front-proxy-ca-certificate",
            &["front-proxy-ca.crt", "front-proxy-ca.key"],
        ),
        ("sa-certificate", &["sa.key", "sa.pub"]),
        ("api-server-certificate", &["apiserver.crt", "apiserver.key"]),
        (
            "api-server-kubelet-client-certificate",
            &["apiserver-kubelet-client.crt", "apiserver-kubelet-client.key"],
        ),
        (
            "front-proxy-client-certificate",
            &["front-proxy-client.crt", "front-proxy-client.key"],
        ),
        ("datastore-certificate", &["ca.crt", "server.crt", "server.key"]),
        ("konnectivity-certificate", &["tls.crt", "tls.key"]),
        (
            "admin-kubeconfig",
            &["admin.conf", "admin.svc", "super-admin.conf", "super-admin.svc"],
        ),
        ("controller-manager-kubeconfig", &["controller-manager.conf"]),
        ("scheduler-kubeconfig", &["scheduler.conf"]),
        ("konnectivity-kubeconfig", &["konnectivity-server.conf"]),
    ];
    assert_eq!(issued.pki.secrets.len(), expected.len());
    for (suffix, want) in expected {
        assert_eq!(keys(suffix), *want, "{suffix}");
    }
    let ca = &issued.pki.secrets["ca"];
    assert_eq!(ca["ca.crt"], ca["tls.crt"]);
    assert_eq!(ca["ca.key"], ca["tls.key"]);
    assert_eq!(
        issued.pki.secrets["datastore-certificate"]["ca.crt"],
        issued.datastore_ca.certificate_pem().as_bytes()
    );
    let sa = &issued.pki.secrets["sa-certificate"];
    assert!(sa["sa.pub"].starts_with(b"-----BEGIN PUBLIC KEY-----"));
    assert!(sa["sa.key"].starts_with(b"-----BEGIN PRIVATE KEY-----"));
    issue::check_service_account(&catalog::SERVICE_ACCOUNT, sa).unwrap();
    let mut swapped = sa.clone();
    swapped.insert(
        "sa.key".into(),
        issued.pki.secrets["api-server-certificate"]["apiserver.key"].clone(),
    );
    assert_eq!(
        issue::check_service_account(&catalog::SERVICE_ACCOUNT, &swapped),
        Err(Stale::KeyMismatch { key: "sa.key".into() })
    );

    // The CAs: kubeadm's CNs, ten years, loadable back from their Secrets.
    for (spec, ca) in [
        (&catalog::TENANT_CA, &issued.pki.ca),
        (&catalog::FRONT_PROXY_CA, &issued.pki.front_proxy_ca),
    ] {
        let loaded = issue::load_authority(spec, &issued.pki.secrets[spec.secret_suffix]).unwrap();
        assert_eq!(loaded.certificate_der(), ca.certificate_der());
        assert!(!loaded.is_externally_managed());
        assert_eq!(loaded.common_name(), spec.common_name);
        assert_eq!(ca.not_after() - issued.params.now, time::Duration::days(3650));
    }
    assert_eq!(issued.pki.ca.common_name(), "kubernetes");
    assert_eq!(issued.pki.front_proxy_ca.common_name(), "front-proxy-ca");
}

#[test]
fn addon_and_datastore_rows_only_when_asked() {
    let now = OffsetDateTime::now_utc();
    let params = IssueParams {
        algorithm: KeyAlgorithm::EcdsaP256,
        ..IssueParams::new(now)
    };
    let plain = TenantInputs {
        konnectivity: false,
        ..tenant()
    };
    let pki = issue_tenant(&plain, None, &params).unwrap();
    for absent in [
        "konnectivity-certificate",
        "konnectivity-kubeconfig",
        "datastore-certificate",
    ] {
        assert!(!pki.secrets.contains_key(absent), "{absent}");
    }
    assert_eq!(pki.secrets.len(), 9);
}

#[test]
fn lifecycle_controller_reads_what_issue_wrote() {
    let issued = issue_all(KeyAlgorithm::EcdsaP256);
    for suffix in catalog::leaf_secret_suffixes() {
        let lifecycle = catalog::rows_in_secret(suffix).next().unwrap().lifecycle;
        let data = &issued.pki.secrets[suffix];
        let inspection = inspect(data.iter().map(|(k, v)| (k.as_str(), v.as_slice())), lifecycle).unwrap();
        let keys: Vec<&str> = inspection
            .certificates
            .iter()
            .map(|c: &CertificateInfo| c.data_key.as_str())
            .collect();
        let want: Vec<&str> = catalog::rows_in_secret(suffix)
            .map(|r| r.certificate_key())
            .collect();
        let mut want_sorted = want.clone();
        want_sorted.sort_unstable();
        assert_eq!(
            keys, want_sorted,
            "{suffix}: the certificates in use, never the carried ca.crt"
        );
        assert_eq!(
            inspection.not_after(),
            Some(issued.params.now + time::Duration::days(365))
        );
    }
}

#[test]
fn check_accepts_fresh_material_and_spots_what_changed() {
    let issued = issue_all(KeyAlgorithm::EcdsaP256);
    let now = issued.params.now;
    let ca = StoredCa::load(&catalog::TENANT_CA, &issued.pki.secrets["ca"]).unwrap();
    let front_proxy_ca = StoredCa::load(
        &catalog::FRONT_PROXY_CA,
        &issued.pki.secrets["front-proxy-ca-certificate"],
    )
    .unwrap();
    let signers = Signers::new(&ca, &front_proxy_ca, Some(&issued.datastore_ca));
    let data = |row: &str| &issued.pki.secrets[catalog::find(row).unwrap().secret_suffix];
    for spec in CATALOG {
        issue::check(spec, data(spec.name), &tenant(), &signers, now)
            .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
    }
    let apiserver = catalog::find("apiserver").unwrap();

    // A new certSAN or address re-issues the API server certificate.
    let more_sans = TenantInputs {
        cert_sans: vec!["new.example.com".into()],
        ..tenant()
    };
    assert_eq!(
        issue::check(apiserver, data("apiserver"), &more_sans, &signers, now),
        Err(Stale::SansChanged {
            key: "apiserver.crt".into()
        })
    );
    let moved = TenantInputs {
        address: Some("172.18.0.9".into()),
        control_plane_endpoint: "172.18.0.9:6443".into(),
        ..tenant()
    };
    assert!(issue::check(apiserver, data("apiserver"), &moved, &signers, now).is_err());
    let admin = catalog::find("admin.conf").unwrap();
    assert_eq!(
        issue::check(admin, data("admin.conf"), &moved, &signers, now),
        Err(Stale::ServerChanged {
            key: "admin.conf".into()
        })
    );

    // A new CA: leaves and kubeconfigs no longer belong.
    let new_ca = StoredCa::settled(
        Authority::generate("kubernetes", KeyAlgorithm::EcdsaP256, CA_VALIDITY, now).unwrap(),
    );
    let rotated = Signers {
        ca: &new_ca,
        ..signers
    };
    assert!(matches!(
        issue::check(apiserver, data("apiserver"), &tenant(), &rotated, now),
        Err(Stale::NotFromCurrentCa {
            reason: VerifyError::BadSignature,
            ..
        })
    ));
    assert_eq!(
        issue::check(admin, data("admin.conf"), &tenant(), &rotated, now),
        Err(Stale::CaChanged {
            key: "admin.conf".into()
        })
    );

    // Expired material is stale; a swapped key is caught.
    let later = now + time::Duration::days(366);
    assert!(matches!(
        issue::check(apiserver, data("apiserver"), &tenant(), &signers, later),
        Err(Stale::NotFromCurrentCa {
            reason: VerifyError::Expired { .. },
            ..
        })
    ));
    let mut swapped: SecretData = data("apiserver").clone();
    swapped.insert(
        "apiserver.key".into(),
        data("front-proxy-client")["front-proxy-client.key"].clone(),
    );
    assert_eq!(
        issue::check(apiserver, &swapped, &tenant(), &signers, now),
        Err(Stale::KeyMismatch {
            key: "apiserver.key".into()
        })
    );
    let mut missing = data("apiserver").clone();
    missing.remove("apiserver.key");
    assert_eq!(
        issue::check(apiserver, &missing, &tenant(), &signers, now),
        Err(Stale::Missing {
            key: "apiserver.key".into()
        })
    );
}

#[test]
fn validity_and_algorithm_are_parameters() {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let params = IssueParams {
        algorithm: KeyAlgorithm::EcdsaP256,
        validity: Duration::from_secs(600),
        ca_validity: Duration::from_secs(3600),
        now,
    };
    let pki = issue_tenant(&tenant(), None, &params).unwrap();
    assert_eq!(pki.ca.not_after(), now + time::Duration::hours(1));
    let data = &pki.secrets["api-server-certificate"];
    let der = pem_der(&data["apiserver.crt"]);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        cert.validity().not_after.to_datetime(),
        now + time::Duration::minutes(10)
    );
    assert!(data["apiserver.key"].starts_with(b"-----BEGIN PRIVATE KEY-----"));

    // Never past the issuing CA: a leaf asked for a year from a CA with an hour left.
    let long = IssueParams {
        validity: Duration::from_secs(365 * 86400),
        ..params
    };
    let pki = issue_tenant(&tenant(), None, &long).unwrap();
    let der = pem_der(&pki.secrets["api-server-certificate"]["apiserver.crt"]);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.validity().not_after.to_datetime(), pki.ca.not_after());
}
