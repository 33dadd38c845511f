//! One iteration of a flow with a fault: ask for the work, inject the fault at a
//! delay, read what was still undone at that moment, end the fault, wait for the
//! flow to converge, and check the invariants. A violated invariant is recorded,
//! not panicked on, so the run goes on and the table shows it.

use std::{collections::BTreeMap, path::Path, time::Duration};

use kube::Client;
use tokio::time::Instant;

use crate::{
    flows::{Flow, undone},
    ledger::Ledger,
    tenant_state::{KUBECONFIGS, LEAVES, SECRETS, Snapshot, lost, violations},
};

/// How long a flow may take to converge after its fault ended.
const CONVERGE_WITHIN: Duration = Duration::from_secs(240);

/// A fault to inject into a flow.
pub(crate) trait Fault {
    /// Injects it and returns the tenant as stored at that moment.
    async fn inject(&mut self, case: &Case<'_>) -> Snapshot;
    /// Ends it (restarts what it stopped).
    async fn recover(&mut self);
}

/// No fault: the calibration iteration.
pub struct NoFault;

impl Fault for NoFault {
    async fn inject(&mut self, case: &Case<'_>) -> Snapshot {
        case.read().await
    }
    async fn recover(&mut self) {}
}

/// The tenant a flow runs on and what it is checked against.
pub struct Case<'a> {
    /// A client of the management cluster.
    pub client: &'a Client,
    /// The tenant's namespace.
    pub namespace: &'a str,
    /// The tenant's name.
    pub tenant: &'a str,
    /// The flow.
    pub flow: Flow,
    /// The tenant when the flow was asked for.
    pub before: &'a Snapshot,
    /// Secret → data keys every converged tenant holds.
    pub expected: &'a BTreeMap<String, Vec<String>>,
    /// The watch of the namespace's Secrets.
    pub ledger: &'a Ledger,
    /// Scratch space for openssl.
    pub scratch: &'a Path,
    /// Secret → versions a fault-free run of the flow from the same starting point
    /// issued (the CA phases re-write some Secrets in steps); `None`: the flow's
    /// own table ([`allowed_versions`]).
    pub calibrated: Option<&'a BTreeMap<String, usize>>,
}

impl Case<'_> {
    /// The tenant as stored now.
    pub async fn read(&self) -> Snapshot {
        Snapshot::read(self.client, self.namespace, self.tenant).await
    }
}

/// What an iteration found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Work items still undone when the fault landed.
    pub undone_at_fault: Vec<String>,
    /// Some work was done and some undone when the fault landed.
    pub mid_batch: bool,
    /// Violated invariants.
    pub problems: Vec<String>,
    /// Objects (Secrets, data keys, the Deployment) missing afterwards.
    pub lost: Vec<String>,
    /// From asking for the work to convergence.
    pub took: Duration,
    /// From asking for the work to the first poll that saw some of it done.
    pub work_seen: Option<Duration>,
    /// The tenant once converged (or when it gave up).
    pub after: Snapshot,
    /// Secret → how many versions it issued during the flow.
    pub versions: BTreeMap<String, usize>,
}

/// How long the ledger's watch may take to deliver what is stored (it may be
/// reconnecting after an outage, with its backoff).
const LEDGER_CATCH_UP: Duration = Duration::from_secs(60);

/// The moment the work was asked for: taken just before asking.
#[derive(Clone, Debug)]
pub struct Asked {
    mark: u64,
    at: Instant,
    /// The ledger had not caught up with what was stored: its counts would be wrong.
    lagging: Option<String>,
}

impl Asked {
    /// Now, in `ledger`, for a flow that starts from nothing stored.
    pub fn now(ledger: &Ledger) -> Self {
        Self {
            mark: ledger.mark(),
            at: Instant::now(),
            lagging: None,
        }
    }

    /// When the work was asked for.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// Its point in the ledger ([`Ledger::mark`]).
    pub fn mark(&self) -> u64 {
        self.mark
    }

    /// Now, in the ledger of `case`, once it has delivered what `case.before` holds.
    pub async fn once_caught_up(case: &Case<'_>) -> Self {
        let caught_up = case
            .ledger
            .catch_up(case.before, case.tenant, LEDGER_CATCH_UP)
            .await;
        Self {
            lagging: caught_up.err(),
            ..Self::now(case.ledger)
        }
    }
}

/// After the work was `asked` for: the fault `delay` later, then convergence and
/// the invariants.
pub(crate) async fn run(case: &Case<'_>, asked: Asked, delay: Duration, fault: &mut impl Fault) -> Outcome {
    let Asked {
        mark,
        at: started,
        lagging,
    } = asked;
    tokio::time::sleep_until(started + delay).await;
    let at_fault = fault.inject(case).await;
    let items = case.flow.items(case.before, &at_fault);
    let undone_at_fault = undone(&items);
    // Mid-batch: some of the work done (a status still Ready from before is no work), some not.
    let work_done = items
        .iter()
        .any(|(what, done)| *done && what != crate::flows::SETTLED);
    let mid_batch = !undone_at_fault.is_empty() && work_done;
    fault.recover().await;
    let (after, mut problems, work_seen) = converge(case).await;
    let took = started.elapsed();
    let work_seen = work_seen.map(|at| at.saturating_duration_since(started));
    if problems.is_empty() {
        problems.extend(violations(&after, case.scratch));
        problems.extend(key_pairs(case, &at_fault, &after));
        problems.extend(lagging);
        match case.ledger.catch_up(&after, case.tenant, LEDGER_CATCH_UP).await {
            Ok(()) => problems.extend(done_twice(case, mark)),
            Err(lag) => problems.push(lag),
        }
        let rollouts = after.revision() - case.before.revision();
        if rollouts != case.flow.rollouts() {
            problems.push(format!(
                "{rollouts} rollout(s) (revision {} -> {}), expected {}",
                case.before.revision(),
                after.revision(),
                case.flow.rollouts()
            ));
        }
    }
    let versions = SECRETS
        .iter()
        .map(|suffix| {
            let name = format!("{}-{suffix}", case.tenant);
            let seen = case.ledger.versions_since(&name, mark);
            (name, seen)
        })
        .collect();
    Outcome {
        undone_at_fault,
        mid_batch,
        problems,
        lost: lost(case.expected, &after),
        took,
        work_seen,
        after,
        versions,
    }
}

/// Waits until every work item of the flow is done.
/// Also returns when some of the work was first seen done.
async fn converge(case: &Case<'_>) -> (Snapshot, Vec<String>, Option<Instant>) {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    let mut work_seen = None;
    loop {
        let now = case.read().await;
        let items = case.flow.items(case.before, &now);
        if work_seen.is_none()
            && items
                .iter()
                .any(|(what, done)| *done && what != crate::flows::SETTLED)
        {
            work_seen = Some(Instant::now());
        }
        let left = undone(&items);
        if left.is_empty() {
            return (now, Vec::new(), work_seen);
        }
        if Instant::now() >= deadline {
            let problem = format!("not converged within {CONVERGE_WITHIN:?}: still undone {left:?}");
            return (now, vec![problem], work_seen);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Reads one key pair's fingerprint from a snapshot.
type KeyPairOf = fn(&Snapshot) -> Option<String>;

/// No CA or service-account key pair replaced without a request, and exactly one
/// new tenant CA when a CA rotation was asked for (the one stored at the fault, if
/// it was stored by then).
fn key_pairs(case: &Case<'_>, at_fault: &Snapshot, after: &Snapshot) -> Vec<String> {
    let before = case.before;
    let mut found = Vec::new();
    let pairs: [(&str, KeyPairOf); 3] = [
        ("the tenant CA", Snapshot::signing_ca),
        ("the front-proxy CA", Snapshot::front_proxy_ca),
        ("the service-account key pair", Snapshot::service_account_key),
    ];
    for (index, (what, of)) in pairs.into_iter().enumerate() {
        let rotated = index == 0 && case.flow == Flow::CaPrepare;
        let (was, then, now) = (of(before), of(at_fault), of(after));
        let expected = match (&was, rotated) {
            // Created by the flow: the one stored at the fault, if any, is kept.
            (None, _) => then.clone().or_else(|| now.clone()),
            (Some(_), false) => was.clone(),
            // Replaced once: by the one already stored at the fault, if any.
            (Some(old), true) => then.clone().filter(|t| t != old).or_else(|| now.clone()),
        };
        if now.is_none() || now != expected {
            found.push(format!(
                "{what} is {now:?}, expected {expected:?} (before {was:?}, at the fault {then:?})"
            ));
        }
        if rotated && now == was {
            found.push(format!("{what} was not replaced by the requested rotation"));
        }
    }
    found
}

/// How many versions each Secret may issue during the flow (the one it held before
/// included): one new version per Secret asked for, none for the others. `None` for
/// the CA phases, which re-write some Secrets in steps (a kubeconfig's client
/// certificate in both phases): they are compared with a fault-free run instead.
fn allowed_versions(flow: Flow, suffix: &str) -> Option<usize> {
    let leaf_or_kubeconfig = LEAVES.iter().any(|(s, _, _)| *s == suffix) || KUBECONFIGS.contains(&suffix);
    match flow {
        Flow::Provisioning => Some(1),
        Flow::Rotation => Some(if leaf_or_kubeconfig { 2 } else { 1 }),
        Flow::CaPrepare | Flow::CaComplete => None,
    }
}

/// Nothing issued twice: a Secret with more versions than the flow allows.
fn done_twice(case: &Case<'_>, mark: u64) -> Vec<String> {
    SECRETS
        .iter()
        .filter_map(|suffix| {
            let name = format!("{}-{suffix}", case.tenant);
            let allowed = match case.calibrated {
                Some(calibrated) => *calibrated.get(&name)?,
                None => allowed_versions(case.flow, suffix)?,
            };
            let seen = case.ledger.versions_since(&name, mark);
            (seen > allowed)
                .then(|| format!("{name} issued {seen} versions during the flow, allowed {allowed}"))
        })
        .collect()
}
