//! `kamaji certs check-expiration`: the report built from a tenant's Secrets, and from
//! a kubeadm-layout directory, rendered as kubeadm prints it.

use std::{collections::BTreeMap, path::Path};

use kamaji::{
    cli::check_expiration::{OutputFormat, pki_dir_report, render},
    pki::{
        Authority, KeyAlgorithm, Lifecycle,
        authority::CA_VALIDITY,
        catalog,
        expiration::{SecretView, tenant_report},
        issue::{IssueParams, TenantInputs, TenantPki, issue_tenant},
    },
};
use time::OffsetDateTime;

fn tenant() -> TenantInputs {
    TenantInputs {
        name: "k8s-133".into(),
        namespace: "default".into(),
        address: Some("172.18.0.2".into()),
        port: 6443,
        service_cidr: "10.96.0.0/16".into(),
        cluster_domain: "cluster.local".into(),
        control_plane_endpoint: "172.18.0.2:6443".into(),
        datastore_user: "default_k8s_133".into(),
        superseded_groups_granted: true,
        ..TenantInputs::default()
    }
}

struct Fixture {
    pki: TenantPki,
    now: OffsetDateTime,
}

fn fixture() -> Fixture {
    let now = OffsetDateTime::now_utc();
    let params = IssueParams {
        algorithm: KeyAlgorithm::EcdsaP256,
        ..IssueParams::new(now)
    };
    let datastore_ca = Authority::generate("datastore-ca", params.algorithm, CA_VALIDITY, now).unwrap();
    let pki = issue_tenant(&tenant(), Some(&datastore_ca), &params).unwrap();
    Fixture { pki, now }
}

/// The Secrets as the cluster would list them: `<tcp>-<suffix>`, labelled as the catalog says.
fn views<'a>(
    secrets: &'a BTreeMap<String, (Option<Lifecycle>, &'a kamaji::pki::SecretData)>,
) -> Vec<SecretView<'a>> {
    secrets
        .iter()
        .map(|(name, (lifecycle, data))| SecretView {
            name,
            lifecycle: *lifecycle,
            data: data.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect(),
        })
        .collect()
}

fn cluster_secrets(pki: &TenantPki) -> BTreeMap<String, (Option<Lifecycle>, &kamaji::pki::SecretData)> {
    pki.secrets
        .iter()
        .map(|(suffix, data)| {
            let lifecycle = catalog::rows_in_secret(suffix).next().map(|r| r.lifecycle);
            (format!("k8s-133-{suffix}"), (lifecycle, data))
        })
        .collect()
}

#[test]
fn a_fresh_tenant_reads_like_kubeadm() {
    let f = fixture();
    let secrets = cluster_secrets(&f.pki);
    let (report, problems) = tenant_report("k8s-133", &views(&secrets), f.now, false);
    assert!(problems.is_empty(), "{problems:?}");
    let names: Vec<&str> = report.certificates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "admin.conf",
            "admin.svc",
            "apiserver",
            "apiserver-kubelet-client",
            "controller-manager.conf",
            "datastore",
            "front-proxy-client",
            "scheduler.conf",
            "super-admin.conf",
            "super-admin.svc",
        ]
    );
    let cas: Vec<&str> = report
        .certificate_authorities
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cas, ["ca", "datastore-ca", "front-proxy-ca"]);

    let table = render(&report, OutputFormat::Table).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED"
    );
    let row = |name: &str| *lines.iter().find(|l| l.starts_with(&format!("{name} "))).unwrap();
    let cols = |line: &str| {
        line.split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(cols(row("apiserver"))[2..], ["364d", "ca", "no"]);
    assert_eq!(
        cols(row("front-proxy-client"))[2..],
        ["364d", "front-proxy-ca", "no"]
    );
    assert_eq!(cols(row("datastore"))[2..], ["364d", "datastore-ca", "no"]);
    assert!(row("apiserver").contains(" UTC "));
    assert!(lines.contains(&""));
    assert_eq!(
        lines[lines.iter().position(|l| l.is_empty()).unwrap() + 1]
            .split("   ")
            .next(),
        Some("CERTIFICATE AUTHORITY")
    );
    assert_eq!(cols(row("ca"))[2..], ["9y", "no"]);

    let json: serde_json::Value =
        serde_json::from_str(&render(&report, OutputFormat::Json).unwrap()).unwrap();
    assert_eq!(json["kind"], "CertificateExpirationInfo");
    assert_eq!(json["certificates"][2]["name"], "apiserver");
    assert_eq!(json["certificates"][2]["caName"], "ca");
    let residual = json["certificates"][2]["residualTime"].as_i64().unwrap();
    assert!((365 * 86400 - 5..=365 * 86400).contains(&residual), "{residual}");
    let yaml = render(&report, OutputFormat::Yaml).unwrap();
    assert!(
        yaml.contains("apiVersion: output.kubeadm.k8s.io/v1alpha3"),
        "{yaml}"
    );
    assert!(yaml.contains("name: front-proxy-ca"), "{yaml}");
}

#[test]
fn missing_broken_and_external_material_is_reported() {
    let f = fixture();
    let mut secrets = cluster_secrets(&f.pki);
    // No scheduler kubeconfig Secret at all.
    secrets.remove("k8s-133-scheduler-kubeconfig");
    // A CA without its key: externally managed, and so are the leaves it signed.
    let mut ca = f.pki.secrets["ca"].clone();
    ca.retain(|k, _| k.ends_with(".crt"));
    secrets.insert("k8s-133-ca".into(), (None, &ca));
    // An unreadable API server certificate.
    let mut broken = f.pki.secrets["api-server-certificate"].clone();
    broken.insert(
        "apiserver.crt".into(),
        b"-----BEGIN CERTIFICATE-----\nMIIB".to_vec(),
    );
    secrets.insert(
        "k8s-133-api-server-certificate".into(),
        (Some(Lifecycle::X509), &broken),
    );

    let (report, problems) = tenant_report("k8s-133", &views(&secrets), f.now, true);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].secret, "k8s-133-api-server-certificate");
    assert_eq!(problems[0].error.reason(), "MalformedPem");

    let table = render(&report, OutputFormat::Table).unwrap();
    assert!(
        table.lines().any(|l| l.starts_with("!MISSING! scheduler.conf")),
        "{table}"
    );
    assert!(
        !table.contains("!MISSING! apiserver"),
        "a broken Secret is a problem, not missing:\n{table}"
    );
    let row = |name: &str| report.certificates.iter().find(|c| c.name == name).unwrap();
    assert!(row("admin.conf").externally_managed);
    assert!(!row("front-proxy-client").externally_managed);
    assert!(row("datastore").externally_managed, "non-etcd DataStore");
    let ca_row = report
        .certificate_authorities
        .iter()
        .find(|c| c.name == "ca")
        .unwrap();
    assert!(ca_row.externally_managed);
}

#[test]
fn expired_certificates_show_invalid() {
    let f = fixture();
    let secrets = cluster_secrets(&f.pki);
    let later = f.now + time::Duration::days(400);
    let (report, _) = tenant_report("k8s-133", &views(&secrets), later, false);
    let table = render(&report, OutputFormat::Table).unwrap();
    let apiserver = table.lines().find(|l| l.starts_with("apiserver ")).unwrap();
    assert!(apiserver.contains("<invalid>"), "{apiserver}");
    let ca = table.lines().find(|l| l.starts_with("ca ")).unwrap();
    assert!(ca.contains(" 8y "), "{ca}");
}

/// kubeadm's layout: /etc/kubernetes/pki/{ca,apiserver,...}.crt and /etc/kubernetes/*.conf.
fn write_kubeadm_layout(root: &Path, pki: &TenantPki, with_etcd: bool) {
    let dir = root.join("pki");
    std::fs::create_dir_all(dir.join("etcd")).unwrap();
    let put = |path: &Path, bytes: &[u8]| std::fs::write(path, bytes).unwrap();
    let s = |suffix: &str, key: &str| pki.secrets[suffix][key].clone();
    put(&dir.join("ca.crt"), &s("ca", "ca.crt"));
    put(&dir.join("ca.key"), &s("ca", "ca.key"));
    put(
        &dir.join("front-proxy-ca.crt"),
        &s("front-proxy-ca-certificate", "front-proxy-ca.crt"),
    );
    put(
        &dir.join("apiserver.crt"),
        &s("api-server-certificate", "apiserver.crt"),
    );
    put(
        &dir.join("apiserver-kubelet-client.crt"),
        &s(
            "api-server-kubelet-client-certificate",
            "apiserver-kubelet-client.crt",
        ),
    );
    put(
        &dir.join("front-proxy-client.crt"),
        &s("front-proxy-client-certificate", "front-proxy-client.crt"),
    );
    if with_etcd {
        put(&dir.join("etcd/ca.crt"), &s("datastore-certificate", "ca.crt"));
        put(
            &dir.join("apiserver-etcd-client.crt"),
            &s("datastore-certificate", "server.crt"),
        );
        put(
            &dir.join("etcd/server.crt"),
            &s("datastore-certificate", "server.crt"),
        );
    }
    for key in ["admin.conf", "super-admin.conf"] {
        put(&root.join(key), &s("admin-kubeconfig", key));
    }
    put(
        &root.join("controller-manager.conf"),
        &s("controller-manager-kubeconfig", "controller-manager.conf"),
    );
    // scheduler.conf deliberately missing.
}

#[test]
fn pki_dir_mode_reads_a_kubeadm_layout_without_a_cluster() {
    let f = fixture();
    let root = tempfile::tempdir().unwrap();
    write_kubeadm_layout(root.path(), &f.pki, true);
    let (report, problems) = pki_dir_report(&root.path().join("pki"), f.now).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let table = render(&report, OutputFormat::Table).unwrap();
    let names: Vec<&str> = report.certificates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "admin.conf",
            "apiserver",
            "apiserver-etcd-client",
            "apiserver-kubelet-client",
            "controller-manager.conf",
            "etcd-healthcheck-client",
            "etcd-peer",
            "etcd-server",
            "front-proxy-client",
            "scheduler.conf",
            "super-admin.conf",
        ],
        "{table}"
    );
    assert!(table.contains("!MISSING! scheduler.conf"), "{table}");
    assert!(table.contains("!MISSING! etcd-peer"), "{table}");
    let cas: Vec<(&str, bool)> = report
        .certificate_authorities
        .iter()
        .map(|c| (c.name.as_str(), c.externally_managed))
        .collect();
    // front-proxy-ca.key and etcd/ca.key are absent: kubeadm calls those external.
    assert_eq!(cas, [("ca", false), ("etcd-ca", true), ("front-proxy-ca", true)]);
    let front_proxy = report
        .certificates
        .iter()
        .find(|c| c.name == "front-proxy-client")
        .unwrap();
    assert!(front_proxy.externally_managed);

    // External etcd (no etcd/ca.crt): no etcd rows, as kubeadm.
    let root = tempfile::tempdir().unwrap();
    write_kubeadm_layout(root.path(), &f.pki, false);
    let (report, _) = pki_dir_report(&root.path().join("pki"), f.now).unwrap();
    assert!(
        report
            .certificates
            .iter()
            .all(|c| !c.name.starts_with("etcd") && c.name != "apiserver-etcd-client")
    );
    assert!(report.certificate_authorities.iter().all(|c| c.name != "etcd-ca"));
}

#[test]
fn pki_dir_mode_reports_unreadable_files() {
    let f = fixture();
    let root = tempfile::tempdir().unwrap();
    write_kubeadm_layout(root.path(), &f.pki, false);
    std::fs::write(root.path().join("pki/apiserver.crt"), b"garbage").unwrap();
    let (_, problems) = pki_dir_report(&root.path().join("pki"), f.now).unwrap();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("apiserver.crt: no PEM block found"),
        "{problems:?}"
    );
    assert!(pki_dir_report(&root.path().join("nope"), f.now).is_err());
}

#[path = "support/mod.rs"]
mod support;

/// Cluster mode on the local cluster: the tenant's labelled Secrets (and only those)
/// are read, through the library and through the `kamaji` binary.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_mode_reads_the_tenants_secrets() {
    use k8s_openapi::{ByteString, api::core::v1::Secret};
    use kamaji::{
        api::labels,
        cli::check_expiration::{CheckExpirationArgs, report},
    };
    use kube::api::{Api, PostParams};

    let cluster = support::cluster();
    let client = support::client().await;
    let ns = support::TestNamespace::create(&client, "pki-check").await;
    let f = fixture();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let create = async |tenant: &str, suffix: &str, data: &kamaji::pki::SecretData| {
        let mut secret = Secret::default();
        secret.metadata.name = Some(format!("{tenant}-{suffix}"));
        let mut labels = BTreeMap::from([(labels::NAME.to_owned(), tenant.to_owned())]);
        if let Some(row) = catalog::rows_in_secret(suffix).next() {
            labels.insert(
                labels::CERTIFICATE_LIFECYCLE.to_owned(),
                row.lifecycle.label_value().to_owned(),
            );
        }
        secret.metadata.labels = Some(labels);
        secret.data = Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        );
        secrets.create(&PostParams::default(), &secret).await.unwrap();
    };
    for (suffix, data) in &f.pki.secrets {
        create("k8s-133", suffix, data).await;
    }
    // Another tenant in the same namespace, with an unreadable certificate: not ours to report.
    let mut junk = f.pki.secrets["api-server-certificate"].clone();
    junk.insert("apiserver.crt".into(), b"junk".to_vec());
    create("other", "api-server-certificate", &junk).await;

    let args = CheckExpirationArgs {
        tcp: Some("k8s-133".into()),
        namespace: Some(ns.name.clone()),
        output: OutputFormat::Table,
        pki_dir: None,
        kubeconfig: Some(cluster.kubeconfig.clone()),
    };
    let (report, problems) = report(&args, f.now).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(report.certificates.len(), 10);
    assert!(
        report
            .certificates
            .iter()
            .all(|c| !c.missing && !c.externally_managed)
    );
    assert_eq!(report.certificate_authorities.len(), 3);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kamaji"))
        .args([
            "certs",
            "check-expiration",
            "k8s-133",
            "-n",
            &ns.name,
            "--kubeconfig",
        ])
        .arg(&cluster.kubeconfig)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("CERTIFICATE                EXPIRES"),
        "{stdout}"
    );
    let apiserver = stdout
        .lines()
        .find(|l| l.starts_with("apiserver "))
        .expect("an apiserver row");
    assert!(
        apiserver.contains("364d") && apiserver.contains(" ca "),
        "{apiserver}"
    );

    let json = std::process::Command::new(env!("CARGO_BIN_EXE_kamaji"))
        .args([
            "certs",
            "check-expiration",
            "k8s-133",
            "-n",
            &ns.name,
            "-o",
            "json",
            "--kubeconfig",
        ])
        .arg(&cluster.kubeconfig)
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["certificateAuthorities"][0]["name"], "ca");

    // The other tenant's broken Secret is reported, and the command fails after printing.
    let other = std::process::Command::new(env!("CARGO_BIN_EXE_kamaji"))
        .args([
            "certs",
            "check-expiration",
            "other",
            "-n",
            &ns.name,
            "--kubeconfig",
        ])
        .arg(&cluster.kubeconfig)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success());
    assert!(
        stderr.contains("other-api-server-certificate: apiserver.crt: no PEM block found"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&other.stdout).contains("!MISSING! admin.conf"));
}
