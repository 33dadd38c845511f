//! The CertificateLifecycle controller (DESIGN.md section 3): watches the Secrets
//! labelled `kamaji.clastix.io/certificate_lifecycle_controller` (and only those:
//! the label selector is on the watch itself), reads the certificates each one
//! actually uses, and
//!
//! * far from expiry: requeues the Secret exactly at `notAfter - deadline`
//!   (a timer per Secret, no periodic scan);
//! * within the deadline: annotates it `certs.kamaji.clastix.io/rotate=""`, together
//!   with every other Secret of the tenant whose deadline has passed, so the
//!   TenantControlPlane reconciler rotates them in one batch (one rollout);
//! * unreadable: a Warning event on the Secret, a `CertificatesValid=False`
//!   condition on its TenantControlPlane and the `invalid` metric; the Secret is
//!   left untouched and the check retried with exponential backoff.
//!
//! `kamaji.clastix.io/paused` on the Secret or its TenantControlPlane: nothing is annotated.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller,
        controller::{self, Action},
        events::{Event, EventType},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use time::OffsetDateTime;
use tracing::{debug, info, warn};

use crate::{
    api::{TenantControlPlane, labels},
    controllers::{Context, Error},
    pki::{Inspection, Lifecycle, inspect},
    runtime::metrics::Observation,
};

/// The `controller` label of this controller's metrics.
pub const CONTROLLER: &str = "certificatelifecycle";
/// The TenantControlPlane condition this controller owns.
pub const CONDITION: &str = "CertificatesValid";
/// Field manager of the condition: not the reconciler's, so neither removes the other's conditions.
pub const FIELD_MANAGER: &str = "kamaji-rs-lifecycle";

/// First retry of a failed check; doubles up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest pause between retries of a failed check.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Longest timer. Timers run on the monotonic clock, which does not count a suspended
/// machine and ignores wall-clock steps: a Secret far from its deadline is re-checked
/// weekly so that drift cannot delay a rotation by more than this.
const MAX_TIMER: Duration = Duration::from_secs(7 * 24 * 3600);
/// Re-check of a certificate that a rotation did not bring out of the deadline
/// (its source expires, or the validity is shorter than the deadline): a warning, not a retry storm.
const STILL_EXPIRING_RECHECK: Duration = Duration::from_secs(3600);

/// This controller's context: the shared [`Context`], the watched Secrets, and the
/// retry state (only retry delays: losing it on restart loses nothing).
pub struct LifecycleContext {
    /// Client, recorder, metrics, settings.
    pub ctx: Arc<Context>,
    /// The lifecycle-labelled Secrets, as watched.
    secrets: Store<Secret>,
    /// Consecutive failures per Secret (`namespace/name`).
    retries: Mutex<HashMap<String, u32>>,
    /// Tenants whose condition was checked since the process started.
    synced: Mutex<HashSet<(String, String)>>,
    /// Serialises the rotation requests of each tenant, so its Secrets expiring together
    /// are annotated in one pass; tenants never wait for each other.
    requesting: Mutex<HashMap<TenantKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// A tenant, as `(namespace, name)`.
type TenantKey = (String, String);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update of these maps is a single insert or remove: a poisoned one is still consistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pause before retry number `attempt` (0-based).
fn backoff_delay(attempt: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(BACKOFF_MAX)
}

impl LifecycleContext {
    fn backoff(&self, key: String) -> Duration {
        let mut retries = lock(&self.retries);
        let attempt = retries.entry(key).or_insert(0);
        let delay = backoff_delay(*attempt);
        *attempt = attempt.saturating_add(1);
        delay
    }
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let (secrets, tcps): (Api<Secret>, Api<TenantControlPlane>) = match &ctx.settings.watch_namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client, ns)),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let selector = format!(
        "{} in ({},{})",
        labels::CERTIFICATE_LIFECYCLE,
        Lifecycle::X509.label_value(),
        Lifecycle::Kubeconfig.label_value()
    );
    let controller = Controller::new(secrets, watcher::Config::default().labels(&selector));
    let store = controller.store();
    let state = Arc::new(LifecycleContext {
        ctx: ctx.clone(),
        secrets: store.clone(),
        retries: Mutex::default(),
        synced: Mutex::default(),
        requesting: Mutex::default(),
    });
    // A TenantControlPlane that is un-paused re-checks its Secrets (their timers may have
    // passed while it was paused). Other changes of the TenantControlPlane do not matter here.
    let paused = Mutex::new(HashMap::<(String, String), bool>::new());
    let controller = controller.watches(tcps, watcher::Config::default(), move |tcp| {
        let key = (tcp.namespace().unwrap_or_default(), tcp.name_any());
        let now_paused = tcp.annotations().contains_key(labels::PAUSED);
        let was_paused = lock(&paused).insert(key.clone(), now_paused);
        if was_paused != Some(true) || now_paused {
            return Vec::new();
        }
        store
            .state()
            .into_iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(key.0.as_str()) && owner(s).as_deref() == Some(&key.1)
            })
            .map(|s| ObjectRef::from_obj(&*s))
            .collect()
    });
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, state.clone())
        .for_each(|result| {
            let state = state.clone();
            async move {
                match result {
                    Ok(_) => {}
                    Err(controller::Error::ObjectNotFound(gone)) => {
                        // Deleted, or no longer labelled: its series and its condition go with it.
                        forget(&state, gone.namespace.as_deref().unwrap_or_default(), &gone.name).await;
                    }
                    Err(controller::Error::ReconcilerFailed(error, object)) => {
                        debug!(%error, secret = %object.name, "certificate lifecycle check failed");
                    }
                    Err(error) => warn!(%error, "certificate lifecycle controller"),
                }
            }
        })
        .await;
}

/// The TenantControlPlane owning a Secret (its controller reference first).
pub fn owner(secret: &Secret) -> Option<String> {
    let refs = secret.metadata.owner_references.as_deref().unwrap_or_default();
    let tcps = || {
        refs.iter()
            .filter(|o| o.kind == "TenantControlPlane" && o.api_version.starts_with("kamaji.clastix.io/"))
    };
    tcps()
        .find(|o| o.controller == Some(true))
        .or_else(|| tcps().next())
        .map(|o| o.name.clone())
}

/// The tenant a Secret's metrics are labelled with: its owner, else its `kamaji.clastix.io/name`.
fn tenant_label(secret: &Secret) -> String {
    owner(secret)
        .or_else(|| secret.labels().get(labels::NAME).cloned())
        .unwrap_or_default()
}

fn lifecycle_of(secret: &Secret) -> Option<Lifecycle> {
    secret.labels().get(labels::CERTIFICATE_LIFECYCLE)?.parse().ok()
}

fn inspect_secret(secret: &Secret, lifecycle: Lifecycle) -> Result<Inspection, crate::pki::InspectError> {
    let data = secret.data.as_ref();
    inspect(
        data.into_iter()
            .flatten()
            .map(|(key, value)| (key.as_str(), value.0.as_slice())),
        lifecycle,
    )
}

/// What to do with a readable Secret, from its earliest NotAfter alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Outside the deadline: check again after this long (at `notAfter - deadline`).
    Wait(Duration),
    /// Within the deadline: request a rotation.
    RequestRotation,
    /// A rotation is already requested (`rotate: ""`) and not yet done.
    Pending,
    /// It was rotated after its deadline had passed and still expires within it: a
    /// rotation cannot help (the source expires, or validity is shorter than the deadline).
    StillExpiring {
        /// When it was rotated (the annotation's value).
        rotated_at: String,
    },
}

/// Decides from the earliest NotAfter, the deadline and the rotate annotation.
pub fn decide(
    not_after: OffsetDateTime,
    now: OffsetDateTime,
    deadline: Duration,
    rotate_annotation: Option<&str>,
) -> Decision {
    let renewal = not_after - deadline;
    if now < renewal {
        let wait = Duration::try_from(renewal - now).unwrap_or(Duration::ZERO);
        return Decision::Wait(wait.min(MAX_TIMER));
    }
    match rotate_annotation {
        Some("") => Decision::Pending,
        Some(value) => match value.parse::<Timestamp>() {
            Ok(at) if at.as_second() >= renewal.unix_timestamp() => Decision::StillExpiring {
                rotated_at: value.to_string(),
            },
            _ => Decision::RequestRotation,
        },
        None => Decision::RequestRotation,
    }
}

use crate::tenant::certificates::rfc3339;

/// Checks one Secret (see the module documentation).
pub async fn reconcile(secret: Arc<Secret>, state: Arc<LifecycleContext>) -> Result<Action, Error> {
    let _timer = state.ctx.metrics.reconcile(CONTROLLER);
    let result = check(&secret, &state).await;
    if result.is_ok() {
        let key = format!("{}/{}", secret.namespace().unwrap_or_default(), secret.name_any());
        lock(&state.retries).remove(&key);
    }
    result
}

async fn check(secret: &Secret, state: &LifecycleContext) -> Result<Action, Error> {
    let name = secret.name_any();
    let namespace = secret
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(format!("secret {name}")))?;
    let Some(lifecycle) = lifecycle_of(secret) else {
        // Not selected by the watch; nothing to check.
        forget(state, &namespace, &name).await;
        return Ok(Action::await_change());
    };
    let inspection = match inspect_secret(secret, lifecycle) {
        Ok(inspection) => inspection,
        Err(problem) => return Err(report_unreadable(state, secret, &namespace, lifecycle, problem).await),
    };
    let Some(earliest) = inspection.earliest() else {
        return Ok(Action::await_change());
    };
    let now = OffsetDateTime::now_utc();
    let deadline = state.ctx.settings.certificate_expiration_deadline;
    let rotate = secret.annotations().get(labels::ROTATE).map(String::as_str);
    let decision = decide(earliest.not_after, now, deadline, rotate);
    record_readable(state, secret, &namespace, lifecycle, earliest, &decision).await?;
    match decision {
        Decision::Wait(wait) => {
            let (not_after, renewal) = (earliest.not_after, earliest.not_after - deadline);
            debug!(%namespace, secret = %name, not_after = %rfc3339(not_after), renewal = %rfc3339(renewal), "rotation scheduled");
            Ok(Action::requeue(wait))
        }
        Decision::Pending => Ok(Action::await_change()),
        Decision::StillExpiring { rotated_at } => {
            let note = format!(
                "{} (serial {}) expires at {} although it was rotated at {rotated_at}: \
                 renew its source (or make the validity longer than the deadline)",
                earliest.data_key,
                earliest.serial,
                rfc3339(earliest.not_after)
            );
            Ok(warn_expiring(state, secret, note).await)
        }
        Decision::RequestRotation => request_if_allowed(state, secret, &namespace, earliest, now).await,
    }
}

/// An unreadable Secret: the `invalid` metric, a Warning event, its tenant's
/// condition; the error retries the check with backoff.
async fn report_unreadable(
    state: &LifecycleContext,
    secret: &Secret,
    namespace: &str,
    lifecycle: Lifecycle,
    problem: crate::pki::InspectError,
) -> Error {
    let name = secret.name_any();
    let previous = state.ctx.metrics.observe_secret(
        namespace,
        &name,
        &tenant_label(secret),
        lifecycle.label_value(),
        Observation::Invalid,
    );
    if previous.map(|p| p.observation) != Some(Observation::Invalid) {
        warn!(%namespace, secret = %name, reason = problem.reason(), %problem, "unreadable certificate");
    }
    let note = format!("{problem}; the Secret is left untouched and checked again with backoff");
    publish(&state.ctx, secret, EventType::Warning, "InvalidCertificate", note).await;
    if let Some(tcp) = owner(secret)
        && let Err(error) = sync_condition(state, namespace, &tcp).await
    {
        return error;
    }
    Error::InvalidCertificate {
        secret: format!("{namespace}/{name}"),
        source: problem,
    }
}

/// A readable Secret: its expiry series, and its tenant's condition when it was
/// repaired or never checked since the process started.
async fn record_readable(
    state: &LifecycleContext,
    secret: &Secret,
    namespace: &str,
    lifecycle: Lifecycle,
    earliest: &crate::pki::inspect::CertificateInfo,
    decision: &Decision,
) -> Result<(), Error> {
    let deadline = state.ctx.settings.certificate_expiration_deadline;
    let previous = state.ctx.metrics.observe_secret(
        namespace,
        &secret.name_any(),
        &tenant_label(secret),
        lifecycle.label_value(),
        Observation::Readable {
            expiration: earliest.not_after.unix_timestamp(),
            renewal: (earliest.not_after - deadline).unix_timestamp(),
            expiring: !matches!(decision, Decision::Wait(_)),
        },
    );
    if let Some(tcp) = owner(secret) {
        let key = (namespace.to_string(), tcp.clone());
        let repaired = previous.is_some_and(|p| p.observation == Observation::Invalid);
        let unchecked = !lock(&state.synced).contains(&key);
        if repaired || unchecked {
            sync_condition(state, namespace, &tcp).await?;
        }
    }
    Ok(())
}

/// Requests the rotation of a Secret past its deadline, unless it or its tenant is
/// paused, or no tenant owns it (then a Warning says so).
async fn request_if_allowed(
    state: &LifecycleContext,
    secret: &Secret,
    namespace: &str,
    earliest: &crate::pki::inspect::CertificateInfo,
    now: OffsetDateTime,
) -> Result<Action, Error> {
    let name = secret.name_any();
    if secret.annotations().contains_key(labels::PAUSED) {
        info!(%namespace, secret = %name, "due for rotation but paused: {} is set", labels::PAUSED);
        return Ok(Action::await_change());
    }
    let Some(tcp) = owner(secret) else {
        let note = format!(
            "{} expires at {}, within the expiration deadline, and no TenantControlPlane \
             owns this Secret to rotate it",
            earliest.data_key,
            rfc3339(earliest.not_after)
        );
        return Ok(warn_expiring(state, secret, note).await);
    };
    let tcps: Api<TenantControlPlane> = Api::namespaced(state.ctx.client.clone(), namespace);
    let owner_tcp = tcps.get_opt(&tcp).await.map_err(Error::kube(
        "get",
        format!("tenantcontrolplane {namespace}/{tcp}"),
    ))?;
    if owner_tcp
        .as_ref()
        .is_some_and(|t| t.annotations().contains_key(labels::PAUSED))
    {
        info!(%namespace, secret = %name, tenant = %tcp, "due for rotation but the tenant is paused");
        return Ok(Action::await_change());
    }
    if owner_tcp.as_ref().is_some_and(|t| !ours(t, &state.ctx)) {
        info!(%namespace, secret = %name, tenant = %tcp, "due for rotation but the tenant is another operator's");
        return Ok(Action::await_change());
    }
    request_rotations(state, secret, namespace, &tcp, now).await
}

/// The tenant is this instance's ([`crate::tenant::ownership`]): claimed by it, or not
/// yet claimed (the TCP reconciler claims it on its first pass).
fn ours(tcp: &TenantControlPlane, ctx: &Context) -> bool {
    use crate::tenant::ownership::{Owner, owner};
    matches!(
        owner(&tcp.metadata, &ctx.settings.identity),
        Owner::Us | Owner::Unclaimed
    )
}

/// A certificate a rotation cannot bring out of the deadline: a Warning, and a look
/// again later (a warning, not a retry storm).
async fn warn_expiring(state: &LifecycleContext, secret: &Secret, note: String) -> Action {
    publish(
        &state.ctx,
        secret,
        EventType::Warning,
        "CertificateExpiring",
        note,
    )
    .await;
    Action::requeue(STILL_EXPIRING_RECHECK)
}

/// Annotates `secret` and every other Secret of the same tenant whose deadline has
/// passed, in one pass: the reconciler then rotates them together (one rollout).
async fn request_rotations(
    state: &LifecycleContext,
    secret: &Secret,
    namespace: &str,
    tenant: &str,
    now: OffsetDateTime,
) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let deadline = ctx.settings.certificate_expiration_deadline;
    let tenant_lock = lock(&state.requesting)
        .entry((namespace.to_string(), tenant.to_string()))
        .or_default()
        .clone();
    let _batch = tenant_lock.lock().await;
    let name = secret.name_any();
    // This Secret, then its siblings, as the watch last saw them: a batch that ran while
    // this reconcile waited for the lock has annotated them already (then they are pending).
    let secret = state
        .secrets
        .get(&ObjectRef::from_obj(secret))
        .unwrap_or_else(|| Arc::new(secret.clone()));
    let siblings = state.secrets.state().into_iter().filter(|s| {
        s.namespace().as_deref() == Some(namespace)
            && owner(s).as_deref() == Some(tenant)
            && s.name_any() != name
            && !s.annotations().contains_key(labels::PAUSED)
    });
    let due = due_for_rotation(std::iter::once(secret).chain(siblings), now, deadline);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let mut requested = Vec::new();
    for (candidate, note) in due {
        let candidate_name = candidate.name_any();
        // Only the version inspected is annotated: a Secret rotated meanwhile is left alone.
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": candidate.resource_version(),
                "annotations": { labels::ROTATE: "" },
            }
        });
        match api.patch(&candidate_name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                publish(ctx, &candidate, EventType::Normal, "RotationRequested", note).await;
                requested.push(candidate_name);
            }
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                debug!(%namespace, secret = %candidate_name, "changed meanwhile; its own check decides");
            }
            Err(error) if candidate_name == name => {
                return Err(Error::kube("annotate", format!("secret {namespace}/{name}"))(
                    error,
                ));
            }
            Err(error) => warn!(%namespace, secret = %candidate_name, %error, "requesting a rotation failed"),
        }
    }
    if !requested.is_empty() {
        info!(%namespace, %tenant, secrets = ?requested, "certificates within the expiration deadline: rotation requested");
    }
    Ok(Action::await_change())
}

/// The Secrets among `candidates` whose deadline has passed, each with the event
/// note that says why; unreadable ones are left to their own check.
fn due_for_rotation(
    candidates: impl Iterator<Item = Arc<Secret>>,
    now: OffsetDateTime,
    deadline: std::time::Duration,
) -> Vec<(Arc<Secret>, String)> {
    let mut due = Vec::new();
    for candidate in candidates {
        let Some(lifecycle) = lifecycle_of(&candidate) else {
            continue;
        };
        let Ok(inspection) = inspect_secret(&candidate, lifecycle) else {
            continue;
        };
        let Some(earliest) = inspection.earliest() else {
            continue;
        };
        let rotate = candidate.annotations().get(labels::ROTATE).map(String::as_str);
        if decide(earliest.not_after, now, deadline, rotate) == Decision::RequestRotation {
            let note = format!(
                "{} (serial {}) expires at {}, within the expiration deadline ({}): rotation requested",
                earliest.data_key,
                earliest.serial,
                rfc3339(earliest.not_after),
                humantime::format_duration(deadline)
            );
            due.push((candidate, note));
        }
    }
    due
}

/// Retries a failed check with per-Secret exponential backoff (5 s doubling to 5 min).
pub fn error_policy(secret: Arc<Secret>, error: &Error, state: Arc<LifecycleContext>) -> Action {
    state.ctx.metrics.reconcile_failed(CONTROLLER, error.reason());
    let key = format!("{}/{}", secret.namespace().unwrap_or_default(), secret.name_any());
    let delay = state.backoff(key.clone());
    warn!(secret = %key, reason = error.reason(), %error, retry_in = ?delay, "certificate lifecycle check failed");
    Action::requeue(delay)
}

/// A Secret that is gone (or no longer labelled): drop its series, retries, and its
/// part of its tenant's condition.
async fn forget(state: &LifecycleContext, namespace: &str, name: &str) {
    lock(&state.retries).remove(&format!("{namespace}/{name}"));
    let Some(previous) = state.ctx.metrics.forget_secret(namespace, name) else {
        return;
    };
    if previous.observation == Observation::Invalid
        && !previous.tenant.is_empty()
        && let Err(error) = sync_condition(state, namespace, &previous.tenant).await
    {
        warn!(%namespace, tenant = %previous.tenant, %error, "updating the CertificatesValid condition failed");
    }
}

/// Sets `CertificatesValid` on the tenant from all its lifecycle-labelled Secrets: False
/// naming every unreadable Secret and key; back to True once none is. Writes only
/// when it changes, with this controller's field manager and only this condition.
async fn sync_condition(state: &LifecycleContext, namespace: &str, tenant: &str) -> Result<(), Error> {
    let mut problems: Vec<String> = state
        .secrets
        .state()
        .into_iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace) && owner(s).as_deref() == Some(tenant))
        .filter_map(|s| {
            let lifecycle = lifecycle_of(&s)?;
            inspect_secret(&s, lifecycle)
                .err()
                .map(|problem| format!("{} ({problem})", s.name_any()))
        })
        .collect();
    problems.sort();
    let api: Api<TenantControlPlane> = Api::namespaced(state.ctx.client.clone(), namespace);
    let Some(tcp) = api.get_opt(tenant).await.map_err(Error::kube(
        "get",
        format!("tenantcontrolplane {namespace}/{tenant}"),
    ))?
    else {
        return Ok(());
    };
    lock(&state.synced).insert((namespace.to_string(), tenant.to_string()));
    if tcp.annotations().contains_key(labels::PAUSED) || !ours(&tcp, &state.ctx) {
        return Ok(());
    }
    let existing = tcp
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION));
    let (status, reason, message) = if !problems.is_empty() {
        (
            "False",
            "InvalidCertificate",
            format!("unreadable certificates, left untouched: {}", problems.join("; ")),
        )
    } else if existing.is_some_and(|c| c.status != "True") {
        (
            "True",
            "Readable",
            "every lifecycle-labelled Secret holds readable certificates".to_string(),
        )
    } else {
        return Ok(());
    };
    let message = truncate(message, 4000);
    if existing.is_some_and(|c| c.status == status && c.reason == reason && c.message == message) {
        return Ok(());
    }
    let last_transition_time = match existing {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    let condition = Condition {
        type_: CONDITION.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: tcp.metadata.generation,
        last_transition_time,
    };
    let patch = serde_json::json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1",
        "kind": "TenantControlPlane",
        "status": { "conditions": [condition] },
    });
    api.patch_status(
        tenant,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube(
        "apply status",
        format!("tenantcontrolplane {namespace}/{tenant}"),
    ))?;
    info!(%namespace, %tenant, status, "{CONDITION} condition updated");
    Ok(())
}

use crate::controllers::truncate;

async fn publish(ctx: &Context, secret: &Secret, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        // Event notes are limited to 1 KiB by the API server.
        note: Some(truncate(note, 1000)),
        action: "CheckExpiration".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &secret.object_ref(&())).await {
        warn!(%error, reason, "publishing an event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).expect("valid time")
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn far_from_expiry_waits_exactly_until_the_deadline() {
        let not_after = at(1_800_000_000);
        let now = not_after - Duration::from_secs(3 * 86_400);
        assert_eq!(
            decide(not_after, now, DAY, None),
            Decision::Wait(Duration::from_secs(2 * 86_400))
        );
        // Timers are capped: a year-long certificate is re-checked weekly.
        let now = not_after - Duration::from_secs(365 * 86_400);
        assert_eq!(decide(not_after, now, DAY, None), Decision::Wait(MAX_TIMER));
    }

    #[test]
    fn at_or_past_the_deadline_a_rotation_is_requested_once() {
        let not_after = at(1_800_000_000);
        let renewal = not_after - DAY;
        assert_eq!(decide(not_after, renewal, DAY, None), Decision::RequestRotation);
        assert_eq!(
            decide(not_after, renewal + Duration::from_secs(1), DAY, Some("")),
            Decision::Pending
        );
        // A rotation before this certificate's deadline does not prevent the next one.
        let earlier = rfc3339(renewal - Duration::from_secs(600));
        assert_eq!(
            decide(not_after, renewal, DAY, Some(&earlier)),
            Decision::RequestRotation
        );
        assert_eq!(
            decide(not_after, renewal, DAY, Some("not a time")),
            Decision::RequestRotation
        );
    }

    #[test]
    fn a_rotation_that_did_not_leave_the_deadline_is_not_repeated() {
        let not_after = at(1_800_000_000);
        let renewal = not_after - DAY;
        let rotated = rfc3339(renewal + Duration::from_secs(60));
        assert_eq!(
            decide(not_after, renewal + Duration::from_secs(120), DAY, Some(&rotated)),
            Decision::StillExpiring { rotated_at: rotated }
        );
    }

    #[test]
    fn the_controller_reference_names_the_owner() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let reference = |name: &str, controller: bool| OwnerReference {
            api_version: "kamaji.clastix.io/v1alpha1".into(),
            kind: "TenantControlPlane".into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(controller),
            ..OwnerReference::default()
        };
        let mut secret = Secret::default();
        assert_eq!(owner(&secret), None);
        secret.metadata.owner_references = Some(vec![reference("a", false), reference("b", true)]);
        assert_eq!(owner(&secret).as_deref(), Some("b"));
        secret.metadata.owner_references = Some(vec![reference("a", false)]);
        assert_eq!(owner(&secret).as_deref(), Some("a"));
    }

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let delays: Vec<u64> = (0..9).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_MAX);
    }
}
