//! A clock skew of the operator's host: an operator whose clock is ten minutes
//! behind or ahead of the one that issued a tenant's material (another replica,
//! a host whose clock was corrected) re-issues nothing for that alone.
//!
//! The skew is real, not a setting of ours: the operator runs under libfaketime
//! (`LD_PRELOAD` with `FAKETIME=-10m`, Debian package `faketime`), which offsets every clock
//! the process reads (the time the PKI is checked against, its log's timestamps,
//! its TLS checks). The tenant is provisioned by an operator with the true clock
//! moments before, so its leaves' NotBefore (backdated five minutes) lies ahead
//! of the skewed clock: exactly what must not count as "not yet valid".

use std::{collections::BTreeMap, time::Duration};

use base64::Engine as _;
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{Api, Client, ResourceExt, api::ListParams};

use super::{
    lifecycle::{free_port, sample, scrape},
    walkthrough::{TENANT, provision},
};
use crate::support::{Operator, TestNamespace, client, eventually, kubectl_ok, on_path};

/// Every Secret of the tenant: name -> resourceVersion.
async fn versions(client: &Client, ns: &str) -> BTreeMap<String, String> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("kamaji.clastix.io/name={TENANT}")))
        .await
        .expect("listing Secrets")
        .items
        .into_iter()
        .map(|s| (s.name_any(), s.resource_version().unwrap_or_default()))
        .collect()
}

/// The first timestamp of a log (`2026-01-02T03:04:05...`), read as UTC.
fn first_timestamp(log: &str) -> Option<Timestamp> {
    log.char_indices()
        .filter(|(_, c)| c.is_ascii_digit())
        .find_map(|(i, _)| format!("{}Z", log.get(i..i + 19)?).parse().ok())
}

/// The local cluster's serving certificates start when its CA does: a clock ten
/// minutes behind refuses them (as any TLS client would) while they are younger.
async fn wait_until_the_cluster_is_older_than(age: Duration) {
    let data = kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .expect("base64 CA");
    let ca = kamaji::pki::Authority::from_pem(&pem, None).expect("the cluster CA");
    let old_enough = ca.not_before() + age;
    let wait = old_enough - time::OffsetDateTime::now_utc();
    if wait.is_positive() {
        println!("waiting {wait} until the local cluster's certificates are valid on a skewed clock");
        tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    }
}

fn reconciles(port: u16, controller: &str) -> f64 {
    scrape(port)
        .and_then(|text| sample(&text, "kamaji_reconcile_total", &[("controller", controller)]))
        .unwrap_or_default()
}

#[tokio::test]
async fn an_operator_whose_clock_is_ten_minutes_off_re_issues_nothing() {
    // The `faketime` program forks: preload its library into the operator itself.
    on_path("faketime", "faketime");
    let library = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(library).is_file(),
        "{library}: install the Debian package faketime"
    );
    let client = client().await;
    let ns = TestNamespace::create(&client, "skew").await;
    let (operator, _) = provision(&client, &ns.name).await;
    operator.kill();
    wait_until_the_cluster_is_older_than(Duration::from_secs(11 * 60)).await;
    let before = versions(&client, &ns.name).await;
    for (skew, minutes) in [("-10m", -10), ("+10m", 10)] {
        let port = free_port();
        let metrics = format!("127.0.0.1:{port}");
        let operator = Operator::start_with_env(
            &ns.name,
            &["--metrics-bind-address", &metrics],
            &[("LD_PRELOAD", library), ("FAKETIME", skew)],
        );
        // The skew is real: the operator's log is stamped with its clock.
        let stamped = eventually(
            "the operator's first log line",
            Duration::from_secs(30),
            || async { first_timestamp(&operator.log_text()) },
        )
        .await;
        let offset = (stamped.as_second() - Timestamp::now().as_second()) / 60;
        assert!(
            (offset - minutes).abs() <= 1,
            "{skew}: the log says {stamped}, {offset} minutes off\n{}",
            operator.log_text()
        );
        // It reconciled the tenant and checked its Secrets, and again when poked.
        eventually(
            &format!("{skew}: reconciles"),
            Duration::from_secs(60),
            || async {
                (reconciles(port, "tenantcontrolplane") >= 1.0
                    && reconciles(port, "certificatelifecycle") >= 9.0)
                    .then_some(())
            },
        )
        .await;
        let first = reconciles(port, "tenantcontrolplane");
        kubectl_ok(&[
            "annotate",
            "tcp",
            "-n",
            &ns.name,
            TENANT,
            "--overwrite",
            &format!("kamaji-rs.test/poke={skew}"),
        ]);
        eventually(
            &format!("{skew}: a reconcile after the poke"),
            Duration::from_secs(30),
            || async { (reconciles(port, "tenantcontrolplane") > first).then_some(()) },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = versions(&client, &ns.name).await;
        assert_eq!(
            before,
            after,
            "{skew}: Secrets were rewritten for the skew alone\n{}",
            operator.log_text()
        );
        assert!(
            !operator.log_text().contains("re-issued"),
            "{skew}\n{}",
            operator.log_text()
        );
        operator.kill();
    }
}
