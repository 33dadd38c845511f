//! `spec.writePermissions` inside the tenant cluster: the writes a `WriteLimited`
//! tenant refuses, as desired objects of the tenant (not the management cluster).
//!
//! Kamaji installs a `ValidatingWebhookConfiguration` that calls back into its own
//! webhook server. kamaji-rs uses a `ValidatingAdmissionPolicy` (GA since 1.30)
//! instead: the tenant's API server refuses the writes by itself, so nothing
//! depends on a webhook endpoint being reachable from the tenant. What is refused
//! is Kamaji's rule set:
//!
//! - `kamaji-write-permissions`: the blocked operations, on every resource,
//!   outside `kube-system` and `kube-node-lease` (cluster-scoped ones included);
//! - `kamaji-write-permissions-leases`: creating or deleting anything in
//!   `kube-node-lease` (existing nodes keep renewing their Lease).
//!
//! The operator's own identity (`kubernetes-super-admin`, the tenant's break-glass
//! `system:masters` credential that may delete these policies anyway) is not
//! refused, so kubeadm's objects stay in place while writes are limited.
//!
//! Pure: the tenant-cluster controller applies these with server-side apply.

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use serde_json::{Value, json};

use crate::{api::tenant_control_plane::WritePermissions, tenant::bootstrap::MANAGED_BY};

/// The policy (and its binding) refusing the blocked operations.
pub const CATCH_ALL: &str = "kamaji-write-permissions";
/// The policy (and its binding) refusing creations and deletions of node Leases.
pub const NODE_LEASES: &str = "kamaji-write-permissions-leases";
/// What a refused request is told: Kamaji's wording.
pub const DENIED: &str = "the current Control Plane has limited write permissions, current changes are blocked: \
                          removing the webhook may lead to an inconsistent state upon its completion";
/// The identity the operator uses in the tenant (CN of `super-admin.conf`).
const OPERATOR_USER: &str = "kubernetes-super-admin";

/// One policy and the binding that enforces it.
#[derive(Clone, Debug)]
pub struct Enforced {
    /// The policy.
    pub policy: ValidatingAdmissionPolicy,
    /// Its binding (`validationActions: [Deny]`).
    pub binding: ValidatingAdmissionPolicyBinding,
}

/// The policies `permissions` needs; empty when nothing is blocked (they are removed).
pub fn desired(permissions: Option<&WritePermissions>) -> Vec<Enforced> {
    let operations = permissions
        .map(WritePermissions::blocked_operations)
        .unwrap_or_default();
    if operations.is_empty() {
        return Vec::new();
    }
    let catch_all = enforced(
        CATCH_ALL,
        &operations,
        json!({"matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["kube-system", "kube-node-lease"],
        }]}),
        "*",
    );
    let node_leases = enforced(
        NODE_LEASES,
        &["CREATE", "DELETE"],
        json!({"matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "In",
            "values": ["kube-node-lease"],
        }]}),
        "Namespaced",
    );
    vec![catch_all, node_leases]
}

fn enforced(name: &str, operations: &[&str], namespace_selector: Value, scope: &str) -> Enforced {
    let metadata = json!({"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}});
    // Built from our own constants only: a failure is a bug here, caught by the tests.
    let policy = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": metadata,
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": namespace_selector,
                "resourceRules": [{
                    "apiGroups": ["*"],
                    "apiVersions": ["*"],
                    "resources": ["*"],
                    "operations": operations,
                    "scope": scope,
                }],
            },
            "matchConditions": [{
                "name": "not-the-operator",
                "expression": format!("request.userInfo.username != '{OPERATOR_USER}'"),
            }],
            "validations": [{"expression": "false", "message": DENIED, "reason": "Forbidden"}],
        },
    }))
    .expect("a well-formed ValidatingAdmissionPolicy");
    let binding = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": metadata,
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }))
    .expect("a well-formed ValidatingAdmissionPolicyBinding");
    Enforced { policy, binding }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permissions(create: bool, update: bool, delete: bool) -> WritePermissions {
        WritePermissions {
            block_creation: Some(create),
            block_update: Some(update),
            block_deletion: Some(delete),
        }
    }

    fn operations(enforced: &Enforced) -> Vec<String> {
        let spec = enforced.policy.spec.as_ref().expect("spec");
        let rules = spec.match_constraints.as_ref().expect("constraints");
        rules.resource_rules.as_ref().expect("rules")[0]
            .operations
            .clone()
            .unwrap_or_default()
    }

    #[test]
    fn nothing_blocked_means_no_policy() {
        assert!(desired(None).is_empty());
        assert!(desired(Some(&permissions(false, false, false))).is_empty());
    }

    #[test]
    fn the_blocked_operations_are_refused_outside_kube_system_and_node_leases_are_frozen() {
        let policies = desired(Some(&permissions(true, false, true)));
        let names: Vec<_> = policies.iter().map(|p| p.policy.metadata.name.clone()).collect();
        assert_eq!(names, [Some(CATCH_ALL.into()), Some(NODE_LEASES.into())]);
        assert_eq!(operations(&policies[0]), ["CREATE", "DELETE"]);
        assert_eq!(operations(&policies[1]), ["CREATE", "DELETE"]);
        for p in &policies {
            let binding = &p.binding.spec;
            assert_eq!(Some(&binding.policy_name), p.policy.metadata.name.as_ref());
            assert_eq!(binding.validation_actions, ["Deny"]);
            let spec = p.policy.spec.as_ref().expect("spec");
            let validations = spec.validations.as_ref().expect("validations");
            assert_eq!(validations[0].expression, "false");
            assert_eq!(validations[0].message.as_deref(), Some(DENIED));
        }
    }
}
