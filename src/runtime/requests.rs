//! What a request to the API server is, for the request counter: its verb (as
//! Kubernetes audit logs name it) and its resource, read from the method and path.

use http::{Method, Uri};

/// `(verb, resource)` of a request: `GET .../secrets/x` is `get secrets`,
/// `GET .../secrets` is `list`, with `watch=true` it is `watch`.
pub fn classify(method: &Method, uri: &Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/<group>/<version>/..., then optionally namespaces/<ns>/.
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = rest.first().copied().unwrap_or("other").to_string();
    let named = rest.len() > 1;
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    };
    (verb, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(method: Method, uri: &str) -> (&'static str, String) {
        classify(&method, &uri.parse().expect("uri"))
    }

    #[test]
    fn verbs_and_resources_as_audit_logs_name_them() {
        assert_eq!(
            classified(Method::GET, "/api/v1/namespaces/ns/secrets/a-ca"),
            ("get", "secrets".into())
        );
        assert_eq!(
            classified(Method::GET, "/api/v1/namespaces/ns/secrets?labelSelector=x"),
            ("list", "secrets".into())
        );
        assert_eq!(
            classified(
                Method::GET,
                "/apis/apps/v1/deployments?watch=true&resourceVersion=1"
            ),
            ("watch", "deployments".into())
        );
        assert_eq!(
            classified(
                Method::PATCH,
                "/apis/kamaji.clastix.io/v1alpha1/namespaces/ns/tenantcontrolplanes/t/status"
            ),
            ("patch", "tenantcontrolplanes".into())
        );
        assert_eq!(
            classified(Method::GET, "/apis/kamaji.clastix.io/v1alpha1/datastores/default"),
            ("get", "datastores".into())
        );
        assert_eq!(classified(Method::GET, "/version"), ("list", "other".into()));
    }
}
