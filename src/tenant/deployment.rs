//! The control-plane Deployment `<tcp>`: kube-apiserver, kube-controller-manager
//! and kube-scheduler (plus konnectivity-server with the addon) with kubeadm's
//! static-pod flags, every Secret mounted read-only, and ONE pod-template
//! checksum over all mounted material, so a batch of rotations is one rollout.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Container, ContainerPort, HTTPGetAction, KeyToPath, PodSpec, PodTemplateSpec, Probe,
            ProjectedVolumeSource, SecretProjection, Volume, VolumeMount, VolumeProjection,
        },
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use sha2::{Digest, Sha256};

use super::meta::{TenantRef, suffix};
use crate::{
    api::TenantControlPlaneSpec,
    pki::catalog::{self, Component, Row},
};

/// Pod-template annotation holding the checksum of every mounted Secret.
pub const MATERIAL_CHECKSUM: &str = "kamaji.clastix.io/material-checksum";

const PKI_DIR: &str = "/etc/kubernetes/pki";
const KUBECONFIG_DIR: &str = "/etc/kubernetes";
const CONTROLLER_MANAGER_PORT: i32 = 10257;
const SCHEDULER_PORT: i32 = 10259;
const KONNECTIVITY_ADMIN_PORT: i32 = 8133;
const KONNECTIVITY_HEALTH_PORT: i32 = 8134;

/// The rows that apply to a tenant, with or without the konnectivity addon (the
/// control plane only runs on etcd DataStores, so the datastore row applies).
fn applying_rows(konnectivity: bool) -> impl Iterator<Item = Row> {
    catalog::rows().filter(move |row| row.applies(konnectivity, true))
}

/// Suffixes of every Secret the pods mount: a change to any of them must roll
/// the Deployment, so the checksum covers exactly these.
pub fn mounted_secret_suffixes(konnectivity: bool) -> Vec<&'static str> {
    let mut suffixes: Vec<&str> = applying_rows(konnectivity)
        .filter(|row| !row.mounts().is_empty())
        .map(|row| row.secret_suffix())
        .collect();
    suffixes.sort_unstable();
    suffixes.dedup();
    suffixes
}

/// The material checksum the Deployment's pod template carries now.
pub fn deployed_checksum(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(MATERIAL_CHECKSUM)
        .cloned()
}

/// Checksum over the data of the mounted Secrets, by suffix, in a stable order.
pub fn material_checksum<'a>(
    secrets: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, Vec<u8>>)>,
) -> String {
    let mut ordered: Vec<_> = secrets.into_iter().collect();
    ordered.sort_by_key(|(suffix, _)| *suffix);
    let mut hasher = Sha256::new();
    for (suffix, data) in ordered {
        hasher.update(suffix.as_bytes());
        hasher.update([0]);
        hash_data(&mut hasher, data);
    }
    hex::encode(hasher.finalize())
}

/// Checksum of one Secret's data (the `status.certificates.*.checksum` values).
pub fn data_checksum(data: &BTreeMap<String, Vec<u8>>) -> String {
    let mut hasher = Sha256::new();
    hash_data(&mut hasher, data);
    hex::encode(hasher.finalize())
}

/// Keys and length-prefixed values in key order, so no two data maps hash alike by accident.
fn hash_data(hasher: &mut Sha256, data: &BTreeMap<String, Vec<u8>>) {
    for (key, value) in data {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value);
    }
}

/// Where the tenant's state lives, as the API server needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatastoreWiring {
    /// `https://host:port` etcd endpoints.
    pub etcd_servers: Vec<String>,
    /// Key prefix of this tenant in etcd (`/<schema>`).
    pub prefix: String,
}

/// How the tenant's API server handles service-account tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenSettings {
    /// `--service-account-max-token-expiration`: the longest token lifetime the
    /// tenant allows (kubelet-mounted tokens are not extended beyond it).
    pub max_expiration: std::time::Duration,
    /// How long previous service-account public keys keep verifying after a key
    /// rotation: the max token lifetime, so no live token is refused.
    pub previous_keys_grace: std::time::Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        let day = std::time::Duration::from_secs(24 * 3600);
        Self {
            max_expiration: day,
            previous_keys_grace: day,
        }
    }
}

/// The Deployment running the tenant's control plane.
pub fn desired(
    tenant: &TenantRef,
    spec: &TenantControlPlaneSpec,
    datastore: &DatastoreWiring,
    tokens: &TokenSettings,
    material_checksum: &str,
) -> Deployment {
    let konnectivity = spec.konnectivity().is_some();
    let mut template_labels = tenant.labels(suffix::DEPLOYMENT);
    template_labels.extend(tenant.pod_selector());
    let mut containers = vec![
        api_server(spec, datastore, tokens),
        controller_manager(tenant, spec),
        scheduler(spec),
    ];
    if let Some(addon) = spec.konnectivity() {
        containers.push(konnectivity_server(tenant, spec, addon));
    }
    let components = components(konnectivity);
    let volumes = components
        .iter()
        .map(|component| files_volume(tenant, *component, konnectivity))
        .collect();
    Deployment {
        metadata: {
            let mut meta = tenant.object_meta(suffix::DEPLOYMENT);
            meta.name = Some(tenant.name.clone());
            meta
        },
        spec: DeploymentSpec {
            replicas: Some(spec.control_plane.deployment.replicas),
            selector: LabelSelector {
                match_labels: Some(tenant.pod_selector()),
                match_expressions: None,
            },
            // Surge a full new set before removing old pods: the tenant keeps
            // serving with the old material until the new pods are ready.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("100%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(BTreeMap::from([(
                        MATERIAL_CHECKSUM.to_string(),
                        material_checksum.to_string(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    volumes: Some(volumes),
                    // Tenant components talk to the management cluster's API never.
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// The containers of the pod.
fn components(konnectivity: bool) -> Vec<Component> {
    let mut components = vec![
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
    ];
    if konnectivity {
        components.push(Component::Konnectivity);
    }
    components
}

/// The volume of one container's files: every catalog mount of that container,
/// laid out below `/etc/kubernetes` as kubeadm does. A container sees only what it
/// uses (the CA key only in the controller-manager).
fn files_volume(tenant: &TenantRef, component: Component, konnectivity: bool) -> Volume {
    let mut by_secret: BTreeMap<&str, Vec<KeyToPath>> = BTreeMap::new();
    for row in applying_rows(konnectivity) {
        for m in row.mounts().iter().filter(|m| m.components.contains(&component)) {
            by_secret.entry(row.secret_suffix()).or_default().push(KeyToPath {
                key: m.key.to_string(),
                path: m.path.to_string(),
                ..KeyToPath::default()
            });
        }
    }
    let sources = by_secret
        .into_iter()
        .map(|(secret_suffix, items)| VolumeProjection {
            secret: Some(SecretProjection {
                name: tenant.object_name(secret_suffix),
                items: Some(items),
                optional: None,
            }),
            ..VolumeProjection::default()
        })
        .collect();
    Volume {
        name: volume_name(component),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(0o640),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn volume_name(component: Component) -> String {
    format!("{}-files", component.container())
}

/// The mount of a container's files volume at `/etc/kubernetes`.
fn files_mount(component: Component) -> VolumeMount {
    mount(&volume_name(component), KUBECONFIG_DIR)
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn https_probe(path: &str, port: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            scheme: Some("HTTPS".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(10),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn image(component: &str, spec: &TenantControlPlaneSpec) -> String {
    // Kamaji accepts versions without the `v` that image tags carry.
    format!("registry.k8s.io/{component}:{}", spec.kubernetes.image_tag())
}

/// The service CIDR (Kamaji's `serviceCidrs` when `serviceCidr` is empty).
fn service_cidr(spec: &TenantControlPlaneSpec) -> String {
    spec.network_profile
        .service_cidr()
        .unwrap_or_default()
        .to_string()
}

fn flags(pairs: &[(&str, String)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(flag, value)| format!("--{flag}={value}"))
        .collect()
}

fn pki(file: &str) -> String {
    format!("{PKI_DIR}/{file}")
}

fn api_server(
    spec: &TenantControlPlaneSpec,
    datastore: &DatastoreWiring,
    tokens: &TokenSettings,
) -> Container {
    let network = &spec.network_profile;
    let mut admission = vec!["NodeRestriction".to_string()];
    admission.extend(
        spec.kubernetes
            .admission_controllers
            .iter()
            .filter(|p| *p != "NodeRestriction")
            .cloned(),
    );
    let mut args = vec![("allow-privileged", "true".to_string())];
    // Only an IP can be advertised; a host name address is a SAN and the endpoint.
    if let Some(address) = network.advertise_address() {
        args.push(("advertise-address", address.to_string()));
    }
    args.extend([
        ("authorization-mode", "Node,RBAC".to_string()),
        ("client-ca-file", pki("ca.crt")),
        ("enable-admission-plugins", admission.join(",")),
        ("enable-bootstrap-token-auth", "true".to_string()),
        ("etcd-cafile", pki("etcd/ca.crt")),
        ("etcd-certfile", pki("etcd/server.crt")),
        ("etcd-keyfile", pki("etcd/server.key")),
        ("etcd-prefix", datastore.prefix.clone()),
        ("etcd-servers", datastore.etcd_servers.join(",")),
        ("etcd-compaction-interval", "0".to_string()),
        ("kubelet-client-certificate", pki("apiserver-kubelet-client.crt")),
        ("kubelet-client-key", pki("apiserver-kubelet-client.key")),
        (
            "kubelet-preferred-address-types",
            // spec.kubernetes.kubelet.preferredAddressTypes, as Kamaji passes it; a spec
            // that does not parse is reported by the tenant-side controller.
            super::kubeadm_config::kubelet_preferred_address_types(spec)
                .unwrap_or_else(|_| super::kubeadm_config::DEFAULT_PREFERRED_ADDRESS_TYPES.join(",")),
        ),
        ("proxy-client-cert-file", pki("front-proxy-client.crt")),
        ("proxy-client-key-file", pki("front-proxy-client.key")),
        ("requestheader-allowed-names", "front-proxy-client".to_string()),
        ("requestheader-client-ca-file", pki("front-proxy-ca.crt")),
        (
            "requestheader-extra-headers-prefix",
            "X-Remote-Extra-".to_string(),
        ),
        ("requestheader-group-headers", "X-Remote-Group".to_string()),
        ("requestheader-username-headers", "X-Remote-User".to_string()),
        ("secure-port", network.port.to_string()),
        (
            "service-account-issuer",
            format!("https://kubernetes.default.svc.{}", network.cluster_domain),
        ),
        // Every key in sa.pub verifies (the previous ones for a while after a rotation);
        // sa.key alone signs. Tokens live at most max-token-expiration, not extended.
        ("service-account-extend-token-expiration", "false".to_string()),
        ("service-account-key-file", pki("sa.pub")),
        (
            "service-account-max-token-expiration",
            // A Go duration: seconds are exact whatever the value.
            format!("{}s", tokens.max_expiration.as_secs()),
        ),
        ("service-account-signing-key-file", pki("sa.key")),
        ("service-cluster-ip-range", service_cidr(spec)),
        ("tls-cert-file", pki("apiserver.crt")),
        ("tls-private-key-file", pki("apiserver.key")),
    ]);
    Container {
        name: "kube-apiserver".into(),
        image: Some(image("kube-apiserver", spec)),
        command: Some(vec!["kube-apiserver".into()]),
        args: Some(flags(&args)),
        ports: Some(vec![ContainerPort {
            name: Some("kube-apiserver".into()),
            container_port: network.port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(https_probe("/livez", network.port, 8)),
        readiness_probe: Some(https_probe("/readyz", network.port, 3)),
        startup_probe: Some(https_probe("/livez", network.port, 24)),
        volume_mounts: Some(vec![files_mount(Component::ApiServer)]),
        ..Container::default()
    }
}

fn controller_manager(tenant: &TenantRef, spec: &TenantControlPlaneSpec) -> Container {
    let kubeconfig = format!("{KUBECONFIG_DIR}/controller-manager.conf");
    let network = &spec.network_profile;
    // Without a pod CIDR (Kamaji's `podCidr: ""`) the controller-manager allocates none.
    let pod_cidr = network.pod_cidr();
    let mut args = vec![("allocate-node-cidrs", pod_cidr.is_some().to_string())];
    args.extend(pod_cidr.map(|cidr| ("cluster-cidr", cidr.to_string())));
    args.extend([
        ("authentication-kubeconfig", kubeconfig.clone()),
        ("authorization-kubeconfig", kubeconfig.clone()),
        ("bind-address", "0.0.0.0".to_string()),
        ("client-ca-file", pki("ca.crt")),
        ("cluster-name", tenant.name.clone()),
        // These sign the kubelet client certificates requested inside the tenant.
        ("cluster-signing-cert-file", pki("ca.crt")),
        ("cluster-signing-key-file", pki("ca.key")),
        ("controllers", "*,bootstrapsigner,tokencleaner".to_string()),
        ("kubeconfig", kubeconfig),
        ("leader-elect", "true".to_string()),
        ("requestheader-client-ca-file", pki("front-proxy-ca.crt")),
        ("root-ca-file", pki("ca.crt")),
        ("service-account-private-key-file", pki("sa.key")),
        ("service-cluster-ip-range", service_cidr(spec)),
        ("use-service-account-credentials", "true".to_string()),
    ]);
    Container {
        name: "kube-controller-manager".into(),
        image: Some(image("kube-controller-manager", spec)),
        command: Some(vec!["kube-controller-manager".into()]),
        args: Some(flags(&args)),
        liveness_probe: Some(https_probe("/healthz", CONTROLLER_MANAGER_PORT, 8)),
        startup_probe: Some(https_probe("/healthz", CONTROLLER_MANAGER_PORT, 24)),
        volume_mounts: Some(vec![files_mount(Component::ControllerManager)]),
        ..Container::default()
    }
}

fn scheduler(spec: &TenantControlPlaneSpec) -> Container {
    let kubeconfig = format!("{KUBECONFIG_DIR}/scheduler.conf");
    let args = [
        ("authentication-kubeconfig", kubeconfig.clone()),
        ("authorization-kubeconfig", kubeconfig.clone()),
        ("bind-address", "0.0.0.0".to_string()),
        ("kubeconfig", kubeconfig),
        ("leader-elect", "true".to_string()),
    ];
    Container {
        name: "kube-scheduler".into(),
        image: Some(image("kube-scheduler", spec)),
        command: Some(vec!["kube-scheduler".into()]),
        args: Some(flags(&args)),
        liveness_probe: Some(https_probe("/healthz", SCHEDULER_PORT, 8)),
        startup_probe: Some(https_probe("/healthz", SCHEDULER_PORT, 24)),
        volume_mounts: Some(vec![files_mount(Component::Scheduler)]),
        ..Container::default()
    }
}

fn konnectivity_server(
    tenant: &TenantRef,
    spec: &TenantControlPlaneSpec,
    addon: &crate::api::tenant_control_plane::Konnectivity,
) -> Container {
    let kubeconfig = format!("{KUBECONFIG_DIR}/konnectivity-server.conf");
    let image = spec.konnectivity_server_image().unwrap_or_default();
    let args = [
        ("admin-port", KONNECTIVITY_ADMIN_PORT.to_string()),
        ("agent-namespace", "kube-system".to_string()),
        ("agent-port", addon.server.port.to_string()),
        ("agent-service-account", "konnectivity-agent".to_string()),
        (
            "authentication-audience",
            "system:konnectivity-server".to_string(),
        ),
        ("cluster-cert", pki("konnectivity/tls.crt")),
        ("cluster-key", pki("konnectivity/tls.key")),
        ("health-port", KONNECTIVITY_HEALTH_PORT.to_string()),
        ("kubeconfig", kubeconfig),
        ("mode", "grpc".to_string()),
        (
            "server-count",
            spec.control_plane.deployment.replicas.max(1).to_string(),
        ),
        ("server-id", tenant.name.clone()),
        ("server-port", "0".to_string()),
        (
            "uds-name",
            "/run/konnectivity/konnectivity-server.socket".to_string(),
        ),
    ];
    Container {
        name: "konnectivity-server".into(),
        image: Some(image),
        command: Some(vec!["/proxy-server".into()]),
        args: Some(flags(&args)),
        ports: Some(vec![ContainerPort {
            name: Some("konnectivity".into()),
            container_port: addon.server.port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        volume_mounts: Some(vec![files_mount(Component::Konnectivity)]),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::tenant_control_plane::{Addons, Konnectivity, KubernetesSpec},
        tenant::meta::tests::tenant,
    };

    fn spec(konnectivity: bool) -> TenantControlPlaneSpec {
        TenantControlPlaneSpec {
            kubernetes: KubernetesSpec {
                version: "v1.37.2".into(),
                ..KubernetesSpec::default()
            },
            addons: konnectivity.then(|| Addons {
                konnectivity: Some(Konnectivity::default()),
                ..Addons::default()
            }),
            ..TenantControlPlaneSpec::default()
        }
    }

    fn wiring() -> DatastoreWiring {
        DatastoreWiring {
            etcd_servers: vec!["https://etcd:2379".into()],
            prefix: "/k8s-133".into(),
        }
    }

    fn container<'a>(d: &'a Deployment, name: &str) -> &'a Container {
        let pod = d.spec.template.spec.as_ref().expect("pod spec");
        pod.containers
            .iter()
            .find(|c| c.name == name)
            .expect("container present")
    }

    #[test]
    fn api_server_runs_with_kubeadm_flags_and_the_tenants_material() {
        let d = desired(
            &tenant("k8s-133", "default"),
            &spec(false),
            &wiring(),
            &TokenSettings::default(),
            "abc",
        );
        let args = container(&d, "kube-apiserver").args.clone().unwrap_or_default();
        for expected in [
            "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
            "--client-ca-file=/etc/kubernetes/pki/ca.crt",
            "--etcd-servers=https://etcd:2379",
            "--etcd-prefix=/k8s-133",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        ] {
            assert!(
                args.iter().any(|a| a == expected),
                "missing {expected} in {args:?}"
            );
        }
        assert_eq!(
            container(&d, "kube-apiserver").image.as_deref(),
            Some("registry.k8s.io/kube-apiserver:v1.37.2")
        );
    }

    #[test]
    fn controller_manager_signs_kubelet_certificates_with_the_tenant_ca() {
        let d = desired(
            &tenant("k8s-133", "default"),
            &spec(false),
            &wiring(),
            &TokenSettings::default(),
            "abc",
        );
        let args = container(&d, "kube-controller-manager")
            .args
            .clone()
            .unwrap_or_default();
        assert!(args.contains(&"--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt".to_string()));
        assert!(args.contains(&"--cluster-signing-key-file=/etc/kubernetes/pki/ca.key".to_string()));
        assert!(args.contains(&"--controllers=*,bootstrapsigner,tokencleaner".to_string()));
    }

    #[test]
    fn every_mount_is_read_only_and_the_checksum_is_on_the_template() {
        let d = desired(
            &tenant("k8s-133", "default"),
            &spec(true),
            &wiring(),
            &TokenSettings::default(),
            "abc",
        );
        let template = &d.spec.template;
        let annotations = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        assert_eq!(annotations[MATERIAL_CHECKSUM], "abc");
        let pod = template.spec.as_ref().expect("pod");
        assert_eq!(pod.containers.len(), 4, "konnectivity-server runs with the addon");
        for c in &pod.containers {
            for m in c.volume_mounts.as_deref().unwrap_or_default() {
                assert_eq!(
                    m.read_only,
                    Some(true),
                    "{} mounts {} writable",
                    c.name,
                    m.mount_path
                );
            }
        }
    }

    #[test]
    fn checksum_changes_with_any_mounted_byte_and_not_with_order() {
        let a = BTreeMap::from([("ca.crt".to_string(), b"one".to_vec())]);
        let b = BTreeMap::from([("apiserver.crt".to_string(), b"two".to_vec())]);
        let forward = material_checksum([("ca", &a), ("api-server-certificate", &b)]);
        let backward = material_checksum([("api-server-certificate", &b), ("ca", &a)]);
        assert_eq!(forward, backward);
        let changed = BTreeMap::from([("apiserver.crt".to_string(), b"twO".to_vec())]);
        assert_ne!(
            forward,
            material_checksum([("ca", &a), ("api-server-certificate", &changed)])
        );
    }

    #[test]
    fn mounted_suffixes_cover_the_kubeconfigs_and_konnectivity_only_with_the_addon() {
        let without = mounted_secret_suffixes(false);
        assert!(without.contains(&"controller-manager-kubeconfig"));
        assert!(!without.contains(&"konnectivity-certificate"));
        assert!(mounted_secret_suffixes(true).contains(&"konnectivity-kubeconfig"));
    }

    #[test]
    fn the_api_server_reaches_kubelets_by_the_preferred_address_types_of_the_spec() {
        let mut spec = spec(false);
        spec.kubernetes.kubelet =
            Some(serde_json::json!({"preferredAddressTypes": ["Hostname", "InternalIP"]}));
        let d = desired(
            &tenant("k8s-133", "default"),
            &spec,
            &wiring(),
            &TokenSettings::default(),
            "abc",
        );
        let args = container(&d, "kube-apiserver").args.clone().unwrap_or_default();
        assert!(
            args.contains(&"--kubelet-preferred-address-types=Hostname,InternalIP".to_string()),
            "{args:?}"
        );
    }
}
