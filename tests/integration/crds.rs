//! The CRDs as a user meets them: `kubectl get tcp`, defaults, validation
//! messages, and Kamaji manifests applied unchanged.

use kamaji::api::{
    DataStore, TenantControlPlane, datastore::Driver, tenant_control_plane::KubernetesVersionStatus,
};
use kube::{Api, api::PostParams};

use crate::support::{TestNamespace, client, install_crds, kubectl, kubectl_apply, kubectl_ok};

const TENANT: &str = r#"
apiVersion: kamaji.clastix.io/v1alpha1
kind: TenantControlPlane
metadata:
  name: k8s-133
spec:
  dataStore: default
  controlPlane:
    deployment:
      replicas: 2
    service:
      serviceType: LoadBalancer
  kubernetes:
    version: v1.33.0
  networkProfile:
    address: 172.18.255.200
    port: 6443
    certSANs: [k8s-133.example.com]
  addons:
    konnectivity:
      server:
        port: 8132
"#;

#[tokio::test]
async fn kubectl_get_tcp_prints_the_kamaji_columns() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "crd-columns").await;
    let applied = kubectl_apply(&ns.name, TENANT);
    assert!(
        applied.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&applied.stderr)
    );

    let table = kubectl_ok(&["get", "tcp", "-n", &ns.name]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "VERSION",
            "INSTALLED",
            "VERSION",
            "STATUS",
            "CONTROL-PLANE",
            "ENDPOINT",
            "KUBECONFIG",
            "DATASTORE",
            "AGE"
        ]
    );
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("k8s-133 ") && row.contains("v1.33.0"),
        "unexpected row: {row}"
    );

    // The short name and the category both reach it, as with Kamaji.
    assert!(kubectl_ok(&["get", "kamaji", "-n", &ns.name, "-o", "name"]).contains("k8s-133"));
}

#[tokio::test]
async fn tenant_control_plane_round_trips_with_defaults_applied_by_the_api_server() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "crd-roundtrip").await;
    let minimal = "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: minimal\n\
                   spec:\n  kubernetes:\n    version: v1.37.2\n";
    let applied = kubectl_apply(&ns.name, minimal);
    assert!(
        applied.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&applied.stderr)
    );

    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &ns.name);
    let tcp = tcps
        .get("minimal")
        .await
        .expect("reading the TenantControlPlane back");
    let network = &tcp.spec.network_profile;
    assert_eq!(network.port, 6443);
    assert_eq!(network.service_cidr, "10.96.0.0/16");
    assert_eq!(network.pod_cidr, "10.244.0.0/16");
    assert_eq!(network.cluster_domain, "cluster.local");
    assert_eq!(tcp.spec.control_plane.deployment.replicas, 2);

    // The status subresource takes Kamaji's status fields.
    let mut with_status = tcp.clone();
    let mut status = kamaji::api::TenantControlPlaneStatus::default();
    status.kubernetes_resources = Some(kamaji::api::tenant_control_plane::KubernetesResourcesStatus {
        version: Some(kamaji::api::tenant_control_plane::VersionStatus {
            version: Some("v1.37.2".into()),
            status: Some(KubernetesVersionStatus::Ready),
        }),
        deployment: None,
    });
    with_status.status = Some(status);
    let updated = tcps
        .replace_status("minimal", &PostParams::default(), &with_status)
        .await
        .expect("status update");
    let version = updated
        .status
        .and_then(|s| s.kubernetes_resources)
        .and_then(|r| r.version);
    assert_eq!(
        version.and_then(|v| v.status),
        Some(KubernetesVersionStatus::Ready)
    );
    let table = kubectl_ok(&["get", "tcp", "minimal", "-n", &ns.name, "--no-headers"]);
    assert!(
        table.contains("v1.37.2   v1.37.2   Ready"),
        "columns not filled from status: {table}"
    );
}

#[tokio::test]
async fn datastore_is_created_and_read_back() {
    let client = client().await;
    install_crds(&client).await;
    let name = format!("etcd-{:08x}", rand::random::<u32>());
    let manifest = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: DataStore\nmetadata:\n  name: {name}\nspec:\n  driver: etcd\n  \
         endpoints: [etcd-0.etcd.kamaji-system.svc:2379]\n  tlsConfig:\n    certificateAuthority:\n      certificate:\n        \
         secretReference: {{name: etcd-certs, namespace: kamaji-system, keyPath: ca.crt}}\n      privateKey:\n        \
         secretReference: {{name: etcd-certs, namespace: kamaji-system, keyPath: ca.key}}\n"
    );
    let applied = kubectl_apply("default", &manifest);
    assert!(
        applied.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let datastores: Api<DataStore> = Api::all(client.clone());
    let read = datastores.get(&name).await.expect("reading the DataStore back");
    assert_eq!(read.spec.driver, Driver::Etcd);
    let ca = read
        .spec
        .tls_config
        .expect("tlsConfig kept")
        .certificate_authority;
    assert_eq!(
        ca.certificate
            .secret_reference
            .expect("secret reference kept")
            .key_path,
        "ca.crt"
    );
    let _ = kubectl(&["delete", "datastore", &name, "--wait=false"]);
}

/// Each bad field is rejected by the API server with a message naming it.
#[tokio::test]
async fn invalid_tenant_control_planes_are_rejected_naming_the_field() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "crd-invalid").await;
    let cases = [
        (
            "networkProfile:\n    address: 300.1.2.3",
            "spec.networkProfile.address",
        ),
        ("networkProfile:\n    port: 70000", "spec.networkProfile.port"),
        (
            "networkProfile:\n    serviceCidr: 10.96.0.0/99",
            "spec.networkProfile.serviceCidr",
        ),
        (
            "networkProfile:\n    podCidr: pods",
            "spec.networkProfile.podCidr",
        ),
        (
            "networkProfile:\n    dnsServiceIPs: [10.96.0.10, not-an-ip]",
            "spec.networkProfile.dnsServiceIPs",
        ),
        (
            "controlPlane:\n    deployment:\n      replicas: -1",
            "spec.controlPlane.deployment.replicas",
        ),
        (
            "controlPlane:\n    service:\n      serviceType: Bogus",
            "spec.controlPlane.service.serviceType",
        ),
    ];
    for (i, (fragment, field)) in cases.iter().enumerate() {
        let manifest = format!(
            "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: bad-{i}\nspec:\n  \
             kubernetes:\n    version: v1.37.2\n  {fragment}\n"
        );
        let output = kubectl_apply(&ns.name, &manifest);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{field}: a bad value was accepted");
        assert!(
            stderr.contains(field),
            "{field}: the error does not name the field: {stderr}"
        );
    }
    let missing_version = "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: no-version\nspec: {}\n";
    let output = kubectl_apply(&ns.name, missing_version);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("spec.kubernetes"));
}

/// A manifest written for Kamaji, with fields kamaji-rs does not act on,
/// applies under strict field validation and keeps those fields.
#[tokio::test]
async fn kamaji_manifest_with_fields_not_acted_on_applies_unchanged() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "crd-kamaji").await;
    let manifest = r#"
apiVersion: kamaji.clastix.io/v1alpha1
kind: TenantControlPlane
metadata:
  name: from-kamaji
spec:
  dataStore: default
  controlPlane:
    deployment:
      replicas: 3
      strategy: {type: RollingUpdate}
      extraArgs: {apiServer: ["--v=2"]}
    service:
      additionalMetadata: {labels: {team: a}}
      serviceType: LoadBalancer
  kubernetes:
    version: v1.33.0
    kubelet:
      cgroupfs: systemd
      preferredAddressTypes: [InternalIP]
    admissionControllers: [ResourceQuota, LimitRanger]
  networkProfile:
    port: 6443
    serviceCidrs: [10.96.0.0/16]
    loadBalancerSourceRanges: [0.0.0.0/0]
  addons:
    coreDNS: {}
    kubeProxy: {}
    konnectivity:
      server: {port: 8132, resources: {}}
      agent: {mode: DaemonSet}
"#;
    let output = kubectl_apply(&ns.name, manifest);
    assert!(
        output.status.success(),
        "Kamaji manifest rejected: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &ns.name);
    let tcp = tcps.get("from-kamaji").await.expect("read back");
    let not_acted_on = tcp.spec.fields_not_acted_on();
    for field in [
        "spec.kubernetes.kubelet.preferredAddressTypes",
        "spec.addons.konnectivity.agent",
        "spec.controlPlane.deployment.strategy",
        "spec.controlPlane.deployment.extraArgs",
        "spec.controlPlane.service.additionalMetadata",
        "spec.networkProfile.serviceCidrs",
        "spec.networkProfile.loadBalancerSourceRanges",
        "spec.addons.konnectivity.server.resources",
    ] {
        assert!(
            not_acted_on.iter().any(|f| f == field),
            "{field} not kept or not listed: {not_acted_on:?}"
        );
    }
    // The kubelet fields that shape kube-system/kubelet-config are acted on.
    assert!(
        !not_acted_on
            .iter()
            .any(|f| f == "spec.kubernetes.kubelet.cgroupfs"),
        "{not_acted_on:?}"
    );
    assert_eq!(tcp.spec.control_plane.deployment.replicas, 3);
}
