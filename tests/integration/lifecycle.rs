//! The CertificateLifecycle controller on the real cluster: certificates rotated
//! by themselves exactly at their deadline (one rollout per batch), paused
//! tenants left alone, unreadable payloads reported without touching them or
//! disturbing other tenants, expiry metrics that match openssl, and external
//! DataStore certificates that expire at their source warned about once.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::Duration,
};

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::ReplicaSet,
        core::v1::{Event, Secret},
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
    jiff::Timestamp,
};
use kamaji::{
    api::{TenantControlPlane, tenant_control_plane::KubernetesVersionStatus},
    pki::{
        Authority, IssueParams, LeafRequest, catalog::Usage, inspect::is_certificate_key,
        kubeconfig::Kubeconfig,
    },
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
};

use crate::support::{
    Operator, TestNamespace, client, etcd_datastore, eventually, install_crds, kubectl_apply, kubectl_ok,
    openssl,
};

const LIFECYCLE: &str = "kamaji.clastix.io/certificate_lifecycle_controller";
const ROTATE: &str = "certs.kamaji.clastix.io/rotate";

pub fn tenant_manifest(name: &str, datastore: &str, konnectivity: bool) -> String {
    let addons = if konnectivity {
        "  addons:\n    konnectivity:\n      server:\n        port: 8132\n"
    } else {
        ""
    };
    format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {name}\nspec:\n  \
         dataStore: {datastore}\n  controlPlane:\n    deployment:\n      replicas: 1\n    service:\n      \
         serviceType: ClusterIP\n  kubernetes:\n    version: v1.33.0\n  networkProfile:\n    port: 6443\n{addons}"
    )
}

pub fn apply(ns: &str, manifest: &str) {
    let applied = kubectl_apply(ns, manifest);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
}

/// Waits until `tenant` reports Ready.
pub async fn wait_ready(client: &Client, ns: &str, tenant: &str, operator: &Operator) {
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), ns);
    let ready = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            let status = tcps
                .get(tenant)
                .await
                .ok()
                .and_then(|t| t.status)
                .and_then(|s| s.kubernetes_resources)
                .and_then(|r| r.version)
                .and_then(|v| v.status);
            if status == Some(KubernetesVersionStatus::Ready) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(
        ready.is_ok(),
        "{tenant} not Ready: {:?}\noperator log:\n{}",
        tcps.get(tenant).await.ok().and_then(|t| t.status),
        operator.log_text()
    );
}

/// The tenant's lifecycle-labelled Secrets by name.
async fn labelled(client: &Client, ns: &str, tenant: &str) -> BTreeMap<String, Secret> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let selector = format!("kamaji.clastix.io/name={tenant},{LIFECYCLE}");
    api.list(&ListParams::default().labels(&selector))
        .await
        .expect("listing Secrets")
        .items
        .into_iter()
        .map(|s| (s.name_any(), s))
        .collect()
}

fn rotate_value(secret: &Secret) -> Option<String> {
    secret.annotations().get(ROTATE).cloned()
}

/// The certificates a Secret uses, PEM: `*.crt` keys (not carried CAs) or every
/// kubeconfig user's client certificate.
fn in_use(secret: &Secret) -> Vec<(String, Vec<u8>)> {
    let kubeconfig = secret.labels().get(LIFECYCLE).map(String::as_str) == Some("kubeconfig");
    let mut pems = Vec::new();
    for (key, value) in secret.data.iter().flatten() {
        if kubeconfig {
            let parsed = Kubeconfig::parse(&value.0).expect("a kubeconfig");
            for credentials in parsed.client_credentials().expect("client certificates") {
                pems.push((
                    format!("{key}/{}", credentials.user),
                    credentials.certificate_pem.to_vec(),
                ));
            }
        } else if is_certificate_key(key) {
            pems.push((key.clone(), value.0.clone()));
        }
    }
    pems
}

fn write_pem(dir: &Path, pem: &[u8]) -> std::path::PathBuf {
    let file = dir.join(format!("cert-{:08x}.pem", rand::random::<u32>()));
    std::fs::write(&file, pem).expect("writing a certificate");
    file
}

/// NotAfter as `openssl x509 -enddate` reads it, Unix seconds.
fn enddate(dir: &Path, pem: &[u8]) -> i64 {
    let file = write_pem(dir, pem);
    let out = openssl(&[
        "x509".as_ref(),
        "-noout".as_ref(),
        "-enddate".as_ref(),
        "-dateopt".as_ref(),
        "iso_8601".as_ref(),
        "-in".as_ref(),
        file.as_os_str(),
    ]);
    // notAfter=2026-03-01 12:00:00Z
    let value = out.trim().trim_start_matches("notAfter=").replace(' ', "T");
    value
        .parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("openssl enddate {out:?}: {e}"))
        .as_second()
}

fn serial_of(dir: &Path, pem: &[u8]) -> String {
    crate::support::serial(dir, pem)
}

/// Earliest NotAfter (openssl) of each Secret, and every serial in use.
fn expiry_and_serials(
    dir: &Path,
    secrets: &BTreeMap<String, Secret>,
) -> (BTreeMap<String, i64>, BTreeMap<String, String>) {
    let mut expiry = BTreeMap::new();
    let mut serials = BTreeMap::new();
    for (name, secret) in secrets {
        for (key, pem) in in_use(secret) {
            let end = enddate(dir, &pem);
            let earliest = expiry.entry(name.clone()).or_insert(end);
            *earliest = (*earliest).min(end);
            serials.insert(format!("{name}/{key}"), serial_of(dir, &pem));
        }
    }
    (expiry, serials)
}

async fn replica_sets(client: &Client, ns: &str, tenant: &str) -> Vec<String> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = api
        .list(&ListParams::default().labels(&format!("kamaji.clastix.io/name={tenant}")))
        .await
        .expect("listing ReplicaSets")
        .items
        .into_iter()
        .map(|rs| rs.name_any())
        .collect();
    names.sort();
    names
}

async fn wait_rolled_out(client: &Client, ns: &str, tenant: &str) {
    crate::support::wait_material_rolled_out(client, ns, tenant).await;
}

/// A free port on 127.0.0.1 for the manager's `/metrics`.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET /metrics` (HTTP/1.0, so the body ends with the connection).
pub(crate) fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    (status.starts_with("HTTP/1.") && status.contains(" 200")).then(|| body.to_string())
}

/// The value of the sample `name{...}` whose labels include every `labels` pair.
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            (metric == name).then_some((rest.trim_end_matches('}'), value))
        })
        .find(|(set, _)| {
            labels
                .iter()
                .all(|(k, v)| set.split(',').any(|pair| pair == format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, value)| value.parse().ok())
}

/// Events on `object` (reason, note).
pub async fn events(client: &Client, ns: &str, object: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("listing events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(object))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

pub async fn condition(
    client: &Client,
    ns: &str,
    tenant: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), ns);
    tcps.get(tenant)
        .await
        .ok()?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason, c.message))
}

#[tokio::test]
async fn certificates_are_rotated_by_themselves_at_their_deadline_with_one_rollout() {
    // Leaves valid 150 s, rotated when 110 s remain: 40 s after issuance.
    const VALIDITY: i64 = 150;
    const DEADLINE: i64 = 110;
    let client = client().await;
    let ns = TestNamespace::create(&client, "lifecycle-expiry").await;
    install_crds(&client).await;
    let (datastore, _) = etcd_datastore(&client, &ns.name, &["127.0.0.1:2379"]).await;
    let operator = Operator::start(
        &ns.name,
        &[
            "--certificate-validity",
            &format!("{VALIDITY}s"),
            "--certificate-expiration-deadline",
            &format!("{DEADLINE}s"),
        ],
    );
    let tenant = "expiring";
    let applied_at = Timestamp::now().as_second();
    apply(&ns.name, &tenant_manifest(tenant, &datastore, true));
    wait_ready(&client, &ns.name, tenant, &operator).await;
    let ready_after = Timestamp::now().as_second() - applied_at;

    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = labelled(&client, &ns.name, tenant).await;
    assert_eq!(
        secrets.len(),
        9,
        "5 x509 and 4 kubeconfig Secrets: {:?}",
        secrets.keys()
    );
    let (expiry, serials) = expiry_and_serials(dir.path(), &secrets);
    let earliest = *expiry.values().min().expect("certificates");
    let latest = *expiry.values().max().expect("certificates");
    let renewal = earliest - DEADLINE;
    println!(
        "tenant Ready {ready_after}s after apply; NotAfter spread {}s; renewal due at {renewal}, {}s from now",
        latest - earliest,
        renewal - Timestamp::now().as_second()
    );
    assert!(
        Timestamp::now().as_second() < renewal - 5,
        "provisioning took too long ({ready_after}s) for a {VALIDITY}s validity and {DEADLINE}s deadline"
    );
    let replica_sets_before = replica_sets(&client, &ns.name, tenant).await;

    // No rotation before the deadline: nothing annotated, nothing re-issued.
    while Timestamp::now().as_second() < renewal - 1 {
        for (name, secret) in labelled(&client, &ns.name, tenant).await {
            assert_eq!(
                rotate_value(&secret),
                None,
                "{name} annotated before its deadline ({renewal})"
            );
            assert_eq!(
                secret.resource_version(),
                secrets[&name].resource_version(),
                "{name} changed before its deadline"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // By itself, within seconds after it: every Secret rotated, stamped RFC 3339.
    let rotated = eventually(
        "every Secret rotated after its deadline",
        Duration::from_secs(60),
        || async {
            let now = labelled(&client, &ns.name, tenant).await;
            let stamps: BTreeMap<String, i64> = now
                .iter()
                .filter_map(|(name, s)| {
                    let at = rotate_value(s)?.parse::<Timestamp>().ok()?;
                    Some((name.clone(), at.as_second()))
                })
                .collect();
            (stamps.len() == secrets.len()).then_some((now, stamps))
        },
    )
    .await;
    let observed = Timestamp::now().as_second();
    let (after, stamps) = rotated;
    for (name, at) in &stamps {
        println!("{name} rotated at {at} ({:+}s after its deadline)", at - renewal);
        // RFC 3339 stamps have whole seconds: a rotation in the deadline's second reads as it.
        assert!(
            *at >= renewal,
            "{name} rotated at {at}, before its deadline {renewal}"
        );
        assert!(
            *at <= renewal + 10,
            "{name} rotated {}s after its deadline",
            at - renewal
        );
    }
    println!(
        "all rotations observed {}s after the deadline",
        observed - renewal
    );
    let (expiry_after, serials_after) = expiry_and_serials(dir.path(), &after);
    for (key, serial) in &serials {
        assert_ne!(&serials_after[key], serial, "{key} kept its serial");
    }
    for (name, end) in &expiry_after {
        assert!(*end > expiry[name], "{name} was not renewed");
    }

    // The batch's rollout (it starts once the batch has settled), then freeze the tenant
    // before its next deadline, and count the rollouts of this batch.
    wait_rolled_out(&client, &ns.name, tenant).await;
    kubectl_ok(&[
        "annotate",
        "tcp",
        tenant,
        "-n",
        &ns.name,
        "kamaji.clastix.io/paused=true",
    ]);
    let replica_sets_after = replica_sets(&client, &ns.name, tenant).await;
    assert_eq!(
        replica_sets_after.len(),
        replica_sets_before.len() + 1,
        "one rollout for the batch: before {replica_sets_before:?}, after {replica_sets_after:?}\n{}",
        operator.log_text()
    );

    // Paused: the next deadline passes and nothing is requested.
    let next_renewal = *expiry_after.values().min().expect("certificates") - DEADLINE;
    while Timestamp::now().as_second() < next_renewal + 5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (name, secret) in labelled(&client, &ns.name, tenant).await {
        assert_eq!(
            rotate_value(&secret),
            rotate_value(&after[&name]),
            "{name} was annotated while its tenant was paused"
        );
    }

    // Un-paused: the overdue Secrets are requested and rotated at once.
    kubectl_ok(&[
        "annotate",
        "tcp",
        tenant,
        "-n",
        &ns.name,
        "kamaji.clastix.io/paused-",
    ]);
    eventually("rotation after un-pausing", Duration::from_secs(60), || async {
        let now = labelled(&client, &ns.name, tenant).await;
        now.iter()
            .all(|(name, s)| {
                let at = rotate_value(s).and_then(|v| v.parse::<Timestamp>().ok());
                at.is_some_and(|at| at.as_second() > stamps[name])
            })
            .then_some(())
    })
    .await;
    assert!(
        operator.log_text().contains("rotation requested"),
        "{}",
        operator.log_text()
    );
}

fn secret(
    name: &str,
    lifecycle: &str,
    owner: Option<&TenantControlPlane>,
    data: &[(&str, Vec<u8>)],
) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.into());
    secret.metadata.labels = Some([(LIFECYCLE.to_string(), lifecycle.to_string())].into());
    secret.metadata.owner_references = owner.map(|tcp| {
        vec![OwnerReference {
            api_version: "kamaji.clastix.io/v1alpha1".into(),
            kind: "TenantControlPlane".into(),
            name: tcp.name_any(),
            uid: tcp.uid().expect("a stored TCP has a uid"),
            controller: Some(true),
            ..OwnerReference::default()
        }]
    });
    secret.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.clone())))
            .collect(),
    );
    secret
}

/// A certificate whose PEM block is intact but whose DER stops halfway.
fn truncated_certificate(pem: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64 PEM body");
    let half = base64::engine::general_purpose::STANDARD.encode(&der[..der.len() / 2]);
    format!("-----BEGIN CERTIFICATE-----\n{half}\n-----END CERTIFICATE-----\n").into_bytes()
}

const KUBECONFIG_WITHOUT_USERS: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    \
     server: https://127.0.0.1:6443\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: nobody\n\
     current-context: t\nusers: []\n";

#[tokio::test]
async fn unreadable_certificates_are_reported_and_left_untouched_while_other_tenants_carry_on() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "lifecycle-invalid").await;
    install_crds(&client).await;
    let (datastore, _) = etcd_datastore(&client, &ns.name, &["127.0.0.1:2379"]).await;
    let port = free_port();
    let operator = Operator::start(
        &ns.name,
        &["--metrics-bind-address", &format!("127.0.0.1:{port}")],
    );
    apply(&ns.name, &tenant_manifest("alpha", &datastore, false));
    apply(&ns.name, &tenant_manifest("beta", &datastore, false));
    wait_ready(&client, &ns.name, "alpha", &operator).await;
    wait_ready(&client, &ns.name, "beta", &operator).await;
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &ns.name);
    let alpha = tcps.get("alpha").await.expect("alpha");

    let apiserver =
        crate::support::secret_value(&client, &ns.name, "alpha-api-server-certificate", "apiserver.crt")
            .await;
    let garbage = b"this is not a certificate\n".to_vec();
    let truncated = truncated_certificate(&apiserver);
    let junk = [
        secret(
            "junk-garbage",
            "x509",
            Some(&alpha),
            &[("tls.crt", garbage.clone()), ("tls.key", b"nor a key\n".to_vec())],
        ),
        secret(
            "junk-truncated",
            "x509",
            None,
            &[("server.crt", truncated.clone())],
        ),
        secret(
            "junk-kubeconfig",
            "kubeconfig",
            Some(&alpha),
            &[("admin.conf", KUBECONFIG_WITHOUT_USERS.as_bytes().to_vec())],
        ),
    ];
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let mut created = BTreeMap::new();
    for s in &junk {
        let stored = secrets
            .create(&PostParams::default(), s)
            .await
            .expect("creating a junk Secret");
        created.insert(stored.name_any(), stored);
    }

    // An event on each, naming the data key and the problem, never the content.
    for (name, key) in [
        ("junk-garbage", "tls.crt"),
        ("junk-truncated", "server.crt"),
        ("junk-kubeconfig", "admin.conf"),
    ] {
        let note = eventually(
            &format!("an InvalidCertificate event on {name}"),
            Duration::from_secs(30),
            || async {
                events(&client, &ns.name, name)
                    .await
                    .into_iter()
                    .find(|(reason, _)| reason == "InvalidCertificate")
                    .map(|(_, note)| note)
            },
        )
        .await;
        println!("{name}: {note}");
        assert!(note.contains(key), "{name}: the note names {key}: {note}");
        assert!(!note.contains("this is not a certificate"), "{note}");
        assert!(!note.contains("MII"), "{note}");
    }

    // A condition on the owning tenant, naming the Secrets; none on the other tenant.
    let (status, reason, message) = eventually(
        "CertificatesValid=False on alpha",
        Duration::from_secs(30),
        || async {
            condition(&client, &ns.name, "alpha", "CertificatesValid")
                .await
                .filter(|(_, _, m)| m.contains("junk-garbage") && m.contains("junk-kubeconfig"))
        },
    )
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InvalidCertificate")
    );
    assert!(
        message.contains("tls.crt") && message.contains("admin.conf"),
        "{message}"
    );
    assert!(!message.contains("junk-truncated"), "not alpha's: {message}");
    assert_eq!(
        condition(&client, &ns.name, "beta", "CertificatesValid").await,
        None
    );

    // Metrics: invalid per tenant (an unowned Secret counts under tenant ""), errors by reason.
    let text = eventually(
        "invalid certificates in /metrics",
        Duration::from_secs(30),
        || async {
            let text = scrape(port)?;
            let alpha_invalid = sample(
                &text,
                "kamaji_certificates_current",
                &[
                    ("namespace", &ns.name),
                    ("tenant", "alpha"),
                    ("status", "invalid"),
                ],
            );
            let unowned_invalid = sample(
                &text,
                "kamaji_certificates_current",
                &[("namespace", &ns.name), ("tenant", ""), ("status", "invalid")],
            );
            (alpha_invalid == Some(2.0) && unowned_invalid == Some(1.0)).then_some(text)
        },
    )
    .await;
    assert_eq!(
        sample(
            &text,
            "kamaji_certificates_current",
            &[("namespace", &ns.name), ("tenant", "alpha"), ("status", "valid")]
        ),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "kamaji_certificates_current",
            &[("namespace", &ns.name), ("tenant", "beta"), ("status", "invalid")]
        ),
        Some(0.0),
        "{text}"
    );

    // Retried with backoff (5 s, 10 s, ...), the Secrets untouched, the operator healthy.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let log = operator.log_text();
    for delay in ["retry_in=5s", "retry_in=10s"] {
        assert!(log.contains(delay), "backoff {delay} missing:\n{log}");
    }
    let text = scrape(port).expect("/metrics");
    let errors = sample(
        &text,
        "kamaji_reconcile_errors_total",
        &[
            ("controller", "certificatelifecycle"),
            ("reason", "InvalidCertificate"),
        ],
    )
    .unwrap_or_default();
    // 3 Secrets, each checked at 0, 5, 15 s: about 9, never a storm.
    println!("InvalidCertificate errors after ~20 s: {errors}");
    assert!((6.0..=15.0).contains(&errors), "errors: {errors}\n{text}");
    for (name, before) in &created {
        let now = secrets.get(name).await.expect("still there");
        assert_eq!(
            now.resource_version(),
            before.resource_version(),
            "{name} was written"
        );
        assert_eq!(now.data, before.data, "{name} data changed");
        assert_eq!(now.annotations(), before.annotations(), "{name} annotated");
    }
    let mut operator = operator;
    assert!(
        operator.running(),
        "the operator exited:\n{}",
        operator.log_text()
    );

    // The tenants still rotate, and the reconciler's status writes keep the condition.
    for tenant in ["alpha", "beta"] {
        let name = format!("{tenant}-api-server-certificate");
        kubectl_ok(&["annotate", "secret", "-n", &ns.name, &name, &format!("{ROTATE}=")]);
        eventually(&format!("{name} rotated"), Duration::from_secs(60), || async {
            let s = secrets.get(&name).await.ok()?;
            rotate_value(&s)?.parse::<Timestamp>().ok()
        })
        .await;
    }
    wait_ready(&client, &ns.name, "alpha", &operator).await;
    assert_eq!(
        condition(&client, &ns.name, "alpha", "CertificatesValid")
            .await
            .map(|c| c.0),
        Some("False".to_string())
    );
    assert_eq!(
        condition(&client, &ns.name, "alpha", "Ready").await.map(|c| c.0),
        Some("True".to_string()),
        "the reconciler's conditions are kept too"
    );

    // Removed: the condition recovers and the series go.
    for name in created.keys() {
        secrets.delete(name, &Default::default()).await.expect("deleting");
    }
    eventually(
        "CertificatesValid=True on alpha",
        Duration::from_secs(30),
        || async {
            condition(&client, &ns.name, "alpha", "CertificatesValid")
                .await
                .filter(|(status, _, _)| status == "True")
        },
    )
    .await;
    let text = eventually("junk series gone", Duration::from_secs(30), || async {
        let text = scrape(port)?;
        let gone = sample(
            &text,
            "kamaji_certificates_current",
            &[("namespace", &ns.name), ("tenant", ""), ("status", "invalid")],
        )
        .is_none();
        let alpha = sample(
            &text,
            "kamaji_certificates_current",
            &[
                ("namespace", &ns.name),
                ("tenant", "alpha"),
                ("status", "invalid"),
            ],
        );
        (gone && alpha == Some(0.0)).then_some(text)
    })
    .await;
    assert!(!text.contains("junk-"), "{text}");
    assert!(operator.running());
}

#[tokio::test]
async fn metrics_expiry_gauges_equal_the_certificates_enddate() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "lifecycle-metrics").await;
    install_crds(&client).await;
    let (datastore, _) = etcd_datastore(&client, &ns.name, &["127.0.0.1:2379"]).await;
    let port = free_port();
    let operator = Operator::start(
        &ns.name,
        &[
            "--metrics-bind-address",
            &format!("127.0.0.1:{port}"),
            "--certificate-expiration-deadline",
            "7d",
        ],
    );
    let tenant = "gauged";
    apply(&ns.name, &tenant_manifest(tenant, &datastore, true));
    wait_ready(&client, &ns.name, tenant, &operator).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = labelled(&client, &ns.name, tenant).await;
    let (expiry, _) = expiry_and_serials(dir.path(), &secrets);
    assert_eq!(expiry.len(), 9);
    let text = eventually("every Secret's gauges", Duration::from_secs(30), || async {
        let text = scrape(port)?;
        secrets
            .keys()
            .all(|name| {
                sample(
                    &text,
                    "kamaji_certificate_expiration_timestamp_seconds",
                    &[("secret", name)],
                )
                .is_some()
            })
            .then_some(text)
    })
    .await;
    for (name, end) in &expiry {
        let kind = secrets[name].labels()[LIFECYCLE].clone();
        let labels = [
            ("namespace", ns.name.as_str()),
            ("tenant", tenant),
            ("secret", name.as_str()),
            ("kind", kind.as_str()),
        ];
        let expiration = sample(&text, "kamaji_certificate_expiration_timestamp_seconds", &labels);
        let renewal = sample(&text, "kamaji_certificate_renewal_timestamp_seconds", &labels);
        println!("{name}: openssl enddate {end}, gauge {expiration:?}, renewal {renewal:?}");
        assert_eq!(expiration, Some(*end as f64), "{name}");
        assert_eq!(renewal, Some((*end - 7 * 86_400) as f64), "{name}");
    }
    assert_eq!(
        sample(
            &text,
            "kamaji_certificates_current",
            &[("tenant", tenant), ("status", "valid")]
        ),
        Some(9.0)
    );
    for controller in ["tenantcontrolplane", "certificatelifecycle"] {
        let total =
            sample(&text, "kamaji_reconcile_total", &[("controller", controller)]).unwrap_or_default();
        let timed = sample(
            &text,
            "kamaji_reconcile_duration_seconds_count",
            &[("controller", controller)],
        )
        .unwrap_or_default();
        println!("{controller}: {total} reconciles, {timed} timed");
        assert!(total >= 1.0 && timed >= 1.0, "{controller}\n{text}");
    }

    // Steady state: timers, no polling. Nothing is checked again while nothing changes.
    let lifecycle_checks = |text: &str| {
        sample(
            text,
            "kamaji_reconcile_total",
            &[("controller", "certificatelifecycle")],
        )
        .unwrap_or_default()
    };
    let before = lifecycle_checks(&text);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = lifecycle_checks(&scrape(port).expect("/metrics"));
    println!("lifecycle checks: {before} then {after} 15 s later");
    assert_eq!(before, after, "the lifecycle controller polls");
}

#[tokio::test]
async fn an_external_datastore_certificate_expiring_at_its_source_is_warned_about_without_a_storm() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "lifecycle-external").await;
    install_crds(&client).await;
    // A MySQL DataStore whose client certificate (external PKI) expires in an hour.
    let mut params = IssueParams::new(time::OffsetDateTime::now_utc());
    let ca = Authority::generate("mysql-ca", params.algorithm, params.ca_validity, params.now).expect("CA");
    params.validity = Duration::from_secs(3600);
    let client_cert = ca
        .sign(
            &LeafRequest {
                common_name: "tenant".into(),
                usages: vec![Usage::ClientAuth],
                ..LeafRequest::default()
            },
            &params,
        )
        .expect("client certificate");
    let mut tls = Secret::default();
    tls.metadata.name = Some("mysql-tls".into());
    tls.data = Some(
        [
            ("ca.crt", ca.certificate_pem().as_bytes().to_vec()),
            ("tls.crt", client_cert.certificate_pem.as_bytes().to_vec()),
            ("tls.key", client_cert.key.pem().as_bytes().to_vec()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v)))
        .collect(),
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    secrets
        .create(&PostParams::default(), &tls)
        .await
        .expect("TLS Secret");
    let datastore = format!("mysql-{}", ns.name);
    let reference = |key: &str| {
        format!(
            "secretReference: {{name: mysql-tls, namespace: {}, keyPath: {key}}}",
            ns.name
        )
    };
    apply(
        &ns.name,
        &format!(
            "apiVersion: kamaji.clastix.io/v1alpha1\nkind: DataStore\nmetadata:\n  name: {datastore}\nspec:\n  \
             driver: MySQL\n  endpoints: [\"127.0.0.1:3306\"]\n  tlsConfig:\n    certificateAuthority:\n      \
             certificate:\n        {}\n    clientCertificate:\n      certificate:\n        {}\n      \
             privateKey:\n        {}\n",
            reference("ca.crt"),
            reference("tls.crt"),
            reference("tls.key")
        ),
    );
    let operator = Operator::start(&ns.name, &[]);
    let tenant = "external";
    apply(&ns.name, &tenant_manifest(tenant, &datastore, false));

    // The TCP is warned that the source expires; the copy is requested once, re-copied once.
    let note = eventually(
        "a DataStoreCertificateExpiring event",
        Duration::from_secs(60),
        || async {
            events(&client, &ns.name, tenant)
                .await
                .into_iter()
                .find(|(reason, _)| reason == "DataStoreCertificateExpiring")
                .map(|(_, note)| note)
        },
    )
    .await;
    println!("{note}");
    assert!(
        note.contains(&datastore) && note.contains(&client_cert.serial),
        "{note}"
    );
    let copy = format!("{tenant}-datastore-certificate");
    let stamped = eventually(
        "the copy answered the rotation request",
        Duration::from_secs(60),
        || async {
            let s = secrets.get(&copy).await.ok()?;
            rotate_value(&s)?.parse::<Timestamp>().ok().map(|_| s)
        },
    )
    .await;
    let warning = eventually(
        "a CertificateExpiring event on the copy",
        Duration::from_secs(30),
        || async {
            events(&client, &ns.name, &copy)
                .await
                .into_iter()
                .find(|(reason, _)| reason == "CertificateExpiring")
                .map(|(_, note)| note)
        },
    )
    .await;
    println!("{warning}");
    assert_eq!(
        crate::support::secret_value(&client, &ns.name, &copy, "server.crt").await,
        client_cert.certificate_pem.as_bytes()
    );

    // No storm: the copy is not annotated again, and the tenant is not reconciled in a loop.
    let settled = secrets.get(&copy).await.expect("copy");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let now = secrets.get(&copy).await.expect("copy");
    assert_eq!(
        rotate_value(&now),
        rotate_value(&stamped),
        "{}",
        operator.log_text()
    );
    assert_eq!(
        now.resource_version(),
        settled.resource_version(),
        "the copy was written again:\n{}",
        operator.log_text()
    );
    let requests = operator.log_text().matches("rotation requested").count();
    assert_eq!(requests, 1, "{}", operator.log_text());
}
