//! What a run injects: the seed every random delay is drawn from (printed, and
//! read back from `KAMAJI_FAULT_SEED` so a failure replays), how many iterations
//! each scenario runs (`KAMAJI_FAULT_ITERATIONS`), and which scenarios
//! (`KAMAJI_FAULT_SCENARIOS`, comma-separated names; all by default).

use std::{fmt, time::Duration};

use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Iterations per scenario when `KAMAJI_FAULT_ITERATIONS` is not set.
pub const DEFAULT_ITERATIONS: usize = 30;

/// The scenarios, in the order they run. The name selects one in `KAMAJI_FAULT_SCENARIOS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// The operator SIGKILLed while it provisions a new tenant.
    KillProvisioning,
    /// The operator SIGKILLed while it rotates every x509 and kubeconfig Secret of a tenant.
    KillRotation,
    /// The operator SIGKILLed in each phase of a CA rotation (two rows: prepare, complete).
    KillCaRotation,
    /// The operator SIGKILLed the moment the first client certificate of a CA
    /// rotation's prepare phase moves to the new CA (the others still to move).
    KillCaClientsMove,
    /// The management kube-apiserver stopped and restarted during a rotation, two replicas electing.
    RestartApiServer,
    /// The management etcd stopped and restarted during a rotation, two replicas electing.
    RestartEtcd,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 6] = [
        Scenario::KillProvisioning,
        Scenario::KillRotation,
        Scenario::KillCaRotation,
        Scenario::KillCaClientsMove,
        Scenario::RestartApiServer,
        Scenario::RestartEtcd,
    ];

    /// Its name in `KAMAJI_FAULT_SCENARIOS`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::KillProvisioning => "kill-provisioning",
            Scenario::KillRotation => "kill-rotation",
            Scenario::KillCaRotation => "kill-ca-rotation",
            Scenario::KillCaClientsMove => "kill-ca-clients-move",
            Scenario::RestartApiServer => "restart-apiserver",
            Scenario::RestartEtcd => "restart-etcd",
        }
    }
}

/// The run's parameters.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Every random choice of the run derives from it.
    pub seed: u64,
    /// Iterations per scenario (each with a fault).
    pub iterations: usize,
    /// The scenarios to run.
    pub scenarios: Vec<Scenario>,
}

impl Plan {
    /// From the environment; panics on a value that does not parse (a typo must not
    /// silently run another suite).
    pub fn from_env() -> Self {
        let seed = match std::env::var("KAMAJI_FAULT_SEED") {
            Ok(value) => value
                .parse()
                .unwrap_or_else(|_| panic!("KAMAJI_FAULT_SEED={value:?} is not a u64")),
            Err(_) => rand::random(),
        };
        let iterations = match std::env::var("KAMAJI_FAULT_ITERATIONS") {
            Ok(value) => value
                .parse()
                .unwrap_or_else(|_| panic!("KAMAJI_FAULT_ITERATIONS={value:?} is not a count")),
            Err(_) => DEFAULT_ITERATIONS,
        };
        let scenarios = match std::env::var("KAMAJI_FAULT_SCENARIOS") {
            Ok(list) => list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|name| {
                    Scenario::ALL
                        .into_iter()
                        .find(|s| s.name() == name)
                        .unwrap_or_else(|| panic!("unknown scenario {name:?} in KAMAJI_FAULT_SCENARIOS"))
                })
                .collect(),
            Err(_) => Scenario::ALL.to_vec(),
        };
        Self {
            seed,
            iterations,
            scenarios,
        }
    }

    /// The random source of one scenario: the same seed gives the same delays to a
    /// scenario whether it runs alone or with the others.
    pub fn rng(&self, scenario: Scenario) -> Delays {
        let salt = scenario.name().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Delays(StdRng::seed_from_u64(self.seed ^ salt))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.scenarios.iter().map(|s| s.name()).collect();
        write!(
            f,
            "fault injection: seed {seed}, {iterations} iterations per scenario, scenarios {names}\n\
             replay: KAMAJI_FAULT_SEED={seed} KAMAJI_FAULT_ITERATIONS={iterations} \
             KAMAJI_FAULT_SCENARIOS={names} make reliability",
            seed = self.seed,
            iterations = self.iterations,
            names = names.join(","),
        )
    }
}

/// Random delays of one scenario.
pub struct Delays(StdRng);

impl Delays {
    /// A delay in `[0, window)` (zero for an empty window).
    pub fn within(&mut self, window: Duration) -> Duration {
        let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.0.random_range(0..millis))
    }

    /// A delay within the window where a fault-free run of the flow worked: from a
    /// poll (250 ms) before its first work was seen to its convergence.
    pub fn in_work(&mut self, window: Window) -> Duration {
        self.between(window.0, window.1)
    }

    /// One of `count` choices, `0..count` (0 when there is none).
    pub fn one_of(&mut self, count: usize) -> usize {
        if count == 0 {
            return 0;
        }
        self.0.random_range(0..count)
    }

    /// A delay in `[low, high)`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        low + self.within(high.saturating_sub(low))
    }
}

/// Where a flow's work happens, after the request: (start, end).
#[derive(Clone, Copy, Debug, Default)]
pub struct Window(pub Duration, pub Duration);

impl Window {
    /// From a fault-free run: work first seen `seen` after the request, done `took` after it.
    pub fn of(seen: Option<Duration>, took: Duration) -> Self {
        let start = seen.map_or(Duration::ZERO, |s| s.saturating_sub(Duration::from_millis(500)));
        Self(start.min(took), took)
    }
}
