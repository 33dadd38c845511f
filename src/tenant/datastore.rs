//! What the tenant needs of its DataStore, as values: the resolved DataStore
//! (read by the controller), the tenant's schema and user, and the
//! `<tcp>-datastore-config` data.

use std::time::Duration;

use time::OffsetDateTime;

use crate::{
    api::{TenantControlPlaneSpec, datastore::Driver},
    pki::{Authority, Lifecycle, SecretData},
    tenant::deployment::DatastoreWiring,
};

/// A DataStore, resolved for one tenant.
pub struct Resolved {
    /// DataStore name.
    pub name: String,
    /// Its driver.
    pub driver: Driver,
    /// etcd: the CA that signs the tenant's client certificate.
    pub etcd_ca: Option<Authority>,
    /// Other drivers: `ca.crt`, `server.crt`, `server.key` copied from the DataStore.
    pub copied_certificate: Option<SecretData>,
    /// etcd with `tlsConfig.clientCertificate`: how kamaji-rs connects as the etcd
    /// admin to give the tenant its user and role.
    pub etcd_admin: Option<EtcdAdmin>,
    /// How the API server reaches it.
    pub wiring: DatastoreWiring,
}

/// The etcd admin's TLS material of a DataStore (`tlsConfig.certificateAuthority.certificate`
/// and `tlsConfig.clientCertificate`), PEM. Deliberately not `Debug`: it holds a private key.
pub struct EtcdAdmin {
    /// The DataStore CA (trusts etcd's serving certificate).
    pub ca_pem: Vec<u8>,
    /// The admin's client certificate; with etcd's `--client-cert-auth` its CN is the
    /// etcd user (`root` in Kamaji's etcd).
    pub certificate_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
}

/// Kamaji's default schema: `<namespace>_<name>` with dashes as underscores.
pub fn default_schema(tcp_namespace: &str, tcp_name: &str) -> String {
    format!("{tcp_namespace}_{tcp_name}").replace('-', "_")
}

/// The tenant's schema and user in its DataStore: from the spec alone, so they are
/// known (and the datastore certificate's subject checked) even when the DataStore is not.
pub fn schema_and_user(spec: &TenantControlPlaneSpec, namespace: &str, name: &str) -> (String, String) {
    let schema = spec
        .data_store_schema
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default_schema(namespace, name));
    let user = spec
        .data_store_username
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| schema.clone());
    (schema, user)
}

/// How often a tenant whose DataStore client certificate expires within the deadline
/// re-reads it: the source Secret is not watched, and the warning must not become a storm.
pub const SOURCE_EXPIRING_RECHECK: Duration = Duration::from_secs(600);

/// A warning when the client certificate copied from a DataStore (MySQL, PostgreSQL,
/// NATS: an external PKI) expires within `deadline`: copying it again cannot help,
/// its source must be renewed.
pub fn source_expiry_warning(
    datastore: &str,
    copied: &SecretData,
    deadline: Duration,
    now: OffsetDateTime,
) -> Option<String> {
    let inspection = crate::pki::inspect(
        copied.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        Lifecycle::X509,
    )
    .ok()?;
    let earliest = inspection.earliest()?;
    (earliest.not_after - deadline <= now).then(|| {
        format!(
            "the client certificate of DataStore {datastore} (tlsConfig.clientCertificate, serial {}) \
             expires at {}, within the certificate expiration deadline ({}): renew it at its source; \
             kamaji-rs copies the renewed certificate to the tenant",
            earliest.serial,
            crate::tenant::certificates::rfc3339(earliest.not_after),
            humantime::format_duration(deadline)
        )
    })
}

/// `<tcp>-datastore-config` data. An existing password is kept: it is only
/// replaced when `new_password` is asked for (a rotate request on the Secret).
pub fn config_data(
    resolved: &Resolved,
    schema: &str,
    user: &str,
    existing: Option<&SecretData>,
    new_password: bool,
) -> SecretData {
    let kept = existing
        .and_then(|d| d.get("DB_PASSWORD").cloned())
        .filter(|p| !new_password && (!p.is_empty() || resolved.driver == Driver::Etcd));
    let password = kept.unwrap_or_else(|| match resolved.driver {
        Driver::Etcd => Vec::new(),
        _ => hex::encode(rand::random::<[u8; 16]>()).into_bytes(),
    });
    SecretData::from([
        (
            "DB_CONNECTION_STRING".into(),
            resolved.wiring.etcd_servers.join(",").into_bytes(),
        ),
        ("DB_SCHEMA".into(), schema.as_bytes().to_vec()),
        ("DB_USER".into(), user.as_bytes().to_vec()),
        ("DB_PASSWORD".into(), password),
    ])
}
