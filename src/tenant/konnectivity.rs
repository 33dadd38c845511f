//! The control-plane side of the konnectivity addon, as Kamaji builds it
//! (internal/resources/konnectivity, internal/builders/controlplane/konnectivity_server.go):
//! the API server sends its `cluster` egress (to nodes: logs, exec, port-forward,
//! the proxy subresources) over gRPC to the konnectivity-server in its pod,
//! through a Unix socket on a volume both containers mount; the server hands the
//! traffic to the agents connected on its agent port.
//!
//! The EgressSelectorConfiguration lives in the ConfigMap
//! `<tcp>-konnectivity-egress-selector-configuration` (Kamaji's name and key), which
//! the API server's files volume projects to [`EGRESS_SELECTOR_CONFIG_FILE`].
//!
//! Pure: the TCP reconciler applies the ConfigMap (and removes it with the addon).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::meta::TenantRef;

/// Suffix (and label component) of the ConfigMap: `<tcp>-konnectivity-egress-selector-configuration`.
pub const EGRESS_SELECTOR_SUFFIX: &str = "konnectivity-egress-selector-configuration";
/// The ConfigMap's data key.
pub const EGRESS_SELECTOR_KEY: &str = "egress-selector-configuration.yaml";
/// Where the API server reads it (Kamaji's path), below the files volume at `/etc/kubernetes`.
pub const EGRESS_SELECTOR_CONFIG_FILE: &str =
    "/etc/kubernetes/konnectivity/configurations/egress-selector-configuration.yaml";
/// The directory both containers mount (an in-memory emptyDir).
pub const UDS_DIR: &str = "/run/konnectivity";
/// The socket konnectivity-server listens on and the API server dials.
pub const UDS_NAME: &str = "/run/konnectivity/konnectivity-server.socket";
/// The name of that volume.
pub const UDS_VOLUME: &str = "konnectivity-uds";
/// The agent's ServiceAccount in the tenant's `kube-system` (Kamaji's `AgentName`).
pub const AGENT_NAME: &str = "konnectivity-agent";
/// The namespace of the agent and its ServiceAccount.
pub const AGENT_NAMESPACE: &str = "kube-system";
/// The server's user (its kubeconfig's certificate CN), the audience of the agents'
/// tokens and the name of the ClusterRoleBinding that lets it review them.
pub const SERVER_USER: &str = "system:konnectivity-server";
/// konnectivity-server's admin port (Kamaji's).
pub const ADMIN_PORT: i32 = 8133;
/// konnectivity-server's health port, `/healthz` over HTTP (Kamaji's).
pub const HEALTH_PORT: i32 = 8134;

/// The EgressSelectorConfiguration: `cluster` egress over gRPC on [`UDS_NAME`].
/// (The API server's own types, `apiserver.k8s.io/v1beta1`; the other egresses,
/// `controlplane` and `etcd`, stay direct.)
pub fn egress_selector_configuration() -> String {
    format!(
        "apiVersion: apiserver.k8s.io/v1beta1\nkind: EgressSelectorConfiguration\negressSelections:\n\
         - name: cluster\n  connection:\n    proxyProtocol: GRPC\n    transport:\n      uds:\n        \
         udsName: {UDS_NAME}\n"
    )
}

/// The ConfigMap `<tcp>-konnectivity-egress-selector-configuration`.
pub fn egress_selector_config_map(tenant: &TenantRef) -> ConfigMap {
    ConfigMap {
        metadata: tenant.object_meta(EGRESS_SELECTOR_SUFFIX),
        data: Some(BTreeMap::from([(
            EGRESS_SELECTOR_KEY.to_string(),
            egress_selector_configuration(),
        )])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::meta::tests::tenant;

    #[test]
    fn the_cluster_egress_goes_over_grpc_on_the_socket_the_server_listens_on() {
        let config = egress_selector_configuration();
        let parsed: serde_json::Value = serde_saphyr::from_str(&config).expect("YAML");
        assert_eq!(parsed["kind"], "EgressSelectorConfiguration");
        let selection = &parsed["egressSelections"][0];
        assert_eq!(selection["name"], "cluster");
        assert_eq!(selection["connection"]["proxyProtocol"], "GRPC");
        assert_eq!(selection["connection"]["transport"]["uds"]["udsName"], UDS_NAME);
        assert!(UDS_NAME.starts_with(UDS_DIR));
    }

    #[test]
    fn the_config_map_is_the_tenants_under_kamajis_name() {
        let map = egress_selector_config_map(&tenant("k8s-133", "tenants"));
        assert_eq!(
            map.metadata.name.as_deref(),
            Some("k8s-133-konnectivity-egress-selector-configuration")
        );
        assert_eq!(map.metadata.namespace.as_deref(), Some("tenants"));
        assert!(
            map.data
                .as_ref()
                .is_some_and(|d| d.contains_key(EGRESS_SELECTOR_KEY))
        );
        assert!(EGRESS_SELECTOR_CONFIG_FILE.ends_with(EGRESS_SELECTOR_KEY));
    }
}
