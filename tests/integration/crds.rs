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
            "networkProfile:\n    advertiseAddress: 300.1.2.3",
            "spec.networkProfile.advertiseAddress",
        ),
        ("kubernetes:\n    version: latest", "spec.kubernetes.version"),
        (
            "networkProfile:\n    clusterDomain: local",
            "spec.networkProfile.clusterDomain",
        ),
        (
            "controlPlane:\n    deployment:\n      strategy: {type: RollingUpdate}\n      bogus: 1",
            "spec.controlPlane.deployment.bogus",
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
      agent: {mode: DaemonSet, hostNetwork: true}
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
    assert!(
        not_acted_on
            .iter()
            .any(|f| f == "spec.networkProfile.serviceCidrs"),
        "serviceCidrs not kept or not listed: {not_acted_on:?}"
    );
    // Kept and acted on: the kubelet fields that shape kube-system/kubelet-config, the
    // preferred address types (the API server's --kubelet-preferred-address-types), the
    // customisation fields (tests/integration/customisation.rs shows them in the objects)
    // and the konnectivity server's and agent's (tests/integration/konnectivity.rs).
    for field in [
        "spec.kubernetes.kubelet.cgroupfs",
        "spec.kubernetes.kubelet.preferredAddressTypes",
        "spec.controlPlane.deployment.strategy",
        "spec.controlPlane.deployment.extraArgs",
        "spec.controlPlane.service.additionalMetadata",
        "spec.networkProfile.loadBalancerSourceRanges",
        "spec.addons.konnectivity.agent",
        "spec.addons.konnectivity.server.resources",
    ] {
        assert!(
            !not_acted_on.iter().any(|f| f == field),
            "{field} is acted on: {not_acted_on:?}"
        );
    }
    assert_eq!(tcp.spec.control_plane.deployment.replicas, 3);
}

/// What Kamaji's schema accepts and kamaji-rs used to refuse: a version without `v`, a
/// pre-release, a host name as address, an empty podCidr, a Secret reference without
/// namespace. Kamaji's defaults are filled in by the API server.
#[tokio::test]
async fn kamaji_values_are_accepted_with_kamajis_defaults() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "crd-kamaji-values").await;
    for (i, (version, address)) in [("1.33.0", "k8s.example.com"), ("v1.34.0-rc.1", "192.0.2.10")]
        .iter()
        .enumerate()
    {
        let manifest = format!(
            "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: values-{i}\nspec:\n  \
             controlPlane:\n    deployment: {{}}\n    service:\n      serviceType: ClusterIP\n  kubernetes:\n    \
             version: \"{version}\"\n    kubelet: {{}}\n  networkProfile:\n    address: {address}\n    podCidr: \"\"\n  \
             addons:\n    konnectivity: {{}}\n"
        );
        let output = kubectl_apply(&ns.name, &manifest);
        assert!(
            output.status.success(),
            "{version} / {address}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &ns.name);
    let tcp = tcps.get("values-0").await.expect("read back");
    assert_eq!(tcp.spec.kubernetes.image_tag(), "v1.33.0");
    assert_eq!(tcp.spec.network_profile.pod_cidr(), None);
    assert_eq!(
        tcp.spec.network_profile.endpoint_address(),
        Some(kamaji::api::tenant_control_plane::EndpointAddress::Name(
            "k8s.example.com"
        ))
    );
    assert_eq!(
        tcp.spec.kubernetes.admission_controllers,
        kamaji::api::schema::DEFAULT_ADMISSION_CONTROLLERS
    );
    let deployment = &tcp.spec.control_plane.deployment;
    assert_eq!(deployment.replicas, 2);
    assert_eq!(
        deployment.not_acted_on.get("registrySettings"),
        Some(&kamaji::api::schema::default_registry_settings())
    );
    assert_eq!(
        deployment.not_acted_on.get("strategy"),
        Some(&kamaji::api::schema::default_strategy())
    );
    let konnectivity = tcp.spec.konnectivity().expect("addon kept");
    assert_eq!(konnectivity.server.port, 8132);
    assert_eq!(
        konnectivity.agent.as_ref(),
        Some(&kamaji::api::schema::default_konnectivity_agent())
    );
    assert_eq!(
        tcp.spec.konnectivity_server_image().as_deref(),
        Some("registry.k8s.io/kas-network-proxy/proxy-server:v0.33.0")
    );
    // Defaults nobody wrote are not reported as fields not acted on.
    assert_eq!(tcp.spec.fields_not_acted_on(), Vec::<String>::new());

    let name = format!("no-ns-{:08x}", rand::random::<u32>());
    let datastore = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: DataStore\nmetadata:\n  name: {name}\nspec:\n  driver: etcd\n  \
         endpoints: [etcd:2379]\n  tlsConfig:\n    certificateAuthority:\n      certificate:\n        \
         secretReference: {{name: etcd-certs, keyPath: ca.crt}}\n      privateKey:\n        \
         secretReference: {{name: etcd-certs, keyPath: ca.key}}\n"
    );
    let output = kubectl_apply("default", &datastore);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read = Api::<DataStore>::all(client.clone())
        .get(&name)
        .await
        .expect("read back");
    let reference = read
        .spec
        .tls_config
        .and_then(|t| t.certificate_authority.certificate.secret_reference)
        .expect("reference kept");
    assert!(
        reference.validate().is_err(),
        "no namespace: the DataStore cannot be used"
    );
    let _ = kubectl(&["delete", "datastore", &name, "--wait=false"]);
}

/// Kamaji's immutable fields stay as created.
#[tokio::test]
async fn fields_kamaji_makes_immutable_cannot_change() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "crd-immutable").await;
    let tenant_on = |datastore: &str, schema: &str, user: &str, domain: &str| {
        format!(
            "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: fixed\nspec:\n  \
             dataStore: {datastore}\n  dataStoreSchema: {schema}\n  dataStoreUsername: {user}\n  kubernetes:\n    \
             version: v1.37.2\n  networkProfile:\n    clusterDomain: {domain}\n"
        )
    };
    let tenant = |schema: &str, user: &str, domain: &str| tenant_on("first", schema, user, domain);
    let created = kubectl_apply(&ns.name, &tenant("one", "one", "cluster.local"));
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    for (manifest, message) in [
        (
            tenant("two", "one", "cluster.local"),
            "changing the dataStoreSchema is not supported",
        ),
        (
            tenant("one", "two", "cluster.local"),
            "changing the dataStoreUsername is not supported",
        ),
        (
            tenant("one", "one", "example.org"),
            "changing the cluster domain is not supported",
        ),
        (
            tenant_on("second", "one", "one", "cluster.local"),
            "moving a tenant to another DataStore (Kamaji's migration) is not supported by kamaji-rs",
        ),
    ] {
        let output = kubectl_apply(&ns.name, &manifest);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{message}: the change was accepted");
        assert!(stderr.contains(message), "{message}: {stderr}");
    }

    let name = format!("driver-{:08x}", rand::random::<u32>());
    let datastore = |driver: &str| {
        format!(
            "apiVersion: kamaji.clastix.io/v1alpha1\nkind: DataStore\nmetadata:\n  name: {name}\nspec:\n  driver: {driver}\n  \
             endpoints: [db:5432]\n  basicAuth:\n    username: {{content: cm9vdA==}}\n    password: {{content: cm9vdA==}}\n"
        )
    };
    let created = kubectl_apply("default", &datastore("PostgreSQL"));
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let changed = kubectl_apply("default", &datastore("MySQL"));
    assert!(!changed.status.success(), "the driver changed");
    assert!(String::from_utf8_lossy(&changed.stderr).contains("Datastore driver is immutable"));
    let _ = kubectl(&["delete", "datastore", &name, "--wait=false"]);
}
