//! Retries of failed reconciles: exponential backoff with jitter per object
//! (backon's, the crate kube-runtime itself uses), and the last error of each
//! object, so a failure that repeats is reported once, not on every retry.
//!
//! Only retry pacing lives here: losing it on a restart restarts the backoff and
//! reports the error once more, nothing else.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// First retry of a failed reconcile.
pub const MIN_DELAY: Duration = Duration::from_secs(2);
/// Longest pause between two retries.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

struct Failing {
    backoff: ExponentialBackoff,
    last_error: String,
}

/// Backoff and last error of every failing object, by `(controller, namespace, name)`.
#[derive(Default)]
pub struct Retries {
    failing: Mutex<HashMap<(&'static str, String, String), Failing>>,
}

/// What to do after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Pause before the next attempt.
    pub after: Duration,
    /// The error differs from the previous failure of the object (or is its first):
    /// report it.
    pub report: bool,
}

fn builder() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

impl Retries {
    /// Records a failure of `name` and says when to retry and whether to report it.
    pub fn failed(&self, controller: &'static str, namespace: &str, name: &str, error: &str) -> Retry {
        let mut failing = self.lock();
        let entry = failing
            .entry((controller, namespace.to_string(), name.to_string()))
            .or_insert_with(|| Failing {
                backoff: builder().build(),
                last_error: String::new(),
            });
        let report = entry.last_error != error;
        entry.last_error = error.to_string();
        Retry {
            after: entry.backoff.next().unwrap_or(MAX_DELAY),
            report,
        }
    }

    /// `name` succeeded: its next failure starts the backoff afresh and is reported.
    pub fn succeeded(&self, controller: &'static str, namespace: &str, name: &str) {
        self.lock()
            .remove(&(controller, namespace.to_string(), name.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, String, String), Failing>> {
        // Each update is one insert or remove: a poisoned map is still consistent.
        self.failing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_up_to_the_maximum_and_repeats_are_reported_once() {
        let retries = Retries::default();
        let first = retries.failed("tcp", "ns", "a", "boom");
        assert!(first.report);
        assert!(
            first.after >= MIN_DELAY && first.after <= MIN_DELAY * 2,
            "{first:?}"
        );
        let mut last = first.after;
        for _ in 0..12 {
            let next = retries.failed("tcp", "ns", "a", "boom");
            assert!(!next.report, "the same error is reported once");
            assert!(next.after <= MAX_DELAY * 2, "{next:?}");
            last = next.after;
        }
        assert!(last >= MAX_DELAY, "the backoff reached its maximum: {last:?}");
        assert!(retries.failed("tcp", "ns", "a", "another").report);
        assert!(retries.failed("tcp", "ns", "b", "boom").report, "per object");
        retries.succeeded("tcp", "ns", "a");
        let again = retries.failed("tcp", "ns", "a", "another");
        assert!(again.report && again.after <= MIN_DELAY * 2, "{again:?}");
    }
}
