//! A real tenant control plane for the integration tests. The operator's tenant
//! Deployments run as kwok fake pods, so no tenant API server exists unless a
//! test starts one: this module starts a real etcd (client-certificate auth, its
//! CA the DataStore's) and, from the operator's own Secrets and the exact flags of
//! its Deployment, a real kube-apiserver (and kube-controller-manager) on
//! 127.0.0.1, the files laid out as the pod would mount them. Every process is
//! killed when its guard drops, so a failing test leaks nothing.

use std::{
    collections::BTreeMap,
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Secret},
};
use kamaji::controllers::tenant_control_plane::etcd_client::{ClientTls, EtcdClient};
use kamaji::{
    api::{TenantControlPlane, rotation::CaRotationPhase, tenant_control_plane::KubernetesVersionStatus},
    dev::pod::{self, set_flags},
    pki::{
        Authority, IssueParams, LeafRequest,
        catalog::Usage,
        kubeconfig::{Kubeconfig, KubeconfigParams},
    },
};
use kube::{Api, Client};

use super::{Operator, cluster, etcd_datastore_with, eventually, install_crds, kubectl_apply, kubectl_ok};

/// Kubernetes version of the tenants: the local cluster's binaries.
pub const VERSION: &str = "v1.37.2";

/// A free TCP port on 127.0.0.1 (released at once; the caller binds it soon after).
pub fn free_port() -> u16 {
    // Below Linux's ephemeral range (32768-60999), where every outgoing connection of
    // the parallel tests takes its source port, and never the same port twice in one
    // run: a port the kernel handed out as free could otherwise be taken before the
    // server it was meant for binds it.
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
}

/// A child process killed and reaped when dropped, its output in a log file.
pub struct Process {
    name: String,
    child: Child,
    /// stdout and stderr.
    pub log: PathBuf,
}

impl Process {
    /// Starts `program args...`, logging to `<dir>/<name>.log`.
    pub fn start(name: &str, program: &Path, args: &[String], dir: &Path) -> Self {
        fs::create_dir_all(dir).expect("creating the log directory");
        let log = dir.join(format!("{name}.log"));
        let out = fs::File::create(&log).expect("creating a process log");
        let err = out.try_clone().expect("log handle");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// Starts a prepared command (its arguments and environment set), logging as [`Self::start`].
    pub fn start_command(name: &str, mut command: Command, dir: &Path) -> Self {
        fs::create_dir_all(dir).expect("creating the log directory");
        let log = dir.join(format!("{name}.log"));
        let out = fs::File::create(&log).expect("creating a process log");
        let err = out.try_clone().expect("log handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Panics with the end of the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
    }

    /// The last 40 lines of the log.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcd on 127.0.0.1 requiring client certificates signed by the DataStore CA,
/// serving with a certificate from the same CA.
pub struct Etcd {
    /// `127.0.0.1:<port>`, as the DataStore lists it.
    pub endpoint: String,
    process: Process,
}

impl Etcd {
    /// Starts etcd on `port` with its data and certificates under `dir`.
    pub fn start(bin: &Path, dir: &Path, port: u16, ca: &Authority) -> Self {
        let params = IssueParams::new(time::OffsetDateTime::now_utc());
        let serving = ca
            .sign(
                &LeafRequest {
                    common_name: "etcd-server".into(),
                    usages: vec![Usage::ServerAuth, Usage::ClientAuth],
                    dns_names: vec!["localhost".into()],
                    ip_addresses: vec![[127, 0, 0, 1].into()],
                    ..LeafRequest::default()
                },
                &params,
            )
            .expect("signing the etcd serving certificate");
        let etcd_dir = dir.join("etcd");
        let ca_file = write(&etcd_dir, "ca.crt", ca.certificate_pem().as_bytes());
        let crt = write(&etcd_dir, "server.crt", serving.certificate_pem.as_bytes());
        let key = write(&etcd_dir, "server.key", serving.key.pem().as_bytes());
        let client_url = format!("https://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let process = Process::start(
            "etcd",
            &bin.join("etcd"),
            &[
                "--name=tenant".into(),
                format!("--data-dir={}", etcd_dir.join("data").display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=tenant={peer_url}"),
                "--client-cert-auth".into(),
                format!("--trusted-ca-file={}", ca_file.display()),
                format!("--cert-file={}", crt.display()),
                format!("--key-file={}", key.display()),
                "--log-level=warn".into(),
            ],
            dir,
        );
        Self {
            endpoint: format!("127.0.0.1:{port}"),
            process,
        }
    }
}

impl Etcd {
    /// Turns authentication on as Kamaji's etcd setup does: the `root` user without a
    /// password, granted the `root` role, then `auth enable`. Waits for etcd to serve.
    pub async fn enable_auth(&self, ca_pem: &str, root: &(String, String)) {
        let tls = ClientTls {
            ca_pem: ca_pem.as_bytes(),
            certificate_pem: root.0.as_bytes(),
            key_pem: root.1.as_bytes(),
        };
        let endpoints = [format!("https://{}", self.endpoint)];
        let etcd = eventually("etcd to accept connections", Duration::from_secs(30), || async {
            let etcd = EtcdClient::connect(&endpoints, &tls).await.ok()?;
            etcd.user_list().await.ok().map(|_| etcd)
        })
        .await;
        if let Err(error) = etcd.user_add("root").await {
            assert!(error.is_already_exists(), "adding the etcd root user: {error}");
        }
        etcd.user_grant_role("root", "root")
            .await
            .expect("granting root the root role");
        etcd.auth_enable().await.expect("enabling etcd authentication");
    }
}

/// Writes `bytes` to `dir/name` (creating parents); returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("creating a directory");
    }
    fs::write(&path, bytes).expect("writing a file");
    path
}

/// A TenantControlPlane of a [`TenantEnv`].
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Its name.
    pub name: String,
    /// `networkProfile.port`: the secure port of its API server on 127.0.0.1.
    pub port: u16,
}

impl Tenant {
    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `<tcp>-<suffix>`.
    pub fn secret(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }
}

/// A client certificate signed with a tenant's CA.
pub struct SignedClient {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// Its key, PEM.
    pub key_pem: String,
    /// The CA that signed it, PEM.
    pub ca_pem: String,
}

/// A test's world: a namespace's etcd DataStore backed by a real etcd, the
/// operator watching the namespace, and a scratch directory.
pub struct TenantEnv {
    /// The test namespace.
    pub namespace: String,
    /// The DataStore's name.
    pub datastore: String,
    /// The operator (killed on drop).
    pub operator: Operator,
    /// The local cluster's binaries.
    pub bin: PathBuf,
    /// The operator's flags (a restarted one gets the same).
    flags: Vec<String>,
    etcd: Etcd,
    etcd_ca_pem: String,
    /// The etcd `root` user's certificate and key, when authentication is on.
    etcd_root: Option<(String, String)>,
    // Declared last: dropped after the processes that use it.
    dir: tempfile::TempDir,
}

impl TenantEnv {
    /// The DataStore (CA generated by the test), etcd on a free port, and the operator.
    pub async fn start(client: &Client, namespace: &str) -> Self {
        Self::start_with(client, namespace, &[]).await
    }

    /// [`Self::start`] with extra `kamaji manager` flags.
    pub async fn start_with(client: &Client, namespace: &str, flags: &[&str]) -> Self {
        Self::start_env(client, namespace, flags, None).await
    }

    /// [`Self::start`] on an etcd set up as Kamaji's etcd is: authentication on, the
    /// `root` user (with the `root` role) authenticated by a client certificate of the
    /// DataStore CA with CN `root`, which the DataStore gives as its clientCertificate.
    pub async fn start_with_etcd_auth(client: &Client, namespace: &str) -> Self {
        Self::start_env(client, namespace, &[], Some("root")).await
    }

    /// [`Self::start_with_etcd_auth`], but the DataStore's clientCertificate has the CN
    /// `admin` (e.g. a user etcd does not know: the operator's calls are refused).
    pub async fn start_with_etcd_auth_as(client: &Client, namespace: &str, admin: &str) -> Self {
        Self::start_env(client, namespace, &[], Some(admin)).await
    }

    async fn start_env(client: &Client, namespace: &str, flags: &[&str], admin_cn: Option<&str>) -> Self {
        install_crds(client).await;
        let bin = cluster().bin.clone();
        let dir = tempfile::tempdir().expect("tempdir");
        let etcd_port = free_port();
        let endpoint = format!("127.0.0.1:{etcd_port}");
        let params = IssueParams::new(time::OffsetDateTime::now_utc());
        let ca = Authority::generate("etcd-ca", params.algorithm, params.ca_validity, params.now)
            .expect("generating the DataStore CA");
        let etcd = Etcd::start(&bin, dir.path(), etcd_port, &ca);
        let client_certificate = |cn: &str| {
            let issued = ca
                .sign(
                    &LeafRequest {
                        common_name: cn.into(),
                        usages: vec![Usage::ClientAuth],
                        ..LeafRequest::default()
                    },
                    &params,
                )
                .expect("signing an etcd client certificate");
            (issued.certificate_pem.clone(), issued.key.pem().to_string())
        };
        let etcd_root = admin_cn.map(|_| client_certificate("root"));
        if let Some(root) = &etcd_root {
            etcd.enable_auth(ca.certificate_pem(), root).await;
        }
        let admin_pair = admin_cn.map(|cn| match &etcd_root {
            Some(root) if cn == "root" => root.clone(),
            _ => client_certificate(cn),
        });
        let admin = admin_pair.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
        let datastore = etcd_datastore_with(client, namespace, &[&endpoint], &ca, admin).await;
        // Every tenant of this environment listens on 127.0.0.1: the tenant side can run.
        let mut args = vec!["--tenant-cluster-setup=true"];
        args.extend_from_slice(flags);
        let operator = Operator::start(namespace, &args);
        Self {
            namespace: namespace.to_string(),
            datastore,
            operator,
            flags: args.iter().map(|f| f.to_string()).collect(),
            bin,
            etcd,
            etcd_ca_pem: ca.certificate_pem().to_string(),
            etcd_root,
            dir,
        }
    }

    /// A client of the DataStore's etcd authenticated by this certificate and key.
    pub async fn etcd_as(&self, certificate_pem: &[u8], key_pem: &[u8]) -> EtcdClient {
        let tls = ClientTls {
            ca_pem: self.etcd_ca_pem.as_bytes(),
            certificate_pem,
            key_pem,
        };
        EtcdClient::connect(&[format!("https://{}", self.etcd.endpoint)], &tls)
            .await
            .expect("connecting to etcd")
    }

    /// A client of the DataStore's etcd as `root` ([`Self::start_with_etcd_auth`] only).
    pub async fn etcd_as_root(&self) -> EtcdClient {
        let (certificate, key) = self.etcd_root.as_ref().expect("etcd started with authentication");
        self.etcd_as(certificate.as_bytes(), key.as_bytes()).await
    }

    /// Kills the operator with SIGKILL and starts a new one with the same flags.
    pub fn restart_operator(&mut self) {
        self.operator.kill_in_place();
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        self.operator = Operator::start(&self.namespace, &flags);
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a TenantControlPlane at `127.0.0.1:<free port>` on the DataStore.
    pub fn create_tenant(&self, name: &str) -> Tenant {
        self.create_tenant_with(name, "")
    }

    /// [`Self::create_tenant`] with more of the spec (YAML lines indented under `spec:`).
    pub fn create_tenant_with(&self, name: &str, more_spec: &str) -> Tenant {
        let port = free_port();
        let manifest = format!(
            "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {name}\nspec:\n  \
             dataStore: {datastore}\n  controlPlane:\n    deployment:\n      replicas: 1\n    service:\n      \
             serviceType: ClusterIP\n  kubernetes:\n    version: {VERSION}\n  networkProfile:\n    \
             address: 127.0.0.1\n    port: {port}\n{more_spec}",
            datastore = self.datastore
        );
        let applied = kubectl_apply(&self.namespace, &manifest);
        assert!(
            applied.status.success(),
            "TenantControlPlane rejected: {}",
            String::from_utf8_lossy(&applied.stderr)
        );
        Tenant {
            name: name.to_string(),
            port,
        }
    }

    /// Waits until the tenant reports `wanted` (kwok makes its pods Ready).
    pub async fn wait_status(&self, client: &Client, tenant: &Tenant, wanted: KubernetesVersionStatus) {
        let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &self.namespace);
        let reached = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                let status = tcps
                    .get(&tenant.name)
                    .await
                    .ok()
                    .and_then(|t| t.status)
                    .and_then(|s| s.kubernetes_resources)
                    .and_then(|r| r.version)
                    .and_then(|v| v.status);
                if status == Some(wanted) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "{} did not reach {wanted:?}: {:?}\noperator log:\n{}",
            tenant.name,
            tcps.get(&tenant.name).await.ok().and_then(|t| t.status),
            self.operator.log_text()
        );
    }

    /// The Deployment's generation (to wait for the rollout a change causes).
    pub async fn deployment_generation(&self, client: &Client, tenant: &Tenant) -> i64 {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &self.namespace);
        deployments
            .get(&tenant.name)
            .await
            .expect("the tenant Deployment")
            .metadata
            .generation
            .unwrap_or_default()
    }

    /// Waits until the Deployment moved past `generation` and rolled out completely,
    /// and the tenant is Ready again: the pods would now mount the new material.
    pub async fn wait_rolled_out_after(&self, client: &Client, tenant: &Tenant, generation: i64) {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &self.namespace);
        eventually(
            "the rollout of the new material",
            Duration::from_secs(150),
            || async {
                let d = deployments.get(&tenant.name).await.ok()?;
                (d.metadata.generation > Some(generation) && super::rolled_out(&d)).then_some(())
            },
        )
        .await;
        self.wait_status(client, tenant, KubernetesVersionStatus::Ready)
            .await;
    }

    /// A data key of one of the tenant's Secrets.
    pub async fn secret_value(&self, client: &Client, tenant: &Tenant, suffix: &str, key: &str) -> Vec<u8> {
        super::secret_value(client, &self.namespace, &tenant.secret(suffix), key).await
    }

    /// Writes a key of `<tcp>-admin-kubeconfig` (as stored now) to a new file.
    pub async fn kubeconfig(&self, client: &Client, tenant: &Tenant, key: &str) -> PathBuf {
        let bytes = self.secret_value(client, tenant, "admin-kubeconfig", key).await;
        let name = format!("{}-{key}-{:08x}", tenant.name, rand::random::<u32>());
        write(self.dir(), &name, &bytes)
    }

    /// A kubeconfig with the server and a CA but no user: what an anonymous client has.
    pub fn anonymous_kubeconfig(&self, tenant: &Tenant, ca_pem: &[u8]) -> PathBuf {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: tenant\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {ca}\ncontexts:\n- name: anonymous\n  context:\n    cluster: tenant\n    \
             user: anonymous\ncurrent-context: anonymous\nusers:\n- name: anonymous\n  user: {{}}\n",
            tenant.server()
        );
        write(
            self.dir(),
            &format!("anonymous-{:08x}.conf", rand::random::<u32>()),
            yaml.as_bytes(),
        )
    }

    /// A kubeconfig for `system:node:<node>` in `system:nodes`, its client
    /// certificate signed here with the tenant CA read from `<tcp>-ca` (what a
    /// kubelet holds after joining).
    pub async fn node_kubeconfig(&self, client: &Client, tenant: &Tenant, node: &str) -> PathBuf {
        let user = format!("system:node:{node}");
        let signed = self
            .sign_client(client, tenant, &user, Some("system:nodes"))
            .await;
        self.client_kubeconfig(tenant, &user, &signed)
    }

    /// A client certificate and key for `user` in `group`, signed here with the tenant
    /// CA read from `<tcp>-ca`.
    pub async fn sign_client(
        &self,
        client: &Client,
        tenant: &Tenant,
        user: &str,
        group: Option<&str>,
    ) -> SignedClient {
        let ca_pem = self.secret_value(client, tenant, "ca", "ca.crt").await;
        let ca_key = self.secret_value(client, tenant, "ca", "ca.key").await;
        let ca = Authority::from_pem(&ca_pem, Some(&ca_key)).expect("the tenant CA");
        let issued = ca
            .sign(
                &LeafRequest {
                    common_name: user.into(),
                    organization: group.map(str::to_owned),
                    usages: vec![Usage::ClientAuth],
                    ..LeafRequest::default()
                },
                &IssueParams::new(time::OffsetDateTime::now_utc()),
            )
            .expect("signing the client certificate");
        SignedClient {
            certificate_pem: issued.certificate_pem,
            key_pem: issued.key.pem().to_owned(),
            ca_pem: ca.certificate_pem().to_owned(),
        }
    }

    /// A kubeconfig for the tenant with this client certificate, trusting the CA that signed it.
    pub fn client_kubeconfig(&self, tenant: &Tenant, user: &str, signed: &SignedClient) -> PathBuf {
        let server = tenant.server();
        let kubeconfig = Kubeconfig::new(&KubeconfigParams {
            cluster_name: &tenant.name,
            server: &server,
            ca_pem: &signed.ca_pem,
            user,
            client_certificate_pem: &signed.certificate_pem,
            client_key_pem: &signed.key_pem,
        });
        let file = user.replace(':', "-");
        write(
            self.dir(),
            &format!("{file}-{:08x}.conf", rand::random::<u32>()),
            kubeconfig.to_yaml().expect("YAML").as_bytes(),
        )
    }

    /// kubectl against a tenant: bounded requests, a discovery cache of this test's own.
    pub fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir().join("kubectl-cache"))
            .arg("--request-timeout=20s")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running kubectl")
    }

    /// kubectl with a kubeconfig that has no user. With no credentials kubectl would
    /// prompt for basic-auth ones; the API server has no basic-auth authenticator, so the
    /// placeholder `--username/--password` that silence the prompt reach it as nothing
    /// and the request is served as `system:anonymous`.
    pub fn kubectl_anonymous(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        let mut all = vec!["--username=anonymous", "--password=anonymous"];
        all.extend_from_slice(args);
        self.kubectl(kubeconfig, &all)
    }

    /// [`Self::kubectl`] that must succeed; returns stdout.
    pub fn kubectl_ok(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let out = self.kubectl(kubeconfig, args);
        assert!(
            out.status.success(),
            "kubectl --kubeconfig {} {} failed:\n{}",
            kubeconfig.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl auth whoami`: (user name, groups).
    pub fn whoami(&self, kubeconfig: &Path) -> (String, Vec<String>) {
        let out = self.kubectl_ok(kubeconfig, &["auth", "whoami", "-o", "json"]);
        let json: serde_json::Value = serde_json::from_str(&out).expect("whoami JSON");
        let user = &json["status"]["userInfo"];
        let groups = user["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        (user["username"].as_str().unwrap_or_default().to_owned(), groups)
    }

    /// Starts the tenant's kube-apiserver (and, with `controller_manager`, its
    /// kube-controller-manager) from the Secrets and the Deployment as stored now,
    /// and waits until it serves. Drop the result to stop them; start again after
    /// a rotation, as the Deployment's rollout would.
    pub async fn start_control_plane(
        &self,
        client: &Client,
        tenant: &Tenant,
        controller_manager: bool,
    ) -> ControlPlane {
        self.start_control_plane_with(client, tenant, controller_manager.then_some(&[][..]))
            .await
    }

    /// The tenant's whole control plane as its pod runs it: kube-apiserver,
    /// kube-controller-manager (every controller the Deployment enables) and
    /// kube-scheduler, with the Deployment's flags and only the changes `kamaji dev
    /// control-plane` makes to run them on 127.0.0.1 ([`pod::local_flags`]).
    pub async fn start_whole_control_plane(&self, client: &Client, tenant: &Tenant) -> ControlPlane {
        let mut plane = self.start_control_plane(client, tenant, false).await;
        let deployment = Api::<Deployment>::namespaced(client.clone(), &self.namespace)
            .get(&tenant.name)
            .await
            .expect("the tenant Deployment");
        let secrets = self.secrets(client, tenant).await;
        let config_maps = self.config_maps(client, tenant).await;
        let objects = pod::Objects {
            secrets: &secrets,
            config_maps: &config_maps,
        };
        let root = plane.root.clone();
        let start = |name: &str| {
            let mut args = container_args(&deployment, &objects, name, &root);
            set_flags(&mut args, &pod::local_flags(name, &root));
            Process::start(name, &self.bin.join(name), &args, &root)
        };
        plane.controller_manager = Some(start("kube-controller-manager"));
        plane.scheduler = Some(start("kube-scheduler"));
        plane
    }

    /// [`Self::start_control_plane`], the controller-manager (when `Some`) run with
    /// these flags replacing the Deployment's (e.g. a short `cluster-signing-duration`
    /// so a kubelet's certificate rotation happens within a test).
    pub async fn start_control_plane_with(
        &self,
        client: &Client,
        tenant: &Tenant,
        controller_manager_flags: Option<&[(&str, String)]>,
    ) -> ControlPlane {
        self.start_control_plane_seeing(client, tenant, controller_manager_flags, |_| {})
            .await
    }

    /// [`Self::start_control_plane_with`], showing `seen` the CA Secret's data it starts
    /// from (read once: what `seen` is shown is exactly what the processes run with).
    pub async fn start_control_plane_seeing(
        &self,
        client: &Client,
        tenant: &Tenant,
        controller_manager_flags: Option<&[(&str, String)]>,
        seen: impl Fn(&BTreeMap<String, Vec<u8>>),
    ) -> ControlPlane {
        let root = self.dir().join(format!(
            "{}-control-plane-{:08x}",
            tenant.name,
            rand::random::<u32>()
        ));
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &self.namespace);
        let deployment = deployments
            .get(&tenant.name)
            .await
            .expect("the tenant Deployment");
        let secrets = self.secrets(client, tenant).await;
        let ca: BTreeMap<String, Vec<u8>> = secrets
            .get(&tenant.secret("ca"))
            .and_then(|s| s.data.clone())
            .map(|d| d.into_iter().map(|(k, v)| (k, v.0)).collect())
            .unwrap_or_default();
        seen(&ca);
        let config_maps = self.config_maps(client, tenant).await;
        let objects = pod::Objects {
            secrets: &secrets,
            config_maps: &config_maps,
        };
        // First, so its socket is there when the API server sends traffic to nodes.
        let konnectivity = has_container(&deployment, "konnectivity-server")
            .then(|| self.start_konnectivity_server(&deployment, &objects, &root));
        let mut args = container_args(&deployment, &objects, "kube-apiserver", &root);
        assert!(
            args.contains(&format!("--secure-port={}", tenant.port)),
            "the Deployment serves on the TCP port: {args:?}"
        );
        set_flags(
            &mut args,
            &[
                ("bind-address", "127.0.0.1".into()),
                // A loopback advertise address is refused by the default lease reconciler.
                ("endpoint-reconciler-type", "none".into()),
                ("cert-dir", root.join("apiserver-cert-dir").display().to_string()),
            ],
        );
        let apiserver = Process::start("kube-apiserver", &self.bin.join("kube-apiserver"), &args, &root);

        let controller_manager = controller_manager_flags.map(|extra| {
            let mut args = container_args(&deployment, &objects, "kube-controller-manager", &root);
            set_flags(
                &mut args,
                &[
                    ("bind-address", "127.0.0.1".into()),
                    ("secure-port", free_port().to_string()),
                    // The controllers under test: kubelet CSR approval and signing, and the
                    // bootstrap signer that signs cluster-info for `kubeadm join`'s discovery.
                    ("controllers", "csrapproving,csrsigning,bootstrapsigner".into()),
                    // A restarted manager must not wait for its predecessor's lease.
                    ("leader-elect", "false".into()),
                ],
            );
            set_flags(&mut args, extra);
            Process::start(
                "kube-controller-manager",
                &self.bin.join("kube-controller-manager"),
                &args,
                &root,
            )
        });

        let mut plane = ControlPlane {
            apiserver,
            controller_manager,
            scheduler: None,
            konnectivity,
            root,
            generation: deployment.metadata.generation.unwrap_or_default(),
        };
        let super_admin = write(
            &plane.root,
            "super-admin.conf",
            &secret_data(&secrets, &tenant.secret("admin-kubeconfig"), "super-admin.conf"),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
        loop {
            plane.assert_running();
            let out = self.kubectl(&super_admin, &["get", "--raw", "/readyz"]);
            if out.status.success() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the tenant kube-apiserver is not ready after 240s: {}\n--- kube-apiserver ---\n{}\n--- etcd ---\n{}",
                String::from_utf8_lossy(&out.stderr),
                plane.apiserver.log_tail(),
                self.etcd.process.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        plane
    }

    /// Runs the tenant's control plane as its Deployment's rollouts would: whenever
    /// the pod template changes, the old processes stop and new ones start (the
    /// controller-manager with `controller_manager_flags` over the Deployment's) from
    /// the material stored then, before the operator can see the rollout complete (a
    /// kube-apiserver takes seconds to start, a kwok pod is ready at once).
    /// `before_start` sees `<tcp>-ca` as stored just before each start. Returns once
    /// `done` holds with the plane running the current template.
    #[allow(clippy::too_many_arguments)]
    pub async fn follow_rollouts<T, F, Fut>(
        &self,
        client: &Client,
        tenant: &Tenant,
        plane: &mut Option<ControlPlane>,
        controller_manager_flags: &[(&str, String)],
        what: &str,
        before_start: impl Fn(&BTreeMap<String, Vec<u8>>),
        mut done: F,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
        loop {
            let generation = self.deployment_generation(client, tenant).await;
            if plane.as_ref().is_none_or(|p| p.generation != generation) {
                plane.take();
                // The CA the new processes run with, read once: a CA retired between two
                // reads would run under the label of the phase before.
                *plane = Some(
                    self.start_control_plane_seeing(
                        client,
                        tenant,
                        Some(controller_manager_flags),
                        &before_start,
                    )
                    .await,
                );
                continue;
            }
            if let Some(value) = done().await
                && self.deployment_generation(client, tenant).await == generation
            {
                return value;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: not within 240s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// kwok on the tenant, with this kubeconfig, as tests/cluster/up.sh runs it on the
    /// management cluster: it plays the Stages of tests/cluster/kwok/stages on the
    /// tenant's Nodes annotated `kwok.x-k8s.io/node=fake` and their pods (Ready at
    /// once, no container runtime), addresses 127.0.0.1, pod IPs from the tenant's
    /// default pod CIDR. It serves no port of its own.
    pub fn start_kwok(&self, kubeconfig: &Path) -> Process {
        let stages = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/kwok/stages");
        let mut files: Vec<String> = fs::read_dir(&stages)
            .expect("tests/cluster/kwok/stages")
            .filter_map(|e| Some(e.ok()?.path().display().to_string()))
            .filter(|p| p.ends_with(".yaml"))
            .collect();
        files.sort();
        let workdir = self.dir().join("kwok");
        fs::create_dir_all(&workdir).expect("kwok's work directory");
        let mut command = Command::new(self.bin.join("kwok"));
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--config={}", files.join(",")))
            .args([
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--manage-nodes-with-label-selector=",
                "--node-lease-duration-seconds=40",
                "--node-ip=127.0.0.1",
                "--cidr=10.244.0.0/16",
            ])
            // Keeps it from reading the user's ~/.kwok/kwok.yaml.
            .env("KWOK_WORKDIR", &workdir);
        Process::start_command("kwok", command, self.dir())
    }

    /// `kubectl annotate secret <tcp>-ca certs.kamaji.clastix.io/rotate=""`: a CA rotation.
    pub fn rotate_ca(&self, tenant: &Tenant) {
        kubectl_ok(&[
            "annotate",
            "secret",
            "-n",
            &self.namespace,
            &tenant.secret("ca"),
            "certs.kamaji.clastix.io/rotate=",
            // A previous rotation left its time as the value.
            "--overwrite",
        ]);
    }

    /// The TCP is `Ready` in CA rotation `phase`.
    pub async fn in_ca_phase(&self, client: &Client, tenant: &Tenant, phase: CaRotationPhase) -> Option<()> {
        let tcp = Api::<TenantControlPlane>::namespaced(client.clone(), &self.namespace)
            .get(&tenant.name)
            .await
            .ok()?;
        let status = tcp.status?;
        let ready = status.kubernetes_resources.and_then(|r| r.version?.status)
            == Some(KubernetesVersionStatus::Ready);
        let current = status.credentials?.rotation?.certificate_authorities?.phase;
        (ready && current == Some(phase)).then_some(())
    }

    /// [`Self::follow_rollouts`] until the TCP is `Ready` in CA rotation `phase`.
    pub async fn follow_rollouts_to_ca_phase(
        &self,
        client: &Client,
        tenant: &Tenant,
        plane: &mut Option<ControlPlane>,
        controller_manager_flags: &[(&str, String)],
        phase: CaRotationPhase,
        before_start: impl Fn(&BTreeMap<String, Vec<u8>>),
    ) {
        let what = format!("the {phase:?} phase of the CA rotation");
        self.follow_rollouts(
            client,
            tenant,
            plane,
            controller_manager_flags,
            &what,
            before_start,
            || self.in_ca_phase(client, tenant, phase),
        )
        .await;
    }

    async fn secrets(&self, client: &Client, tenant: &Tenant) -> BTreeMap<String, Secret> {
        let api: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
        let list = api
            .list(
                &kube::api::ListParams::default().labels(&format!("kamaji.clastix.io/name={}", tenant.name)),
            )
            .await
            .expect("listing the tenant's Secrets");
        list.items
            .into_iter()
            .filter_map(|s| Some((s.metadata.name.clone()?, s)))
            .collect()
    }

    /// The tenant's ConfigMaps (the operator's labels) by name.
    async fn config_maps(&self, client: &Client, tenant: &Tenant) -> BTreeMap<String, ConfigMap> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        let list = api
            .list(
                &kube::api::ListParams::default().labels(&format!("kamaji.clastix.io/name={}", tenant.name)),
            )
            .await
            .expect("listing the tenant's ConfigMaps");
        list.items
            .into_iter()
            .filter_map(|m| Some((m.metadata.name.clone()?, m)))
            .collect()
    }

    /// konnectivity-server from the Deployment's container (the real binary, built from
    /// its published module), its agent port the addon's on 127.0.0.1, its admin and
    /// health ports free ones.
    fn start_konnectivity_server(
        &self,
        deployment: &Deployment,
        objects: &pod::Objects<'_>,
        root: &Path,
    ) -> Process {
        let mut args = container_args(deployment, objects, "konnectivity-server", root);
        set_flags(
            &mut args,
            &[
                ("agent-bind-address", "127.0.0.1".into()),
                ("admin-bind-address", "127.0.0.1".into()),
                ("admin-port", free_port().to_string()),
                ("health-bind-address", "127.0.0.1".into()),
                ("health-port", free_port().to_string()),
            ],
        );
        Process::start("konnectivity-server", &super::built("proxy-server"), &args, root)
    }

    /// Events on the TenantControlPlane with this reason: their notes.
    pub async fn events(&self, client: &Client, tenant: &Tenant, reason: &str) -> Vec<String> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &self.namespace);
        let list = api
            .list(&kube::api::ListParams::default())
            .await
            .expect("listing events");
        list.items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(tenant.name.as_str())
            })
            .filter_map(|e| e.note)
            .collect()
    }

    /// The status condition of `type_` on the tenant, if any.
    pub async fn condition(
        &self,
        client: &Client,
        tenant: &Tenant,
        type_: &str,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &self.namespace);
        tcps.get(&tenant.name)
            .await
            .ok()?
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
    }

    /// Annotates the tenant's Secrets selected by `selector` for rotation, as a user would.
    pub fn annotate_rotate(&self, tenant: &Tenant, selector: &str) {
        kubectl_ok(&[
            "annotate",
            "secret",
            "-n",
            &self.namespace,
            "-l",
            &format!("{selector},kamaji.clastix.io/name={}", tenant.name),
            "certs.kamaji.clastix.io/rotate=",
        ]);
    }
}

/// The tenant's running control plane; stops when dropped.
pub struct ControlPlane {
    /// kube-apiserver.
    pub apiserver: Process,
    /// kube-controller-manager, when asked for.
    pub controller_manager: Option<Process>,
    /// kube-scheduler, when asked for.
    pub scheduler: Option<Process>,
    /// konnectivity-server, when the Deployment runs one (the konnectivity addon).
    pub konnectivity: Option<Process>,
    /// Where its files are, laid out as the pod mounts them.
    pub root: PathBuf,
    /// The Deployment generation whose pod template it runs.
    pub generation: i64,
}

impl ControlPlane {
    /// Panics with the logs if a component exited.
    pub fn assert_running(&mut self) {
        self.apiserver.assert_running();
        for process in [
            &mut self.controller_manager,
            &mut self.scheduler,
            &mut self.konnectivity,
        ]
        .into_iter()
        .flatten()
        {
            process.assert_running();
        }
    }

    /// The end of each component's log (for assertion messages).
    pub fn logs(&self) -> String {
        let mut text = format!("--- kube-apiserver ---\n{}", self.apiserver.log_tail());
        if let Some(cm) = &self.controller_manager {
            text.push_str(&format!("\n--- kube-controller-manager ---\n{}", cm.log_tail()));
        }
        if let Some(scheduler) = &self.scheduler {
            text.push_str(&format!("\n--- kube-scheduler ---\n{}", scheduler.log_tail()));
        }
        if let Some(server) = &self.konnectivity {
            text.push_str(&format!("\n--- konnectivity-server ---\n{}", server.log_tail()));
        }
        text
    }
}

fn secret_data(secrets: &BTreeMap<String, Secret>, name: &str, key: &str) -> Vec<u8> {
    pod::secret_data(secrets, name, key)
        .unwrap_or_else(|e| panic!("{e}"))
        .to_vec()
}

/// Whether the pod runs this container.
fn has_container(deployment: &Deployment, container: &str) -> bool {
    let pod = deployment.spec.template.spec.as_ref();
    pod.is_some_and(|p| p.containers.iter().any(|c| c.name == container))
}

/// The flags of `container`, its files laid out under `root` as the pod mounts them.
fn container_args(
    deployment: &Deployment,
    objects: &pod::Objects<'_>,
    container: &str,
    root: &Path,
) -> Vec<String> {
    pod::lay_out(deployment, objects, container, root)
        .unwrap_or_else(|e| panic!("laying out {container}: {e}"))
}
