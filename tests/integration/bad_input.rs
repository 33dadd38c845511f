//! The bad-input battery: one tenant per case, all served by one operator, each
//! broken in its own way. Every case ends in a clear error (a Warning event on
//! the tenant and a `CertificatesReady=False` condition naming the Secret and
//! what is wrong) or, for a broken leaf, a re-issue; and nothing is lost: bad
//! material stays as it was, and no tenant's CA or service-account key is
//! replaced without a request. Cases covered elsewhere: an unreadable CA
//! (drift.rs), unreadable leaves and kubeconfigs (lifecycle.rs), a DataStore in
//! use deleted (datastore_status.rs), a DataStore's CA Secret deleted
//! (pipeline.rs), a clock ten minutes off (clock_skew.rs), two tenants of one
//! name in two namespaces and a tenant renamed mid-rotation (tenant_identity.rs).

use std::{collections::BTreeMap, time::Duration};

use base64::Engine as _;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kamaji::pki::{Authority, IssueParams, KeyAlgorithm, PrivateKey, StoredCa, catalog};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use time::OffsetDateTime;

use super::lifecycle::{apply, condition, events, tenant_manifest, wait_ready};
use crate::support::{Operator, TestNamespace, client, etcd_datastore, eventually, install_crds, kubectl_ok};

/// What is done to a tenant.
#[derive(Clone, Copy, Debug)]
enum Bad {
    /// Its CA replaced by one (with its key) that expired an hour ago.
    CaExpired,
    /// Its CA replaced by one (with its key) valid from tomorrow.
    CaNotYetValid,
    /// Its CA's key replaced by another key.
    CaKeyMismatch,
    /// The API server certificate's key replaced by another key.
    LeafKeyMismatch,
    /// A Secret of another type where the front-proxy client certificate belongs.
    WrongType,
    /// Every data key of the service-account Secret filled with junk, as large as a Secret may be.
    Junk,
    /// The rotate annotation set to something that is neither "" nor a time.
    RotateValue,
}

struct Case {
    bad: Bad,
    tenant: &'static str,
    /// The Secret broken (suffix).
    secret: &'static str,
    /// The Warning (or, for a re-issue, Normal) event's reason on the tenant.
    reason: &'static str,
    /// What the event and the condition say about it.
    says: &'static str,
    /// Re-issued (a leaf) rather than kept and reported.
    reissued: bool,
}

const CASES: [Case; 7] = [
    Case {
        bad: Bad::CaExpired,
        tenant: "ca-expired",
        secret: "ca",
        reason: "CertificateUnreadable",
        says: "expired at",
        reissued: false,
    },
    Case {
        bad: Bad::CaNotYetValid,
        tenant: "ca-early",
        secret: "ca",
        reason: "CertificateUnreadable",
        says: "not valid before",
        reissued: false,
    },
    Case {
        bad: Bad::CaKeyMismatch,
        tenant: "ca-key",
        secret: "ca",
        reason: "CertificateUnreadable",
        says: "does not match",
        reissued: false,
    },
    Case {
        bad: Bad::LeafKeyMismatch,
        tenant: "leaf-key",
        secret: "api-server-certificate",
        reason: "Rotated",
        says: "apiserver.key does not match its certificate",
        reissued: true,
    },
    Case {
        bad: Bad::WrongType,
        tenant: "wrong-type",
        secret: "front-proxy-client-certificate",
        reason: "SecretTypeMismatch",
        says: "has type example.com/not-a-certificate",
        reissued: false,
    },
    Case {
        bad: Bad::Junk,
        tenant: "junk",
        secret: "sa-certificate",
        reason: "CertificateUnreadable",
        says: "cannot be read",
        reissued: false,
    },
    Case {
        bad: Bad::RotateValue,
        tenant: "rotate-value",
        secret: "api-server-certificate",
        reason: "InvalidRotateAnnotation",
        says: "neither",
        reissued: false,
    },
];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Overwrites data keys of `<tenant>-<suffix>` (a merge patch, as `kubectl edit` would).
async fn overwrite(secrets: &Api<Secret>, name: &str, data: &BTreeMap<String, Vec<u8>>) {
    let data: serde_json::Map<String, serde_json::Value> =
        data.iter().map(|(k, v)| (k.clone(), json!(b64(v)))).collect();
    secrets
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": data })),
        )
        .await
        .unwrap_or_else(|e| panic!("overwriting {name}: {e}"));
}

/// The data of a tenant CA Secret holding `ca`.
fn ca_data(ca: Authority) -> BTreeMap<String, Vec<u8>> {
    StoredCa::settled(ca).secret_data(&catalog::TENANT_CA)
}

fn ca_at(start: OffsetDateTime, validity: Duration) -> Authority {
    Authority::generate("kubernetes", KeyAlgorithm::EcdsaP256, validity, start).expect("a CA")
}

/// Breaks the case's Secret; returns what a user now reads in it (data), which
/// must stay so unless the case re-issues it.
async fn break_it(client: &Client, ns: &str, case: &Case) -> Option<BTreeMap<String, ByteString>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = format!("{}-{}", case.tenant, case.secret);
    let now = OffsetDateTime::now_utc();
    let hour = Duration::from_secs(3600);
    match case.bad {
        Bad::CaExpired => overwrite(&secrets, &name, &ca_data(ca_at(now - 3 * hour, hour))).await,
        Bad::CaNotYetValid => {
            let ten_years = IssueParams::new(now).ca_validity;
            overwrite(&secrets, &name, &ca_data(ca_at(now + 24 * hour, ten_years))).await
        }
        Bad::CaKeyMismatch | Bad::LeafKeyMismatch => {
            let key = PrivateKey::generate_fresh(KeyAlgorithm::EcdsaP256).expect("a key");
            let keys: &[&str] = match case.bad {
                Bad::CaKeyMismatch => &["ca.key", "tls.key"],
                _ => &["apiserver.key"],
            };
            let data = keys
                .iter()
                .map(|k| (k.to_string(), key.pem().as_bytes().to_vec()))
                .collect();
            overwrite(&secrets, &name, &data).await
        }
        Bad::WrongType => replace_with_other_type(client, ns, case.tenant, &name).await,
        Bad::Junk => fill_with_junk(&secrets, &name).await,
        Bad::RotateValue => {
            kubectl_ok(&[
                "annotate",
                "secret",
                "-n",
                ns,
                &name,
                "certs.kamaji.clastix.io/rotate=yes please",
            ]);
        }
    }
    secrets.get(&name).await.expect("the broken Secret").data
}

/// Deletes the Secret and creates one of another type under its name, with the
/// tenant paused meanwhile (the operator would re-create it in between).
async fn replace_with_other_type(client: &Client, ns: &str, tenant: &str, name: &str) {
    kubectl_ok(&[
        "annotate",
        "tcp",
        "-n",
        ns,
        tenant,
        "kamaji.clastix.io/paused=true",
    ]);
    kubectl_ok(&["delete", "secret", "-n", ns, name]);
    let mut other = Secret::default();
    other.metadata.name = Some(name.to_string());
    other.type_ = Some("example.com/not-a-certificate".into());
    other.data = Some([("token".to_string(), ByteString(b"someone else's".to_vec()))].into());
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &other)
        .await
        .expect("creating the other Secret");
    kubectl_ok(&["annotate", "tcp", "-n", ns, tenant, "kamaji.clastix.io/paused-"]);
}

/// 1 MiB in every data key is refused by the API server (a Secret holds at most
/// 1 MiB): the error names the field. Then every key gets an equal share of it.
async fn fill_with_junk(secrets: &Api<Secret>, name: &str) {
    let keys: Vec<String> = secrets
        .get(name)
        .await
        .expect("the Secret")
        .data
        .unwrap_or_default()
        .into_keys()
        .collect();
    let junk = |size: usize| -> BTreeMap<String, Vec<u8>> {
        keys.iter()
            .map(|k| (k.clone(), (0..size).map(|_| rand::random::<u8>()).collect()))
            .collect()
    };
    let mib = 1024 * 1024;
    let data: serde_json::Map<String, serde_json::Value> = junk(mib)
        .iter()
        .map(|(k, v)| (k.clone(), json!(b64(v))))
        .collect();
    let refused = secrets
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": data })),
        )
        .await
        .expect_err("1 MiB in every key is more than a Secret holds");
    println!("1 MiB in each of {keys:?}: {refused}");
    assert!(refused.to_string().contains("data"), "{refused}");
    overwrite(secrets, name, &junk((mib - 64 * 1024) / keys.len())).await;
}

/// The tenant CA certificate, the service-account public key and the API server certificate.
async fn identity(secrets: &Api<Secret>, tenant: &str) -> (ByteString, ByteString, ByteString) {
    let value = |secret: Secret, key: &str| {
        secret
            .data
            .and_then(|mut d| d.remove(key))
            .unwrap_or_else(|| panic!("{key}"))
    };
    let ca = secrets.get(&format!("{tenant}-ca")).await.expect("CA");
    let sa = secrets
        .get(&format!("{tenant}-sa-certificate"))
        .await
        .expect("SA");
    let apiserver = secrets
        .get(&format!("{tenant}-api-server-certificate"))
        .await
        .expect("API server certificate");
    (
        value(ca, "ca.crt"),
        value(sa, "sa.pub"),
        value(apiserver, "apiserver.crt"),
    )
}

#[tokio::test]
async fn every_bad_input_is_reported_naming_the_secret_and_nothing_is_replaced() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "bad-input").await;
    let (datastore, _) = etcd_datastore(&client, &ns.name, &["127.0.0.1:2379"]).await;
    let operator = Operator::start(&ns.name, &[]);
    for case in &CASES {
        apply(&ns.name, &tenant_manifest(case.tenant, &datastore, false));
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let mut before = BTreeMap::new();
    for case in &CASES {
        wait_ready(&client, &ns.name, case.tenant, &operator).await;
        before.insert(case.tenant, identity(&secrets, case.tenant).await);
    }
    let mut broken = BTreeMap::new();
    for case in &CASES {
        broken.insert(case.tenant, break_it(&client, &ns.name, case).await);
    }
    for case in &CASES {
        check(
            &client,
            &ns.name,
            case,
            &broken[case.tenant],
            &before[case.tenant],
            &operator,
        )
        .await;
    }
    let mut operator = operator;
    assert!(operator.running(), "{}", operator.log_text());
}

/// The user-visible outcome of one case.
async fn check(
    client: &Client,
    ns: &str,
    case: &Case,
    broken: &Option<BTreeMap<String, ByteString>>,
    before: &(ByteString, ByteString, ByteString),
    operator: &Operator,
) {
    let name = format!("{}-{}", case.tenant, case.secret);
    let what = format!("{:?} ({name})", case.bad);
    let note = eventually(
        &format!("{what}: a {} event on the tenant", case.reason),
        Duration::from_secs(60),
        || async {
            events(client, ns, case.tenant)
                .await
                .into_iter()
                .find(|(reason, note)| reason == case.reason && note.contains(&name))
                .map(|(_, note)| note)
        },
    )
    .await;
    println!("{what}: {} {note}", case.reason);
    assert!(note.contains(case.says), "{what}: {note}");
    assert!(
        note.len() < 1024 && !note.contains("PRIVATE KEY"),
        "{what}: {note}"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    if case.reissued {
        let now = secrets.get(&name).await.expect("re-issued");
        assert_ne!(&now.data, broken, "{what}: not re-issued");
    } else {
        let message = eventually(
            &format!("{what}: CertificatesReady=False naming it"),
            Duration::from_secs(60),
            || async {
                condition(client, ns, case.tenant, "CertificatesReady")
                    .await
                    .filter(|(status, _, message)| status == "False" && message.contains(&name))
                    .map(|(_, _, message)| message)
            },
        )
        .await;
        assert!(message.contains(case.says), "{what}: {message}");
        // Kept: a few passes later, what the user left is still there.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = secrets.get(&name).await.expect("kept");
        assert_eq!(
            &now.data,
            broken,
            "{what}: the bad material was replaced\n{}",
            operator.log_text()
        );
    }
    let (ca, sa, apiserver) = identity(&secrets, case.tenant).await;
    if case.secret != "api-server-certificate" {
        // Nothing a broken CA signs is re-issued with it, or in its place.
        assert_eq!(
            apiserver, before.2,
            "{what}: the API server certificate was re-issued"
        );
    }
    if case.secret != "ca" {
        assert_eq!(ca, before.0, "{what}: the CA was replaced");
    }
    if case.secret != "sa-certificate" {
        assert_eq!(sa, before.1, "{what}: the service-account key was replaced");
    }
    let rotations = events(client, ns, case.tenant).await;
    assert!(
        !rotations.iter().any(|(reason, _)| reason == "CaRotationStarted"),
        "{what}: a CA rotation started by itself: {rotations:?}"
    );
}
