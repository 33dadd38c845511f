//! Which operator a tenant belongs to, so that two never reconcile the same one.
//!
//! - kamaji-rs claims a tenant it is first to see with the annotation
//!   [`MANAGED_BY`] = its identity (`<leader-election namespace>/<leader-election id>`);
//!   another kamaji-rs (another install, another Lease) leaves a claimed tenant alone.
//! - Kamaji marks the tenants it runs with its soot finalizer ([`KAMAJI_FINALIZER`]),
//!   which only Kamaji sets and only Kamaji removes: such a tenant is Kamaji's, whatever
//!   the annotation says, until a person moves it (Kamaji stopped, the finalizer removed).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The annotation naming the kamaji-rs instance that owns a tenant.
pub const MANAGED_BY: &str = "kamaji-rs.clastix.io/managed-by";
/// The finalizer Kamaji puts on every tenant whose cluster it manages.
pub const KAMAJI_FINALIZER: &str = "finalizer.kamaji.clastix.io/soot";

/// Who owns a tenant, seen from one kamaji-rs instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This instance.
    Us,
    /// Nobody yet: this instance may claim it.
    Unclaimed,
    /// Another kamaji-rs instance (its identity).
    Operator(String),
    /// Kamaji.
    Kamaji,
}

/// Who owns the tenant with this metadata, for the instance `identity`.
pub fn owner(meta: &ObjectMeta, identity: &str) -> Owner {
    if meta.finalizers.iter().flatten().any(|f| f == KAMAJI_FINALIZER) {
        return Owner::Kamaji;
    }
    match meta.annotations.as_ref().and_then(|a| a.get(MANAGED_BY)) {
        None => Owner::Unclaimed,
        Some(claim) if claim.is_empty() => Owner::Unclaimed,
        Some(claim) if claim == identity => Owner::Us,
        Some(claim) => Owner::Operator(claim.clone()),
    }
}

/// What a person reads when this instance leaves a tenant alone.
pub fn not_ours_note(owner: &Owner, namespace: &str, name: &str) -> Option<String> {
    match owner {
        Owner::Us | Owner::Unclaimed => None,
        Owner::Operator(other) => Some(format!(
            "tenant {namespace}/{name} is managed by the kamaji-rs instance {other} ({MANAGED_BY}); this \
             instance leaves it alone. To move it, stop that instance and set the annotation to this one's \
             identity"
        )),
        Owner::Kamaji => Some(format!(
            "tenant {namespace}/{name} is managed by Kamaji (finalizer {KAMAJI_FINALIZER}); kamaji-rs leaves \
             it alone. To move it to kamaji-rs, stop Kamaji, then remove that finalizer from the \
             TenantControlPlane"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(claim: Option<&str>, finalizers: &[&str]) -> ObjectMeta {
        ObjectMeta {
            annotations: claim.map(|c| [(MANAGED_BY.to_string(), c.to_string())].into()),
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_claim_decides_between_kamaji_rs_instances_and_kamaji_s_finalizer_beats_any_claim() {
        let me = "kamaji-system/kamaji-rs";
        assert_eq!(owner(&meta(None, &[]), me), Owner::Unclaimed);
        assert_eq!(owner(&meta(Some(me), &[]), me), Owner::Us);
        assert_eq!(
            owner(&meta(Some("team-b/kamaji-rs"), &[]), me),
            Owner::Operator("team-b/kamaji-rs".into())
        );
        assert_eq!(owner(&meta(Some(me), &[KAMAJI_FINALIZER]), me), Owner::Kamaji);
        // kamaji-rs sets Kamaji's datastore finalizer itself: it says nothing about Kamaji.
        assert_eq!(
            owner(&meta(Some(me), &["finalizer.kamaji.clastix.io"]), me),
            Owner::Us
        );
    }
}
