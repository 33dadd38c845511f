//! Two operators never reconcile the same tenant: a kamaji-rs instance claims the
//! tenants it provisions, another instance leaves them alone, and a tenant carrying
//! Kamaji's soot finalizer is Kamaji's until that finalizer is removed.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kamaji::{
    api::{TenantControlPlane, tenant_control_plane::KubernetesVersionStatus},
    tenant::ownership::{KAMAJI_FINALIZER, MANAGED_BY},
};
use kube::{Api, ResourceExt};

use crate::support::{
    Operator, TestNamespace, client, eventually, kubectl_apply, kubectl_ok,
    tenant::{Tenant, TenantEnv},
};

async fn claim(tcps: &Api<TenantControlPlane>, name: &str) -> Option<String> {
    tcps.get(name).await.ok()?.annotations().get(MANAGED_BY).cloned()
}

#[tokio::test]
async fn a_tenant_claimed_by_one_operator_or_by_kamaji_is_left_alone_by_another() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "ownership").await;
    let mut env = TenantEnv::start(&client, &ns.name).await;
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let tenant = env.create_tenant("claimed");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    assert_eq!(
        claim(&tcps, &tenant.name).await.as_deref(),
        Some("kamaji-system/kamaji-rs"),
        "the first operator claims the tenant it provisions"
    );

    // A tenant Kamaji runs: its soot finalizer is there before kamaji-rs sees it.
    let manifest = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: kamajis\n  \
         finalizers: [{KAMAJI_FINALIZER}]\nspec:\n  dataStore: {datastore}\n  controlPlane:\n    deployment:\n      \
         replicas: 1\n  kubernetes:\n    version: v1.37.2\n  networkProfile:\n    address: 127.0.0.1\n    port: {port}\n",
        datastore = env.datastore,
        port = crate::support::tenant::free_port(),
    );
    let applied = kubectl_apply(&ns.name, &manifest);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let kamajis = Tenant {
        name: "kamajis".into(),
        port: 0,
    };
    eventually("a ManagedByKamaji event", Duration::from_secs(60), || async {
        (!env.events(&client, &kamajis, "ManagedByKamaji").await.is_empty()).then_some(())
    })
    .await;

    // A second kamaji-rs (another Lease, so another identity) beside the first, which stops.
    let second = Operator::start(&ns.name, &["--leader-election-id=second"]);
    env.operator.kill_in_place();
    env.annotate_rotate(&tenant, "kamaji.clastix.io/certificate_lifecycle_controller=x509");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let pending = secrets
        .list(&kube::api::ListParams::default().labels(&format!("kamaji.clastix.io/name={}", tenant.name)))
        .await
        .expect("the tenant's Secrets")
        .items
        .into_iter()
        .filter(|s| {
            s.annotations()
                .get("certs.kamaji.clastix.io/rotate")
                .is_some_and(String::is_empty)
        })
        .count();
    assert!(
        pending > 0,
        "the second operator rotated another operator's tenant"
    );
    assert!(
        second
            .log_text()
            .contains("managed by the kamaji-rs instance kamaji-system/kamaji-rs"),
        "{}",
        second.log_text()
    );
    let kamajis_ca = secrets.get_opt("kamajis-ca").await.expect("get");
    assert!(
        kamajis_ca.is_none(),
        "Kamaji's tenant was provisioned by kamaji-rs"
    );

    // Kamaji stopped and its finalizer removed: the tenant moves to the running instance.
    kubectl_ok(&[
        "patch",
        "tcp",
        "kamajis",
        "-n",
        &ns.name,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#,
    ]);
    env.wait_status(&client, &kamajis, KubernetesVersionStatus::Ready)
        .await;
    assert_eq!(
        claim(&tcps, "kamajis").await.as_deref(),
        Some("kamaji-system/second")
    );
    drop(second);
}
