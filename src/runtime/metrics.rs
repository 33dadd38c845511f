//! The operator's Prometheus metrics: certificate expiry per Secret, certificate
//! health per tenant, and reconcile counts, errors and durations per controller.
//! [`Metrics::render`] produces the text the manager serves on `/metrics`.
//!
//! Labels are bounded: namespace, tenant, Secret, lifecycle kind, controller and
//! error reason; never a serial or anything else that grows without bound.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Instant,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// `Content-Type` of [`Metrics::render`]'s output (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the per-Secret gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecretLabels {
    /// The Secret's namespace.
    pub namespace: String,
    /// The owning TenantControlPlane (empty when none).
    pub tenant: String,
    /// The Secret's name.
    pub secret: String,
    /// Its lifecycle label value: `x509` or `kubeconfig`.
    pub kind: String,
}

/// How a Secret's certificates stand.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are lower case
pub enum CertificateStatus {
    /// Readable and outside the expiration deadline.
    valid,
    /// Readable and within the expiration deadline (a rotation is due).
    expiring,
    /// The payload cannot be parsed.
    invalid,
}

impl CertificateStatus {
    const ALL: [Self; 3] = [Self::valid, Self::expiring, Self::invalid];
}

/// `kamaji_certificates_current`'s labels: kamaji-rs' (`namespace`, `tenant`) and, with
/// the same values, Kamaji's (`tcp_namespace`, `tcp_name`), so Kamaji's dashboards
/// select the series too. (Kamaji also splits by `strategy`; kamaji-rs counts both.)
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    namespace: String,
    tenant: String,
    status: CertificateStatus,
    tcp_namespace: String,
    tcp_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: &'static str,
    reason: &'static str,
}

/// What the CertificateLifecycle controller found in a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// Certificates readable: the earliest NotAfter, and when rotation is requested.
    Readable {
        /// Earliest NotAfter, Unix seconds.
        expiration: i64,
        /// NotAfter minus the expiration deadline, Unix seconds.
        renewal: i64,
        /// The deadline has been reached.
        expiring: bool,
    },
    /// The payload cannot be parsed.
    Invalid,
}

impl Observation {
    /// The status it counts as in `kamaji_certificates_current`.
    pub fn status(self) -> CertificateStatus {
        match self {
            Self::Readable { expiring: true, .. } => CertificateStatus::expiring,
            Self::Readable { .. } => CertificateStatus::valid,
            Self::Invalid => CertificateStatus::invalid,
        }
    }
}

/// A Secret as last observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Its tenant (empty when none).
    pub tenant: String,
    /// Its lifecycle kind.
    pub kind: String,
    /// What was found.
    pub observation: Observation,
}

/// Every Secret observed, by namespace and name: the source of the gauges, so a
/// Secret that disappears (or changes tenant) takes its series with it.
type Observations = HashMap<(String, String), Observed>;

/// The registry and every metric family of the operator.
pub struct Metrics {
    registry: Registry,
    expiration: Family<SecretLabels, Gauge>,
    renewal: Family<SecretLabels, Gauge>,
    current: Family<TenantLabels, Gauge>,
    observed: Mutex<Observations>,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    requests: Family<RequestLabels, Counter>,
}

/// Labels of the API request counter: the verb and the resource (bounded).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`.
    pub verb: &'static str,
    /// The resource (`secrets`, `deployments`, `tenantcontrolplanes`, ...).
    pub resource: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn duration_histogram() -> Histogram {
    // 5 ms .. ~41 s
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Metrics {
    /// A registry holding every family, all empty.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let expiration = Family::<SecretLabels, Gauge>::default();
        let renewal = Family::<SecretLabels, Gauge>::default();
        let current = Family::<TenantLabels, Gauge>::default();
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let durations = Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "kamaji_kube_requests",
            "Requests the operator sent to the management cluster's API server, per verb and resource",
            requests.clone(),
        );
        registry.register(
            "kamaji_certificate_expiration_timestamp_seconds",
            "NotAfter of the earliest-expiring certificate in use in a lifecycle-labelled Secret, Unix time",
            expiration.clone(),
        );
        registry.register(
            "kamaji_certificate_renewal_timestamp_seconds",
            "When the rotation of a lifecycle-labelled Secret is requested (NotAfter minus the expiration deadline), Unix time",
            renewal.clone(),
        );
        registry.register(
            "kamaji_certificates_current",
            "Lifecycle-labelled Secrets of a tenant by status: valid, expiring (within the deadline) or invalid (unparseable)",
            current.clone(),
        );
        registry.register(
            "kamaji_reconcile",
            "Reconciles started, per controller",
            reconciles.clone(),
        );
        registry.register(
            "kamaji_reconcile_errors",
            "Reconciles that failed, per controller and error reason",
            errors.clone(),
        );
        registry.register(
            "kamaji_reconcile_duration_seconds",
            "Duration of reconciles, per controller",
            durations.clone(),
        );
        Self {
            registry,
            expiration,
            renewal,
            current,
            observed: Mutex::default(),
            reconciles,
            errors,
            durations,
            requests,
        }
    }

    /// Counts one request to the API server.
    pub fn kube_request(&self, verb: &'static str, resource: String) {
        self.requests
            .get_or_create(&RequestLabels { verb, resource })
            .inc();
    }

    /// The metrics in the OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error would only be our own label encoding.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Observations> {
        // A panic while holding the lock leaves the map consistent (every update is one insert).
        self.observed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records what a Secret holds; returns what was recorded before (`None` the first time).
    pub fn observe_secret(
        &self,
        namespace: &str,
        secret: &str,
        tenant: &str,
        kind: &str,
        observation: Observation,
    ) -> Option<Observed> {
        let mut observed = self.lock();
        let key = (namespace.to_string(), secret.to_string());
        let now = Observed {
            tenant: tenant.to_string(),
            kind: kind.to_string(),
            observation,
        };
        let previous = observed.insert(key, now.clone());
        if let Some(previous) = &previous
            && (previous.tenant != now.tenant || previous.kind != now.kind)
        {
            let labels = secret_labels(namespace, secret, previous);
            self.expiration.remove(&labels);
            self.renewal.remove(&labels);
            self.recount(&observed, namespace, &previous.tenant);
        }
        let labels = secret_labels(namespace, secret, &now);
        match observation {
            Observation::Readable {
                expiration, renewal, ..
            } => {
                self.expiration.get_or_create(&labels).set(expiration);
                self.renewal.get_or_create(&labels).set(renewal);
            }
            Observation::Invalid => {
                self.expiration.remove(&labels);
                self.renewal.remove(&labels);
            }
        }
        self.recount(&observed, namespace, tenant);
        previous
    }

    /// Drops a Secret that no longer exists (or is no longer labelled); returns what it was.
    pub fn forget_secret(&self, namespace: &str, secret: &str) -> Option<Observed> {
        let mut observed = self.lock();
        let previous = observed.remove(&(namespace.to_string(), secret.to_string()))?;
        let labels = secret_labels(namespace, secret, &previous);
        self.expiration.remove(&labels);
        self.renewal.remove(&labels);
        self.recount(&observed, namespace, &previous.tenant);
        Some(previous)
    }

    /// What was last recorded for a Secret.
    pub fn observed(&self, namespace: &str, secret: &str) -> Option<Observed> {
        self.lock()
            .get(&(namespace.to_string(), secret.to_string()))
            .cloned()
    }

    /// Recomputes `kamaji_certificates_current` of one tenant.
    fn recount(&self, observed: &Observations, namespace: &str, tenant: &str) {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        let mut any = false;
        for ((ns, _), entry) in observed {
            if ns == namespace && entry.tenant == tenant {
                any = true;
                *counts.entry(status_name(entry.observation.status())).or_default() += 1;
            }
        }
        for status in CertificateStatus::ALL {
            let labels = TenantLabels {
                namespace: namespace.to_string(),
                tenant: tenant.to_string(),
                status,
                tcp_namespace: namespace.to_string(),
                tcp_name: tenant.to_string(),
            };
            if any {
                let count = counts.get(status_name(status)).copied().unwrap_or(0);
                self.current.get_or_create(&labels).set(count);
            } else {
                self.current.remove(&labels);
            }
        }
    }

    /// Counts a reconcile of `controller` and measures it until the guard is dropped.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
        ReconcileTimer {
            metrics: self,
            controller,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile of `controller` (`reason`: the error's short name).
    pub fn reconcile_failed(&self, controller: &'static str, reason: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { controller, reason })
            .inc();
    }
}

fn status_name(status: CertificateStatus) -> &'static str {
    match status {
        CertificateStatus::valid => "valid",
        CertificateStatus::expiring => "expiring",
        CertificateStatus::invalid => "invalid",
    }
}

fn secret_labels(namespace: &str, secret: &str, observed: &Observed) -> SecretLabels {
    SecretLabels {
        namespace: namespace.to_string(),
        tenant: observed.tenant.clone(),
        secret: secret.to_string(),
        kind: observed.kind.clone(),
    }
}

/// Observes a reconcile's duration when dropped (whatever the outcome).
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .durations
            .get_or_create(&ControllerLabels {
                controller: self.controller,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(expiration: i64, expiring: bool) -> Observation {
        Observation::Readable {
            expiration,
            renewal: expiration - 86_400,
            expiring,
        }
    }

    #[test]
    fn secrets_render_expiry_gauges_and_tenant_counts() {
        let metrics = Metrics::new();
        metrics.observe_secret(
            "ns",
            "t-api-server-certificate",
            "t",
            "x509",
            readable(2_000_000_000, false),
        );
        metrics.observe_secret(
            "ns",
            "t-admin-kubeconfig",
            "t",
            "kubeconfig",
            readable(1_900_000_000, true),
        );
        metrics.observe_secret("ns", "junk", "t", "x509", Observation::Invalid);
        let text = metrics.render();
        assert!(text.contains(
            "kamaji_certificate_expiration_timestamp_seconds{namespace=\"ns\",tenant=\"t\",secret=\"t-api-server-certificate\",kind=\"x509\"} 2000000000\n"
        ), "{text}");
        assert!(text.contains(
            "kamaji_certificate_renewal_timestamp_seconds{namespace=\"ns\",tenant=\"t\",secret=\"t-admin-kubeconfig\",kind=\"kubeconfig\"} 1899913600\n"
        ), "{text}");
        for (status, count) in [("valid", 1), ("expiring", 1), ("invalid", 1)] {
            let line = format!(
                "kamaji_certificates_current{{namespace=\"ns\",tenant=\"t\",status=\"{status}\",tcp_namespace=\"ns\",tcp_name=\"t\"}} {count}\n"
            );
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
        assert!(
            !text.contains("secret=\"junk\""),
            "an invalid Secret has no expiry: {text}"
        );
    }

    #[test]
    fn forgotten_secrets_take_their_series_with_them() {
        let metrics = Metrics::new();
        metrics.observe_secret("ns", "a", "t", "x509", readable(2_000_000_000, false));
        let previous = metrics.forget_secret("ns", "a").expect("was observed");
        assert_eq!(previous.tenant, "t");
        let text = metrics.render();
        assert!(!text.contains("secret=\"a\""), "{text}");
        assert!(!text.contains("tenant=\"t\""), "{text}");
        assert_eq!(metrics.forget_secret("ns", "a"), None);
    }

    #[test]
    fn an_invalid_secret_repaired_counts_as_valid_again() {
        let metrics = Metrics::new();
        assert_eq!(
            metrics.observe_secret("ns", "a", "t", "x509", Observation::Invalid),
            None
        );
        let previous = metrics.observe_secret("ns", "a", "t", "x509", readable(2_000_000_000, false));
        assert_eq!(previous.map(|p| p.observation), Some(Observation::Invalid));
        let text = metrics.render();
        assert!(
            text.contains(
                "kamaji_certificates_current{namespace=\"ns\",tenant=\"t\",status=\"invalid\",tcp_namespace=\"ns\",tcp_name=\"t\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("kamaji_certificates_current{namespace=\"ns\",tenant=\"t\",status=\"valid\",tcp_namespace=\"ns\",tcp_name=\"t\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn reconciles_are_counted_and_timed_per_controller() {
        let metrics = Metrics::new();
        drop(metrics.reconcile("certificatelifecycle"));
        drop(metrics.reconcile("certificatelifecycle"));
        metrics.reconcile_failed("certificatelifecycle", "InvalidCertificate");
        let text = metrics.render();
        assert!(
            text.contains("kamaji_reconcile_total{controller=\"certificatelifecycle\"} 2\n"),
            "{text}"
        );
        assert!(text.contains(
            "kamaji_reconcile_errors_total{controller=\"certificatelifecycle\",reason=\"InvalidCertificate\"} 1\n"
        ), "{text}");
        assert!(
            text.contains("kamaji_reconcile_duration_seconds_count{controller=\"certificatelifecycle\"} 2\n"),
            "{text}"
        );
    }
}
