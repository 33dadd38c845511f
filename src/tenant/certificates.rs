//! Which of a tenant's PKI Secrets to (re)write, decided from what is stored:
//! the CAs, the service-account key pair and every catalog row. Pure: the
//! controller reads the Secrets, calls [`plan`] (off the async runtime: it
//! generates keys) and applies the writes in order, CAs first, so a crash
//! between two writes leaves leaves that do not verify against the stored CA,
//! which the next reconcile re-issues.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::pki::{
    Authority, CATALOG, IssueParams, Lifecycle, Phase, Progress, SecretData, ServingMoved, Signers, StoredCa,
    TenantInputs,
    catalog::{
        self, AUTHORITIES, AuthoritySpec, CertificateSpec, FRONT_PROXY_CA, SERVICE_ACCOUNT, SecretType,
        Signer,
    },
    issue::{self, IssueError},
};

/// A PKI Secret as stored.
#[derive(Clone, Default)]
pub struct Stored {
    /// Its data.
    pub data: SecretData,
    /// `certs.kamaji.clastix.io/rotate: ""` is set.
    pub rotate_requested: bool,
    /// `kamaji.clastix.io/paused` is set: hands off.
    pub paused: bool,
    /// The current value of the rotate annotation (a previous rotation time), kept on rewrite.
    pub rotate_annotation: Option<String>,
}

/// The data keys of Secret data, for `Debug`: values hold private keys and are never printed.
pub fn data_keys(data: &SecretData) -> Vec<&str> {
    data.keys().map(String::as_str).collect()
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("data_keys", &data_keys(&self.data))
            .field("rotate_requested", &self.rotate_requested)
            .field("paused", &self.paused)
            .field("rotate_annotation", &self.rotate_annotation)
            .finish()
    }
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Write")
            .field("suffix", &self.suffix)
            .field("data_keys", &data_keys(&self.data))
            .field("reason", &self.reason)
            .field("rotate_annotation", &self.rotate_annotation)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DatastoreSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatastoreSource::Unknown => f.write_str("Unknown"),
            DatastoreSource::Ca(ca) => f.debug_tuple("Ca").field(ca).finish(),
            DatastoreSource::Copied(data) => f.debug_tuple("Copied").field(&data_keys(data)).finish(),
            DatastoreSource::None => f.write_str("None"),
        }
    }
}

/// Stored PKI Secrets by suffix.
pub type StoredSecrets = BTreeMap<String, Stored>;

/// Why a Secret is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It did not exist.
    Created,
    /// `certs.kamaji.clastix.io/rotate: ""` asked for it.
    RotationRequested,
    /// A deleted CA Secret is regenerated: with Kamaji, deleting it is how a CA rotation was asked for.
    CaDeleted,
    /// A rotate request on a CA already rotating: answered by the rotation in progress.
    RotationInProgress,
    /// A CA rotation completes: the old CA is retired.
    RotationCompleted,
    /// A CA rotation starts by itself: the CA is near the end of its life.
    CaLifetime,
    /// What is stored is no longer what the tenant needs (names the key and why).
    Stale(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Created => f.write_str("created"),
            Reason::RotationRequested => f.write_str("asked for with certs.kamaji.clastix.io/rotate"),
            Reason::CaDeleted => f.write_str("the CA Secret was deleted"),
            Reason::RotationInProgress => f.write_str("a rotation of this CA is already in progress"),
            Reason::RotationCompleted => f.write_str("the CA rotation completes: the old CA is retired"),
            Reason::CaLifetime => {
                f.write_str("the CA is past the share of its lifetime after which it rotates")
            }
            Reason::Stale(why) => f.write_str(why),
        }
    }
}

/// One Secret to write.
#[derive(Clone)]
pub struct Write {
    /// `<tcp>-<suffix>`.
    pub suffix: &'static str,
    /// Its whole data.
    pub data: SecretData,
    /// Its type.
    pub secret_type: SecretType,
    /// Its lifecycle label, for certificates the lifecycle controller watches.
    pub lifecycle: Option<Lifecycle>,
    /// Why.
    pub reason: Reason,
    /// The value of the rotate annotation to write: the rotation time when one
    /// was requested, else the value already there.
    pub rotate_annotation: Option<String>,
    /// It is the tenant CA: a new CA means a CA rotation.
    pub is_tenant_ca: bool,
}

/// Something the operator will not fix by itself: reported on the tenant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A CA (or the service-account key) that cannot be read is never replaced without a rotate.
    #[error(
        "{secret} cannot be read ({reason}); it is kept as is: annotate it with certs.kamaji.clastix.io/rotate=\"\" to replace it"
    )]
    Unreadable {
        /// Secret name.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// A CA without its private key cannot sign.
    #[error(
        "{secret} has no private key (externally managed CA): {certificate} cannot be issued by kamaji-rs"
    )]
    CaWithoutKey {
        /// CA Secret name.
        secret: String,
        /// The certificate that needs issuing.
        certificate: String,
    },
    /// Issuing failed.
    #[error("issuing {certificate} failed: {reason}")]
    IssueFailed {
        /// Catalog row.
        certificate: String,
        /// The error.
        reason: String,
    },
}

/// The writes to make, in order, and what could not be done.
#[derive(Debug, Default)]
pub struct Plan {
    /// Secrets to write, CAs and key pairs first.
    pub writes: Vec<Write>,
    /// Problems to report.
    pub problems: Vec<Problem>,
    /// When stored material changes next by itself (previous service-account keys retired).
    pub next_change: Option<OffsetDateTime>,
    /// A CA is in the prepared phase after this plan.
    pub authorities_prepared: bool,
}

impl Plan {
    /// After this plan, a CA is still prepared (its rotation not completed).
    pub fn leaves_ca_prepared(&self) -> bool {
        self.authorities_prepared
    }

    /// The tenant CA is being replaced.
    pub fn rotates_tenant_ca(&self) -> bool {
        self.writes.iter().any(|w| {
            w.is_tenant_ca
                && matches!(
                    w.reason,
                    Reason::RotationRequested
                        | Reason::RotationCompleted
                        | Reason::CaDeleted
                        | Reason::CaLifetime
                )
        })
    }
}

/// Where the tenant's datastore client certificate comes from.
#[derive(Clone, Copy)]
pub enum DatastoreSource<'a> {
    /// The DataStore could not be read: its certificate is left as it is.
    Unknown,
    /// etcd: signed by the DataStore's CA.
    Ca(&'a Authority),
    /// Other drivers (an external PKI): copied from the DataStore's `tlsConfig.clientCertificate`.
    Copied(&'a SecretData),
    /// The DataStore uses no client certificate.
    None,
}

impl<'a> DatastoreSource<'a> {
    fn ca(self) -> Option<&'a Authority> {
        match self {
            DatastoreSource::Ca(ca) => Some(ca),
            _ => None,
        }
    }
}

/// What the plan is computed from.
pub struct Inputs<'a> {
    /// The tenant's names, addresses and options.
    pub tenant: &'a TenantInputs,
    /// Stored PKI Secrets by suffix.
    pub stored: &'a StoredSecrets,
    /// The datastore client certificate's source.
    pub datastore: DatastoreSource<'a>,
    /// A CA was already rolled out to this tenant (a missing CA Secret means it was deleted).
    pub provisioned: bool,
    /// Key algorithm, validity and the time of issuance.
    pub params: IssueParams,
    /// How long previous service-account public keys keep verifying after a rotation.
    pub service_account_grace: std::time::Duration,
    /// A prepared CA rotation is to complete now (decided by [`crate::tenant::rotation`]).
    pub complete_ca_rotation: bool,
    /// A CA's rotation starts by itself once this share (percent) of its lifetime has passed.
    pub ca_rotation_start_percent: u8,
    /// The control plane has rolled out with all of its material as stored: it
    /// serves the serving certificates stored, so a prepared CA rotation may complete.
    pub control_plane_runs_stored: bool,
    /// The control plane has rolled out with the CA Secrets as stored: during a
    /// prepared CA rotation it trusts the new CA, so client certificates move to it
    /// (all of them in one pass, even when an operator killed in the middle of that
    /// pass left some moved: the rollout they trigger is one).
    pub control_plane_trusts_stored: bool,
}

/// Decides and issues every write the tenant's PKI needs now.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let mut plan = Plan::default();
    let now_rfc3339 = rfc3339(inputs.params.now);
    let rotate_value = |stored: Option<&Stored>, rotated: bool| {
        if rotated {
            Some(now_rfc3339.clone())
        } else {
            stored.and_then(|s| s.rotate_annotation.clone())
        }
    };

    let authorities = plan_authorities(inputs, &mut plan, &rotate_value);
    plan.authorities_prepared = authorities.values().any(|(ca, _)| ca.phase() == Phase::Prepared);
    plan_service_account(inputs, &mut plan, &rotate_value);
    plan_leaves(inputs, &mut plan, &authorities, &rotate_value);
    plan
}

/// A rotate-annotation value: the rotation time when rotated, else what is stored.
type RotateValue<'a> = dyn Fn(Option<&Stored>, bool) -> Option<String> + 'a;

/// The CAs: generated when missing; a rotation request prepares a new CA beside the
/// old one, [`Inputs::complete_ca_rotation`] completes it ([`StoredCa`]); reported,
/// never replaced, when unreadable. Returns the usable CAs by suffix, after any change.
fn plan_authorities(
    inputs: &Inputs<'_>,
    plan: &mut Plan,
    rotate_value: &RotateValue<'_>,
) -> BTreeMap<&'static str, (StoredCa, Progress)> {
    let mut authorities = BTreeMap::new();
    for spec in AUTHORITIES {
        let stored = inputs.stored.get(spec.secret_suffix);
        // A CA outside its validity is as unusable as an unreadable one: reported, kept.
        let loaded = stored
            .map(|s| StoredCa::load(spec, &s.data).and_then(|ca| valid_now(spec, ca, inputs.params.now)));
        if stored.is_some_and(|s| s.paused) {
            if let Some(Ok(ca)) = loaded {
                let progress = progress(inputs, spec, &ca, false);
                authorities.insert(spec.secret_suffix, (ca, progress));
            }
            continue;
        }
        let next = match (stored, loaded) {
            (None, _) => {
                let reason = if inputs.provisioned && spec == &catalog::TENANT_CA {
                    Reason::CaDeleted
                } else {
                    Reason::Created
                };
                issue::generate_authority(spec, &inputs.params)
                    .map(|ca| (Some(reason), StoredCa::settled(ca)))
            }
            (Some(s), Some(Err(error))) if !s.rotate_requested => {
                plan.problems.push(Problem::Unreadable {
                    secret: inputs.tenant.secret_name(spec.secret_suffix),
                    reason: error.to_string(),
                });
                continue;
            }
            (Some(_), Some(Err(_))) => {
                // Asked for: an unreadable CA is replaced outright (there is nothing to overlap with).
                issue::generate_authority(spec, &inputs.params)
                    .map(|ca| (Some(Reason::RotationRequested), StoredCa::settled(ca)))
            }
            (Some(s), Some(Ok(ca))) => {
                if !ca.signing.is_externally_managed() {
                    let start = rotation_start(&ca.signing, inputs.ca_rotation_start_percent);
                    if start > inputs.params.now {
                        plan.next_change = Some(plan.next_change.map_or(start, |t| t.min(start)));
                    }
                }
                transition(inputs, spec, s, ca)
            }
            (Some(_), None) => continue,
        };
        match next {
            Ok((Some(reason), ca)) => {
                plan.writes.push(Write {
                    suffix: spec.secret_suffix,
                    data: ca.secret_data(spec),
                    secret_type: SecretType::Opaque,
                    lifecycle: None,
                    rotate_annotation: rotate_value(stored, reason == Reason::RotationRequested),
                    is_tenant_ca: spec == &catalog::TENANT_CA,
                    reason,
                });
                let progress = progress(inputs, spec, &ca, true);
                authorities.insert(spec.secret_suffix, (ca, progress));
            }
            Ok((None, ca)) => {
                let progress = progress(inputs, spec, &ca, false);
                authorities.insert(spec.secret_suffix, (ca, progress));
            }
            Err(error) => plan.problems.push(Problem::IssueFailed {
                certificate: spec.name.to_string(),
                reason: error.to_string(),
            }),
        }
    }
    authorities
}

/// `ca`, when its signing certificate is valid at `now`.
fn valid_now(spec: &AuthoritySpec, ca: StoredCa, now: OffsetDateTime) -> Result<StoredCa, IssueError> {
    ca.signing
        .check_valid_at(now)
        .map_err(|source| IssueError::Authority {
            row: spec.name,
            source,
        })?;
    Ok(ca)
}

/// What a readable CA Secret becomes: prepared on a rotate request (once: a request
/// while prepared is answered by the rotation in progress), completed when asked,
/// rewritten when its layout differs, else kept (no reason: nothing to write).
fn transition(
    inputs: &Inputs<'_>,
    spec: &AuthoritySpec,
    stored: &Stored,
    ca: StoredCa,
) -> Result<(Option<Reason>, StoredCa), IssueError> {
    let now = inputs.params.now;
    if stored.rotate_requested {
        return match ca.phase() {
            Phase::Settled if ca.signing.is_externally_managed() => Ok((None, ca)),
            Phase::Settled => ca
                .without_expired_cross_signed(now)
                .prepare(spec, &inputs.params)
                .map(|ca| (Some(Reason::RotationRequested), ca)),
            Phase::Prepared => Ok((Some(Reason::RotationInProgress), ca)),
        };
    }
    if ca.phase() == Phase::Prepared {
        let serving = serving_moved(inputs, spec, &ca);
        // The old CA retires once the control plane serves what the new one signed.
        if (inputs.complete_ca_rotation || serving.underway())
            && serving.all()
            && inputs.control_plane_runs_stored
        {
            return Ok((Some(Reason::RotationCompleted), ca.complete()));
        }
    }
    if ca.phase() == Phase::Settled
        && !ca.signing.is_externally_managed()
        && now >= rotation_start(&ca.signing, inputs.ca_rotation_start_percent)
    {
        return ca
            .without_expired_cross_signed(now)
            .prepare(spec, &inputs.params)
            .map(|ca| (Some(Reason::CaLifetime), ca));
    }
    let ca = ca.without_expired_cross_signed(now);
    let rewritten = ca
        .layout_differs(spec, &stored.data)
        .map(|keys| Reason::Stale(format!("{}: {keys} rewritten", spec.name)));
    Ok((rewritten, ca))
}

/// `ca`'s serving certificates as stored: how many its new CA signs already.
fn serving_moved(inputs: &Inputs<'_>, spec: &AuthoritySpec, ca: &StoredCa) -> ServingMoved {
    ServingMoved::count(
        spec,
        ca,
        |suffix| inputs.stored.get(suffix).map(|s| &s.data),
        inputs.params.now,
    )
}

/// Which steps of a prepared rotation go ahead in this pass: client certificates move
/// once the control plane trusts the CA as stored (not one written now); serving ones
/// once completion was decided or has begun.
fn progress(inputs: &Inputs<'_>, spec: &AuthoritySpec, ca: &StoredCa, written: bool) -> Progress {
    Progress {
        clients_move: inputs.control_plane_trusts_stored && !written,
        serving_moves: ca.phase() == Phase::Prepared
            && (inputs.complete_ca_rotation || serving_moved(inputs, spec, ca).underway()),
    }
}

/// When a CA's rotation starts by itself: once `percent` of its lifetime has passed.
pub fn rotation_start(ca: &Authority, percent: u8) -> OffsetDateTime {
    let lifetime = ca.not_after() - ca.not_before();
    ca.not_before() + lifetime * (f64::from(percent.min(100)) / 100.0)
}

/// Every leaf Secret: issued when missing, asked for or stale, signed by its CA.
fn plan_leaves(
    inputs: &Inputs<'_>,
    plan: &mut Plan,
    authorities: &BTreeMap<&'static str, (StoredCa, Progress)>,
    rotate_value: &RotateValue<'_>,
) {
    let signers = match (
        authorities.get(catalog::TENANT_CA.secret_suffix),
        authorities.get(FRONT_PROXY_CA.secret_suffix),
    ) {
        (Some((ca, ca_progress)), Some((front_proxy_ca, front_proxy_progress))) => Some(Signers {
            ca,
            front_proxy_ca,
            datastore_ca: inputs.datastore.ca(),
            ca_progress: *ca_progress,
            front_proxy_progress: *front_proxy_progress,
        }),
        _ => None,
    };
    for suffix in catalog::leaf_secret_suffixes() {
        let stored = inputs.stored.get(suffix);
        if stored.is_some_and(|s| s.paused) {
            continue;
        }
        if let (DatastoreSource::Copied(copied), Some(row)) = (inputs.datastore, copied_row(suffix)) {
            plan.writes.extend(copy_write(row, stored, copied, rotate_value));
            continue;
        }
        // Reported with the CAs: nothing signed by a CA we cannot read is touched.
        let Some(signers) = &signers else { continue };
        plan_leaf(inputs, plan, signers, suffix, rotate_value);
    }
}

/// One leaf Secret signed by the tenant's CAs: a write when it must be issued, or
/// the problem that keeps it as it is.
fn plan_leaf(
    inputs: &Inputs<'_>,
    plan: &mut Plan,
    signers: &Signers<'_>,
    suffix: &'static str,
    rotate_value: &RotateValue<'_>,
) {
    let rows: Vec<&CertificateSpec> = CATALOG
        .iter()
        .filter(|row| row.secret_suffix == suffix)
        .filter(|row| row.applies(inputs.tenant.konnectivity, signers.datastore_ca.is_some()))
        .collect();
    let Some(first) = rows.first() else { return };
    let stored = inputs.stored.get(suffix);
    let reason = match stored {
        None => Some(Reason::Created),
        Some(s) if s.rotate_requested => Some(Reason::RotationRequested),
        Some(s) => rows.iter().find_map(|row| {
            issue::check(row, &s.data, inputs.tenant, signers, inputs.params.now)
                .err()
                .map(|stale| Reason::Stale(format!("{}: {stale}", row.name)))
        }),
    };
    let Some(reason) = reason else { return };
    if let Some(problem) = rows
        .iter()
        .find_map(|row| usable_signer(inputs, signers, row.signer, first.name).err())
    {
        // An external CA's leaves are kept as they are, and reported.
        plan.problems.push(problem);
        return;
    }
    match issue::issue_secret(suffix, inputs.tenant, signers, &inputs.params) {
        Ok(data) => plan.writes.push(Write {
            suffix,
            data,
            secret_type: first.secret_type,
            lifecycle: Some(first.lifecycle),
            rotate_annotation: rotate_value(stored, reason == Reason::RotationRequested),
            reason,
            is_tenant_ca: false,
        }),
        Err(error) => plan.problems.push(Problem::IssueFailed {
            certificate: first.name.to_string(),
            reason: error.to_string(),
        }),
    }
}

/// The CA that signs for `signer`, if it can issue: an external CA (no key) cannot,
/// and `certificate` (the Secret's first) names what it would have issued.
fn usable_signer<'s>(
    inputs: &Inputs<'_>,
    signers: &Signers<'s>,
    signer: Signer,
    certificate: &str,
) -> Result<&'s Authority, Problem> {
    let (ca, ca_spec): (Option<&Authority>, Option<&AuthoritySpec>) = match signer {
        Signer::TenantCa => (Some(&signers.ca.signing), Some(&catalog::TENANT_CA)),
        Signer::FrontProxyCa => (Some(&signers.front_proxy_ca.signing), Some(&FRONT_PROXY_CA)),
        Signer::DatastoreCa => (signers.datastore_ca, None),
    };
    let secret = ca_spec
        .map(|s| inputs.tenant.secret_name(s.secret_suffix))
        .unwrap_or_else(|| "the DataStore CA".to_string());
    let ca = ca.ok_or_else(|| Problem::Unreadable {
        secret: secret.clone(),
        reason: "no usable CA".into(),
    })?;
    if ca.is_externally_managed() {
        return Err(Problem::CaWithoutKey {
            secret,
            certificate: certificate.to_string(),
        });
    }
    Ok(ca)
}

/// The datastore row, when `suffix` is its Secret.
fn copied_row(suffix: &str) -> Option<&'static CertificateSpec> {
    CATALOG
        .iter()
        .find(|row| row.secret_suffix == suffix && row.signer == Signer::DatastoreCa)
}

/// The write of a datastore certificate copied from its DataStore: the same
/// reasons as an issued one (missing, rotation requested, stale), the DataStore's
/// bytes as data. A rotation request is answered by copying again.
fn copy_write(
    row: &'static CertificateSpec,
    stored: Option<&Stored>,
    copied: &SecretData,
    rotate_value: &RotateValue<'_>,
) -> Option<Write> {
    let reason = match stored {
        None => Reason::Created,
        Some(s) if s.rotate_requested => Reason::RotationRequested,
        Some(s) if &s.data != copied => Reason::Stale(format!(
            "{}: differs from the DataStore's tlsConfig.clientCertificate",
            row.name
        )),
        Some(_) => return None,
    };
    Some(Write {
        suffix: row.secret_suffix,
        data: copied.clone(),
        secret_type: row.secret_type,
        lifecycle: Some(row.lifecycle),
        rotate_annotation: rotate_value(stored, reason == Reason::RotationRequested),
        reason,
        is_tenant_ca: false,
    })
}

/// The service-account key pair. A rotation keeps the previous public keys in
/// `sa.pub` (tokens they signed still verify) until the grace period after the
/// rotation time has passed; then they are retired, with their own rollout.
fn plan_service_account(inputs: &Inputs<'_>, plan: &mut Plan, rotate_value: &RotateValue<'_>) {
    let spec = &SERVICE_ACCOUNT;
    let stored = inputs.stored.get(spec.secret_suffix);
    let (reason, data) = match stored {
        Some(s) if s.paused => return,
        None => (
            Reason::Created,
            issue::service_account_secret_data(spec, inputs.params.algorithm),
        ),
        Some(s) if s.rotate_requested => (
            Reason::RotationRequested,
            issue::rotated_service_account_data(spec, inputs.params.algorithm, &s.data),
        ),
        Some(s) => {
            // Like a CA, the signing key of every issued token is never replaced unasked.
            if let Err(stale) = issue::check_service_account(spec, &s.data) {
                plan.problems.push(Problem::Unreadable {
                    secret: inputs.tenant.secret_name(spec.secret_suffix),
                    reason: stale.to_string(),
                });
                return;
            }
            let Some(retire_at) = previous_keys_retire_at(inputs, s) else {
                return;
            };
            if inputs.params.now < retire_at {
                plan.next_change = Some(plan.next_change.map_or(retire_at, |t| t.min(retire_at)));
                return;
            }
            let why = "previous service-account keys retired: the grace period after the rotation has passed";
            (
                Reason::Stale(why.into()),
                Ok(issue::retire_previous_service_account_keys(spec, &s.data)),
            )
        }
    };
    match data {
        Ok(data) => plan.writes.push(Write {
            suffix: spec.secret_suffix,
            data,
            secret_type: SecretType::Opaque,
            lifecycle: None,
            rotate_annotation: rotate_value(stored, reason == Reason::RotationRequested),
            reason,
            is_tenant_ca: false,
        }),
        Err(error) => plan.problems.push(Problem::IssueFailed {
            certificate: spec.name.to_string(),
            reason: error.to_string(),
        }),
    }
}

/// When the previous public keys in `sa.pub` are to be retired: the rotation time
/// (the rotate annotation's value) plus the grace period. `None` when there are none,
/// or no rotation time says since when they are kept (they are then left alone).
fn previous_keys_retire_at(inputs: &Inputs<'_>, stored: &Stored) -> Option<OffsetDateTime> {
    if issue::previous_service_account_keys(&SERVICE_ACCOUNT, &stored.data) == 0 {
        return None;
    }
    let rotated_at = stored.rotate_annotation.as_deref()?;
    let rotated_at =
        OffsetDateTime::parse(rotated_at, &time::format_description::well_known::Rfc3339).ok()?;
    Some(rotated_at + inputs.service_account_grace)
}

/// RFC 3339 in UTC, seconds precision: the value written to the rotate annotation.
pub fn rfc3339(time: OffsetDateTime) -> String {
    let utc = time
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(time);
    // Formatting a UTC time with seconds precision cannot fail; an empty value would
    // read as a new rotation request, so fall back to the Unix time rather than to "".
    utc.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| utc.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{KeyAlgorithm, kubeconfig::Kubeconfig};

    fn tenant() -> TenantInputs {
        TenantInputs {
            name: "k8s-133".into(),
            namespace: "default".into(),
            address: Some("192.0.2.10".into()),
            port: 6443,
            cert_sans: vec![],
            service_cidr: "10.96.0.0/16".into(),
            cluster_domain: "cluster.local".into(),
            control_plane_endpoint: "192.0.2.10:6443".into(),
            konnectivity: true,
            datastore_user: "default_k8s_133".into(),
            superseded_groups_granted: true,
        }
    }

    fn params() -> IssueParams {
        let mut params = IssueParams::new(OffsetDateTime::now_utc());
        // ECDSA keeps the unit tests fast; the algorithm is a parameter like any other.
        params.algorithm = KeyAlgorithm::EcdsaP256;
        params
    }

    fn datastore_ca() -> Authority {
        let p = params();
        Authority::generate("etcd-ca", p.algorithm, p.ca_validity, p.now).expect("datastore CA")
    }

    /// Stores a plan's writes as the API server would.
    fn store(stored: &mut StoredSecrets, plan: &Plan) {
        for write in &plan.writes {
            stored.insert(
                write.suffix.to_string(),
                Stored {
                    data: write.data.clone(),
                    rotate_annotation: write.rotate_annotation.clone(),
                    ..Stored::default()
                },
            );
        }
    }

    fn run(stored: &StoredSecrets, ca: &Authority, provisioned: bool) -> Plan {
        plan(&Inputs {
            tenant: &tenant(),
            stored,
            datastore: DatastoreSource::Ca(ca),
            provisioned,
            params: params(),
            service_account_grace: std::time::Duration::from_secs(3600),
            complete_ca_rotation: false,
            ca_rotation_start_percent: 80,
            control_plane_runs_stored: true,
            control_plane_trusts_stored: true,
        })
    }

    /// A pass while the Deployment rolls out what is stored.
    fn run_rolling(stored: &StoredSecrets, ca: &Authority) -> Plan {
        plan(&Inputs {
            tenant: &tenant(),
            stored,
            datastore: DatastoreSource::Ca(ca),
            provisioned: true,
            params: params(),
            service_account_grace: std::time::Duration::from_secs(3600),
            complete_ca_rotation: false,
            ca_rotation_start_percent: 80,
            control_plane_runs_stored: false,
            control_plane_trusts_stored: false,
        })
    }

    fn suffixes(plan: &Plan) -> Vec<&'static str> {
        let mut s: Vec<_> = plan.writes.iter().map(|w| w.suffix).collect();
        s.sort_unstable();
        s
    }

    #[test]
    fn an_empty_tenant_gets_every_secret_and_a_second_pass_writes_nothing() {
        let ca = datastore_ca();
        let mut stored = StoredSecrets::new();
        let first = run(&stored, &ca, false);
        assert!(first.problems.is_empty(), "{:?}", first.problems);
        assert_eq!(
            suffixes(&first),
            [
                "admin-kubeconfig",
                "api-server-certificate",
                "api-server-kubelet-client-certificate",
                "ca",
                "controller-manager-kubeconfig",
                "datastore-certificate",
                "front-proxy-ca-certificate",
                "front-proxy-client-certificate",
                "konnectivity-certificate",
                "konnectivity-kubeconfig",
                "sa-certificate",
                "scheduler-kubeconfig",
            ]
        );
        // CAs and the key pair come before anything they sign.
        let position = |s: &str| {
            first
                .writes
                .iter()
                .position(|w| w.suffix == s)
                .unwrap_or(usize::MAX)
        };
        assert!(position("ca") < position("api-server-certificate"));
        assert!(position("front-proxy-ca-certificate") < position("front-proxy-client-certificate"));
        store(&mut stored, &first);
        let second = run(&stored, &ca, true);
        assert!(
            second.writes.is_empty(),
            "idempotent, but rewrote {:?}",
            suffixes(&second)
        );
    }

    #[test]
    fn a_rotation_request_reissues_that_secret_only_and_stamps_the_time() {
        let ca = datastore_ca();
        let mut stored = StoredSecrets::new();
        let first = run(&stored, &ca, false);
        store(&mut stored, &first);
        stored
            .get_mut("front-proxy-client-certificate")
            .expect("stored")
            .rotate_requested = true;
        let plan = run(&stored, &ca, true);
        assert_eq!(suffixes(&plan), ["front-proxy-client-certificate"]);
        assert_eq!(plan.writes[0].reason, Reason::RotationRequested);
        let stamp = plan.writes[0].rotate_annotation.clone().expect("rotation time");
        assert!(stamp.ends_with('Z') && stamp.len() == 20, "RFC 3339: {stamp}");
        assert!(!plan.rotates_tenant_ca());
    }

    /// A kubelet client certificate as kamaji-rs 0.1.0 issued it: O=kubeadm:cluster-admins.
    fn cluster_admin_kubelet_client(stored: &StoredSecrets) -> SecretData {
        let ca_data = &stored.get("ca").expect("CA stored").data;
        let ca = Authority::from_pem(&ca_data["tls.crt"], Some(&ca_data["tls.key"])).expect("CA");
        let request = crate::pki::LeafRequest {
            common_name: "kube-apiserver-kubelet-client".into(),
            organization: Some("kubeadm:cluster-admins".into()),
            usages: vec![crate::pki::catalog::Usage::ClientAuth],
            dns_names: vec![],
            ip_addresses: vec![],
        };
        let issued = ca.sign(&request, &params()).expect("old certificate");
        SecretData::from([
            (
                "apiserver-kubelet-client.crt".to_string(),
                issued.certificate_pem.into_bytes(),
            ),
            (
                "apiserver-kubelet-client.key".to_string(),
                issued.key.pem().as_bytes().to_vec(),
            ),
        ])
    }

    #[test]
    fn a_cluster_admin_kubelet_client_is_kept_until_the_tenant_binds_it_then_reissued_without_the_group() {
        let ca = datastore_ca();
        let mut stored = StoredSecrets::new();
        let first = run(&stored, &ca, false);
        store(&mut stored, &first);
        let old = cluster_admin_kubelet_client(&stored);
        stored
            .get_mut("api-server-kubelet-client-certificate")
            .expect("stored")
            .data = old;
        let mut unbound = tenant();
        unbound.superseded_groups_granted = false;
        let before_binding = plan(&Inputs {
            tenant: &unbound,
            stored: &stored,
            datastore: DatastoreSource::Ca(&ca),
            provisioned: true,
            params: params(),
            service_account_grace: std::time::Duration::from_secs(3600),
            complete_ca_rotation: false,
            ca_rotation_start_percent: 80,
            control_plane_runs_stored: true,
            control_plane_trusts_stored: true,
        });
        assert!(
            before_binding.writes.is_empty(),
            "access would lapse: re-issued {:?} before the tenant grants the user",
            suffixes(&before_binding)
        );
        let after_binding = run(&stored, &ca, true);
        assert_eq!(
            suffixes(&after_binding),
            ["api-server-kubelet-client-certificate"]
        );
        let pem = &after_binding.writes[0].data["apiserver-kubelet-client.crt"];
        let der = crate::pki::first_certificate_der(pem).expect("PEM");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("X.509");
        assert_eq!(
            cert.subject().iter_organization().count(),
            0,
            "no group: least privilege"
        );
    }

    fn with_completion(stored: &StoredSecrets, ca: &Authority) -> Plan {
        plan(&Inputs {
            tenant: &tenant(),
            stored,
            datastore: DatastoreSource::Ca(ca),
            provisioned: true,
            params: params(),
            service_account_grace: std::time::Duration::from_secs(3600),
            complete_ca_rotation: true,
            ca_rotation_start_percent: 80,
            control_plane_runs_stored: true,
            control_plane_trusts_stored: true,
        })
    }

    #[test]
    fn a_ca_rotation_prepares_client_certificates_first_and_serving_ones_at_completion() {
        let ca = datastore_ca();
        let mut stored = StoredSecrets::new();
        let first = run(&stored, &ca, false);
        store(&mut stored, &first);
        stored.get_mut("ca").expect("stored").rotate_requested = true;
        let prepare = run(&stored, &ca, true);
        assert!(prepare.rotates_tenant_ca());
        assert!(prepare.leaves_ca_prepared());
        let kubeconfigs = [
            "admin-kubeconfig",
            "controller-manager-kubeconfig",
            "konnectivity-kubeconfig",
            "scheduler-kubeconfig",
        ];
        let mut trusting = kubeconfigs.to_vec();
        trusting.insert(1, "ca");
        assert_eq!(
            suffixes(&prepare),
            trusting,
            "first the bundles: kubeconfigs carry both CAs, their client certificates \
             still from the old CA, which the running control plane trusts"
        );
        let old_ca = Authority::from_pem(&stored["ca"].data["ca.crt"], None).expect("old CA");
        let client_pem = |plan: &Plan, suffix: &str| {
            let data = &plan
                .writes
                .iter()
                .find(|w| w.suffix == suffix)
                .expect("written")
                .data;
            let kubeconfig = Kubeconfig::parse(&data["admin.conf"]).expect("kubeconfig");
            kubeconfig.client_credentials().expect("credentials")[0]
                .certificate_pem
                .clone()
        };
        assert!(
            old_ca
                .verify_pem(&client_pem(&prepare, "admin-kubeconfig"), None, params().now)
                .is_ok()
        );
        store(&mut stored, &prepare);
        assert!(
            run_rolling(&stored, &ca).writes.is_empty(),
            "nothing moves while the control plane rolls out with the bundle"
        );
        let moved = run(&stored, &ca, true);
        let mut clients = kubeconfigs.to_vec();
        clients.insert(1, "api-server-kubelet-client-certificate");
        assert_eq!(
            suffixes(&moved),
            clients,
            "once it runs with the bundle, client certificates move to the new CA; serving \
             ones (apiserver, konnectivity), front-proxy (own CA), datastore (DataStore CA) \
             and the SA pair stay"
        );
        let new_ca = Authority::from_pem(&stored["ca"].data["tls.crt"], None).expect("new CA");
        assert!(
            new_ca
                .verify_pem(&client_pem(&moved, "admin-kubeconfig"), None, params().now)
                .is_ok()
        );
        store(&mut stored, &moved);
        assert!(
            run_rolling(&stored, &ca).writes.is_empty(),
            "no way back while that rolls out"
        );
        assert!(
            run(&stored, &ca, true).writes.is_empty(),
            "prepared is a steady state"
        );
        let again = {
            stored.get_mut("ca").expect("stored").rotate_requested = true;
            let plan = run(&stored, &ca, true);
            stored.get_mut("ca").expect("stored").rotate_requested = false;
            plan
        };
        assert_eq!(
            suffixes(&again),
            ["ca"],
            "a second request is answered by the rotation in progress"
        );
        assert_eq!(again.writes[0].reason, Reason::RotationInProgress);
        assert_eq!(again.writes[0].data, stored["ca"].data, "no second new CA");

        // Completion, first step: serving certificates move to the new CA (carrying it
        // cross-signed by the old one); both CAs stay trusted.
        let serving_step = with_completion(&stored, &ca);
        assert!(!serving_step.rotates_tenant_ca() && serving_step.leaves_ca_prepared());
        assert_eq!(
            suffixes(&serving_step),
            ["api-server-certificate", "konnectivity-certificate"],
            "serving certificates move first"
        );
        let serving = &serving_step
            .writes
            .iter()
            .find(|w| w.suffix == "api-server-certificate")
            .expect("apiserver")
            .data["apiserver.crt"];
        assert_eq!(
            crate::pki::certificates_der(serving).len(),
            2,
            "leaf and cross-signed CA"
        );
        assert!(new_ca.verify_pem(serving, None, params().now).is_ok());
        store(&mut stored, &serving_step);
        assert!(
            run_rolling(&stored, &ca).writes.is_empty(),
            "the old CA stays while the new serving certificates roll out"
        );

        // Second step, by itself once they run: the old CA retires and kubeconfigs
        // drop it from their bundle.
        let retire = run(&stored, &ca, true);
        assert!(retire.rotates_tenant_ca() && !retire.leaves_ca_prepared());
        let mut retired = kubeconfigs.to_vec();
        retired.insert(1, "ca");
        assert_eq!(suffixes(&retire), retired);
        store(&mut stored, &retire);
        assert!(
            run(&stored, &ca, true).writes.is_empty(),
            "completed is a steady state"
        );
    }

    #[test]
    fn a_ca_rotates_by_itself_once_most_of_its_lifetime_has_passed() {
        let ca = datastore_ca();
        let mut stored = StoredSecrets::new();
        // CAs valid one hour: 80 % of it is 48 minutes after their (backdated) start.
        let mut short = params();
        short.ca_validity = std::time::Duration::from_secs(3600);
        let plan_at = |stored: &StoredSecrets, now: OffsetDateTime| {
            plan(&Inputs {
                tenant: &tenant(),
                stored,
                datastore: DatastoreSource::Ca(&ca),
                provisioned: true,
                params: IssueParams { now, ..short },
                service_account_grace: std::time::Duration::from_secs(3600),
                complete_ca_rotation: false,
                ca_rotation_start_percent: 80,
                control_plane_runs_stored: true,
                control_plane_trusts_stored: true,
            })
        };
        let first = plan_at(&stored, short.now);
        store(&mut stored, &first);
        let early = plan_at(&stored, short.now);
        assert!(early.writes.is_empty());
        let start = early.next_change.expect("a timer at the start of the rotation");
        let expected = short.now + time::Duration::minutes(48);
        assert!(
            (start - expected).abs() < time::Duration::minutes(2),
            "{start} vs {expected}"
        );
        let due = plan_at(&stored, start + time::Duration::seconds(1));
        let ca_write = due
            .writes
            .iter()
            .find(|w| w.suffix == "ca")
            .expect("the CA rotates");
        assert_eq!(ca_write.reason, Reason::CaLifetime);
        assert!(due.leaves_ca_prepared(), "by the same two phases");
    }

    #[test]
    fn an_unreadable_ca_is_reported_and_neither_it_nor_its_leaves_are_touched() {
        let ca = datastore_ca();
        let mut stored = StoredSecrets::new();
        let first = run(&stored, &ca, false);
        store(&mut stored, &first);
        stored
            .get_mut("ca")
            .expect("stored")
            .data
            .insert("ca.crt".into(), b"garbage".to_vec());
        stored.remove("api-server-certificate");
        let plan = run(&stored, &ca, true);
        assert!(
            plan.writes
                .iter()
                .all(|w| w.suffix != "ca" && w.suffix != "api-server-certificate")
        );
        assert!(
            plan.problems
                .iter()
                .any(|p| matches!(p, Problem::Unreadable { secret, .. } if secret == "k8s-133-ca")),
            "{:?}",
            plan.problems
        );
    }

    #[test]
    fn a_ca_without_its_key_is_used_as_is_and_its_missing_leaves_are_reported() {
        let ca = datastore_ca();
        let mut stored = StoredSecrets::new();
        let first = run(&stored, &ca, false);
        store(&mut stored, &first);
        let tenant_ca = stored.get_mut("ca").expect("stored");
        tenant_ca.data.remove("ca.key");
        tenant_ca.data.remove("tls.key");
        assert!(
            run(&stored, &ca, true).writes.is_empty(),
            "valid leaves of an external CA are kept"
        );
        stored.remove("scheduler-kubeconfig");
        let plan = run(&stored, &ca, true);
        assert!(plan.writes.is_empty());
        assert!(
            plan.problems
                .iter()
                .any(|p| matches!(p, Problem::CaWithoutKey { .. })),
            "{:?}",
            plan.problems
        );
    }

    #[test]
    fn a_deleted_ca_after_provisioning_is_a_rotation_as_in_kamaji() {
        let ca = datastore_ca();
        let mut stored = StoredSecrets::new();
        let first = run(&stored, &ca, false);
        store(&mut stored, &first);
        stored.remove("ca");
        let plan = run(&stored, &ca, true);
        assert!(plan.rotates_tenant_ca());
        assert_eq!(
            plan.writes
                .iter()
                .find(|w| w.suffix == "ca")
                .map(|w| w.reason.clone()),
            Some(Reason::CaDeleted)
        );
    }

    #[test]
    fn a_service_account_rotation_keeps_the_previous_key_verifying_until_the_grace_period_ends() {
        let ca = datastore_ca();
        let mut stored = StoredSecrets::new();
        let first = run(&stored, &ca, false);
        store(&mut stored, &first);
        let old_public = stored["sa-certificate"].data["sa.pub"].clone();
        stored.get_mut("sa-certificate").expect("stored").rotate_requested = true;
        let rotated = run(&stored, &ca, true);
        assert_eq!(
            suffixes(&rotated),
            ["sa-certificate"],
            "nothing the key signs is re-issued"
        );
        let data = &rotated.writes[0].data;
        assert_eq!(issue::previous_service_account_keys(&SERVICE_ACCOUNT, data), 1);
        assert!(
            issue::check_service_account(&SERVICE_ACCOUNT, data).is_ok(),
            "sa.pub starts with sa.key's public key"
        );
        let old = String::from_utf8(old_public).expect("PEM");
        assert!(
            String::from_utf8_lossy(&data["sa.pub"]).contains(old.trim()),
            "the previous key still verifies"
        );
        store(&mut stored, &rotated);

        // Within the grace period (an hour in these tests): kept, with a timer at its end.
        let kept = run(&stored, &ca, true);
        assert!(kept.writes.is_empty());
        let due = kept.next_change.expect("the retirement is scheduled");
        assert!(due > params().now + std::time::Duration::from_secs(3500));

        // Rotated more than the grace period ago: the previous key is dropped, the signing key stays.
        let long_ago = rfc3339(params().now - std::time::Duration::from_secs(7200));
        stored
            .get_mut("sa-certificate")
            .expect("stored")
            .rotate_annotation = Some(long_ago.clone());
        let retired = run(&stored, &ca, true);
        assert_eq!(suffixes(&retired), ["sa-certificate"]);
        let data = &retired.writes[0].data;
        assert_eq!(issue::previous_service_account_keys(&SERVICE_ACCOUNT, data), 0);
        assert_eq!(
            data["sa.key"], stored["sa-certificate"].data["sa.key"],
            "the signing key is not replaced"
        );
        assert_eq!(
            retired.writes[0].rotate_annotation.as_deref(),
            Some(long_ago.as_str())
        );
    }
}
