//! The reliability suite (issue 12): faults injected where they hurt, on real
//! processes. The operator SIGKILLed at random moments of provisioning, of a
//! rotation of every Secret and of each CA rotation phase, and at the moment
//! client certificates start moving to a new CA; the management
//! kube-apiserver and its etcd stopped and restarted mid-rotation with two
//! replicas electing a leader. Each iteration records what was still undone at
//! the fault, and checks that nothing was lost, replaced unasked or done twice.
//!
//! `make reliability` runs it with 30 iterations a scenario and prints the table;
//! `KAMAJI_FAULT_SEED`, `KAMAJI_FAULT_ITERATIONS` and `KAMAJI_FAULT_SCENARIOS`
//! replay or narrow a run (see faults.rs). With `KAMAJI_FAULT_REPORT` set the
//! table is also written to that file, so `make test` (whose output libtest
//! captures) can print it.

#[path = "../support/mod.rs"]
mod support;

mod faults;
mod flows;
mod iteration;
mod leaders;
mod ledger;
mod management;
mod management_restarts;
mod operator_kills;
mod report;
mod tenant_state;

use std::{panic::AssertUnwindSafe, time::Instant};

use futures::FutureExt;

use crate::{
    faults::{Plan, Scenario},
    report::Row,
};

/// Runs one scenario; a panic (a set-up that failed, a timeout) becomes a failure
/// in its row instead of ending the suite.
async fn run(plan: &Plan, scenario: Scenario) -> Vec<Row> {
    let started = Instant::now();
    let work = async {
        let client = support::client().await;
        match scenario {
            Scenario::KillProvisioning => vec![operator_kills::provisioning(plan, &client).await],
            Scenario::KillRotation => vec![operator_kills::rotation(plan, &client).await],
            Scenario::KillCaRotation => operator_kills::ca_rotation(plan, &client).await,
            Scenario::KillCaClientsMove => vec![operator_kills::ca_clients_move(plan, &client).await],
            Scenario::RestartApiServer => vec![management_restarts::restarts(plan, "kube-apiserver").await],
            Scenario::RestartEtcd => vec![management_restarts::restarts(plan, "etcd").await],
        }
    };
    let mut rows = match AssertUnwindSafe(work).catch_unwind().await {
        Ok(rows) => rows,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let mut row = Row::new(scenario.name());
            row.aborted(&why);
            vec![row]
        }
    };
    let share = started.elapsed() / u32::try_from(rows.len()).unwrap_or(1);
    for row in &mut rows {
        row.took = share;
    }
    rows
}

/// From this many iterations on, every scenario must have landed a fault mid-batch.
const MID_BATCH_REQUIRED_FROM: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_injected_mid_flow_lose_nothing_replace_no_key_unasked_and_do_nothing_twice() {
    let plan = Plan::from_env();
    println!("{plan}");
    let mut rows = Vec::new();
    for scenario in plan.scenarios.clone() {
        rows.extend(run(&plan, scenario).await);
    }
    let summary = format!("{plan}\n\n{}", report::table(&rows));
    println!("\n{summary}");
    report::save(&summary);
    let failures: usize = rows.iter().map(|r| r.failures).sum();
    let lost: usize = rows.iter().map(|r| r.lost).sum();
    assert_eq!(
        (failures, lost),
        (0, 0),
        "failures and objects lost (seed {})",
        plan.seed
    );
    // A short run (CI's) may by chance land every fault in a quiet moment; a full
    // one must show that faults hit the middle of the work.
    for row in rows.iter().filter(|_| plan.iterations >= MID_BATCH_REQUIRED_FROM) {
        assert!(
            row.mid_batch > 0,
            "{}: no fault landed mid-batch in {} iterations",
            row.scenario,
            row.iterations
        );
    }
}
