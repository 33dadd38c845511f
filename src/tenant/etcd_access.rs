//! A tenant's access to an etcd DataStore with authentication on, as values: the
//! etcd user (the CN of the tenant's datastore certificate), the role (named after
//! the schema, as Kamaji names it) and the key range the role may read and write.

use std::time::Duration;

use time::OffsetDateTime;

/// The finalizer a TenantControlPlane carries while kamaji-rs holds an etcd user and
/// role for it: Kamaji's, so a tenant Kamaji created is cleaned up the same way.
pub const FINALIZER: &str = "finalizer.kamaji.clastix.io";

/// How long a deleted tenant waits for its DataStore to answer. After that its
/// finalizer is removed anyway (a Warning names what was left in etcd): an etcd that
/// is gone for good must not keep a TenantControlPlane forever.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(600);

/// What the tenant is given in etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdAccess {
    /// The etcd user: the tenant's datastore user, the CN of its client certificate.
    pub user: String,
    /// The role granted to the user: the schema.
    pub role: String,
    /// First key of the range: `/<schema>/`.
    pub key: Vec<u8>,
    /// End of the range (exclusive): `/<schema>0`, so `/<schema>x/` of another
    /// tenant whose schema starts the same is outside.
    pub range_end: Vec<u8>,
}

impl EtcdAccess {
    /// The access of a tenant with this schema and user. The API server's
    /// `--etcd-prefix` is `/<schema>`: every key it writes starts with `/<schema>/`.
    pub fn new(schema: &str, user: &str) -> Self {
        let key = format!("/{schema}/").into_bytes();
        Self {
            user: user.to_string(),
            role: schema.to_string(),
            range_end: prefix_range_end(&key),
            key,
        }
    }

    /// `role R on [key, range_end) for user U`, for messages (no key material).
    pub fn describe(&self) -> String {
        format!(
            "etcd user {} and role {} (readwrite on {})",
            self.user,
            self.role,
            String::from_utf8_lossy(&self.key)
        )
    }
}

/// The end of the range of every key starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`): the prefix with its last byte below 0xff incremented and
/// what follows dropped; `\0` (every key) when there is no such byte.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            end
        }
        None => vec![0],
    }
}

/// Whether a tenant deleted at `deleted_at` has waited [`CLEANUP_GRACE`] for its
/// DataStore: its finalizer is then released even though etcd was not cleaned up.
pub fn cleanup_grace_over(deleted_at: OffsetDateTime, now: OffsetDateTime) -> bool {
    now - deleted_at >= CLEANUP_GRACE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_covers_the_schema_prefix_and_nothing_of_a_longer_schema() {
        let access = EtcdAccess::new("default_k8s_133", "default_k8s_133");
        assert_eq!(access.key, b"/default_k8s_133/");
        assert_eq!(access.range_end, b"/default_k8s_1330");
        assert_eq!(access.role, "default_k8s_133");
        let inside = |k: &[u8]| access.key.as_slice() <= k && k < access.range_end.as_slice();
        assert!(inside(b"/default_k8s_133/pods/default/x"));
        assert!(!inside(b"/default_k8s_1334/pods/default/x"));
        assert!(!inside(b"/default_k8s_13/pods"));
        assert!(!inside(b"/default_k8s_133"));
    }

    #[test]
    fn the_user_is_the_datastore_user_and_the_role_the_schema() {
        let access = EtcdAccess::new("tenants_a", "alice");
        assert_eq!(
            (access.user.as_str(), access.role.as_str()),
            ("alice", "tenants_a")
        );
    }

    #[test]
    fn range_end_as_etcd_computes_it() {
        assert_eq!(prefix_range_end(b"/a/"), b"/a0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_range_end(b""), b"\0");
    }

    #[test]
    fn the_grace_is_counted_from_the_deletion() {
        let deleted = OffsetDateTime::UNIX_EPOCH;
        assert!(!cleanup_grace_over(deleted, deleted + Duration::from_secs(599)));
        assert!(cleanup_grace_over(deleted, deleted + CLEANUP_GRACE));
    }
}
