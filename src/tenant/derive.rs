//! The whole TenantControlPlane status, derived from the spec, what is stored
//! after a pass and the problems it found. Pure: the controller writes the
//! result once, and not at all when it equals what is stored.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::Secret},
    jiff::Timestamp,
};

use super::{
    desired::{Problem, secret_data},
    meta::{TenantRef, suffix},
    rotation,
    status::{self as rules, Rollout, remove_condition, set_condition_at},
};
use crate::{
    api::{
        TenantControlPlane, TenantControlPlaneStatus,
        tenant_control_plane::{
            AddonsStatus, CertificatesStatus, DeploymentStatus, KonnectivityStatus, KubeconfigsStatus,
            KubernetesResourcesStatus, KubernetesVersionStatus, SecretStatus, StorageStatus, VersionStatus,
        },
    },
    pki::{
        Moved, Phase, SecretData, StoredCa,
        catalog::{self, StatusField},
    },
    tenant::deployment::{self, data_checksum},
};

/// What the status is derived from.
pub struct Inputs<'a> {
    /// The tenant as read at the start of the pass (its status is the previous one).
    pub tcp: &'a TenantControlPlane,
    /// Its identity.
    pub tenant: &'a TenantRef,
    /// `status.controlPlaneEndpoint`, once known.
    pub endpoint: Option<&'a str>,
    /// The tenant's Secrets as stored after the pass, by suffix.
    pub secrets: &'a BTreeMap<String, Secret>,
    /// The Deployment as stored after the pass.
    pub deployment: Option<&'a Deployment>,
    /// The DataStore's name and driver, when it was resolved.
    pub datastore: Option<(&'a str, &'a str)>,
    /// What the pass could not do.
    pub problems: &'a [Problem],
    /// While a CA rotation is prepared: what its completion waits for.
    pub ca_rotation_waiting_for: Option<&'a str>,
    /// The time of the pass.
    pub now: Timestamp,
}

/// The status after a pass.
pub fn status(inputs: &Inputs<'_>) -> TenantControlPlaneStatus {
    let tcp = inputs.tcp;
    let generation = tcp.metadata.generation;
    let mut status = tcp.status.clone().unwrap_or_default();
    let now = inputs.now;
    let Some(endpoint) = inputs.endpoint else {
        set_condition_at(
            &mut status.conditions,
            "Ready",
            false,
            "WaitingForAddress",
            format!("service {} has no address yet", inputs.tenant.name),
            generation,
            now,
        );
        return status;
    };
    datastore_condition(&mut status, inputs, generation);
    certificates_condition(&mut status, inputs.problems, generation, now);
    record_secrets(&mut status, inputs);

    let rollout = inputs.deployment.map(Rollout::of);
    let previous_ca = status.certificates.as_ref().and_then(|c| c.ca.clone());
    let installed = status
        .kubernetes_resources
        .as_ref()
        .and_then(|r| r.version.as_ref())
        .and_then(|v| v.version.clone());
    let stored_ca = inputs
        .secrets
        .get(suffix::CA)
        .map(|s| data_checksum(&secret_data(s)))
        .unwrap_or_default();
    let steps = ca_steps(inputs);
    let derived = rules::derive(&rules::Inputs {
        spec_version: &tcp.spec.kubernetes.version,
        installed_version: installed.as_deref(),
        stored_ca_checksum: &stored_ca,
        rolled_out_ca_checksum: previous_ca.as_ref().and_then(|c| c.checksum.as_deref()),
        rollout,
        material_rolled_out: material_rolled_out(inputs),
        ca_step_pending: steps.clients_pending || steps.completing,
        ca_prepared: steps.prepared,
        write_limited: tcp.spec.write_limited(),
    });
    if derived.rolled_out_ca_checksum != previous_ca.as_ref().and_then(|c| c.checksum.clone()) {
        status.certificates.get_or_insert_with(Default::default).ca = Some(SecretStatus {
            secret_name: Some(inputs.tenant.object_name(suffix::CA)),
            checksum: derived.rolled_out_ca_checksum.clone(),
            last_update: Some(now.to_string()),
        });
    }
    record_ca_rotation(&mut status, inputs, steps, derived.status);
    status.control_plane_endpoint = Some(endpoint.to_string());
    record_resources(&mut status, inputs, rollout, &derived);
    let ready = derived.status.serving();
    set_condition_at(
        &mut status.conditions,
        "Ready",
        ready,
        derived.status.as_str(),
        format!("control plane is {}", derived.status.as_str()),
        generation,
        now,
    );
    driver_condition(&mut status, inputs.problems, generation, now);
    fields_condition(&mut status, tcp, generation, now);
    status.observed_generation = generation;
    status
}

/// The version, the Deployment's rollout and the DataStore in use.
fn record_resources(
    status: &mut TenantControlPlaneStatus,
    inputs: &Inputs<'_>,
    rollout: Option<Rollout>,
    derived: &rules::Derived,
) {
    status.kubernetes_resources = Some(KubernetesResourcesStatus {
        version: Some(VersionStatus {
            version: derived.installed_version.clone(),
            status: Some(derived.status),
        }),
        deployment: rollout.map(|r| DeploymentStatus {
            name: Some(inputs.tenant.name.clone()),
            replicas: r.replicas,
            ready_replicas: r.ready,
            selector: Some(inputs.tenant.pod_selector_string()),
        }),
    });
    if let Some(storage) = status.storage.as_mut()
        && let Some((name, driver)) = inputs.datastore
    {
        storage.driver = Some(driver.to_string());
        storage.data_store_name = Some(name.to_string());
    }
}

fn now_offset(now: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(now.as_second()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Where the tenant's CA rotations stand, read from the stored Secrets.
#[derive(Clone, Copy, Default)]
struct CaSteps {
    /// A CA is prepared (its old CA still stored).
    prepared: bool,
    /// A prepared CA still has client certificates of the old CA: they move next.
    clients_pending: bool,
    /// A prepared CA's new CA signs serving certificates: completion began.
    completing: bool,
}

fn ca_steps(inputs: &Inputs<'_>) -> CaSteps {
    let data: BTreeMap<&str, SecretData> = inputs
        .secrets
        .iter()
        .map(|(suffix, secret)| (suffix.as_str(), secret_data(secret)))
        .collect();
    let now = now_offset(inputs.now);
    let mut steps = CaSteps::default();
    for spec in catalog::AUTHORITIES {
        // Only a Secret with a previous CA is prepared: a settled one is not parsed.
        let Some(ca) = data
            .get(spec.secret_suffix)
            .filter(|d| d.contains_key(spec.previous_keys.0))
            .and_then(|d| StoredCa::load(spec, d).ok())
            .filter(|ca| ca.phase() == Phase::Prepared)
        else {
            continue;
        };
        steps.prepared = true;
        steps.clients_pending |= !Moved::count_clients(spec, &ca, |s| data.get(s), now).all();
        steps.completing |= Moved::count(spec, &ca, |s| data.get(s), now).underway();
    }
    steps
}

/// `status.credentials.rotation.certificateAuthorities` ([`rotation::status`]).
fn record_ca_rotation(
    status: &mut TenantControlPlaneStatus,
    inputs: &Inputs<'_>,
    steps: CaSteps,
    version: KubernetesVersionStatus,
) {
    let prepared = steps.prepared;
    let previous = status.ca_rotation().cloned();
    let next = rotation::status(&rotation::StatusInputs {
        previous: previous.as_ref(),
        prepared,
        completing: steps.completing,
        rolling: version == KubernetesVersionStatus::CertificateAuthorityRotating,
        waiting_for: inputs.ca_rotation_waiting_for,
        now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(inputs.now),
    });
    if next != previous {
        status
            .credentials
            .get_or_insert_with(Default::default)
            .rotation
            .get_or_insert_with(Default::default)
            .certificate_authorities = next;
    }
}

/// Whether the Deployment's pod template carries the checksum of the material stored now.
fn material_rolled_out(inputs: &Inputs<'_>) -> bool {
    let Some(deployed) = inputs.deployment.and_then(deployment::deployed_checksum) else {
        return false;
    };
    let konnectivity = inputs.tcp.spec.konnectivity().is_some();
    let data: Vec<(&str, SecretData)> = deployment::mounted_secret_suffixes(konnectivity)
        .into_iter()
        .map(|s| (s, inputs.secrets.get(s).map(secret_data).unwrap_or_default()))
        .collect();
    deployed == deployment::material_checksum(data.iter().map(|(s, d)| (*s, d)))
}

/// The previous status with the version status `CertificateAuthorityRotating`:
/// written before a new CA is, so no reader (and no restarted operator) ever sees
/// `Ready` next to a CA the control plane does not run yet.
pub fn announce_ca_rotation(tcp: &TenantControlPlane) -> TenantControlPlaneStatus {
    let mut status = tcp.status.clone().unwrap_or_default();
    status
        .kubernetes_resources
        .get_or_insert_with(KubernetesResourcesStatus::default)
        .version
        .get_or_insert_with(VersionStatus::default)
        .status = Some(KubernetesVersionStatus::CertificateAuthorityRotating);
    status
}

fn datastore_condition(status: &mut TenantControlPlaneStatus, inputs: &Inputs<'_>, generation: Option<i64>) {
    let problem = inputs.problems.iter().find_map(|p| match p {
        Problem::DataStore(reason) => Some(reason.clone()),
        _ => None,
    });
    let (ready, reason, message) = match (problem, inputs.datastore) {
        (Some(problem), _) => (false, "DataStoreUnusable", problem),
        (None, Some((name, driver))) => (true, "Resolved", format!("DataStore {name} ({driver})")),
        (None, None) => return,
    };
    set_condition_at(
        &mut status.conditions,
        "DataStoreReady",
        ready,
        reason,
        message,
        generation,
        inputs.now,
    );
}

fn certificates_condition(
    status: &mut TenantControlPlaneStatus,
    problems: &[Problem],
    generation: Option<i64>,
    now: Timestamp,
) {
    let messages: Vec<String> = problems
        .iter()
        .filter(|p| {
            matches!(
                p,
                Problem::Pki(_) | Problem::SecretType { .. } | Problem::RotateAnnotation { .. }
            )
        })
        .map(ToString::to_string)
        .collect();
    let (ready, reason, message) = if messages.is_empty() {
        (
            true,
            "Issued",
            "every certificate is issued and valid".to_string(),
        )
    } else {
        (false, "ActionRequired", messages.join("; "))
    };
    set_condition_at(
        &mut status.conditions,
        "CertificatesReady",
        ready,
        reason,
        message,
        generation,
        now,
    );
}

fn driver_condition(
    status: &mut TenantControlPlaneStatus,
    problems: &[Problem],
    generation: Option<i64>,
    now: Timestamp,
) {
    match problems
        .iter()
        .find(|p| matches!(p, Problem::DriverNotSupported(_)))
    {
        Some(problem) => set_condition_at(
            &mut status.conditions,
            "DriverNotSupported",
            true,
            "KineNotImplemented",
            problem.to_string(),
            generation,
            now,
        ),
        None => remove_condition(&mut status.conditions, "DriverNotSupported"),
    }
}

fn fields_condition(
    status: &mut TenantControlPlaneStatus,
    tcp: &TenantControlPlane,
    generation: Option<i64>,
    now: Timestamp,
) {
    let not_acted_on = tcp.spec.fields_not_acted_on();
    if not_acted_on.is_empty() {
        remove_condition(&mut status.conditions, "FieldsNotActedOn");
        return;
    }
    set_condition_at(
        &mut status.conditions,
        "FieldsNotActedOn",
        true,
        "KeptNotActedOn",
        format!(
            "kept as written but not acted on by kamaji-rs: {}",
            not_acted_on.join(", ")
        ),
        generation,
        now,
    );
}

/// `{secretName, checksum, lastUpdate}` of a Secret, keeping lastUpdate while the checksum holds.
fn secret_status(inputs: &Inputs<'_>, suffix: &str, previous: Option<&SecretStatus>) -> Option<SecretStatus> {
    let secret = inputs.secrets.get(suffix)?;
    let checksum = data_checksum(&secret_data(secret));
    let last_update = match previous {
        Some(p) if p.checksum.as_deref() == Some(checksum.as_str()) => p.last_update.clone(),
        _ => Some(inputs.now.to_string()),
    };
    Some(SecretStatus {
        secret_name: Some(inputs.tenant.object_name(suffix)),
        checksum: Some(checksum),
        last_update,
    })
}

/// The Kamaji status field a catalog row's Secret is reported in. The CA's field
/// records the CA of the last completed rollout and is set by the rollout rules.
fn field(status: &mut TenantControlPlaneStatus, which: StatusField) -> Option<&mut Option<SecretStatus>> {
    let certificates = || CertificatesStatus::default();
    let kubeconfigs = || KubeconfigsStatus::default();
    Some(match which {
        StatusField::Ca => return None,
        StatusField::FrontProxyCa => {
            &mut status
                .certificates
                .get_or_insert_with(certificates)
                .front_proxy_ca
        }
        StatusField::ServiceAccount => &mut status.certificates.get_or_insert_with(certificates).sa,
        StatusField::ApiServer => &mut status.certificates.get_or_insert_with(certificates).api_server,
        StatusField::ApiServerKubeletClient => {
            &mut status
                .certificates
                .get_or_insert_with(certificates)
                .api_server_kubelet_client
        }
        StatusField::FrontProxyClient => {
            &mut status
                .certificates
                .get_or_insert_with(certificates)
                .front_proxy_client
        }
        StatusField::DatastoreCertificate => {
            &mut status
                .storage
                .get_or_insert_with(StorageStatus::default)
                .certificate
        }
        StatusField::AdminKubeconfig => &mut status.kubeconfig.get_or_insert_with(kubeconfigs).admin,
        StatusField::ControllerManagerKubeconfig => {
            &mut status
                .kubeconfig
                .get_or_insert_with(kubeconfigs)
                .controller_manager
        }
        StatusField::SchedulerKubeconfig => &mut status.kubeconfig.get_or_insert_with(kubeconfigs).scheduler,
        StatusField::KonnectivityCertificate => &mut konnectivity(status).certificate,
        StatusField::KonnectivityKubeconfig => &mut konnectivity(status).kubeconfig,
    })
}

fn konnectivity(status: &mut TenantControlPlaneStatus) -> &mut KonnectivityStatus {
    status
        .addons
        .get_or_insert_with(AddonsStatus::default)
        .konnectivity
        .get_or_insert_with(KonnectivityStatus::default)
}

/// Fills Kamaji's per-Secret status fields from the Secrets as now stored, one
/// field per catalog Secret (computed from the catalog, not listed here).
fn record_secrets(status: &mut TenantControlPlaneStatus, inputs: &Inputs<'_>) {
    let konnectivity = inputs.tcp.spec.konnectivity().is_some();
    status.kubeconfig.get_or_insert_with(KubeconfigsStatus::default);
    konnectivity_enabled(status, konnectivity);
    for secret_suffix in catalog::secret_suffixes() {
        let Some(row) = catalog::rows_of_secret(secret_suffix).next() else {
            continue;
        };
        let applies = row.applies(konnectivity, true);
        let Some(slot) = field(status, row.status()) else {
            continue;
        };
        let previous = slot.clone();
        *slot = secret_status(inputs, secret_suffix, previous.as_ref()).filter(|_| applies);
    }
    let previous = status.storage.as_ref().and_then(|s| s.config.clone());
    let config = secret_status(inputs, suffix::DATASTORE_CONFIG, previous.as_ref());
    status.storage.get_or_insert_with(StorageStatus::default).config = config;
}

fn konnectivity_enabled(status: &mut TenantControlPlaneStatus, enabled: bool) {
    konnectivity(status).enabled = enabled;
}
