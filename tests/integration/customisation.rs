//! Kamaji's Deployment and Service customisation fields, all set on one tenant
//! applied as a Kamaji user writes it: each shows up in the stored Deployment
//! and Service, the tenant is Ready, and none is reported as not acted on.

use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::Service},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kamaji::api::{TenantControlPlane, tenant_control_plane::KubernetesVersionStatus};
use kube::Api;

use super::walkthrough::{TENANT, wait_for_status};
use crate::support::{
    Operator, TestNamespace, client, etcd_datastore, install_crds, kubectl, kubectl_apply, kubectl_ok,
};

fn manifest(datastore: &str, runtime_class: &str) -> String {
    format!(
        r#"apiVersion: kamaji.clastix.io/v1alpha1
kind: TenantControlPlane
metadata:
  name: {TENANT}
spec:
  dataStore: {datastore}
  controlPlane:
    deployment:
      replicas: 2
      registrySettings:
        registry: mirror.example.com/k8s
        tagSuffix: -custom
        apiServerImage: apiserver
        controllerManagerImage: controller-manager
        schedulerImage: scheduler
      nodeSelector:
        type: kwok
      runtimeClassName: {runtime_class}
      strategy:
        type: RollingUpdate
        rollingUpdate:
          maxSurge: 1
          maxUnavailable: 0
      tolerations:
      - key: dedicated
        operator: Equal
        value: kamaji
        effect: NoSchedule
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions:
              - key: kubernetes.io/os
                operator: In
                values: [linux]
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: ScheduleAnyway
      resources:
        apiServer:
          requests: {{cpu: 250m, memory: 256Mi}}
        controllerManager:
          requests: {{cpu: 125m}}
        scheduler:
          limits: {{cpu: 100m}}
      extraArgs:
        apiServer: ["--audit-log-maxage=30", "--authorization-mode=RBAC,Node"]
        controllerManager: ["--v=4"]
        scheduler: ["--v=2"]
      additionalMetadata:
        labels: {{team: infra}}
        annotations: {{example.com/owner: infra}}
      podAdditionalMetadata:
        labels: {{tier: control-plane}}
        annotations: {{example.com/scrape: "true"}}
      additionalInitContainers:
      - name: wait
        image: busybox:1.37
        command: ["true"]
      additionalContainers:
      - name: audit-shipper
        image: busybox:1.37
        command: ["sleep", "infinity"]
      additionalVolumes:
      - name: audit
        emptyDir: {{}}
      additionalVolumeMounts:
        apiServer:
        - name: audit
          mountPath: /var/log/kubernetes/audit
        controllerManager:
        - name: audit
          mountPath: /var/log/audit-cm
        scheduler:
        - name: audit
          mountPath: /var/log/audit-scheduler
      serviceAccountName: tenant-control-plane
    service:
      serviceType: LoadBalancer
      allocateLoadBalancerNodePorts: false
      additionalMetadata:
        labels: {{exposure: internal}}
        annotations: {{service.beta.kubernetes.io/aws-load-balancer-internal: "true"}}
      additionalPorts:
      - name: metrics
        port: 9090
        targetPort: 9090
  kubernetes:
    version: v1.33.0
  networkProfile:
    port: 6443
    loadBalancerClass: example.com/internal
    loadBalancerSourceRanges: [192.0.2.0/24]
"#
    )
}

#[tokio::test]
async fn every_deployment_and_service_customisation_field_shows_up_and_the_tenant_is_ready() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "custom").await;
    let (datastore, _) = etcd_datastore(&client, &ns.name, &["127.0.0.1:2379"]).await;
    // What the pods reference must exist for them to be admitted.
    kubectl_ok(&["create", "serviceaccount", "-n", &ns.name, "tenant-control-plane"]);
    let runtime_class = format!("{}-runc", ns.name);
    let created = kubectl_apply(
        &ns.name,
        &format!(
            "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: {runtime_class}\nhandler: runc\n"
        ),
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let operator = Operator::start(&ns.name, &[]);
    let applied = kubectl_apply(&ns.name, &manifest(&datastore, &runtime_class));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    wait_for_status(&client, &ns.name, KubernetesVersionStatus::Ready, &operator).await;

    let tcp = Api::<TenantControlPlane>::namespaced(client.clone(), &ns.name)
        .get(TENANT)
        .await
        .expect("reading the tenant");
    assert_eq!(tcp.spec.fields_not_acted_on(), Vec::<String>::new());
    let conditions = tcp.status.map(|s| s.conditions).unwrap_or_default();
    assert!(
        !conditions.iter().any(|c| c.type_ == "FieldsNotActedOn"),
        "{conditions:?}"
    );

    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .get(TENANT)
        .await
        .expect("reading the Deployment");
    assert_deployment(&deployment, &runtime_class);
    let service = Api::<Service>::namespaced(client.clone(), &ns.name)
        .get(TENANT)
        .await
        .expect("reading the Service");
    assert_service(&service);

    // Written once: the customised objects do not churn against what the API server stored.
    tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    let later = Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .get(TENANT)
        .await
        .expect("reading the Deployment again");
    assert_eq!(
        later.metadata.generation,
        deployment.metadata.generation,
        "the Deployment spec was rewritten\n{}",
        operator.log_text()
    );
    let later = Api::<Service>::namespaced(client.clone(), &ns.name)
        .get(TENANT)
        .await
        .expect("reading the Service again");
    assert_eq!(
        later.metadata.resource_version, service.metadata.resource_version,
        "the Service was rewritten"
    );

    let _ = kubectl(&["delete", "runtimeclass", &runtime_class, "--ignore-not-found"]);
    operator.kill();
}

fn assert_deployment(deployment: &Deployment, runtime_class: &str) {
    let labels = deployment.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["team"], "infra");
    assert_eq!(labels["kamaji.clastix.io/name"], TENANT);
    assert_eq!(
        deployment.metadata.annotations.clone().unwrap_or_default()["example.com/owner"],
        "infra"
    );
    let spec = deployment.spec.clone();
    let strategy = spec.strategy.clone().unwrap_or_default();
    let rolling = strategy.rolling_update.unwrap_or_default();
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    let template = spec.template.metadata.clone().unwrap_or_default();
    let pod_labels = template.labels.unwrap_or_default();
    assert_eq!(pod_labels["tier"], "control-plane");
    assert_eq!(pod_labels["kamaji.clastix.io/name"], TENANT);
    let pod_annotations = template.annotations.unwrap_or_default();
    assert_eq!(pod_annotations["example.com/scrape"], "true");
    assert!(
        pod_annotations.contains_key(kamaji::tenant::deployment::MATERIAL_CHECKSUM),
        "the checksum stays: {pod_annotations:?}"
    );

    let pod = spec.template.spec.clone().unwrap_or_default();
    assert_eq!(pod.node_selector.unwrap_or_default()["type"], "kwok");
    assert_eq!(pod.runtime_class_name.as_deref(), Some(runtime_class));
    assert_eq!(pod.service_account_name.as_deref(), Some("tenant-control-plane"));
    let tolerations = pod.tolerations.unwrap_or_default();
    assert!(
        tolerations.iter().any(|t| t.key.as_deref() == Some("dedicated")),
        "{tolerations:?}"
    );
    assert!(
        pod.affinity.and_then(|a| a.node_affinity).is_some(),
        "node affinity kept"
    );
    let spread = pod.topology_spread_constraints.unwrap_or_default();
    assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
    assert!(
        spread[0].label_selector.is_some(),
        "the control-plane pods are spread"
    );
    let init: Vec<_> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(init, ["wait"]);
    let names: Vec<_> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "audit-shipper",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler"
        ]
    );
    let volumes: Vec<_> = pod.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
    assert_eq!(volumes.first(), Some(&"audit"), "{volumes:?}");
    assert!(volumes.contains(&"kube-apiserver-files"), "{volumes:?}");

    let container = |name: &str| {
        pod.containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} runs"))
    };
    let expectations = [
        (
            "kube-apiserver",
            "apiserver",
            "/var/log/kubernetes/audit",
            "cpu",
            "250m",
        ),
        (
            "kube-controller-manager",
            "controller-manager",
            "/var/log/audit-cm",
            "cpu",
            "125m",
        ),
    ];
    for (name, image, mount, resource, quantity) in expectations {
        let c = container(name);
        assert_eq!(
            c.image.as_deref(),
            Some(format!("mirror.example.com/k8s/{image}:v1.33.0-custom").as_str())
        );
        assert!(
            c.volume_mounts.iter().flatten().any(|m| m.mount_path == mount),
            "{name} mounts {mount}"
        );
        let requests = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default();
        assert_eq!(requests[resource].0, quantity, "{name}");
    }
    let scheduler = container("kube-scheduler");
    assert_eq!(
        scheduler.image.as_deref(),
        Some("mirror.example.com/k8s/scheduler:v1.33.0-custom")
    );
    let limits = scheduler
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    assert_eq!(limits["cpu"].0, "100m");
    assert!(
        scheduler
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/var/log/audit-scheduler")
    );
    let args = |name: &str| container(name).args.clone().unwrap_or_default();
    let api = args("kube-apiserver");
    assert!(api.contains(&"--audit-log-maxage=30".to_string()), "{api:?}");
    assert!(
        api.contains(&"--authorization-mode=RBAC,Node".to_string()),
        "{api:?}"
    );
    assert!(
        !api.contains(&"--authorization-mode=Node,RBAC".to_string()),
        "{api:?}"
    );
    assert!(args("kube-controller-manager").contains(&"--v=4".to_string()));
    assert!(args("kube-scheduler").contains(&"--v=2".to_string()));
}

fn assert_service(service: &Service) {
    let labels = service.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["exposure"], "internal");
    assert_eq!(labels["kamaji.clastix.io/name"], TENANT);
    assert_eq!(
        service.metadata.annotations.clone().unwrap_or_default()["service.beta.kubernetes.io/aws-load-balancer-internal"],
        "true"
    );
    let spec = service.spec.clone().unwrap_or_default();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(spec.load_balancer_class.as_deref(), Some("example.com/internal"));
    assert_eq!(
        spec.load_balancer_source_ranges.unwrap_or_default(),
        ["192.0.2.0/24"]
    );
    assert_eq!(spec.allocate_load_balancer_node_ports, Some(false));
    let ports = spec.ports.unwrap_or_default();
    assert_eq!(ports[0].port, 6443);
    assert!(
        ports.iter().all(|p| p.node_port.is_none()),
        "no node ports allocated: {ports:?}"
    );
    assert!(
        ports
            .iter()
            .any(|p| p.name.as_deref() == Some("metrics") && p.port == 9090),
        "{ports:?}"
    );
}
