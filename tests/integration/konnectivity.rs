//! The konnectivity addon for real: the tenant's kube-apiserver and konnectivity-server
//! started from the operator's Deployment and Secrets, a real konnectivity agent (built
//! from sigs.k8s.io/apiserver-network-proxy) run from the DaemonSet the operator applied
//! in the tenant with a token minted there, and the API server reaching a node-side
//! endpoint through the tunnel: only while the agent is connected, and still after the
//! konnectivity certificate and the tenant CA rotate, with no manual step.

use std::{path::Path, time::Duration};

use k8s_openapi::api::apps::v1::DaemonSet;
use kamaji::api::{rotation::CaRotationPhase, tenant_control_plane::KubernetesVersionStatus};

use crate::support::{
    TestNamespace, client, eventually,
    konnectivity::{AgentCredentials, NodeEndpoint, agent_daemon_set, start_agent},
    kubectl_ok,
    tenant::{ControlPlane, Tenant, TenantEnv, free_port, write},
};

const NODE: &str = "tunnel-node";
const POD: &str = "on-the-node";

/// The controller-manager publishes `kube-root-ca.crt`, the CA agents verify the server with.
fn controller_manager_flags() -> Vec<(&'static str, String)> {
    vec![(
        "controllers",
        "root-ca-certificate-publisher-controller".to_string(),
    )]
}

/// A Node whose kubelet is `endpoint` on 127.0.0.1, and a Pod bound to it (with the
/// `default` ServiceAccount admission requires, which no controller of this test makes).
fn register_node(env: &TenantEnv, admin: &Path, endpoint: &NodeEndpoint) {
    let node = write(
        env.dir(),
        "tunnel-node.yaml",
        format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {NODE}\n").as_bytes(),
    );
    env.kubectl_ok(admin, &["apply", "-f", &node.display().to_string()]);
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{}}}}}}}}}"#,
        endpoint.port
    );
    env.kubectl_ok(
        admin,
        &[
            "patch",
            "node",
            NODE,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ],
    );
    let pod = write(
        env.dir(),
        "tunnel-pod.yaml",
        format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: default\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata:\n  name: {POD}\n  namespace: default\nspec:\n  nodeName: {NODE}\n  \
             containers:\n  - name: app\n    image: registry.k8s.io/pause:3.10\n"
        )
        .as_bytes(),
    );
    env.kubectl_ok(admin, &["apply", "-f", &pod.display().to_string()]);
}

/// `kubectl logs`: the API server asks the pod's kubelet (here, the endpoint).
fn logs(env: &TenantEnv, admin: &Path) -> Result<String, String> {
    let out = env.kubectl(admin, &["logs", "-n", "default", POD, "-c", "app"]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

const SERVED: &str = "served /containerLogs/default/on-the-node/app";

/// Waits until `kubectl logs` comes back from the node endpoint through the tunnel.
async fn logs_through_the_tunnel(env: &TenantEnv, admin: &Path, what: &str, plane: &ControlPlane) {
    let reached = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            if let Ok(text) = logs(env, admin)
                && text.contains(SERVED)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{what}: kubectl logs never reached the node: {:?}\n{}",
        logs(env, admin),
        plane.logs()
    );
}

async fn tenant_with_konnectivity(env: &TenantEnv, client: &kube::Client, name: &str) -> (Tenant, u16) {
    let agent_port = free_port();
    let tenant = env.create_tenant_with(
        name,
        &format!("  addons:\n    konnectivity:\n      server:\n        port: {agent_port}\n"),
    );
    env.wait_status(client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    (tenant, agent_port)
}

/// The agent DaemonSet, once the tenant-side controller has applied it.
async fn applied_agent(env: &TenantEnv, admin: &Path) -> DaemonSet {
    eventually(
        "the agent DaemonSet in the tenant",
        Duration::from_secs(120),
        || async {
            let out = env.kubectl(
                admin,
                &["get", "daemonset", "-n", "kube-system", "konnectivity-agent"],
            );
            out.status.success().then(|| agent_daemon_set(env, admin))
        },
    )
    .await
}

/// An agent pod's credentials, once the controller-manager published `kube-root-ca.crt`.
async fn minted_credentials(env: &TenantEnv, admin: &Path, daemon_set: &DaemonSet) -> AgentCredentials {
    eventually(
        "kube-root-ca.crt in the tenant",
        Duration::from_secs(60),
        || async {
            let out = env.kubectl(
                admin,
                &["get", "configmap", "-n", "kube-system", "kube-root-ca.crt"],
            );
            out.status
                .success()
                .then(|| AgentCredentials::mint(env, admin, daemon_set, env.dir()))
        },
    )
    .await
}

/// The egress selector configuration beside the Deployment; in the tenant, the
/// server's review rights and agents aimed at the tenant's address and agent port.
fn assert_konnectivity_objects(
    env: &TenantEnv,
    tenant: &Tenant,
    admin: &Path,
    daemon_set: &DaemonSet,
    agent_port: u16,
) {
    let egress = kubectl_ok(&[
        "get",
        "configmap",
        "-n",
        &env.namespace,
        &tenant.secret("konnectivity-egress-selector-configuration"),
        "-o",
        "jsonpath={.data.egress-selector-configuration\\.yaml}",
    ]);
    assert!(
        egress.contains("name: cluster") && egress.contains("proxyProtocol: GRPC"),
        "{egress}"
    );
    let binding = env.kubectl_ok(
        admin,
        &[
            "get",
            "clusterrolebinding",
            "system:konnectivity-server",
            "-o",
            "jsonpath={.roleRef.name} {.subjects[0].kind}:{.subjects[0].name}",
        ],
    );
    assert_eq!(binding, "system:auth-delegator User:system:konnectivity-server");
    let args = daemon_set
        .spec
        .template
        .spec
        .as_ref()
        .map(|p| p.containers[0].args.clone().unwrap_or_default())
        .unwrap_or_default();
    assert!(
        args.contains(&format!("--proxy-server-port={agent_port}")),
        "{args:?}"
    );
    assert!(
        args.contains(&"--proxy-server-host=127.0.0.1".to_string()),
        "{args:?}"
    );
}

/// `kubectl logs` fails and the node endpoint sees no request: the API server has
/// no way to the node but the tunnel.
async fn assert_unreachable(env: &TenantEnv, admin: &Path, endpoint: &NodeEndpoint) {
    let served = eventually(
        "logs refused without an agent",
        Duration::from_secs(60),
        || async { logs(env, admin).is_err().then(|| endpoint.served()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = logs(env, admin).expect_err("no tunnel, no logs");
    assert_eq!(
        endpoint.served(),
        served,
        "the node was reached without the agent: {refused}"
    );
}

/// `agent.mode: Deployment`: the agents run as a Deployment of `replicas`, the DaemonSet goes.
async fn assert_agent_mode_switch(env: &TenantEnv, tenant: &Tenant, admin: &Path) {
    kubectl_ok(&[
        "patch",
        "tcp",
        &tenant.name,
        "-n",
        &env.namespace,
        "--type=merge",
        "-p",
        r#"{"spec":{"addons":{"konnectivity":{"agent":{"mode":"Deployment","replicas":2}}}}}"#,
    ]);
    eventually("the agents as a Deployment", Duration::from_secs(120), || async {
        let replicas = env.kubectl(
            admin,
            &[
                "get",
                "deployment",
                "-n",
                "kube-system",
                "konnectivity-agent",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
        );
        let daemon_set = env.kubectl(
            admin,
            &["get", "daemonset", "-n", "kube-system", "konnectivity-agent"],
        );
        (String::from_utf8_lossy(&replicas.stdout) == "2"
            && String::from_utf8_lossy(&daemon_set.stderr).contains("NotFound"))
        .then_some(())
    })
    .await;
}

/// Removed from the spec: the agent's objects leave the tenant, the egress selector
/// configuration and the server leave the control plane.
async fn assert_addon_removed(env: &TenantEnv, tenant: &Tenant, admin: &Path) {
    let ns = &env.namespace;
    kubectl_ok(&[
        "patch",
        "tcp",
        &tenant.name,
        "-n",
        ns,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/addons"}]"#,
    ]);
    let configmap = tenant.secret("konnectivity-egress-selector-configuration");
    eventually(
        "the konnectivity addon removed",
        Duration::from_secs(120),
        || async {
            let gone = |args: &[&str]| {
                let out = env.kubectl(admin, args);
                !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
            };
            let management = crate::support::kubectl(&["get", "configmap", "-n", ns, &configmap]);
            (gone(&["get", "daemonset", "-n", "kube-system", "konnectivity-agent"])
                && gone(&["get", "deployment", "-n", "kube-system", "konnectivity-agent"])
                && gone(&["get", "serviceaccount", "-n", "kube-system", "konnectivity-agent"])
                && gone(&["get", "clusterrolebinding", "system:konnectivity-server"])
                && !management.status.success())
            .then_some(())
        },
    )
    .await;
    let containers = kubectl_ok(&[
        "get",
        "deployment",
        "-n",
        ns,
        &tenant.name,
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name} {.spec.template.spec.containers[0].args}",
    ]);
    assert!(!containers.contains("konnectivity-server"), "{containers}");
    assert!(!containers.contains("egress-selector"), "{containers}");
}

#[tokio::test]
async fn the_api_server_reaches_nodes_only_through_the_konnectivity_agent() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "konnectivity").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let (tenant, agent_port) = tenant_with_konnectivity(&env, &client, "knp").await;
    let flags = controller_manager_flags();
    let plane = env.start_control_plane_with(&client, &tenant, Some(&flags)).await;
    let admin = env.kubeconfig(&client, &tenant, "admin.conf").await;
    let daemon_set = applied_agent(&env, &admin).await;
    assert_konnectivity_objects(&env, &tenant, &admin, &daemon_set, agent_port);

    let endpoint = NodeEndpoint::start();
    register_node(&env, &admin, &endpoint);
    assert_unreachable(&env, &admin, &endpoint).await;
    assert_eq!(endpoint.served(), 0, "the API server does not dial nodes itself");

    let credentials = minted_credentials(&env, &admin, &daemon_set).await;
    let agent = start_agent(&daemon_set, &credentials, env.dir());
    logs_through_the_tunnel(&env, &admin, "with the agent connected", &plane).await;
    assert!(endpoint.served() > 0);

    // The agent gone, the way to the node is gone too.
    drop(agent);
    assert_unreachable(&env, &admin, &endpoint).await;

    assert_agent_mode_switch(&env, &tenant, &admin).await;
    assert_addon_removed(&env, &tenant, &admin).await;
}

/// The konnectivity certificate, as a user rotates it: the Deployment rolls, the new
/// server presents the new certificate, the agent reconnects by itself.
async fn rotate_konnectivity_certificate(
    env: &TenantEnv,
    client: &kube::Client,
    tenant: &Tenant,
    plane: &mut Option<ControlPlane>,
) {
    let certificate = || env.secret_value(client, tenant, "konnectivity-certificate", "tls.crt");
    let before = certificate().await;
    kubectl_ok(&[
        "annotate",
        "secret",
        "-n",
        &env.namespace,
        &tenant.secret("konnectivity-certificate"),
        "certs.kamaji.clastix.io/rotate=",
    ]);
    let flags = controller_manager_flags();
    env.follow_rollouts(
        client,
        tenant,
        plane,
        &flags,
        "the konnectivity certificate rotation",
        |_| {},
        || async { (certificate().await != before).then_some(()) },
    )
    .await;
}

/// A whole CA rotation, prepared then completed on request, the control plane
/// following every rollout. Checks the agent saw the tunnel while prepared.
async fn rotate_ca(
    env: &TenantEnv,
    client: &kube::Client,
    tenant: &Tenant,
    plane: &mut Option<ControlPlane>,
    admin: &Path,
) {
    let certificate = || env.secret_value(client, tenant, "konnectivity-certificate", "tls.crt");
    let before = certificate().await;
    let flags = controller_manager_flags();
    env.rotate_ca(tenant);
    env.follow_rollouts_to_ca_phase(client, tenant, plane, &flags, CaRotationPhase::Prepared, |_| {})
        .await;
    let running = plane.as_ref().expect("running");
    logs_through_the_tunnel(env, admin, "with the CA rotation prepared", running).await;
    kubectl_ok(&[
        "annotate",
        "tcp",
        "-n",
        &env.namespace,
        &tenant.name,
        "certs.kamaji.clastix.io/complete-ca-rotation=",
    ]);
    env.follow_rollouts_to_ca_phase(client, tenant, plane, &flags, CaRotationPhase::Completed, |_| {})
        .await;
    let after = certificate().await;
    assert_ne!(after, before, "the server's certificate moved to the new CA");
    assert_eq!(
        kamaji::pki::certificates_der(&after).len(),
        2,
        "the new certificate and the new CA cross-signed by the old one"
    );
}

#[tokio::test]
async fn a_konnectivity_agent_keeps_working_across_certificate_and_ca_rotations() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "konnectivity-rotation").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let (tenant, _) = tenant_with_konnectivity(&env, &client, "knr").await;
    let flags = controller_manager_flags();
    let mut plane = Some(env.start_control_plane_with(&client, &tenant, Some(&flags)).await);
    let admin = env.kubeconfig(&client, &tenant, "admin.conf").await;
    let daemon_set = applied_agent(&env, &admin).await;
    let endpoint = NodeEndpoint::start();
    register_node(&env, &admin, &endpoint);
    let credentials = minted_credentials(&env, &admin, &daemon_set).await;
    // One agent process for the whole test, as a DaemonSet pod that nobody restarts.
    let mut agent = start_agent(&daemon_set, &credentials, env.dir());
    logs_through_the_tunnel(
        &env,
        &admin,
        "before any rotation",
        plane.as_ref().expect("running"),
    )
    .await;

    rotate_konnectivity_certificate(&env, &client, &tenant, &mut plane).await;
    logs_through_the_tunnel(
        &env,
        &admin,
        "after the konnectivity certificate rotation",
        plane.as_ref().expect("running"),
    )
    .await;
    agent.assert_running();

    // The agent trusts only the CA it started with: after the rotation it verifies the
    // server's new certificate through the cross-signed intermediate.
    let trusted = std::fs::read(&credentials.ca).expect("the agent's CA file");
    assert_eq!(
        kamaji::pki::certificates_der(&trusted).len(),
        1,
        "the agent trusts one CA"
    );
    rotate_ca(&env, &client, &tenant, &mut plane, &admin).await;
    // The old admin.conf's certificate went with the old CA: the user's new one.
    let admin = env.kubeconfig(&client, &tenant, "admin.conf").await;
    logs_through_the_tunnel(
        &env,
        &admin,
        "after the CA rotation completed",
        plane.as_ref().expect("running"),
    )
    .await;
    agent.assert_running();
}
