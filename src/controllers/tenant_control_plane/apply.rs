//! Apply: one loop over the desired objects, in order, each with server-side
//! apply and our one field manager. Secrets are updated in place, never deleted
//! and recreated.

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Secret},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};

use crate::{
    api::labels,
    controllers::{Context, Error},
    tenant::{
        desired::{Object, Observed},
        meta::TenantRef,
    },
};

/// Applies `objects` in order and returns what is stored afterwards: `observed`
/// with every applied object replaced by the API server's answer.
pub async fn apply(
    ctx: &Context,
    tenant: &TenantRef,
    mut observed: Observed,
    objects: &[Object],
) -> Result<Observed, Error> {
    let params = PatchParams::apply(labels::FIELD_MANAGER).force();
    let ns = &tenant.namespace;
    for object in objects {
        match object {
            Object::Service(service) => {
                let applied = patch(ctx, ns, &tenant.name, "service", service.as_ref(), &params).await?;
                observed.service = Some(applied);
            }
            Object::Deployment(deployment) => {
                let applied: Deployment =
                    patch(ctx, ns, &tenant.name, "deployment", deployment.as_ref(), &params).await?;
                observed.deployment = Some(applied);
            }
            Object::Secret(secret) => {
                let name = secret.name_any();
                let applied: Secret = patch(ctx, ns, &name, "secret", secret.as_ref(), &params).await?;
                let suffix = name
                    .strip_prefix(&format!("{}-", tenant.name))
                    .unwrap_or(&name)
                    .to_string();
                observed.secrets.insert(suffix, applied);
            }
            Object::ConfigMap(map) => {
                let name = map.name_any();
                let applied: ConfigMap = patch(ctx, ns, &name, "configmap", map.as_ref(), &params).await?;
                observed.egress_selector = Some(applied);
            }
            Object::RemoveConfigMap(name) => {
                remove_config_map(ctx, ns, name).await?;
                observed.egress_selector = None;
            }
        }
    }
    Ok(observed)
}

/// Deletes a ConfigMap of the tenant; one already gone is fine.
async fn remove_config_map(ctx: &Context, namespace: &str, name: &str) -> Result<(), Error> {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(Error::kube("delete", format!("configmap {namespace}/{name}"))(
            error,
        )),
    }
}

async fn patch<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    kind: &str,
    object: &K,
    params: &PatchParams,
) -> Result<K, Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(ctx.client.clone(), namespace)
        .patch(name, params, &Patch::Apply(object))
        .await
        .map_err(Error::kube("apply", format!("{kind} {namespace}/{name}")))
}
