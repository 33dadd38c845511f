//! DataStore status as Kamaji writes it (usedBy, ready, the validation condition)
//! and the finalizer that keeps a DataStore in use from being deleted, on the
//! local cluster with the operator running.

use std::time::Duration;

use kamaji::{
    api::{DataStore, tenant_control_plane::KubernetesVersionStatus},
    controllers::datastore::{ALLOWED_DELETION_CONDITION, FINALIZER},
    runtime::kamaji_metrics::DATASTORE_VALID_CONDITION,
};
use kube::Api;

use crate::support::{TestNamespace, client, eventually, kubectl, kubectl_apply, tenant::TenantEnv};

fn condition<'a>(
    datastore: &'a DataStore,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    datastore
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

#[tokio::test]
async fn a_datastore_reports_its_tenants_and_validity_and_is_kept_while_used() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "datastore-status").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let datastores: Api<DataStore> = Api::all(client.clone());
    let tenant = env.create_tenant("on-etcd");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    let used = format!("{}/{}", ns.name, tenant.name);
    let ready = eventually(
        "usedBy, ready and the validation condition",
        Duration::from_secs(60),
        || async {
            let ds = datastores.get(&env.datastore).await.ok()?;
            let status = ds.status.as_ref()?;
            (status.used_by == [used.clone()] && status.ready).then_some(ds)
        },
    )
    .await;
    let valid = condition(&ready, DATASTORE_VALID_CONDITION).expect("the validation condition");
    assert_eq!(
        (valid.status.as_str(), valid.reason.as_str()),
        ("True", "DataStoreIsValid")
    );
    assert!(ready.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER));

    // A DataStore whose CA Secret does not exist: not ready, and the condition says why.
    let broken = format!("broken-{}", ns.name);
    let manifest = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: DataStore\nmetadata:\n  name: {broken}\nspec:\n  driver: etcd\n  \
         endpoints: [127.0.0.1:2379]\n  tlsConfig:\n    certificateAuthority:\n      certificate:\n        \
         secretReference: {{name: missing-ca, namespace: {ns}, keyPath: ca.crt}}\n      privateKey:\n        \
         secretReference: {{name: missing-ca, namespace: {ns}, keyPath: ca.key}}\n",
        ns = ns.name
    );
    let applied = kubectl_apply(&ns.name, &manifest);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    // Only an operator with tenants on it writes its status (--watch-namespace): put one there.
    let on_broken = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: on-broken\nspec:\n  \
         dataStore: {broken}\n  kubernetes:\n    version: v1.37.2\n  networkProfile:\n    address: 127.0.0.1\n"
    );
    let applied = kubectl_apply(&ns.name, &on_broken);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let message = eventually(
        "the broken DataStore reported",
        Duration::from_secs(60),
        || async {
            let ds = datastores.get(&broken).await.ok()?;
            let c = condition(&ds, DATASTORE_VALID_CONDITION)?;
            (c.status == "False" && !ds.status.as_ref()?.ready).then(|| c.message.clone())
        },
    )
    .await;
    assert!(
        message.contains(&format!("secret {}/missing-ca not found", ns.name)),
        "{message}"
    );

    // Deleted while a tenant uses it: kept, and the condition names the tenant.
    let deleted = kubectl(&["delete", "datastore", &env.datastore, "--wait=false"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let held = eventually("deletion held while used", Duration::from_secs(60), || async {
        let ds = datastores.get(&env.datastore).await.ok()?;
        let c = condition(&ds, ALLOWED_DELETION_CONDITION)?;
        (c.status == "False").then(|| c.message.clone())
    })
    .await;
    assert!(held.contains(&used), "{held}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;

    // Its last tenant gone, the DataStore goes too.
    let removed = kubectl(&["delete", "tcp", &tenant.name, "-n", &ns.name, "--wait=false"]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    eventually("the DataStore deleted", Duration::from_secs(60), || async {
        datastores
            .get_opt(&env.datastore)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}
