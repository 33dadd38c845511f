//! The TenantControlPlane reconciler (DESIGN.md section 3): endpoint and
//! Service, CAs and key pair, leaf certificates and kubeconfigs, datastore
//! certificate and config, the Deployment with one checksum of all mounted
//! material, then the status. Every step is derived from what is stored, so a
//! restarted operator converges from wherever the last one stopped.

pub mod datastore;
pub mod secrets;
pub mod status;

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller,
        controller::{Action, Config as ControllerConfig},
        events::{Event, EventType},
        reflector::ObjectRef,
        watcher,
    },
};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::{
    api::{
        DataStore, TenantControlPlane,
        datastore::Driver,
        labels,
        tenant_control_plane::{DeploymentStatus, KubernetesResourcesStatus, VersionStatus},
    },
    controllers::{Context, Error},
    pki::{IssueParams, SecretData, TenantInputs, catalog::SecretType},
    tenant::{
        certificates::{self, Problem, Reason},
        deployment,
        meta::{TenantRef, suffix},
        service,
        status::{self as derive, Rollout, remove_condition, set_condition},
    },
};

/// Runs the controller until the stream ends (shutdown).
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let (tcps, secrets, deployments, services): (
        Api<TenantControlPlane>,
        Api<_>,
        Api<Deployment>,
        Api<Service>,
    ) = match &ctx.settings.watch_namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // Owned objects are watched through our label only: never every Secret of the cluster.
    let owned = watcher::Config::default().labels(&format!("{}={}", labels::PROJECT, labels::PROJECT_VALUE));
    let controller = Controller::new(tcps, watcher::Config::default())
        .with_config(
            ControllerConfig::default()
                .debounce(ctx.settings.debounce)
                .concurrency(ctx.settings.max_concurrent_reconciles),
        )
        .owns(secrets, owned.clone())
        .owns(deployments, owned.clone())
        .owns(services, owned);
    let store = controller.store();
    let default_datastore = ctx.settings.default_datastore.clone();
    controller
        .watches(
            Api::<DataStore>::all(client),
            watcher::Config::default(),
            move |datastore| {
                let name = datastore.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|tcp| tcp.spec.data_store.as_ref().or(default_datastore.as_ref()) == Some(&name))
                    .map(|tcp| ObjectRef::from_obj(&*tcp))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "tenant control plane reconcile failed");
            }
        })
        .await;
}

/// Event notes are limited to 1 KiB by the API server.
fn truncate(mut note: String) -> String {
    const MAX: usize = 1000;
    if note.len() > MAX {
        let mut cut = MAX;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str(" ...");
    }
    note
}

/// Retries a failed reconcile after a pause; the error is reported as an event.
pub fn error_policy(tcp: Arc<TenantControlPlane>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(CONTROLLER, error.reason());
    warn!(tenant = %tcp.name_any(), namespace = tcp.namespace().unwrap_or_default(), reason = error.reason(), %error, "reconcile failed");
    let reference = tcp.object_ref(&());
    let note = error.to_string();
    let reason = error.reason().to_string();
    tokio::spawn(async move {
        let event = Event {
            type_: EventType::Warning,
            reason,
            note: Some(truncate(note)),
            action: "Reconcile".into(),
            secondary: None,
        };
        let _ = ctx.recorder.publish(&event, &reference).await;
    });
    Action::requeue(Duration::from_secs(15))
}

async fn publish(ctx: &Context, tcp: &TenantControlPlane, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(note)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &tcp.object_ref(&())).await {
        warn!(%error, reason, "publishing an event failed");
    }
}

/// The `controller` label of this controller's metrics.
pub const CONTROLLER: &str = "tenantcontrolplane";

/// One pass over a tenant.
pub async fn reconcile(tcp: Arc<TenantControlPlane>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    if tcp.annotations().contains_key(labels::PAUSED) {
        info!(tenant = %tcp.name_any(), "paused: {} is set", labels::PAUSED);
        return Ok(Action::await_change());
    }
    let tenant = TenantRef::of(&tcp)?;
    let spec = &tcp.spec;
    let apply = PatchParams::apply(labels::FIELD_MANAGER).force();
    let mut status = tcp.status.clone().unwrap_or_default();
    let generation = tcp.metadata.generation;

    // 1. Service and endpoint.
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &tenant.namespace);
    let service = services
        .patch(
            &tenant.name,
            &apply,
            &Patch::Apply(service::desired(&tenant, spec)),
        )
        .await
        .map_err(Error::kube(
            "apply",
            format!("service {}/{}", tenant.namespace, tenant.name),
        ))?;
    let Some(host) = service::endpoint_host(spec, Some(&service)) else {
        set_condition(
            &mut status.conditions,
            "Ready",
            false,
            "WaitingForAddress",
            format!("service {} has no address yet", tenant.name),
            generation,
        );
        status::write(&ctx, &tcp, &tenant, status).await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    };
    let endpoint = service::endpoint(&host, spec.network_profile.port);

    // 2. DataStore.
    let mut datastore = match datastore::resolve(&ctx, &tcp, &tenant.namespace, &tenant.name).await {
        Ok(resolved) => resolved,
        Err(error) => {
            set_condition(
                &mut status.conditions,
                "DataStoreReady",
                false,
                error.reason(),
                error.to_string(),
                generation,
            );
            status::write(&ctx, &tcp, &tenant, status).await?;
            return Err(error);
        }
    };
    set_condition(
        &mut status.conditions,
        "DataStoreReady",
        true,
        "Resolved",
        format!("DataStore {} ({})", datastore.name, datastore.driver.as_str()),
        generation,
    );

    // 3. PKI: CAs, key pair, every catalog row.
    let mut stored_secrets = secrets::list(&ctx.client, &tenant).await?;
    let stored = secrets::stored(&stored_secrets);
    let tenant_inputs = TenantInputs {
        name: tenant.name.clone(),
        namespace: tenant.namespace.clone(),
        address: spec.network_profile.address.clone().filter(|a| !a.is_empty()),
        port: u16::try_from(spec.network_profile.port).unwrap_or(6443),
        cert_sans: spec.network_profile.cert_sans.clone(),
        service_cidr: spec.network_profile.service_cidr.clone(),
        cluster_domain: spec.network_profile.cluster_domain.clone(),
        control_plane_endpoint: endpoint.clone(),
        konnectivity: spec.konnectivity().is_some(),
        datastore_user: datastore.user.clone(),
    };
    let mut params = IssueParams::new(OffsetDateTime::now_utc());
    params.algorithm = ctx.settings.key_algorithm;
    params.validity = ctx.settings.certificate_validity;
    let provisioned = status
        .certificates
        .as_ref()
        .and_then(|c| c.ca.as_ref())
        .and_then(|c| c.checksum.as_ref())
        .is_some();
    let etcd_ca = datastore.etcd_ca.take();
    let plan = {
        let (tenant_inputs, stored) = (tenant_inputs.clone(), stored.clone());
        tokio::task::spawn_blocking(move || {
            certificates::plan(&certificates::Inputs {
                tenant: &tenant_inputs,
                stored: &stored,
                datastore_ca: etcd_ca.as_ref(),
                provisioned,
                params,
            })
        })
        .await
        .map_err(|e| Error::IssuanceTask(e.to_string()))?
    };
    if plan.rotates_tenant_ca() {
        publish(&ctx, &tcp, EventType::Normal, "CaRotationStarted",
            format!("writing a new CA to {}; every certificate it signs is re-issued and the control plane rolled once", tenant.object_name(suffix::CA))).await;
        // Report the rotation before anything else is written, so a watch sees it at once.
        let mut rotating = status.clone();
        let version = rotating
            .kubernetes_resources
            .get_or_insert_with(Default::default)
            .version
            .get_or_insert_with(Default::default);
        version.status =
            Some(crate::api::tenant_control_plane::KubernetesVersionStatus::CertificateAuthorityRotating);
        status::write(&ctx, &tcp, &tenant, rotating.clone()).await?;
        status = rotating;
    }
    let mut rotated = Vec::new();
    let mut rotated_names = Vec::new();
    for write in &plan.writes {
        let secret = secrets::apply(
            &ctx.client,
            &tenant,
            secrets::Desired {
                suffix: write.suffix,
                type_: write.secret_type.as_str(),
                data: &write.data,
                lifecycle: write.lifecycle.map(|l| l.label_value()),
                rotate_annotation: write.rotate_annotation.as_deref(),
            },
        )
        .await?;
        stored_secrets.insert(write.suffix.to_string(), secret);
        if write.reason != Reason::Created {
            rotated.push(format!("{} ({})", tenant.object_name(write.suffix), write.reason));
            rotated_names.push(tenant.object_name(write.suffix));
        }
    }
    if !rotated.is_empty() {
        info!(tenant = %tenant.name, namespace = %tenant.namespace, secrets = ?rotated, "re-issued");
        publish(
            &ctx,
            &tcp,
            EventType::Normal,
            "Rotated",
            format!("re-issued {}", rotated_names.join(", ")),
        )
        .await;
    }
    for problem in &plan.problems {
        let reason = match problem {
            Problem::Unreadable { .. } => "CertificateUnreadable",
            Problem::CaWithoutKey { .. } => "ExternallyManagedCa",
            Problem::IssueFailed { .. } => "IssueFailed",
        };
        publish(&ctx, &tcp, EventType::Warning, reason, problem.to_string()).await;
    }
    if plan.problems.is_empty() {
        set_condition(
            &mut status.conditions,
            "CertificatesReady",
            true,
            "Issued",
            "every certificate is issued and valid".into(),
            generation,
        );
    } else {
        let message = plan
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        set_condition(
            &mut status.conditions,
            "CertificatesReady",
            false,
            "ActionRequired",
            message,
            generation,
        );
    }

    // 4. Datastore certificate (external PKI: copied) and config.
    let mut datastore_source_expiring = false;
    if let Some(copied) = &datastore.copied_certificate {
        let current = stored_secrets
            .get(suffix::DATASTORE_CERTIFICATE)
            .map(secrets::data);
        // A rotation request (from the lifecycle controller or a user) is answered by copying again.
        let requested = stored
            .get(suffix::DATASTORE_CERTIFICATE)
            .is_some_and(|s| s.rotate_requested);
        if let Some(warning) = datastore::source_expiry_warning(
            &datastore.name,
            copied,
            ctx.settings.certificate_expiration_deadline,
        ) {
            datastore_source_expiring = true;
            publish(
                &ctx,
                &tcp,
                EventType::Warning,
                "DataStoreCertificateExpiring",
                warning,
            )
            .await;
        }
        if current.as_ref() != Some(copied) || requested {
            let rotated_at = certificates::rfc3339(OffsetDateTime::now_utc());
            let secret = secrets::apply(
                &ctx.client,
                &tenant,
                secrets::Desired {
                    suffix: suffix::DATASTORE_CERTIFICATE,
                    type_: SecretType::Opaque.as_str(),
                    data: copied,
                    lifecycle: Some("x509"),
                    rotate_annotation: if requested {
                        Some(rotated_at.as_str())
                    } else {
                        stored
                            .get(suffix::DATASTORE_CERTIFICATE)
                            .and_then(|s| s.rotate_annotation.as_deref())
                    },
                },
            )
            .await?;
            stored_secrets.insert(suffix::DATASTORE_CERTIFICATE.to_string(), secret);
        }
    }
    let current_config = stored_secrets.get(suffix::DATASTORE_CONFIG).map(secrets::data);
    let config = datastore::config_data(&datastore, current_config.as_ref());
    if current_config.as_ref() != Some(&config) {
        let secret = secrets::apply(
            &ctx.client,
            &tenant,
            secrets::Desired {
                suffix: suffix::DATASTORE_CONFIG,
                type_: SecretType::Opaque.as_str(),
                data: &config,
                lifecycle: None,
                rotate_annotation: None,
            },
        )
        .await?;
        stored_secrets.insert(suffix::DATASTORE_CONFIG.to_string(), secret);
    }

    // 5. Deployment: one checksum over every mounted Secret.
    let konnectivity = spec.konnectivity().is_some();
    let mounted: Vec<(&str, SecretData)> = deployment::mounted_secret_suffixes(konnectivity)
        .into_iter()
        .map(|s| (s, stored_secrets.get(s).map(secrets::data).unwrap_or_default()))
        .collect();
    let checksum = deployment::material_checksum(mounted.iter().map(|(s, d)| (*s, d)));
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &tenant.namespace);
    let rollout = if datastore.driver == Driver::Etcd {
        let desired = deployment::desired(&tenant, spec, &datastore.wiring, &checksum);
        let applied = deployments
            .patch(&tenant.name, &apply, &Patch::Apply(&desired))
            .await
            .map_err(Error::kube(
                "apply",
                format!("deployment {}/{}", tenant.namespace, tenant.name),
            ))?;
        remove_condition(&mut status.conditions, "DriverNotSupported");
        Some(Rollout::of(&applied))
    } else {
        set_condition(
            &mut status.conditions,
            "DriverNotSupported",
            true,
            "KineNotImplemented",
            format!(
                "certificates are managed, but the control plane only runs on etcd DataStores (this one is {})",
                datastore.driver.as_str()
            ),
            generation,
        );
        None
    };

    // 6. Status.
    let ca_checksum = stored_secrets
        .get(suffix::CA)
        .map(status::data_checksum)
        .unwrap_or_default();
    let previous_ca = status.certificates.as_ref().and_then(|c| c.ca.clone());
    let installed = status
        .kubernetes_resources
        .as_ref()
        .and_then(|r| r.version.as_ref())
        .and_then(|v| v.version.clone());
    let derived = derive::derive(&derive::Inputs {
        spec_version: &spec.kubernetes.version,
        installed_version: installed.as_deref(),
        stored_ca_checksum: &ca_checksum,
        rolled_out_ca_checksum: previous_ca.as_ref().and_then(|c| c.checksum.as_deref()),
        rollout,
    });
    let was_rotating = status
        .kubernetes_resources
        .as_ref()
        .and_then(|r| r.version.as_ref())
        .and_then(|v| v.status)
        == Some(crate::api::tenant_control_plane::KubernetesVersionStatus::CertificateAuthorityRotating);
    status::record_secrets(&mut status, &tenant, &stored_secrets, konnectivity);
    let ca_status = status.certificates.get_or_insert_with(Default::default);
    if derived.rolled_out_ca_checksum != previous_ca.as_ref().and_then(|c| c.checksum.clone()) {
        ca_status.ca = Some(crate::api::tenant_control_plane::SecretStatus {
            secret_name: Some(tenant.object_name(suffix::CA)),
            checksum: derived.rolled_out_ca_checksum.clone(),
            last_update: Some(k8s_openapi::jiff::Timestamp::now().to_string()),
        });
    }
    status.control_plane_endpoint = Some(endpoint);
    status.kubernetes_resources = Some(KubernetesResourcesStatus {
        version: Some(VersionStatus {
            version: derived.installed_version.clone(),
            status: Some(derived.status),
        }),
        deployment: rollout.map(|r| DeploymentStatus {
            name: Some(tenant.name.clone()),
            replicas: r.replicas,
            ready_replicas: r.ready,
            selector: Some(tenant.pod_selector_string()),
        }),
    });
    status.kubeconfig.get_or_insert_with(Default::default);
    if let Some(storage) = status.storage.as_mut() {
        storage.driver = Some(datastore.driver.as_str().to_string());
        storage.data_store_name = Some(datastore.name.clone());
    }
    let ready = derived.status == crate::api::tenant_control_plane::KubernetesVersionStatus::Ready;
    set_condition(
        &mut status.conditions,
        "Ready",
        ready,
        derived.status.as_str(),
        format!("control plane is {}", derived.status.as_str()),
        generation,
    );
    let not_acted_on = spec.fields_not_acted_on();
    if not_acted_on.is_empty() {
        remove_condition(&mut status.conditions, "FieldsNotActedOn");
    } else {
        set_condition(
            &mut status.conditions,
            "FieldsNotActedOn",
            true,
            "KeptNotActedOn",
            format!(
                "kept as written but not acted on by kamaji-rs: {}",
                not_acted_on.join(", ")
            ),
            generation,
        );
    }
    status.observed_generation = generation;
    if was_rotating && ready {
        publish(
            &ctx,
            &tcp,
            EventType::Normal,
            "CaRotationCompleted",
            "the control plane runs with the new CA".into(),
        )
        .await;
    }
    let settled = ready && plan.writes.is_empty();
    status::write(&ctx, &tcp, &tenant, status).await?;
    // Steady state: nothing to do until something changes. Otherwise the Deployment's
    // own status changes wake us; the requeue is a safety net.
    Ok(if datastore_source_expiring {
        // The source Secret is not watched: look again later, without a retry storm.
        Action::requeue(datastore::SOURCE_EXPIRING_RECHECK)
    } else if settled {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_secs(30))
    })
}
