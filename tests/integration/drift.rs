//! Drift and idempotence: the reconciler converges on what the tenant needs
//! from whatever is stored, writes nothing when nothing changed, never replaces
//! a CA it cannot read without an explicit rotate, honours the paused
//! annotation (killed in the middle of a CA rotation: `ca_rotation.rs`).

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Secret, Service},
};
use kamaji::api::{TenantControlPlane, tenant_control_plane::KubernetesVersionStatus};
use kube::{Api, Client, api::ListParams};

use super::walkthrough::{TENANT, provision, wait_for_status};
use crate::support::{TestNamespace, assert_chain, client, eventually, kubectl_ok, openssl, secret_value};

async fn resource_versions(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    let selector = format!("kamaji.clastix.io/name={TENANT}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for s in secrets
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list secrets")
        .items
    {
        versions.insert(
            format!("secret/{}", s.metadata.name.unwrap_or_default()),
            s.metadata.resource_version.unwrap_or_default(),
        );
    }
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(TENANT)
        .await
        .expect("deployment");
    versions.insert(
        "deployment".into(),
        d.metadata.resource_version.unwrap_or_default(),
    );
    let s = Api::<Service>::namespaced(client.clone(), ns)
        .get(TENANT)
        .await
        .expect("service");
    versions.insert("service".into(), s.metadata.resource_version.unwrap_or_default());
    let t = Api::<TenantControlPlane>::namespaced(client.clone(), ns)
        .get(TENANT)
        .await
        .expect("tcp");
    versions.insert(
        "tenantcontrolplane".into(),
        t.metadata.resource_version.unwrap_or_default(),
    );
    versions
}

#[tokio::test]
async fn with_nothing_changing_no_object_moves_for_a_minute() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "idempotence").await;
    let (operator, _) = provision(&client, &ns.name).await;
    // Let the first rollout's trailing events settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = resource_versions(&client, &ns.name).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = resource_versions(&client, &ns.name).await;
    assert_eq!(
        before,
        after,
        "objects were rewritten with nothing changing\n{}",
        operator.log_text()
    );
}

fn san_of(dir: &std::path::Path, pem: &[u8]) -> String {
    let file = dir.join("apiserver.crt");
    std::fs::write(&file, pem).expect("write");
    openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-ext".as_ref(),
        "subjectAltName".as_ref(),
        "-in".as_ref(),
        file.as_os_str(),
    ])
}

#[tokio::test]
async fn cert_sans_change_deleted_and_corrupted_leaves_are_reissued() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "drift").await;
    let (operator, _) = provision(&client, &ns.name).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let apiserver = format!("{TENANT}-api-server-certificate");

    // certSANs: a new name reaches the serving certificate.
    kubectl_ok(&[
        "patch",
        "tcp",
        TENANT,
        "-n",
        &ns.name,
        "--type=merge",
        "-p",
        r#"{"spec":{"networkProfile":{"certSANs":["api.tenant.example.com"]}}}"#,
    ]);
    eventually(
        "the new SAN in apiserver.crt",
        Duration::from_secs(60),
        || async {
            let pem = secret_value(&client, &ns.name, &apiserver, "apiserver.crt").await;
            san_of(dir.path(), &pem)
                .contains("DNS:api.tenant.example.com")
                .then_some(())
        },
    )
    .await;
    // ... and leaves again when removed.
    kubectl_ok(&[
        "patch",
        "tcp",
        TENANT,
        "-n",
        &ns.name,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/networkProfile/certSANs"}]"#,
    ]);
    eventually(
        "the SAN gone from apiserver.crt",
        Duration::from_secs(60),
        || async {
            let pem = secret_value(&client, &ns.name, &apiserver, "apiserver.crt").await;
            (!san_of(dir.path(), &pem).contains("api.tenant.example.com")).then_some(())
        },
    )
    .await;

    // A deleted leaf Secret is recreated.
    kubectl_ok(&[
        "delete",
        "secret",
        "-n",
        &ns.name,
        &format!("{TENANT}-front-proxy-client-certificate"),
    ]);
    let front_proxy_ca = secret_value(
        &client,
        &ns.name,
        &format!("{TENANT}-front-proxy-ca-certificate"),
        "front-proxy-ca.crt",
    )
    .await;
    let recreated = eventually(
        "the deleted Secret recreated",
        Duration::from_secs(60),
        || async {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
            let s = secrets
                .get_opt(&format!("{TENANT}-front-proxy-client-certificate"))
                .await
                .ok()??;
            s.data?.get("front-proxy-client.crt").map(|v| v.0.clone())
        },
    )
    .await;
    assert_chain(
        dir.path(),
        &front_proxy_ca,
        &recreated,
        "recreated front-proxy-client",
    );

    // A corrupted leaf is re-issued.
    kubectl_ok(&[
        "patch",
        "secret",
        "-n",
        &ns.name,
        &apiserver,
        "--type=merge",
        "-p",
        r#"{"data":{"apiserver.crt":"bm90IGEgY2VydGlmaWNhdGU="}}"#,
    ]);
    let ca = secret_value(&client, &ns.name, &format!("{TENANT}-ca"), "ca.crt").await;
    let reissued = eventually(
        "the corrupted certificate re-issued",
        Duration::from_secs(60),
        || async {
            let pem = secret_value(&client, &ns.name, &apiserver, "apiserver.crt").await;
            pem.starts_with(b"-----BEGIN CERTIFICATE-----").then_some(pem)
        },
    )
    .await;
    assert_chain(dir.path(), &ca, &reissued, "re-issued apiserver");
    drop(operator);
}

#[tokio::test]
async fn an_unreadable_ca_is_reported_and_kept_until_a_rotate_is_asked_for() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "bad-ca").await;
    let (operator, _) = provision(&client, &ns.name).await;
    let ca_secret = format!("{TENANT}-ca");
    let leaf_before = secret_value(
        &client,
        &ns.name,
        &format!("{TENANT}-api-server-certificate"),
        "apiserver.crt",
    )
    .await;

    kubectl_ok(&[
        "patch",
        "secret",
        "-n",
        &ns.name,
        &ca_secret,
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmdhcmJhZ2UKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="}}"#,
    ]);
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &ns.name);
    let message = eventually(
        "a CertificatesReady=False condition naming the CA",
        Duration::from_secs(60),
        || async {
            let tcp = tcps.get(TENANT).await.ok()?;
            let condition = tcp
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "CertificatesReady")?;
            (condition.status == "False" && condition.message.contains(&ca_secret))
                .then_some(condition.message)
        },
    )
    .await;
    assert!(
        message.contains("rotate"),
        "the condition says how to proceed: {message}"
    );
    let events = kubectl_ok(&[
        "get",
        "events",
        "-n",
        &ns.name,
        "--field-selector",
        "reason=CertificateUnreadable",
        "-o",
        "name",
    ]);
    assert!(!events.trim().is_empty(), "a Warning event is published");

    // Kept: the garbage stays, nothing it signed is touched.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stored = secret_value(&client, &ns.name, &ca_secret, "ca.crt").await;
    assert!(
        String::from_utf8_lossy(&stored).contains("garbage"),
        "the CA was replaced without a rotate"
    );
    let leaf_now = secret_value(
        &client,
        &ns.name,
        &format!("{TENANT}-api-server-certificate"),
        "apiserver.crt",
    )
    .await;
    assert_eq!(leaf_before, leaf_now);

    // An explicit rotate replaces it, and the tenant heals.
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        &ca_secret,
        "certs.kamaji.clastix.io/rotate=",
    ]);
    wait_for_status(&client, &ns.name, KubernetesVersionStatus::Ready, &operator).await;
    let new_ca = eventually("a readable CA", Duration::from_secs(60), || async {
        let ca = secret_value(&client, &ns.name, &ca_secret, "ca.crt").await;
        (!String::from_utf8_lossy(&ca).contains("garbage")).then_some(ca)
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    eventually(
        "the serving certificate re-issued by the new CA",
        Duration::from_secs(60),
        || async {
            let leaf = secret_value(
                &client,
                &ns.name,
                &format!("{TENANT}-api-server-certificate"),
                "apiserver.crt",
            )
            .await;
            (leaf != leaf_before).then_some(())
        },
    )
    .await;
    let leaf = secret_value(
        &client,
        &ns.name,
        &format!("{TENANT}-api-server-certificate"),
        "apiserver.crt",
    )
    .await;
    assert_chain(
        dir.path(),
        &new_ca,
        &leaf,
        "apiserver after the explicit rotation",
    );
}

#[tokio::test]
async fn paused_tenants_and_secrets_are_left_alone() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "paused").await;
    let (operator, _) = provision(&client, &ns.name).await;
    let rotate_value = |name: String| {
        let ns = ns.name.clone();
        move || {
            kubectl_ok(&[
                "get",
                "secret",
                "-n",
                &ns,
                &name,
                "-o",
                "jsonpath={.metadata.annotations.certs\\.kamaji\\.clastix\\.io/rotate}",
            ])
        }
    };
    // A paused Secret keeps its rotation request pending.
    let scheduler = format!("{TENANT}-scheduler-kubeconfig");
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        &scheduler,
        "kamaji.clastix.io/paused=true",
        "certs.kamaji.clastix.io/rotate=",
    ]);
    // A paused tenant does nothing at all.
    kubectl_ok(&[
        "annotate",
        "tcp",
        "-n",
        &ns.name,
        TENANT,
        "kamaji.clastix.io/paused=true",
    ]);
    let apiserver = format!("{TENANT}-api-server-certificate");
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        &apiserver,
        "certs.kamaji.clastix.io/rotate=",
    ]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        rotate_value(apiserver.clone())(),
        "",
        "a paused tenant rotated a Secret"
    );

    // Unpaused: the tenant's pending request is served, the paused Secret's is not.
    kubectl_ok(&[
        "annotate",
        "tcp",
        "-n",
        &ns.name,
        TENANT,
        "kamaji.clastix.io/paused-",
    ]);
    let get = rotate_value(apiserver);
    eventually(
        "the request served after unpausing",
        Duration::from_secs(60),
        || {
            let v = get();
            async move { (!v.is_empty()).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        rotate_value(scheduler.clone())(),
        "",
        "a paused Secret was rotated"
    );
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        &scheduler,
        "kamaji.clastix.io/paused-",
    ]);
    let get = rotate_value(scheduler);
    eventually(
        "the Secret rotated once unpaused",
        Duration::from_secs(60),
        || {
            let v = get();
            async move { (!v.is_empty()).then_some(()) }
        },
    )
    .await;
    drop(operator);
}
