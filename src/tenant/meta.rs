//! Names, labels and owner references every per-tenant object carries
//! (DESIGN.md section 2): `<tcp>-<suffix>`, the three `kamaji.clastix.io/*`
//! labels, and a controller ownerReference to the TenantControlPlane.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::api::{TenantControlPlane, labels};

/// Suffixes of the per-tenant objects that are not catalog rows.
pub mod suffix {
    /// The tenant CA Secret.
    pub const CA: &str = "ca";
    /// The front-proxy CA Secret.
    pub const FRONT_PROXY_CA: &str = "front-proxy-ca-certificate";
    /// The service-account key pair Secret.
    pub const SA: &str = "sa-certificate";
    /// The datastore client certificate Secret.
    pub const DATASTORE_CERTIFICATE: &str = "datastore-certificate";
    /// The datastore connection settings Secret.
    pub const DATASTORE_CONFIG: &str = "datastore-config";
    /// The label component of the Deployment and its pods.
    pub const DEPLOYMENT: &str = "deployment";
    /// The label component of the Service.
    pub const SERVICE: &str = "service";
}

/// What identifies a tenant's objects: its name, namespace and owner reference.
#[derive(Clone, Debug)]
pub struct TenantRef {
    /// The TenantControlPlane's name.
    pub name: String,
    /// Its namespace, where every per-tenant object lives.
    pub namespace: String,
    /// Controller ownerReference to the TenantControlPlane.
    pub owner: OwnerReference,
}

/// A TenantControlPlane without name, namespace or uid cannot own objects.
#[derive(Debug, thiserror::Error)]
#[error("TenantControlPlane has no {0} (not read from the API server?)")]
pub struct MissingMetadata(&'static str);

impl TenantRef {
    /// Identity of a TenantControlPlane read from the API server.
    pub fn of(tcp: &TenantControlPlane) -> Result<Self, MissingMetadata> {
        let name = tcp.metadata.name.clone().ok_or(MissingMetadata("name"))?;
        let namespace = tcp
            .metadata
            .namespace
            .clone()
            .ok_or(MissingMetadata("namespace"))?;
        let owner = tcp.controller_owner_ref(&()).ok_or(MissingMetadata("uid"))?;
        Ok(Self {
            name,
            namespace,
            owner,
        })
    }

    /// `<tcp>-<suffix>`.
    pub fn object_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// The labels of the object with this suffix.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::PROJECT.to_string(), labels::PROJECT_VALUE.to_string()),
            (labels::NAME.to_string(), self.name.clone()),
            (labels::COMPONENT.to_string(), component.to_string()),
        ])
    }

    /// Metadata of the per-tenant object with this suffix: name, namespace,
    /// labels and the controller ownerReference.
    pub fn object_meta(&self, suffix: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.object_name(suffix)),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(suffix)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// Label selector matching the control-plane pods (also the scale selector).
    pub fn pod_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::NAME.to_string(), self.name.clone()),
            (labels::COMPONENT.to_string(), suffix::DEPLOYMENT.to_string()),
        ])
    }

    /// [`Self::pod_selector`] as a selector string.
    pub fn pod_selector_string(&self) -> String {
        self.pod_selector()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn tenant(name: &str, namespace: &str) -> TenantRef {
        TenantRef {
            name: name.into(),
            namespace: namespace.into(),
            owner: OwnerReference {
                api_version: "kamaji.clastix.io/v1alpha1".into(),
                kind: "TenantControlPlane".into(),
                name: name.into(),
                uid: "00000000-0000-0000-0000-000000000001".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        }
    }

    #[test]
    fn objects_are_named_and_labelled_as_kamaji_does() {
        let meta = tenant("k8s-133", "default").object_meta("api-server-certificate");
        assert_eq!(meta.name.as_deref(), Some("k8s-133-api-server-certificate"));
        let labels = meta.labels.unwrap_or_default();
        assert_eq!(labels["kamaji.clastix.io/project"], "kamaji");
        assert_eq!(labels["kamaji.clastix.io/name"], "k8s-133");
        assert_eq!(labels["kamaji.clastix.io/component"], "api-server-certificate");
        assert_eq!(
            meta.owner_references.unwrap_or_default()[0].controller,
            Some(true)
        );
    }
}
