//! The tenant's DataStore: which one, how the API server reaches it, and the
//! material kamaji-rs needs from it (the etcd CA to sign the tenant's client
//! certificate, or the client certificate other drivers bring).

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use crate::{
    api::{
        DataStore, TenantControlPlane,
        datastore::{CertKeyPair, ContentRef, Driver},
    },
    controllers::{Context, Error},
    pki::{Authority, SecretData},
    tenant::{
        datastore::{EtcdAdmin, Resolved, schema_and_user},
        deployment::DatastoreWiring,
    },
};

/// Reads the tenant's DataStore and the material it references.
pub async fn resolve(ctx: &Context, tcp: &TenantControlPlane) -> Result<Resolved, Error> {
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
    let (schema, _) = schema_and_user(&tcp.spec, &tcp.namespace().unwrap_or_default(), &tcp.name_any());
    material(&ctx.client, &datastore, &schema)
        .await
        .map_err(|reason| Error::DataStoreUnusable {
            name: datastore_name,
            reason,
        })
}

/// What a tenant with `schema` needs of `datastore`, or why the DataStore cannot serve
/// (naming the field and the Secret): the DataStore controller's validation too.
pub async fn material(client: &Client, datastore: &DataStore, schema: &str) -> Result<Resolved, String> {
    let spec = &datastore.spec;
    let tls = spec.tls_config.as_ref();
    if let Some(auth) = &spec.basic_auth {
        read(client, &auth.username)
            .await
            .map_err(|e| format!("basicAuth.username: {e}"))?;
        read(client, &auth.password)
            .await
            .map_err(|e| format!("basicAuth.password: {e}"))?;
    }
    let (etcd_ca, copied_certificate, etcd_admin) = match spec.driver {
        Driver::Etcd => {
            let ca = tls.ok_or("tlsConfig.certificateAuthority is required for etcd")?;
            let certificate = read(client, &ca.certificate_authority.certificate)
                .await
                .map_err(|e| format!("tlsConfig.certificateAuthority.certificate: {e}"))?;
            let key_ref = ca.certificate_authority.private_key.as_ref().ok_or(
                "tlsConfig.certificateAuthority.privateKey is required to sign etcd client certificates",
            )?;
            let key = read(client, key_ref)
                .await
                .map_err(|e| format!("tlsConfig.certificateAuthority.privateKey: {e}"))?;
            let authority = Authority::from_pem(&certificate, Some(&key))
                .map_err(|e| format!("tlsConfig.certificateAuthority: {e}"))?;
            let admin = match &ca.client_certificate {
                Some(pair) => Some(etcd_admin(client, certificate, pair).await?),
                None => None,
            };
            (Some(authority), None, admin)
        }
        Driver::MySQL | Driver::PostgreSQL | Driver::NATS => {
            let copied = match tls {
                Some(tls) => Some(copy_client_certificate(client, tls).await?),
                None => None,
            };
            (None, copied, None)
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Resolved {
        name: datastore.name_any(),
        driver: spec.driver,
        etcd_ca,
        copied_certificate,
        etcd_admin,
        wiring: DatastoreWiring {
            etcd_servers: spec.endpoints.iter().map(|e| format!("{scheme}://{e}")).collect(),
            prefix: format!("/{schema}"),
        },
    })
}

/// The admin credentials of an etcd DataStore: its CA and `tlsConfig.clientCertificate`.
async fn etcd_admin(client: &Client, ca_pem: Vec<u8>, pair: &CertKeyPair) -> Result<EtcdAdmin, String> {
    let certificate_pem = read(client, &pair.certificate)
        .await
        .map_err(|e| format!("tlsConfig.clientCertificate.certificate: {e}"))?;
    let key = pair
        .private_key
        .as_ref()
        .ok_or("tlsConfig.clientCertificate.privateKey is required")?;
    let key_pem = read(client, key)
        .await
        .map_err(|e| format!("tlsConfig.clientCertificate.privateKey: {e}"))?;
    Ok(EtcdAdmin {
        ca_pem,
        certificate_pem,
        key_pem,
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
    // Kamaji's schema allows a reference without a namespace; it cannot be followed.
    reference.validate().map_err(|e| e.to_string())?;
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
