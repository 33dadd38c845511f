//! Writing the TenantControlPlane status: only when it changed, through the
//! status subresource, with our field manager.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{
    Api,
    api::{Patch, PatchParams},
};

use crate::{
    api::{
        TenantControlPlane, TenantControlPlaneStatus, labels,
        tenant_control_plane::{
            AddonsStatus, CertificatesStatus, KonnectivityStatus, KubeconfigsStatus, SecretStatus,
            StorageStatus,
        },
    },
    controllers::{Context, Error},
    tenant::meta::TenantRef,
};

use super::secrets;

/// Checksum of a Secret's data (sha256 over sorted keys and values).
pub fn data_checksum(secret: &Secret) -> String {
    crate::tenant::deployment::data_checksum(&secrets::data(secret))
}

/// `{secretName, checksum, lastUpdate}` of a Secret, keeping lastUpdate while the checksum holds.
fn secret_status(
    tenant: &TenantRef,
    suffix: &str,
    secrets: &BTreeMap<String, Secret>,
    previous: Option<&SecretStatus>,
) -> Option<SecretStatus> {
    let secret = secrets.get(suffix)?;
    let checksum = data_checksum(secret);
    let last_update = match previous {
        Some(p) if p.checksum.as_deref() == Some(checksum.as_str()) => p.last_update.clone(),
        _ => Some(Timestamp::now().to_string()),
    };
    Some(SecretStatus {
        secret_name: Some(tenant.object_name(suffix)),
        checksum: Some(checksum),
        last_update,
    })
}

/// Fills Kamaji's per-Secret status fields from the Secrets as now stored.
pub fn record_secrets(
    status: &mut TenantControlPlaneStatus,
    tenant: &TenantRef,
    secrets: &BTreeMap<String, Secret>,
    konnectivity: bool,
) {
    let old_certs = status.certificates.clone().unwrap_or_default();
    let old_kubeconfigs = status.kubeconfig.clone().unwrap_or_default();
    let s = |suffix: &str, previous: &Option<SecretStatus>| {
        secret_status(tenant, suffix, secrets, previous.as_ref())
    };
    status.certificates = Some(CertificatesStatus {
        // The CA checksum records the CA of the last completed rollout: it is set by the
        // status derivation, not here (see tenant::status).
        ca: old_certs.ca.clone(),
        api_server: s("api-server-certificate", &old_certs.api_server),
        api_server_kubelet_client: s(
            "api-server-kubelet-client-certificate",
            &old_certs.api_server_kubelet_client,
        ),
        front_proxy_ca: s("front-proxy-ca-certificate", &old_certs.front_proxy_ca),
        front_proxy_client: s("front-proxy-client-certificate", &old_certs.front_proxy_client),
        sa: s("sa-certificate", &old_certs.sa),
    });
    status.kubeconfig = Some(KubeconfigsStatus {
        admin: s("admin-kubeconfig", &old_kubeconfigs.admin),
        controller_manager: s(
            "controller-manager-kubeconfig",
            &old_kubeconfigs.controller_manager,
        ),
        scheduler: s("scheduler-kubeconfig", &old_kubeconfigs.scheduler),
    });
    let old_storage = status.storage.clone().unwrap_or_default();
    status.storage = Some(StorageStatus {
        config: s("datastore-config", &old_storage.config),
        certificate: s("datastore-certificate", &old_storage.certificate),
        ..old_storage
    });
    let old_konnectivity = status
        .addons
        .as_ref()
        .and_then(|a| a.konnectivity.clone())
        .unwrap_or_default();
    status.addons = Some(AddonsStatus {
        konnectivity: Some(KonnectivityStatus {
            enabled: konnectivity,
            certificate: s("konnectivity-certificate", &old_konnectivity.certificate)
                .filter(|_| konnectivity),
            kubeconfig: s("konnectivity-kubeconfig", &old_konnectivity.kubeconfig).filter(|_| konnectivity),
        }),
    });
}

/// Condition types other controllers own (`status.conditions` is a list keyed by type).
const FOREIGN_CONDITIONS: &[&str] = &[
    crate::controllers::certificate_lifecycle::CONDITION,
    crate::controllers::tenant_cluster::CONDITION,
];

/// Writes the status if it differs from what is stored.
pub async fn write(
    ctx: &Context,
    tcp: &TenantControlPlane,
    tenant: &TenantRef,
    status: TenantControlPlaneStatus,
) -> Result<(), Error> {
    if tcp.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<TenantControlPlane> = Api::namespaced(ctx.client.clone(), &tenant.namespace);
    // Conditions of other controllers (written with their own field manager) are kept
    // out of our apply: applying them would make them ours, and later drop them.
    let mut status = status;
    status
        .conditions
        .retain(|c| !FOREIGN_CONDITIONS.contains(&c.type_.as_str()));
    let patch = serde_json::json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1",
        "kind": "TenantControlPlane",
        "status": status,
    });
    api.patch_status(
        &tenant.name,
        &PatchParams::apply(labels::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube(
        "apply status",
        format!("tenantcontrolplane {}/{}", tenant.namespace, tenant.name),
    ))?;
    Ok(())
}
