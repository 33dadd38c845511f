//! A tenant is its namespace and name, and its object's uid: two tenants with one
//! name in two namespaces share nothing (not a CA, not an etcd prefix, not a
//! datastore user), and a tenant "renamed" by deleting it and creating another
//! in the middle of a rotation leaves nothing behind and lends nothing to its
//! successor.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kamaji::api::{DataStore, TenantControlPlane};
use kube::{Api, api::ListParams};

use super::lifecycle::{apply, tenant_manifest, wait_ready};
use crate::support::{
    Operator, TestNamespace, client, etcd_datastore, eventually, install_crds, kubectl_ok, secret_value,
};

const NAME: &str = "twin";

/// The Secret data keys a user compares across tenants: CA, SA key, datastore user and schema.
async fn identity(client: &kube::Client, ns: &str, tenant: &str) -> [Vec<u8>; 4] {
    let value = |suffix: &'static str, key: &'static str| {
        let name = format!("{tenant}-{suffix}");
        async move { secret_value(client, ns, &name, key).await }
    };
    [
        value("ca", "ca.crt").await,
        value("sa-certificate", "sa.pub").await,
        value("datastore-config", "DB_USER").await,
        value("datastore-config", "DB_SCHEMA").await,
    ]
}

#[tokio::test]
async fn tenants_with_one_name_in_two_namespaces_share_nothing() {
    let client = client().await;
    install_crds(&client).await;
    let first = TestNamespace::create(&client, "twin-a").await;
    let second = TestNamespace::create(&client, "twin-b").await;
    // One DataStore (cluster-scoped) for both: where same-named tenants could collide.
    let (datastore, _) = etcd_datastore(&client, &first.name, &["127.0.0.1:2379"]).await;
    let operators = [
        Operator::start(&first.name, &[]),
        Operator::start(&second.name, &[]),
    ];
    for (ns, operator) in [&first, &second].into_iter().zip(&operators) {
        apply(&ns.name, &tenant_manifest(NAME, &datastore, false));
        wait_ready(&client, &ns.name, NAME, operator).await;
    }
    let a = identity(&client, &first.name, NAME).await;
    let b = identity(&client, &second.name, NAME).await;
    for (what, (a, b)) in ["CA", "service-account key", "datastore user", "datastore schema"]
        .into_iter()
        .zip(a.iter().zip(&b))
    {
        assert_ne!(a, b, "the two {NAME} tenants share their {what}");
    }
    let used_by = eventually("the DataStore lists both", Duration::from_secs(60), || async {
        let ds = Api::<DataStore>::all(client.clone()).get(&datastore).await.ok()?;
        let used = ds.status?.used_by;
        (used.len() == 2).then_some(used)
    })
    .await;
    assert_eq!(
        used_by,
        [
            format!("{}/{NAME}", first.name),
            format!("{}/{NAME}", second.name)
        ]
    );

    // A CA rotation of one is the other's business not at all.
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &first.name,
        &format!("{NAME}-ca"),
        "certs.kamaji.clastix.io/rotate=",
    ]);
    eventually("the first CA rotated", Duration::from_secs(60), || async {
        (identity(&client, &first.name, NAME).await[0] != a[0]).then_some(())
    })
    .await;
    wait_ready(&client, &first.name, NAME, &operators[0]).await;
    assert_eq!(identity(&client, &second.name, NAME).await, b);
}

#[tokio::test]
async fn a_tenant_renamed_by_delete_and_create_during_a_rotation_leaves_nothing_and_lends_nothing() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "rename").await;
    let (datastore, _) = etcd_datastore(&client, &ns.name, &["127.0.0.1:2379"]).await;
    let operator = Operator::start(&ns.name, &[]);
    apply(&ns.name, &tenant_manifest("before", &datastore, false));
    wait_ready(&client, &ns.name, "before", &operator).await;
    let old = identity(&client, &ns.name, "before").await;

    // A rotation of everything, the CA included, and the tenant deleted in its midst.
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        "-l",
        "kamaji.clastix.io/name=before",
        "certs.kamaji.clastix.io/rotate=",
    ]);
    kubectl_ok(&["delete", "tcp", "-n", &ns.name, "before", "--wait=false"]);
    apply(&ns.name, &tenant_manifest("after", &datastore, false));
    wait_ready(&client, &ns.name, "after", &operator).await;

    let new = identity(&client, &ns.name, "after").await;
    for (what, (old, new)) in ["CA", "service-account key", "datastore user", "datastore schema"]
        .into_iter()
        .zip(old.iter().zip(&new))
    {
        assert_ne!(old, new, "the new tenant inherited the old one's {what}");
    }
    // The old tenant is gone with everything it owned.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &ns.name);
    let left = eventually(
        "the old tenant's objects gone",
        Duration::from_secs(90),
        || async {
            let gone = tcps.get_opt("before").await.ok()?.is_none();
            let left = secrets
                .list(&ListParams::default().labels("kamaji.clastix.io/name=before"))
                .await
                .ok()?
                .items;
            (gone && left.is_empty()).then_some(left.len())
        },
    )
    .await;
    assert_eq!(left, 0);
    let names = kubectl_ok(&["get", "secrets", "-n", &ns.name, "-o", "name"]);
    assert!(!names.contains("secret/before-"), "left behind: {names}");
    let mut operator = operator;
    assert!(operator.running(), "{}", operator.log_text());
}
