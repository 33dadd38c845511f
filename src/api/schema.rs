//! Schema pieces the derive cannot express: Kamaji's field set for the parts of
//! the spec kamaji-rs keeps (typed as Kamaji types them, so strict field
//! validation accepts and rejects the same manifests), Kamaji's defaults, and
//! the validation rules the API server enforces.
//!
//! Written from Kamaji's Go API types (`api/v1alpha1`, release 26.8.2-edge);
//! core Kubernetes types (Container, Volume, Affinity, ...) come from
//! k8s-openapi, as controller-gen takes them from k8s.io/api.

use k8s_openapi::api::{
    apps::v1::DeploymentStrategy,
    core::v1::{
        Affinity, Container, PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
        TopologySpreadConstraint, Volume, VolumeMount,
    },
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value, json};

/// Kamaji's default `spec.kubernetes.admissionControllers`.
pub const DEFAULT_ADMISSION_CONTROLLERS: &[&str] = &[
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "DefaultStorageClass",
    "DefaultTolerationSeconds",
    "LimitRanger",
    "MutatingAdmissionWebhook",
    "NamespaceLifecycle",
    "PersistentVolumeClaimResize",
    "Priority",
    "ResourceQuota",
    "RuntimeClass",
    "ServiceAccount",
    "StorageObjectInUseProtection",
    "TaintNodesByCondition",
    "ValidatingAdmissionWebhook",
];

/// The admission plugins Kamaji's schema allows.
const ADMISSION_CONTROLLERS: &[&str] = &[
    "AlwaysAdmit",
    "AlwaysDeny",
    "AlwaysPullImages",
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "DefaultStorageClass",
    "DefaultTolerationSeconds",
    "DenyEscalatingExec",
    "DenyExecOnPrivileged",
    "DenyServiceExternalIPs",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "ImagePolicyWebhook",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "MutatingAdmissionWebhook",
    "NamespaceAutoProvision",
    "NamespaceExists",
    "NamespaceLifecycle",
    "NodeRestriction",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "PersistentVolumeLabel",
    "PodNodeSelector",
    "PodSecurity",
    "PodSecurityPolicy",
    "PodTolerationRestriction",
    "Priority",
    "ResourceQuota",
    "RuntimeClass",
    "SecurityContextDeny",
    "ServiceAccount",
    "StorageObjectInUseProtection",
    "TaintNodesByCondition",
    "ValidatingAdmissionWebhook",
];

/// Kamaji's default konnectivity-server image.
pub const KONNECTIVITY_SERVER_IMAGE: &str = "registry.k8s.io/kas-network-proxy/proxy-server";
/// Kamaji's default konnectivity-agent image.
pub const KONNECTIVITY_AGENT_IMAGE: &str = "registry.k8s.io/kas-network-proxy/proxy-agent";

/// Kamaji's default `spec.controlPlane.deployment.registrySettings`.
pub fn default_registry_settings() -> Value {
    json!({
        "registry": "registry.k8s.io",
        "apiServerImage": "kube-apiserver",
        "controllerManagerImage": "kube-controller-manager",
        "schedulerImage": "kube-scheduler",
    })
}

/// Kamaji's default `spec.controlPlane.deployment.strategy`: a surge of a full
/// replica set, nobody taken down first.
pub fn default_strategy() -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "100%"}})
}

/// Kamaji's default `spec.addons.konnectivity.agent`, after the API server has
/// filled the defaults of its fields too.
pub fn default_konnectivity_agent() -> Value {
    json!({
        "image": KONNECTIVITY_AGENT_IMAGE,
        "mode": "DaemonSet",
        "hostNetwork": false,
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
    })
}

/// Kamaji's default `spec.kubernetes.kubelet.preferredAddressTypes`.
pub fn default_preferred_address_types() -> Value {
    json!(["InternalIP", "ExternalIP", "Hostname"])
}

fn sub<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

fn array_of(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

fn strings() -> Value {
    array_of(json!({"type": "string"}))
}

fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

/// Kamaji's `AdditionalMetadata`: labels and annotations added to an object.
fn additional_metadata() -> Value {
    json!({
        "type": "object",
        "properties": {"labels": string_map(), "annotations": string_map()},
    })
}

/// Kamaji's per-component object (`apiServer`, `controllerManager`, `scheduler`[, `kine`]).
fn per_component(item: &Value, kine: bool) -> Value {
    let mut properties = serde_json::Map::new();
    for component in ["apiServer", "controllerManager", "scheduler"] {
        properties.insert(component.into(), item.clone());
    }
    if kine {
        properties.insert("kine".into(), item.clone());
    }
    json!({"type": "object", "properties": properties})
}

fn probe() -> Value {
    let at_least = |min: i64| json!({"type": "integer", "format": "int32", "minimum": min});
    json!({
        "type": "object",
        "properties": {
            "initialDelaySeconds": at_least(0),
            "timeoutSeconds": at_least(1),
            "periodSeconds": at_least(1),
            "successThreshold": at_least(1),
            "failureThreshold": at_least(1),
        },
    })
}

fn probe_set() -> Value {
    json!({
        "type": "object",
        "properties": {"liveness": probe(), "readiness": probe(), "startup": probe()},
    })
}

fn immutable(message: &str) -> Value {
    json!([{"rule": "self == oldSelf", "message": message}])
}

fn with_default(mut schema: Value, default: Value) -> Value {
    if let Some(object) = schema.as_object_mut() {
        object.insert("default".into(), default);
    }
    schema
}

fn schema(value: Value) -> Schema {
    // Every value built here is a JSON object, which is always a valid schema.
    Schema::try_from(value).unwrap_or_default()
}

/// `spec.dataStore`: set once. Kamaji moves a tenant whose DataStore changes
/// (status `Migrating`); kamaji-rs does not, and a changed name would start the
/// control plane on an empty store, so the change is refused.
pub fn data_store(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "string",
        "description": "Name of the cluster-scoped DataStore backing this tenant; the manager's `--datastore` when empty. Immutable: kamaji-rs does not migrate tenants between DataStores.",
        "x-kubernetes-validations": immutable(
            "moving a tenant to another DataStore (Kamaji's migration) is not supported by kamaji-rs"
        ),
    }))
}

/// `spec.dataStoreSchema`: set once.
pub fn data_store_schema(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "string",
        "description": "Schema (etcd key prefix, SQL database) of the tenant in its DataStore; the tenant name when empty. Immutable.",
        "x-kubernetes-validations": immutable("changing the dataStoreSchema is not supported"),
    }))
}

/// `spec.dataStoreUsername`: set once.
pub fn data_store_username(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "string",
        "description": "User of the tenant in its DataStore (the CN of the etcd client certificate); the schema when empty. Immutable.",
        "x-kubernetes-validations": immutable("changing the dataStoreUsername is not supported"),
    }))
}

/// Kamaji's `spec.dataStoreOverrides`: a DataStore per resource prefix (kept, not acted on).
pub fn data_store_overrides(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "array",
        "description": "Kamaji's per-resource DataStore overrides; kept, not acted on.",
        "items": {
            "type": "object",
            "properties": {"resource": {"type": "string"}, "dataStore": {"type": "string"}},
        },
    }))
}

/// Kamaji's `spec.writePermissions`.
pub fn write_permissions(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "object",
        "description": "Writes the tenant's API server refuses while set (status WriteLimited): blockCreation, blockUpdate, blockDeletion.",
        "properties": {
            "blockCreation": {"type": "boolean"},
            "blockUpdate": {"type": "boolean"},
            "blockDeletion": {"type": "boolean"},
        },
    }))
}

/// `spec.kubernetes.version`: a Kubernetes release, with or without the `v`,
/// pre-releases included (`1.33.0`, `v1.34.0-rc.1`).
pub fn kubernetes_version(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "string",
        "description": "Kubernetes version of the control plane, e.g. `v1.37.2`, `1.33.0` or `v1.34.0-rc.1`.",
        "pattern": r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$",
    }))
}

/// `spec.kubernetes.admissionControllers`, with Kamaji's default list and allowed values.
pub fn admission_controllers(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "array",
        "description": "Admission plugins enabled on the tenant's API server (NodeRestriction is always on).",
        "default": DEFAULT_ADMISSION_CONTROLLERS,
        "items": {"type": "string", "enum": ADMISSION_CONTROLLERS},
    }))
}

/// Kamaji's `spec.kubernetes.kubelet` (kept, not acted on).
pub fn kubelet(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "object",
        "description": "Kamaji's kubelet settings for joining nodes; kept, not acted on. \
            Optional here (Kamaji requires it), defaulted so the stored object reads as Kamaji's.",
        "default": {},
        "properties": {
            "cgroupfs": {"type": "string", "enum": ["systemd", "cgroupfs"]},
            "configurationJSONPatches": array_of(json!({
                "type": "object",
                "required": ["op", "path"],
                "properties": {
                    "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
                    "path": {"type": "string"},
                    "from": {"type": "string"},
                    "value": {"x-kubernetes-preserve-unknown-fields": true},
                },
            })),
            "preferredAddressTypes": {
                "type": "array",
                "default": default_preferred_address_types(),
                "minItems": 1,
                "x-kubernetes-list-type": "set",
                "items": {
                    "type": "string",
                    "enum": ["Hostname", "InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS"],
                },
            },
        },
    }))
}

/// `spec.controlPlane.deployment`: Kamaji's DeploymentSpec. kamaji-rs acts on
/// `replicas`; the rest is kept and named in the `FieldsNotActedOn` condition.
pub fn deployment(generator: &mut SchemaGenerator) -> Schema {
    let resources = sub::<ResourceRequirements>(generator);
    let security_context = sub::<SecurityContext>(generator);
    let volume_mounts = array_of(sub::<VolumeMount>(generator));
    let registry = |default: &str| json!({"type": "string", "default": default});
    schema(json!({
        "type": "object",
        "description": "The Deployment running kube-apiserver, kube-controller-manager and kube-scheduler.",
        "properties": {
            "replicas": {
                "type": "integer", "format": "int32", "minimum": 0, "default": 2,
                "description": "Number of control-plane replicas; 0 puts the tenant to sleep.",
            },
            "registrySettings": {
                "type": "object",
                "default": default_registry_settings(),
                "properties": {
                    "registry": registry("registry.k8s.io"),
                    "tagSuffix": {"type": "string"},
                    "apiServerImage": registry("kube-apiserver"),
                    "controllerManagerImage": registry("kube-controller-manager"),
                    "schedulerImage": registry("kube-scheduler"),
                },
            },
            "nodeSelector": string_map(),
            "runtimeClassName": {"type": "string"},
            "strategy": with_default(sub::<DeploymentStrategy>(generator), default_strategy()),
            "tolerations": array_of(sub::<Toleration>(generator)),
            "affinity": sub::<Affinity>(generator),
            "topologySpreadConstraints": array_of(sub::<TopologySpreadConstraint>(generator)),
            "resources": per_component(&resources, true),
            "extraArgs": per_component(&strings(), true),
            "additionalMetadata": additional_metadata(),
            "podAdditionalMetadata": additional_metadata(),
            "additionalInitContainers": array_of(sub::<Container>(generator)),
            "additionalContainers": array_of(sub::<Container>(generator)),
            "additionalVolumes": array_of(sub::<Volume>(generator)),
            "additionalVolumeMounts": per_component(&volume_mounts, false),
            "probes": {
                "type": "object",
                "properties": {
                    "liveness": probe(), "readiness": probe(), "startup": probe(),
                    "apiServer": probe_set(), "controllerManager": probe_set(), "scheduler": probe_set(),
                },
            },
            "serviceAccountName": {"type": "string", "default": "default"},
            "automountServiceAccountToken": {"type": "boolean"},
            "containerSecurityContexts": per_component(&security_context, false),
            "podSecurityContext": sub::<PodSecurityContext>(generator),
        },
    }))
}

/// `spec.controlPlane.service`: Kamaji's ServiceSpec.
pub fn service(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "object",
        "description": "The Service in front of the tenant's API server.",
        "properties": {
            "serviceType": {
                "type": "string", "enum": ["ClusterIP", "NodePort", "LoadBalancer"], "default": "ClusterIP",
                "description": "Service type: ClusterIP (default), NodePort or LoadBalancer.",
            },
            "additionalMetadata": additional_metadata(),
            "additionalPorts": array_of(json!({
                "type": "object",
                "required": ["name", "port", "targetPort"],
                "properties": {
                    "name": {"type": "string"},
                    "protocol": {"type": "string", "enum": ["TCP", "UDP", "SCTP"], "default": "TCP"},
                    "appProtocol": {"type": "string"},
                    "port": {"type": "integer", "format": "int32"},
                    "targetPort": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                },
            })),
            "allocateLoadBalancerNodePorts": {"type": "boolean"},
        },
    }))
}

/// Kamaji's `spec.controlPlane.ingress` (kept, not acted on).
pub fn ingress(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "object",
        "description": "Kamaji's Ingress exposure; kept, not acted on.",
        "properties": {
            "additionalMetadata": additional_metadata(),
            "ingressClassName": {"type": "string"},
            "hostname": {"type": "string"},
        },
    }))
}

/// Kamaji's `spec.controlPlane.gateway` (kept, not acted on): Gateway API parentRefs.
pub fn gateway(_: &mut SchemaGenerator) -> Schema {
    let dns_label = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
    let dns_subdomain = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    schema(json!({
        "type": "object",
        "description": "Kamaji's Gateway API exposure; kept, not acted on.",
        "properties": {
            "additionalMetadata": additional_metadata(),
            "hostname": {
                "type": "string", "minLength": 1, "maxLength": 253,
                "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
            },
            "parentRefs": array_of(json!({
                "type": "object",
                "required": ["name"],
                "properties": {
                    "group": {"type": "string", "default": "gateway.networking.k8s.io", "maxLength": 253,
                              "pattern": format!("^$|{}", &dns_subdomain[1..])},
                    "kind": {"type": "string", "default": "Gateway", "minLength": 1, "maxLength": 63,
                             "pattern": r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"},
                    "name": {"type": "string", "minLength": 1, "maxLength": 253},
                    "namespace": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": dns_label},
                    "sectionName": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": dns_subdomain},
                    "port": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535},
                },
            })),
        },
    }))
}

/// `spec.networkProfile`: Kamaji's NetworkProfileSpec with its defaults and rules.
pub fn network_profile(_: &mut SchemaGenerator) -> Schema {
    let cidrs = |message: &str| {
        json!({
            "type": "array",
            "minItems": 1,
            "maxItems": 2,
            "items": {"type": "string"},
            "x-kubernetes-validations": [{"rule": "self.all(x, isCIDR(x))", "message": message}],
        })
    };
    let cidr = |default: &str, message: &str| {
        json!({
            "type": "string",
            "default": default,
            "x-kubernetes-validations": [{"rule": "self == '' || isCIDR(self)", "message": message}],
        })
    };
    schema(json!({
        "type": "object",
        "description": "Addresses, ports and CIDRs of the tenant.",
        "properties": {
            "address": {
                "type": "string",
                "description": "Address (IP or host name) the API server is reached at; when empty, the Service's address.",
            },
            "advertiseAddress": {
                "type": "string",
                "description": "IP the API server advertises to the tenant's members; kept, not acted on.",
                "x-kubernetes-validations": [{"rule": "self == '' || isIP(self)",
                    "message": "advertiseAddress must be a valid IP address"}],
            },
            "allowAddressAsExternalIP": {"type": "boolean"},
            "port": {
                "type": "integer", "format": "int32", "default": 6443, "minimum": 1, "maximum": 65535,
                "description": "Port of the API server.",
            },
            "certSANs": {
                "type": "array", "items": {"type": "string"},
                "description": "Extra subject alternative names (DNS names or IPs) of the API server certificate.",
            },
            "serviceCidr": cidr("10.96.0.0/16", "serviceCidr must be empty or a valid CIDR"),
            "serviceCidrs": cidrs("all serviceCidrs entries must be valid CIDRs"),
            "podCidr": cidr("10.244.0.0/16", "podCidr must be empty or a valid CIDR"),
            "podCidrs": cidrs("all podCidrs entries must be valid CIDRs"),
            "dnsServiceIPs": {
                "type": "array", "maxItems": 8, "items": {"type": "string", "maxLength": 45},
                "description": "Cluster DNS Service IPs.",
                "x-kubernetes-validations": [{"rule": "self.all(ip, isIP(ip))",
                    "message": "every entry must be an IPv4 or IPv6 address"}],
            },
            "clusterDomain": {
                "type": "string", "default": "cluster.local", "pattern": r".*\..*",
                "description": "DNS domain of the tenant cluster. Immutable.",
                "x-kubernetes-validations": immutable("changing the cluster domain is not supported"),
            },
            "loadBalancerClass": {
                "type": "string", "minLength": 1,
                "x-kubernetes-validations": immutable("LoadBalancerClass is immutable"),
            },
            "loadBalancerSourceRanges": {
                "type": "array", "maxItems": 16, "items": {"type": "string"},
                "x-kubernetes-validations": [{"rule": "self.all(r, isCIDR(r))",
                    "message": "all LoadBalancer source range entries must be valid CIDR"}],
            },
        },
    }))
}

/// `spec.addons.coreDNS` / `spec.addons.kubeProxy`: Kamaji's image override.
pub fn image_override(_: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "object",
        "description": "Kamaji's addon settings (registry and tag of the image); kept, not acted on.",
        "properties": {"imageRepository": {"type": "string"}, "imageTag": {"type": "string"}},
    }))
}

/// `spec.addons.konnectivity.server`, with Kamaji's default.
pub fn konnectivity_server(generator: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "object",
        "description": "The konnectivity-server sidecar of the control plane.",
        "default": {"image": KONNECTIVITY_SERVER_IMAGE, "port": 8132},
        "required": ["port"],
        "properties": {
            "port": {"type": "integer", "format": "int32", "description": "Port the agents connect to."},
            "image": {"type": "string", "default": KONNECTIVITY_SERVER_IMAGE,
                      "description": "Container image of konnectivity-server."},
            "version": {"type": "string",
                        "description": "Image tag of konnectivity-server; derived from the Kubernetes version when empty."},
            "resources": sub::<ResourceRequirements>(generator),
            "extraArgs": strings(),
            "securityContext": sub::<SecurityContext>(generator),
        },
    }))
}

/// `spec.addons.konnectivity.agent`, with Kamaji's default and rule.
pub fn konnectivity_agent(generator: &mut SchemaGenerator) -> Schema {
    schema(json!({
        "type": "object",
        "description": "The konnectivity agent run inside the tenant (a DaemonSet, or a Deployment).",
        "default": {"image": KONNECTIVITY_AGENT_IMAGE, "mode": "DaemonSet"},
        "properties": {
            "image": {"type": "string", "default": KONNECTIVITY_AGENT_IMAGE},
            "version": {"type": "string"},
            "tolerations": with_default(
                array_of(sub::<Toleration>(generator)),
                json!([{"key": "CriticalAddonsOnly", "operator": "Exists"}]),
            ),
            "extraArgs": strings(),
            "hostNetwork": {"type": "boolean", "default": false},
            "mode": {"type": "string", "enum": ["DaemonSet", "Deployment"], "default": "DaemonSet"},
            "replicas": {"type": "integer", "format": "int32"},
        },
        "x-kubernetes-validations": [{
            "rule": "!(self.mode == 'DaemonSet' && has(self.replicas) && self.replicas != 0) && \
                     !(self.mode == 'Deployment' && has(self.replicas) && self.replicas == 0)",
            "message": "replicas must be 0 (or unset) when mode is DaemonSet, and greater than 0 (or unset) when mode is Deployment",
        }],
    }))
}
