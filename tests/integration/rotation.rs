//! Rotation by annotation, as the walkthrough does it with kubectl: every
//! annotated Secret re-issued in place, the RFC 3339 "rotated at" value, new
//! serials, valid chains, and exactly one new ReplicaSet per batch.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::apps::v1::ReplicaSet;
use kamaji::{
    api::{TenantControlPlane, tenant_control_plane::KubernetesVersionStatus},
    pki::kubeconfig::Kubeconfig,
};
use kube::{Api, Client, api::ListParams};

use super::walkthrough::{TENANT, provision, wait_for_status};
use crate::support::{TestNamespace, assert_chain, client, eventually, kubectl_ok, secret_value, serial};

const X509: &str = "kamaji.clastix.io/certificate_lifecycle_controller=x509";
const KUBECONFIG: &str = "kamaji.clastix.io/certificate_lifecycle_controller=kubeconfig";

/// The certificate data keys of each x509 Secret, and who signs it.
const X509_SECRETS: &[(&str, &str, &str)] = &[
    ("api-server-certificate", "apiserver.crt", "ca"),
    (
        "api-server-kubelet-client-certificate",
        "apiserver-kubelet-client.crt",
        "ca",
    ),
    (
        "front-proxy-client-certificate",
        "front-proxy-client.crt",
        "front-proxy-ca",
    ),
    ("konnectivity-certificate", "tls.crt", "ca"),
    ("datastore-certificate", "server.crt", "datastore"),
];

const KUBECONFIG_SECRETS: &[(&str, &[&str])] = &[
    (
        "admin-kubeconfig",
        &["admin.conf", "admin.svc", "super-admin.conf", "super-admin.svc"],
    ),
    ("controller-manager-kubeconfig", &["controller-manager.conf"]),
    ("scheduler-kubeconfig", &["scheduler.conf"]),
    ("konnectivity-kubeconfig", &["konnectivity-server.conf"]),
];

async fn replica_sets(client: &Client, ns: &str) -> Vec<String> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().labels(&format!("kamaji.clastix.io/name={TENANT}")))
        .await
        .expect("listing ReplicaSets");
    let mut names: Vec<String> = list.items.into_iter().filter_map(|rs| rs.metadata.name).collect();
    names.sort();
    names
}

async fn x509_serials(client: &Client, ns: &str, dir: &std::path::Path) -> BTreeMap<String, String> {
    let mut serials = BTreeMap::new();
    for (suffix, key, _) in X509_SECRETS {
        let pem = secret_value(client, ns, &format!("{TENANT}-{suffix}"), key).await;
        serials.insert(suffix.to_string(), serial(dir, &pem));
    }
    serials
}

async fn kubeconfig_serials(client: &Client, ns: &str, dir: &std::path::Path) -> BTreeMap<String, String> {
    let mut serials = BTreeMap::new();
    for (suffix, keys) in KUBECONFIG_SECRETS {
        for key in *keys {
            let raw = secret_value(client, ns, &format!("{TENANT}-{suffix}"), key).await;
            let kubeconfig = Kubeconfig::parse(&raw).expect("a kubeconfig");
            for credentials in kubeconfig
                .client_credentials()
                .expect("with a client certificate")
            {
                serials.insert(
                    format!("{suffix}/{key}"),
                    serial(dir, credentials.certificate_pem.as_ref()),
                );
            }
        }
    }
    serials
}

/// Every kubeconfig key of the tenant carries `ca` as its cluster CA and holds
/// client certificates that `openssl verify` accepts against it.
pub async fn assert_kubeconfigs_trust_and_are_signed_by(
    client: &Client,
    ns: &str,
    ca: &[u8],
    dir: &std::path::Path,
) {
    for (suffix, keys) in KUBECONFIG_SECRETS {
        for key in *keys {
            let raw = secret_value(client, ns, &format!("{TENANT}-{suffix}"), key).await;
            let kubeconfig = Kubeconfig::parse(&raw).expect("a kubeconfig");
            let carried = kubeconfig.current_ca_pem().expect("readable").expect("CA data");
            assert_eq!(carried, ca, "{suffix}/{key} carries the current CA");
            for credentials in kubeconfig.client_credentials().expect("credentials") {
                assert_chain(dir, ca, credentials.certificate_pem.as_ref(), key);
            }
        }
    }
}

/// Waits until every Secret selected by `selector` carries an RFC 3339 rotation time.
async fn wait_rotated(ns: &str, selector: &str, count: usize) -> Vec<(String, String)> {
    eventually(
        "every annotated Secret rotated",
        Duration::from_secs(90),
        || async {
            let json = kubectl_ok(&["get", "secrets", "-n", ns, "-l", selector, "-o", "json"]);
            let list: serde_json::Value = serde_json::from_str(&json).ok()?;
            let rotated: Vec<(String, String)> = list["items"]
                .as_array()?
                .iter()
                .filter_map(|item| {
                    let value = item["metadata"]["annotations"]["certs.kamaji.clastix.io/rotate"].as_str()?;
                    // An RFC 3339 time, not the empty request.
                    value.parse::<k8s_openapi::jiff::Timestamp>().ok()?;
                    Some((item["metadata"]["name"].as_str()?.to_string(), value.to_string()))
                })
                .collect();
            (rotated.len() == count).then_some(rotated)
        },
    )
    .await
}

/// Waits until the Deployment has rolled out completely and the tenant is Ready.
async fn wait_rolled_out(client: &Client, ns: &str) {
    crate::support::wait_material_rolled_out(client, ns, TENANT).await;
}

#[tokio::test]
async fn rotating_x509_secrets_by_annotation_reissues_them_in_place_with_one_rollout() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "rotate-x509").await;
    let (operator, _) = provision(&client, &ns.name).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let before = x509_serials(&client, &ns.name, dir.path()).await;
    let uids_before = kubectl_ok(&[
        "get",
        "secrets",
        "-n",
        &ns.name,
        "-l",
        X509,
        "-o",
        "jsonpath={.items[*].metadata.uid}",
    ]);
    let replica_sets_before = replica_sets(&client, &ns.name).await;

    let annotated = kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        "-l",
        X509,
        "certs.kamaji.clastix.io/rotate=",
    ]);
    assert_eq!(annotated.lines().count(), 5, "kubectl annotated: {annotated}");

    let rotated = wait_rotated(&ns.name, X509, 5).await;
    for (name, at) in &rotated {
        println!("{name} rotated at {at}");
    }
    let after = x509_serials(&client, &ns.name, dir.path()).await;
    for (suffix, serial) in &before {
        assert_ne!(&after[suffix], serial, "{suffix} kept its serial");
    }
    // In place: the same objects, never deleted and recreated.
    let uids_after = kubectl_ok(&[
        "get",
        "secrets",
        "-n",
        &ns.name,
        "-l",
        X509,
        "-o",
        "jsonpath={.items[*].metadata.uid}",
    ]);
    assert_eq!(uids_before, uids_after);

    // Chains: each leaf verifies against its CA, with openssl.
    let ca = secret_value(&client, &ns.name, &format!("{TENANT}-ca"), "ca.crt").await;
    let front_proxy_ca = secret_value(
        &client,
        &ns.name,
        &format!("{TENANT}-front-proxy-ca-certificate"),
        "front-proxy-ca.crt",
    )
    .await;
    let datastore_ca = secret_value(&client, &ns.name, "etcd-ca", "ca.crt").await;
    for (suffix, key, signer) in X509_SECRETS {
        let leaf = secret_value(&client, &ns.name, &format!("{TENANT}-{suffix}"), key).await;
        let ca = match *signer {
            "ca" => &ca,
            "front-proxy-ca" => &front_proxy_ca,
            _ => &datastore_ca,
        };
        assert_chain(dir.path(), ca, &leaf, suffix);
    }

    wait_rolled_out(&client, &ns.name).await;
    wait_for_status(&client, &ns.name, KubernetesVersionStatus::Ready, &operator).await;
    let replica_sets_after = replica_sets(&client, &ns.name).await;
    assert_eq!(
        replica_sets_after.len(),
        replica_sets_before.len() + 1,
        "one rollout for the batch: before {replica_sets_before:?}, after {replica_sets_after:?}\n{}",
        operator.log_text()
    );
}

/// The notes of the tenant's `Rotated` events (`kubectl describe tcp` shows them).
async fn rotated_notes(client: &Client, ns: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let events = api.list(&ListParams::default()).await.expect("listing events");
    events
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("Rotated")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(TENANT)
        })
        .filter_map(|e| e.note)
        .collect()
}

/// Asks for the rotation of one Secret and waits until its `Rotated` event names it.
async fn rotate_and_wait_for_its_event(client: &Client, ns: &str, suffix: &str) -> Vec<String> {
    let secret = format!("{TENANT}-{suffix}");
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        ns,
        &secret,
        "certs.kamaji.clastix.io/rotate=",
    ]);
    eventually(
        &format!("a Rotated event naming {secret}"),
        Duration::from_secs(90),
        || async {
            let notes = rotated_notes(client, ns).await;
            notes.iter().any(|n| n.contains(&secret)).then_some(notes)
        },
    )
    .await
}

#[tokio::test]
async fn two_rotations_in_a_row_are_two_events_each_naming_its_secret() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "rotate-events").await;
    let (operator, _) = provision(&client, &ns.name).await;
    rotate_and_wait_for_its_event(&client, &ns.name, "api-server-certificate").await;
    // Within the minutes in which an event series would fold a second rotation
    // into the first, keeping the first note.
    let notes = rotate_and_wait_for_its_event(&client, &ns.name, "front-proxy-client-certificate").await;
    let first = format!("{TENANT}-api-server-certificate");
    assert!(
        notes.iter().any(|n| n.contains(&first)),
        "the first rotation's event is kept: {notes:?}\n{}",
        operator.log_text()
    );
}

#[tokio::test]
async fn rotating_kubeconfig_secrets_reissues_every_key_with_one_rollout() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "rotate-kubeconfig").await;
    let (operator, _) = provision(&client, &ns.name).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let before = kubeconfig_serials(&client, &ns.name, dir.path()).await;
    assert_eq!(
        before.len(),
        7,
        "every kubeconfig key has a client certificate: {before:?}"
    );
    let replica_sets_before = replica_sets(&client, &ns.name).await;

    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        "-l",
        KUBECONFIG,
        "certs.kamaji.clastix.io/rotate=",
    ]);
    wait_rotated(&ns.name, KUBECONFIG, 4).await;
    let after = kubeconfig_serials(&client, &ns.name, dir.path()).await;
    for (key, serial) in &before {
        assert_ne!(&after[key], serial, "{key} kept its client certificate");
    }
    let ca = secret_value(&client, &ns.name, &format!("{TENANT}-ca"), "ca.crt").await;
    assert_kubeconfigs_trust_and_are_signed_by(&client, &ns.name, &ca, dir.path()).await;
    wait_rolled_out(&client, &ns.name).await;
    let replica_sets_after = replica_sets(&client, &ns.name).await;
    assert_eq!(
        replica_sets_after.len(),
        replica_sets_before.len() + 1,
        "{}",
        operator.log_text()
    );
}

#[tokio::test]
async fn rotating_the_ca_goes_through_certificate_authority_rotating_and_reissues_everything_it_signs() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "rotate-ca").await;
    let (operator, _) = provision(&client, &ns.name).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let old_ca = secret_value(&client, &ns.name, &format!("{TENANT}-ca"), "ca.crt").await;

    // A watch on the TCP records every status it passes through.
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &ns.name);
    let observed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let watch = {
        let (tcps, observed) = (tcps.clone(), observed.clone());
        tokio::spawn(async move {
            use futures::StreamExt;
            let config = kube::runtime::watcher::Config::default().fields(&format!("metadata.name={TENANT}"));
            let mut stream = std::pin::pin!(kube::runtime::watcher(tcps, config));
            while let Some(Ok(event)) = stream.next().await {
                if let kube::runtime::watcher::Event::Apply(tcp) = event {
                    let status = tcp
                        .status
                        .and_then(|s| s.kubernetes_resources)
                        .and_then(|r| r.version)
                        .and_then(|v| v.status);
                    if let Some(status) = status {
                        let mut seen = observed.lock().expect("lock");
                        if seen.last() != Some(&status.as_str().to_string()) {
                            seen.push(status.as_str().to_string());
                        }
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        &format!("{TENANT}-ca"),
        "certs.kamaji.clastix.io/rotate=",
    ]);

    eventually(
        "Ready after CertificateAuthorityRotating",
        Duration::from_secs(120),
        || async {
            let seen = observed.lock().expect("lock").clone();
            let rotating = seen.iter().position(|s| s == "CertificateAuthorityRotating")?;
            seen[rotating..].iter().any(|s| s == "Ready").then_some(())
        },
    )
    .await;
    watch.abort();
    let seen = observed.lock().expect("lock").clone();
    println!("statuses observed: {seen:?}");

    // Prepared: the bundle carries the new CA, then the old one; client certificates
    // are signed by the new CA, serving certificates still by the old one.
    let bundle = secret_value(&client, &ns.name, &format!("{TENANT}-ca"), "ca.crt").await;
    let new_ca = secret_value(&client, &ns.name, &format!("{TENANT}-ca"), "tls.crt").await;
    assert_eq!(
        bundle,
        [new_ca.clone(), old_ca.clone()].concat(),
        "new CA first, old CA kept"
    );
    for (suffix, key, _) in X509_SECRETS.iter().filter(|(_, _, signer)| *signer == "ca") {
        let leaf = secret_value(&client, &ns.name, &format!("{TENANT}-{suffix}"), key).await;
        let serving = matches!(*suffix, "api-server-certificate" | "konnectivity-certificate");
        assert_chain(dir.path(), if serving { &old_ca } else { &new_ca }, &leaf, suffix);
    }
    assert_kubeconfigs_trust_and_are_signed_by(&client, &ns.name, &bundle, dir.path()).await;

    // Completed on request: one CA; serving certificates from the new CA, carrying it
    // cross-signed by the old one, so a client trusting only the old CA still verifies them.
    kubectl_ok(&[
        "annotate",
        "tcp",
        "-n",
        &ns.name,
        TENANT,
        "certs.kamaji.clastix.io/complete-ca-rotation=",
    ]);
    eventually("the completed rotation", Duration::from_secs(120), || async {
        let ca = secret_value(&client, &ns.name, &format!("{TENANT}-ca"), "ca.crt").await;
        (ca == new_ca).then_some(())
    })
    .await;
    wait_rolled_out(&client, &ns.name).await;
    for (suffix, key, _) in X509_SECRETS.iter().filter(|(_, _, signer)| *signer == "ca") {
        let leaf = secret_value(&client, &ns.name, &format!("{TENANT}-{suffix}"), key).await;
        assert_chain(dir.path(), &new_ca, &leaf, suffix);
        if matches!(*suffix, "api-server-certificate" | "konnectivity-certificate") {
            crate::support::assert_chain_through_intermediates(
                dir.path(),
                &old_ca,
                &leaf,
                &format!("{suffix} through the cross-signed CA"),
            );
        }
    }
    assert_kubeconfigs_trust_and_are_signed_by(&client, &ns.name, &new_ca, dir.path()).await;
    let annotation = kubectl_ok(&[
        "get",
        "secret",
        "-n",
        &ns.name,
        &format!("{TENANT}-ca"),
        "-o",
        "jsonpath={.metadata.annotations.certs\\.kamaji\\.clastix\\.io/rotate}",
    ]);
    assert!(
        annotation.ends_with('Z') && annotation.contains('T'),
        "rotated-at value: {annotation:?}"
    );
    drop(operator);
}
