//! The tenant side of the PKI: once a tenant's control plane is Ready and its
//! API server answers at `status.controlPlaneEndpoint`, connect with the
//! tenant's super-admin credentials (`super-admin.conf` of `<tcp>-admin-kubeconfig`)
//! and ensure, with server-side apply, what kubeadm's init creates for the
//! certificates to be usable ([`crate::tenant::bootstrap`]): the
//! `kubeadm:cluster-admins` and `kubeadm:apiserver-kubelet-client` bindings, the
//! kubelet CSR bindings and an anonymous `kube-public/cluster-info` carrying the
//! current tenant CA; what `kubeadm join` reads ([`crate::tenant::kubeadm_config`]):
//! `kube-system/kubeadm-config`, `kube-system/kubelet-config` and their RBAC; and the
//! addons of `spec.addons` ([`crate::tenant::addons`], the konnectivity agent of
//! [`crate::tenant::konnectivity_agent`]), removed when they leave the spec.
//!
//! A controller of its own over TenantControlPlanes, so a slow or unreachable
//! tenant never holds up the management-side reconcile or another tenant: every
//! call to a tenant is bounded by timeouts, failures are retried with exponential
//! backoff and reported in the `TenantClusterReady` condition (written with a field
//! manager of its own, `kamaji-rs-tenant`, touching only that condition). Objects
//! deleted inside the tenant come back at the next periodic pass ([`RESYNC`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding},
        apps::v1::{DaemonSet, Deployment},
        certificates::v1::CertificateSigningRequest,
        core::v1::{ConfigMap, Node, Secret, Service, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{
    Api, Client, Config, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{
        Controller,
        controller::{Action, Config as ControllerConfig},
        events::{Event, EventType},
        watcher,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use time::OffsetDateTime;
use tracing::{debug, info, warn};

use crate::{
    api::{TenantControlPlane, labels},
    controllers::{Context, Error},
    pki::{Authority, catalog},
    tenant::{
        addons::{self, COREDNS, CoreDns, KUBE_DNS, KUBE_PROXY, KubeProxy, NODE_PROXIER, SYSTEM_COREDNS},
        bootstrap::{self, CLUSTER_INFO, PUBLIC_NAMESPACE, TenantObjects},
        konnectivity::{AGENT_NAME, AGENT_NAMESPACE, SERVER_USER},
        konnectivity_agent::{self, Agent, AgentWorkload},
        kubeadm_config::{self, JoinInputs, JoinObjects, KubeadmConfigError, SYSTEM_NAMESPACE},
        meta::{TenantRef, suffix},
        node_credentials,
        status::set_condition,
        write_permissions,
    },
};

/// The condition this controller owns on the TenantControlPlane.
pub const CONDITION: &str = "TenantClusterReady";
/// Field manager of that condition (the TCP reconciler owns the rest of the status).
pub const STATUS_FIELD_MANAGER: &str = "kamaji-rs-tenant";
/// True once `kubeadm:apiserver-kubelet-client` was applied in the tenant: from then
/// on the API server's kubelet client needs no group, and the TCP reconciler re-issues
/// a certificate that still carries `kubeadm:cluster-admins`. Never set back to False:
/// the binding is re-ensured on every pass, an unreachable tenant does not undo it.
pub const KUBELET_CLIENT_CONDITION: &str = "KubeletClientAuthorized";
/// Its own field manager, so each condition is applied alone and keeps the other.
const KUBELET_CLIENT_FIELD_MANAGER: &str = "kamaji-rs-tenant-kubelet-client";
const TENANT_CLUSTER_READY: OwnedCondition = OwnedCondition {
    type_: CONDITION,
    field_manager: STATUS_FIELD_MANAGER,
};
const KUBELET_CLIENT_AUTHORIZED: OwnedCondition = OwnedCondition {
    type_: KUBELET_CLIENT_CONDITION,
    field_manager: KUBELET_CLIENT_FIELD_MANAGER,
};

/// A status condition this controller writes, and the field manager it writes it with.
struct OwnedCondition {
    type_: &'static str,
    field_manager: &'static str,
}

/// The field manager of `status.credentials.rotation.certificateAuthorities.nodes`:
/// its own, so applying the condition alone (with [`STATUS_FIELD_MANAGER`]) keeps it.
const NODES_FIELD_MANAGER: &str = "kamaji-rs-tenant-nodes";
/// Secret key of the credentials used inside the tenant (`system:masters`).
pub const SUPER_ADMIN_KEY: &str = "super-admin.conf";
/// Period of the pass that re-ensures objects deleted or changed inside a tenant.
pub const RESYNC: Duration = Duration::from_secs(60);
/// First retry of a failing tenant; doubled on each failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait between two attempts on a failing tenant.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Tenants handled at once: tenant calls are I/O bound and time-bounded.
const CONCURRENCY: u16 = 16;
/// Bounds of every call into a tenant.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound of one whole pass over a tenant.
const PASS_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a tenant could not be set up (reported in [`CONDITION`], never with key material).
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// A Secret or key the pass needs is missing.
    #[error("{secret} has no {key} yet")]
    MaterialMissing {
        /// Secret name.
        secret: String,
        /// Data key.
        key: String,
    },
    /// Stored material cannot be used (the reason never quotes it).
    #[error("{secret}/{key} is unusable: {reason}")]
    MaterialUnusable {
        /// Secret name.
        secret: String,
        /// Data key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The tenant API server does not answer (or its certificate is not trusted).
    #[error("cannot reach the tenant API server at {endpoint}: {reason}")]
    Unreachable {
        /// `https://host:port`.
        endpoint: String,
        /// The connection error.
        reason: String,
    },
    /// Applying an object inside the tenant failed.
    #[error("applying {object} in the tenant: {source}")]
    Apply {
        /// `kind namespace/name`.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// What `kubeadm join` reads cannot be built from the TenantControlPlane.
    #[error("kube-system/kubeadm-config and kubelet-config not applied: {0}")]
    JoinConfiguration(#[from] KubeadmConfigError),
    /// A call to the management cluster failed.
    #[error(transparent)]
    Management(#[from] Error),
    /// The pass took longer than [`PASS_TIMEOUT`].
    #[error("the tenant did not answer within {0:?}")]
    Timeout(Duration),
}

impl TenantError {
    /// The condition reason (CamelCase, for dashboards and `kubectl get -o wide`).
    pub fn reason(&self) -> &'static str {
        match self {
            TenantError::MaterialMissing { .. } => "CredentialsMissing",
            TenantError::MaterialUnusable { .. } => "CredentialsUnusable",
            TenantError::Unreachable { .. } | TenantError::Timeout(_) => "Unreachable",
            TenantError::Apply { .. } => "ApplyFailed",
            TenantError::JoinConfiguration(_) => "InvalidJoinConfiguration",
            TenantError::Management(_) => "ManagementApiError",
        }
    }
}

/// The controller's state: the shared context plus the failure count of each
/// tenant, which sets its backoff (losing it on restart only restarts the backoff).
struct State {
    ctx: Arc<Context>,
    failures: Mutex<HashMap<(String, String), u32>>,
}

impl State {
    fn key(tenant: &TenantRef) -> (String, String) {
        (tenant.namespace.clone(), tenant.name.clone())
    }

    /// Records a failure and returns the wait before the next attempt.
    fn backoff(&self, tenant: &TenantRef) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(Self::key(tenant)).or_insert(0);
        let delay = backoff_delay(*count);
        *count = count.saturating_add(1);
        delay
    }

    fn succeeded(&self, tenant: &TenantRef) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&Self::key(tenant));
    }
}

/// `MIN_BACKOFF * 2^failures`, capped at [`MAX_BACKOFF`].
pub fn backoff_delay(failures: u32) -> Duration {
    MIN_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(MAX_BACKOFF)
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let tcps: Api<TenantControlPlane> = match &ctx.settings.watch_namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let state = Arc::new(State {
        ctx,
        failures: Mutex::default(),
    });
    Controller::new(tcps, watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(CONCURRENCY))
        .shutdown_on_signal()
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(%error, "tenant cluster reconcile failed");
            }
        })
        .await;
}

fn error_policy(tcp: Arc<TenantControlPlane>, error: &Error, _state: Arc<State>) -> Action {
    warn!(tenant = %tcp.name_any(), namespace = tcp.namespace().unwrap_or_default(), reason = error.reason(), %error, "tenant cluster reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// Whether the control plane serves (the TCP reconciler's verdict).
fn control_plane_ready(tcp: &TenantControlPlane) -> Option<String> {
    let status = tcp.status.as_ref()?;
    let version = status.kubernetes_resources.as_ref()?.version.as_ref()?.status?;
    if !version.serving() {
        return None;
    }
    status.control_plane_endpoint.clone().filter(|e| !e.is_empty())
}

async fn reconcile(tcp: Arc<TenantControlPlane>, state: Arc<State>) -> Result<Action, Error> {
    if tcp.annotations().contains_key(labels::PAUSED) {
        debug!(tenant = %tcp.name_any(), "paused: {} is set", labels::PAUSED);
        return Ok(Action::await_change());
    }
    if crate::tenant::ownership::owner(&tcp.metadata, &state.ctx.settings.identity)
        != crate::tenant::ownership::Owner::Us
    {
        // Claimed by the TCP reconciler first; another operator's tenant is left alone.
        return Ok(Action::await_change());
    }
    let tenant = TenantRef::of(&tcp)?;
    let ctx = &state.ctx;
    let Some(endpoint) = control_plane_ready(&tcp) else {
        let phase = tcp
            .status
            .as_ref()
            .and_then(|s| s.kubernetes_resources.as_ref())
            .and_then(|r| r.version.as_ref())
            .and_then(|v| v.status)
            .map_or("not reported", |s| s.as_str());
        write_condition(
            ctx,
            &tcp,
            &tenant,
            false,
            "WaitingForControlPlane",
            format!("the control plane is {phase}; the tenant cluster is set up once it is Ready"),
        )
        .await?;
        // The TCP's status changes when it becomes Ready, which wakes us.
        return Ok(Action::await_change());
    };
    let server = format!("https://{endpoint}");
    let outcome = match tokio::time::timeout(PASS_TIMEOUT, ensure(ctx, &tcp, &tenant, &endpoint)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(TenantError::Timeout(PASS_TIMEOUT)),
    };
    match outcome {
        Ok(ensured) => {
            state.succeeded(&tenant);
            write_kubelet_client_authorized(ctx, &tcp, &tenant).await?;
            write_condition(
                ctx,
                &tcp,
                &tenant,
                true,
                "Applied",
                format!(
                    "{ensured} objects ensured at {server}: kubeadm:cluster-admins, kubelet CSR bindings, \
                     kube-public/cluster-info, kube-system/kubeadm-config and kubelet-config"
                ),
            )
            .await?;
            Ok(Action::requeue(if ca_rotation_prepared(&tcp) {
                NODE_RENEWAL_RECHECK
            } else {
                RESYNC
            }))
        }
        Err(error) => {
            let delay = state.backoff(&tenant);
            info!(tenant = %tenant.name, namespace = %tenant.namespace, reason = error.reason(), %error, retry_in = ?delay, "tenant cluster not set up");
            let was = current_condition(&tcp).map(|c| c.reason.clone());
            if error.reason() == "Unreachable" && was.as_deref() != Some("Unreachable") {
                publish(
                    ctx,
                    &tcp,
                    EventType::Warning,
                    "TenantUnreachable",
                    format!("{error}; retrying with backoff"),
                )
                .await;
            }
            write_condition(ctx, &tcp, &tenant, false, error.reason(), error.to_string()).await?;
            Ok(Action::requeue(delay))
        }
    }
}

/// How often nodes are looked at while a CA rotation waits for them.
const NODE_RENEWAL_RECHECK: Duration = Duration::from_secs(10);

fn ca_rotation_prepared(tcp: &TenantControlPlane) -> bool {
    use crate::api::rotation::CaRotationPhase;
    let phase = tcp.status.as_ref().and_then(|s| s.ca_rotation_phase());
    matches!(
        phase,
        Some(CaRotationPhase::Preparing | CaRotationPhase::Prepared)
    )
}

/// One pass: credentials and CA from the management cluster, then every object in
/// the tenant. `endpoint` is `status.controlPlaneEndpoint` (`host:port`).
async fn ensure(
    ctx: &Context,
    tcp: &TenantControlPlane,
    tenant: &TenantRef,
    endpoint: &str,
) -> Result<usize, TenantError> {
    let server = &format!("https://{endpoint}");
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &tenant.namespace);
    let admin_secret = tenant.object_name("admin-kubeconfig");
    let admin_key = admin_kubeconfig_key(tcp);
    let super_admin = secret_key(&secrets, &admin_secret, admin_key).await?;
    let ca_secret = tenant.object_name(suffix::CA);
    let ca_pem = secret_key(&secrets, &ca_secret, "ca.crt").await?;
    // The bundle (the signing CA first; during a rotation, the old CA too). Never hand
    // out something that is not a CA certificate.
    let bundle = trust_bundle(&ca_pem).map_err(|reason| TenantError::MaterialUnusable {
        secret: ca_secret.clone(),
        key: "ca.crt".into(),
        reason,
    })?;
    let ca = &bundle[0];
    let rotating = secret_key(&secrets, &ca_secret, catalog::TENANT_CA.previous_keys.0)
        .await
        .is_ok();

    let client = tenant_client(&super_admin, server, &admin_secret, admin_key).await?;
    client
        .apiserver_version()
        .await
        .map_err(|e| TenantError::Unreachable {
            endpoint: server.to_string(),
            reason: with_causes(&e),
        })?;

    let bundle_pem: String = bundle.iter().map(Authority::certificate_pem).collect();
    let objects =
        bootstrap::desired(bundle_pem.as_bytes(), server).map_err(|e| TenantError::MaterialUnusable {
            secret: ca_secret.clone(),
            key: "ca.crt".into(),
            reason: e.to_string(),
        })?;
    let ca_changed = check_cluster_info(ctx, tcp, tenant, &client, &bundle, &bundle_pem).await?;
    // Built before anything is applied, reported after the rest is in place: a bad
    // kubelet patch must not hold up admin.conf's binding or cluster-info.
    let join = kubeadm_config::desired(
        tcp,
        &JoinInputs {
            endpoint,
            certificate_validity: ctx.settings.certificate_validity,
            key_algorithm: ctx.settings.key_algorithm,
        },
    );
    let ensured = apply_all(&client, &objects).await?;
    if ca_changed {
        info!(tenant = %tenant.name, namespace = %tenant.namespace, ca_serial = ca.serial(), "cluster-info now carries the new CA");
    }
    let join = join?;
    apply_join(&client, &join).await?;
    let dns = ensure_core_dns(&client, addons::core_dns(tcp)?).await?;
    let proxy = ensure_kube_proxy(&client, addons::kube_proxy(tcp, endpoint)?).await?;
    let agent = ensure_konnectivity_agent(&client, konnectivity_agent::desired(tcp, endpoint)?).await?;
    let limits = ensure_write_permissions(&client, tcp.spec.write_permissions.as_ref()).await?;
    if rotating {
        observe_nodes(ctx, &client, tcp, tenant, ca).await?;
    }
    Ok(ensured + join.len() + dns + proxy + agent + limits)
}

/// Before cluster-info is written: does it still hand out another CA (a CA rotation)?
/// A CA replaced outright (not through the two-phase rotation) is a Warning: nodes
/// that joined before need a person. Returns whether the CA changed.
async fn check_cluster_info(
    ctx: &Context,
    tcp: &TenantControlPlane,
    tenant: &TenantRef,
    client: &Client,
    bundle: &[Authority],
    bundle_pem: &str,
) -> Result<bool, TenantError> {
    let ca = &bundle[0];
    let public: Api<ConfigMap> = Api::namespaced(client.clone(), PUBLIC_NAMESPACE);
    let stored_info = public
        .get_opt(CLUSTER_INFO)
        .await
        .map_err(|source| TenantError::Apply {
            object: format!("configmap {PUBLIC_NAMESPACE}/{CLUSTER_INFO}"),
            source,
        })?;
    let stored_ca = stored_info.as_ref().and_then(bootstrap::cluster_info_ca);
    let ca_changed = stored_info.is_some() && stored_ca.as_deref() != Some(bundle_pem.as_bytes());
    // A two-phase rotation always shares a CA with what nodes trust; a CA replaced
    // outright (its Secret deleted) does not, and nodes need a person.
    let trust_kept = stored_ca
        .as_deref()
        .map(crate::pki::certificates_der)
        .is_some_and(|old| {
            bundle
                .iter()
                .any(|ca| old.iter().any(|d| d.as_slice() == ca.certificate_der()))
        });
    if ca_changed && !trust_kept {
        // Published before the write: a crash in between repeats the warning rather than losing it.
        publish(
            ctx,
            tcp,
            EventType::Warning,
            "NodesNeedNewCa",
            new_ca_note(tenant, ca.serial()),
        )
        .await;
    }
    Ok(ca_changed)
}

/// Every certificate of `ca.crt`, each a CA; the first signs.
fn trust_bundle(pem: &[u8]) -> Result<Vec<Authority>, String> {
    let ders = crate::pki::certificates_der(pem);
    if ders.is_empty() {
        return Err("no certificate".into());
    }
    ders.iter()
        .map(|der| {
            let one = crate::pki::authority::pem_encode_certificate(der);
            Authority::from_pem(one.as_bytes(), None).map_err(|e| e.to_string())
        })
        .collect()
}

/// During a CA rotation: which nodes renewed their kubelet client certificate under
/// the signing CA, written to `status.credentials.rotation.certificateAuthorities.nodes`.
async fn observe_nodes(
    ctx: &Context,
    client: &Client,
    tcp: &TenantControlPlane,
    tenant: &TenantRef,
    signing: &Authority,
) -> Result<(), TenantError> {
    let list = |what: &'static str| {
        move |source| TenantError::Apply {
            object: what.to_string(),
            source,
        }
    };
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(list("nodes"))?;
    let csrs = Api::<CertificateSigningRequest>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(list("certificatesigningrequests"))?;
    let previous = tcp.status.as_ref().and_then(|s| s.ca_rotation_nodes());
    let seen = node_credentials::observe(
        &nodes.items,
        &csrs.items,
        signing,
        previous,
        OffsetDateTime::now_utc(),
    );
    if previous == Some(&seen) {
        return Ok(());
    }
    info!(tenant = %tenant.name, namespace = %tenant.namespace, renewed = ?seen.renewed, pending = ?seen.pending, "kubelet client certificates during the CA rotation");
    let api: Api<TenantControlPlane> = Api::namespaced(ctx.client.clone(), &tenant.namespace);
    let patch = serde_json::json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1",
        "kind": "TenantControlPlane",
        "status": {"credentials": {"rotation": {"certificateAuthorities": {"nodes": seen}}}},
    });
    api.patch_status(
        &tenant.name,
        &PatchParams::apply(NODES_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| TenantError::Apply {
        object: format!("tenantcontrolplane {}/{} status", tenant.namespace, tenant.name),
        source,
    })?;
    Ok(())
}

/// What a human has to do for nodes that joined before a CA rotation.
fn new_ca_note(tenant: &TenantRef, serial: &str) -> String {
    format!(
        "the tenant CA changed (serial {serial}) and kube-public/cluster-info now carries it, but nodes that \
         joined before still trust the old CA and hold kubelet client certificates it signed. Hand them the new \
         CA: kubectl -n {ns} get secret {secret} -o jsonpath='{{.data.ca\\.crt}}' | base64 -d > ca.crt; on each \
         node install it as /etc/kubernetes/pki/ca.crt, put it (base64) in certificate-authority-data of \
         /etc/kubernetes/kubelet.conf, then re-join the node with a bootstrap token (kubeadm token create \
         --print-join-command) so its kubelet gets a certificate from the new CA",
        ns = tenant.namespace,
        secret = tenant.object_name(suffix::CA),
    )
}

/// The key of `<tcp>-admin-kubeconfig` the operator uses inside the tenant: Kamaji's
/// `kamaji.clastix.io/kubeconfig-secret-key` annotation, else `super-admin.conf`.
pub fn admin_kubeconfig_key(tcp: &TenantControlPlane) -> &str {
    tcp.annotations()
        .get(labels::KUBECONFIG_SECRET_KEY)
        .map(String::as_str)
        .filter(|key| !key.is_empty())
        .unwrap_or(SUPER_ADMIN_KEY)
}

async fn secret_key(api: &Api<Secret>, name: &str, key: &str) -> Result<Vec<u8>, TenantError> {
    let secret = api.get_opt(name).await.map_err(Error::kube(
        "get",
        format!("secret {}/{name}", api.namespace().unwrap_or_default()),
    ))?;
    secret
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(key))
        .map(|v| v.0)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| TenantError::MaterialMissing {
            secret: name.to_string(),
            key: key.to_string(),
        })
}

/// An error with its causes (`client error (Connect): tcp connect error: Connection
/// refused`), so the condition says why a tenant does not answer.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A client of the tenant cluster from kubeconfig bytes, aimed at `server`, with
/// every call time-bounded. Errors name the Secret, never its content.
async fn tenant_client(
    kubeconfig: &[u8],
    server: &str,
    secret: &str,
    key: &str,
) -> Result<Client, TenantError> {
    let unusable = |reason: &str| TenantError::MaterialUnusable {
        secret: secret.to_string(),
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(kubeconfig).map_err(|_| unusable("not UTF-8"))?;
    // Parser messages may quote the document: they are dropped.
    let parsed = Kubeconfig::from_yaml(text).map_err(|_| unusable("not a kubeconfig"))?;
    let mut config = Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
        .await
        .map_err(|_| unusable("no usable cluster, user and context"))?;
    config.cluster_url = server
        .parse()
        .map_err(|_| unusable("the control-plane endpoint is not a URL"))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    Client::try_from(config).map_err(|e| TenantError::Unreachable {
        endpoint: server.to_string(),
        reason: e.to_string(),
    })
}

/// Server-side applies every object with our field manager; returns how many.
async fn apply_all(client: &Client, objects: &TenantObjects) -> Result<usize, TenantError> {
    for role in &objects.cluster_roles {
        apply(Api::all(client.clone()), role, "clusterrole").await?;
    }
    for binding in &objects.cluster_role_bindings {
        apply(Api::all(client.clone()), binding, "clusterrolebinding").await?;
    }
    let ns = PUBLIC_NAMESPACE;
    apply(
        Api::namespaced(client.clone(), ns),
        &objects.cluster_info_role,
        "role",
    )
    .await?;
    apply(
        Api::namespaced(client.clone(), ns),
        &objects.cluster_info_role_binding,
        "rolebinding",
    )
    .await?;
    apply(
        Api::namespaced(client.clone(), ns),
        &objects.cluster_info,
        "configmap",
    )
    .await?;
    Ok(objects.len())
}

/// The CoreDNS addon applied when `spec.addons.coreDNS` asks for it, else removed
/// (only objects carrying our managed-by label: a CoreDNS someone else installed
/// stays). Returns how many objects were applied.
async fn ensure_core_dns(client: &Client, wanted: Option<CoreDns>) -> Result<usize, TenantError> {
    let ns = SYSTEM_NAMESPACE;
    let Some(dns) = wanted else {
        remove_ours::<Deployment>(Api::namespaced(client.clone(), ns), COREDNS, "deployment").await?;
        remove_ours::<Service>(Api::namespaced(client.clone(), ns), KUBE_DNS, "service").await?;
        remove_ours::<ConfigMap>(Api::namespaced(client.clone(), ns), COREDNS, "configmap").await?;
        remove_ours::<ClusterRoleBinding>(Api::all(client.clone()), SYSTEM_COREDNS, "clusterrolebinding")
            .await?;
        remove_ours::<ClusterRole>(Api::all(client.clone()), SYSTEM_COREDNS, "clusterrole").await?;
        remove_ours::<ServiceAccount>(Api::namespaced(client.clone(), ns), COREDNS, "serviceaccount").await?;
        return Ok(0);
    };
    apply(
        Api::namespaced(client.clone(), ns),
        &dns.service_account,
        "serviceaccount",
    )
    .await?;
    apply(Api::all(client.clone()), &dns.cluster_role, "clusterrole").await?;
    apply(
        Api::all(client.clone()),
        &dns.cluster_role_binding,
        "clusterrolebinding",
    )
    .await?;
    apply(Api::namespaced(client.clone(), ns), &dns.config_map, "configmap").await?;
    apply(Api::namespaced(client.clone(), ns), &dns.service, "service").await?;
    apply(Api::namespaced(client.clone(), ns), &dns.deployment, "deployment").await?;
    Ok(CoreDns::LEN)
}

/// The kube-proxy addon applied when `spec.addons.kubeProxy` asks for it, else
/// removed (only objects carrying our managed-by label). Returns how many were applied.
async fn ensure_kube_proxy(client: &Client, wanted: Option<KubeProxy>) -> Result<usize, TenantError> {
    let ns = SYSTEM_NAMESPACE;
    let Some(proxy) = wanted else {
        remove_ours::<DaemonSet>(Api::namespaced(client.clone(), ns), KUBE_PROXY, "daemonset").await?;
        remove_ours::<ConfigMap>(Api::namespaced(client.clone(), ns), KUBE_PROXY, "configmap").await?;
        remove_ours::<RoleBinding>(Api::namespaced(client.clone(), ns), KUBE_PROXY, "rolebinding").await?;
        remove_ours::<Role>(Api::namespaced(client.clone(), ns), KUBE_PROXY, "role").await?;
        remove_ours::<ClusterRoleBinding>(Api::all(client.clone()), NODE_PROXIER, "clusterrolebinding")
            .await?;
        remove_ours::<ServiceAccount>(Api::namespaced(client.clone(), ns), KUBE_PROXY, "serviceaccount")
            .await?;
        return Ok(0);
    };
    apply(
        Api::namespaced(client.clone(), ns),
        &proxy.service_account,
        "serviceaccount",
    )
    .await?;
    apply(
        Api::all(client.clone()),
        &proxy.cluster_role_binding,
        "clusterrolebinding",
    )
    .await?;
    apply(Api::namespaced(client.clone(), ns), &proxy.role, "role").await?;
    apply(
        Api::namespaced(client.clone(), ns),
        &proxy.role_binding,
        "rolebinding",
    )
    .await?;
    apply(
        Api::namespaced(client.clone(), ns),
        &proxy.config_map,
        "configmap",
    )
    .await?;
    apply(
        Api::namespaced(client.clone(), ns),
        &proxy.daemon_set,
        "daemonset",
    )
    .await?;
    Ok(KubeProxy::LEN)
}

/// The konnectivity agent applied when `spec.addons.konnectivity` asks for it (its
/// workload of the other mode removed), else removed (only objects carrying our
/// managed-by label). Returns how many objects were applied.
async fn ensure_konnectivity_agent(client: &Client, wanted: Option<Agent>) -> Result<usize, TenantError> {
    let ns = AGENT_NAMESPACE;
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let Some(agent) = wanted else {
        remove_ours(daemon_sets, AGENT_NAME, "daemonset").await?;
        remove_ours(deployments, AGENT_NAME, "deployment").await?;
        remove_ours::<ClusterRoleBinding>(Api::all(client.clone()), SERVER_USER, "clusterrolebinding")
            .await?;
        remove_ours::<ServiceAccount>(Api::namespaced(client.clone(), ns), AGENT_NAME, "serviceaccount")
            .await?;
        return Ok(0);
    };
    apply(
        Api::namespaced(client.clone(), ns),
        &agent.service_account,
        "serviceaccount",
    )
    .await?;
    apply(
        Api::all(client.clone()),
        &agent.cluster_role_binding,
        "clusterrolebinding",
    )
    .await?;
    match &agent.workload {
        AgentWorkload::DaemonSet(daemon_set) => {
            apply(daemon_sets, daemon_set.as_ref(), "daemonset").await?;
            remove_ours(deployments, AGENT_NAME, "deployment").await?;
        }
        AgentWorkload::Deployment(deployment) => {
            apply(deployments, deployment.as_ref(), "deployment").await?;
            remove_ours(daemon_sets, AGENT_NAME, "daemonset").await?;
        }
    }
    Ok(Agent::LEN)
}

/// Deletes `name` if it is there and carries our managed-by label.
async fn remove_ours<K>(api: Api<K>, name: &str, kind: &str) -> Result<(), TenantError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let object = |source| TenantError::Apply {
        object: match api.namespace() {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        },
        source,
    };
    let Some(found) = api.get_opt(name).await.map_err(object)? else {
        return Ok(());
    };
    if !addons::managed_by_us(found.meta()) {
        return Ok(());
    }
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(object(source)),
    }
}

/// `spec.writePermissions`: the policies refusing the blocked writes, or none.
async fn ensure_write_permissions(
    client: &Client,
    permissions: Option<&crate::api::tenant_control_plane::WritePermissions>,
) -> Result<usize, TenantError> {
    let wanted = write_permissions::desired(permissions);
    let (policies, bindings) = (Api::all(client.clone()), Api::all(client.clone()));
    if wanted.is_empty() {
        for name in [write_permissions::CATCH_ALL, write_permissions::NODE_LEASES] {
            remove_ours::<ValidatingAdmissionPolicyBinding>(
                bindings.clone(),
                name,
                "validatingadmissionpolicybinding",
            )
            .await?;
            remove_ours::<ValidatingAdmissionPolicy>(policies.clone(), name, "validatingadmissionpolicy")
                .await?;
        }
        return Ok(0);
    }
    for enforced in &wanted {
        apply(policies.clone(), &enforced.policy, "validatingadmissionpolicy").await?;
        apply(
            bindings.clone(),
            &enforced.binding,
            "validatingadmissionpolicybinding",
        )
        .await?;
    }
    Ok(wanted.len() * 2)
}

/// What `kubeadm join` reads, in `kube-system`.
async fn apply_join(client: &Client, objects: &JoinObjects) -> Result<(), TenantError> {
    let ns = SYSTEM_NAMESPACE;
    apply(
        Api::namespaced(client.clone(), ns),
        &objects.kubeadm_config,
        "configmap",
    )
    .await?;
    apply(
        Api::namespaced(client.clone(), ns),
        &objects.kubelet_config,
        "configmap",
    )
    .await?;
    for role in &objects.roles {
        apply(Api::namespaced(client.clone(), ns), role, "role").await?;
    }
    for binding in &objects.role_bindings {
        apply(Api::namespaced(client.clone(), ns), binding, "rolebinding").await?;
    }
    Ok(())
}

async fn apply<K>(api: Api<K>, object: &K, kind: &str) -> Result<(), TenantError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(labels::FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| TenantError::Apply {
        object: match api.namespace() {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        },
        source,
    })?;
    Ok(())
}

/// A condition as stored on the TCP.
fn stored_condition<'a>(tcp: &'a TenantControlPlane, type_: &str) -> Option<&'a Condition> {
    tcp.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// Our condition as stored on the TCP.
fn current_condition(tcp: &TenantControlPlane) -> Option<&Condition> {
    stored_condition(tcp, CONDITION)
}

/// Applies [`CONDITION`] alone, with our own field manager, when it changed.
async fn write_condition(
    ctx: &Context,
    tcp: &TenantControlPlane,
    tenant: &TenantRef,
    ok: bool,
    reason: &str,
    message: String,
) -> Result<(), Error> {
    apply_condition(ctx, tcp, tenant, &TENANT_CLUSTER_READY, ok, reason, message).await
}

/// Records that the tenant grants the API server's kubelet client what it needs.
async fn write_kubelet_client_authorized(
    ctx: &Context,
    tcp: &TenantControlPlane,
    tenant: &TenantRef,
) -> Result<(), Error> {
    let message = format!(
        "kubeadm:apiserver-kubelet-client binds {} to system:kubelet-api-admin in the tenant",
        bootstrap::APISERVER_KUBELET_CLIENT_USER
    );
    apply_condition(
        ctx,
        tcp,
        tenant,
        &KUBELET_CLIENT_AUTHORIZED,
        true,
        "BindingApplied",
        message,
    )
    .await
}

/// Applies one condition alone, with its own field manager, when it changed.
async fn apply_condition(
    ctx: &Context,
    tcp: &TenantControlPlane,
    tenant: &TenantRef,
    owned: &OwnedCondition,
    ok: bool,
    reason: &str,
    message: String,
) -> Result<(), Error> {
    let stored = stored_condition(tcp, owned.type_);
    let mut conditions: Vec<Condition> = stored.cloned().into_iter().collect();
    set_condition(
        &mut conditions,
        owned.type_,
        ok,
        reason,
        message,
        tcp.metadata.generation,
    );
    let wanted = conditions.remove(0);
    if stored == Some(&wanted) {
        return Ok(());
    }
    let api: Api<TenantControlPlane> = Api::namespaced(ctx.client.clone(), &tenant.namespace);
    let patch = serde_json::json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1",
        "kind": "TenantControlPlane",
        "status": { "conditions": [wanted] },
    });
    api.patch_status(
        &tenant.name,
        &PatchParams::apply(owned.field_manager).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube(
        "apply status condition",
        format!("tenantcontrolplane {}/{}", tenant.namespace, tenant.name),
    ))?;
    Ok(())
}

async fn publish(ctx: &Context, tcp: &TenantControlPlane, type_: EventType, reason: &str, note: String) {
    let mut note = note;
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "SetUpTenantCluster".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &tcp.object_ref(&())).await {
        warn!(%error, reason, "publishing an event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_two_seconds_up_to_a_minute() {
        let delays: Vec<u64> = (0..8).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff_delay(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn unreachable_reasons_carry_their_causes_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        assert_eq!(with_causes(&error), "client error (Connect): Connection refused");
    }

    #[test]
    fn the_new_ca_note_names_the_secret_and_fits_an_event() {
        let tenant = crate::tenant::meta::tests::tenant("k8s-133", "tenants");
        let note = new_ca_note(&tenant, "1f2e");
        assert!(
            note.contains("kubectl -n tenants get secret k8s-133-ca"),
            "{note}"
        );
        assert!(note.contains("kubeadm token create --print-join-command"));
        assert!(note.len() <= 1000, "{} bytes", note.len());
    }
}
