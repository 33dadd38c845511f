//! Errors of a reconcile. Variant names are what operators see in logs,
//! events and metrics; messages name the object and never carry key material.

use crate::tenant::meta::MissingMetadata;

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{verb} {object}: {source}")]
    Kube {
        /// What was attempted (`apply`, `get`, `list`).
        verb: &'static str,
        /// The object, `kind namespace/name`.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The TenantControlPlane lacks metadata the API server always sets.
    #[error(transparent)]
    MissingMetadata(#[from] MissingMetadata),
    /// No DataStore named by the tenant or the manager.
    #[error("no DataStore: set spec.dataStore on the TenantControlPlane or --datastore on the manager")]
    NoDataStore,
    /// The DataStore cannot be used.
    #[error("DataStore {name}: {reason}")]
    DataStoreUnusable {
        /// DataStore name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The pass found its DataStore unusable: the problem as the pass worded it (it
    /// names the DataStore already), so the retry's log line and event repeat nothing.
    #[error("{0}")]
    DataStoreProblem(String),
    /// A deleted tenant's etcd user, role or keys could not be removed (retried until
    /// the cleanup grace period ends).
    #[error("cleaning up tenant {tenant}: {reason}")]
    DataStoreCleanup {
        /// The tenant, `namespace/name`.
        tenant: String,
        /// What failed, naming the DataStore.
        reason: String,
    },
    /// The issuing task panicked or was cancelled.
    #[error("certificate issuance task failed: {0}")]
    IssuanceTask(String),
    /// A lifecycle-labelled Secret's certificates cannot be read (names the data key, never content).
    #[error("secret {secret}: {source}")]
    InvalidCertificate {
        /// The Secret, `namespace/name`.
        secret: String,
        /// What is wrong, naming the data key.
        #[source]
        source: crate::pki::inspect::InspectError,
    },
    /// A namespaced object without a namespace (not read from the API server?).
    #[error("{0} has no namespace")]
    MissingNamespace(String),
}

impl Error {
    /// Wraps an API error with what was attempted on which object.
    pub fn kube(verb: &'static str, object: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let object = object.into();
        move |source| Error::Kube { verb, object, source }
    }

    /// Short name for metrics and event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "KubeApiError",
            Error::MissingMetadata(_) => "MissingMetadata",
            Error::NoDataStore => "NoDataStore",
            Error::DataStoreUnusable { .. } | Error::DataStoreProblem(_) => "DataStoreUnusable",
            Error::DataStoreCleanup { .. } => "DataStoreCleanupFailed",
            Error::IssuanceTask(_) => "IssuanceTaskFailed",
            Error::InvalidCertificate { .. } => "InvalidCertificate",
            Error::MissingNamespace(_) => "MissingNamespace",
        }
    }
}
