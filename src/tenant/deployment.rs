//! The control-plane Deployment `<tcp>`: kube-apiserver, kube-controller-manager
//! and kube-scheduler (plus konnectivity-server with the addon) with kubeadm's
//! static-pod flags, every Secret mounted read-only, and ONE pod-template
//! checksum over all mounted material, so a batch of rotations is one rollout.
//! Kamaji's Deployment customisation (images, scheduling, resources, extra
//! args, containers, volumes, metadata, service account, strategy) is applied
//! around that core as Kamaji applies it; our labels and checksum always win.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            ConfigMapProjection, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, KeyToPath,
            PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource, SecretProjection, Volume, VolumeMount,
            VolumeProjection,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use sha2::{Digest, Sha256};

use super::{
    konnectivity as knp,
    meta::{TenantRef, suffix},
};
use crate::{
    api::{
        TenantControlPlaneSpec,
        tenant_control_plane::{DeploymentCustomisation, Konnectivity, PerComponent},
    },
    pki::catalog::{self, Component, Row},
};

/// Pod-template annotation holding the checksum of every mounted Secret.
pub const MATERIAL_CHECKSUM: &str = "kamaji.clastix.io/material-checksum";

/// Deployment annotation (on the Deployment itself, so writing it rolls nothing)
/// holding the checksum of the CA Secrets its pod template mounts: once that
/// template has rolled out, the control plane trusts those CAs, whatever other
/// mounted material changed since.
pub const TRUST_CHECKSUM: &str = "kamaji.clastix.io/trust-checksum";

const PKI_DIR: &str = "/etc/kubernetes/pki";
const KUBECONFIG_DIR: &str = "/etc/kubernetes";
const CONTROLLER_MANAGER_PORT: i32 = 10257;
const SCHEDULER_PORT: i32 = 10259;

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

/// The trust checksum the Deployment carries for its pod template (absent on a
/// Deployment written before it existed, or while a rollout of such one is held).
pub fn deployed_trust_checksum(deployment: &Deployment) -> Option<String> {
    deployment
        .metadata
        .annotations
        .as_ref()?
        .get(TRUST_CHECKSUM)
        .cloned()
}

/// The checksums a pod template is written with: of every mounted Secret, and of
/// the CA Secrets alone (unknown while a template written without it is held).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksums<'a> {
    /// [`MATERIAL_CHECKSUM`]: every mounted Secret.
    pub material: &'a str,
    /// [`TRUST_CHECKSUM`]: the CA Secrets.
    pub trust: Option<&'a str>,
}

/// [`material_checksum`] over the CA Secrets only (`data_of` a suffix): what the
/// control plane trusts.
pub fn trust_checksum<'a>(data_of: impl Fn(&str) -> Option<&'a BTreeMap<String, Vec<u8>>>) -> String {
    let empty = BTreeMap::new();
    material_checksum(
        catalog::AUTHORITIES
            .iter()
            .map(|spec| (spec.secret_suffix, data_of(spec.secret_suffix).unwrap_or(&empty))),
    )
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
    checksums: Checksums<'_>,
) -> Deployment {
    let konnectivity = spec.konnectivity().is_some();
    let custom = spec.control_plane.deployment.customisation();
    // Kamaji places the user's containers and volumes before its own.
    let mut containers = custom.additional_containers.clone();
    containers.extend([
        api_server(spec, &custom, datastore, tokens),
        controller_manager(tenant, spec, &custom),
        scheduler(spec, &custom),
    ]);
    if let Some(addon) = spec.konnectivity() {
        containers.push(konnectivity_server(spec, addon));
    }
    let mut volumes = custom.additional_volumes.clone();
    volumes.extend(
        components(konnectivity)
            .iter()
            .map(|component| files_volume(tenant, *component, konnectivity)),
    );
    if konnectivity {
        volumes.push(uds_volume());
    }
    let selector = LabelSelector {
        match_labels: Some(tenant.pod_selector()),
        match_expressions: None,
    };
    Deployment {
        metadata: deployment_meta(tenant, &custom, checksums.trust),
        spec: DeploymentSpec {
            replicas: Some(spec.control_plane.deployment.replicas),
            strategy: Some(strategy(custom.strategy.clone())),
            template: PodTemplateSpec {
                metadata: Some(pod_meta(tenant, &custom, checksums.material)),
                spec: Some(PodSpec {
                    init_containers: non_empty_vec(custom.additional_init_containers.clone()),
                    containers,
                    volumes: Some(volumes),
                    node_selector: custom.node_selector.clone(),
                    tolerations: custom.tolerations.clone(),
                    affinity: custom.affinity.clone(),
                    topology_spread_constraints: topology_spread(&custom, &selector),
                    runtime_class_name: custom.runtime_class_name.clone(),
                    // Kamaji's default when none is named.
                    service_account_name: Some(
                        custom
                            .service_account_name
                            .clone()
                            .unwrap_or_else(|| "default".into()),
                    ),
                    // Tenant components talk to the management cluster's API never.
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            selector,
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// The Deployment's metadata: Kamaji's `additionalMetadata`, under our labels
/// and trust checksum.
fn deployment_meta(tenant: &TenantRef, custom: &DeploymentCustomisation, trust: Option<&str>) -> ObjectMeta {
    let mut meta = tenant.object_meta(suffix::DEPLOYMENT);
    meta.name = Some(tenant.name.clone());
    let mut labels = custom.additional_metadata.labels.clone();
    labels.extend(meta.labels.take().unwrap_or_default());
    meta.labels = Some(labels);
    let mut annotations = custom.additional_metadata.annotations.clone();
    annotations.extend(trust.map(|t| (TRUST_CHECKSUM.to_string(), t.to_string())));
    meta.annotations = non_empty(annotations);
    meta
}

/// The pod template's metadata: Kamaji's `podAdditionalMetadata` first, then
/// ours, so the selector labels and the material checksum always win.
fn pod_meta(tenant: &TenantRef, custom: &DeploymentCustomisation, material_checksum: &str) -> ObjectMeta {
    let mut labels = custom.pod_additional_metadata.labels.clone();
    labels.extend(tenant.labels(suffix::DEPLOYMENT));
    labels.extend(tenant.pod_selector());
    let mut annotations = custom.pod_additional_metadata.annotations.clone();
    annotations.insert(MATERIAL_CHECKSUM.to_string(), material_checksum.to_string());
    ObjectMeta {
        labels: Some(labels),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}

/// Kamaji's strategy handling: unset or RollingUpdate without parameters is a
/// surge of a full new set before old pods go (the tenant keeps serving with
/// the old material until the new pods are ready); Recreate has no parameters;
/// given parameters are kept. Any strategy rolls on a checksum change.
fn strategy(written: Option<DeploymentStrategy>) -> DeploymentStrategy {
    let blue_green = || RollingUpdateDeployment {
        max_surge: Some(IntOrString::String("100%".into())),
        max_unavailable: Some(IntOrString::Int(0)),
    };
    let Some(written) = written else {
        return DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(blue_green()),
        };
    };
    match written.type_.as_deref() {
        Some("Recreate") => DeploymentStrategy {
            type_: written.type_,
            rolling_update: None,
        },
        _ => DeploymentStrategy {
            type_: Some(written.type_.unwrap_or_else(|| "RollingUpdate".into())),
            rolling_update: Some(written.rolling_update.unwrap_or_else(blue_green)),
        },
    }
}

/// Kamaji's topology spread constraints; one without a selector spreads the control-plane pods.
fn topology_spread(
    custom: &DeploymentCustomisation,
    selector: &LabelSelector,
) -> Option<Vec<k8s_openapi::api::core::v1::TopologySpreadConstraint>> {
    let mut constraints = custom.topology_spread_constraints.clone()?;
    for constraint in &mut constraints {
        if constraint.label_selector.is_none() {
            constraint.label_selector = Some(selector.clone());
        }
    }
    Some(constraints)
}

fn non_default<T: Default + PartialEq>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

fn non_empty(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

fn non_empty_vec<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

/// One component's value of a per-component setting.
fn of<T: Clone + Default>(settings: &PerComponent<T>, component: Component) -> T {
    let value = match component {
        Component::ApiServer => &settings.api_server,
        Component::ControllerManager => &settings.controller_manager,
        Component::Scheduler => &settings.scheduler,
        _ => &None,
    };
    value.clone().unwrap_or_default()
}

/// The container's own files mount, then Kamaji's extra mounts for it.
fn mounts(custom: &DeploymentCustomisation, component: Component) -> Vec<VolumeMount> {
    let mut mounts = vec![files_mount(component)];
    mounts.extend(of(&custom.additional_volume_mounts, component));
    mounts
}

/// `--flag` of an argument `--flag=value` (or of a bare `--flag`).
fn flag_name(arg: &str) -> &str {
    arg.split_once('=').map_or(arg, |(flag, _)| flag)
}

/// Kamaji's kube-apiserver merge: `managed` flags always win (a user duplicate is
/// dropped); the other defaults give way to a user flag of the same name; the
/// user's flags follow verbatim, in order, repeats kept.
fn merge_api_server_args(defaults: Vec<String>, managed: &[&str], extra: &[String]) -> Vec<String> {
    let extra: Vec<&String> = extra
        .iter()
        .filter(|arg| !managed.contains(&flag_name(arg)))
        .collect();
    let mut args: Vec<String> = defaults
        .into_iter()
        .filter(|arg| {
            let flag = flag_name(arg);
            managed.contains(&flag) || !extra.iter().any(|e| flag_name(e) == flag)
        })
        .collect();
    args.extend(extra.into_iter().cloned());
    args
}

/// Kamaji's controller-manager merge: the user's flags replace ours of the same
/// name (in place) and the rest follow, one value per flag.
fn override_args(defaults: Vec<String>, extra: &[String]) -> Vec<String> {
    let mut args = defaults;
    for arg in extra {
        match args.iter_mut().find(|a| flag_name(a) == flag_name(arg)) {
            Some(existing) => existing.clone_from(arg),
            None => args.push(arg.clone()),
        }
    }
    args
}

/// Kamaji's scheduler merge: the user's flags come first, ours replace any of the same name.
fn args_under_ours(ours: Vec<String>, extra: &[String]) -> Vec<String> {
    let mut args = Vec::new();
    for arg in extra {
        let flag = flag_name(arg);
        if ours.iter().any(|o| flag_name(o) == flag) {
            continue;
        }
        match args.iter_mut().find(|a: &&mut String| flag_name(a) == flag) {
            Some(existing) => existing.clone_from(arg),
            None => args.push(arg.clone()),
        }
    }
    args.extend(ours);
    args
}

/// kube-apiserver flags Kamaji always sets itself, plus kamaji-rs' token
/// settings (the service-account key rotation's grace relies on them).
const API_SERVER_MANAGED: &[&str] = &[
    "--advertise-address",
    "--client-ca-file",
    "--enable-admission-plugins",
    "--service-cluster-ip-range",
    "--kubelet-client-certificate",
    "--kubelet-client-key",
    "--kubelet-preferred-address-types",
    "--proxy-client-cert-file",
    "--proxy-client-key-file",
    "--requestheader-allowed-names",
    "--requestheader-client-ca-file",
    "--secure-port",
    "--service-account-key-file",
    "--service-account-signing-key-file",
    "--tls-cert-file",
    "--tls-private-key-file",
    "--etcd-compaction-interval",
    "--etcd-prefix",
    "--etcd-servers",
    "--etcd-cafile",
    "--etcd-certfile",
    "--etcd-keyfile",
    "--service-account-extend-token-expiration",
    "--service-account-max-token-expiration",
    "--egress-selector-config-file",
];

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
    let mut sources: Vec<VolumeProjection> = by_secret
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
    if konnectivity && component == Component::ApiServer {
        sources.push(egress_selector_projection(tenant));
    }
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

/// The egress selector configuration in the API server's files, at Kamaji's path
/// (a file of the projected volume, not a mount inside the read-only one).
fn egress_selector_projection(tenant: &TenantRef) -> VolumeProjection {
    let path = knp::EGRESS_SELECTOR_CONFIG_FILE
        .strip_prefix(&format!("{KUBECONFIG_DIR}/"))
        .unwrap_or(knp::EGRESS_SELECTOR_CONFIG_FILE);
    VolumeProjection {
        config_map: Some(ConfigMapProjection {
            name: tenant.object_name(knp::EGRESS_SELECTOR_SUFFIX),
            items: Some(vec![KeyToPath {
                key: knp::EGRESS_SELECTOR_KEY.into(),
                path: path.into(),
                ..KeyToPath::default()
            }]),
            optional: None,
        }),
        ..VolumeProjection::default()
    }
}

/// The in-memory directory of the socket between the API server and konnectivity-server.
fn uds_volume() -> Volume {
    Volume {
        name: knp::UDS_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The socket's directory, writable: the server creates the socket, the API server dials it.
fn uds_mount() -> VolumeMount {
    VolumeMount {
        name: knp::UDS_VOLUME.into(),
        mount_path: knp::UDS_DIR.into(),
        ..VolumeMount::default()
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

fn image(name: &str, spec: &TenantControlPlaneSpec, custom: &DeploymentCustomisation) -> String {
    // Kamaji accepts versions without the `v` that image tags carry.
    custom.registry_settings.image(name, &spec.kubernetes.image_tag())
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
    custom: &DeploymentCustomisation,
    datastore: &DatastoreWiring,
    tokens: &TokenSettings,
) -> Container {
    let port = spec.network_profile.port;
    let mut args = api_server_flags(spec, datastore, tokens);
    let mut volume_mounts = mounts(custom, Component::ApiServer);
    if let Some(egress) = egress_selector(spec) {
        args.push(egress);
        volume_mounts.push(uds_mount());
    }
    Container {
        name: "kube-apiserver".into(),
        image: Some(image(&custom.registry_settings.api_server_image, spec, custom)),
        command: Some(vec!["kube-apiserver".into()]),
        args: Some(merge_api_server_args(
            flags(&args),
            API_SERVER_MANAGED,
            &of(&custom.extra_args, Component::ApiServer),
        )),
        resources: non_default(of(&custom.resources, Component::ApiServer)),
        ports: Some(vec![ContainerPort {
            name: Some("kube-apiserver".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(https_probe("/livez", port, 8)),
        readiness_probe: Some(https_probe("/readyz", port, 3)),
        startup_probe: Some(https_probe("/livez", port, 24)),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    }
}

/// The API server's own flags, in the order they have always been written (a new
/// order would roll every tenant's Deployment for nothing).
fn api_server_flags(
    spec: &TenantControlPlaneSpec,
    datastore: &DatastoreWiring,
    tokens: &TokenSettings,
) -> Vec<(&'static str, String)> {
    let network = &spec.network_profile;
    let mut args = vec![("allow-privileged", "true".to_string())];
    // Only an IP can be advertised; a host name address is a SAN and the endpoint.
    if let Some(address) = network.advertise_address() {
        args.push(("advertise-address", address.to_string()));
    }
    args.extend([
        ("authorization-mode", "Node,RBAC".to_string()),
        ("client-ca-file", pki("ca.crt")),
        ("enable-admission-plugins", admission_plugins(spec)),
        ("enable-bootstrap-token-auth", "true".to_string()),
    ]);
    args.extend(etcd_flags(datastore));
    args.extend([
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
    ]);
    args.extend(service_account_flags(spec, tokens));
    args.extend([
        ("service-cluster-ip-range", service_cidr(spec)),
        ("tls-cert-file", pki("apiserver.crt")),
        ("tls-private-key-file", pki("apiserver.key")),
    ]);
    args
}

/// NodeRestriction first, as kubeadm enables it, then the spec's plugins.
fn admission_plugins(spec: &TenantControlPlaneSpec) -> String {
    let mut admission = vec!["NodeRestriction".to_string()];
    admission.extend(
        spec.kubernetes
            .admission_controllers
            .iter()
            .filter(|p| *p != "NodeRestriction")
            .cloned(),
    );
    admission.join(",")
}

/// The DataStore: its endpoints, the tenant's prefix and the client certificate.
fn etcd_flags(datastore: &DatastoreWiring) -> [(&'static str, String); 6] {
    [
        ("etcd-cafile", pki("etcd/ca.crt")),
        ("etcd-certfile", pki("etcd/server.crt")),
        ("etcd-keyfile", pki("etcd/server.key")),
        ("etcd-prefix", datastore.prefix.clone()),
        ("etcd-servers", datastore.etcd_servers.join(",")),
        ("etcd-compaction-interval", "0".to_string()),
    ]
}

/// Service-account tokens: who issues them, which keys verify and sign, how long they live.
fn service_account_flags(
    spec: &TenantControlPlaneSpec,
    tokens: &TokenSettings,
) -> [(&'static str, String); 5] {
    [
        (
            "service-account-issuer",
            format!(
                "https://kubernetes.default.svc.{}",
                spec.network_profile.cluster_domain
            ),
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
    ]
}

/// With konnectivity, traffic to nodes goes through the konnectivity-server beside
/// the API server: the flag naming its egress selector configuration.
fn egress_selector(spec: &TenantControlPlaneSpec) -> Option<(&'static str, String)> {
    spec.konnectivity().map(|_| {
        (
            "egress-selector-config-file",
            knp::EGRESS_SELECTOR_CONFIG_FILE.to_string(),
        )
    })
}

fn controller_manager(
    tenant: &TenantRef,
    spec: &TenantControlPlaneSpec,
    custom: &DeploymentCustomisation,
) -> Container {
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
        // The signing CA alone (a bundle is refused); during a CA rotation, the new one.
        ("cluster-signing-cert-file", pki("signing-ca.crt")),
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
        image: Some(image(
            &custom.registry_settings.controller_manager_image,
            spec,
            custom,
        )),
        command: Some(vec!["kube-controller-manager".into()]),
        args: Some(override_args(
            flags(&args),
            &of(&custom.extra_args, Component::ControllerManager),
        )),
        resources: non_default(of(&custom.resources, Component::ControllerManager)),
        liveness_probe: Some(https_probe("/healthz", CONTROLLER_MANAGER_PORT, 8)),
        startup_probe: Some(https_probe("/healthz", CONTROLLER_MANAGER_PORT, 24)),
        volume_mounts: Some(mounts(custom, Component::ControllerManager)),
        ..Container::default()
    }
}

fn scheduler(spec: &TenantControlPlaneSpec, custom: &DeploymentCustomisation) -> Container {
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
        image: Some(image(&custom.registry_settings.scheduler_image, spec, custom)),
        command: Some(vec!["kube-scheduler".into()]),
        args: Some(args_under_ours(
            flags(&args),
            &of(&custom.extra_args, Component::Scheduler),
        )),
        resources: non_default(of(&custom.resources, Component::Scheduler)),
        liveness_probe: Some(https_probe("/healthz", SCHEDULER_PORT, 8)),
        startup_probe: Some(https_probe("/healthz", SCHEDULER_PORT, 24)),
        volume_mounts: Some(mounts(custom, Component::Scheduler)),
        ..Container::default()
    }
}

/// konnectivity-server with Kamaji's flags: agents on the addon's port (TLS with the
/// konnectivity certificate, whose names are the API server's), the API server on
/// [`knp::UDS_NAME`] (gRPC, no TCP port), agent tokens of audience
/// `system:konnectivity-server` for `kube-system/konnectivity-agent` reviewed with its
/// kubeconfig. The user's `extraArgs` come first; ours replace any of the same name.
/// No `--server-id`: each replica must have its own (a generated one), or agents
/// would take every replica for the one they already reach.
fn konnectivity_server(spec: &TenantControlPlaneSpec, addon: &Konnectivity) -> Container {
    let server = &addon.server;
    let args = [
        ("admin-port", knp::ADMIN_PORT.to_string()),
        ("agent-namespace", knp::AGENT_NAMESPACE.to_string()),
        ("agent-port", server.port.to_string()),
        ("agent-service-account", knp::AGENT_NAME.to_string()),
        ("authentication-audience", knp::SERVER_USER.to_string()),
        ("cluster-cert", pki("konnectivity/tls.crt")),
        ("cluster-key", pki("konnectivity/tls.key")),
        ("health-port", knp::HEALTH_PORT.to_string()),
        ("kubeconfig", format!("{KUBECONFIG_DIR}/konnectivity-server.conf")),
        ("mode", "grpc".to_string()),
        (
            "server-count",
            spec.control_plane.deployment.replicas.max(1).to_string(),
        ),
        ("server-port", "0".to_string()),
        ("uds-name", knp::UDS_NAME.to_string()),
    ];
    let port = |name: &str, container_port: i32| ContainerPort {
        name: Some(name.into()),
        container_port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    Container {
        name: "konnectivity-server".into(),
        image: Some(spec.konnectivity_server_image().unwrap_or_default()),
        command: Some(vec!["/proxy-server".into()]),
        args: Some(args_under_ours(flags(&args), &server.extra_args)),
        ports: Some(vec![
            port("agentport", server.port),
            port("adminport", knp::ADMIN_PORT),
            port("healthport", knp::HEALTH_PORT),
        ]),
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Int(knp::HEALTH_PORT),
                scheme: Some("HTTP".into()),
                ..HTTPGetAction::default()
            }),
            initial_delay_seconds: Some(30),
            timeout_seconds: Some(60),
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        resources: server.resources.clone(),
        security_context: server.security_context.clone(),
        volume_mounts: Some(vec![files_mount(Component::Konnectivity), uds_mount()]),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        api::tenant_control_plane::{Addons, Konnectivity, KubernetesSpec},
        tenant::meta::tests::tenant,
    };

    const CHECKSUMS: Checksums<'static> = Checksums {
        material: "abc",
        trust: Some("def"),
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
            CHECKSUMS,
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
            CHECKSUMS,
        );
        let args = container(&d, "kube-controller-manager")
            .args
            .clone()
            .unwrap_or_default();
        assert!(args.contains(&"--cluster-signing-cert-file=/etc/kubernetes/pki/signing-ca.crt".to_string()));
        assert!(args.contains(&"--cluster-signing-key-file=/etc/kubernetes/pki/ca.key".to_string()));
        assert!(args.contains(&"--controllers=*,bootstrapsigner,tokencleaner".to_string()));
    }

    #[test]
    fn every_mount_but_the_konnectivity_socket_is_read_only_and_the_checksum_is_on_the_template() {
        let d = desired(
            &tenant("k8s-133", "default"),
            &spec(true),
            &wiring(),
            &TokenSettings::default(),
            CHECKSUMS,
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
                if m.name == knp::UDS_VOLUME {
                    // The server creates its socket there; the API server dials it.
                    continue;
                }
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
    fn with_konnectivity_the_api_server_sends_cluster_traffic_to_the_server_beside_it() {
        let d = desired(
            &tenant("k8s-133", "default"),
            &spec(true),
            &wiring(),
            &TokenSettings::default(),
            CHECKSUMS,
        );
        let pod = d.spec.template.spec.as_ref().expect("pod");
        let container = |name: &str| pod.containers.iter().find(|c| c.name == name).expect(name);
        let api = container("kube-apiserver");
        let args = api.args.clone().unwrap_or_default();
        assert!(args.contains(&format!(
            "--egress-selector-config-file={}",
            knp::EGRESS_SELECTOR_CONFIG_FILE
        )));
        let server = container("konnectivity-server");
        let server_args = server.args.clone().unwrap_or_default();
        for arg in [
            format!("--uds-name={}", knp::UDS_NAME),
            "--server-port=0".to_string(),
            "--mode=grpc".to_string(),
            "--agent-port=8132".to_string(),
            "--authentication-audience=system:konnectivity-server".to_string(),
            "--kubeconfig=/etc/kubernetes/konnectivity-server.conf".to_string(),
        ] {
            assert!(server_args.contains(&arg), "{arg} in {server_args:?}");
        }
        assert!(
            !server_args.iter().any(|a| a.starts_with("--server-id")),
            "one id per replica"
        );
        // Both mount the socket's directory; the API server's files hold the configuration.
        for c in [api, server] {
            assert!(
                c.volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.name == knp::UDS_VOLUME && m.mount_path == knp::UDS_DIR),
                "{} mounts the socket",
                c.name
            );
        }
        let files = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "kube-apiserver-files")
            .and_then(|v| v.projected.as_ref())
            .expect("the API server's files");
        let egress = files
            .sources
            .iter()
            .flatten()
            .find_map(|s| s.config_map.as_ref())
            .expect("the egress selector ConfigMap");
        assert_eq!(egress.name, "k8s-133-konnectivity-egress-selector-configuration");
        let without = desired(
            &tenant("k8s-133", "default"),
            &spec(false),
            &wiring(),
            &TokenSettings::default(),
            CHECKSUMS,
        );
        let args = without.spec.template.spec.expect("pod").containers[0]
            .args
            .clone()
            .unwrap_or_default();
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--egress-selector-config-file"))
        );
    }

    /// A spec with Kamaji's Deployment field `key` set to `value`.
    fn with(key: &str, value: serde_json::Value) -> TenantControlPlaneSpec {
        let mut spec = spec(false);
        spec.control_plane
            .deployment
            .not_acted_on
            .insert(key.into(), value);
        spec
    }

    fn render(spec: &TenantControlPlaneSpec) -> Deployment {
        desired(
            &tenant("k8s-133", "default"),
            spec,
            &wiring(),
            &TokenSettings::default(),
            CHECKSUMS,
        )
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.template.spec.as_ref().expect("pod spec")
    }

    fn args(d: &Deployment, name: &str) -> Vec<String> {
        container(d, name).args.clone().unwrap_or_default()
    }

    #[test]
    fn resources_are_set_per_component() {
        let d = render(&with(
            "resources",
            json!({
                "apiServer": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
                "controllerManager": {"requests": {"cpu": "125m"}},
                "scheduler": {"limits": {"cpu": "100m"}},
            }),
        ));
        let requests = |name: &str, resource: &str| {
            container(&d, name)
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .map(|q| q.0.clone())
        };
        assert_eq!(requests("kube-apiserver", "cpu").as_deref(), Some("250m"));
        assert_eq!(requests("kube-apiserver", "memory").as_deref(), Some("512Mi"));
        assert_eq!(
            requests("kube-controller-manager", "cpu").as_deref(),
            Some("125m")
        );
        let scheduler_limits = container(&d, "kube-scheduler")
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        assert_eq!(scheduler_limits["cpu"].0, "100m");
        assert_eq!(
            render(&spec(false)).spec.template.spec.expect("pod").containers[0].resources,
            None
        );
    }

    #[test]
    fn scheduling_fields_reach_the_pod() {
        let mut spec = with(
            "nodeSelector",
            json!({"node-role.kubernetes.io/control-plane": ""}),
        );
        let custom = &mut spec.control_plane.deployment.not_acted_on;
        custom.insert(
            "tolerations".into(),
            json!([{"key": "dedicated", "operator": "Equal", "value": "kamaji", "effect": "NoSchedule"}]),
        );
        custom.insert(
            "affinity".into(),
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                 "labelSelector": {"matchLabels": {"kamaji.clastix.io/name": "k8s-133"}}}}]}}),
        );
        custom.insert(
            "topologySpreadConstraints".into(),
            json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}]),
        );
        custom.insert("runtimeClassName".into(), json!("gvisor"));
        let d = render(&spec);
        let pod = pod(&d);
        assert_eq!(
            pod.node_selector.clone().unwrap_or_default()["node-role.kubernetes.io/control-plane"],
            ""
        );
        assert_eq!(
            pod.tolerations.as_ref().map(|t| t[0].key.clone()),
            Some(Some("dedicated".into()))
        );
        let anti = pod.affinity.as_ref().and_then(|a| a.pod_anti_affinity.as_ref());
        assert!(anti.is_some(), "affinity: {:?}", pod.affinity);
        let spread = pod.topology_spread_constraints.clone().unwrap_or_default();
        assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
        assert_eq!(
            spread[0]
                .label_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone()),
            Some(tenant("k8s-133", "default").pod_selector()),
            "a constraint without a selector spreads the control-plane pods"
        );
        assert_eq!(pod.runtime_class_name.as_deref(), Some("gvisor"));
    }

    #[test]
    fn extra_args_follow_kamajis_merge_per_component() {
        let d = render(&with(
            "extraArgs",
            json!({
                "apiServer": ["--audit-log-maxage=30", "--authorization-mode=RBAC", "--secure-port=1",
                              "--feature-gates=A=true", "--feature-gates=B=true"],
                "controllerManager": ["--leader-elect=false", "--v=4"],
                "scheduler": ["--leader-elect=false", "--v=2"],
            }),
        ));
        let api = args(&d, "kube-apiserver");
        assert!(api.contains(&"--audit-log-maxage=30".to_string()));
        assert!(
            api.contains(&"--authorization-mode=RBAC".to_string()),
            "a default gives way"
        );
        assert!(!api.contains(&"--authorization-mode=Node,RBAC".to_string()));
        assert!(
            api.contains(&"--secure-port=6443".to_string()),
            "a managed flag wins"
        );
        assert!(!api.contains(&"--secure-port=1".to_string()));
        let gates: Vec<_> = api.iter().filter(|a| a.starts_with("--feature-gates=")).collect();
        assert_eq!(gates.len(), 2, "repeated user flags are kept verbatim: {api:?}");
        let cm = args(&d, "kube-controller-manager");
        assert!(
            cm.contains(&"--leader-elect=false".to_string()),
            "extra args override: {cm:?}"
        );
        assert!(!cm.contains(&"--leader-elect=true".to_string()));
        assert!(cm.contains(&"--v=4".to_string()));
        let scheduler = args(&d, "kube-scheduler");
        assert!(
            scheduler.contains(&"--leader-elect=true".to_string()),
            "Kamaji's scheduler flags win"
        );
        assert!(!scheduler.contains(&"--leader-elect=false".to_string()));
        assert!(scheduler.contains(&"--v=2".to_string()));
    }

    #[test]
    fn registry_settings_build_the_image_names() {
        let d = render(&with(
            "registrySettings",
            json!({"registry": "mirror.example.com/k8s", "tagSuffix": "-fips",
                   "apiServerImage": "apiserver", "controllerManagerImage": "cm", "schedulerImage": "sched"}),
        ));
        assert_eq!(
            container(&d, "kube-apiserver").image.as_deref(),
            Some("mirror.example.com/k8s/apiserver:v1.37.2-fips")
        );
        assert_eq!(
            container(&d, "kube-controller-manager").image.as_deref(),
            Some("mirror.example.com/k8s/cm:v1.37.2-fips")
        );
        assert_eq!(
            container(&d, "kube-scheduler").image.as_deref(),
            Some("mirror.example.com/k8s/sched:v1.37.2-fips")
        );
        let partial = render(&with(
            "registrySettings",
            json!({"registry": "mirror.example.com"}),
        ));
        assert_eq!(
            container(&partial, "kube-scheduler").image.as_deref(),
            Some("mirror.example.com/kube-scheduler:v1.37.2")
        );
    }

    #[test]
    fn additional_containers_volumes_and_mounts_are_added_beside_ours() {
        let mut spec = with(
            "additionalInitContainers",
            json!([{"name": "wait", "image": "busybox", "command": ["true"]}]),
        );
        let custom = &mut spec.control_plane.deployment.not_acted_on;
        custom.insert(
            "additionalContainers".into(),
            json!([{"name": "sidecar", "image": "nginx"}]),
        );
        custom.insert(
            "additionalVolumes".into(),
            json!([{"name": "audit", "emptyDir": {}}, {"name": "policy", "configMap": {"name": "policy"}}]),
        );
        custom.insert(
            "additionalVolumeMounts".into(),
            json!({"apiServer": [{"name": "audit", "mountPath": "/var/log/audit"}],
                   "controllerManager": [{"name": "policy", "mountPath": "/etc/policy", "readOnly": true}],
                   "scheduler": [{"name": "policy", "mountPath": "/etc/policy"}]}),
        );
        let d = render(&spec);
        let pod = pod(&d);
        assert_eq!(
            pod.init_containers.as_ref().map(|c| c[0].name.as_str()),
            Some("wait")
        );
        assert_eq!(
            pod.containers[0].name, "sidecar",
            "Kamaji places the user's containers first"
        );
        assert_eq!(pod.containers.len(), 4);
        let volumes: Vec<_> = pod.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
        assert_eq!(&volumes[..2], ["audit", "policy"]);
        assert!(
            volumes.contains(&"kube-apiserver-files"),
            "our files volumes stay: {volumes:?}"
        );
        let mount_paths = |name: &str| -> Vec<String> {
            container(&d, name)
                .volume_mounts
                .iter()
                .flatten()
                .map(|m| m.mount_path.clone())
                .collect()
        };
        assert_eq!(
            mount_paths("kube-apiserver"),
            ["/etc/kubernetes", "/var/log/audit"]
        );
        assert_eq!(
            mount_paths("kube-controller-manager"),
            ["/etc/kubernetes", "/etc/policy"]
        );
        assert_eq!(mount_paths("kube-scheduler"), ["/etc/kubernetes", "/etc/policy"]);
    }

    #[test]
    fn additional_metadata_never_replaces_our_labels_or_the_checksum() {
        let mut spec = with(
            "additionalMetadata",
            json!({"labels": {"team": "infra", "kamaji.clastix.io/name": "other"},
                   "annotations": {"owner": "infra@example.com", TRUST_CHECKSUM: "forged"}}),
        );
        spec.control_plane.deployment.not_acted_on.insert(
            "podAdditionalMetadata".into(),
            json!({"labels": {"tier": "cp", "kamaji.clastix.io/component": "x"},
                   "annotations": {"prometheus.io/scrape": "true", MATERIAL_CHECKSUM: "forged"}}),
        );
        let d = render(&spec);
        let labels = d.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["team"], "infra");
        assert_eq!(labels["kamaji.clastix.io/name"], "k8s-133");
        let annotations = d.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations["owner"], "infra@example.com");
        assert_eq!(annotations[TRUST_CHECKSUM], "def");
        let template = d.spec.template.metadata.clone().unwrap_or_default();
        let pod_labels = template.labels.unwrap_or_default();
        assert_eq!(pod_labels["tier"], "cp");
        for (key, value) in tenant("k8s-133", "default").pod_selector() {
            assert_eq!(pod_labels[&key], value, "the selector label {key} is ours");
        }
        let pod_annotations = template.annotations.unwrap_or_default();
        assert_eq!(pod_annotations["prometheus.io/scrape"], "true");
        assert_eq!(pod_annotations[MATERIAL_CHECKSUM], "abc");
    }

    #[test]
    fn the_service_account_is_kamajis_default_or_the_named_one() {
        assert_eq!(
            pod(&render(&spec(false))).service_account_name.as_deref(),
            Some("default")
        );
        let d = render(&with("serviceAccountName", json!("tenant-cp")));
        assert_eq!(pod(&d).service_account_name.as_deref(), Some("tenant-cp"));
        assert_eq!(pod(&d).automount_service_account_token, Some(false));
    }

    #[test]
    fn strategy_follows_kamaji_and_defaults_to_a_full_surge() {
        let default = render(&spec(false)).spec.strategy.unwrap_or_default();
        assert_eq!(default.type_.as_deref(), Some("RollingUpdate"));
        let rolling = default.rolling_update.unwrap_or_default();
        assert_eq!(rolling.max_surge, Some(IntOrString::String("100%".into())));
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        let recreate = render(&with("strategy", json!({"type": "Recreate"})));
        assert_eq!(
            recreate.spec.strategy,
            Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None
            })
        );
        let custom = render(&with(
            "strategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}),
        ));
        let rolling = custom
            .spec
            .strategy
            .and_then(|s| s.rolling_update)
            .unwrap_or_default();
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
        let bare = render(&with("strategy", json!({"type": "RollingUpdate"})));
        assert_eq!(bare.spec.strategy, render(&spec(false)).spec.strategy);
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
            CHECKSUMS,
        );
        let args = container(&d, "kube-apiserver").args.clone().unwrap_or_default();
        assert!(
            args.contains(&"--kubelet-preferred-address-types=Hostname,InternalIP".to_string()),
            "{args:?}"
        );
    }
}
