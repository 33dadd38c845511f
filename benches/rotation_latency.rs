//! Annotate-to-stamped latency on the real local cluster: how long after
//! `kubectl annotate secret <tcp>-front-proxy-client-certificate certs.kamaji.clastix.io/rotate=""`
//! the operator has re-issued the Secret and written its rotation time, over 10
//! tries (each from a settled tenant). Prints a table and the p50.
//!
//! `cargo bench --bench rotation_latency` (starts or reuses the local cluster);
//! `KAMAJI_BIN=<path to another kamaji build>` measures that build instead.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kamaji::api::{TenantControlPlane, tenant_control_plane::KubernetesVersionStatus};
use kube::{
    Api,
    api::{Patch, PatchParams},
};

const TENANT: &str = "bench";
const SECRET: &str = "bench-front-proxy-client-certificate";
const TRIES: usize = 10;

fn rotate_value(secret: &Secret) -> Option<String> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get("certs.kamaji.clastix.io/rotate")
        .cloned()
}

async fn ready(tcps: &Api<TenantControlPlane>) -> bool {
    tcps.get(TENANT)
        .await
        .ok()
        .and_then(|t| t.status)
        .and_then(|s| s.kubernetes_resources)
        .and_then(|r| r.version)
        .and_then(|v| v.status)
        == Some(KubernetesVersionStatus::Ready)
}

#[tokio::main]
async fn main() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::TestNamespace::create(&client, "bench-latency").await;
    let (datastore, _) = support::etcd_datastore(&client, &ns.name, &["127.0.0.1:2379"]).await;
    let operator = support::Operator::start(&ns.name, &[]);
    let manifest = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {TENANT}\nspec:\n  \
         dataStore: {datastore}\n  kubernetes:\n    version: v1.33.0\n"
    );
    let applied = support::kubectl_apply(&ns.name, &manifest);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    support::eventually("the tenant to be Ready", Duration::from_secs(120), || async {
        ready(&tcps).await.then_some(())
    })
    .await;

    let mut samples = Vec::new();
    println!("{:>4}  {:>12}", "try", "stamped (ms)");
    for attempt in 1..=TRIES {
        support::wait_material_rolled_out(&client, &ns.name, TENANT).await;
        let before = secrets
            .get(SECRET)
            .await
            .expect("the Secret")
            .metadata
            .resource_version;
        let patch = serde_json::json!({"metadata": {"annotations": {"certs.kamaji.clastix.io/rotate": ""}}});
        let started = Instant::now();
        secrets
            .patch(SECRET, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotating");
        loop {
            let secret = secrets.get(SECRET).await.expect("the Secret");
            if secret.metadata.resource_version != before
                && rotate_value(&secret).is_some_and(|v| !v.is_empty())
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "not stamped within 60 s\n{}",
                operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        samples.push(elapsed);
        println!("{attempt:>4}  {:>12.0}", elapsed.as_secs_f64() * 1000.0);
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "annotate-to-stamped over {TRIES} tries: p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        ms(samples[TRIES / 2]),
        ms(samples[TRIES * 9 / 10 - 1]),
        ms(samples[TRIES - 1])
    );
}
