//! PKI benchmarks: what the reconciler's desired-state pass costs per key algorithm
//! for a new tenant (every CA, key pair, certificate and kubeconfig) and for a
//! provisioned one (every stored certificate checked, nothing issued), where the
//! time goes (key generation vs signing), and how many Secrets per second the
//! lifecycle controller can inspect.
//!
//! `cargo bench --bench pki` (add `-- --quick` or `--measurement-time 5` for a short run).

use std::{collections::BTreeMap, hint::black_box, time::Duration};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kamaji::{
    api::{TenantControlPlaneSpec, datastore::Driver},
    pki::{
        Authority, KeyAlgorithm, LeafRequest, PrivateKey,
        authority::CA_VALIDITY,
        catalog::{self, Lifecycle, Usage},
        inspect::inspect,
        issue::{IssueParams, TenantInputs, TenantPki, issue_tenant},
    },
    tenant::{
        datastore::Resolved,
        deployment::DatastoreWiring,
        desired::{Desired, Inputs, Object, Observed, desired},
        meta::TenantRef,
    },
};
use time::OffsetDateTime;

fn tenant() -> TenantInputs {
    TenantInputs {
        name: "bench".into(),
        namespace: "default".into(),
        address: Some("172.18.0.2".into()),
        port: 6443,
        cert_sans: vec!["bench.example.com".into()],
        service_cidr: "10.96.0.0/16".into(),
        cluster_domain: "cluster.local".into(),
        control_plane_endpoint: "172.18.0.2:6443".into(),
        konnectivity: true,
        datastore_user: "default_bench".into(),
        superseded_groups_granted: true,
    }
}

fn params(algorithm: KeyAlgorithm) -> IssueParams {
    IssueParams {
        algorithm,
        ..IssueParams::new(OffsetDateTime::now_utc())
    }
}

fn tenant_ref() -> TenantRef {
    TenantRef {
        name: "bench".into(),
        namespace: "default".into(),
        owner: OwnerReference {
            api_version: "kamaji.clastix.io/v1alpha1".into(),
            kind: "TenantControlPlane".into(),
            name: "bench".into(),
            uid: "00000000-0000-0000-0000-000000000001".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    }
}

fn spec() -> TenantControlPlaneSpec {
    serde_json::from_value(serde_json::json!({
        "kubernetes": {"version": "v1.37.2"},
        "networkProfile": {"address": "172.18.0.2", "certSANs": ["bench.example.com"]},
        "addons": {"konnectivity": {}},
    }))
    .unwrap()
}

fn observed(datastore_ca: &Authority, secrets: BTreeMap<String, Secret>) -> Observed {
    let ca = Authority::from_pem(
        datastore_ca.certificate_pem().as_bytes(),
        datastore_ca.key_pem().map(str::as_bytes),
    )
    .unwrap();
    Observed {
        secrets,
        service: None,
        deployment: None,
        egress_selector: None,
        datastore: Ok(Resolved {
            name: "default".into(),
            driver: Driver::Etcd,
            etcd_ca: Some(ca),
            copied_certificate: None,
            etcd_admin: None,
            wiring: DatastoreWiring {
                etcd_servers: vec!["https://127.0.0.1:2379".into()],
                prefix: "/default_bench".into(),
            },
        }),
    }
}

/// One desired-state pass, as the reconciler runs it.
fn pass(observed: &Observed, params: IssueParams) -> Desired {
    let (tenant, spec) = (tenant_ref(), spec());
    desired(
        &Inputs {
            tenant: &tenant,
            spec: &spec,
            provisioned: !observed.secrets.is_empty(),
            params,
            batch_window: Duration::from_secs(2),
            tokens: kamaji::tenant::deployment::TokenSettings::default(),
            ca_rotation: Default::default(),
            superseded_groups_granted: true,
        },
        observed,
    )
}

fn stored(desired: &Desired) -> BTreeMap<String, Secret> {
    desired
        .objects
        .iter()
        .filter_map(|o| match o {
            Object::Secret(s) => Some((
                s.metadata.name.clone()?.trim_start_matches("bench-").to_string(),
                s.as_ref().clone(),
            )),
            _ => None,
        })
        .collect()
}

fn issue(c: &mut Criterion) {
    let mut group = c.benchmark_group("desired_new_tenant");
    // RSA-4096 tenants take seconds each: keep the sample count at criterion's minimum.
    group.sample_size(10);
    for algorithm in KeyAlgorithm::ALL {
        let params = params(algorithm);
        let datastore_ca = Authority::generate("datastore-ca", algorithm, CA_VALIDITY, params.now).unwrap();
        let empty = observed(&datastore_ca, BTreeMap::new());
        group.bench_function(BenchmarkId::from_parameter(algorithm), |b| {
            b.iter(|| pass(black_box(&empty), params))
        });
    }
    group.finish();

    // A provisioned tenant's pass: every stored certificate checked, nothing issued.
    let mut group = c.benchmark_group("desired_provisioned_tenant");
    for algorithm in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256] {
        let params = params(algorithm);
        let datastore_ca = Authority::generate("datastore-ca", algorithm, CA_VALIDITY, params.now).unwrap();
        let provisioned = observed(
            &datastore_ca,
            stored(&pass(&observed(&datastore_ca, BTreeMap::new()), params)),
        );
        assert!(
            stored(&pass(&provisioned, params)).is_empty(),
            "a provisioned tenant writes nothing"
        );
        group.bench_function(BenchmarkId::from_parameter(algorithm), |b| {
            b.iter(|| pass(black_box(&provisioned), params))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("generate_key");
    group.sample_size(10);
    for algorithm in KeyAlgorithm::ALL {
        group.bench_function(BenchmarkId::from_parameter(algorithm), |b| {
            b.iter(|| PrivateKey::generate(black_box(algorithm)).unwrap())
        });
    }
    group.finish();

    // Signing alone, with the key already generated (what a key pool leaves on the path).
    let mut group = c.benchmark_group("sign_leaf_with_pooled_key");
    for algorithm in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256] {
        let params = params(algorithm);
        let ca = Authority::generate("kubernetes", algorithm, CA_VALIDITY, params.now).unwrap();
        let request = LeafRequest {
            common_name: "kubernetes-admin".into(),
            organization: Some("kubeadm:cluster-admins".into()),
            usages: vec![Usage::ClientAuth],
            ..LeafRequest::default()
        };
        group.bench_function(BenchmarkId::from_parameter(algorithm), |b| {
            b.iter_batched(
                || PrivateKey::generate(algorithm).unwrap(),
                |key| ca.sign_key(&request, key, &params).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A Secret's data as `inspect` takes it.
type Data<'a> = Vec<(&'a str, &'a [u8])>;

/// The lifecycle-labelled Secrets of a tenant, with their labels.
fn labelled_secrets(pki: &TenantPki) -> Vec<(Lifecycle, Data<'_>)> {
    catalog::leaf_secret_suffixes()
        .into_iter()
        .filter_map(|suffix| {
            let data = pki.secrets.get(suffix)?;
            let lifecycle = catalog::rows_in_secret(suffix).next()?.lifecycle;
            Some((
                lifecycle,
                data.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect(),
            ))
        })
        .collect()
}

fn inspect_throughput(c: &mut Criterion) {
    let params = params(KeyAlgorithm::EcdsaP256);
    let datastore_ca =
        Authority::generate("datastore-ca", params.algorithm, CA_VALIDITY, params.now).unwrap();
    let pki = issue_tenant(&tenant(), Some(&datastore_ca), &params).unwrap();
    let rsa = issue_tenant(
        &tenant(),
        Some(&datastore_ca),
        &self::params(KeyAlgorithm::Rsa2048),
    )
    .unwrap();

    let mut group = c.benchmark_group("inspect");
    for (name, pki) in [("tenant_ecdsa_p256", &pki), ("tenant_rsa_2048", &rsa)] {
        let secrets = labelled_secrets(pki);
        group.throughput(Throughput::Elements(secrets.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                for (lifecycle, data) in &secrets {
                    black_box(inspect(data.iter().copied(), *lifecycle).unwrap());
                }
            })
        });
    }
    for (name, suffix) in [
        ("x509_api_server", "api-server-certificate"),
        ("kubeconfig_admin_4_keys", "admin-kubeconfig"),
    ] {
        let data: Vec<(&str, &[u8])> = pki.secrets[suffix]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let lifecycle = catalog::rows_in_secret(suffix).next().unwrap().lifecycle;
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| inspect(black_box(data.iter().copied()), lifecycle).unwrap())
        });
    }
    group.finish();
}

/// A whole RSA-2048 tenant (15 keys) with the manager's key pool full beforehand,
/// as after a quiet period: the latency a rotation burst sees. Runs last because
/// the pool is process-wide (the groups above measure inline generation).
fn issue_with_warm_pool(c: &mut Criterion) {
    let algorithm = KeyAlgorithm::Rsa2048;
    let Some(pool) = kamaji::pki::pool::install(algorithm, 16) else {
        return;
    };
    let params = params(algorithm);
    let datastore_ca = Authority::generate("datastore-ca", algorithm, CA_VALIDITY, params.now).unwrap();
    let empty = observed(&datastore_ca, BTreeMap::new());
    let mut group = c.benchmark_group("desired_new_tenant_warm_key_pool");
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter(algorithm), |b| {
        b.iter_batched(
            || {
                while pool.ready() < pool.capacity() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            },
            |()| black_box(pass(&empty, params)),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = issue, inspect_throughput, issue_with_warm_pool
}
criterion_main!(benches);
