//! The node side of konnectivity for the integration tests: a real konnectivity
//! agent (built from its published module) started from the args of the agent
//! DaemonSet the operator applied in the tenant, with the credentials a pod of it
//! would have (a token of the DaemonSet's audience for its ServiceAccount, the
//! tenant's `kube-root-ca.crt`); and a stand-in kubelet endpoint on 127.0.0.1 that
//! answers whatever the API server asks, so a test can see the API server reach a
//! node. Both stop when dropped.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use k8s_openapi::api::apps::v1::DaemonSet;
use kamaji::pki::{Authority, IssueParams, LeafRequest, catalog::Usage};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_rustls::{TlsAcceptor, rustls};

use super::tenant::{Process, TenantEnv, free_port, write};

/// The agent DaemonSet as the operator applied it in the tenant.
pub fn agent_daemon_set(env: &TenantEnv, admin: &Path) -> DaemonSet {
    let json = env.kubectl_ok(
        admin,
        &[
            "get",
            "daemonset",
            "-n",
            "kube-system",
            "konnectivity-agent",
            "-o",
            "json",
        ],
    );
    serde_json::from_str(&json).expect("the agent DaemonSet")
}

/// What an agent pod is given: its token's audience (from the DaemonSet's projected
/// volume) and the tenant's root CA bundle (`kube-root-ca.crt`, published by the
/// controller-manager).
pub struct AgentCredentials {
    /// The token's file.
    pub token: PathBuf,
    /// The CA bundle's file.
    pub ca: PathBuf,
}

impl AgentCredentials {
    /// A token minted in the tenant for `kube-system/<serviceAccountName>` with the
    /// DaemonSet's audience, and the tenant's `kube-root-ca.crt`, written under `dir`.
    pub fn mint(env: &TenantEnv, admin: &Path, daemon_set: &DaemonSet, dir: &Path) -> Self {
        let pod = pod_spec(daemon_set);
        let account = pod.service_account_name.clone().expect("a ServiceAccount");
        let audience = pod
            .volumes
            .iter()
            .flatten()
            .flat_map(|v| v.projected.iter().flat_map(|p| p.sources.iter().flatten()))
            .find_map(|s| s.service_account_token.as_ref()?.audience.clone())
            .expect("a projected token with an audience");
        let token = env.kubectl_ok(
            admin,
            &[
                "create",
                "token",
                &account,
                "-n",
                "kube-system",
                "--audience",
                &audience,
            ],
        );
        let ca = env.kubectl_ok(
            admin,
            &[
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-n",
                "kube-system",
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ],
        );
        assert!(ca.contains("BEGIN CERTIFICATE"), "kube-root-ca.crt: {ca}");
        let tag = format!("{:08x}", rand::random::<u32>());
        Self {
            token: write(dir, &format!("agent-{tag}/token"), token.trim().as_bytes()),
            ca: write(dir, &format!("agent-{tag}/ca.crt"), ca.as_bytes()),
        }
    }
}

fn pod_spec(daemon_set: &DaemonSet) -> &k8s_openapi::api::core::v1::PodSpec {
    daemon_set.spec.template.spec.as_ref().expect("a pod template")
}

/// Starts the agent with the DaemonSet's container args, the token and CA paths
/// moved to `credentials`, its admin and health ports free ones on 127.0.0.1.
pub fn start_agent(daemon_set: &DaemonSet, credentials: &AgentCredentials, dir: &Path) -> Process {
    let container = &pod_spec(daemon_set).containers[0];
    let mut args: Vec<String> = container.args.clone().unwrap_or_default();
    let replace = |args: &mut Vec<String>, flag: &str, value: String| {
        args.retain(|a| !a.starts_with(&format!("{flag}=")));
        args.push(format!("{flag}={value}"));
    };
    replace(&mut args, "--ca-cert", credentials.ca.display().to_string());
    replace(
        &mut args,
        "--service-account-token-path",
        credentials.token.display().to_string(),
    );
    replace(&mut args, "--admin-server-port", free_port().to_string());
    replace(&mut args, "--admin-bind-address", "127.0.0.1".into());
    replace(&mut args, "--health-server-port", free_port().to_string());
    replace(&mut args, "--health-server-host", "127.0.0.1".into());
    // -v=8 logs every packet: enough for a failure's log tail at -v=4.
    replace(&mut args, "-v", "4".into());
    Process::start("konnectivity-agent", &super::built("proxy-agent"), &args, dir)
}

/// A stand-in kubelet: HTTPS on 127.0.0.1 (a certificate of its own, which the API
/// server does not verify without `--kubelet-certificate-authority`, as on kubeadm
/// clusters), answering every request with `served <path>`.
pub struct NodeEndpoint {
    /// Its port: the Node's kubelet endpoint.
    pub port: u16,
    served: Arc<AtomicUsize>,
    // Its own runtime: the tests block their thread on kubectl while it must answer.
    runtime: Option<tokio::runtime::Runtime>,
}

impl NodeEndpoint {
    /// Listens on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let params = IssueParams::new(time::OffsetDateTime::now_utc());
        let ca = Authority::generate(
            "node-endpoint-ca",
            params.algorithm,
            params.ca_validity,
            params.now,
        )
        .expect("a CA");
        let serving = ca
            .sign(
                &LeafRequest {
                    common_name: "node-endpoint".into(),
                    usages: vec![Usage::ServerAuth],
                    ip_addresses: vec![[127, 0, 0, 1].into()],
                    ..LeafRequest::default()
                },
                &params,
            )
            .expect("a serving certificate");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(serving.certificate_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("PEM certificates");
        let key = PrivateKeyDer::from_pem_slice(serving.key.pem().as_bytes()).expect("a PEM key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a TLS server configuration");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let port = free_port();
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("binding the node endpoint");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the node endpoint");
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        answer(tls, &counter).await;
                    }
                });
            }
        });
        Self {
            port,
            served,
            runtime: Some(runtime),
        }
    }

    /// How many requests it received (and answered).
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for NodeEndpoint {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Reads one request head, counts it, and answers `served <path>`. Counted before the
/// answer is written: a client that read the answer must find it counted (counting after
/// the write raced the test's next look at the counter).
async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    served: &AtomicUsize,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("?");
    let body = format!("served {path}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    served.fetch_add(1, Ordering::SeqCst);
    if stream.write_all(response.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}
