//! The operator (a real `kamaji manager` process) SIGKILLed at a random moment of
//! a flow, then started again: provisioning a new tenant, rotating every x509 and
//! kubeconfig Secret of one tenant, and each phase of a CA rotation. One tenant
//! serves every iteration where the flow can repeat; no tenant API server runs
//! (nothing here needs one). The first iteration of each flow runs without a kill
//! and sets the window the kills are drawn from. Two kill at an event instead of a
//! delay: provisioning, right after the watch delivers a randomly drawn one of the
//! new tenant's Secrets; and a CA rotation, the moment the watch delivers the first
//! client certificate moved to the new CA, the rest still to move.

use std::{collections::BTreeMap, time::Duration};

use kamaji::api::labels;
use kube::Client;
use tokio::time::Instant;

use crate::{
    faults::{Plan, Scenario, Window},
    flows::Flow,
    iteration::{Asked, Case, Fault, NoFault, Outcome, run},
    ledger::{Ledger, recorded_secrets},
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

/// The tenant CA's client Secrets that a CA rotation's prepare phase moves to the
/// new CA in one pass, once the control plane trusts it.
const MOVING_CLIENTS: [&str; 4] = [
    "admin-kubeconfig",
    "api-server-kubelet-client-certificate",
    "controller-manager-kubeconfig",
    "scheduler-kubeconfig",
];
/// The version of a moving client that is the moved one, counting the one held when
/// the rotation was asked for and the one re-issued with both CAs' bundle.
const MOVED_VERSION: usize = 3;
/// How long the first client may take to move.
const FIRST_MOVE_WITHIN: Duration = Duration::from_secs(120);

/// SIGKILL of the operator at an event of the flow instead of after a delay.
struct KillAtEvent<'e> {
    kill: Kill<'e>,
    /// The ledger's mark and the moment the work was asked for.
    mark: u64,
    asked_at: Instant,
    /// When the kill landed, after the request.
    landed: Duration,
}

impl<'e> KillAtEvent<'e> {
    fn new(env: &'e mut TenantEnv, asked: &Asked) -> Self {
        Self {
            kill: Kill { env },
            mark: asked.mark(),
            asked_at: asked.at(),
            landed: Duration::ZERO,
        }
    }

    /// The event came: kills now, and returns the tenant as stored.
    async fn now(&mut self, case: &Case<'_>) -> Snapshot {
        self.landed = self.asked_at.elapsed();
        self.kill.inject(case).await
    }
}

/// SIGKILL of the operator the moment the ledger's watch delivers the first moved
/// client ([`MOVED_VERSION`] of one of [`MOVING_CLIENTS`]).
struct KillAsClientsMove<'e> {
    at: KillAtEvent<'e>,
    /// Clients on the new CA once the kill had landed.
    moved: usize,
}

impl Fault for KillAsClientsMove<'_> {
    async fn inject(&mut self, case: &Case<'_>) -> Snapshot {
        let clients: Vec<String> = MOVING_CLIENTS
            .iter()
            .map(|s| format!("{}-{s}", case.tenant))
            .collect();
        let mark = self.at.mark;
        let first = case
            .ledger
            .first_to_reach(&clients, mark, MOVED_VERSION, FIRST_MOVE_WITHIN)
            .await;
        let at_kill = self.at.now(case).await;
        // What was written before the kill may still be on its way through the watch.
        if let Err(lag) = case
            .ledger
            .catch_up(&at_kill, case.tenant, Duration::from_secs(30))
            .await
        {
            println!("  {lag}");
        }
        self.moved = clients
            .iter()
            .filter(|c| case.ledger.versions_since(c, mark) >= MOVED_VERSION)
            .count();
        if first.is_none() {
            println!("  no client moved within {FIRST_MOVE_WITHIN:?}; killed then");
        }
        at_kill
    }

    async fn recover(&mut self) {
        self.at.kill.recover().await;
    }
}

/// How long a new tenant's Secrets may take to be written.
const WRITES_WITHIN: Duration = Duration::from_secs(120);

/// SIGKILL of the operator while it provisions a tenant: the moment the ledger's
/// watch delivers the `after_writes`-th of its Secrets, or `delay` after the
/// request when `after_writes` is 0 (nothing written yet).
struct KillAfterWrites<'e> {
    at: KillAtEvent<'e>,
    after_writes: usize,
    delay: Duration,
}

impl Fault for KillAfterWrites<'_> {
    async fn inject(&mut self, case: &Case<'_>) -> Snapshot {
        let secrets = recorded_secrets(case.tenant);
        if self.after_writes == 0 {
            tokio::time::sleep_until(self.at.asked_at + self.delay).await;
        } else if !case
            .ledger
            .written(&secrets, self.at.mark, self.after_writes, WRITES_WITHIN)
            .await
        {
            println!(
                "  {} Secrets not written within {WRITES_WITHIN:?}; killed then",
                self.after_writes
            );
        }
        self.at.now(case).await
    }

    async fn recover(&mut self) {
        self.at.kill.recover().await;
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
/// A delay drawn from a fault-free run mostly missed the batch (its Secrets are
/// written within a few hundred ms, after seconds of key generation whose length
/// varies), so the kill lands at a point of the batch drawn at random: right after
/// the watch delivers the k-th of the tenant's certificate and kubeconfig Secrets,
/// k in `1..=10` (the 10th: before `datastore-config` and the Deployment), or for
/// k = 0 at a random moment before the first write.
pub async fn provisioning(plan: &Plan, client: &Client) -> Row {
    let mut row = Row::new("operator SIGKILL: provisioning");
    let (ns, mut env, ledger) = environment(client, "fault-provision").await;
    let scratch = env.dir().join("verify");
    let mut delays = plan.rng(Scenario::KillProvisioning);
    let empty = Snapshot::default();
    let mut expected = BTreeMap::new();
    let mut before_first_write = Duration::ZERO;
    for iteration in 0..=plan.iterations {
        let asked = Asked::now(&ledger);
        let tenant = env.create_tenant(&format!("p{iteration}"));
        let recorded = recorded_secrets(&tenant.name).len();
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
            before_first_write = outcome.work_seen.unwrap_or_default();
            expected = outcome.after.keys();
            continue;
        }
        // 0 (before the first write) to every recorded Secret written.
        let mut kill = KillAfterWrites {
            at: KillAtEvent::new(&mut env, &asked),
            after_writes: delays.one_of(recorded + 1),
            delay: delays.within(before_first_write),
        };
        let outcome = run(&case, asked, Duration::ZERO, &mut kill).await;
        println!(
            "  killed after {} of {recorded} Secrets written",
            kill.after_writes
        );
        row.record(iteration, kill.at.landed, &outcome);
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
        "{}: calibration (no fault): work first seen after {:.1?}, converged in {:.1?}; {}",
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

/// One tenant; every iteration rotates its CA, the operator killed in prepare the
/// moment the first client moves to the new CA; completion runs without a fault.
pub async fn ca_clients_move(plan: &Plan, client: &Client) -> Row {
    let mut row = Row::new("operator SIGKILL: CA rotation, as the first client moves");
    let (ns, mut env, ledger, tenant, expected) = provisioned(client, "fault-move", "m").await;
    let scratch = env.dir().join("verify");
    let mut calibrated: [Option<BTreeMap<String, usize>>; 2] = [None, None];
    let mut split = 0;
    // Round 0 starts from a fresh tenant, round 1 is the fault-free calibration.
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
            let mut kill = KillAsClientsMove {
                at: KillAtEvent::new(&mut env, &asked),
                moved: 0,
            };
            ask_ca_phase(&ns.name, &tenant, flow);
            if round <= 1 || flow == Flow::CaComplete {
                let outcome = run(&case, asked, Duration::ZERO, &mut NoFault).await;
                if round == 1 {
                    calibrated[phase] = Some(outcome.versions);
                } else if !outcome.problems.is_empty() || !outcome.lost.is_empty() {
                    row.failed(&format!(
                        "{flow:?} without a fault, round {round}: {:?} lost {:?}",
                        outcome.problems, outcome.lost
                    ));
                }
                continue;
            }
            let outcome = run(&case, asked, Duration::ZERO, &mut kill).await;
            println!(
                "  clients on the new CA at the kill: {} of {}",
                kill.moved,
                MOVING_CLIENTS.len()
            );
            split += usize::from((1..MOVING_CLIENTS.len()).contains(&kill.moved));
            row.record(round - 1, kill.at.landed, &outcome);
        }
    }
    println!(
        "{}: {split} of {} kills landed with some clients moved and some not",
        row.scenario, row.iterations
    );
    row
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
