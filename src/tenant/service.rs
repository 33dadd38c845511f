//! The Service `<tcp>` in front of the tenant's API server, and the
//! control-plane endpoint it yields.

use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::meta::{TenantRef, suffix};
use crate::api::{TenantControlPlaneSpec, tenant_control_plane::ServiceType};

/// The Service exposing the API server (and konnectivity-server with the addon),
/// with Kamaji's Service customisation: extra labels and annotations, extra
/// ports, and the NodePort and LoadBalancer settings of its service type.
pub fn desired(tenant: &TenantRef, spec: &TenantControlPlaneSpec) -> Service {
    let custom = spec.service_customisation();
    let mut meta = tenant.object_meta(suffix::SERVICE);
    // The Service is named after the tenant itself, as in Kamaji.
    meta.name = Some(tenant.name.clone());
    // Extra labels never replace ours.
    let mut labels = custom.additional_metadata.labels.clone();
    labels.extend(meta.labels.take().unwrap_or_default());
    meta.labels = Some(labels);
    if !custom.additional_metadata.annotations.is_empty() {
        meta.annotations = Some(custom.additional_metadata.annotations.clone());
    }
    let service_type = spec.control_plane.service.service_type;
    let mut ports = vec![ServicePort {
        name: Some("kube-apiserver".into()),
        port: spec.network_profile.port,
        target_port: Some(IntOrString::Int(spec.network_profile.port)),
        protocol: Some("TCP".into()),
        // Kamaji exposes a NodePort tenant on its API server port.
        node_port: (service_type == ServiceType::NodePort).then_some(spec.network_profile.port),
        ..ServicePort::default()
    }];
    if let Some(konnectivity) = spec.konnectivity() {
        ports.push(ServicePort {
            name: Some("konnectivity-server".into()),
            port: konnectivity.server.port,
            target_port: Some(IntOrString::Int(konnectivity.server.port)),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        });
    }
    ports.extend(custom.additional_ports.iter().map(|port| ServicePort {
        name: Some(port.name.clone()),
        protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
        app_protocol: port.app_protocol.clone(),
        port: port.port,
        target_port: Some(port.target_port.clone()),
        ..ServicePort::default()
    }));
    let mut service = ServiceSpec {
        type_: Some(service_type.as_str().into()),
        selector: Some(tenant.pod_selector()),
        ports: Some(ports),
        ..ServiceSpec::default()
    };
    if service_type == ServiceType::LoadBalancer {
        // Written out even when unset: clearing the field reverts to Kubernetes' default.
        service.allocate_load_balancer_node_ports =
            Some(custom.allocate_load_balancer_node_ports.unwrap_or(true));
        service.load_balancer_class = custom.load_balancer_class.clone();
        service.load_balancer_source_ranges = (!custom.load_balancer_source_ranges.is_empty())
            .then(|| custom.load_balancer_source_ranges.clone());
    }
    Service {
        metadata: meta,
        spec: Some(service),
        status: None,
    }
}

/// The host clients reach the API server at: the spec address, else the load
/// balancer's IP, else the ClusterIP. `None` until the Service has an address.
pub fn endpoint_host(spec: &TenantControlPlaneSpec, service: Option<&Service>) -> Option<String> {
    if let Some(address) = spec.network_profile.address.as_deref().filter(|a| !a.is_empty()) {
        return Some(address.to_string());
    }
    let service = service?;
    let load_balancer_ip = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|ingress| ingress.iter().find_map(|i| i.ip.clone()));
    load_balancer_ip.or_else(|| {
        service
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.clone())
            .filter(|ip| !ip.is_empty() && ip != "None")
    })
}

/// `host:port`, with IPv6 hosts in brackets: the `status.controlPlaneEndpoint` value.
pub fn endpoint(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
    use serde_json::json;

    use super::*;
    use crate::{api::tenant_control_plane::KubernetesSpec, tenant::meta::tests::tenant};

    fn spec() -> TenantControlPlaneSpec {
        TenantControlPlaneSpec {
            kubernetes: KubernetesSpec {
                version: "v1.37.2".into(),
                ..KubernetesSpec::default()
            },
            ..TenantControlPlaneSpec::default()
        }
    }

    #[test]
    fn service_is_named_after_the_tenant_and_selects_its_pods() {
        let service = desired(&tenant("k8s-133", "default"), &spec());
        assert_eq!(service.metadata.name.as_deref(), Some("k8s-133"));
        let spec = service.spec.unwrap_or_default();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.ports.unwrap_or_default()[0].port, 6443);
        assert_eq!(
            spec.selector.unwrap_or_default()["kamaji.clastix.io/name"],
            "k8s-133"
        );
    }

    fn load_balancer() -> TenantControlPlaneSpec {
        let mut spec = spec();
        spec.control_plane.service.service_type = ServiceType::LoadBalancer;
        spec
    }

    #[test]
    fn additional_metadata_labels_and_annotations_never_replace_ours() {
        let mut spec = spec();
        spec.control_plane.service.not_acted_on.insert(
            "additionalMetadata".into(),
            json!({"labels": {"team": "infra", "kamaji.clastix.io/name": "other"},
                   "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}}),
        );
        let service = desired(&tenant("k8s-133", "default"), &spec);
        let labels = service.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["team"], "infra");
        assert_eq!(labels["kamaji.clastix.io/name"], "k8s-133");
        assert_eq!(
            service.metadata.annotations.unwrap_or_default()["service.beta.kubernetes.io/aws-load-balancer-type"],
            "nlb"
        );
    }

    #[test]
    fn a_node_port_tenant_is_exposed_on_its_api_server_port() {
        let mut spec = spec();
        spec.control_plane.service.service_type = ServiceType::NodePort;
        spec.network_profile.port = 31443;
        let service = desired(&tenant("t", "ns"), &spec).spec.unwrap_or_default();
        assert_eq!(service.type_.as_deref(), Some("NodePort"));
        let ports = service.ports.unwrap_or_default();
        assert_eq!(ports[0].node_port, Some(31443));
        assert_eq!(service.allocate_load_balancer_node_ports, None);
    }

    #[test]
    fn load_balancer_settings_come_from_the_network_profile_and_the_service() {
        let mut spec = load_balancer();
        let network = &mut spec.network_profile.not_acted_on;
        network.insert("loadBalancerClass".into(), json!("example.com/internal"));
        network.insert(
            "loadBalancerSourceRanges".into(),
            json!(["192.0.2.0/24", "198.51.100.0/24"]),
        );
        spec.control_plane
            .service
            .not_acted_on
            .insert("allocateLoadBalancerNodePorts".into(), json!(false));
        let service = desired(&tenant("t", "ns"), &spec).spec.unwrap_or_default();
        assert_eq!(service.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            service.load_balancer_class.as_deref(),
            Some("example.com/internal")
        );
        assert_eq!(
            service.load_balancer_source_ranges.unwrap_or_default(),
            ["192.0.2.0/24", "198.51.100.0/24"]
        );
        assert_eq!(service.allocate_load_balancer_node_ports, Some(false));
        let plain = desired(&tenant("t", "ns"), &load_balancer())
            .spec
            .unwrap_or_default();
        assert_eq!(
            plain.allocate_load_balancer_node_ports,
            Some(true),
            "Kubernetes' default, written out"
        );
        assert_eq!(plain.load_balancer_class, None);
        assert_eq!(plain.ports.unwrap_or_default()[0].node_port, None);
    }

    #[test]
    fn additional_ports_follow_the_api_server_port() {
        let mut spec = spec();
        spec.control_plane.service.not_acted_on.insert(
            "additionalPorts".into(),
            json!([{"name": "metrics", "port": 9090, "targetPort": "metrics", "appProtocol": "http"}]),
        );
        let ports = desired(&tenant("t", "ns"), &spec)
            .spec
            .and_then(|s| s.ports)
            .unwrap_or_default();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1].name.as_deref(), Some("metrics"));
        assert_eq!(ports[1].protocol.as_deref(), Some("TCP"));
        assert_eq!(ports[1].target_port, Some(IntOrString::String("metrics".into())));
    }

    #[test]
    fn endpoint_prefers_spec_address_then_load_balancer_then_cluster_ip() {
        let mut service = desired(&tenant("t", "ns"), &spec());
        assert_eq!(endpoint_host(&spec(), Some(&service)), None);
        if let Some(spec) = service.spec.as_mut() {
            spec.cluster_ip = Some("10.0.0.7".into());
        }
        assert_eq!(
            endpoint_host(&spec(), Some(&service)).as_deref(),
            Some("10.0.0.7")
        );
        service.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("172.18.255.200".into()),
                    ..Default::default()
                }]),
            }),
            ..ServiceStatus::default()
        });
        assert_eq!(
            endpoint_host(&spec(), Some(&service)).as_deref(),
            Some("172.18.255.200")
        );
        let mut with_address = spec();
        with_address.network_profile.address = Some("192.0.2.10".into());
        assert_eq!(
            endpoint_host(&with_address, Some(&service)).as_deref(),
            Some("192.0.2.10")
        );
        assert_eq!(endpoint("192.0.2.10", 6443), "192.0.2.10:6443");
        assert_eq!(endpoint("2001:db8::1", 6443), "[2001:db8::1]:6443");
    }
}
