//! Concurrent edits: another actor (a GitOps controller such as Argo CD or
//! Flux, a policy engine) writes to a tenant's Secrets, Deployment and Service
//! with a field manager of its own: labels and annotations of its own, a field
//! kamaji-rs does not set, and a label kamaji-rs set removed. kamaji-rs keeps
//! what is theirs, restores what is its own, and does not fight: once restored,
//! nothing is written for two minutes.

use std::{collections::BTreeMap, time::Duration};

use futures::TryStreamExt;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Secret, Service},
};
use kamaji::api::TenantControlPlane;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams, WatchEvent, WatchParams},
};
use serde_json::json;

use super::walkthrough::{TENANT, provision};
use crate::support::{TestNamespace, client, eventually, kubectl_ok};

/// The other actor's field manager.
const OTHER: &str = "argocd-controller";
const THEIR_LABEL: &str = "app.kubernetes.io/instance";
const THEIR_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// A label kamaji-rs sets on every object of a tenant, removed by the other actor.
const OUR_LABEL: &str = "kamaji.clastix.io/component";

/// Secrets of every kind: a CA, a leaf, a kubeconfig, the datastore config.
const SECRETS: [&str; 4] = [
    "ca",
    "api-server-certificate",
    "admin-kubeconfig",
    "datastore-config",
];

/// The other actor's server-side apply of its own metadata (and `spec`, when given).
fn their_patch(
    kind: &str,
    api_version: &str,
    name: &str,
    spec: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut patch = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "labels": { THEIR_LABEL: "tenants" },
            "annotations": { THEIR_ANNOTATION: format!("tenants:{kind}/{name}") },
        },
    });
    if let Some(spec) = spec {
        patch["spec"] = spec;
    }
    patch
}

async fn apply_theirs<K>(api: &Api<K>, name: &str, patch: serde_json::Value)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(OTHER), &Patch::Apply(&patch))
        .await
        .unwrap_or_else(|e| panic!("{OTHER} applying to {name}: {e}"));
}

/// Whether an object carries the other actor's label and annotation and ours.
fn carries_both(meta: &kube::api::ObjectMeta) -> bool {
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.clone().unwrap_or_default();
    labels.get(THEIR_LABEL).map(String::as_str) == Some("tenants")
        && annotations.contains_key(THEIR_ANNOTATION)
        && labels.contains_key(OUR_LABEL)
}

/// The MODIFIED events of every object of kind `K` in `ns` over `window`, by name.
async fn modifications<K>(client: &Client, ns: &str, window: Duration) -> BTreeMap<String, Vec<String>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.expect("listing");
    let version = list.metadata.resource_version.unwrap_or_default();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let params = WatchParams::default().timeout(window.as_secs() as u32);
    let stream = api.watch(&params, &version).await.expect("watching");
    let mut stream = std::pin::pin!(stream);
    let counted = tokio::time::timeout(window + Duration::from_secs(5), async {
        while let Some(event) = stream.try_next().await.expect("watch event") {
            match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                    let version = o.resource_version().unwrap_or_default();
                    seen.entry(o.name_any()).or_default().push(version);
                }
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(e) => panic!("watch error: {e:?}"),
            }
        }
    })
    .await;
    assert!(counted.is_ok(), "the watch outlived its timeout");
    seen
}

#[tokio::test]
async fn foreign_metadata_is_kept_our_labels_are_restored_and_nothing_is_rewritten_after() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "concurrent").await;
    let (operator, _) = provision(&client, &ns.name).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let mut data_before = BTreeMap::new();
    for suffix in SECRETS {
        let name = format!("{TENANT}-{suffix}");
        data_before.insert(name.clone(), secrets.get(&name).await.expect("secret").data);
        apply_theirs(&secrets, &name, their_patch("Secret", "v1", &name, None)).await;
    }
    // Fields kamaji-rs does not set: the other actor owns them.
    let deployment_spec = json!({ "minReadySeconds": 2 });
    apply_theirs(
        &deployments,
        TENANT,
        their_patch("Deployment", "apps/v1", TENANT, Some(deployment_spec)),
    )
    .await;
    let service_spec = json!({ "sessionAffinity": "ClientIP" });
    apply_theirs(
        &services,
        TENANT,
        their_patch("Service", "v1", TENANT, Some(service_spec)),
    )
    .await;
    // A label kamaji-rs set, removed (as `kubectl label` or a policy engine's mutation would).
    for (kind, name) in [
        ("secret", format!("{TENANT}-ca")),
        ("secret", format!("{TENANT}-admin-kubeconfig")),
        ("deployment", TENANT.to_string()),
        ("service", TENANT.to_string()),
    ] {
        kubectl_ok(&["label", "-n", &ns.name, kind, &name, &format!("{OUR_LABEL}-")]);
    }

    // Ours restored, theirs kept, on every object.
    eventually(
        "our label back beside theirs on every object",
        Duration::from_secs(60),
        || async {
            for suffix in SECRETS {
                let s = secrets.get(&format!("{TENANT}-{suffix}")).await.ok()?;
                carries_both(&s.metadata).then_some(())?;
            }
            let d = deployments.get(TENANT).await.ok()?;
            let s = services.get(TENANT).await.ok()?;
            (carries_both(&d.metadata) && carries_both(&s.metadata)).then_some(())
        },
    )
    .await;
    let d = deployments.get(TENANT).await.expect("deployment");
    assert_eq!(d.spec.min_ready_seconds, Some(2));
    let s = services.get(TENANT).await.expect("service");
    assert_eq!(
        s.spec.as_ref().and_then(|s| s.session_affinity.as_deref()),
        Some("ClientIP")
    );
    for (name, before) in &data_before {
        let now = secrets.get(name).await.expect("secret");
        assert_eq!(&now.data, before, "{name}: its material changed");
        assert_eq!(
            now.labels()[OUR_LABEL],
            name.trim_start_matches(&format!("{TENANT}-")),
            "{name}"
        );
    }

    // No fight: after the restoration's trailing events, two minutes without a write.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let window = Duration::from_secs(120);
    let (secret_writes, deployment_writes, service_writes, tcp_writes) = tokio::join!(
        modifications::<Secret>(&client, &ns.name, window),
        modifications::<Deployment>(&client, &ns.name, window),
        modifications::<Service>(&client, &ns.name, window),
        modifications::<TenantControlPlane>(&client, &ns.name, window),
    );
    let writes: Vec<_> = [secret_writes, deployment_writes, service_writes, tcp_writes]
        .into_iter()
        .flatten()
        .collect();
    println!("writes in the two minutes after the edits settled: {writes:?}");
    assert!(
        writes.is_empty(),
        "objects were rewritten at steady state: {writes:?}\n{}",
        operator.log_text()
    );
    // ... and the other actor's fields are still theirs.
    let d = deployments.get(TENANT).await.expect("deployment");
    let managers: Vec<String> = d
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.iter().any(|m| m == OTHER), "{managers:?}");
}
