//! The `TenantControlPlane` custom resource, field-compatible with Kamaji's
//! `kamaji.clastix.io/v1alpha1`: a Kamaji manifest applies unchanged. Fields
//! kamaji-rs does not act on are kept verbatim and listed by
//! [`TenantControlPlaneSpec::fields_not_acted_on`] so the status can name them.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::DeploymentStrategy,
        core::v1::{
            Affinity, Container, ResourceRequirements, Toleration, TopologySpreadConstraint, Volume,
            VolumeMount,
        },
    },
    apimachinery::pkg::{apis::meta::v1::Condition, util::intstr::IntOrString},
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::schema;

/// Desired state of a tenant control plane.
// Each printcolumn repeats `type_ = "string"`: columns, not duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kamaji.clastix.io",
    version = "v1alpha1",
    kind = "TenantControlPlane",
    namespaced,
    status = "TenantControlPlaneStatus",
    shortname = "tcp",
    category = "kamaji",
    doc = "A Kubernetes control plane (kube-apiserver, controller-manager, scheduler) run as a Deployment \
           in the management cluster, with its whole PKI owned by kamaji-rs.",
    scale(
        spec_replicas_path = ".spec.controlPlane.deployment.replicas",
        status_replicas_path = ".status.kubernetesResources.deployment.replicas",
        label_selector_path = ".status.kubernetesResources.deployment.selector"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.kubernetes.version",
        description = "Kubernetes version"
    ),
    printcolumn(
        name = "Installed Version",
        type_ = "string",
        json_path = ".status.kubernetesResources.version.version",
        description = "The actual installed Kubernetes version from status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.kubernetesResources.version.status",
        description = "Status"
    ),
    printcolumn(
        name = "Control-Plane endpoint",
        type_ = "string",
        json_path = ".status.controlPlaneEndpoint",
        description = "Tenant Control Plane Endpoint (API server)"
    ),
    printcolumn(
        name = "Kubeconfig",
        type_ = "string",
        json_path = ".status.kubeconfig.admin.secretName",
        description = "Secret which contains admin kubeconfig"
    ),
    printcolumn(
        name = "Datastore",
        type_ = "string",
        json_path = ".status.storage.dataStoreName",
        description = "DataStore actually used"
    ),
    printcolumn(
        name = "CA Rotation",
        type_ = "string",
        json_path = ".status.credentials.rotation.certificateAuthorities.phase",
        description = "Phase of the last CA rotation",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Age"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(oldSelf.dataStore) || has(self.dataStore)",
     "message": "unsetting the dataStore is not supported"},
    {"rule": "!has(oldSelf.dataStoreSchema) || has(self.dataStoreSchema)",
     "message": "unsetting the dataStoreSchema is not supported"},
    {"rule": "!has(oldSelf.dataStoreUsername) || has(self.dataStoreUsername)",
     "message": "unsetting the dataStoreUsername is not supported"},
    {"rule": "!has(self.networkProfile.loadBalancerSourceRanges) || (size(self.networkProfile.loadBalancerSourceRanges) == 0 || self.controlPlane.service.serviceType == 'LoadBalancer')",
     "message": "LoadBalancer source ranges are supported only with LoadBalancer service type"},
    {"rule": "!has(self.networkProfile.loadBalancerClass) || self.controlPlane.service.serviceType == 'LoadBalancer'",
     "message": "LoadBalancerClass is supported only with LoadBalancer service type"},
    {"rule": "!has(self.controlPlane.service.allocateLoadBalancerNodePorts) || self.controlPlane.service.serviceType == 'LoadBalancer'",
     "message": "allocateLoadBalancerNodePorts is supported only with LoadBalancer service type"},
    {"rule": "self.controlPlane.service.serviceType != 'LoadBalancer' || (oldSelf.controlPlane.service.serviceType != 'LoadBalancer' && self.controlPlane.service.serviceType == 'LoadBalancer') || has(self.networkProfile.loadBalancerClass) == has(oldSelf.networkProfile.loadBalancerClass)",
     "message": "LoadBalancerClass cannot be set or unset at runtime"}
]))]
pub struct TenantControlPlaneSpec {
    /// Name of the cluster-scoped DataStore backing this tenant; the manager's `--datastore` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::data_store")]
    pub data_store: Option<String>,
    /// Schema (etcd key prefix, SQL database) of the tenant in its DataStore; the tenant name when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::data_store_schema")]
    pub data_store_schema: Option<String>,
    /// User of the tenant in its DataStore: the CN of the etcd client certificate; the schema when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::data_store_username")]
    pub data_store_username: Option<String>,
    /// Kamaji's per-resource DataStore overrides; kept, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::data_store_overrides")]
    pub data_store_overrides: Option<Value>,
    /// Which writes the tenant's API server refuses (Kamaji's `WriteLimited` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::write_permissions")]
    pub write_permissions: Option<WritePermissions>,
    /// How the control plane runs in the management cluster.
    #[serde(default)]
    pub control_plane: ControlPlane,
    /// The tenant's Kubernetes settings.
    pub kubernetes: KubernetesSpec,
    /// Addresses, ports and CIDRs of the tenant.
    #[serde(default)]
    #[schemars(schema_with = "schema::network_profile")]
    pub network_profile: NetworkProfile,
    /// Optional tenant addons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addons: Option<Addons>,
}

/// How the control plane is deployed and exposed in the management cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.ingress) && has(self.gateway))", "message": "using both ingress and gateway is not supported"}
]))]
pub struct ControlPlane {
    /// The Deployment running kube-apiserver, kube-controller-manager and kube-scheduler.
    #[serde(default)]
    #[schemars(schema_with = "schema::deployment")]
    pub deployment: DeploymentSpec,
    /// The Service exposing the tenant's API server.
    #[serde(default)]
    #[schemars(schema_with = "schema::service")]
    pub service: ServiceSpec,
    /// Kamaji's Ingress exposure; kept, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::ingress")]
    pub ingress: Option<Value>,
    /// Kamaji's Gateway API exposure; kept, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::gateway")]
    pub gateway: Option<Value>,
}

/// The control-plane Deployment. Kamaji's other Deployment fields are kept
/// verbatim (the schema, [`schema::deployment`], types all of them as Kamaji
/// does); the customisation fields kamaji-rs acts on are read through
/// [`DeploymentSpec::customisation`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Number of control-plane replicas; 0 puts the tenant to sleep.
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    /// Kamaji's other Deployment fields as written; those not read by
    /// [`DeploymentSpec::customisation`] are kept but not acted on.
    #[serde(flatten)]
    pub not_acted_on: BTreeMap<String, Value>,
}

/// Kamaji's per-component settings: `apiServer`, `controllerManager`, `scheduler`, `kine`.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PerComponent<T> {
    /// For kube-apiserver.
    #[serde(default = "Option::default")]
    pub api_server: Option<T>,
    /// For kube-controller-manager.
    #[serde(default = "Option::default")]
    pub controller_manager: Option<T>,
    /// For kube-scheduler.
    #[serde(default = "Option::default")]
    pub scheduler: Option<T>,
    /// For kine (SQL and NATS DataStores only).
    #[serde(default = "Option::default")]
    pub kine: Option<T>,
}

impl<T> Default for PerComponent<T> {
    fn default() -> Self {
        Self {
            api_server: None,
            controller_manager: None,
            scheduler: None,
            kine: None,
        }
    }
}

/// Kamaji's `additionalMetadata`: labels and annotations added to an object.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AdditionalMetadata {
    /// Extra labels (never replacing kamaji-rs' own).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Kamaji's `registrySettings`: where the control-plane images come from.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySettings {
    /// Registry host (and path) of the images.
    #[serde(default = "default_registry")]
    pub registry: String,
    /// Appended to every image tag (e.g. `-fips`).
    #[serde(default)]
    pub tag_suffix: String,
    /// kube-apiserver's image name.
    #[serde(default = "default_api_server_image")]
    pub api_server_image: String,
    /// kube-controller-manager's image name.
    #[serde(default = "default_controller_manager_image")]
    pub controller_manager_image: String,
    /// kube-scheduler's image name.
    #[serde(default = "default_scheduler_image")]
    pub scheduler_image: String,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            registry: default_registry(),
            tag_suffix: String::new(),
            api_server_image: default_api_server_image(),
            controller_manager_image: default_controller_manager_image(),
            scheduler_image: default_scheduler_image(),
        }
    }
}

impl RegistrySettings {
    /// `<registry>/<name>:<tag><tagSuffix>`, as Kamaji builds control-plane images.
    pub fn image(&self, name: &str, tag: &str) -> String {
        format!("{}/{name}:{tag}{}", self.registry, self.tag_suffix)
    }
}

fn default_registry() -> String {
    "registry.k8s.io".into()
}

fn default_api_server_image() -> String {
    "kube-apiserver".into()
}

fn default_controller_manager_image() -> String {
    "kube-controller-manager".into()
}

fn default_scheduler_image() -> String {
    "kube-scheduler".into()
}

/// The Deployment customisation fields kamaji-rs acts on, read from the spec.
/// A field that does not read as its type (the schema makes that unlikely) is
/// left out here and stays listed among the fields not acted on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentCustomisation {
    /// Images of the three control-plane components.
    pub registry_settings: RegistrySettings,
    /// Pod `nodeSelector`.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Pod `runtimeClassName` (empty: none).
    pub runtime_class_name: Option<String>,
    /// Deployment strategy as written (`None`: Kamaji's default).
    pub strategy: Option<DeploymentStrategy>,
    /// Pod tolerations.
    pub tolerations: Option<Vec<Toleration>>,
    /// Pod affinity.
    pub affinity: Option<Affinity>,
    /// Pod topology spread constraints (without a selector: the control-plane pods').
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Resources per component.
    pub resources: PerComponent<ResourceRequirements>,
    /// Extra flags per component, `--flag=value` or `--flag`.
    pub extra_args: PerComponent<Vec<String>>,
    /// Labels and annotations of the Deployment.
    pub additional_metadata: AdditionalMetadata,
    /// Labels and annotations of the pods.
    pub pod_additional_metadata: AdditionalMetadata,
    /// Init containers run before the control plane.
    pub additional_init_containers: Vec<Container>,
    /// Containers beside the control plane (placed before it, as Kamaji does).
    pub additional_containers: Vec<Container>,
    /// Volumes added to the pod (placed before kamaji-rs' own).
    pub additional_volumes: Vec<Volume>,
    /// Extra mounts per component.
    pub additional_volume_mounts: PerComponent<Vec<VolumeMount>>,
    /// The pods' service account (Kamaji's default: `default`).
    pub service_account_name: Option<String>,
}

impl DeploymentSpec {
    /// The customisation fields acted on, each read on its own.
    pub fn customisation(&self) -> DeploymentCustomisation {
        DeploymentCustomisation {
            registry_settings: self.field("registrySettings").unwrap_or_default(),
            node_selector: self.field("nodeSelector"),
            runtime_class_name: self.field::<String>("runtimeClassName").filter(|n| !n.is_empty()),
            strategy: self.field("strategy"),
            tolerations: self.field("tolerations"),
            affinity: self.field("affinity"),
            topology_spread_constraints: self.field("topologySpreadConstraints"),
            resources: self.field("resources").unwrap_or_default(),
            extra_args: self.field("extraArgs").unwrap_or_default(),
            additional_metadata: self.field("additionalMetadata").unwrap_or_default(),
            pod_additional_metadata: self.field("podAdditionalMetadata").unwrap_or_default(),
            additional_init_containers: self.field("additionalInitContainers").unwrap_or_default(),
            additional_containers: self.field("additionalContainers").unwrap_or_default(),
            additional_volumes: self.field("additionalVolumes").unwrap_or_default(),
            additional_volume_mounts: self.field("additionalVolumeMounts").unwrap_or_default(),
            service_account_name: self
                .field::<String>("serviceAccountName")
                .filter(|n| !n.is_empty()),
        }
    }

    fn field<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        parse(self.not_acted_on.get(key)?)
    }
}

/// The Service customisation fields kamaji-rs acts on, read from the spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceCustomisation {
    /// Labels and annotations of the Service (e.g. a cloud's LoadBalancer annotations).
    pub additional_metadata: AdditionalMetadata,
    /// Ports added after the API server's (and konnectivity's).
    pub additional_ports: Vec<AdditionalPort>,
    /// `allocateLoadBalancerNodePorts` (LoadBalancer only; Kubernetes' default: true).
    pub allocate_load_balancer_node_ports: Option<bool>,
    /// `networkProfile.loadBalancerClass` (LoadBalancer only).
    pub load_balancer_class: Option<String>,
    /// `networkProfile.loadBalancerSourceRanges` (LoadBalancer only).
    pub load_balancer_source_ranges: Vec<String>,
}

/// Kamaji's `additionalPorts` entry.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalPort {
    /// Port name.
    pub name: String,
    /// TCP (default), UDP or SCTP.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Application protocol.
    #[serde(default)]
    pub app_protocol: Option<String>,
    /// Service port.
    pub port: i32,
    /// Pod port, number or name.
    pub target_port: IntOrString,
}

impl TenantControlPlaneSpec {
    /// The Service customisation fields acted on (from `controlPlane.service`
    /// and `networkProfile`), each read on its own.
    pub fn service_customisation(&self) -> ServiceCustomisation {
        let service = &self.control_plane.service.not_acted_on;
        let network = &self.network_profile.not_acted_on;
        let field = |map: &BTreeMap<String, Value>, key: &str| map.get(key).cloned();
        ServiceCustomisation {
            additional_metadata: field(service, "additionalMetadata")
                .and_then(|v| parse(&v))
                .unwrap_or_default(),
            additional_ports: field(service, "additionalPorts")
                .and_then(|v| parse(&v))
                .unwrap_or_default(),
            allocate_load_balancer_node_ports: field(service, "allocateLoadBalancerNodePorts")
                .and_then(|v| parse(&v)),
            load_balancer_class: field(network, "loadBalancerClass").and_then(|v| parse(&v)),
            load_balancer_source_ranges: field(network, "loadBalancerSourceRanges")
                .and_then(|v| parse(&v))
                .unwrap_or_default(),
        }
    }
}

fn parse<T: DeserializeOwned>(value: &Value) -> Option<T> {
    T::deserialize(value).ok()
}

/// Whether `key` is a customisation field kamaji-rs acts on (the ones read by
/// [`DeploymentSpec::customisation`] and
/// [`TenantControlPlaneSpec::service_customisation`]) and reads as its type.
fn acted_on(prefix: &str, key: &str, value: &Value) -> bool {
    fn reads<T: DeserializeOwned>(value: &Value) -> bool {
        T::deserialize(value).is_ok()
    }
    match (prefix, key) {
        ("spec.controlPlane.deployment", "registrySettings") => reads::<RegistrySettings>(value),
        ("spec.controlPlane.deployment", "nodeSelector") => reads::<BTreeMap<String, String>>(value),
        ("spec.controlPlane.deployment", "runtimeClassName" | "serviceAccountName") => reads::<String>(value),
        ("spec.controlPlane.deployment", "strategy") => reads::<DeploymentStrategy>(value),
        ("spec.controlPlane.deployment", "tolerations") => reads::<Vec<Toleration>>(value),
        ("spec.controlPlane.deployment", "affinity") => reads::<Affinity>(value),
        ("spec.controlPlane.deployment", "topologySpreadConstraints") => {
            reads::<Vec<TopologySpreadConstraint>>(value)
        }
        ("spec.controlPlane.deployment", "resources") => reads::<PerComponent<ResourceRequirements>>(value),
        ("spec.controlPlane.deployment", "extraArgs") => reads::<PerComponent<Vec<String>>>(value),
        ("spec.controlPlane.deployment" | "spec.controlPlane.service", "additionalMetadata")
        | ("spec.controlPlane.deployment", "podAdditionalMetadata") => reads::<AdditionalMetadata>(value),
        ("spec.controlPlane.deployment", "additionalInitContainers" | "additionalContainers") => {
            reads::<Vec<Container>>(value)
        }
        ("spec.controlPlane.deployment", "additionalVolumes") => reads::<Vec<Volume>>(value),
        ("spec.controlPlane.deployment", "additionalVolumeMounts") => {
            reads::<PerComponent<Vec<VolumeMount>>>(value)
        }
        ("spec.controlPlane.service", "additionalPorts") => reads::<Vec<AdditionalPort>>(value),
        ("spec.controlPlane.service", "allocateLoadBalancerNodePorts") => reads::<bool>(value),
        ("spec.networkProfile", "loadBalancerClass") => reads::<String>(value),
        ("spec.networkProfile", "loadBalancerSourceRanges") => reads::<Vec<String>>(value),
        _ => false,
    }
}

impl Default for DeploymentSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            not_acted_on: BTreeMap::new(),
        }
    }
}

fn default_replicas() -> i32 {
    2
}

/// The Service in front of the tenant's API server (schema: [`schema::service`]).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type: ClusterIP (default), NodePort or LoadBalancer.
    #[serde(default)]
    pub service_type: ServiceType,
    /// Kamaji's other Service fields as written; those not read by
    /// [`TenantControlPlaneSpec::service_customisation`] are kept but not acted on.
    #[serde(flatten)]
    pub not_acted_on: BTreeMap<String, Value>,
}

/// Kubernetes Service types a tenant can be exposed with.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the management cluster.
    #[default]
    ClusterIP,
    /// Reachable on every node's port.
    NodePort,
    /// Reachable through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Service `spec.type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The tenant's Kubernetes settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesSpec {
    /// Kubernetes version of the control plane, e.g. `v1.37.2`, `1.33.0` or `v1.34.0-rc.1`:
    /// read it through [`KubernetesSpec::image_tag`].
    #[schemars(schema_with = "schema::kubernetes_version")]
    pub version: String,
    /// Kamaji's kubelet settings for joining nodes: `cgroupfs` and
    /// `configurationJSONPatches` shape the tenant's `kube-system/kubelet-config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::kubelet")]
    pub kubelet: Option<Value>,
    /// Admission plugins enabled on the tenant's API server (Kamaji's list by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::admission_controllers")]
    pub admission_controllers: Vec<String>,
}

/// Network settings of the tenant (schema, with Kamaji's defaults and rules:
/// [`schema::network_profile`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    /// Address (IP or host name) the API server is reached at; when empty, the
    /// Service's address is used. Read it through [`NetworkProfile::endpoint_address`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port of the API server.
    #[serde(default = "default_port")]
    pub port: i32,
    /// Extra subject alternative names (DNS names or IPs) of the API server certificate.
    #[serde(default, rename = "certSANs", skip_serializing_if = "Vec::is_empty")]
    pub cert_sans: Vec<String>,
    /// CIDR of the tenant's Services; its first address is `kubernetes.default`.
    #[serde(default = "default_service_cidr")]
    pub service_cidr: String,
    /// CIDR of the tenant's Pods; may be empty (Kamaji: no node CIDR allocation).
    /// Read it through [`NetworkProfile::pod_cidr`].
    #[serde(default = "default_pod_cidr")]
    pub pod_cidr: String,
    /// Cluster DNS Service IPs.
    #[serde(default, rename = "dnsServiceIPs", skip_serializing_if = "Vec::is_empty")]
    pub dns_service_ips: Vec<String>,
    /// DNS domain of the tenant cluster.
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
    /// Kamaji's other network fields (serviceCidrs, loadBalancerClass...) kept but not acted on.
    #[serde(flatten)]
    pub not_acted_on: BTreeMap<String, Value>,
}

impl Default for NetworkProfile {
    fn default() -> Self {
        Self {
            address: None,
            port: default_port(),
            cert_sans: Vec::new(),
            service_cidr: default_service_cidr(),
            pod_cidr: default_pod_cidr(),
            dns_service_ips: Vec::new(),
            cluster_domain: default_cluster_domain(),
            not_acted_on: BTreeMap::new(),
        }
    }
}

fn default_port() -> i32 {
    6443
}
fn default_service_cidr() -> String {
    "10.96.0.0/16".into()
}
fn default_pod_cidr() -> String {
    "10.244.0.0/16".into()
}
fn default_cluster_domain() -> String {
    "cluster.local".into()
}

/// Tenant addons.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Addons {
    /// The konnectivity server beside the API server (and its agent in the tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub konnectivity: Option<Konnectivity>,
    /// Kamaji's CoreDNS addon, installed in the tenant as kubeadm's addon phase does.
    #[serde(default, rename = "coreDNS", skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::image_override")]
    pub core_dns: Option<Value>,
    /// Kamaji's kube-proxy addon, installed in the tenant as kubeadm's addon phase does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::image_override")]
    pub kube_proxy: Option<Value>,
}

/// The konnectivity addon.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Konnectivity {
    /// The konnectivity-server sidecar of the control plane.
    #[serde(default)]
    #[schemars(schema_with = "schema::konnectivity_server")]
    pub server: KonnectivityServer,
    /// The konnectivity agent run inside the tenant (a DaemonSet, or a Deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::konnectivity_agent")]
    pub agent: Option<Value>,
}

/// The konnectivity-server sidecar (schema: [`schema::konnectivity_server`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KonnectivityServer {
    /// Port the agents connect to.
    #[serde(default = "default_konnectivity_port")]
    pub port: i32,
    /// Container image of konnectivity-server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image tag of konnectivity-server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Flags added to konnectivity-server's (ours win over one of the same name, as in Kamaji).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// The container's resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// The container's security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<k8s_openapi::api::core::v1::SecurityContext>,
    /// Fields of a later Kamaji, kept but not acted on.
    #[serde(flatten)]
    pub not_acted_on: BTreeMap<String, Value>,
}

impl Default for KonnectivityServer {
    fn default() -> Self {
        Self {
            port: default_konnectivity_port(),
            // Kamaji's CRD default, so the schema's default reads as Kamaji's.
            image: Some(schema::KONNECTIVITY_SERVER_IMAGE.to_string()),
            version: None,
            extra_args: Vec::new(),
            resources: None,
            security_context: None,
            not_acted_on: BTreeMap::new(),
        }
    }
}

fn default_konnectivity_port() -> i32 {
    8132
}

/// Kamaji's `spec.writePermissions`: writes blocked in the tenant cluster.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WritePermissions {
    /// Refuse creations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_creation: Option<bool>,
    /// Refuse updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_update: Option<bool>,
    /// Refuse deletions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_deletion: Option<bool>,
}

impl WritePermissions {
    /// The admission operations refused, in Kubernetes' spelling; empty when none is.
    pub fn blocked_operations(&self) -> Vec<&'static str> {
        [
            (self.block_creation, "CREATE"),
            (self.block_update, "UPDATE"),
            (self.block_deletion, "DELETE"),
        ]
        .into_iter()
        .filter_map(|(blocked, operation)| blocked.unwrap_or(false).then_some(operation))
        .collect()
    }
}

impl TenantControlPlaneSpec {
    /// Writes are limited in the tenant cluster (Kamaji's `WriteLimited`).
    pub fn write_limited(&self) -> bool {
        self.write_permissions
            .as_ref()
            .is_some_and(|p| !p.blocked_operations().is_empty())
    }

    /// JSON paths of the fields present in this spec that kamaji-rs keeps but
    /// does not act on, for the `FieldsNotActedOn` condition.
    pub fn fields_not_acted_on(&self) -> Vec<String> {
        let mut fields = Vec::new();
        for (path, present) in [
            ("spec.dataStoreOverrides", self.data_store_overrides.is_some()),
            ("spec.controlPlane.ingress", self.control_plane.ingress.is_some()),
            ("spec.controlPlane.gateway", self.control_plane.gateway.is_some()),
        ] {
            if present {
                fields.push(path.to_string());
            }
        }
        // cgroupfs and configurationJSONPatches shape kube-system/kubelet-config and
        // preferredAddressTypes the API server's flag; any other key is Kamaji's.
        if let Some(kubelet) = self.kubernetes.kubelet.as_ref().and_then(Value::as_object) {
            fields.extend(
                kubelet
                    .keys()
                    .filter(|k| {
                        !matches!(
                            k.as_str(),
                            "cgroupfs" | "configurationJSONPatches" | "preferredAddressTypes"
                        )
                    })
                    .map(|k| format!("spec.kubernetes.kubelet.{k}")),
            );
        }
        let flattened = [
            (
                "spec.controlPlane.deployment",
                &self.control_plane.deployment.not_acted_on,
            ),
            (
                "spec.controlPlane.service",
                &self.control_plane.service.not_acted_on,
            ),
            ("spec.networkProfile", &self.network_profile.not_acted_on),
        ];
        for (prefix, extra) in flattened {
            fields.extend(
                extra
                    .iter()
                    .filter(|(key, value)| !is_kamaji_default(prefix, key, value))
                    .filter(|(key, value)| !acted_on(prefix, key, value))
                    .map(|(key, _)| format!("{prefix}.{key}")),
            );
        }
        // No kine container runs on an etcd DataStore: its settings mean nothing yet.
        let customisation = self.control_plane.deployment.customisation();
        if customisation.resources.kine.is_some() {
            fields.push("spec.controlPlane.deployment.resources.kine".into());
        }
        if customisation.extra_args.kine.is_some() {
            fields.push("spec.controlPlane.deployment.extraArgs.kine".into());
        }
        if let Some(server) = self
            .addons
            .as_ref()
            .and_then(|a| a.konnectivity.as_ref())
            .map(|k| &k.server)
        {
            fields.extend(
                server
                    .not_acted_on
                    .keys()
                    .map(|k| format!("spec.addons.konnectivity.server.{k}")),
            );
        }
        fields
    }

    /// The konnectivity-server image: `spec.addons.konnectivity.server.image`
    /// (Kamaji's default, `registry.k8s.io/kas-network-proxy/proxy-server`, when
    /// unset) with `server.version` as its tag, or `v0.<minor>.0` of the tenant's
    /// Kubernetes minor when no version is given, as Kamaji derives it.
    /// `None` without the addon.
    pub fn konnectivity_server_image(&self) -> Option<String> {
        let server = &self.konnectivity()?.server;
        let image = server
            .image
            .as_deref()
            .filter(|i| !i.is_empty())
            .unwrap_or(schema::KONNECTIVITY_SERVER_IMAGE);
        let tag = match server.version.as_deref().filter(|v| !v.is_empty()) {
            Some(version) => version.to_string(),
            None => self.kubernetes.konnectivity_tag(),
        };
        Some(format!("{image}:{tag}"))
    }

    /// Whether the konnectivity addon is enabled.
    pub fn konnectivity(&self) -> Option<&Konnectivity> {
        self.addons
            .as_ref()
            .and_then(|addons| addons.konnectivity.as_ref())
    }
}

/// Whether a field the API server filled with Kamaji's default still holds it:
/// a default nobody wrote is not reported as a field not acted on.
fn is_kamaji_default(prefix: &str, key: &str, value: &Value) -> bool {
    match (prefix, key) {
        ("spec.controlPlane.deployment", "registrySettings") => *value == schema::default_registry_settings(),
        ("spec.controlPlane.deployment", "strategy") => *value == schema::default_strategy(),
        ("spec.controlPlane.deployment", "serviceAccountName") => value == "default",
        _ => false,
    }
}

impl KubernetesSpec {
    /// The version as registry.k8s.io tags the control-plane images: with its
    /// `v` (`1.33.0` → `v1.33.0`; `v1.34.0-rc.1` unchanged). Call this, not
    /// `version`, wherever an image tag or a version comparison is built.
    pub fn image_tag(&self) -> String {
        let version = self.version.trim();
        if version.starts_with('v') {
            version.to_string()
        } else {
            format!("v{version}")
        }
    }

    /// konnectivity's image tag for this Kubernetes version, as Kamaji derives it:
    /// `v0.<minor>.0` (apiserver-network-proxy releases follow the Kubernetes minor).
    pub fn konnectivity_tag(&self) -> String {
        let tag = self.image_tag();
        let minor = tag.trim_start_matches('v').split(['.', '-', '+']).nth(1);
        match minor.filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit())) {
            Some(minor) => format!("v0.{minor}.0"),
            None => tag,
        }
    }
}

/// Where clients reach the tenant's API server: `spec.networkProfile.address`
/// as an IP or as a host name (Kamaji accepts both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointAddress<'a> {
    /// An IPv4 or IPv6 address: an IP SAN, and the API server's `--advertise-address`.
    Ip(std::net::IpAddr),
    /// A host name: a DNS SAN; the API server advertises no address of its own.
    Name(&'a str),
}

impl NetworkProfile {
    /// `address`, told apart: `None` when empty (the Service's address is used).
    pub fn endpoint_address(&self) -> Option<EndpointAddress<'_>> {
        let address = self.address.as_deref().map(str::trim).filter(|a| !a.is_empty())?;
        Some(match address.parse() {
            Ok(ip) => EndpointAddress::Ip(ip),
            Err(_) => EndpointAddress::Name(address),
        })
    }

    /// The API server's `--advertise-address`: `address` when it is an IP, else
    /// Kamaji's `advertiseAddress` (validated as an IP by the schema).
    pub fn advertise_address(&self) -> Option<std::net::IpAddr> {
        if let Some(EndpointAddress::Ip(ip)) = self.endpoint_address() {
            return Some(ip);
        }
        self.not_acted_on
            .get("advertiseAddress")
            .and_then(Value::as_str)
            .and_then(|a| a.parse().ok())
    }

    /// The Pod CIDR, `None` when empty (Kamaji allows `podCidr: ""`: the
    /// controller-manager then allocates no node CIDRs) or, when empty, the first
    /// of Kamaji's `podCidrs`.
    pub fn pod_cidr(&self) -> Option<&str> {
        non_empty_or_first(&self.pod_cidr, self.not_acted_on.get("podCidrs"))
    }

    /// The Service CIDR: `serviceCidr`, or when empty the first of Kamaji's `serviceCidrs`.
    pub fn service_cidr(&self) -> Option<&str> {
        non_empty_or_first(&self.service_cidr, self.not_acted_on.get("serviceCidrs"))
    }
}

fn non_empty_or_first<'a>(single: &'a str, list: Option<&'a Value>) -> Option<&'a str> {
    let single = single.trim();
    if !single.is_empty() {
        return Some(single);
    }
    list?.as_array()?.first()?.as_str().filter(|c| !c.is_empty())
}

/// Observed state, with Kamaji's field names so Kamaji tooling reads it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantControlPlaneStatus {
    /// `<address>:<port>` of the tenant API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<String>,
    /// Version and workload status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_resources: Option<KubernetesResourcesStatus>,
    /// The kubeconfig Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<KubeconfigsStatus>,
    /// The certificate Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificatesStatus>,
    /// The DataStore in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageStatus>,
    /// Addon status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addons: Option<AddonsStatus>,
    /// Credential rotations (the two-phase CA rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<super::rotation::CredentialsStatus>,
    /// Standard conditions (Ready, CertificatesReady, FieldsNotActedOn, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // Keyed by type, as metav1 conditions are: each controller applies only its own types.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Kamaji's `status.kubernetesResources`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesResourcesStatus {
    /// Installed version and lifecycle status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionStatus>,
    /// The control-plane Deployment as observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentStatus>,
}

/// Installed version and lifecycle status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionStatus {
    /// The Kubernetes version running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Lifecycle status of the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<KubernetesVersionStatus>,
}

/// Kamaji's `KubernetesVersionStatus` enum.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum KubernetesVersionStatus {
    /// First rollout not finished.
    #[default]
    Provisioning,
    /// A new CA is being rolled out.
    CertificateAuthorityRotating,
    /// A version change is rolling out.
    Upgrading,
    /// The tenant moves to another DataStore (not implemented by kamaji-rs).
    Migrating,
    /// All replicas run the current spec.
    Ready,
    /// No replica is ready.
    NotReady,
    /// Scaled to zero.
    Sleeping,
    /// Serving, with the writes of `spec.writePermissions` refused in the tenant.
    WriteLimited,
    /// Serving while a rollout that is neither the first, an upgrade nor a CA
    /// rotation step progresses (Kamaji's name for it).
    Unknown,
}

impl KubernetesVersionStatus {
    /// The control plane has rolled out at least once and serves: the tenant side
    /// may be set up (Kamaji's soot manager runs in these too).
    pub fn serving(self) -> bool {
        matches!(self, Self::Ready | Self::WriteLimited | Self::Unknown)
    }

    /// The status as printed by `kubectl get tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "Provisioning",
            Self::CertificateAuthorityRotating => "CertificateAuthorityRotating",
            Self::Upgrading => "Upgrading",
            Self::Migrating => "Migrating",
            Self::Ready => "Ready",
            Self::NotReady => "NotReady",
            Self::Sleeping => "Sleeping",
            Self::WriteLimited => "WriteLimited",
            Self::Unknown => "Unknown",
        }
    }
}

/// The control-plane Deployment as observed (also the scale subresource's source).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// Name of the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Current replicas.
    #[serde(default)]
    pub replicas: i32,
    /// Ready replicas.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the control-plane pods, for `kubectl scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// One managed Secret: name, checksum of its data and when it last changed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStatus {
    /// Name of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Checksum of the Secret's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// When the data last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<String>,
}

/// Kamaji's `status.kubeconfig`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeconfigsStatus {
    /// `<tcp>-admin-kubeconfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<SecretStatus>,
    /// `<tcp>-controller-manager-kubeconfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_manager: Option<SecretStatus>,
    /// `<tcp>-scheduler-kubeconfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SecretStatus>,
}

/// Kamaji's `status.certificates`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesStatus {
    /// `<tcp>-ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<SecretStatus>,
    /// `<tcp>-api-server-certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<SecretStatus>,
    /// `<tcp>-api-server-kubelet-client-certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server_kubelet_client: Option<SecretStatus>,
    /// `<tcp>-front-proxy-ca-certificate`.
    #[serde(default, rename = "frontProxyCA", skip_serializing_if = "Option::is_none")]
    pub front_proxy_ca: Option<SecretStatus>,
    /// `<tcp>-front-proxy-client-certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_proxy_client: Option<SecretStatus>,
    /// `<tcp>-sa-certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sa: Option<SecretStatus>,
}

/// Kamaji's `status.storage`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageStatus {
    /// Driver of the DataStore (etcd, MySQL, PostgreSQL, NATS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Name of the DataStore in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_store_name: Option<String>,
    /// `<tcp>-datastore-config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<SecretStatus>,
    /// `<tcp>-datastore-certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<SecretStatus>,
}

/// Kamaji's `status.addons`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddonsStatus {
    /// The konnectivity certificate and kubeconfig Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub konnectivity: Option<KonnectivityStatus>,
}

/// Kamaji's `status.addons.konnectivity`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KonnectivityStatus {
    /// Whether the addon is enabled.
    #[serde(default)]
    pub enabled: bool,
    /// `<tcp>-konnectivity-certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<SecretStatus>,
    /// `<tcp>-konnectivity-kubeconfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<SecretStatus>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kubernetes(version: &str) -> KubernetesSpec {
        KubernetesSpec {
            version: version.into(),
            ..KubernetesSpec::default()
        }
    }

    #[test]
    fn image_tags_carry_the_v_that_kamaji_manifests_may_leave_out() {
        assert_eq!(kubernetes("1.33.0").image_tag(), "v1.33.0");
        assert_eq!(kubernetes("v1.37.2").image_tag(), "v1.37.2");
        assert_eq!(kubernetes("v1.34.0-rc.1").image_tag(), "v1.34.0-rc.1");
        assert_eq!(kubernetes("1.34.0-rc.1").konnectivity_tag(), "v0.34.0");
        assert_eq!(kubernetes("v1.37.2").konnectivity_tag(), "v0.37.0");
    }

    #[test]
    fn addresses_are_ips_or_host_names() {
        let mut network = NetworkProfile {
            address: Some("k8s.example.com".into()),
            ..NetworkProfile::default()
        };
        assert_eq!(
            network.endpoint_address(),
            Some(EndpointAddress::Name("k8s.example.com"))
        );
        assert_eq!(network.advertise_address(), None);
        network
            .not_acted_on
            .insert("advertiseAddress".into(), json!("192.0.2.7"));
        assert_eq!(
            network.advertise_address(),
            Some("192.0.2.7".parse().expect("ip"))
        );
        network.address = Some("2001:db8::1".into());
        assert_eq!(
            network.endpoint_address(),
            Some(EndpointAddress::Ip("2001:db8::1".parse().expect("ip")))
        );
        network.address = Some(String::new());
        assert_eq!(network.endpoint_address(), None);
    }

    #[test]
    fn empty_cidrs_fall_back_to_kamajis_lists_or_to_none() {
        let mut network = NetworkProfile {
            pod_cidr: String::new(),
            ..NetworkProfile::default()
        };
        assert_eq!(network.pod_cidr(), None);
        assert_eq!(network.service_cidr(), Some("10.96.0.0/16"));
        network
            .not_acted_on
            .insert("podCidrs".into(), json!(["10.244.0.0/16", "fd00:244::/56"]));
        assert_eq!(network.pod_cidr(), Some("10.244.0.0/16"));
    }

    #[test]
    fn kamaji_defaults_nobody_wrote_are_not_fields_not_acted_on() {
        let mut spec = TenantControlPlaneSpec {
            kubernetes: KubernetesSpec {
                kubelet: Some(json!({"preferredAddressTypes": ["InternalIP", "ExternalIP", "Hostname"]})),
                ..kubernetes("v1.37.2")
            },
            ..TenantControlPlaneSpec::default()
        };
        let deployment = &mut spec.control_plane.deployment.not_acted_on;
        deployment.insert("registrySettings".into(), schema::default_registry_settings());
        deployment.insert("strategy".into(), schema::default_strategy());
        deployment.insert("serviceAccountName".into(), json!("default"));
        assert_eq!(spec.fields_not_acted_on(), Vec::<String>::new());
        spec.control_plane
            .deployment
            .not_acted_on
            .insert("podSecurityContext".into(), json!({"runAsNonRoot": true}));
        assert_eq!(
            spec.fields_not_acted_on(),
            ["spec.controlPlane.deployment.podSecurityContext"]
        );
    }

    #[test]
    fn every_field_the_builders_read_is_not_reported_as_not_acted_on() {
        let mut spec = TenantControlPlaneSpec {
            kubernetes: kubernetes("v1.37.2"),
            ..TenantControlPlaneSpec::default()
        };
        let mount = json!([{"name": "v", "mountPath": "/v"}]);
        let fields = [
            ("registrySettings", json!({"registry": "mirror.example.com"})),
            ("nodeSelector", json!({"a": "b"})),
            ("runtimeClassName", json!("gvisor")),
            ("strategy", json!({"type": "Recreate"})),
            ("tolerations", json!([{"operator": "Exists"}])),
            ("affinity", json!({"nodeAffinity": {}})),
            (
                "topologySpreadConstraints",
                json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]),
            ),
            ("resources", json!({"scheduler": {"limits": {"cpu": "1"}}})),
            ("extraArgs", json!({"apiServer": ["--v=2"]})),
            ("additionalMetadata", json!({"labels": {"a": "b"}})),
            ("podAdditionalMetadata", json!({"annotations": {"a": "b"}})),
            ("additionalInitContainers", json!([{"name": "init"}])),
            ("additionalContainers", json!([{"name": "sidecar"}])),
            ("additionalVolumes", json!([{"name": "v", "emptyDir": {}}])),
            ("additionalVolumeMounts", json!({"apiServer": mount})),
            ("serviceAccountName", json!("tenant")),
        ];
        for (key, value) in fields {
            spec.control_plane
                .deployment
                .not_acted_on
                .insert(key.into(), value);
        }
        let service = &mut spec.control_plane.service.not_acted_on;
        service.insert("additionalMetadata".into(), json!({"annotations": {"a": "b"}}));
        service.insert(
            "additionalPorts".into(),
            json!([{"name": "m", "port": 1, "targetPort": 1}]),
        );
        service.insert("allocateLoadBalancerNodePorts".into(), json!(false));
        let network = &mut spec.network_profile.not_acted_on;
        network.insert("loadBalancerClass".into(), json!("example.com/lb"));
        network.insert("loadBalancerSourceRanges".into(), json!(["192.0.2.0/24"]));
        assert_eq!(spec.fields_not_acted_on(), Vec::<String>::new());
        let custom = spec.control_plane.deployment.customisation();
        let default = DeploymentCustomisation::default();
        assert_ne!(custom.registry_settings, default.registry_settings);
        assert!(custom.node_selector.is_some() && custom.runtime_class_name.is_some());
        assert!(custom.strategy.is_some() && custom.tolerations.is_some() && custom.affinity.is_some());
        assert!(custom.topology_spread_constraints.is_some());
        assert!(custom.resources.scheduler.is_some() && custom.extra_args.api_server.is_some());
        assert_ne!(custom.additional_metadata, default.additional_metadata);
        assert_ne!(custom.pod_additional_metadata, default.pod_additional_metadata);
        assert_eq!(custom.additional_init_containers.len(), 1);
        assert_eq!(custom.additional_containers.len(), 1);
        assert_eq!(custom.additional_volumes.len(), 1);
        assert!(custom.additional_volume_mounts.api_server.is_some());
        assert_eq!(custom.service_account_name.as_deref(), Some("tenant"));
        let service = spec.service_customisation();
        assert_eq!(service.additional_ports.len(), 1);
        assert_eq!(service.allocate_load_balancer_node_ports, Some(false));
        assert_eq!(service.load_balancer_source_ranges, ["192.0.2.0/24"]);
        assert!(!service.additional_metadata.annotations.is_empty());
    }

    #[test]
    fn customisation_fields_are_acted_on_unless_they_do_not_read_or_are_for_kine() {
        let mut spec = TenantControlPlaneSpec {
            kubernetes: kubernetes("v1.37.2"),
            ..TenantControlPlaneSpec::default()
        };
        let deployment = &mut spec.control_plane.deployment.not_acted_on;
        deployment.insert("serviceAccountName".into(), json!("tenant"));
        deployment.insert("nodeSelector".into(), json!({"a": "b"}));
        deployment.insert(
            "resources".into(),
            json!({"apiServer": {"requests": {"cpu": "1"}}}),
        );
        deployment.insert("extraArgs".into(), json!({"kine": ["--debug"]}));
        deployment.insert("tolerations".into(), json!("not a list"));
        let service = &mut spec.control_plane.service.not_acted_on;
        service.insert("additionalMetadata".into(), json!({"annotations": {"a": "b"}}));
        let network = &mut spec.network_profile.not_acted_on;
        network.insert("loadBalancerClass".into(), json!("example.com/lb"));
        network.insert("loadBalancerSourceRanges".into(), json!(["192.0.2.0/24"]));
        assert_eq!(
            spec.fields_not_acted_on(),
            [
                "spec.controlPlane.deployment.tolerations",
                "spec.controlPlane.deployment.extraArgs.kine"
            ]
        );
        let custom = spec.control_plane.deployment.customisation();
        assert_eq!(custom.service_account_name.as_deref(), Some("tenant"));
        assert_eq!(custom.tolerations, None);
        assert_eq!(
            spec.service_customisation().load_balancer_class.as_deref(),
            Some("example.com/lb")
        );
    }

    #[test]
    fn the_konnectivity_image_follows_kamaji() {
        let mut spec = TenantControlPlaneSpec {
            kubernetes: kubernetes("1.33.0"),
            addons: Some(Addons {
                konnectivity: Some(Konnectivity::default()),
                ..Addons::default()
            }),
            ..TenantControlPlaneSpec::default()
        };
        assert_eq!(
            spec.konnectivity_server_image().as_deref(),
            Some("registry.k8s.io/kas-network-proxy/proxy-server:v0.33.0")
        );
        if let Some(k) = spec.addons.as_mut().and_then(|a| a.konnectivity.as_mut()) {
            k.server.version = Some("v0.31.2".into());
        }
        assert_eq!(
            spec.konnectivity_server_image().as_deref(),
            Some("registry.k8s.io/kas-network-proxy/proxy-server:v0.31.2")
        );
    }
}
