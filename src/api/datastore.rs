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
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Age"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DataStoreSpec {
    /// The datastore technology.
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

/// A key of a namespaced Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Secret namespace.
    pub namespace: String,
    /// Key inside the Secret's data.
    pub key_path: String,
}

/// Observed state of a DataStore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataStoreStatus {
    /// `<namespace>/<name>` of the tenants using this DataStore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}
