//! The reconcile pipeline as a user sees it: a tenant's Secrets are known by
//! their names (stripped labels come back, the material stays), a DataStore
//! problem holds back only what depends on the DataStore, and a tenant with
//! nothing to do costs no API request.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use kamaji::api::{TenantControlPlane, tenant_control_plane::KubernetesVersionStatus};
use kube::{Api, Client};

use super::{
    lifecycle::{free_port, scrape},
    walkthrough::{TENANT, wait_for_status},
};
use crate::support::{
    Operator, TestNamespace, client, etcd_datastore, eventually, install_crds, kubectl_apply, kubectl_ok,
};

/// A Ready tenant `k8s-133` served by an operator with its metrics on `metrics_port`.
async fn provision(client: &Client, ns: &str, metrics_port: u16) -> (Operator, String) {
    install_crds(client).await;
    let (datastore, _) = etcd_datastore(client, ns, &["127.0.0.1:2379"]).await;
    let metrics = format!("127.0.0.1:{metrics_port}");
    let operator = Operator::start(ns, &["--metrics-bind-address", &metrics]);
    let manifest = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {TENANT}\nspec:\n  \
         dataStore: {datastore}\n  controlPlane:\n    deployment:\n      replicas: 2\n  kubernetes:\n    \
         version: v1.33.0\n  networkProfile:\n    port: 6443\n"
    );
    let applied = kubectl_apply(ns, &manifest);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    wait_for_status(client, ns, KubernetesVersionStatus::Ready, &operator).await;
    (operator, datastore)
}

async fn secret(client: &Client, ns: &str, suffix: &str) -> Secret {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get(&format!("{TENANT}-{suffix}"))
        .await
        .unwrap_or_else(|e| panic!("reading {TENANT}-{suffix}: {e}"))
}

fn labels(secret: &Secret) -> BTreeMap<String, String> {
    secret.metadata.labels.clone().unwrap_or_default()
}

#[tokio::test]
async fn stripped_labels_come_back_and_the_ca_sa_key_and_datastore_config_are_kept() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "labels").await;
    let (operator, _) = provision(&client, &ns.name, free_port()).await;
    let suffixes = ["ca", "sa-certificate", "datastore-config"];
    let mut before = BTreeMap::new();
    for suffix in suffixes {
        let secret = secret(&client, &ns.name, suffix).await;
        assert_eq!(labels(&secret)["kamaji.clastix.io/component"], suffix);
        before.insert(suffix, secret.data.clone());
        kubectl_ok(&[
            "label",
            "-n",
            &ns.name,
            "secret",
            &format!("{TENANT}-{suffix}"),
            "kamaji.clastix.io/project-",
            "kamaji.clastix.io/name-",
            "kamaji.clastix.io/component-",
        ]);
    }
    for suffix in suffixes {
        let restored = eventually(
            &format!("the labels of {TENANT}-{suffix}"),
            Duration::from_secs(30),
            || {
                let client = client.clone();
                let ns = ns.name.clone();
                async move {
                    let secret = secret(&client, &ns, suffix).await;
                    (labels(&secret).get("kamaji.clastix.io/name").map(String::as_str) == Some(TENANT))
                        .then_some(secret)
                }
            },
        )
        .await;
        assert_eq!(labels(&restored)["kamaji.clastix.io/project"], "kamaji");
        assert_eq!(labels(&restored)["kamaji.clastix.io/component"], suffix);
        assert_eq!(
            restored.data,
            before[suffix],
            "{suffix}: its material is the same after its labels were stripped\n{}",
            operator.log_text()
        );
    }
    let tcp = Api::<TenantControlPlane>::namespaced(client.clone(), &ns.name)
        .get(TENANT)
        .await
        .expect("tcp");
    let version = tcp
        .status
        .and_then(|s| s.kubernetes_resources)
        .and_then(|r| r.version)
        .and_then(|v| v.status);
    assert_eq!(
        version,
        Some(KubernetesVersionStatus::Ready),
        "no CA rotation was started"
    );
}

#[tokio::test]
async fn an_unreadable_datastore_does_not_hold_back_an_unrelated_rotation() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "dsproblem").await;
    let (operator, _) = provision(&client, &ns.name, free_port()).await;
    let datastore_material = |client: Client, ns: String| async move {
        let certificate = secret(&client, &ns, "datastore-certificate").await.data;
        let config = secret(&client, &ns, "datastore-config").await.data;
        (certificate, config)
    };
    let before = datastore_material(client.clone(), ns.name.clone()).await;
    // The DataStore's CA Secret goes away: the DataStore can no longer sign anything.
    kubectl_ok(&["delete", "secret", "-n", &ns.name, "etcd-ca"]);
    let name = format!("{TENANT}-api-server-certificate");
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        &name,
        "certs.kamaji.clastix.io/rotate=",
    ]);
    let stamp = eventually(
        "the API server certificate's rotation stamp",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let ns = ns.name.clone();
            async move {
                let secret = secret(&client, &ns, "api-server-certificate").await;
                let value = secret
                    .metadata
                    .annotations?
                    .get("certs.kamaji.clastix.io/rotate")?
                    .clone();
                (!value.is_empty()).then_some(value)
            }
        },
    )
    .await;
    assert!(
        stamp.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
        "rotated at an RFC 3339 time: {stamp}\n{}",
        operator.log_text()
    );
    let condition = eventually("DataStoreReady=False", Duration::from_secs(30), || {
        let client = client.clone();
        let ns = ns.name.clone();
        async move {
            let tcp = Api::<TenantControlPlane>::namespaced(client, &ns)
                .get(TENANT)
                .await
                .ok()?;
            tcp.status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "DataStoreReady" && c.status == "False")
        }
    })
    .await;
    assert!(
        condition.message.contains("etcd-ca"),
        "the condition names what is wrong: {}",
        condition.message
    );
    // Nothing lost: the tenant keeps the datastore certificate and config it has.
    assert_eq!(
        datastore_material(client.clone(), ns.name.clone()).await,
        before,
        "the datastore certificate or config changed without the DataStore CA"
    );
}

/// Requests the operator sent, other than its watches (list and watch restart
/// on their own schedule, whatever the tenants do).
fn requests_sent(port: u16) -> f64 {
    let text = scrape(port).expect("the operator serves /metrics");
    text.lines()
        .filter(|l| l.starts_with("kamaji_kube_requests_total{"))
        .filter(|l| !l.contains("verb=\"watch\"") && !l.contains("verb=\"list\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_sleeping_tenant_makes_no_api_request_for_two_minutes() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "sleeping").await;
    let port = free_port();
    let (operator, _) = provision(&client, &ns.name, port).await;
    kubectl_ok(&[
        "patch",
        "tcp",
        TENANT,
        "-n",
        &ns.name,
        "--type=merge",
        "-p",
        r#"{"spec":{"controlPlane":{"deployment":{"replicas":0}}}}"#,
    ]);
    wait_for_status(&client, &ns.name, KubernetesVersionStatus::Sleeping, &operator).await;
    // The scale-down's trailing Deployment and Pod events settle.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = requests_sent(port);
    assert!(before > 0.0, "the counter counts the provisioning's requests");
    tokio::time::sleep(Duration::from_secs(120)).await;
    let after = requests_sent(port);
    assert_eq!(
        after - before,
        0.0,
        "a sleeping tenant made API requests\n{}",
        scrape(port).unwrap_or_default()
    );
}
