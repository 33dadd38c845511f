//! Two-phase CA rotation on a real tenant API server started from the operator's
//! Secrets and Deployment: probes keep making requests through the whole rotation
//! and count refusals. A "node" holding an old-CA client certificate and an
//! old-CA-only bundle renews its certificate through a CSR the tenant signs, as a
//! kubelet does, and is never refused; a kubeconfig downloaded before the rotation
//! works until completion; the re-issued admin kubeconfig works throughout; after
//! completion an old-CA client certificate gets 401. And the operator killed with
//! SIGKILL in the middle of each phase converges with exactly one new CA.

use std::time::Duration;

use k8s_openapi::{
    ByteString,
    api::{
        certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec},
        core::v1::{ConfigMap, Secret},
    },
};
use kamaji::{
    api::{
        TenantControlPlane,
        rotation::{CaRotation, CaRotationPhase},
        tenant_control_plane::KubernetesVersionStatus,
    },
    pki::{
        Authority, certificates_der,
        kubeconfig::{Kubeconfig, KubeconfigParams},
    },
};
use kube::{Api, Client, api::PostParams};

use crate::support::{
    TestNamespace, client, eventually, kubectl_ok,
    probe::{Credentials, PhaseLabel, Probe, Stack, table},
    tenant::{ControlPlane, Tenant, TenantEnv, write},
};

const PHASES: &[&str] = &["before", "preparing", "prepared", "completing", "completed"];
const NODE: &str = "probe-node";

/// The TCP's `status.credentials.rotation.certificateAuthorities`.
async fn rotation_status(client: &Client, ns: &str, tenant: &Tenant) -> Option<CaRotation> {
    Api::<TenantControlPlane>::namespaced(client.clone(), ns)
        .get(&tenant.name)
        .await
        .ok()?
        .status?
        .credentials?
        .rotation?
        .certificate_authorities
}

async fn ca_secret(
    client: &Client,
    ns: &str,
    tenant: &Tenant,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get(&tenant.secret("ca"))
        .await
        .ok()
        .and_then(|s| s.data)
        .map(|d| d.into_iter().map(|(k, v)| (k, v.0)).collect())
        .unwrap_or_default()
}

/// What a kubelet does when its client certificate is due: a new key, a CSR for
/// `system:node:<node>` submitted with its current credentials, the certificate
/// the tenant's controller-manager signs; its CA bundle stays as it was.
async fn renew_like_a_kubelet(
    current: &[u8],
    node: &str,
    bundle_pem: &str,
    server: &str,
) -> (Vec<u8>, String) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    let request = params.serialize_request(&key).expect("a CSR").pem().expect("PEM");
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(std::str::from_utf8(current).expect("UTF-8")).expect("parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let csrs: Api<CertificateSigningRequest> = Api::all(Client::try_from(config).expect("client"));
    let mut csr = CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: "kubernetes.io/kube-apiserver-client-kubelet".into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    csr.metadata.generate_name = Some("node-csr-".into());
    let created = csrs
        .create(&PostParams::default(), &csr)
        .await
        .expect("the node may request");
    let name = created.metadata.name.expect("a name");
    let certificate = eventually(
        "the renewal CSR approved and signed",
        Duration::from_secs(60),
        || async { csrs.get(&name).await.ok()?.status?.certificate.map(|c| c.0) },
    )
    .await;
    let certificate = String::from_utf8(certificate).expect("PEM");
    let renewed = Kubeconfig::new(&KubeconfigParams {
        cluster_name: "tenant",
        server,
        ca_pem: bundle_pem,
        user: &format!("system:node:{node}"),
        client_certificate_pem: &certificate,
        client_key_pem: &key.serialize_pem(),
    });
    (renewed.to_yaml().expect("YAML").into_bytes(), certificate)
}

/// Keeps `credentials` equal to `admin.conf` as stored (the re-issued one).
fn follow_admin_kubeconfig(
    client: &Client,
    ns: &str,
    tenant: &Tenant,
    credentials: Credentials,
) -> tokio::task::JoinHandle<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = tenant.secret("admin-kubeconfig");
    tokio::spawn(async move {
        loop {
            if let Some(bytes) = secrets
                .get(&name)
                .await
                .ok()
                .and_then(|s| s.data?.remove("admin.conf"))
            {
                credentials.replace(bytes.0);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// A `before_start` for [`TenantEnv::follow_rollouts`]: the operator writes Secrets
/// before the Deployment, so a new template whose material retired the old CA means
/// completed from its first request on.
fn retire_watch(phase: &PhaseLabel) -> impl Fn(&std::collections::BTreeMap<String, Vec<u8>>) + '_ {
    move |ca| {
        if !ca.contains_key("previous-ca.crt") {
            phase.advance(PHASES, "completed");
        }
    }
}

#[tokio::test]
async fn a_ca_rotation_refuses_no_client_until_it_completes() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "ca-overlap").await;
    // Completion by itself once the node renewed and 60 s after the start.
    let env = TenantEnv::start_with(&client, &ns.name, &["--ca-rotation-grace-period", "60s"]).await;
    let tenant = env.create_tenant("overlap");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    let mut plane: Option<ControlPlane> = None;
    env.follow_rollouts(
        &client,
        &tenant,
        &mut plane,
        &[],
        "the first control plane",
        |_| {},
        || async { Some(()) },
    )
    .await;
    let super_admin = env.kubeconfig(&client, &tenant, "super-admin.conf").await;
    let node_manifest = write(
        env.dir(),
        "node.yaml",
        format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {NODE}\n").as_bytes(),
    );
    env.kubectl_ok(
        &super_admin,
        &["create", "-f", &node_manifest.display().to_string()],
    );

    let old_ca = ca_secret(&client, &ns.name, &tenant).await;
    let old_bundle = String::from_utf8(old_ca["ca.crt"].clone()).expect("PEM");
    let node = Credentials::new(
        std::fs::read(env.node_kubeconfig(&client, &tenant, NODE).await).expect("node kubeconfig"),
    );
    let downloaded = env.kubeconfig(&client, &tenant, "admin.conf").await;
    let downloaded_bytes = std::fs::read(&downloaded).expect("admin.conf");
    let current = Credentials::new(downloaded_bytes.clone());
    let follower = follow_admin_kubeconfig(&client, &ns.name, &tenant, current.clone());

    let phase = PhaseLabel::default();
    phase.set("before");
    let every = Duration::from_millis(300);
    let kubectl = env.bin.join("kubectl");
    let probes = vec![
        Probe::start(
            "node (old CA bundle, Go)",
            Stack::Kubectl,
            kubectl.clone(),
            env.dir(),
            node.clone(),
            phase.clone(),
            every,
        ),
        Probe::start(
            "downloaded admin.conf",
            Stack::KubeRs,
            kubectl.clone(),
            env.dir(),
            Credentials::new(downloaded_bytes),
            phase.clone(),
            every,
        ),
        Probe::start(
            "re-issued admin.conf",
            Stack::KubeRs,
            kubectl.clone(),
            env.dir(),
            current,
            phase.clone(),
            every,
        ),
    ];
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Prepare.
    phase.set("preparing");
    env.rotate_ca(&tenant);
    let prepared = eventually("the prepared CA Secret", Duration::from_secs(60), || async {
        let data = ca_secret(&client, &ns.name, &tenant).await;
        data.contains_key("previous-ca.crt").then_some(data)
    })
    .await;
    let bundle = certificates_der(&prepared["ca.crt"]);
    assert_eq!(bundle.len(), 2, "the bundle carries the new and the old CA");
    assert_eq!(
        bundle[1],
        certificates_der(&old_ca["ca.crt"])[0],
        "the old CA stays trusted"
    );
    let signing = Authority::from_pem(&prepared["tls.crt"], None).expect("the signing CA");
    // Two rollouts: the bundle first, then client certificates from the new CA.
    env.follow_rollouts_to_ca_phase(
        &client,
        &tenant,
        &mut plane,
        &[],
        CaRotationPhase::Prepared,
        |_| {},
    )
    .await;
    phase.set("prepared");
    let status = rotation_status(&client, &ns.name, &tenant)
        .await
        .expect("rotation status");
    assert_eq!(status.phase, Some(CaRotationPhase::Prepared));
    assert!(status.last_initiation_time.is_some() && status.last_initiation_finished_time.is_some());
    let waiting = eventually(
        "the TCP naming the node that still holds an old-CA certificate",
        Duration::from_secs(90),
        || async {
            let s = rotation_status(&client, &ns.name, &tenant).await?;
            s.waiting_for.filter(|w| w.contains(NODE))
        },
    )
    .await;
    println!("prepared, waiting for: {waiting}");
    // cluster-info (for kubeadm join) hands out both CAs.
    let info: ConfigMap = eventually("cluster-info with both CAs", Duration::from_secs(60), || async {
        let out = env.kubectl(
            &super_admin,
            &[
                "get",
                "configmap",
                "-n",
                "kube-public",
                "cluster-info",
                "-o",
                "json",
            ],
        );
        let cm: ConfigMap = serde_json::from_slice(&out.stdout).ok()?;
        let kubeconfig = cm.data.as_ref()?.get("kubeconfig")?.clone();
        let ca = Kubeconfig::parse(kubeconfig.as_bytes())
            .ok()?
            .current_ca_pem()
            .ok()??;
        (certificates_der(&ca).len() == 2).then_some(cm)
    })
    .await;
    assert!(info.data.is_some());

    // The node renews through a CSR: the tenant signs it with the new CA.
    let (renewed, certificate) = renew_like_a_kubelet(&node.get(), NODE, &old_bundle, &tenant.server()).await;
    signing
        .verify_pem(certificate.as_bytes(), None, time::OffsetDateTime::now_utc())
        .expect("the renewed kubelet certificate is signed by the new CA");
    node.replace(renewed);

    // Complete: by itself, once the node is seen renewed and the grace period passed.
    // Two rollouts: serving certificates from the new CA (both CAs still trusted),
    // then the old CA retired: from then on ("completed") its certificates are refused.
    env.follow_rollouts(
        &client,
        &tenant,
        &mut plane,
        &[],
        "the completion, by itself",
        retire_watch(&phase),
        || async {
            let status = rotation_status(&client, &ns.name, &tenant).await?;
            (status.phase == Some(CaRotationPhase::Completing)).then_some(())
        },
    )
    .await;
    phase.advance(PHASES, "completing");
    env.follow_rollouts(
        &client,
        &tenant,
        &mut plane,
        &[],
        "the old CA retired",
        retire_watch(&phase),
        || async {
            (!ca_secret(&client, &ns.name, &tenant)
                .await
                .contains_key("previous-ca.crt"))
            .then_some(())
        },
    )
    .await;
    phase.advance(PHASES, "completed");
    env.follow_rollouts_to_ca_phase(
        &client,
        &tenant,
        &mut plane,
        &[],
        CaRotationPhase::Completed,
        retire_watch(&phase),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    follower.abort();
    let mut rows = Vec::new();
    for probe in probes {
        let name = probe.name.clone();
        rows.push((name, probe.finish().await));
    }
    println!("{}", table(&rows, PHASES));

    let refused = |row: usize, phase: &str| rows[row].1.get(phase).map_or(0, |c| c.refused);
    let served = |row: usize, phase: &str| rows[row].1.get(phase).map_or(0, |c| c.served);
    for p in PHASES {
        assert_eq!(
            refused(0, p),
            0,
            "the node was refused in {p}: {:?}\n{}",
            rows[0].1.get(*p),
            plane.as_ref().map(ControlPlane::logs).unwrap_or_default()
        );
        assert_eq!(
            refused(2, p),
            0,
            "the re-issued admin.conf was refused in {p}: {:?}",
            rows[2].1.get(*p)
        );
        assert!(
            served(0, p) > 0 && served(2, p) > 0,
            "every phase was probed: {p}"
        );
    }
    for p in &PHASES[..4] {
        assert_eq!(
            refused(1, p),
            0,
            "a downloaded kubeconfig works until completion ({p}): {:?}",
            rows[1].1.get(*p)
        );
    }
    let after = rows[1].1.get("completed").cloned().unwrap_or_default();
    assert!(
        after.refused > 0 && after.first_refusal.as_deref().is_some_and(|r| r.contains("401")),
        "after completion the old-CA client certificate is refused with 401: {after:?}"
    );

    let completed = ca_secret(&client, &ns.name, &tenant).await;
    assert_eq!(
        certificates_der(&completed["ca.crt"]),
        vec![signing.certificate_der().to_vec()],
        "one CA again"
    );
    let serving = env
        .secret_value(&client, &tenant, "api-server-certificate", "apiserver.crt")
        .await;
    assert_eq!(
        certificates_der(&serving).len(),
        2,
        "the serving certificate carries the cross-signed new CA"
    );
    // Go (kubectl) with only the old CA trusted verifies the server through the
    // cross-signed intermediate, and then refuses the old client certificate: 401.
    let out = env.kubectl(&downloaded, &["auth", "whoami"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Unauthorized"),
        "{stderr}"
    );
    let status = rotation_status(&client, &ns.name, &tenant)
        .await
        .expect("rotation status");
    assert_eq!(status.phase, Some(CaRotationPhase::Completed));
    assert!(status.last_completion_time.is_some());
    assert_eq!(
        status.nodes.map(|n| n.renewed),
        Some(vec![NODE.to_string()]),
        "the node was seen renewed under the new CA"
    );
}

/// Which of a tenant's client credentials are not yet what the prepared CA needs
/// (kubeconfigs whose bundle lacks the new CA, or signed by the old one).
async fn undone_after_prepare(
    client: &Client,
    ns: &str,
    tenant: &Tenant,
    signing: &Authority,
) -> Vec<String> {
    let mut undone = Vec::new();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for suffix in [
        "admin-kubeconfig",
        "controller-manager-kubeconfig",
        "scheduler-kubeconfig",
        "konnectivity-kubeconfig",
    ] {
        let Some(data) = secrets
            .get(&tenant.secret(suffix))
            .await
            .ok()
            .and_then(|s| s.data)
        else {
            continue;
        };
        for (key, value) in data {
            let Ok(kubeconfig) = Kubeconfig::parse(&value.0) else {
                continue;
            };
            let cert = kubeconfig
                .client_credentials()
                .ok()
                .and_then(|mut c| c.pop())
                .map(|c| c.certificate_pem);
            let signed = cert.is_some_and(|c| {
                signing
                    .verify_pem(&c, None, time::OffsetDateTime::now_utc())
                    .is_ok()
            });
            if !signed {
                undone.push(format!("{suffix}/{key}"));
            }
        }
    }
    undone
}

/// Waits for the CA Secret to satisfy `changed`, polling fast, then SIGKILLs the operator.
async fn kill_when(
    env: &mut TenantEnv,
    client: &Client,
    tenant: &Tenant,
    changed: impl Fn(&std::collections::BTreeMap<String, Vec<u8>>) -> bool,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let data = ca_secret(client, &env.namespace, tenant).await;
        if changed(&data) {
            env.operator.kill_in_place();
            return data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CA Secret did not change"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// SIGKILLs the operator the moment `apiserver.crt` carries the cross-signed CA
/// (completion's first step written).
async fn kill_when_serving_moved(env: &mut TenantEnv, client: &Client, tenant: &Tenant) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &env.namespace);
    let name = tenant.secret("api-server-certificate");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let serving = secrets
            .get(&name)
            .await
            .ok()
            .and_then(|s| s.data?.remove("apiserver.crt"));
        if serving.is_some_and(|c| certificates_der(&c.0).len() == 2) {
            env.operator.kill_in_place();
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the serving certificate did not move"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn an_operator_killed_in_each_phase_of_a_ca_rotation_converges_with_one_new_ca() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "ca-kill").await;
    // The tenant side is not needed here; completion is asked for.
    let mut env = TenantEnv::start_with(&client, &ns.name, &["--tenant-cluster-setup=false"]).await;
    let tenant = env.create_tenant("killed");
    env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
        .await;
    let mut kills = Vec::new();
    for attempt in 1..=5 {
        let before = ca_secret(&client, &ns.name, &tenant).await;
        let old_serial = Authority::from_pem(&before["ca.crt"], None)
            .expect("CA")
            .serial()
            .to_string();

        // Prepare, killed as soon as the new CA is stored.
        env.rotate_ca(&tenant);
        let at_kill = kill_when(&mut env, &client, &tenant, |d| d.contains_key("previous-ca.crt")).await;
        let signing = Authority::from_pem(&at_kill["tls.crt"], None).expect("the new CA");
        let undone = undone_after_prepare(&client, &ns.name, &tenant, &signing).await;
        env.restart_operator();
        env.wait_status(&client, &tenant, KubernetesVersionStatus::Ready)
            .await;
        let after = ca_secret(&client, &ns.name, &tenant).await;
        let now_signing = Authority::from_pem(&after["tls.crt"], None).expect("CA");
        assert_eq!(
            now_signing.serial(),
            signing.serial(),
            "no second new CA after the crash in prepare"
        );
        assert_ne!(now_signing.serial(), old_serial);
        eventually(
            "prepare finished after the restart",
            Duration::from_secs(90),
            || async {
                undone_after_prepare(&client, &ns.name, &tenant, &signing)
                    .await
                    .is_empty()
                    .then_some(())
            },
        )
        .await;
        kills.push(("prepare", attempt, undone.len()));

        // Complete (asked for), killed as soon as the old CA is retired.
        kubectl_ok(&[
            "annotate",
            "tcp",
            "-n",
            &ns.name,
            &tenant.name,
            "certs.kamaji.clastix.io/complete-ca-rotation=",
        ]);
        // Killed as soon as the serving certificate moved to the new CA: the old CA's
        // retirement is still to come.
        kill_when_serving_moved(&mut env, &client, &tenant).await;
        let retirement_undone = ca_secret(&client, &ns.name, &tenant)
            .await
            .contains_key("previous-ca.crt");
        env.restart_operator();
        let done = eventually("the completed rotation", Duration::from_secs(90), || async {
            let serving = env
                .secret_value(&client, &tenant, "api-server-certificate", "apiserver.crt")
                .await;
            let s = rotation_status(&client, &ns.name, &tenant).await?;
            (s.phase == Some(CaRotationPhase::Completed) && certificates_der(&serving).len() == 2)
                .then_some(serving)
        })
        .await;
        signing
            .verify_pem(&done, None, time::OffsetDateTime::now_utc())
            .expect("the serving certificate moved to the new CA");
        let tcp = Api::<TenantControlPlane>::namespaced(client.clone(), &ns.name)
            .get(&tenant.name)
            .await
            .expect("tcp");
        assert!(
            !tcp.metadata
                .annotations
                .unwrap_or_default()
                .contains_key("certs.kamaji.clastix.io/complete-ca-rotation"),
            "the completion request is removed once done"
        );
        assert!(
            !ca_secret(&client, &ns.name, &tenant)
                .await
                .contains_key("previous-ca.crt"),
            "the old CA retired"
        );
        kills.push(("complete", attempt, usize::from(retirement_undone)));
        let mid_batch = |phase: &str| kills.iter().any(|(p, _, undone)| *p == phase && *undone > 0);
        if mid_batch("prepare") && mid_batch("complete") {
            break;
        }
    }
    println!("{:<10} {:>8} {:>14}", "PHASE", "ATTEMPT", "UNDONE AT KILL");
    for (phase, attempt, undone) in &kills {
        println!("{phase:<10} {attempt:>8} {undone:>14}");
    }
    for phase in ["prepare", "complete"] {
        assert!(
            kills.iter().any(|(p, _, undone)| *p == phase && *undone > 0),
            "no kill in {phase} landed while its work was undone: {kills:?}"
        );
    }
}
