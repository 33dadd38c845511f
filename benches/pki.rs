//! PKI benchmarks: what a new tenant costs per key algorithm (every CA, key pair,
//! certificate and kubeconfig), where that time goes (key generation vs signing), and
//! how many Secrets per second the lifecycle controller can inspect.
//!
//! `cargo bench --bench pki` (add `-- --quick` or `--measurement-time 5` for a short run).

use std::{hint::black_box, time::Duration};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kamaji::pki::{
    Authority, KeyAlgorithm, LeafRequest, PrivateKey,
    authority::CA_VALIDITY,
    catalog::{self, Lifecycle, Usage},
    inspect::inspect,
    issue::{IssueParams, TenantInputs, TenantPki, issue_tenant},
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
    }
}

fn params(algorithm: KeyAlgorithm) -> IssueParams {
    IssueParams {
        algorithm,
        ..IssueParams::new(OffsetDateTime::now_utc())
    }
}

fn issue(c: &mut Criterion) {
    let mut group = c.benchmark_group("issue_tenant");
    // RSA-4096 tenants take seconds each: keep the sample count at criterion's minimum.
    group.sample_size(10);
    for algorithm in KeyAlgorithm::ALL {
        let params = params(algorithm);
        let datastore_ca = Authority::generate("datastore-ca", algorithm, CA_VALIDITY, params.now).unwrap();
        group.bench_function(BenchmarkId::from_parameter(algorithm), |b| {
            b.iter(|| issue_tenant(black_box(&tenant()), Some(&datastore_ca), &params).unwrap())
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
    let mut group = c.benchmark_group("issue_tenant_warm_key_pool");
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter(algorithm), |b| {
        b.iter_batched(
            || {
                while pool.ready() < pool.capacity() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            },
            |()| black_box(issue_tenant(&tenant(), None, &params(algorithm)).expect("issues")),
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
