//! The tenant's DataStore: which one, how the API server reaches it, and the
//! material kamaji-rs needs from it (the etcd CA to sign the tenant's client
//! certificate, or the client certificate other drivers bring).

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::{
    api::{
        DataStore, TenantControlPlane,
        datastore::{ContentRef, Driver},
    },
    controllers::{Context, Error},
    pki::{Authority, SecretData},
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
    /// How the API server reaches it.
    pub wiring: DatastoreWiring,
    /// Tenant schema in the datastore.
    pub schema: String,
    /// Tenant user in the datastore (CN of the etcd client certificate).
    pub user: String,
}

/// Kamaji's default schema: `<namespace>_<name>` with dashes as underscores.
pub fn default_schema(tcp_namespace: &str, tcp_name: &str) -> String {
    format!("{tcp_namespace}_{tcp_name}").replace('-', "_")
}

/// Reads the tenant's DataStore and the material it references.
pub async fn resolve(
    ctx: &Context,
    tcp: &TenantControlPlane,
    namespace: &str,
    name: &str,
) -> Result<Resolved, Error> {
    let datastore_name = tcp
        .spec
        .data_store
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| ctx.settings.default_datastore.clone())
        .ok_or(Error::NoDataStore)?;
    let api: Api<DataStore> = Api::all(ctx.client.clone());
    let datastore = api
        .get_opt(&datastore_name)
        .await
        .map_err(Error::kube("get", format!("datastore {datastore_name}")))?;
    let datastore = datastore.ok_or_else(|| Error::DataStoreUnusable {
        name: datastore_name.clone(),
        reason: "not found".into(),
    })?;
    let unusable = |reason: String| Error::DataStoreUnusable {
        name: datastore_name.clone(),
        reason,
    };
    let schema = tcp
        .spec
        .data_store_schema
        .clone()
        .unwrap_or_else(|| default_schema(namespace, name));
    let user = tcp
        .spec
        .data_store_username
        .clone()
        .unwrap_or_else(|| schema.clone());
    let spec = &datastore.spec;
    let tls = spec.tls_config.as_ref();
    let (etcd_ca, copied_certificate) = match spec.driver {
        Driver::Etcd => {
            let ca =
                tls.ok_or_else(|| unusable("tlsConfig.certificateAuthority is required for etcd".into()))?;
            let certificate = read(&ctx.client, &ca.certificate_authority.certificate)
                .await
                .map_err(|e| unusable(format!("tlsConfig.certificateAuthority.certificate: {e}")))?;
            let key_ref = ca.certificate_authority.private_key.as_ref().ok_or_else(|| {
                unusable(
                    "tlsConfig.certificateAuthority.privateKey is required to sign etcd client certificates"
                        .into(),
                )
            })?;
            let key = read(&ctx.client, key_ref)
                .await
                .map_err(|e| unusable(format!("tlsConfig.certificateAuthority.privateKey: {e}")))?;
            let authority = Authority::from_pem(&certificate, Some(&key))
                .map_err(|e| unusable(format!("tlsConfig.certificateAuthority: {e}")))?;
            (Some(authority), None)
        }
        Driver::MySQL | Driver::PostgreSQL | Driver::NATS => {
            let copied = match tls {
                Some(tls) => Some(
                    copy_client_certificate(&ctx.client, tls)
                        .await
                        .map_err(unusable)?,
                ),
                None => None,
            };
            (None, copied)
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Resolved {
        name: datastore_name,
        driver: spec.driver,
        etcd_ca,
        copied_certificate,
        wiring: DatastoreWiring {
            etcd_servers: spec.endpoints.iter().map(|e| format!("{scheme}://{e}")).collect(),
            prefix: format!("/{schema}"),
        },
        schema,
        user,
    })
}

async fn copy_client_certificate(
    client: &Client,
    tls: &crate::api::datastore::TlsConfig,
) -> Result<SecretData, String> {
    let pair = tls
        .client_certificate
        .as_ref()
        .ok_or("tlsConfig.clientCertificate is required for this driver")?;
    let mut data = SecretData::new();
    data.insert(
        "ca.crt".into(),
        read(client, &tls.certificate_authority.certificate).await?,
    );
    data.insert("server.crt".into(), read(client, &pair.certificate).await?);
    let key = pair
        .private_key
        .as_ref()
        .ok_or("tlsConfig.clientCertificate.privateKey is required")?;
    data.insert("server.key".into(), read(client, key).await?);
    Ok(data)
}

/// The bytes a [`ContentRef`] points at: inline base64 content or a Secret key.
async fn read(client: &Client, content: &ContentRef) -> Result<Vec<u8>, String> {
    if let Some(inline) = &content.content {
        return base64::engine::general_purpose::STANDARD
            .decode(inline.trim())
            .map_err(|e| format!("content is not base64: {e}"));
    }
    let reference = content
        .secret_reference
        .as_ref()
        .ok_or("neither content nor secretReference is set")?;
    let api: Api<Secret> = Api::namespaced(client.clone(), &reference.namespace);
    let secret = api
        .get_opt(&reference.name)
        .await
        .map_err(|e| format!("reading secret {}/{}: {e}", reference.namespace, reference.name))?
        .ok_or_else(|| format!("secret {}/{} not found", reference.namespace, reference.name))?;
    secret
        .data
        .and_then(|mut data| data.remove(&reference.key_path))
        .map(|value| value.0)
        .ok_or_else(|| {
            format!(
                "secret {}/{} has no key {}",
                reference.namespace, reference.name, reference.key_path
            )
        })
}

/// How often a tenant whose DataStore client certificate expires within the deadline
/// re-reads it: the source Secret is not watched, and the warning must not become a storm.
pub const SOURCE_EXPIRING_RECHECK: std::time::Duration = std::time::Duration::from_secs(600);

/// A warning when the client certificate copied from a DataStore (MySQL, PostgreSQL,
/// NATS: an external PKI) expires within `deadline`: copying it again cannot help,
/// its source must be renewed.
pub fn source_expiry_warning(
    datastore: &str,
    copied: &SecretData,
    deadline: std::time::Duration,
) -> Option<String> {
    let inspection = crate::pki::inspect(
        copied.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        crate::pki::Lifecycle::X509,
    )
    .ok()?;
    let earliest = inspection.earliest()?;
    let now = time::OffsetDateTime::now_utc();
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

/// `<tcp>-datastore-config` data; an existing password is kept.
pub fn config_data(resolved: &Resolved, existing: Option<&SecretData>) -> SecretData {
    let password = existing
        .and_then(|d| d.get("DB_PASSWORD").cloned())
        .filter(|p| !p.is_empty() || resolved.driver == Driver::Etcd)
        .unwrap_or_else(|| match resolved.driver {
            Driver::Etcd => Vec::new(),
            _ => hex::encode(rand::random::<[u8; 16]>()).into_bytes(),
        });
    SecretData::from([
        (
            "DB_CONNECTION_STRING".into(),
            resolved.wiring.etcd_servers.join(",").into_bytes(),
        ),
        ("DB_SCHEMA".into(), resolved.schema.clone().into_bytes()),
        ("DB_USER".into(), resolved.user.clone().into_bytes()),
        ("DB_PASSWORD".into(), password),
    ])
}
