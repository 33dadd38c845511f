//! The `check-expiration` report: which certificate expires when, its residual
//! time, its CA and whether that CA is externally managed, built from a tenant's
//! Secrets; and kubeadm's `output.kubeadm.k8s.io/v1alpha3` `CertificateExpirationInfo`
//! form of it (`-o json|yaml`). The text table is the CLI's (`crate::cli::table`).

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use super::{
    catalog::{AUTHORITIES, CATALOG, Lifecycle, Signer, When},
    inspect::{InspectError, inspect, inspect_certificate},
};

/// One line of the report: a certificate or a CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpirationEntry {
    /// kubeadm-style name (`apiserver`, `admin.conf`, `ca`).
    pub name: String,
    /// NotAfter (`None` when missing).
    pub expiration: Option<OffsetDateTime>,
    /// The signing CA's name (leaves only).
    pub ca_name: Option<String>,
    /// Whether its CA's key is not held (kubeadm: the certificate cannot be renewed here).
    pub externally_managed: bool,
    /// The certificate is expected but absent.
    pub missing: bool,
}

impl ExpirationEntry {
    /// A present certificate.
    pub fn present(name: impl Into<String>, expiration: OffsetDateTime, ca_name: Option<&str>) -> Self {
        Self {
            name: name.into(),
            expiration: Some(expiration),
            ca_name: ca_name.map(str::to_owned),
            externally_managed: false,
            missing: false,
        }
    }

    /// An expected but absent certificate (`!MISSING!` in the table).
    pub fn missing(name: impl Into<String>, ca_name: Option<&str>) -> Self {
        Self {
            missing: true,
            expiration: None,
            ..Self::present(name, OffsetDateTime::UNIX_EPOCH, ca_name)
        }
    }

    /// Seconds until expiry (negative when expired; 0 when missing).
    pub fn residual_seconds(&self, now: OffsetDateTime) -> i64 {
        self.expiration.map_or(0, |t| (t - now).whole_seconds())
    }
}

/// The whole report at a point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpirationReport {
    /// The time residual times are computed from.
    pub now: OffsetDateTime,
    /// Leaf certificates and kubeconfigs, sorted by name.
    pub certificates: Vec<ExpirationEntry>,
    /// CAs, sorted by name.
    pub certificate_authorities: Vec<ExpirationEntry>,
}

/// kubeadm's structured output (`kubeadm certs check-expiration -o json|yaml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateExpirationInfo {
    /// `CertificateExpirationInfo`.
    pub kind: &'static str,
    /// `output.kubeadm.k8s.io/v1alpha3`.
    pub api_version: &'static str,
    /// Leaf certificates.
    pub certificates: Vec<CertificateOutput>,
    /// CAs.
    pub certificate_authorities: Vec<CertificateOutput>,
}

/// kubeadm's `output.Certificate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateOutput {
    /// Name.
    pub name: String,
    /// RFC 3339 UTC, `null` when missing.
    pub expiration_date: Option<String>,
    /// Seconds left.
    pub residual_time: i64,
    /// Whether the CA is externally managed.
    pub externally_managed: bool,
    /// Signing CA (omitted for CAs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_name: Option<String>,
    /// Whether the certificate is missing.
    pub missing: bool,
}

impl ExpirationReport {
    /// The structured form, for JSON or YAML.
    pub fn to_output(&self) -> CertificateExpirationInfo {
        let convert = |e: &ExpirationEntry| CertificateOutput {
            name: e.name.clone(),
            expiration_date: e.expiration.map(rfc3339),
            residual_time: e.residual_seconds(self.now),
            externally_managed: e.externally_managed,
            ca_name: e.ca_name.clone().filter(|c| !c.is_empty()),
            missing: e.missing,
        };
        CertificateExpirationInfo {
            kind: "CertificateExpirationInfo",
            api_version: "output.kubeadm.k8s.io/v1alpha3",
            certificates: self.certificates.iter().map(convert).collect(),
            certificate_authorities: self.certificate_authorities.iter().map(convert).collect(),
        }
    }

    fn sort(&mut self) {
        self.certificates.sort_by(|a, b| a.name.cmp(&b.name));
        self.certificate_authorities.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// RFC 3339 in UTC with second precision (`metav1.Time`'s JSON form).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A Secret as the report reads it. `Debug` shows the data keys, not the values
/// (a certificate Secret holds its private key).
#[derive(Clone)]
pub struct SecretView<'a> {
    /// Secret name.
    pub name: &'a str,
    /// Its `certificate_lifecycle_controller` label, if any.
    pub lifecycle: Option<Lifecycle>,
    /// Its data.
    pub data: BTreeMap<&'a str, &'a [u8]>,
}

impl std::fmt::Debug for SecretView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretView")
            .field("name", &self.name)
            .field("lifecycle", &self.lifecycle)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A Secret that could not be read, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretProblem {
    /// Secret name.
    pub secret: String,
    /// What is wrong.
    pub error: InspectError,
}

/// The report for tenant `tenant` from its Secrets (`kamaji.clastix.io/name=<tenant>`),
/// plus the Secrets that could not be read. Leaf rows come from the lifecycle-labelled
/// Secrets (catalog Secrets without the label are read with their catalog lifecycle),
/// CA rows from the CA Secrets and the datastore Secret's `ca.crt`. Rows every tenant
/// has are reported `!MISSING!` when absent. `datastore_externally_managed` marks the
/// DataStore CA (and the datastore row) as not ours: true for non-etcd drivers.
pub fn tenant_report(
    tenant: &str,
    secrets: &[SecretView<'_>],
    now: OffsetDateTime,
    datastore_externally_managed: bool,
) -> (ExpirationReport, Vec<SecretProblem>) {
    let tenant = TenantSecrets {
        prefix: format!("{tenant}-"),
        secrets,
    };
    let mut report = ExpirationReport {
        now,
        certificates: Vec::new(),
        certificate_authorities: Vec::new(),
    };
    let mut problems = Vec::new();
    let mut external = authority_rows(&tenant, &mut report, &mut problems);
    external.insert(Signer::DatastoreCa.ca_name(), datastore_externally_managed);
    datastore_ca_row(&tenant, datastore_externally_managed, &mut report, &mut problems);
    let seen = leaf_rows(&tenant, &external, &mut report, &mut problems);
    for spec in CATALOG.iter().filter(|s| s.when == When::Always) {
        if !seen.iter().any(|n| n == spec.name) {
            report
                .certificates
                .push(ExpirationEntry::missing(spec.name, Some(spec.signer.ca_name())));
        }
    }
    report.sort();
    (report, problems)
}

/// One tenant's Secrets, found by the suffix after `<tenant>-`.
struct TenantSecrets<'s, 'a> {
    prefix: String,
    secrets: &'s [SecretView<'a>],
}

impl<'s, 'a> TenantSecrets<'s, 'a> {
    fn suffix_of<'n>(&self, name: &'n str) -> Option<&'n str> {
        name.strip_prefix(self.prefix.as_str())
    }

    fn by_suffix(&self, suffix: &str) -> Option<&'s SecretView<'a>> {
        self.secrets
            .iter()
            .find(|s| self.suffix_of(s.name) == Some(suffix))
    }
}

fn problem(secret: &SecretView<'_>, error: InspectError) -> SecretProblem {
    SecretProblem {
        secret: secret.name.to_owned(),
        error,
    }
}

/// The tenant's own CAs: a row each (`!MISSING!` when absent). Returns which of them
/// are externally managed (no key stored).
fn authority_rows(
    tenant: &TenantSecrets<'_, '_>,
    report: &mut ExpirationReport,
    problems: &mut Vec<SecretProblem>,
) -> BTreeMap<&'static str, bool> {
    let mut external = BTreeMap::new();
    for spec in AUTHORITIES {
        let secret = tenant.by_suffix(spec.secret_suffix);
        let cert_key = spec.cert_keys.first().copied().unwrap_or("ca.crt");
        match secret.and_then(|s| s.data.get(cert_key).map(|v| (s, *v))) {
            None => report
                .certificate_authorities
                .push(ExpirationEntry::missing(spec.name, None)),
            Some((secret, value)) => match inspect_certificate(cert_key, value) {
                Ok(info) => {
                    let has_key = spec
                        .key_keys
                        .first()
                        .and_then(|k| secret.data.get(k))
                        .is_some_and(|v| !v.iter().all(u8::is_ascii_whitespace));
                    external.insert(spec.name, !has_key);
                    report.certificate_authorities.push(ExpirationEntry {
                        externally_managed: !has_key,
                        ..ExpirationEntry::present(spec.name, info.not_after, None)
                    });
                }
                Err(error) => problems.push(problem(secret, error)),
            },
        }
    }
    external
}

/// The DataStore CA, as the datastore Secret's `ca.crt` carries it.
fn datastore_ca_row(
    tenant: &TenantSecrets<'_, '_>,
    externally_managed: bool,
    report: &mut ExpirationReport,
    problems: &mut Vec<SecretProblem>,
) {
    let datastore_suffix = CATALOG
        .iter()
        .find(|s| s.signer == Signer::DatastoreCa)
        .map_or("datastore-certificate", |s| s.secret_suffix);
    let Some(secret) = tenant.by_suffix(datastore_suffix) else {
        return;
    };
    let Some(value) = secret.data.get("ca.crt") else {
        return;
    };
    match inspect_certificate("ca.crt", value) {
        Ok(info) => report.certificate_authorities.push(ExpirationEntry {
            externally_managed,
            ..ExpirationEntry::present(Signer::DatastoreCa.ca_name(), info.not_after, None)
        }),
        Err(error) => problems.push(problem(secret, error)),
    }
}

/// A row per certificate data key of every lifecycle Secret. Returns the row names
/// seen (those of an unreadable Secret included, so they are not also reported missing).
fn leaf_rows(
    tenant: &TenantSecrets<'_, '_>,
    external: &BTreeMap<&str, bool>,
    report: &mut ExpirationReport,
    problems: &mut Vec<SecretProblem>,
) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for secret in tenant.secrets {
        let Some(suffix) = tenant.suffix_of(secret.name) else {
            continue;
        };
        let catalog_lifecycle = CATALOG
            .iter()
            .find(|s| s.secret_suffix == suffix)
            .map(|s| s.lifecycle);
        let Some(lifecycle) = secret.lifecycle.or(catalog_lifecycle) else {
            continue;
        };
        let inspection = match inspect(secret.data.iter().map(|(k, v)| (*k, *v)), lifecycle) {
            Ok(inspection) => inspection,
            Err(error) => {
                problems.push(problem(secret, error));
                seen.extend(
                    CATALOG
                        .iter()
                        .filter(|s| s.secret_suffix == suffix)
                        .map(|s| s.name.to_owned()),
                );
                continue;
            }
        };
        // One row per data key: the earliest expiry among its certificates (kubeconfig users).
        let mut per_key: BTreeMap<&str, OffsetDateTime> = BTreeMap::new();
        for cert in &inspection.certificates {
            let entry = per_key.entry(cert.data_key.as_str()).or_insert(cert.not_after);
            *entry = (*entry).min(cert.not_after);
        }
        for (key, not_after) in per_key {
            let spec = CATALOG
                .iter()
                .find(|s| s.secret_suffix == suffix && s.certificate_key() == key);
            let (name, ca) = match spec {
                Some(spec) => (spec.name.to_owned(), Some(spec.signer.ca_name())),
                None => (format!("{suffix}/{key}"), None),
            };
            let externally_managed = ca.and_then(|c| external.get(c).copied()).unwrap_or(false);
            seen.push(name.clone());
            report.certificates.push(ExpirationEntry {
                externally_managed,
                ..ExpirationEntry::present(name, not_after, ca)
            });
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> OffsetDateTime {
        let date = time::Date::from_calendar_date(year, time::Month::try_from(month).unwrap(), day).unwrap();
        date.with_hms(hour, minute, second).unwrap().assume_utc()
    }

    #[test]
    fn structured_dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(dt(2026, 8, 19, 9, 3, 7)), "2026-08-19T09:03:07Z");
    }

    #[test]
    fn structured_output_is_kubeadm_v1alpha3() {
        let now = dt(2025, 8, 19, 9, 8, 0);
        let report = ExpirationReport {
            now,
            certificates: vec![ExpirationEntry::missing("scheduler.conf", Some("ca"))],
            certificate_authorities: vec![ExpirationEntry::present(
                "ca",
                now + time::Duration::hours(1),
                None,
            )],
        };
        let json = serde_json::to_value(report.to_output()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "CertificateExpirationInfo",
                "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
                "certificates": [{"name": "scheduler.conf", "expirationDate": null, "residualTime": 0,
                                  "externallyManaged": false, "caName": "ca", "missing": true}],
                "certificateAuthorities": [{"name": "ca", "expirationDate": "2025-08-19T10:08:00Z",
                                  "residualTime": 3600, "externallyManaged": false, "missing": false}],
            })
        );
    }
}
