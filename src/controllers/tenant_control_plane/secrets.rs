//! Reading a tenant's Secrets (one label-selected list, never all Secrets) and
//! writing one with server-side apply, in place: never deleted and recreated.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
};

use crate::{
    api::labels,
    controllers::Error,
    pki::SecretData,
    tenant::{
        certificates::{Stored, StoredSecrets},
        meta::TenantRef,
    },
};

/// The tenant's Secrets by suffix, as stored.
pub async fn list(client: &Client, tenant: &TenantRef) -> Result<BTreeMap<String, Secret>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &tenant.namespace);
    let selector = format!(
        "{}={},{}={}",
        labels::PROJECT,
        labels::PROJECT_VALUE,
        labels::NAME,
        tenant.name
    );
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube(
            "list",
            format!("secrets {}/-l {selector}", tenant.namespace),
        ))?;
    let prefix = format!("{}-", tenant.name);
    Ok(list
        .items
        .into_iter()
        .filter_map(|secret| {
            let suffix = secret
                .metadata
                .name
                .as_deref()?
                .strip_prefix(&prefix)?
                .to_string();
            Some((suffix, secret))
        })
        .collect())
}

/// A Secret's data as raw bytes.
pub fn data(secret: &Secret) -> SecretData {
    secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.0.clone()))
        .collect()
}

/// What the PKI plan needs of each stored Secret.
pub fn stored(secrets: &BTreeMap<String, Secret>) -> StoredSecrets {
    secrets
        .iter()
        .map(|(suffix, secret)| {
            let annotations = secret.metadata.annotations.as_ref();
            let rotate = annotations.and_then(|a| a.get(labels::ROTATE));
            let stored = Stored {
                data: data(secret),
                rotate_requested: rotate.is_some_and(|v| v.is_empty()),
                paused: annotations.is_some_and(|a| a.contains_key(labels::PAUSED)),
                rotate_annotation: rotate.filter(|v| !v.is_empty()).cloned(),
            };
            (suffix.clone(), stored)
        })
        .collect()
}

/// What to write into `<tcp>-<suffix>`.
pub struct Desired<'a> {
    /// The object's suffix.
    pub suffix: &'a str,
    /// Secret type (`Opaque`, `kubernetes.io/tls`).
    pub type_: &'a str,
    /// The whole data.
    pub data: &'a SecretData,
    /// `kamaji.clastix.io/certificate_lifecycle_controller` value, if watched.
    pub lifecycle: Option<&'a str>,
    /// `certs.kamaji.clastix.io/rotate` value to keep or set.
    pub rotate_annotation: Option<&'a str>,
}

/// Server-side applies the Secret with our field manager.
pub async fn apply(client: &Client, tenant: &TenantRef, desired: Desired<'_>) -> Result<Secret, Error> {
    let mut meta = tenant.object_meta(desired.suffix);
    if let (Some(lifecycle), Some(labels)) = (desired.lifecycle, meta.labels.as_mut()) {
        labels.insert(labels::CERTIFICATE_LIFECYCLE.to_string(), lifecycle.to_string());
    }
    if let Some(value) = desired.rotate_annotation {
        meta.annotations = Some(BTreeMap::from([(labels::ROTATE.to_string(), value.to_string())]));
    }
    let name = meta.name.clone().unwrap_or_default();
    let secret = Secret {
        metadata: meta,
        type_: Some(desired.type_.to_string()),
        data: Some(
            desired
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Secret::default()
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), &tenant.namespace);
    api.patch(
        &name,
        &PatchParams::apply(labels::FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await
    .map_err(Error::kube(
        "apply",
        format!("secret {}/{name}", tenant.namespace),
    ))
}
