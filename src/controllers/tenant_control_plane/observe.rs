//! Observe: read what a tenant has, by the objects' deterministic names. A
//! Secret that exists as `<tcp>-<suffix>` is the tenant's whatever its labels
//! say; the label-selected watches only trigger reconciles.

use std::collections::BTreeMap;

use futures::future::try_join_all;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Secret, Service},
};
use kube::Api;

use super::datastore;
use crate::{
    api::TenantControlPlane,
    controllers::{Context, Error},
    pki::catalog,
    tenant::{
        desired::Observed,
        konnectivity,
        meta::{TenantRef, suffix},
    },
};

/// The suffixes of every Secret a tenant may have.
fn secret_suffixes() -> Vec<&'static str> {
    let mut suffixes = catalog::secret_suffixes();
    suffixes.push(suffix::DATASTORE_CONFIG);
    suffixes
}

/// Reads the tenant's Secrets, Service, Deployment and DataStore. API errors fail
/// the pass (retried); a DataStore that cannot be used is a problem of the pass.
pub async fn observe(ctx: &Context, tcp: &TenantControlPlane, tenant: &TenantRef) -> Result<Observed, Error> {
    let secrets = secrets(ctx, tenant);
    let service = get::<Service>(ctx, tenant, &tenant.name, "service");
    let deployment = get::<Deployment>(ctx, tenant, &tenant.name, "deployment");
    let egress_name = tenant.object_name(konnectivity::EGRESS_SELECTOR_SUFFIX);
    let egress_selector = get::<ConfigMap>(ctx, tenant, &egress_name, "configmap");
    let (secrets, service, deployment, egress_selector) =
        futures::try_join!(secrets, service, deployment, egress_selector)?;
    let datastore = match datastore::resolve(ctx, tcp).await {
        Ok(resolved) => Ok(resolved),
        Err(error @ Error::Kube { .. }) => return Err(error),
        Err(problem) => Err(problem.to_string()),
    };
    Ok(Observed {
        secrets,
        service,
        deployment,
        egress_selector,
        datastore,
    })
}

async fn secrets(ctx: &Context, tenant: &TenantRef) -> Result<BTreeMap<String, Secret>, Error> {
    let reads = secret_suffixes().into_iter().map(|s| async move {
        let secret = get::<Secret>(ctx, tenant, &tenant.object_name(s), "secret").await?;
        Ok::<_, Error>(secret.map(|secret| (s.to_string(), secret)))
    });
    Ok(try_join_all(reads).await?.into_iter().flatten().collect())
}

async fn get<K>(ctx: &Context, tenant: &TenantRef, name: &str, kind: &str) -> Result<Option<K>, Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(ctx.client.clone(), &tenant.namespace)
        .get_opt(name)
        .await
        .map_err(Error::kube("get", format!("{kind} {}/{name}", tenant.namespace)))
}
