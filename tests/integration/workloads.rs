//! The local cluster runs workloads for real: kwok's fake nodes make a
//! Deployment's pods Running and Ready, which the operator's status relies on.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, api::PostParams};

use crate::support::{TestNamespace, client, eventually};

#[tokio::test]
async fn a_plain_deployment_reaches_ready_replicas() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "workloads").await;
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "pause" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "pause" } },
            "template": {
                "metadata": { "labels": { "app": "pause" } },
                "spec": { "containers": [{ "name": "pause", "image": "registry.k8s.io/pause:3.10" }] }
            }
        }
    }))
    .expect("valid Deployment");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("creating the Deployment");

    let ready = eventually("3 ready replicas", Duration::from_secs(90), || async {
        let d = deployments.get("pause").await.ok()?;
        let ready = d.status?.ready_replicas?;
        (ready == 3).then_some(ready)
    })
    .await;
    assert_eq!(ready, 3);
}
