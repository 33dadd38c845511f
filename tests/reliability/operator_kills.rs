//! The operator (a real `kamaji manager` process) SIGKILLed at a random moment of
//! a flow, then started again: provisioning a new tenant, rotating every x509 and
//! kubeconfig Secret of one tenant, and each phase of a CA rotation. One tenant
//! serves every iteration where the flow can repeat; no tenant API server runs
//! (nothing here needs one). The first iteration of each flow runs without a kill
//! and sets the window the kills are drawn from.

use std::{collections::BTreeMap, time::Duration};

use kamaji::api::labels;
use kube::Client;

use crate::{
    faults::{Plan, Scenario, Window},
    flows::Flow,
    iteration::{Asked, Case, Fault, NoFault, Outcome, run},
    ledger::Ledger,
    report::Row,
    support::{
        TestNamespace, kubectl, kubectl_ok,
        tenant::{Tenant, TenantEnv},
    },
    tenant_state::Snapshot,
};

/// SIGKILL of the operator; the next one starts with the same flags once the
/// state at the kill has been read.
struct Kill<'e> {
    env: &'e mut TenantEnv,
}

impl Fault for Kill<'_> {
    async fn inject(&mut self, case: &Case<'_>) -> Snapshot {
        self.env.operator.kill_in_place();
        case.read().await
    }

    async fn recover(&mut self) {
        self.env.restart_operator();
    }
}

/// A namespace, a DataStore and the operator, without the tenant side.
async fn environment(client: &Client, prefix: &str) -> (TestNamespace, TenantEnv, Ledger) {
    let ns = TestNamespace::create(client, prefix).await;
    let env = TenantEnv::start_with(client, &ns.name, &["--tenant-cluster-setup=false"]).await;
    let ledger = Ledger::start(client, &ns.name);
    (ns, env, ledger)
}

/// `kubectl annotate secret ... certs.kamaji.clastix.io/rotate=""` on every x509 and
/// kubeconfig Secret of the tenant, as the runbook does.
pub fn rotate_every_secret(kubeconfig: &std::path::Path, namespace: &str, tenant: &str) {
    let selector = format!(
        "{} in (x509,kubeconfig),kamaji.clastix.io/name={tenant}",
        labels::CERTIFICATE_LIFECYCLE
    );
    let out = crate::support::kubectl_with(
        kubeconfig,
        &[
            "annotate",
            "secret",
            "-n",
            namespace,
            "-l",
            &selector,
            &format!("{}=", labels::ROTATE),
            "--overwrite",
        ],
    );
    assert!(
        out.status.success(),
        "annotating the Secrets: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new tenant per iteration, killed while it is provisioned, deleted afterwards.
pub async fn provisioning(plan: &Plan, client: &Client) -> Row {
    let mut row = Row::new("operator SIGKILL: provisioning");
    let (ns, mut env, ledger) = environment(client, "fault-provision").await;
    let scratch = env.dir().join("verify");
    let mut delays = plan.rng(Scenario::KillProvisioning);
    let empty = Snapshot::default();
    let mut expected = BTreeMap::new();
    let mut window = Window::default();
    for iteration in 0..=plan.iterations {
        let asked = Asked::now(&ledger);
        let tenant = env.create_tenant(&format!("p{iteration}"));
        let case = Case {
            client,
            namespace: &ns.name,
            tenant: &tenant.name,
            flow: Flow::Provisioning,
            before: &empty,
            expected: &expected,
            ledger: &ledger,
            scratch: &scratch,
            calibrated: None,
        };
        if iteration == 0 {
            let outcome = run(&case, asked, Duration::ZERO, &mut NoFault).await;
            report_calibration(&row, &outcome);
            window = Window::of(outcome.work_seen, outcome.took);
            expected = outcome.after.keys();
            continue;
        }
        let delay = delays.in_work(window);
        let outcome = run(&case, asked, delay, &mut Kill { env: &mut env }).await;
        row.record(iteration, delay, &outcome);
        delete_tenant(&ns.name, &tenant);
    }
    row
}

/// Deletes a tenant and waits until it is gone (its finalizer done).
fn delete_tenant(namespace: &str, tenant: &Tenant) {
    let out = kubectl(&[
        "delete",
        "tcp",
        "-n",
        namespace,
        &tenant.name,
        "--wait=true",
        "--timeout=120s",
    ]);
    if !out.status.success() {
        println!(
            "deleting {} failed: {}",
            tenant.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn report_calibration(row: &Row, outcome: &Outcome) {
    println!(
        "{}: calibration (no fault): work first seen after {:.1?}, converged in {:.1?}: kills land in between; {}",
        row.scenario,
        outcome.work_seen.unwrap_or_default(),
        outcome.took,
        if outcome.problems.is_empty() {
            "invariants hold".to_string()
        } else {
            format!("PROBLEMS {:?}", outcome.problems)
        }
    );
}

/// A provisioned tenant of its own environment, and what every later state must hold.
async fn provisioned(
    client: &Client,
    prefix: &str,
    name: &str,
) -> (
    TestNamespace,
    TenantEnv,
    Ledger,
    Tenant,
    BTreeMap<String, Vec<String>>,
) {
    let (ns, env, ledger) = environment(client, prefix).await;
    let tenant = env.create_tenant(name);
    env.wait_status(
        client,
        &tenant,
        kamaji::api::tenant_control_plane::KubernetesVersionStatus::Ready,
    )
    .await;
    crate::support::wait_material_rolled_out(client, &ns.name, &tenant.name).await;
    let expected = Snapshot::read(client, &ns.name, &tenant.name).await.keys();
    (ns, env, ledger, tenant, expected)
}

/// One tenant; every iteration rotates all of its x509 and kubeconfig Secrets.
pub async fn rotation(plan: &Plan, client: &Client) -> Row {
    let mut row = Row::new("operator SIGKILL: rotation of every Secret");
    let (ns, mut env, ledger, tenant, expected) = provisioned(client, "fault-rotate", "r").await;
    let scratch = env.dir().join("verify");
    let mut delays = plan.rng(Scenario::KillRotation);
    let kubeconfig = crate::support::cluster().kubeconfig.clone();
    let mut window = Window::default();
    let mut previous: Option<Snapshot> = None;
    for iteration in 0..=plan.iterations {
        let before = Snapshot::read(client, &ns.name, &tenant.name).await;
        let case = Case {
            client,
            namespace: &ns.name,
            tenant: &tenant.name,
            flow: Flow::Rotation,
            before: &before,
            expected: &expected,
            ledger: &ledger,
            scratch: &scratch,
            calibrated: None,
        };
        let asked = Asked::once_caught_up(&case).await;
        rotate_every_secret(&kubeconfig, &ns.name, &tenant.name);
        let (delay, mut outcome) = if iteration == 0 {
            (
                Duration::ZERO,
                run(&case, asked, Duration::ZERO, &mut NoFault).await,
            )
        } else {
            let delay = delays.in_work(window);
            (delay, run(&case, asked, delay, &mut Kill { env: &mut env }).await)
        };
        quiet_since(previous.as_ref(), &before, &mut outcome);
        if iteration == 0 {
            report_calibration(&row, &outcome);
            window = Window::of(outcome.work_seen, outcome.took);
        } else {
            row.record(iteration, delay, &outcome);
        }
        previous = Some(outcome.after);
    }
    row
}

/// Nothing rolled between the last convergence and the next request.
fn quiet_since(previous: Option<&Snapshot>, before: &Snapshot, outcome: &mut Outcome) {
    if let Some(previous) = previous
        && previous.revision() != before.revision()
    {
        outcome.problems.push(format!(
            "the Deployment rolled after convergence (revision {} -> {})",
            previous.revision(),
            before.revision()
        ));
    }
}

/// One tenant; every iteration rotates its CA, killed once in prepare and once in complete.
pub async fn ca_rotation(plan: &Plan, client: &Client) -> Vec<Row> {
    let mut rows = [
        Row::new("operator SIGKILL: CA rotation, prepare"),
        Row::new("operator SIGKILL: CA rotation, complete"),
    ];
    let (ns, mut env, ledger, tenant, expected) = provisioned(client, "fault-ca", "c").await;
    let scratch = env.dir().join("verify");
    let mut delays = plan.rng(Scenario::KillCaRotation);
    let mut windows = [Window::default(); 2];
    let mut calibrated: [Option<BTreeMap<String, usize>>; 2] = [None, None];
    // Round 0 starts from a fresh tenant, every later one from a completed rotation:
    // round 1 is the fault-free calibration the killed rounds are compared with.
    for round in 0..=plan.iterations + 1 {
        for (phase, flow) in [Flow::CaPrepare, Flow::CaComplete].into_iter().enumerate() {
            let before = Snapshot::read(client, &ns.name, &tenant.name).await;
            let case = Case {
                client,
                namespace: &ns.name,
                tenant: &tenant.name,
                flow,
                before: &before,
                expected: &expected,
                ledger: &ledger,
                scratch: &scratch,
                calibrated: calibrated[phase].as_ref(),
            };
            let asked = Asked::once_caught_up(&case).await;
            ask_ca_phase(&ns.name, &tenant, flow);
            let row = &mut rows[phase];
            if round <= 1 {
                let outcome = run(&case, asked, Duration::ZERO, &mut NoFault).await;
                if round == 1 {
                    report_calibration(row, &outcome);
                    println!("  versions issued by the fault-free run: {:?}", outcome.versions);
                    windows[phase] = Window::of(outcome.work_seen, outcome.took);
                    calibrated[phase] = Some(outcome.versions);
                } else if !outcome.problems.is_empty() {
                    row.aborted(&format!("the first, fault-free rotation: {:?}", outcome.problems));
                }
                continue;
            }
            let delay = delays.in_work(windows[phase]);
            let outcome = run(&case, asked, delay, &mut Kill { env: &mut env }).await;
            row.record(round - 1, delay, &outcome);
        }
    }
    rows.to_vec()
}

/// Prepare: the rotate annotation on `<tcp>-ca`; complete: the completion annotation on the TCP.
fn ask_ca_phase(namespace: &str, tenant: &Tenant, flow: Flow) {
    match flow {
        Flow::CaPrepare => {
            kubectl_ok(&[
                "annotate",
                "secret",
                "-n",
                namespace,
                &tenant.secret("ca"),
                &format!("{}=", labels::ROTATE),
                "--overwrite",
            ]);
        }
        _ => {
            kubectl_ok(&[
                "annotate",
                "tcp",
                "-n",
                namespace,
                &tenant.name,
                &format!("{}=", labels::COMPLETE_CA_ROTATION),
                "--overwrite",
            ]);
        }
    }
}
