//! The suite's table: one row per scenario.

use std::{fmt::Write as _, time::Duration};

use crate::iteration::Outcome;

/// One scenario's totals.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// What was injected into which flow.
    pub scenario: String,
    /// Iterations with a fault (the calibration run not counted).
    pub iterations: usize,
    /// Faults that landed with some of the flow's work done and some undone.
    pub mid_batch: usize,
    /// Iterations with a violated invariant (or a scenario that could not run).
    pub failures: usize,
    /// Objects missing after convergence, over all iterations.
    pub lost: usize,
    /// The most work items undone at one fault.
    pub most_undone: usize,
    /// Wall time of the scenario.
    pub took: Duration,
}

impl Row {
    /// An empty row for `scenario`.
    pub fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_string(),
            ..Self::default()
        }
    }

    /// Counts one iteration and prints a line about it.
    pub fn record(&mut self, iteration: usize, delay: Duration, outcome: &Outcome) {
        self.iterations += 1;
        self.mid_batch += usize::from(outcome.mid_batch);
        self.failures += usize::from(!outcome.problems.is_empty() || !outcome.lost.is_empty());
        self.lost += outcome.lost.len();
        self.most_undone = self.most_undone.max(outcome.undone_at_fault.len());
        let verdict = if outcome.problems.is_empty() && outcome.lost.is_empty() {
            "ok".to_string()
        } else {
            format!("FAILED: {:?} lost {:?}", outcome.problems, outcome.lost)
        };
        println!(
            "{} #{iteration}: fault at {delay:?}, {} undone{}: {:?}; converged in {:.1?}; {verdict}",
            self.scenario,
            outcome.undone_at_fault.len(),
            if outcome.mid_batch { " (mid-batch)" } else { "" },
            outcome.undone_at_fault,
            outcome.took,
        );
    }

    /// Counts a failure outside a faulted iteration (a flow run without a fault between them).
    pub fn failed(&mut self, why: &str) {
        self.failures += 1;
        println!("{}: FAILED: {why}", self.scenario);
    }

    /// Counts a scenario that stopped early (a panic in its set-up or a flow).
    pub fn aborted(&mut self, why: &str) {
        self.failures += 1;
        println!("{}: ABORTED: {why}", self.scenario);
    }
}

/// The table, aligned.
pub fn table(rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.scenario.len()).max().unwrap_or(8).max(8);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>10}  {:>15}  {:>8}  {:>12}  {:>12}  {:>8}",
        "SCENARIO", "ITERATIONS", "MID-BATCH KILLS", "FAILURES", "OBJECTS LOST", "MOST UNDONE", "TIME"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<width$}  {:>10}  {:>15}  {:>8}  {:>12}  {:>12}  {:>7}s",
            row.scenario,
            row.iterations,
            row.mid_batch,
            row.failures,
            row.lost,
            row.most_undone,
            row.took.as_secs()
        );
    }
    out
}

/// Writes the run's summary to `KAMAJI_FAULT_REPORT` when it is set; a file that
/// cannot be written is reported, not fatal: the table is on stdout too.
pub fn save(summary: &str) {
    let Some(path) = std::env::var_os("KAMAJI_FAULT_REPORT") else {
        return;
    };
    if let Err(error) = std::fs::write(&path, format!("{summary}\n")) {
        eprintln!(
            "reliability: writing the table to {}: {error}",
            path.to_string_lossy()
        );
    }
}
