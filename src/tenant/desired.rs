//! The desired state of a tenant (DESIGN.md section 3), as one pure function:
//! from the TenantControlPlane, what was observed under the tenant's object
//! names and the time, the ordered list of objects to apply and the problems
//! found. The controller observes, calls [`desired`] (off the async runtime: it
//! may generate keys), applies the list in order and derives the status.
//!
//! Problems are scoped: a DataStore problem holds back what depends on the
//! DataStore (its certificate and config, the Deployment), never the rotation of
//! a certificate that does not.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Secret},
    },
};
use time::OffsetDateTime;

use super::{
    certificates::{self, DatastoreSource, Plan, Reason, Stored, StoredSecrets},
    datastore::{self, Resolved},
    deployment, konnectivity, rotation, service,
};
use crate::{
    api::{TenantControlPlaneSpec, datastore::Driver, labels},
    pki::{IssueParams, SecretData, StoredCa, TenantInputs, catalog},
    tenant::meta::{TenantRef, suffix},
};

/// What was read from the cluster, by the tenant's object names.
pub struct Observed {
    /// The tenant's Secrets that exist, by suffix (whatever their labels say).
    pub secrets: BTreeMap<String, Secret>,
    /// The Service `<tcp>`.
    pub service: Option<k8s_openapi::api::core::v1::Service>,
    /// The Deployment `<tcp>`.
    pub deployment: Option<Deployment>,
    /// The ConfigMap `<tcp>-konnectivity-egress-selector-configuration`.
    pub egress_selector: Option<ConfigMap>,
    /// The DataStore, or why it cannot be used.
    pub datastore: Result<Resolved, String>,
}

/// What [`desired`] is computed from, besides what was observed.
pub struct Inputs<'a> {
    /// The tenant's identity.
    pub tenant: &'a TenantRef,
    /// Its spec.
    pub spec: &'a TenantControlPlaneSpec,
    /// A CA was already rolled out (a missing CA Secret then means it was deleted).
    pub provisioned: bool,
    /// Key algorithm, validity and the time.
    pub params: IssueParams,
    /// How long the mounted material must be unchanged before the Deployment rolls:
    /// a batch of rotation requests is one rollout.
    pub batch_window: Duration,
    /// The control plane's service-account token settings.
    pub tokens: deployment::TokenSettings,
    /// What a prepared CA rotation's completion depends on, besides what is stored.
    pub ca_rotation: CaRotationInputs,
    /// The tenant grants what superseded certificate groups granted
    /// ([`crate::pki::TenantInputs::superseded_groups_granted`]).
    pub superseded_groups_granted: bool,
}

/// The TenantControlPlane's side of a CA rotation's completion.
#[derive(Clone, Debug)]
pub struct CaRotationInputs {
    /// [`labels::COMPLETE_CA_ROTATION`] is on the TenantControlPlane.
    pub complete_requested: bool,
    /// The nodes as the tenant-side controller last observed them.
    pub nodes: Option<crate::api::rotation::NodeCredentials>,
    /// How long after its start a verified rotation completes by itself.
    pub grace: Duration,
    /// A CA rotates by itself once this share (percent) of its lifetime has passed.
    pub start_percent: u8,
}

impl Default for CaRotationInputs {
    /// The manager's defaults: no request, nothing observed, 24 h grace, start at 80 %.
    fn default() -> Self {
        Self {
            complete_requested: false,
            nodes: None,
            grace: Duration::from_secs(24 * 3600),
            start_percent: 80,
        }
    }
}

/// One object to apply, in order.
#[derive(Clone)]
pub enum Object {
    /// The Service `<tcp>`.
    Service(Box<k8s_openapi::api::core::v1::Service>),
    /// A Secret `<tcp>-<suffix>`, whole (server-side apply owns its data).
    Secret(Box<Secret>),
    /// The Deployment `<tcp>`.
    Deployment(Box<Deployment>),
    /// A ConfigMap `<tcp>-<suffix>` the pods mount (the konnectivity egress selector).
    ConfigMap(Box<ConfigMap>),
    /// A ConfigMap of ours no longer used (the addon was removed): deleted.
    RemoveConfigMap(String),
}

impl std::fmt::Debug for Object {
    // A Secret's data holds private keys: only names and data keys are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Service(s) => f.debug_tuple("Service").field(&s.metadata.name).finish(),
            Object::Deployment(d) => f.debug_tuple("Deployment").field(&d.metadata.name).finish(),
            Object::ConfigMap(c) => f.debug_tuple("ConfigMap").field(&c.metadata.name).finish(),
            Object::RemoveConfigMap(name) => f.debug_tuple("RemoveConfigMap").field(name).finish(),
            Object::Secret(s) => f
                .debug_struct("Secret")
                .field("name", &s.metadata.name)
                .field("data_keys", &certificates::data_keys(&secret_data(s)))
                .finish(),
        }
    }
}

/// Something that keeps part of the tenant from being what it should be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The Service has no address yet: nothing that names the endpoint can be issued.
    #[error("service {0} has no address yet")]
    WaitingForAddress(String),
    /// The DataStore cannot be used: its certificate, config and the Deployment wait.
    #[error("{0}")]
    DataStore(String),
    /// The control plane runs on etcd DataStores only.
    #[error("certificates are managed, but the control plane only runs on etcd DataStores (this one is {0})")]
    DriverNotSupported(&'static str),
    /// A PKI problem (unreadable CA, external CA, issuing failed).
    #[error(transparent)]
    Pki(#[from] certificates::Problem),
    /// A rotate annotation whose value is neither `""` nor a time: no request, no stamp.
    #[error(
        "secret {secret} has certs.kamaji.clastix.io/rotate={value:?}, which is neither \"\" (rotate now) nor \
         an RFC 3339 time (when it was rotated): nothing is rotated; set it to \"\" to rotate the Secret"
    )]
    RotateAnnotation {
        /// Secret name.
        secret: String,
        /// The value found (at most [`SHOWN_VALUE_CHARS`] characters of it).
        value: String,
    },
    /// A Secret under the tenant's name has a type that cannot hold its material.
    #[error(
        "secret {secret} has type {found}, expected {wanted}: it is left as it is; delete it to have it re-created"
    )]
    SecretType {
        /// Secret name.
        secret: String,
        /// Its type.
        found: String,
        /// The catalog's type.
        wanted: &'static str,
    },
}

/// How much of a user's annotation value a problem quotes.
pub const SHOWN_VALUE_CHARS: usize = 64;

/// The outcome of [`desired`].
#[derive(Debug, Default)]
pub struct Desired {
    /// Objects to apply, in order.
    pub objects: Vec<Object>,
    /// Problems found.
    pub problems: Vec<Problem>,
    /// `status.controlPlaneEndpoint`, once known.
    pub endpoint: Option<String>,
    /// Secrets re-issued (not created), with why.
    pub rotated: Vec<(String, Reason)>,
    /// The tenant CA changes phase in this pass (prepared, completed or re-created).
    pub ca_rotation: bool,
    /// While a CA rotation is prepared: what its completion waits for.
    pub ca_rotation_waiting_for: Option<String>,
    /// The completion annotation has done its work (or there is no rotation to complete): remove it.
    pub remove_completion_request: bool,
    /// The rollout waits for the batch to settle: reconcile again after this long.
    pub rollout_held_for: Option<Duration>,
    /// Stored material changes by itself then (previous service-account keys retired).
    pub next_change_in: Option<Duration>,
}

/// The objects the tenant should have now, in apply order: Service, CAs and key
/// pair, leaves, datastore certificate and config, labels restored on Secrets
/// someone stripped, the Deployment.
pub fn desired(inputs: &Inputs<'_>, observed: &Observed) -> Desired {
    let (tenant, spec) = (inputs.tenant, inputs.spec);
    let mut out = Desired::default();
    out.objects
        .push(Object::Service(Box::new(service::desired(tenant, spec))));
    let Some(host) = service::endpoint_host(spec, observed.service.as_ref()) else {
        out.problems.push(Problem::WaitingForAddress(tenant.name.clone()));
        return out;
    };
    let endpoint = service::endpoint(&host, spec.network_profile.port);
    out.endpoint = Some(endpoint.clone());

    let (schema, user) = datastore::schema_and_user(spec, &tenant.namespace, &tenant.name);
    let stored = stored_secrets(&observed.secrets);
    out.problems.extend(invalid_rotate_annotations(tenant, &stored));
    let pki_inputs = certificates::Inputs {
        tenant: &tenant_inputs(tenant, spec, &endpoint, &user, inputs.superseded_groups_granted),
        stored: &stored,
        datastore: datastore_source(observed, &mut out),
        provisioned: inputs.provisioned,
        params: inputs.params,
        service_account_grace: inputs.tokens.previous_keys_grace,
        complete_ca_rotation: false,
        ca_rotation_start_percent: inputs.ca_rotation.start_percent,
        control_plane_runs_stored: control_plane_runs(inputs, observed),
        control_plane_trusts_stored: control_plane_trusts(inputs, observed),
    };
    let plan = pki_plan(inputs, observed, pki_inputs, &mut out);
    let datastore_user = DatastoreUser {
        schema: &schema,
        user: &user,
    };
    let (data, written) = secrets_after_pass(inputs, observed, &stored, &plan, &datastore_user, &mut out);

    let (before, after) = egress_selector(inputs, observed);
    out.objects.extend(before);
    if let Some(deployment) = deployment_object(inputs, observed, &data, &written, &mut out) {
        out.objects.push(Object::Deployment(Box::new(deployment)));
    }
    out.objects.extend(after);
    out
}

/// Where the DataStore certificate comes from; an unresolved DataStore is a problem.
fn datastore_source<'o>(observed: &'o Observed, out: &mut Desired) -> DatastoreSource<'o> {
    match &observed.datastore {
        Err(reason) => {
            out.problems.push(Problem::DataStore(reason.clone()));
            DatastoreSource::Unknown
        }
        Ok(resolved) => match (&resolved.etcd_ca, &resolved.copied_certificate) {
            (Some(ca), _) => DatastoreSource::Ca(ca),
            (None, Some(copied)) => DatastoreSource::Copied(copied),
            (None, None) => DatastoreSource::None,
        },
    }
}

/// The certificate plan of this pass, a CA rotation's completion included when it
/// is due; records in `out` what the plan decides for the status and the requeue.
fn pki_plan(
    inputs: &Inputs<'_>,
    observed: &Observed,
    pki_inputs: certificates::Inputs<'_>,
    out: &mut Desired,
) -> Plan {
    let mut plan = certificates::plan(&pki_inputs);
    match completion(inputs, observed, pki_inputs.stored, &plan) {
        Some(rotation::Decision::Complete(_)) => {
            plan = certificates::plan(&certificates::Inputs {
                complete_ca_rotation: true,
                ..pki_inputs
            });
        }
        Some(rotation::Decision::Wait {
            waiting_for,
            recheck_in,
        }) => {
            out.ca_rotation_waiting_for = Some(waiting_for);
            out.next_change_in = recheck_in;
        }
        None => {}
    }
    out.remove_completion_request = inputs.ca_rotation.complete_requested && !plan.leaves_ca_prepared();
    out.ca_rotation = plan.rotates_tenant_ca();
    out.next_change_in = plan
        .next_change
        .map(|at| Duration::try_from(at - inputs.params.now).unwrap_or(Duration::ZERO))
        // A CA's rotation may be years away: look again daily rather than arm a long timer.
        .map(|wait| wait.min(Duration::from_secs(24 * 3600)))
        .into_iter()
        .chain(out.next_change_in)
        .min();
    out.problems
        .extend(plan.problems.iter().cloned().map(Problem::Pki));
    plan
}

/// The tenant's schema and user on its DataStore.
struct DatastoreUser<'a> {
    schema: &'a str,
    user: &'a str,
}

/// Queues the Secret writes of this pass in `out`; returns the data every Secret
/// will hold once they are applied, and the suffixes written.
fn secrets_after_pass(
    inputs: &Inputs<'_>,
    observed: &Observed,
    stored: &StoredSecrets,
    plan: &Plan,
    datastore_user: &DatastoreUser<'_>,
    out: &mut Desired,
) -> (BTreeMap<String, SecretData>, Vec<String>) {
    let tenant = inputs.tenant;
    let mut data: BTreeMap<String, SecretData> = stored
        .iter()
        .map(|(suffix, s)| (suffix.clone(), s.data.clone()))
        .collect();
    let mut written = secret_writes(tenant, plan, observed, out);
    for write in plan
        .writes
        .iter()
        .filter(|w| written.iter().any(|s| s == w.suffix))
    {
        data.insert(write.suffix.to_string(), write.data.clone());
    }
    let DatastoreUser { schema, user } = *datastore_user;
    if let Ok(resolved) = &observed.datastore
        && let Some(config) = datastore_config(tenant, resolved, schema, user, stored, inputs.params.now)
    {
        data.insert(suffix::DATASTORE_CONFIG.to_string(), secret_data(&config));
        written.push(suffix::DATASTORE_CONFIG.to_string());
        out.objects.push(Object::Secret(Box::new(config)));
    }
    restore_metadata(tenant, observed, stored, &written, out);
    (data, written)
}

/// The konnectivity egress selector ConfigMap: applied before the Deployment that
/// mounts it (with the addon), removed after the one that no longer does (without).
fn egress_selector(inputs: &Inputs<'_>, observed: &Observed) -> (Option<Object>, Option<Object>) {
    match inputs.spec.konnectivity() {
        Some(_) => (
            Some(Object::ConfigMap(Box::new(
                konnectivity::egress_selector_config_map(inputs.tenant),
            ))),
            None,
        ),
        None => (
            None,
            observed.egress_selector.as_ref().map(|_| {
                Object::RemoveConfigMap(inputs.tenant.object_name(konnectivity::EGRESS_SELECTOR_SUFFIX))
            }),
        ),
    }
}

/// Whether a prepared CA rotation completes in this pass (`None`: none is prepared).
/// Only a pass with nothing else to write may complete it, so the control plane
/// verifiably runs the prepared material first.
fn completion(
    inputs: &Inputs<'_>,
    observed: &Observed,
    stored: &StoredSecrets,
    plan: &Plan,
) -> Option<rotation::Decision> {
    // Prepared is a previous CA stored beside the signing one; nothing is parsed otherwise.
    let prepared = catalog::AUTHORITIES.iter().any(|spec| {
        stored
            .get(spec.secret_suffix)
            .is_some_and(|s| s.data.contains_key(spec.previous_keys.0))
    });
    if !prepared {
        return None;
    }
    let tenant_ca = stored
        .get(catalog::TENANT_CA.secret_suffix)
        .and_then(|s| StoredCa::load(&catalog::TENANT_CA, &s.data).ok());
    let initiated_at = catalog::AUTHORITIES
        .iter()
        .filter_map(|spec| stored.get(spec.secret_suffix)?.rotate_annotation.as_deref())
        .filter_map(|value| OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).ok())
        .max();
    let rolled_out = plan.writes.is_empty() && control_plane_runs(inputs, observed);
    Some(rotation::decide(&rotation::Inputs {
        requested: inputs.ca_rotation.complete_requested,
        rolled_out,
        signing_ca_serial: tenant_ca.as_ref().map_or("", |ca| ca.signing.serial()),
        nodes: inputs.ca_rotation.nodes.as_ref(),
        initiated_at,
        grace: inputs.ca_rotation.grace,
        now: inputs.params.now,
    }))
}

/// The Deployment has rolled out, with a pod template carrying the material stored now.
fn control_plane_runs(inputs: &Inputs<'_>, observed: &Observed) -> bool {
    let Some(deployment) = observed.deployment.as_ref() else {
        return false;
    };
    let complete = super::status::Rollout::of(deployment).complete();
    let konnectivity = inputs.spec.konnectivity().is_some();
    let data: Vec<(&str, SecretData)> = deployment::mounted_secret_suffixes(konnectivity)
        .into_iter()
        .map(|s| (s, observed.secrets.get(s).map(secret_data).unwrap_or_default()))
        .collect();
    complete
        && deployment::deployed_checksum(deployment)
            == Some(deployment::material_checksum(data.iter().map(|(s, d)| (*s, d))))
}

/// The Deployment has rolled out with a pod template carrying the CA Secrets stored
/// now, whatever else of its material changed since: the running control plane
/// trusts those CAs. Without a trust checksum (a Deployment written before it), all
/// of the material must match.
fn control_plane_trusts(inputs: &Inputs<'_>, observed: &Observed) -> bool {
    let Some(deployment) = observed.deployment.as_ref() else {
        return false;
    };
    let Some(deployed) = deployment::deployed_trust_checksum(deployment) else {
        return control_plane_runs(inputs, observed);
    };
    let data: BTreeMap<&str, SecretData> = catalog::AUTHORITIES
        .iter()
        .filter_map(|spec| {
            Some((
                spec.secret_suffix,
                secret_data(observed.secrets.get(spec.secret_suffix)?),
            ))
        })
        .collect();
    super::status::Rollout::of(deployment).complete()
        && deployed == deployment::trust_checksum(|s| data.get(s))
}

/// The tenant as its certificates see it.
fn tenant_inputs(
    tenant: &TenantRef,
    spec: &TenantControlPlaneSpec,
    endpoint: &str,
    user: &str,
    superseded_groups_granted: bool,
) -> TenantInputs {
    TenantInputs {
        name: tenant.name.clone(),
        namespace: tenant.namespace.clone(),
        address: spec.network_profile.address.clone().filter(|a| !a.is_empty()),
        port: u16::try_from(spec.network_profile.port).unwrap_or(6443),
        cert_sans: spec.network_profile.cert_sans.clone(),
        service_cidr: spec
            .network_profile
            .service_cidr()
            .unwrap_or_default()
            .to_string(),
        cluster_domain: spec.network_profile.cluster_domain.clone(),
        control_plane_endpoint: endpoint.to_string(),
        konnectivity: spec.konnectivity().is_some(),
        datastore_user: user.to_string(),
        superseded_groups_granted,
    }
}

/// A Secret's data as raw bytes.
pub fn secret_data(secret: &Secret) -> SecretData {
    secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.0.clone()))
        .collect()
}

/// The value of the rotate annotation, if set.
fn rotate_annotation(secret: &Secret) -> Option<&String> {
    secret.metadata.annotations.as_ref()?.get(labels::ROTATE)
}

/// What the PKI plan needs of each stored Secret.
pub fn stored_secrets(secrets: &BTreeMap<String, Secret>) -> StoredSecrets {
    secrets
        .iter()
        .map(|(suffix, secret)| {
            let rotate = rotate_annotation(secret);
            let stored = Stored {
                data: secret_data(secret),
                rotate_requested: rotate.is_some_and(|v| v.is_empty()),
                paused: is_paused(secret),
                rotate_annotation: rotate.filter(|v| !v.is_empty()).cloned(),
            };
            (suffix.clone(), stored)
        })
        .collect()
}

/// A problem for each stored rotate annotation that is neither a request nor a time.
fn invalid_rotate_annotations(tenant: &TenantRef, stored: &StoredSecrets) -> Vec<Problem> {
    let is_time = |v: &str| OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).is_ok();
    stored
        .iter()
        .filter_map(|(suffix, s)| Some((suffix, s.rotate_annotation.as_deref()?)))
        .filter(|(_, value)| !is_time(value))
        .map(|(suffix, value)| Problem::RotateAnnotation {
            secret: tenant.object_name(suffix),
            value: value.chars().take(SHOWN_VALUE_CHARS).collect(),
        })
        .collect()
}

fn is_paused(secret: &Secret) -> bool {
    secret
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(labels::PAUSED))
}

/// The Secret `<tcp>-<suffix>` as kamaji-rs applies it: our labels, the controller
/// reference, the rotate annotation's value, the type and the whole data.
pub fn secret_object(
    tenant: &TenantRef,
    suffix: &str,
    type_: &str,
    lifecycle: Option<&str>,
    rotate_annotation: Option<&str>,
    data: &SecretData,
) -> Secret {
    let mut meta = tenant.object_meta(suffix);
    if let (Some(lifecycle), Some(labels)) = (lifecycle, meta.labels.as_mut()) {
        labels.insert(labels::CERTIFICATE_LIFECYCLE.to_string(), lifecycle.to_string());
    }
    if let Some(value) = rotate_annotation {
        meta.annotations = Some(BTreeMap::from([(labels::ROTATE.to_string(), value.to_string())]));
    }
    Secret {
        metadata: meta,
        type_: Some(type_.to_string()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The plan's writes as Secrets; a Secret whose stored type cannot hold the
/// material is reported and left alone (the type of a Secret is immutable).
fn secret_writes(tenant: &TenantRef, plan: &Plan, observed: &Observed, out: &mut Desired) -> Vec<String> {
    let mut written = Vec::new();
    for write in &plan.writes {
        let wanted = write.secret_type.as_str();
        if let Some(found) = observed
            .secrets
            .get(write.suffix)
            .and_then(|s| s.type_.as_deref())
            .filter(|found| *found != wanted)
        {
            out.problems.push(Problem::SecretType {
                secret: tenant.object_name(write.suffix),
                found: found.to_string(),
                wanted,
            });
            continue;
        }
        if write.reason != Reason::Created {
            out.rotated
                .push((tenant.object_name(write.suffix), write.reason.clone()));
        }
        out.objects.push(Object::Secret(Box::new(secret_object(
            tenant,
            write.suffix,
            wanted,
            write.lifecycle.map(|l| l.label_value()),
            write.rotate_annotation.as_deref(),
            &write.data,
        ))));
        written.push(write.suffix.to_string());
    }
    written
}

/// `<tcp>-datastore-config`, when it is missing, stale, or a new password was asked for.
fn datastore_config(
    tenant: &TenantRef,
    resolved: &Resolved,
    schema: &str,
    user: &str,
    stored: &StoredSecrets,
    now: OffsetDateTime,
) -> Option<Secret> {
    let current = stored.get(suffix::DATASTORE_CONFIG);
    if current.is_some_and(|c| c.paused) {
        return None;
    }
    let requested = current.is_some_and(|c| c.rotate_requested);
    let config = datastore::config_data(resolved, schema, user, current.map(|c| &c.data), requested);
    if !requested && current.map(|c| &c.data) == Some(&config) {
        return None;
    }
    let stamp = if requested {
        Some(certificates::rfc3339(now))
    } else {
        current.and_then(|c| c.rotate_annotation.clone())
    };
    Some(secret_object(
        tenant,
        suffix::DATASTORE_CONFIG,
        catalog::SecretType::Opaque.as_str(),
        None,
        stamp.as_deref(),
        &config,
    ))
}

/// Our labels and controller reference on a stored Secret: a Secret is the
/// tenant's by its name, so labels someone removed are put back, and nothing else
/// about it changes. A Secret of another type under the name is not the tenant's
/// material ([`Problem::SecretType`]): it is not labelled or owned either.
fn restore_metadata(
    tenant: &TenantRef,
    observed: &Observed,
    stored: &StoredSecrets,
    written: &[String],
    out: &mut Desired,
) {
    for (suffix, secret) in &observed.secrets {
        if written.contains(suffix) || is_paused(secret) {
            continue;
        }
        let row = catalog::rows_of_secret(suffix).next();
        let wanted_type = row.map_or(catalog::SecretType::Opaque, |r| r.secret_type());
        if secret.type_.as_deref().is_some_and(|t| t != wanted_type.as_str()) {
            continue;
        }
        let lifecycle = row.and_then(|row| row.lifecycle()).map(|l| l.label_value());
        let wanted = secret_object(tenant, suffix, "", lifecycle, None, &SecretData::new());
        if carries_metadata(secret, &wanted) {
            continue;
        }
        let Some(stored) = stored.get(suffix) else {
            continue;
        };
        let type_ = secret.type_.as_deref().unwrap_or("Opaque");
        out.objects.push(Object::Secret(Box::new(secret_object(
            tenant,
            suffix,
            type_,
            lifecycle,
            stored.rotate_annotation.as_deref(),
            &owned_data(suffix, &stored.data),
        ))));
    }
}

/// Whether `secret` carries every label and the owner reference of `wanted`.
fn carries_metadata(secret: &Secret, wanted: &Secret) -> bool {
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    let labelled = wanted
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let owned = wanted.metadata.owner_references.iter().flatten().all(|w| {
        secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == w.uid && o.controller == Some(true))
    });
    labelled && owned
}

/// The data keys kamaji-rs writes in this Secret (others' keys stay theirs).
fn owned_data(suffix: &str, data: &SecretData) -> SecretData {
    let keys: Vec<&str> = if suffix == suffix::DATASTORE_CONFIG {
        vec!["DB_CONNECTION_STRING", "DB_SCHEMA", "DB_USER", "DB_PASSWORD"]
    } else {
        catalog::rows_of_secret(suffix)
            .flat_map(|row| row.data_keys())
            .collect()
    };
    data.iter()
        .filter(|(k, _)| keys.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The Deployment, unless the DataStore or its driver holds it back. The checksum
/// of the mounted material only moves once the batch has settled: no rotation is
/// pending and the material has not changed for the batch window.
fn deployment_object(
    inputs: &Inputs<'_>,
    observed: &Observed,
    data: &BTreeMap<String, SecretData>,
    written: &[String],
    out: &mut Desired,
) -> Option<Deployment> {
    let resolved = observed.datastore.as_ref().ok()?;
    if resolved.driver != Driver::Etcd {
        out.problems
            .push(Problem::DriverNotSupported(resolved.driver.as_str()));
        return None;
    }
    let konnectivity = inputs.spec.konnectivity().is_some();
    let mounted = deployment::mounted_secret_suffixes(konnectivity);
    let empty = SecretData::new();
    let material =
        deployment::material_checksum(mounted.iter().map(|s| (*s, data.get(*s).unwrap_or(&empty))));
    let trust = deployment::trust_checksum(|s| data.get(s));
    let deployed = observed.deployment.as_ref();
    // A held rollout keeps the template, and the trust checksum written with it.
    let (material, trust) = match deployed.and_then(deployment::deployed_checksum) {
        Some(held) if held != material => match batch_wait(inputs, observed, &mounted, written) {
            Some(wait) => {
                out.rollout_held_for = Some(wait);
                (held, deployed.and_then(deployment::deployed_trust_checksum))
            }
            None => (material, Some(trust)),
        },
        _ => (material, Some(trust)),
    };
    Some(deployment::desired(
        inputs.tenant,
        inputs.spec,
        &resolved.wiring,
        &inputs.tokens,
        deployment::Checksums {
            material: &material,
            trust: trust.as_deref(),
        },
    ))
}

/// How long the rollout still waits for the batch of material changes to settle,
/// if it must. The last change of a stored Secret is the time our field manager
/// last changed it (`managedFields`, stored: a restarted operator waits the same).
fn batch_wait(
    inputs: &Inputs<'_>,
    observed: &Observed,
    mounted: &[&str],
    written: &[String],
) -> Option<Duration> {
    let window = inputs.batch_window;
    if window.is_zero() {
        return None;
    }
    if mounted.iter().any(|s| written.iter().any(|w| w == s)) {
        return Some(window);
    }
    let last_change = mounted
        .iter()
        .filter_map(|s| observed.secrets.get(*s))
        .filter_map(last_applied)
        .max()?;
    let elapsed = Duration::try_from(inputs.params.now - last_change).unwrap_or(Duration::ZERO);
    (elapsed < window).then(|| window - elapsed)
}

/// When kamaji-rs last changed a stored object (its server-side apply entry).
pub fn last_applied(secret: &Secret) -> Option<OffsetDateTime> {
    secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(labels::FIELD_MANAGER))
        .filter_map(|m| m.time.as_ref())
        .filter_map(|t| OffsetDateTime::from_unix_timestamp(t.0.as_second()).ok())
        .max()
}

#[cfg(test)]
mod tests;
