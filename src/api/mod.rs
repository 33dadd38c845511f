//! The Kubernetes API of kamaji-rs: the `kamaji.clastix.io/v1alpha1` custom
//! resources (compatible with Kamaji's) and the label and annotation keys.

pub mod datastore;
pub mod labels;
pub mod rotation;
pub mod schema;
pub mod tenant_control_plane;

pub use datastore::{DataStore, DataStoreSpec};
pub use tenant_control_plane::{TenantControlPlane, TenantControlPlaneSpec, TenantControlPlaneStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CustomResourceDefinitions kamaji-rs serves, in the order `kamaji crd` prints them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![DataStore::crd(), TenantControlPlane::crd()]
}

/// The CRDs as one multi-document YAML stream, as checked in under `crds/`.
pub fn crds_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}
