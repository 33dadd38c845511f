//! The cluster-scoped `DataStore` custom resource (Kamaji-compatible): where
//! tenants keep their state, and the PKI to reach it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A backing store tenants can be placed on.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kamaji.clastix.io",
    version = "v1alpha1",
    kind = "DataStore",
    status = "DataStoreStatus",
    category = "kamaji",
    doc = "A datastore (etcd, MySQL, PostgreSQL, NATS) tenant control planes keep their state in.",
    printcolumn(
        name = "Driver",
        type_ = "string",
        json_path = ".spec.driver",
        description = "Kamaji data store driver"
    ),
    printcolumn(
        name = "Ready",
        type_ = "boolean",
        json_path = ".status.ready",
        description = "DataStore validated and ready for use"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Age"
    )
)]
#[serde(rename_all = "camelCase")]
// Kamaji's rules, but for its requirement of a clientCertificate on etcd DataStores:
// kamaji-rs signs each tenant's etcd client certificate with the CA and needs none.
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(self.driver == \"etcd\") ? (has(self.tlsConfig) && has(self.tlsConfig.certificateAuthority.privateKey) && (has(self.tlsConfig.certificateAuthority.privateKey.secretReference) || has(self.tlsConfig.certificateAuthority.privateKey.content))) : true",
     "message": "certificateAuthority privateKey must have secretReference or content when driver is etcd"},
    {"rule": "(self.driver != \"etcd\" && has(self.tlsConfig) && has(self.tlsConfig.clientCertificate)) ? (has(self.tlsConfig.clientCertificate.certificate.secretReference) || has(self.tlsConfig.clientCertificate.certificate.content)) : true",
     "message": "When driver is not etcd and tlsConfig exists, clientCertificate must be null or contain valid content"},
    {"rule": "(self.driver != \"etcd\" && has(self.basicAuth)) ? (has(self.basicAuth.username.secretReference) || has(self.basicAuth.username.content)) : true",
     "message": "When driver is not etcd and basicAuth exists, username must have secretReference or content"},
    {"rule": "(self.driver != \"etcd\" && has(self.basicAuth)) ? (has(self.basicAuth.password.secretReference) || has(self.basicAuth.password.content)) : true",
     "message": "When driver is not etcd and basicAuth exists, password must have secretReference or content"},
    {"rule": "(self.driver != \"etcd\") ? (has(self.tlsConfig) || has(self.basicAuth)) : true",
     "message": "When driver is not etcd, either tlsConfig or basicAuth must be provided"},
    {"rule": "(has(self.tlsConfig) && has(self.tlsConfig.clientCertificate)) ? has(self.tlsConfig.clientCertificate.privateKey) : true",
     "message": "clientCertificate needs a privateKey"}
]))]
pub struct DataStoreSpec {
    /// The datastore technology. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "Datastore driver is immutable"}
    ]))]
    pub driver: Driver,
    /// `host:port` endpoints of the datastore.
    #[schemars(length(min = 1))]
    pub endpoints: Vec<String>,
    /// Username and password (SQL drivers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// TLS material: the CA (etcd: with its key, so kamaji-rs signs tenant client
    /// certificates) and a client certificate (other drivers: copied to tenants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
}

/// Supported datastore drivers, with Kamaji's spelling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Driver {
    /// etcd: kamaji-rs signs each tenant's client certificate with the DataStore CA.
    #[serde(rename = "etcd")]
    Etcd,
    /// MySQL through kine; PKI managed outside kamaji-rs.
    MySQL,
    /// PostgreSQL through kine; PKI managed outside kamaji-rs.
    PostgreSQL,
    /// NATS through kine; PKI managed outside kamaji-rs.
    NATS,
}

impl Driver {
    /// The driver as written in the DataStore spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Etcd => "etcd",
            Driver::MySQL => "MySQL",
            Driver::PostgreSQL => "PostgreSQL",
            Driver::NATS => "NATS",
        }
    }
}

/// Username and password of a SQL datastore.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct BasicAuth {
    /// The user name.
    pub username: ContentRef,
    /// The password.
    pub password: ContentRef,
}

/// TLS settings of a datastore.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// The datastore's CA: certificate, and for etcd its private key.
    pub certificate_authority: CertKeyPair,
    /// A client certificate tenants use (non-etcd drivers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<CertKeyPair>,
}

/// A certificate and its private key, each given inline or by Secret reference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertKeyPair {
    /// The PEM certificate.
    pub certificate: ContentRef,
    /// The PEM private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<ContentRef>,
}

/// A value given inline (base64 `content`) or by a key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContentRef {
    /// The value, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A Secret key holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_reference: Option<SecretKeyRef>,
}

/// A key of a namespaced Secret. As in Kamaji's schema, name and namespace may
/// be left out (the DataStore is then reported invalid, see
/// [`SecretKeyRef::validate`]); the reference is replaced as a whole.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct SecretKeyRef {
    /// Secret name.
    #[serde(default)]
    pub name: String,
    /// Secret namespace.
    #[serde(default)]
    pub namespace: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1))]
    pub key_path: String,
}

/// Why a Secret reference of a DataStore cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefError {
    /// `secretReference.name` is empty.
    #[error("the Secret reference name is mandatory")]
    MissingName,
    /// `secretReference.namespace` is empty (the DataStore is cluster-scoped: no namespace to default to).
    #[error("the Secret reference namespace of secret {name} is mandatory")]
    MissingNamespace {
        /// The Secret's name.
        name: String,
    },
}

impl SecretKeyRef {
    /// Checks the reference can be followed, with Kamaji's DataStore-validation
    /// messages. Call it before reading the Secret: a reference without a
    /// namespace would otherwise address no namespace at all.
    pub fn validate(&self) -> Result<(), SecretRefError> {
        if self.name.is_empty() {
            return Err(SecretRefError::MissingName);
        }
        if self.namespace.is_empty() {
            return Err(SecretRefError::MissingNamespace {
                name: self.name.clone(),
            });
        }
        Ok(())
    }
}

/// Observed state of a DataStore, with Kamaji's fields.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataStoreStatus {
    /// `<namespace>/<name>` of the tenants using this DataStore. A set: each operator
    /// (one per watched namespace) applies the entries of its own tenants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub used_by: Vec<String>,
    /// Whether the DataStore was validated and can be used (Kamaji's `ready`).
    #[serde(default)]
    pub ready: bool,
    /// Standard conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_without_namespace_parses_and_is_reported() {
        let reference: SecretKeyRef =
            serde_json::from_value(serde_json::json!({"name": "etcd-certs", "keyPath": "ca.crt"}))
                .expect("Kamaji's schema allows it");
        assert_eq!(
            reference.validate(),
            Err(SecretRefError::MissingNamespace {
                name: "etcd-certs".into()
            })
        );
        let complete = SecretKeyRef {
            namespace: "kamaji-system".into(),
            ..reference
        };
        assert_eq!(complete.validate(), Ok(()));
    }
}
