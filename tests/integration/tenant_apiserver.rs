//! The operator's PKI used for real: a kube-apiserver started from the operator's
//! own Secrets, with the flags of its Deployment, on an etcd that requires client
//! certificates from the DataStore CA. kubectl with the tenant's kubeconfigs
//! works; after a rotation the new material works; after a CA rotation material
//! signed by the old CA is refused.

use kamaji::{
    api::tenant_control_plane::KubernetesVersionStatus,
    pki::kubeconfig::{Kubeconfig, KubeconfigParams},
};

use crate::support::{
    TestNamespace, client,
    tenant::{TenantEnv, write},
};

const X509: &str = "kamaji.clastix.io/certificate_lifecycle_controller=x509";
const KUBECONFIG: &str = "kamaji.clastix.io/certificate_lifecycle_controller=kubeconfig";

/// A client certificate and key, out of a kubeconfig.
fn credentials(path: &std::path::Path) -> (String, String) {
    let kubeconfig = Kubeconfig::parse(&std::fs::read(path).expect("kubeconfig")).expect("parses");
    let cred = kubeconfig.client_credentials().expect("credentials").remove(0);
    (
        String::from_utf8(cred.certificate_pem).expect("PEM"),
        String::from_utf8(cred.key_pem.expect("a key")).expect("PEM"),
    )
}

#[tokio::test]
async fn tenant_apiserver_runs_on_the_operators_secrets_and_follows_rotations() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "tenant-apiserver").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let tenant = env.create_tenant("real");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;

    let started = std::time::Instant::now();
    let plane = env.start_control_plane(&client, &tenant, false).await;
    println!("tenant kube-apiserver ready in {:?}", started.elapsed());

    // super-admin.conf (system:masters) writes through the tenant into etcd, and reads back.
    let super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;
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
    let (user, groups) = env.whoami(&super_admin);
    assert_eq!(user, "kubernetes-super-admin");
    assert!(groups.contains(&"system:masters".to_string()), "{groups:?}");

    // admin.conf authenticates as kubeadm's admin (what it may do is the tenant RBAC's business).
    let admin = env.kubeconfig(&client, &tenant, "admin.conf").await;
    let (user, groups) = env.whoami(&admin);
    assert_eq!(user, "kubernetes-admin");
    assert!(
        groups.contains(&"kubeadm:cluster-admins".to_string()),
        "{groups:?}"
    );

    // x509 and kubeconfig rotation by annotation, then the rollout: restart on the new files.
    let generation = env.deployment_generation(&client, &tenant).await;
    let serving_before = env
        .secret_value(&client, &tenant, "api-server-certificate", "apiserver.crt")
        .await;
    env.annotate_rotate(&tenant, X509);
    env.annotate_rotate(&tenant, KUBECONFIG);
    env.wait_rolled_out_after(&client, &tenant, generation).await;
    let serving_after = env
        .secret_value(&client, &tenant, "api-server-certificate", "apiserver.crt")
        .await;
    assert_ne!(
        serving_before, serving_after,
        "the serving certificate was re-issued"
    );
    drop(plane);
    let plane = env.start_control_plane(&client, &tenant, false).await;
    let rotated_super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;
    assert_ne!(
        credentials(&rotated_super_admin).0,
        credentials(&super_admin).0,
        "super-admin.conf was re-issued"
    );
    let listed = env.kubectl_ok(
        &rotated_super_admin,
        &["get", "configmaps", "-n", "default", "-o", "name"],
    );
    assert!(
        listed.lines().any(|l| l == "configmap/proof"),
        "the re-issued datastore certificate reads the same etcd: {listed}"
    );
    let rotated_admin = env.kubeconfig(&client, &tenant, "admin.conf").await;
    assert_eq!(env.whoami(&rotated_admin).0, "kubernetes-admin");
    // Same CA: the old leaves stay valid until they expire, as with kubeadm.
    assert_eq!(env.whoami(&admin).0, "kubernetes-admin");

    // CA rotation, prepared: the new kubeconfig works, and so do the saved ones.
    let old_ca = env.secret_value(&client, &tenant, "ca", "ca.crt").await;
    let generation = env.deployment_generation(&client, &tenant).await;
    env.rotate_ca(&tenant);
    env.wait_rolled_out_after(&client, &tenant, generation).await;
    drop(plane);
    let plane = env.start_control_plane(&client, &tenant, false).await;
    let new_super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;
    let listed = env.kubectl_ok(
        &new_super_admin,
        &["get", "configmaps", "-n", "default", "-o", "name"],
    );
    assert!(listed.lines().any(|l| l == "configmap/proof"), "{listed}");
    for saved in [&admin, &rotated_super_admin] {
        env.kubectl_ok(saved, &["get", "namespaces"]);
    }

    // Completed: everything signed by the old CA is refused.
    let generation = env.deployment_generation(&client, &tenant).await;
    crate::support::kubectl_ok(&[
        "annotate",
        "tcp",
        "-n",
        &ns.name,
        &tenant.name,
        "certs.kamaji.clastix.io/complete-ca-rotation=",
    ]);
    env.wait_rolled_out_after(&client, &tenant, generation).await;
    let new_ca = env.secret_value(&client, &tenant, "ca", "ca.crt").await;
    assert_ne!(old_ca, new_ca, "the CA was replaced");
    drop(plane);
    let plane = env.start_control_plane(&client, &tenant, false).await;
    let new_super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;
    let listed = env.kubectl_ok(
        &new_super_admin,
        &["get", "configmaps", "-n", "default", "-o", "name"],
    );
    assert!(listed.lines().any(|l| l == "configmap/proof"), "{listed}");
    let new_admin = env.kubeconfig(&client, &tenant, "admin.conf").await;
    assert_eq!(env.whoami(&new_admin).0, "kubernetes-admin");

    // The saved kubeconfigs (old CA, old client certificates) no longer get in...
    for saved in [&admin, &rotated_super_admin] {
        let out = env.kubectl(saved, &["get", "namespaces"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && (stderr.contains("certificate")
                    || stderr.contains("Unauthorized")
                    || stderr.contains("x509")),
            "a kubeconfig from before the CA rotation must be refused: {stderr}"
        );
    }
    // ...and even trusting the new server, a client certificate of the old CA is a 401.
    let (old_cert, old_key) = credentials(&rotated_super_admin);
    let server = tenant.server();
    let mixed = Kubeconfig::new(&KubeconfigParams {
        cluster_name: &tenant.name,
        server: &server,
        ca_pem: std::str::from_utf8(&new_ca).expect("PEM"),
        user: "kubernetes-super-admin",
        client_certificate_pem: &old_cert,
        client_key_pem: &old_key,
    });
    let mixed = write(
        env.dir(),
        "old-client-new-ca.conf",
        mixed.to_yaml().expect("YAML").as_bytes(),
    );
    let out = env.kubectl(&mixed, &["get", "namespaces"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Unauthorized"),
        "old-CA client certificate must get 401: {stderr}\n{}",
        plane.logs()
    );
    println!("whole run: {:?}", started.elapsed());
}

/// `kubectl auth whoami` with a bearer token against the tenant: the user name, or
/// the error kubectl printed.
fn token_user(env: &TenantEnv, kubeconfig: &std::path::Path, token: &str) -> Result<String, String> {
    let out = env.kubectl(kubeconfig, &["--token", token, "auth", "whoami", "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(json["status"]["userInfo"]["username"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test]
async fn tokens_signed_before_a_service_account_key_rotation_verify_until_the_grace_period_ends() {
    const ROBOT: &str = "system:serviceaccount:default:robot";
    let client = client().await;
    let ns = TestNamespace::create(&client, "sa-rotation").await;
    // A short grace period, so the test sees the previous key retired.
    let env = TenantEnv::start_with(&client, &ns.name, &["--service-account-key-grace-period", "40s"]).await;
    let tenant = env.create_tenant("tokens");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    let plane = env.start_control_plane(&client, &tenant, false).await;
    let super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;
    env.kubectl_ok(
        &super_admin,
        &["create", "serviceaccount", "robot", "-n", "default"],
    );
    let mint = || {
        env.kubectl_ok(
            &super_admin,
            &["create", "token", "robot", "-n", "default", "--duration=1h"],
        )
        .trim()
        .to_string()
    };
    let ca = env.secret_value(&client, &tenant, "ca", "ca.crt").await;
    let bearer = env.anonymous_kubeconfig(&tenant, &ca);
    let before = mint();
    assert_eq!(token_user(&env, &bearer, &before).as_deref(), Ok(ROBOT));

    // The rotation: a new key signs, the previous one still verifies.
    let generation = env.deployment_generation(&client, &tenant).await;
    crate::support::kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &ns.name,
        &tenant.secret("sa-certificate"),
        "certs.kamaji.clastix.io/rotate=",
    ]);
    env.wait_rolled_out_after(&client, &tenant, generation).await;
    drop(plane);
    let plane = env.start_control_plane(&client, &tenant, false).await;
    let after = mint();
    assert_eq!(
        token_user(&env, &bearer, &before).as_deref(),
        Ok(ROBOT),
        "a token signed before the rotation is accepted during the grace period"
    );
    assert_eq!(token_user(&env, &bearer, &after).as_deref(), Ok(ROBOT));

    // After the grace period the previous key is retired, with a rollout of its own.
    let generation = env.deployment_generation(&client, &tenant).await;
    env.wait_rolled_out_after(&client, &tenant, generation).await;
    drop(plane);
    let _plane = env.start_control_plane(&client, &tenant, false).await;
    let refused = token_user(&env, &bearer, &before).expect_err("the old token is refused");
    assert!(refused.contains("Unauthorized"), "{refused}");
    assert_eq!(
        token_user(&env, &bearer, &after).as_deref(),
        Ok(ROBOT),
        "a token signed by the new key is accepted"
    );
}
