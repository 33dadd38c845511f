//! Kamaji's metric families on a running operator's `/metrics`, with Kamaji's
//! names and labels, in an exposition promtool accepts.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use crate::support::{
    Operator, TestNamespace, client, etcd_datastore, eventually, install_crds, kubectl_apply, on_path,
    tenant::free_port,
};

fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.lines()
        .next()
        .is_some_and(|s| s.contains(" 200"))
        .then(|| body.to_string())
}

#[tokio::test]
async fn kamajis_metric_families_are_served_with_kamajis_labels() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "kamaji-metrics").await;
    let (datastore, _ca) = etcd_datastore(&client, &ns.name, &["127.0.0.1:2379"]).await;
    let manifest = format!(
        "apiVersion: kamaji.clastix.io/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: metrics\nspec:\n  \
         dataStore: {datastore}\n  kubernetes:\n    version: \"1.37.2\"\n"
    );
    let applied = kubectl_apply(&ns.name, &manifest);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let port = free_port();
    let operator = Operator::start(
        &ns.name,
        &["--metrics-bind-address", &format!("127.0.0.1:{port}")],
    );

    let tenant = format!("tcp_namespace=\"{}\",tcp_name=\"metrics\"", ns.name);
    let wanted = [
        format!("kamaji_tenant_control_plane_info{{{tenant},kubernetes_version=\"1.37.2\""),
        format!("kamaji_datastore_info{{datastore_name=\"{datastore}\",driver=\"etcd\"}} 1"),
        // Kamaji's label names on the certificate counts, beside kamaji-rs' own.
        format!(
            "status=\"valid\",tcp_namespace=\"{}\",tcp_name=\"metrics\"}}",
            ns.name
        ),
    ];
    let text = eventually("Kamaji's families in /metrics", Duration::from_secs(60), || {
        let (text, wanted) = (scrape(port), wanted.clone());
        async move {
            let text = text?;
            wanted.iter().all(|w| text.contains(w.as_str())).then_some(text)
        }
    })
    .await;
    for family in [
        "kamaji_build_info{",
        "kamaji_tenant_control_plane_status{",
        "kamaji_tenant_control_planes_current{ready=\"true\"}",
        "kamaji_tenant_control_planes_current{ready=\"false\"}",
        "kamaji_datastore_status{",
        "kamaji_datastores_current{",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    assert!(
        text.contains(&format!("kamaji_tenant_control_plane_status{{{tenant},status=")),
        "{text}"
    );

    // The whole exposition, ours and Kamaji's families together, is valid.
    let mut promtool = Command::new(on_path("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    // promtool reads the Prometheus text format: drop the OpenMetrics end marker.
    let exposition = text.replace("# EOF\n", "");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("writing to promtool");
    let checked = promtool.wait_with_output().expect("promtool");
    let complaints = String::from_utf8_lossy(&checked.stderr);
    // Lint notes (help texts, counter names) are not errors; a parse error is.
    assert!(
        !complaints.contains("error while linting") && !complaints.contains("parse"),
        "promtool: {complaints}"
    );
    drop(operator);
}
