//! The management cluster's kube-apiserver, or its etcd, stopped at a random
//! moment of a rotation of every x509 and kubeconfig Secret and started again
//! after a random outage (up to three lease durations, so leaders lose their
//! lease in some iterations and keep it in others), with two operator replicas
//! electing a leader. The operator reconnects, its watches resume (the next
//! iteration's request is only seen through them), the rotation finishes, nothing
//! is lost or issued twice, and there are never two leaders.

use std::{collections::BTreeMap, path::Path, time::Duration};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{Api, Client, api::PostParams};

use crate::{
    faults::{Plan, Scenario},
    flows::Flow,
    iteration::{Asked, Case, Fault, NoFault, Outcome, run},
    leaders::Election,
    ledger::Ledger,
    management::{Management, Stopped},
    operator_kills::rotate_every_secret,
    report::Row,
    support::{client_for, install_crds, tenant::VERSION},
    tenant_state::Snapshot,
};

const NAMESPACE: &str = "fault-restart";
const TENANT: &str = "m";

/// A management component stopped for `outage`, then started again.
struct Restart<'m> {
    management: &'m Management,
    component: &'static str,
    outage: Duration,
    stopped: Option<Stopped>,
}

impl Fault for Restart<'_> {
    async fn inject(&mut self, case: &Case<'_>) -> Snapshot {
        // Read first: once the component is down nothing can be read, and nothing written.
        let at = case.read().await;
        self.stopped = Some(self.management.stop(self.component).await);
        at
    }

    async fn recover(&mut self) {
        tokio::time::sleep(self.outage).await;
        if let Some(stopped) = self.stopped.take() {
            self.management.start_again(stopped);
        }
    }
}

/// `kubectl apply -f -` on the throwaway cluster.
fn apply(kubeconfig: &Path, manifest: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(crate::support::cluster().bin.join("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "-n", NAMESPACE, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("writing the manifest");
    let out = child.wait_with_output().expect("kubectl apply");
    assert!(
        out.status.success(),
        "applying: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespace, a DataStore (its CA in a Secret) and a TenantControlPlane.
async fn tenant(client: &Client, kubeconfig: &Path) {
    install_crds(client).await;
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(NAMESPACE.into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("creating the namespace");
    let params = kamaji::pki::IssueParams::new(time::OffsetDateTime::now_utc());
    let ca = kamaji::pki::Authority::generate("etcd-ca", params.algorithm, params.ca_validity, params.now)
        .expect("a DataStore CA");
    let mut secret = Secret::default();
    secret.metadata.name = Some("etcd-ca".into());
    secret.string_data = Some(BTreeMap::from([
        ("ca.crt".to_string(), ca.certificate_pem().to_string()),
        ("ca.key".to_string(), ca.key_pem().unwrap_or_default().to_string()),
    ]));
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the DataStore CA Secret");
    let reference =
        |key: &str| format!("secretReference: {{name: etcd-ca, namespace: {NAMESPACE}, keyPath: {key}}}");
    apply(
        kubeconfig,
        &format!(
            "apiVersion: kamaji.clastix.io/v1alpha1\nkind: DataStore\nmetadata:\n  name: etcd\nspec:\n  driver: etcd\n  \
             endpoints: [\"127.0.0.1:2379\"]\n  tlsConfig:\n    certificateAuthority:\n      certificate:\n        \
             {}\n      privateKey:\n        {}\n",
            reference("ca.crt"),
            reference("ca.key")
        ),
    );
    apply(
        kubeconfig,
        &format!(
            "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {TENANT}\nspec:\n  \
             dataStore: etcd\n  controlPlane:\n    deployment:\n      replicas: 1\n    service:\n      \
             serviceType: ClusterIP\n  kubernetes:\n    version: {VERSION}\n  networkProfile:\n    \
             address: 127.0.0.1\n    port: 6443\n"
        ),
    );
}

/// Waits (up to 4 minutes) for the tenant to be provisioned; its Secrets' keys.
async fn provisioned(client: &Client) -> Result<BTreeMap<String, Vec<String>>, String> {
    let empty = Snapshot::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let now = Snapshot::read(client, NAMESPACE, TENANT).await;
        if crate::flows::undone(&Flow::Provisioning.items(&empty, &now)).is_empty() {
            return Ok(now.keys());
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the tenant was not provisioned within 240s".into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The scenario for `component` (`kube-apiserver` or `etcd`).
pub async fn restarts(plan: &Plan, component: &'static str) -> Row {
    let scenario = if component == "etcd" {
        Scenario::RestartEtcd
    } else {
        Scenario::RestartApiServer
    };
    let mut row = Row::new(&format!("management {component} restart, 2 replicas"));
    let management = Management::start();
    let client = client_for(&management.kubeconfig).await;
    tenant(&client, &management.kubeconfig).await;
    let election = Election::start(&client, management.kubeconfig.clone(), NAMESPACE);
    let expected = match provisioned(&client).await {
        Ok(expected) => expected,
        Err(why) => {
            row.aborted(&why);
            return row;
        }
    };
    let ledger = Ledger::start(&client, NAMESPACE);
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut delays = plan.rng(scenario);
    let mut window = Duration::ZERO;
    for iteration in 0..=plan.iterations + 1 {
        let before = Snapshot::read(&client, NAMESPACE, TENANT).await;
        let case = Case {
            client: &client,
            namespace: NAMESPACE,
            tenant: TENANT,
            flow: Flow::Rotation,
            before: &before,
            expected: &expected,
            ledger: &ledger,
            scratch: scratch.path(),
            calibrated: None,
        };
        let asked = Asked::once_caught_up(&case).await;
        rotate_every_secret(&management.kubeconfig, NAMESPACE, TENANT);
        // The first iteration calibrates; the last proves the watches resumed after the last outage.
        if iteration == 0 || iteration == plan.iterations + 1 {
            let mut outcome = run(&case, asked, Duration::ZERO, &mut NoFault).await;
            outcome.problems.extend(election.take_violations());
            window = window.max(outcome.took);
            report_unfaulted(&mut row, iteration, &outcome);
            continue;
        }
        let delay = delays.within(window);
        let mut restart = Restart {
            management: &management,
            component,
            outage: delays.between(Duration::from_millis(500), Duration::from_secs(12)),
            stopped: None,
        };
        println!("  outage of {component}: {:?}", restart.outage);
        let mut outcome = run(&case, asked, delay, &mut restart).await;
        outcome.problems.extend(election.take_violations());
        row.record(iteration, delay, &outcome);
    }
    println!(
        "{}: replicas started again after exiting: {}",
        row.scenario,
        election.restarts()
    );
    row
}

/// The calibration and the closing run have no fault, but their invariants count.
fn report_unfaulted(row: &mut Row, iteration: usize, outcome: &Outcome) {
    let what = if iteration == 0 {
        "calibration"
    } else {
        "after the last outage"
    };
    if outcome.problems.is_empty() && outcome.lost.is_empty() {
        println!(
            "{}: {what} (no fault) converged in {:.1?}",
            row.scenario, outcome.took
        );
    } else {
        row.aborted(&format!("{what}: {:?} lost {:?}", outcome.problems, outcome.lost));
    }
}
