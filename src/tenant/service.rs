//! The Service `<tcp>` in front of the tenant's API server, and the
//! control-plane endpoint it yields.

use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::meta::{TenantRef, suffix};
use crate::api::TenantControlPlaneSpec;

/// The Service exposing the API server (and konnectivity-server with the addon).
pub fn desired(tenant: &TenantRef, spec: &TenantControlPlaneSpec) -> Service {
    let mut meta = tenant.object_meta(suffix::SERVICE);
    // The Service is named after the tenant itself, as in Kamaji.
    meta.name = Some(tenant.name.clone());
    let mut ports = vec![ServicePort {
        name: Some("kube-apiserver".into()),
        port: spec.network_profile.port,
        target_port: Some(IntOrString::Int(spec.network_profile.port)),
        protocol: Some("TCP".into()),
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
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(spec.control_plane.service.service_type.as_str().into()),
            selector: Some(tenant.pod_selector()),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
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
