//! An etcd DataStore set up as Kamaji's etcd is (authentication on, the operator
//! connecting as `root` with the DataStore's clientCertificate): each tenant gets an
//! etcd user and a role limited to its prefix, its real API server works with them,
//! it cannot read another tenant's keys, and its user, role and keys are gone once
//! the tenant is deleted.

use std::time::{Duration, Instant};

use kamaji::{
    api::{TenantControlPlane, tenant_control_plane::KubernetesVersionStatus},
    tenant::{datastore::default_schema, etcd_access::EtcdAccess},
};
use kube::{Api, ResourceExt};

use crate::support::{
    TestNamespace, client, eventually, kubectl_ok,
    tenant::{Tenant, TenantEnv},
};

/// The tenant's access as the operator names it (default schema and user).
fn access(namespace: &str, tenant: &Tenant) -> EtcdAccess {
    let schema = default_schema(namespace, &tenant.name);
    EtcdAccess::new(&schema, &schema)
}

#[tokio::test]
async fn tenants_on_an_etcd_with_authentication_get_a_user_and_role_of_their_own_removed_with_them() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "etcd-auth").await;
    let env = TenantEnv::start_with_etcd_auth(&client, &ns.name).await;
    let created = Instant::now();
    let (alpha, beta) = (env.create_tenant("alpha"), env.create_tenant("beta"));
    let (access_a, access_b) = (access(&ns.name, &alpha), access(&ns.name, &beta));
    let root = env.etcd_as_root().await;
    eventually(
        "both tenants' etcd users and roles",
        Duration::from_secs(60),
        || async {
            let users = root.user_list().await.ok()?;
            let roles = root.role_list().await.ok()?;
            [&access_a, &access_b]
                .iter()
                .all(|a| users.contains(&a.user) && roles.contains(&a.role))
                .then_some(())
        },
    )
    .await;
    println!(
        "etcd users and roles of two tenants created in {:?}",
        created.elapsed()
    );
    for a in [&access_a, &access_b] {
        assert_eq!(
            root.user_roles(&a.user).await.expect("user"),
            Some(vec![a.role.clone()])
        );
        let permissions = root.role_permissions(&a.role).await.expect("role");
        assert_eq!(
            permissions.map(|p| p
                .into_iter()
                .map(|p| (p.perm_type, p.key, p.range_end))
                .collect::<Vec<_>>()),
            Some(vec![(2, a.key.clone(), a.range_end.clone())]),
            "readwrite on the tenant's prefix only"
        );
    }
    env.wait_status(&client, &alpha, KubernetesVersionStatus::Ready)
        .await;
    env.wait_status(&client, &beta, KubernetesVersionStatus::Ready)
        .await;
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &ns.name);
    let tcp = tcps.get(&alpha.name).await.expect("tenant alpha");
    assert!(
        tcp.finalizers()
            .iter()
            .any(|f| f == "finalizer.kamaji.clastix.io"),
        "{:?}",
        tcp.finalizers()
    );

    // Each real API server works with the user and role the operator created.
    let mut planes = Vec::new();
    for tenant in [&alpha, &beta] {
        planes.push(env.start_control_plane(&client, tenant, false).await);
        let super_admin = env.kubeconfig(&client, tenant, "super-admin.conf").await;
        env.kubectl_ok(
            &super_admin,
            &[
                "create",
                "configmap",
                "proof",
                "-n",
                "default",
                "--from-literal=by=kamaji-rs",
            ],
        );
        let listed = env.kubectl_ok(
            &super_admin,
            &["get", "configmaps", "-n", "default", "-o", "name"],
        );
        assert!(listed.lines().any(|l| l == "configmap/proof"), "{listed}");
    }

    // alpha's own etcd client certificate reads its prefix and nothing of beta's.
    let certificate = env
        .secret_value(&client, &alpha, "datastore-certificate", "server.crt")
        .await;
    let key = env
        .secret_value(&client, &alpha, "datastore-certificate", "server.key")
        .await;
    let as_alpha = env.etcd_as(&certificate, &key).await;
    let own = as_alpha
        .count(&access_a.key, &access_a.range_end)
        .await
        .expect("alpha reads its own prefix");
    assert!(own > 0, "alpha's API server wrote under {:?}", access_a.key);
    let refused = as_alpha
        .count(&access_b.key, &access_b.range_end)
        .await
        .expect_err("alpha must not read beta's prefix");
    assert!(refused.is_permission_denied(), "{refused}");
    let refused = as_alpha.user_list().await.expect_err("alpha is no etcd admin");
    assert!(refused.is_permission_denied(), "{refused}");

    // Deleting alpha removes its role, keys and user, and then the TenantControlPlane.
    let deleted = Instant::now();
    kubectl_ok(&["delete", "tcp", "-n", &ns.name, &alpha.name, "--wait=false"]);
    eventually(
        "the TenantControlPlane alpha to be gone",
        Duration::from_secs(60),
        || async { tcps.get_opt(&alpha.name).await.ok()?.is_none().then_some(()) },
    )
    .await;
    println!(
        "tenant deleted, its etcd user, role and keys removed, in {:?}",
        deleted.elapsed()
    );
    let users = root.user_list().await.expect("users");
    let roles = root.role_list().await.expect("roles");
    assert!(!users.contains(&access_a.user), "{users:?}");
    assert!(!roles.contains(&access_a.role), "{roles:?}");
    assert!(
        users.contains(&access_b.user) && roles.contains(&access_b.role),
        "{users:?} {roles:?}"
    );
    assert_eq!(
        root.count(&access_a.key, &access_a.range_end)
            .await
            .expect("count"),
        0
    );
    let cleaned = env.events(&client, &alpha, "DataStoreCleanedUp").await;
    assert!(!cleaned.is_empty(), "a DataStoreCleanedUp event");

    // beta is untouched.
    let super_admin = env.kubeconfig(&client, &beta, "super-admin.conf").await;
    let listed = env.kubectl_ok(
        &super_admin,
        &["get", "configmaps", "-n", "default", "-o", "name"],
    );
    assert!(listed.lines().any(|l| l == "configmap/proof"), "{listed}");
    drop(planes);
}

#[tokio::test]
async fn an_etcd_admin_certificate_etcd_does_not_know_is_reported_naming_the_datastore_and_the_tenant() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "etcd-auth-refused").await;
    let env = TenantEnv::start_with_etcd_auth_as(&client, &ns.name, "nobody").await;
    let tenant = env.create_tenant("refused");
    let tenant_ref = format!("{}/{}", ns.name, tenant.name);
    let note = eventually("a DataStoreUnusable event", Duration::from_secs(60), || async {
        env.events(&client, &tenant, "DataStoreUnusable")
            .await
            .into_iter()
            .next()
    })
    .await;
    for wanted in [
        env.datastore.as_str(),
        tenant_ref.as_str(),
        "etcd user",
        "no etcd user",
    ] {
        assert!(note.contains(wanted), "{wanted:?} in {note}");
    }
    assert!(
        !note.contains("PRIVATE KEY") && !note.contains("CERTIFICATE"),
        "{note}"
    );
    let condition = eventually(
        "a condition naming the DataStore",
        Duration::from_secs(30),
        || async {
            let tcp = Api::<TenantControlPlane>::namespaced(client.clone(), &ns.name)
                .get(&tenant.name)
                .await
                .ok()?;
            tcp.status?.conditions.into_iter().find(|c| {
                c.status != "True" && c.message.contains(&env.datastore) && c.message.contains("etcd user")
            })
        },
    )
    .await;
    assert!(condition.message.contains(&tenant_ref), "{condition:?}");
    // What does not depend on the DataStore goes on.
    env.secret_value(&client, &tenant, "api-server-certificate", "apiserver.crt")
        .await;

    // Deleting it: the cleanup fails and says so (retried until the grace period ends).
    kubectl_ok(&["delete", "tcp", "-n", &ns.name, &tenant.name, "--wait=false"]);
    let failed = eventually(
        "a DataStoreCleanupFailed event",
        Duration::from_secs(60),
        || async {
            env.events(&client, &tenant, "DataStoreCleanupFailed")
                .await
                .into_iter()
                .next()
        },
    )
    .await;
    assert!(
        failed.contains(&tenant_ref) && failed.contains(&env.datastore),
        "{failed}"
    );
    // An administrator releases it by hand (the grace period is 10 minutes).
    kubectl_ok(&[
        "patch",
        "tcp",
        "-n",
        &ns.name,
        &tenant.name,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
}
