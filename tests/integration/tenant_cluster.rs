//! The tenant side of the PKI, on a real tenant API server started from the
//! operator's Secrets: the operator connects with super-admin.conf and ensures
//! kubeadm's bindings and `kube-public/cluster-info`, restores what is deleted,
//! reports unreachable tenants without blocking the others, and follows a CA
//! rotation.

use std::time::Duration;

use base64::Engine as _;
use kamaji::{
    api::{TenantControlPlane, rotation::CaRotationPhase, tenant_control_plane::KubernetesVersionStatus},
    controllers::tenant_cluster::CONDITION,
    pki::kubeconfig::Kubeconfig,
};

use crate::support::{
    TestNamespace, assert_chain, client, eventually, kubectl_ok,
    tenant::{Tenant, TenantEnv},
};

/// Where joining nodes read `cluster-info`.
const CLUSTER_INFO_PATH: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

/// Waits for our condition to have this status and reason; returns its message.
async fn wait_condition(
    env: &TenantEnv,
    client: &kube::Client,
    tenant: &Tenant,
    status: &str,
    reason: &str,
    timeout: Duration,
) -> String {
    let what = format!("{CONDITION}={status} ({reason}) on {}", tenant.name);
    let found = tokio::time::timeout(timeout, async {
        loop {
            if let Some(c) = env.condition(client, tenant, CONDITION).await
                && c.status == status
                && c.reason == reason
            {
                return c.message;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    match found {
        Ok(message) => message,
        Err(_) => panic!(
            "timed out after {timeout:?} waiting for {what}; now {:?}\noperator log:\n{}",
            env.condition(client, tenant, CONDITION).await,
            env.operator.log_text()
        ),
    }
}

/// The CA the `cluster-info` ConfigMap hands out, read anonymously (or why not).
fn cluster_info_ca(env: &TenantEnv, anonymous: &std::path::Path) -> Result<Vec<u8>, String> {
    // `get --raw`: anonymous may not read the discovery documents `get configmap` needs
    // (as on a kubeadm cluster, where `kubeadm join` reads this path directly).
    let out = env.kubectl_anonymous(anonymous, &["get", "--raw", CLUSTER_INFO_PATH]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let raw = json["data"]["kubeconfig"].as_str().ok_or("no data.kubeconfig")?;
    let kubeconfig = Kubeconfig::parse(raw.as_bytes()).map_err(|e| e.to_string())?;
    kubeconfig
        .current_ca_pem()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no certificate-authority-data".to_string())
}

/// Submits, as the node, the CSR a kubelet renewing its client certificate sends:
/// a new key, CN system:node:<node>, O system:nodes, signer kube-apiserver-client-kubelet.
fn submit_node_csr(env: &TenantEnv, node_conf: &std::path::Path, name: &str, node: &str) {
    let key = env.dir().join(format!("{name}.key"));
    let request = env.dir().join(format!("{name}.csr"));
    crate::support::openssl(&[
        "req".as_ref(),
        "-new".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:prime256v1".as_ref(),
        "-nodes".as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-subj".as_ref(),
        format!("/O=system:nodes/CN=system:node:{node}").as_ref(),
        "-out".as_ref(),
        request.as_os_str(),
    ]);
    let encoded = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&request).expect("CSR"));
    let manifest = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\n\
         spec:\n  request: {encoded}\n  signerName: kubernetes.io/kube-apiserver-client-kubelet\n  usages:\n  \
         - digital signature\n  - client auth\n"
    );
    let file = crate::support::tenant::write(env.dir(), &format!("{name}.yaml"), manifest.as_bytes());
    env.kubectl_ok(node_conf, &["create", "-f", &file.display().to_string()]);
}

#[tokio::test]
async fn tenant_admin_conf_is_cluster_admin_and_a_deleted_binding_is_restored() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "tenant-rbac").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let tenant = env.create_tenant("rbac");
    // A second tenant whose API server never starts: reported, and in nobody's way.
    let absent = env.create_tenant("absent");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    env.wait_status(&client, &absent, KubernetesVersionStatus::Ready)
        .await;

    // Ready in the management cluster (kwok), but nothing answers yet: reported and retried.
    let message = wait_condition(
        &env,
        &client,
        &tenant,
        "False",
        "Unreachable",
        Duration::from_secs(60),
    )
    .await;
    assert!(message.contains(&tenant.server()), "{message}");
    let started = std::time::Instant::now();
    let _plane = env.start_control_plane(&client, &tenant, false).await;
    wait_condition(
        &env,
        &client,
        &tenant,
        "True",
        "Applied",
        Duration::from_secs(120),
    )
    .await;
    println!(
        "set up {:?} after the tenant API server started",
        started.elapsed()
    );
    let absent_condition = env
        .condition(&client, &absent, CONDITION)
        .await
        .expect("the unreachable tenant has the condition");
    assert_eq!(
        (absent_condition.status.as_str(), absent_condition.reason.as_str()),
        ("False", "Unreachable")
    );
    assert!(
        !env.events(&client, &absent, "TenantUnreachable").await.is_empty(),
        "a Warning event names the unreachable tenant"
    );
    // The management side went on regardless.
    assert!(
        env.condition(&client, &tenant, "Ready")
            .await
            .is_some_and(|c| c.status == "True"),
        "the TCP reconciler's conditions are kept beside ours"
    );
    // Each status writer owns its own conditions, and neither undoes the other: at
    // steady state the TCP does not change.
    let tcps: kube::Api<kamaji::api::TenantControlPlane> = kube::Api::namespaced(client.clone(), &ns.name);
    // Steady state: both writers have reported (the tenant-side controller's last
    // condition may land a few seconds after the others); then nothing changes.
    let mut before = tcps.get(&tenant.name).await.expect("the TCP");
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = tcps.get(&tenant.name).await.expect("the TCP");
        if now.metadata.resource_version == before.metadata.resource_version {
            break;
        }
        before = now;
    }
    let managers: Vec<(String, String)> = before
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .map(|m| {
            let fields = m.fields_v1.as_ref().map(|f| f.0.to_string()).unwrap_or_default();
            (m.manager.clone().unwrap_or_default(), fields)
        })
        .collect();
    let ours = managers
        .iter()
        .find(|(m, _)| m == "kamaji-rs-tenant")
        .unwrap_or_else(|| panic!("no kamaji-rs-tenant status manager: {managers:?}"));
    assert!(
        ours.1.contains(CONDITION) && !ours.1.contains(r#"\"Ready\""#),
        "{ours:?}"
    );
    for (manager, fields) in &managers {
        if manager != "kamaji-rs-tenant" {
            assert!(
                !fields.contains(CONDITION),
                "{manager} also owns {CONDITION}: {fields}"
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = tcps.get(&tenant.name).await.expect("the TCP");
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "the TCP changed at steady state: {:?}",
        after.status
    );

    // admin.conf: kubeadm's admin, cluster-admin through the binding the operator made.
    let admin = env.kubeconfig(&client, &tenant, "admin.conf").await;
    let (user, groups) = env.whoami(&admin);
    assert_eq!(user, "kubernetes-admin");
    assert!(
        groups.contains(&"kubeadm:cluster-admins".to_string()),
        "{groups:?}"
    );
    env.kubectl_ok(&admin, &["create", "namespace", "team-a"]);
    env.kubectl_ok(
        &admin,
        &[
            "create",
            "configmap",
            "made-by-admin",
            "-n",
            "team-a",
            "--from-literal=k=v",
        ],
    );
    let listed = env.kubectl_ok(&admin, &["get", "configmaps", "-n", "team-a", "-o", "name"]);
    assert!(listed.lines().any(|l| l == "configmap/made-by-admin"), "{listed}");
    let bindings = env.kubectl_ok(&admin, &["get", "clusterrolebindings", "-o", "name"]);
    for name in [
        "kubeadm:cluster-admins",
        "kubeadm:kubelet-bootstrap",
        "kubeadm:node-autoapprove-bootstrap",
        "kubeadm:node-autoapprove-certificate-rotation",
        "kubeadm:get-nodes",
    ] {
        assert!(
            bindings
                .lines()
                .any(|l| l == format!("clusterrolebinding.rbac.authorization.k8s.io/{name}")),
            "{name} missing: {bindings}"
        );
    }

    // Deleted by hand: admin.conf loses its rights, until the operator restores the binding.
    let super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;
    env.kubectl_ok(
        &super_admin,
        &["delete", "clusterrolebinding", "kubeadm:cluster-admins"],
    );
    let denied = env.kubectl(&admin, &["get", "configmaps", "-n", "team-a"]);
    assert!(
        !denied.status.success() && String::from_utf8_lossy(&denied.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let deleted = std::time::Instant::now();
    eventually(
        "the operator to restore kubeadm:cluster-admins",
        Duration::from_secs(120),
        || async {
            env.kubectl(&admin, &["get", "configmaps", "-n", "team-a"])
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    println!("binding restored {:?} after its deletion", deleted.elapsed());

    // Paused: hands off, until the annotation goes.
    kubectl_ok(&[
        "annotate",
        "tcp",
        &tenant.name,
        "-n",
        &ns.name,
        "kamaji.clastix.io/paused=true",
    ]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.kubectl_ok(
        &super_admin,
        &["delete", "clusterrolebinding", "kubeadm:cluster-admins"],
    );
    tokio::time::sleep(kamaji::controllers::tenant_cluster::RESYNC + Duration::from_secs(10)).await;
    assert!(
        !env.kubectl(&admin, &["get", "configmaps", "-n", "team-a"])
            .status
            .success(),
        "a paused tenant is left alone"
    );
    kubectl_ok(&[
        "annotate",
        "tcp",
        &tenant.name,
        "-n",
        &ns.name,
        "kamaji.clastix.io/paused-",
    ]);
    eventually(
        "the binding back after unpausing",
        Duration::from_secs(60),
        || async {
            env.kubectl(&admin, &["get", "configmaps", "-n", "team-a"])
                .status
                .success()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn kubelet_csrs_are_auto_approved_and_cluster_info_follows_the_ca() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "tenant-csr").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let tenant = env.create_tenant("nodes");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    let plane = env.start_control_plane(&client, &tenant, true).await;
    wait_condition(
        &env,
        &client,
        &tenant,
        "True",
        "Applied",
        Duration::from_secs(120),
    )
    .await;

    // cluster-info, read with no credentials at all, hands out <tcp>-ca's ca.crt.
    let ca = env.secret_value(&client, &tenant, "ca", "ca.crt").await;
    let anonymous = env.anonymous_kubeconfig(&tenant, &ca);
    assert_eq!(cluster_info_ca(&env, &anonymous).as_deref(), Ok(&ca[..]));
    let out = env.kubectl_anonymous(
        &anonymous,
        &["get", "--raw", "/api/v1/namespaces/kube-public/configmaps"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(r#"User "system:anonymous" cannot list"#),
        "the request is anonymous, and anonymous may read cluster-info only: {stderr}"
    );
    // Without kubectl: a bare HTTPS GET trusting the CA, as kubeadm join's discovery does.
    let ca_file = crate::support::tenant::write(env.dir(), "tenant-ca.crt", &ca);
    let url = format!("{}{CLUSTER_INFO_PATH}", tenant.server());
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "20", "--cacert"])
        .arg(&ca_file)
        .arg(&url)
        .output()
        .expect("curl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let served = Kubeconfig::parse(
        json["data"]["kubeconfig"]
            .as_str()
            .expect("kubeconfig")
            .as_bytes(),
    )
    .expect("a kubeconfig");
    assert_eq!(served.current_ca_pem().expect("base64").as_deref(), Some(&ca[..]));
    let cluster = served.clusters[0].cluster.as_ref().expect("a cluster");
    assert_eq!(cluster.server.as_deref(), Some(tenant.server().as_str()));

    // A kubelet renewing its client certificate: a CSR as system:node:<name> in
    // system:nodes, approved and signed inside the tenant with no one approving it.
    let node = "worker-0";
    let node_conf = env.node_kubeconfig(&client, &tenant, node).await;
    let (user, groups) = env.whoami(&node_conf);
    assert_eq!(user, format!("system:node:{node}"));
    assert!(groups.contains(&"system:nodes".to_string()), "{groups:?}");
    let super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;

    // Without the operator's selfnodeclient binding, nothing approves it: pause the
    // tenant, delete the binding, and the CSR stays pending.
    kubectl_ok(&[
        "annotate",
        "tcp",
        &tenant.name,
        "-n",
        &ns.name,
        "kamaji.clastix.io/paused=true",
    ]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rotation_binding = "kubeadm:node-autoapprove-certificate-rotation";
    env.kubectl_ok(&super_admin, &["delete", "clusterrolebinding", rotation_binding]);
    submit_node_csr(&env, &node_conf, "unbound-renewal", node);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let pending = env.kubectl_ok(
        &super_admin,
        &["get", "csr", "unbound-renewal", "-o", "jsonpath={.status}"],
    );
    assert!(
        !pending.contains("Approved") && !pending.contains("certificate"),
        "without the binding the CSR must stay pending: {pending}"
    );
    kubectl_ok(&[
        "annotate",
        "tcp",
        &tenant.name,
        "-n",
        &ns.name,
        "kamaji.clastix.io/paused-",
    ]);
    eventually(
        "the binding restored on unpause",
        Duration::from_secs(60),
        || async {
            env.kubectl(&super_admin, &["get", "clusterrolebinding", rotation_binding])
                .status
                .success()
                .then_some(())
        },
    )
    .await;

    submit_node_csr(&env, &node_conf, "node-renewal", node);
    let submitted = std::time::Instant::now();
    let (reason, certificate) = eventually(
        "the CSR approved and signed",
        Duration::from_secs(120),
        || async {
            let out = env.kubectl(&super_admin, &["get", "csr", "node-renewal", "-o", "json"]);
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let certificate = json["status"]["certificate"].as_str().filter(|c| !c.is_empty())?;
            let approved = json["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Approved")?;
            Some((
                approved["reason"].as_str().unwrap_or_default().to_string(),
                base64::engine::general_purpose::STANDARD
                    .decode(certificate)
                    .ok()?,
            ))
        },
    )
    .await;
    println!(
        "CSR approved and signed {:?} after submission",
        submitted.elapsed()
    );
    assert_eq!(reason, "AutoApproved", "csrapproving approved it, not a person");
    let spec_user = env.kubectl_ok(
        &super_admin,
        &["get", "csr", "node-renewal", "-o", "jsonpath={.spec.username}"],
    );
    assert_eq!(spec_user, format!("system:node:{node}"));
    assert_chain(env.dir(), &ca, &certificate, "the kubelet's renewed certificate");
    let cert_file = crate::support::tenant::write(env.dir(), "renewed.crt", &certificate);
    let subject = crate::support::openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-subject".as_ref(),
        "-in".as_ref(),
        cert_file.as_os_str(),
    ]);
    assert!(
        subject.contains(&format!("CN = system:node:{node}")) && subject.contains("O = system:nodes"),
        "{subject}"
    );

    // CA rotation, prepared: after the rollout (here: a restart on the new files),
    // cluster-info hands out both CAs, so a node joining now trusts the server before
    // and after completion, and existing nodes need nobody: no NodesNeedNewCa warning.
    let generation = env.deployment_generation(&client, &tenant).await;
    env.rotate_ca(&tenant);
    env.wait_rolled_out_after(&client, &tenant, generation).await;
    let bundle = env.secret_value(&client, &tenant, "ca", "ca.crt").await;
    assert_eq!(kamaji::pki::certificates_der(&bundle).len(), 2, "new and old CA");
    assert!(bundle.ends_with(&ca), "the old CA stays in the bundle");
    drop(plane);
    let restarted = std::time::Instant::now();
    let _plane = env.start_control_plane(&client, &tenant, false).await;
    let anonymous = env.anonymous_kubeconfig(&tenant, &ca);
    eventually(
        "cluster-info to carry both CAs",
        Duration::from_secs(120),
        || async { (cluster_info_ca(&env, &anonymous).as_deref() == Ok(&bundle[..])).then_some(()) },
    )
    .await;
    println!(
        "cluster-info carried both CAs {:?} after the restart began",
        restarted.elapsed()
    );
    assert!(
        env.events(&client, &tenant, "NodesNeedNewCa").await.is_empty(),
        "a two-phase rotation needs no manual step on nodes"
    );
}

/// The CERTIFICATE blocks of a PEM file that may also hold a key (kubelet-client-current.pem).
fn certificates_only(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line == "-----BEGIN CERTIFICATE-----" {
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
        if line == "-----END CERTIFICATE-----" {
            inside = false;
        }
    }
    out.into_bytes()
}

/// The CSRs of the tenant as (spec.username, Approved reason, has a certificate).
fn csrs(env: &TenantEnv, super_admin: &std::path::Path) -> Vec<(String, String, bool)> {
    let out = env.kubectl_ok(super_admin, &["get", "csr", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("CSR list JSON");
    json["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|csr| {
            let approved = csr["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Approved")
                .and_then(|c| c["reason"].as_str())
                .unwrap_or_default()
                .to_string();
            (
                csr["spec"]["username"].as_str().unwrap_or_default().to_string(),
                approved,
                csr["status"]["certificate"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty()),
            )
        })
        .collect()
}

/// A tenant with Kamaji's kubelet settings (cgroupfs, JSON patches as Kamaji users
/// write them), its control plane running, the operator's objects applied.
async fn joinable_tenant(
    env: &TenantEnv,
    client: &kube::Client,
    name: &str,
    controller_manager_flags: &[(&str, String)],
) -> (Tenant, crate::support::tenant::ControlPlane) {
    let tenant = env.create_tenant(name);
    kubectl_ok(&[
        "patch",
        "tcp",
        &tenant.name,
        "-n",
        &env.namespace,
        "--type=merge",
        "-p",
        r#"{"spec":{"kubernetes":{"kubelet":{"cgroupfs":"cgroupfs","configurationJSONPatches":[
            {"op":"add","path":"/featureGates","value":{"KubeletEnsureSecretPulledImages":false}},
            {"op":"add","path":"/failCgroupV1","value":false},
            {"op":"remove","path":"/crashLoopBackOff"}]}}}}"#,
    ]);
    env.wait_status(client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    let plane = env
        .start_control_plane_with(client, &tenant, Some(controller_manager_flags))
        .await;
    wait_condition(env, client, &tenant, "True", "Applied", Duration::from_secs(120)).await;
    (tenant, plane)
}

/// `kubeadm token create --print-join-command` with the tenant's admin.conf: the
/// arguments after `kubeadm join`, checked to aim at the tenant on 127.0.0.1.
async fn join_command(env: &TenantEnv, client: &kube::Client, tenant: &Tenant) -> Vec<String> {
    let admin = env.kubeconfig(client, tenant, "admin.conf").await;
    let out = std::process::Command::new(crate::support::built("kubeadm"))
        .args(["token", "create", "--print-join-command", "--kubeconfig"])
        .arg(&admin)
        .output()
        .expect("running kubeadm token create");
    assert!(
        out.status.success(),
        "kubeadm token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let command = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let words: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    assert_eq!(
        words.get(..2),
        Some(&["kubeadm".to_string(), "join".to_string()][..]),
        "{command}"
    );
    // Everything listens on 127.0.0.1: the command must aim there, nowhere else.
    assert_eq!(
        words.get(2),
        Some(&format!("127.0.0.1:{}", tenant.port)),
        "{command}"
    );
    words[2..].to_vec()
}

/// tests/cluster/node-join.sh's command line; the kubelet built from the pinned
/// module first on PATH (kubeadm's preflight runs `kubelet --version`).
fn node_join_command(
    root: &std::path::Path,
    node: &str,
    part: &str,
    join: &[String],
) -> std::process::Command {
    let kubelet = crate::support::built("kubelet");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/node-join.sh");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![kubelet.parent().expect("the bin directory").to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    let mut command = std::process::Command::new(script);
    command
        .arg(root)
        .arg(node)
        .arg(crate::support::built("kubeadm"))
        .arg(part)
        .arg("--")
        .args(join)
        .env("PATH", std::env::join_paths(dirs).expect("PATH"));
    command
}

/// What kubeadm join printed and left on the node, checked as a user would.
fn assert_joined(root: &std::path::Path) {
    let log = std::fs::read_to_string(root.join("kubeadm-join.log")).unwrap_or_default();
    println!("--- kubeadm join ---\n{log}");
    // Discovery with the token, the control plane's configuration read (and valid
    // under kubeadm's strict decoding), the kubelet configured from the tenant's.
    for expected in [
        "Cluster info signature and contents are valid",
        "Reading configuration from the \"kubeadm-config\" ConfigMap",
        "This node has joined the cluster",
    ] {
        assert!(log.contains(expected), "no {expected:?} in:\n{log}");
    }
    for unwanted in ["strict decoding error", "unknown field"] {
        assert!(!log.contains(unwanted), "{unwanted:?} in:\n{log}");
    }
    let node_config =
        std::fs::read_to_string(root.join("var-lib-kubelet/config.yaml")).expect("kubeadm wrote config.yaml");
    for expected in [
        "cgroupDriver: cgroupfs",
        "KubeletEnsureSecretPulledImages: false",
        "failCgroupV1: false",
        "rotateCertificates: true",
    ] {
        assert!(
            node_config.contains(expected),
            "no {expected:?} in:\n{node_config}"
        );
    }
}

/// The node's current client certificate (kubelet-client-current.pem links to
/// /var/lib/kubelet/pki/kubelet-client-<time>.pem, a path inside the node's mount
/// namespace: followed under the test's directory), certificates only.
fn node_certificate(root: &std::path::Path) -> Option<Vec<u8>> {
    let pki = root.join("var-lib-kubelet/pki");
    let link = std::fs::read_link(pki.join("kubelet-client-current.pem")).ok()?;
    let pem = std::fs::read(pki.join(link.file_name()?)).ok()?;
    Some(certificates_only(&pem))
}

fn serial(dir: &std::path::Path, certificate: &[u8]) -> String {
    let file = crate::support::tenant::write(
        dir,
        &format!("cert-{:08x}.pem", rand::random::<u32>()),
        certificate,
    );
    crate::support::openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-serial".as_ref(),
        "-in".as_ref(),
        file.as_os_str(),
    ])
    .trim()
    .to_string()
}

/// Both CSRs approved by the tenant itself: the bootstrap token's (nodeclient) and
/// the node's own renewal (selfnodeclient).
fn assert_bootstrap_and_renewal_csrs(env: &TenantEnv, super_admin: &std::path::Path, node: &str) {
    let requests = csrs(env, super_admin);
    let user = format!("system:node:{node}");
    assert!(
        requests
            .iter()
            .any(|(u, reason, signed)| u.starts_with("system:bootstrap:")
                && reason == "AutoApproved"
                && *signed),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|(u, reason, signed)| *u == user && reason == "AutoApproved" && *signed),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_node_joins_with_kubeadm_join_and_rotates_its_client_certificate() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "tenant-join").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let (tenant, plane) = joinable_tenant(&env, &client, "join", &[]).await;

    // What kubeadm join reads, as the operator applied it.
    let admin = env.kubeconfig(&client, &tenant, "admin.conf").await;
    let kubelet_config = env.kubectl_ok(
        &admin,
        &[
            "get",
            "configmap",
            "-n",
            "kube-system",
            "kubelet-config",
            "-o",
            "jsonpath={.data.kubelet}",
        ],
    );
    assert!(
        kubelet_config.contains("cgroupDriver: cgroupfs"),
        "{kubelet_config}"
    );
    let kubeadm_config = env.kubectl_ok(
        &admin,
        &[
            "get",
            "configmap",
            "-n",
            "kube-system",
            "kubeadm-config",
            "-o",
            "jsonpath={.data.ClusterConfiguration}",
        ],
    );
    assert!(
        kubeadm_config.contains(&format!("controlPlaneEndpoint: 127.0.0.1:{}", tenant.port)),
        "{kubeadm_config}"
    );

    let mut join = join_command(&env, &client, &tenant).await;
    join.extend(
        [
            // The kubelet's part is tests/cluster/cmd/kubelet-bootstrap, with no container
            // runtime: the runtime checks are ignored, ip_forward (a sysctl of the
            // machine, not the test's to change), and SystemVerification, which on this
            // cgroup v1 machine kubeadm wants skipped explicitly beside failCgroupV1: false
            // (the tenant's patch). Every other check runs, the kubelet version one
            // against the kubelet built from the pinned module.
            "--ignore-preflight-errors=CRI,ContainerRuntimeVersion,FileContent--proc-sys-net-ipv4-ip_forward,\
             SystemVerification",
            "--cri-socket=unix:///var/run/containerd/containerd.sock",
            // Waits on the kubelet's /healthz, which only a real kubelet serves; the test
            // checks what it checks next (the bootstrapped credentials work) itself.
            "--skip-phases=kubelet-wait-bootstrap",
            "--v=1",
        ]
        .map(String::from),
    );
    let node = "worker-join-0";
    let root = env.dir().join("node");
    std::fs::create_dir_all(&root).expect("node root");
    let bootstrap = crate::support::built("kubelet-bootstrap");
    let mut command = node_join_command(&root, node, &format!("bootstrap:{}", bootstrap.display()), &join);
    let started = std::time::Instant::now();
    let joined = tokio::task::spawn_blocking(move || command.output().expect("running node-join.sh"))
        .await
        .expect("node-join.sh");
    let log = std::fs::read_to_string(root.join("kubeadm-join.log")).unwrap_or_default();
    let bootstrap_log = std::fs::read_to_string(root.join("kubelet-bootstrap.log")).unwrap_or_default();
    assert!(
        joined.status.success(),
        "node-join.sh failed ({}): {}\n--- kubeadm join ---\n{log}\n--- kubelet-bootstrap ---\n{bootstrap_log}\n{}",
        joined.status,
        String::from_utf8_lossy(&joined.stderr),
        plane.logs()
    );
    println!("kubeadm join and the TLS bootstrap took {:?}", started.elapsed());
    assert_joined(&root);

    // The kubelet's side: bootstrapped, registered, rotated, all signed by the tenant.
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("kubelet-bootstrap.json")).expect("kubelet-bootstrap output"),
    )
    .unwrap_or_else(|e| panic!("kubelet-bootstrap printed no JSON ({e}):\n{bootstrap_log}"));
    let user = format!("system:node:{node}");
    assert_eq!(report["user"], user.as_str(), "{report}");
    assert!(
        report["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "system:nodes")),
        "{report}"
    );
    assert_eq!(report["rotatedUser"], user.as_str(), "{report}");
    assert_ne!(report["rotatedSerial"], report["bootstrapSerial"], "{report}");
    let super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;
    let nodes = env.kubectl_ok(&super_admin, &["get", "nodes", "-o", "name"]);
    assert!(nodes.lines().any(|l| l == format!("node/{node}")), "{nodes}");
    assert_bootstrap_and_renewal_csrs(&env, &super_admin, node);
    let ca = env.secret_value(&client, &tenant, "ca", "ca.crt").await;
    let current = node_certificate(&root).expect("the node's certificate");
    assert_chain(env.dir(), &ca, &current, "the node's rotated client certificate");
}

/// Removes the `kubepods` cgroups a kubelet leaves behind (cgroupfs is the
/// machine's, not namespaced here); rmdir only removes cgroups without tasks.
struct KubeletCgroups;

impl Drop for KubeletCgroups {
    fn drop(&mut self) {
        fn remove(dir: &std::path::Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&entry.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        for controller in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            remove(&controller.path().join("kubepods"));
        }
    }
}

/// containerd from the Debian package, on a socket of the test's own, its CRI
/// streaming server on 127.0.0.1; killed on drop.
fn start_containerd(dir: &std::path::Path) -> (crate::support::tenant::Process, std::path::PathBuf) {
    let containerd = crate::support::on_path("containerd", "containerd");
    crate::support::on_path("runc", "runc");
    let socket = dir.join("containerd.sock");
    let config = format!(
        "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n[grpc]\n  address = \"{socket}\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\"]\n  stream_server_address = \"127.0.0.1\"\n  \
         stream_server_port = \"0\"\n",
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        socket = socket.display(),
    );
    let config = crate::support::tenant::write(dir, "containerd.toml", config.as_bytes());
    let process = crate::support::tenant::Process::start(
        "containerd",
        &containerd,
        &["--config".into(), config.display().to_string()],
        dir,
    );
    (process, socket)
}

/// A real kubelet joined to a tenant with `kubeadm join`, in its own mount
/// namespace; stopped (kubelet, then containerd, then its cgroups) when dropped.
struct RealNode {
    root: std::path::PathBuf,
    joiner: crate::support::tenant::Process,
    containerd: crate::support::tenant::Process,
    _cgroups: KubeletCgroups,
}

/// Joins a real kubelet named `node` with `kubeadm join` and a token from `kubeadm
/// token create`, and waits until its Node is registered.
async fn join_real_kubelet(
    env: &TenantEnv,
    client: &kube::Client,
    tenant: &Tenant,
    plane: &crate::support::tenant::ControlPlane,
    node: &str,
) -> RealNode {
    let root = env.dir().join(format!("{node}-root"));
    std::fs::create_dir_all(&root).expect("node root");
    let (mut containerd, socket) = start_containerd(&env.dir().join(format!("{node}-containerd")));

    // Node-local settings, as kubeadm takes them (--patches): everything on 127.0.0.1.
    let patches = root.join("patches");
    let port = crate::support::tenant::free_port();
    let healthz = crate::support::tenant::free_port();
    crate::support::tenant::write(
        &patches,
        "kubeletconfiguration+merge.yaml",
        format!("address: 127.0.0.1\nport: {port}\nhealthzPort: {healthz}\nreadOnlyPort: 0\n").as_bytes(),
    );
    let mut join = join_command(env, client, tenant).await;
    join.extend([
        // ip_forward is a sysctl of the machine, not the test's to change; on this
        // cgroup v1 machine kubeadm wants SystemVerification skipped explicitly beside
        // failCgroupV1: false (the tenant's patch); Debian 12's containerd 1.6 lacks
        // the RuntimeConfig call ContainerRuntimeVersion asks for.
        "--ignore-preflight-errors=FileContent--proc-sys-net-ipv4-ip_forward,SystemVerification,\
         ContainerRuntimeVersion"
            .to_string(),
        format!("--cri-socket=unix://{}", socket.display()),
        format!("--patches={}", patches.display()),
        "--v=1".to_string(),
    ]);
    let kubelet = crate::support::built("kubelet");
    let mut command = node_join_command(&root, node, &format!("kubelet:{}", kubelet.display()), &join);
    // The kubelet refuses a loopback node IP ("nodeIP can't be loopback address") and
    // then reports no address at all: nothing is pointed at another interface of
    // this machine (the API server has no address to reach the kubelet by, so the
    // test does not use logs, exec or the node proxy).
    command.env("KUBELET_EXTRA_ARGS", "--node-ip=127.0.0.1");
    let started = std::time::Instant::now();
    let cgroups = KubeletCgroups;
    let mut joiner = crate::support::tenant::Process::start_command("node-join", command, &root);
    let super_admin = env.kubeconfig(client, tenant, "super-admin.conf").await;
    let registered = tokio::time::timeout(Duration::from_secs(240), async {
        loop {
            if root.join("joined").exists()
                && env.kubectl(&super_admin, &["get", "node", node]).status.success()
            {
                return;
            }
            if joiner.exited() {
                panic!(
                    "kubeadm join failed:\n{}",
                    std::fs::read_to_string(root.join("kubeadm-join.log")).unwrap_or_default()
                );
            }
            containerd.assert_running();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    let kubelet_log = std::fs::read_to_string(root.join("kubelet.log")).unwrap_or_default();
    let tail: Vec<&str> = kubelet_log.lines().rev().take(40).collect();
    assert!(
        registered.is_ok(),
        "the node did not join within 240s\n--- kubeadm join ---\n{}\n--- kubelet ---\n{}\n{}",
        std::fs::read_to_string(root.join("kubeadm-join.log")).unwrap_or_default(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        plane.logs()
    );
    println!(
        "kubeadm join and the real kubelet's TLS bootstrap took {:?}",
        started.elapsed()
    );
    assert_joined(&root);
    RealNode {
        root,
        joiner,
        containerd,
        _cgroups: cgroups,
    }
}

#[tokio::test]
async fn a_real_kubelet_joins_with_kubeadm_join_and_rotates_its_client_certificate() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "tenant-kubelet").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    // Certificates short enough for the kubelet's own rotation (at 70-90% of the
    // lifetime, NotBefore backdated 5 minutes: 1.3 to 3.1 minutes after issuance).
    let signing = [("cluster-signing-duration", "4m".to_string())];
    let (tenant, plane) = joinable_tenant(&env, &client, "kubelet", &signing).await;
    let node = "worker-kubelet-0";
    let started = std::time::Instant::now();
    let mut real = join_real_kubelet(&env, &client, &tenant, &plane, node).await;
    let root = real.root.clone();
    let super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;
    let ca = env.secret_value(&client, &tenant, "ca", "ca.crt").await;
    let first = node_certificate(&root).expect("the node's bootstrapped certificate");
    assert_chain(
        env.dir(),
        &ca,
        &first,
        "the kubelet's bootstrapped client certificate",
    );
    let first_serial = serial(env.dir(), &first);

    // The kubelet rotates its client certificate on its own, through a CSR the
    // tenant approves (selfnodeclient) and signs.
    let rotated = eventually(
        "the kubelet to rotate its client certificate",
        Duration::from_secs(300),
        || async {
            let current = node_certificate(&root)?;
            (serial(env.dir(), &current) != first_serial).then_some(current)
        },
    )
    .await;
    println!(
        "the kubelet rotated its certificate {:?} after joining",
        started.elapsed()
    );
    real.joiner.assert_running();
    assert_chain(
        env.dir(),
        &ca,
        &rotated,
        "the kubelet's rotated client certificate",
    );
    assert_bootstrap_and_renewal_csrs(&env, &super_admin, node);
}

/// `spec.renewTime` of the node's Lease in `kube-node-lease`: the kubelet's heartbeat.
fn lease_renewed(env: &TenantEnv, kubeconfig: &std::path::Path, node: &str) -> Option<String> {
    let out = env.kubectl(
        kubeconfig,
        &[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            node,
            "-o",
            "jsonpath={.spec.renewTime}",
        ],
    );
    let time = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !time.is_empty()).then_some(time)
}

/// The kubelet.conf kubeadm join left on the node: its CA bundle and server.
fn kubelet_conf_ca(root: &std::path::Path) -> Vec<u8> {
    let raw = std::fs::read(root.join("etc-kubernetes/kubelet.conf")).expect("kubelet.conf");
    Kubeconfig::parse(&raw)
        .expect("kubelet.conf parses")
        .current_ca_pem()
        .expect("readable")
        .expect("a CA")
}

/// Issue 11, worker nodes: a real kubelet joined with `kubeadm join` before a CA
/// rotation, rotating its client certificate (`rotateCertificates: true`), is never
/// touched by anyone: its next renewal goes through a CSR the tenant signs with the
/// new CA, the rotation completes by itself once the operator sees that, and its
/// kubelet.conf (still the old CA only) keeps verifying the API server through the
/// cross-signed intermediate: its heartbeats go on after completion.
#[tokio::test]
async fn a_real_kubelet_survives_a_ca_rotation_with_no_manual_step() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "tenant-kubelet-ca").await;
    let env = TenantEnv::start_with(&client, &ns.name, &["--ca-rotation-grace-period", "30s"]).await;
    let signing = [("cluster-signing-duration", "4m".to_string())];
    let (tenant, first_plane) = joinable_tenant(&env, &client, "kubelet-ca", &signing).await;
    let node = "worker-kubelet-ca";
    let mut real = join_real_kubelet(&env, &client, &tenant, &first_plane, node).await;
    let mut plane = Some(first_plane);
    let old_ca = env.secret_value(&client, &tenant, "ca", "ca.crt").await;
    assert_eq!(
        kubelet_conf_ca(&real.root),
        old_ca,
        "joined trusting the CA of the time"
    );

    env.rotate_ca(&tenant);
    env.follow_rollouts_to_ca_phase(
        &client,
        &tenant,
        &mut plane,
        &signing,
        CaRotationPhase::Prepared,
        |_| {},
    )
    .await;
    let new_ca = env.secret_value(&client, &tenant, "ca", "tls.crt").await;

    // The kubelet renews by itself (4-minute certificates) and the tenant signs with
    // the new CA; the rotation then completes by itself (node seen renewed, grace passed).
    let renewed = env
        .follow_rollouts(
            &client,
            &tenant,
            &mut plane,
            &signing,
            "the kubelet's renewal under the new CA",
            |_| {},
            || async {
                let current = node_certificate(&real.root)?;
                kamaji::pki::Authority::from_pem(&new_ca, None)
                    .ok()?
                    .verify_pem(&current, None, time::OffsetDateTime::now_utc())
                    .is_ok()
                    .then_some(current)
            },
        )
        .await;
    assert_chain(
        env.dir(),
        &new_ca,
        &renewed,
        "the kubelet's renewed client certificate",
    );
    env.follow_rollouts_to_ca_phase(
        &client,
        &tenant,
        &mut plane,
        &signing,
        CaRotationPhase::Completed,
        |_| {},
    )
    .await;
    let completed_ca = env.secret_value(&client, &tenant, "ca", "ca.crt").await;
    assert_eq!(completed_ca, new_ca, "the old CA retired");

    // Nobody touched the node: kubelet.conf still trusts only the old CA, and the
    // kubelet's heartbeats go on against the server of the completed rotation.
    assert_eq!(kubelet_conf_ca(&real.root), old_ca, "kubelet.conf was not edited");
    let super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;
    let at_completion = lease_renewed(&env, &super_admin, node);
    let later = eventually(
        "a heartbeat of the kubelet after completion",
        Duration::from_secs(90),
        || async { lease_renewed(&env, &super_admin, node).filter(|t| Some(t) != at_completion.as_ref()) },
    )
    .await;
    real.joiner.assert_running();
    real.containerd.assert_running();
    println!("the kubelet's lease renewed at {later} after the completed CA rotation");
    let tcp = kube::Api::<TenantControlPlane>::namespaced(client.clone(), &ns.name)
        .get(&tenant.name)
        .await
        .expect("the TCP");
    let nodes = tcp
        .status
        .and_then(|s| s.credentials?.rotation?.certificate_authorities?.nodes)
        .expect("nodes observed");
    assert_eq!(nodes.renewed, vec![node.to_string()]);
    assert!(
        env.events(&client, &tenant, "NodesNeedNewCa").await.is_empty(),
        "no manual step was asked for"
    );
}

/// The object of `kind` named `name` in a list of JSON objects.
fn find<'a>(objects: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {objects:#?}"))
}

/// What kubeadm's own addon phase renders (`kubeadm init phase addon <addon>
/// --print-manifest`) for a tenant with a service CIDR, pod CIDR, cluster domain and
/// endpoint of its own (the advertise address is a documentation one: nothing is
/// contacted with --print-manifest). kubeadm's resourceVersion workaround, meaningless
/// for server-side apply, is dropped.
fn kubeadm_addon(addon: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::support::tenant::write(
        dir.path(),
        "kubeadm.yaml",
        b"apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  \
          advertiseAddress: 192.0.2.10\n  bindPort: 6443\nnodeRegistration:\n  name: oracle\n---\n\
          apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.37.2\n\
          controlPlaneEndpoint: 127.0.0.1:16443\nnetworking:\n  dnsDomain: tenant.local\n  \
          podSubnet: 10.128.0.0/14\n  serviceSubnet: 10.0.0.0/24\n",
    );
    let out = std::process::Command::new(crate::support::built("kubeadm"))
        .args(["init", "phase", "addon", addon, "--print-manifest", "--config"])
        .arg(&config)
        .output()
        .expect("running kubeadm");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
    rendered
        .split("\n---")
        .map(|doc| doc.trim_start_matches("---"))
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| {
            let mut value: serde_json::Value = serde_saphyr::from_str(doc)
                .unwrap_or_else(|e| panic!("kubeadm printed invalid YAML ({e}):\n{doc}"));
            if let Some(meta) = value["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
            value
        })
        .collect()
}

/// The oracle's tenant, with `addons` under spec.
fn oracle_tenant(addons: &str) -> kamaji::api::TenantControlPlane {
    serde_saphyr::from_str(&format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: oracle\n  \
         namespace: n\nspec:\n  controlPlane:\n    deployment:\n      replicas: 1\n    service:\n      \
         serviceType: ClusterIP\n  kubernetes:\n    version: v1.37.2\n  networkProfile:\n    port: 16443\n    \
         serviceCidr: 10.0.0.0/24\n    podCidr: 10.128.0.0/14\n    clusterDomain: tenant.local\n  addons:\n{addons}"
    ))
    .expect("a TenantControlPlane")
}

/// Each of our objects, our managed-by label aside, equals kubeadm's of the same kind and name.
fn assert_equal_to_kubeadm(ours: Vec<serde_json::Value>, theirs: &[serde_json::Value]) {
    assert_eq!(ours.len(), theirs.len(), "kubeadm renders {theirs:#?}");
    for mut object in ours {
        let labels = &mut object["metadata"]["labels"];
        let removed = labels
            .as_object_mut()
            .and_then(|l| l.remove(kamaji::tenant::bootstrap::MANAGED_BY.0));
        assert_eq!(removed.as_ref().and_then(|v| v.as_str()), Some("kamaji-rs"));
        if labels.as_object().is_some_and(|l| l.is_empty())
            && let Some(meta) = object["metadata"].as_object_mut()
        {
            meta.remove("labels");
        }
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            &object,
            find(theirs, &kind, &name),
            "{kind} {name} differs from kubeadm's"
        );
    }
}

fn json<T: serde::Serialize>(object: &T) -> serde_json::Value {
    serde_json::to_value(object).expect("JSON")
}

#[test]
fn coredns_objects_equal_what_kubeadm_renders_for_the_same_inputs() {
    let dns = kamaji::tenant::addons::core_dns(&oracle_tenant("    coreDNS: {}\n"))
        .expect("builds")
        .expect("enabled");
    let ours = vec![
        json(&dns.service_account),
        json(&dns.cluster_role),
        json(&dns.cluster_role_binding),
        json(&dns.config_map),
        json(&dns.service),
        json(&dns.deployment),
    ];
    assert_equal_to_kubeadm(ours, &kubeadm_addon("coredns"));
}

#[test]
fn kube_proxy_objects_equal_what_kubeadm_renders_for_the_same_inputs() {
    let proxy = kamaji::tenant::addons::kube_proxy(&oracle_tenant("    kubeProxy: {}\n"), "127.0.0.1:16443")
        .expect("builds")
        .expect("enabled");
    let config = &proxy.config_map.data.as_ref().expect("data")["config.conf"];
    assert!(config.contains("clusterCIDR: 10.128.0.0/14"), "{config}");
    let ours = vec![
        json(&proxy.service_account),
        json(&proxy.cluster_role_binding),
        json(&proxy.role),
        json(&proxy.role_binding),
        json(&proxy.config_map),
        json(&proxy.daemon_set),
    ];
    assert_equal_to_kubeadm(ours, &kubeadm_addon("kube-proxy"));
}

#[tokio::test]
async fn coredns_and_kube_proxy_are_installed_in_the_tenant_and_removed_with_the_addons() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "tenant-dns").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let tenant = env.create_tenant("dns");
    kubectl_ok(&[
        "patch",
        "tcp",
        &tenant.name,
        "-n",
        &ns.name,
        "--type=merge",
        "-p",
        r#"{"spec":{"addons":{"coreDNS":{},"kubeProxy":{}}}}"#,
    ]);
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    let _plane = env.start_control_plane(&client, &tenant, false).await;
    wait_condition(
        &env,
        &client,
        &tenant,
        "True",
        "Applied",
        Duration::from_secs(120),
    )
    .await;
    let admin = env.kubeconfig(&client, &tenant, "admin.conf").await;
    let ip = env.kubectl_ok(
        &admin,
        &[
            "get",
            "service",
            "-n",
            "kube-system",
            "kube-dns",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    assert_eq!(ip, "10.96.0.10", "the tenth address of the default service CIDR");
    let image = env.kubectl_ok(
        &admin,
        &[
            "get",
            "deployment",
            "-n",
            "kube-system",
            "coredns",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert_eq!(image, "registry.k8s.io/coredns/coredns:v1.14.6");
    let proxy_config = env.kubectl_ok(
        &admin,
        &[
            "get",
            "configmap",
            "-n",
            "kube-system",
            "kube-proxy",
            "-o",
            "jsonpath={.data.config\\.conf}",
        ],
    );
    assert!(
        proxy_config.contains("clusterCIDR: 10.244.0.0/16"),
        "{proxy_config}"
    );
    let proxy_kubeconfig = env.kubectl_ok(
        &admin,
        &[
            "get",
            "configmap",
            "-n",
            "kube-system",
            "kube-proxy",
            "-o",
            "jsonpath={.data.kubeconfig\\.conf}",
        ],
    );
    assert!(
        proxy_kubeconfig.contains(&format!("server: {}", tenant.server())),
        "{proxy_kubeconfig}"
    );
    env.kubectl_ok(&admin, &["get", "daemonset", "-n", "kube-system", "kube-proxy"]);

    // Removed from the spec: the operator removes what it installed.
    kubectl_ok(&[
        "patch",
        "tcp",
        &tenant.name,
        "-n",
        &ns.name,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/addons/coreDNS"},{"op":"remove","path":"/spec/addons/kubeProxy"}]"#,
    ]);
    eventually(
        "CoreDNS and kube-proxy removed from the tenant",
        Duration::from_secs(120),
        || async {
            let gone = |args: &[&str]| {
                let out = env.kubectl(&admin, args);
                !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
            };
            (gone(&["get", "deployment", "-n", "kube-system", "coredns"])
                && gone(&["get", "service", "-n", "kube-system", "kube-dns"])
                && gone(&["get", "clusterrole", "system:coredns"])
                && gone(&["get", "serviceaccount", "-n", "kube-system", "coredns"])
                && gone(&["get", "daemonset", "-n", "kube-system", "kube-proxy"])
                && gone(&["get", "configmap", "-n", "kube-system", "kube-proxy"])
                && gone(&["get", "clusterrolebinding", "kubeadm:node-proxier"]))
            .then_some(())
        },
    )
    .await;
}

/// A fake worker node for kwok (tests/cluster/kwok/nodes.yaml's shape): Linux,
/// untainted, annotated for kwok.
fn fake_node(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  annotations:\n    kwok.x-k8s.io/node: fake\n  \
         labels:\n    kubernetes.io/arch: amd64\n    kubernetes.io/hostname: {name}\n    kubernetes.io/os: linux\n    \
         type: kwok\n"
    )
}

/// `kubectl rollout status <what> --watch=false`, once it reports the rollout done.
fn rolled_out(env: &TenantEnv, admin: &std::path::Path, what: &str) -> Option<String> {
    let out = env.kubectl(
        admin,
        &["-n", "kube-system", "rollout", "status", what, "--watch=false"],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && text.contains("successfully rolled out")).then_some(text)
}

#[tokio::test]
async fn coredns_and_kube_proxy_become_available_on_fake_nodes_in_the_tenant() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "tenant-kwok").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let tenant = env.create_tenant("kwok");
    kubectl_ok(&[
        "patch",
        "tcp",
        &tenant.name,
        "-n",
        &ns.name,
        "--type=merge",
        "-p",
        r#"{"spec":{"addons":{"coreDNS":{},"kubeProxy":{}}}}"#,
    ]);
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    // The scheduler places the pods, the controller-manager runs the Deployment,
    // ReplicaSet and DaemonSet controllers and lifts the not-ready taint of new nodes.
    let mut plane = env.start_whole_control_plane(&client, &tenant).await;
    wait_condition(
        &env,
        &client,
        &tenant,
        "True",
        "Applied",
        Duration::from_secs(120),
    )
    .await;

    // kwok plays the kubelet of every fake node, so it acts for all of them: no one
    // node's identity (system:node:<name>, confined by the Node authorizer to its own
    // objects) may, and the operator issues no narrower credential that can; it runs
    // with the tenant's admin.conf, as a tenant administrator would run it.
    let admin = env.kubeconfig(&client, &tenant, "admin.conf").await;
    let mut kwok = env.start_kwok(&admin);
    let nodes = ["tenant-kwok-0", "tenant-kwok-1"];
    for node in nodes {
        let file =
            crate::support::tenant::write(env.dir(), &format!("{node}.yaml"), fake_node(node).as_bytes());
        env.kubectl_ok(&admin, &["apply", "-f", &file.display().to_string()]);
    }

    // Fails early with the logs if kwok or a control-plane component died.
    let coredns = eventually("deployment/coredns rolled out", Duration::from_secs(180), || {
        kwok.assert_running();
        plane.assert_running();
        let done = rolled_out(&env, &admin, "deployment/coredns");
        async move { done }
    })
    .await;
    assert!(
        coredns.contains("\"coredns\" successfully rolled out"),
        "{coredns}"
    );
    let available = env.kubectl_ok(
        &admin,
        &[
            "get",
            "deployment",
            "-n",
            "kube-system",
            "coredns",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status} {.status.readyReplicas}/{.spec.replicas}",
        ],
    );
    assert_eq!(available, "True 2/2", "kubeadm's CoreDNS runs two replicas");

    eventually(
        "daemonset/kube-proxy rolled out",
        Duration::from_secs(180),
        || async { rolled_out(&env, &admin, "daemonset/kube-proxy") },
    )
    .await;
    let counts = env.kubectl_ok(
        &admin,
        &[
            "get",
            "daemonset",
            "-n",
            "kube-system",
            "kube-proxy",
            "-o",
            "jsonpath={.status.desiredNumberScheduled} {.status.currentNumberScheduled} {.status.numberReady} \
             {.status.numberAvailable}",
        ],
    );
    assert_eq!(counts, "2 2 2 2", "one ready kube-proxy on each fake node");
    let placed = env.kubectl_ok(
        &admin,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "k8s-app=kube-proxy",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ],
    );
    let mut placed: Vec<&str> = placed.lines().collect();
    placed.sort();
    assert_eq!(placed, nodes, "kube-proxy pods by node");
}

#[tokio::test]
async fn the_kubeconfig_secret_key_annotation_chooses_the_credentials_used_in_the_tenant() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "tenant-key").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let tenant = env.create_tenant("keyed");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    let _plane = env.start_control_plane(&client, &tenant, false).await;
    wait_condition(
        &env,
        &client,
        &tenant,
        "True",
        "Applied",
        Duration::from_secs(120),
    )
    .await;
    let annotate = |key: &str| {
        crate::support::kubectl_ok(&[
            "annotate",
            "tcp",
            &tenant.name,
            "-n",
            &ns.name,
            "--overwrite",
            &format!("kamaji.clastix.io/kubeconfig-secret-key={key}"),
        ]);
    };
    // A key the admin kubeconfig Secret does not hold: reported, naming it.
    annotate("missing.conf");
    let message = wait_condition(
        &env,
        &client,
        &tenant,
        "False",
        "CredentialsMissing",
        Duration::from_secs(90),
    )
    .await;
    assert!(message.contains("missing.conf"), "{message}");
    // Another key it holds: used, and the tenant is set up again.
    annotate("super-admin.svc");
    wait_condition(
        &env,
        &client,
        &tenant,
        "True",
        "Applied",
        Duration::from_secs(120),
    )
    .await;
}

/// The groups in the subject of a PEM certificate.
fn organizations(pem: &[u8]) -> Vec<String> {
    let der = kamaji::pki::first_certificate_der(pem).expect("a PEM certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("X.509");
    cert.subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_api_server_kubelet_client_leaves_cluster_admins_once_the_tenant_grants_it_the_kubelet_api() {
    use kamaji::controllers::tenant_cluster::KUBELET_CLIENT_CONDITION;
    const SUFFIX: &str = "api-server-kubelet-client-certificate";
    const USER: &str = "kube-apiserver-kubelet-client";
    let client = client().await;
    let ns = TestNamespace::create(&client, "kubelet-client").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let tenant = env.create_tenant("kubelet-client");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    let issued = env
        .secret_value(&client, &tenant, SUFFIX, "apiserver-kubelet-client.crt")
        .await;
    assert!(
        organizations(&issued).is_empty(),
        "a new tenant's kubelet client has no group"
    );

    // A tenant provisioned by kamaji-rs 0.1.0: its kubelet client is a cluster-admin.
    let old = env
        .sign_client(&client, &tenant, USER, Some("kubeadm:cluster-admins"))
        .await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), &ns.name);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    secrets
        .patch(
            &tenant.secret(SUFFIX),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"data": {
                "apiserver-kubelet-client.crt": b64(&old.certificate_pem),
                "apiserver-kubelet-client.key": b64(&old.key_pem),
            }})),
        )
        .await
        .expect("planting the 0.1.0 certificate");
    // Nothing grants the user the kubelet API yet (the tenant's API server is not
    // running): re-issuing now would cut the API server off its kubelets. Kept.
    tokio::time::sleep(Duration::from_secs(10)).await;
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    let kept = env
        .secret_value(&client, &tenant, SUFFIX, "apiserver-kubelet-client.crt")
        .await;
    assert_eq!(
        kept,
        old.certificate_pem.as_bytes(),
        "re-issued before the tenant grants the user"
    );
    assert!(
        env.condition(&client, &tenant, KUBELET_CLIENT_CONDITION)
            .await
            .is_none()
    );

    // The tenant answers: the binding first, then the certificate without the group.
    let _plane = env.start_control_plane(&client, &tenant, false).await;
    let before_binding = env.deployment_generation(&client, &tenant).await;
    eventually(
        "KubeletClientAuthorized=True",
        Duration::from_secs(120),
        || async {
            env.condition(&client, &tenant, KUBELET_CLIENT_CONDITION)
                .await
                .filter(|c| c.status == "True")
        },
    )
    .await;
    let reissued = eventually(
        "the kubelet client re-issued without kubeadm:cluster-admins",
        Duration::from_secs(60),
        || async {
            let pem = env
                .secret_value(&client, &tenant, SUFFIX, "apiserver-kubelet-client.crt")
                .await;
            (pem != old.certificate_pem.as_bytes()).then_some(pem)
        },
    )
    .await;
    assert!(
        organizations(&reissued).is_empty(),
        "{:?}",
        organizations(&reissued)
    );
    env.wait_rolled_out_after(&client, &tenant, before_binding).await;

    // What the re-issued credential may do in the tenant: the kubelet API, nothing more.
    let key = env
        .secret_value(&client, &tenant, SUFFIX, "apiserver-kubelet-client.key")
        .await;
    let signed = crate::support::tenant::SignedClient {
        certificate_pem: String::from_utf8(reissued).expect("PEM"),
        key_pem: String::from_utf8(key).expect("PEM"),
        ca_pem: old.ca_pem.clone(),
    };
    let kubelet_client = env.client_kubeconfig(&tenant, USER, &signed);
    let (user, groups) = env.whoami(&kubelet_client);
    assert_eq!(user, USER);
    assert_eq!(groups, ["system:authenticated"]);
    let can = |verb: &str, resource: &str| {
        let out = env.kubectl(&kubelet_client, &["auth", "can-i", verb, resource]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(can("get", "nodes/proxy"), "yes");
    assert_eq!(can("get", "nodes/log"), "yes");
    assert_eq!(
        can("delete", "nodes"),
        "no",
        "system:kubelet-api-admin reads nodes, no more"
    );
    assert_eq!(can("create", "clusterrolebindings"), "no");
    assert_eq!(can("list", "secrets"), "no");
}

#[tokio::test]
async fn write_permissions_limit_the_tenant_and_lifting_them_restores_writes() {
    use kamaji::tenant::write_permissions::DENIED;
    let client = client().await;
    let ns = TestNamespace::create(&client, "write-limited").await;
    let env = TenantEnv::start(&client, &ns.name).await;
    let tenant = env.create_tenant("frozen");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    let _plane = env.start_control_plane(&client, &tenant, false).await;
    wait_condition(
        &env,
        &client,
        &tenant,
        "True",
        "Applied",
        Duration::from_secs(120),
    )
    .await;
    let admin = env.kubeconfig(&client, &tenant, "admin.conf").await;
    env.kubectl_ok(&admin, &["create", "configmap", "before", "--from-literal=k=v"]);

    let set = |permissions: &str| {
        kubectl_ok(&[
            "patch",
            "tcp",
            &tenant.name,
            "-n",
            &ns.name,
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"writePermissions":{permissions}}}}}"#),
        ]);
    };
    // Kamaji's quota mode: no creation, no deletion; updates go on.
    set(r#"{"blockCreation":true,"blockDeletion":true}"#);
    env.wait_status(&client, &tenant, KubernetesVersionStatus::WriteLimited)
        .await;
    // The API server enforces a new admission policy a moment after it is stored: a
    // creation may still pass, so each attempt creates a new name.
    let attempt = std::sync::atomic::AtomicUsize::new(0);
    let refused = eventually(
        "creations refused in the tenant",
        Duration::from_secs(120),
        || async {
            let name = format!(
                "during-{}",
                attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let out = env.kubectl(&admin, &["create", "configmap", &name, "--from-literal=k=v"]);
            (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
        },
    )
    .await;
    assert!(refused.contains(DENIED), "{refused}");
    let deleted = env.kubectl(&admin, &["delete", "configmap", "before"]);
    assert!(
        !deleted.status.success() && String::from_utf8_lossy(&deleted.stderr).contains(DENIED),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let cluster_scoped = env.kubectl(&admin, &["create", "namespace", "new-team"]);
    assert!(
        !cluster_scoped.status.success(),
        "cluster-scoped creations are refused too"
    );
    env.kubectl_ok(&admin, &["label", "configmap", "before", "updated=yes"]);
    env.kubectl_ok(
        &admin,
        &[
            "create",
            "configmap",
            "system-ok",
            "-n",
            "kube-system",
            "--from-literal=k=v",
        ],
    );
    // The operator keeps the tenant's kubeadm objects while writes are limited.
    let super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;
    env.kubectl_ok(
        &super_admin,
        &["delete", "clusterrolebinding", "kubeadm:get-nodes"],
    );
    eventually(
        "kubeadm:get-nodes restored while write-limited",
        kamaji::controllers::tenant_cluster::RESYNC + Duration::from_secs(60),
        || async {
            env.kubectl(&admin, &["get", "clusterrolebinding", "kubeadm:get-nodes"])
                .status
                .success()
                .then_some(())
        },
    )
    .await;

    // Lifted: Ready again, the policies gone, writes accepted.
    set("null");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    eventually("creations accepted again", Duration::from_secs(120), || async {
        env.kubectl(&admin, &["create", "configmap", "after", "--from-literal=k=v"])
            .status
            .success()
            .then_some(())
    })
    .await;
    let policies = env.kubectl_ok(
        &super_admin,
        &["get", "validatingadmissionpolicies", "-o", "name"],
    );
    assert!(!policies.contains("kamaji-write-permissions"), "{policies}");
    env.kubectl_ok(&admin, &["delete", "configmap", "before"]);
}
