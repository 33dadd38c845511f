//! The `TenantControlPlane` custom resource, field-compatible with Kamaji's
//! `kamaji.clastix.io/v1alpha1`: a Kamaji manifest applies unchanged. Fields
//! kamaji-rs does not act on are kept verbatim and listed by
//! [`TenantControlPlaneSpec::fields_not_acted_on`] so the status can name them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
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
    /// Kamaji's write-permission toggles; kept, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::write_permissions")]
    pub write_permissions: Option<Value>,
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

/// The control-plane Deployment. Kamaji's other Deployment fields (strategy,
/// resources, extraArgs, additional containers...) are kept verbatim; the
/// schema ([`schema::deployment`]) types all of them as Kamaji does.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Number of control-plane replicas; 0 puts the tenant to sleep.
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    /// Fields of Kamaji's Deployment spec that kamaji-rs keeps but does not act on.
    #[serde(flatten)]
    pub not_acted_on: BTreeMap<String, Value>,
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
    /// Fields of Kamaji's Service spec (additionalMetadata...) kept but not acted on.
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
    /// The konnectivity agent run inside the tenant; kept, not acted on.
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
    /// Kamaji's other server fields (resources, extraArgs) kept but not acted on.
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
            not_acted_on: BTreeMap::new(),
        }
    }
}

fn default_konnectivity_port() -> i32 {
    8132
}

impl TenantControlPlaneSpec {
    /// JSON paths of the fields present in this spec that kamaji-rs keeps but
    /// does not act on, for the `FieldsNotActedOn` condition.
    pub fn fields_not_acted_on(&self) -> Vec<String> {
        let mut fields = Vec::new();
        for (path, present) in [
            ("spec.dataStoreOverrides", self.data_store_overrides.is_some()),
            ("spec.writePermissions", self.write_permissions.is_some()),
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
        // coreDNS and kubeProxy are installed in the tenant; the konnectivity agent not yet.
        if let Some(konnectivity) = self.konnectivity()
            && konnectivity
                .agent
                .as_ref()
                .is_some_and(|agent| *agent != schema::default_konnectivity_agent())
        {
            fields.push("spec.addons.konnectivity.agent".to_string());
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
                    .map(|(key, _)| format!("{prefix}.{key}")),
            );
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
    /// The DataStore only allows reads (not implemented by kamaji-rs).
    WriteLimited,
    /// None of the above could be established.
    Unknown,
}

impl KubernetesVersionStatus {
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
            .insert("serviceAccountName".into(), json!("tenant"));
        assert_eq!(
            spec.fields_not_acted_on(),
            ["spec.controlPlane.deployment.serviceAccountName"]
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
