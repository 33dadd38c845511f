//! The manager's HTTP endpoints: `/healthz` and `/readyz` on the probe address,
//! `/metrics` on the metrics address (one server when both are the same).
//!
//! `/metrics` is the controllers' registry (a [`MetricsSource`]) followed by the
//! families only the manager knows: `kamaji_leader`, `kamaji_ready` and the
//! `process_*` metrics.

use std::{fmt::Write as _, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{info, warn};

use super::{health::Health, manager::BindAddress, process::ProcessStats, tenant_status::TenantStatuses};

/// Renders the controllers' metrics in Prometheus or OpenMetrics text format
/// (the latter ends with `# EOF`).
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// Content type of the Prometheus text format 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics text 1.0 (what prometheus-client encodes).
const OPEN_METRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints report.
#[derive(Clone)]
pub struct Exported {
    /// The manager's phase (probes, `kamaji_leader`, `kamaji_ready`).
    pub health: Health,
    /// The controllers' registry.
    pub registry: MetricsSource,
    /// `kamaji_tenant_status`, filled while leading.
    pub tenants: TenantStatuses,
}

/// The running servers; they stop when this is dropped.
pub struct Servers {
    tasks: Vec<JoinHandle<()>>,
    /// Where `/metrics` is served, when enabled.
    pub metrics: Option<SocketAddr>,
    /// Where `/healthz` and `/readyz` are served, when enabled.
    pub probes: Option<SocketAddr>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds both addresses (a bind failure is a startup error) and serves them in
/// the background.
pub async fn start(
    metrics_address: BindAddress,
    probe_address: BindAddress,
    state: Exported,
) -> anyhow::Result<Servers> {
    let probe_routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    let metric_routes = Router::new().route("/metrics", get(metrics_handler));
    let mut servers = Servers {
        tasks: Vec::new(),
        metrics: None,
        probes: None,
    };
    match (metrics_address.socket(), probe_address.socket()) {
        // Port 0 twice means two ephemeral ports, hence two servers.
        (Some(m), Some(p)) if m == p && m.port() != 0 => {
            let local = serve(
                &mut servers,
                m,
                probe_routes.merge(metric_routes).with_state(state),
            )
            .await?;
            info!("serving /healthz, /readyz and /metrics on http://{local}");
            servers.metrics = Some(local);
            servers.probes = Some(local);
        }
        (m, p) => {
            if let Some(p) = p {
                let local = serve(&mut servers, p, probe_routes.with_state(state.clone())).await?;
                info!("serving /healthz and /readyz on http://{local}");
                servers.probes = Some(local);
            }
            if let Some(m) = m {
                let local = serve(&mut servers, m, metric_routes.with_state(state)).await?;
                info!("serving /metrics on http://{local}/metrics");
                servers.metrics = Some(local);
            }
        }
    }
    Ok(servers)
}

async fn serve(servers: &mut Servers, address: SocketAddr, router: Router) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("binding {address}: {e}"))?;
    let local = listener.local_addr()?;
    servers.tasks.push(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            warn!(%error, address = %local, "HTTP server stopped");
        }
    }));
    Ok(local)
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness, as [`crate::runtime::health`] defines it.
async fn readyz(State(state): State<Exported>) -> impl IntoResponse {
    let phase = state.health.phase();
    if phase.ready() {
        (StatusCode::OK, format!("ok: {}\n", phase.as_str()))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", phase.as_str()),
        )
    }
}

async fn metrics_handler(State(state): State<Exported>) -> impl IntoResponse {
    let registry = (state.registry)();
    let mut manager = String::new();
    state.tenants.encode(&mut manager);
    let (body, content_type) = render(&registry, &manager, &state.health, &ProcessStats::read());
    ([(header::CONTENT_TYPE, content_type)], body)
}

/// The controllers' families, then the manager's (`extra`, the leader and
/// readiness gauges, the process metrics), in the format the registry used
/// (OpenMetrics when it ends with `# EOF`, which must stay last).
pub fn render(
    registry: &str,
    extra: &str,
    health: &Health,
    process: &ProcessStats,
) -> (String, &'static str) {
    let trimmed = registry.trim_end();
    let (mut text, open_metrics) = match trimmed.strip_suffix("# EOF") {
        Some(body) => (body.to_string(), true),
        None => (registry.to_string(), false),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(extra);
    let phase = health.phase();
    let _ = write!(
        text,
        "# HELP kamaji_leader Whether this replica holds the leader lease and runs the controllers (1) or not (0).\n\
         # TYPE kamaji_leader gauge\nkamaji_leader {}\n\
         # HELP kamaji_ready Whether this replica reports ready on /readyz (1) or not (0).\n\
         # TYPE kamaji_ready gauge\nkamaji_ready {}\n",
        u8::from(phase.leading()),
        u8::from(phase.ready()),
    );
    process.encode(&mut text, open_metrics);
    if open_metrics {
        text.push_str("# EOF\n");
        (text, OPEN_METRICS_TEXT)
    } else {
        (text, PROMETHEUS_TEXT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::health::Phase;

    #[test]
    fn open_metrics_output_keeps_eof_last() {
        let health = Health::default();
        health.set(Phase::Leading { synced: true });
        let registry = "# HELP kamaji_reconcile_total Reconciles.\n# TYPE kamaji_reconcile counter\n\
                        kamaji_reconcile_total 3\n# EOF\n";
        let (text, content_type) = render(registry, "", &health, &ProcessStats::default());
        assert_eq!(content_type, OPEN_METRICS_TEXT);
        assert!(text.ends_with("kamaji_ready 1\n# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.contains("kamaji_reconcile_total 3\n# HELP kamaji_leader"));
        assert!(text.contains("\nkamaji_leader 1\n"));
    }

    #[test]
    fn prometheus_text_output_is_appended_to() {
        let health = Health::default();
        health.set(Phase::Standby);
        let (text, content_type) = render("", "", &health, &ProcessStats::default());
        assert_eq!(content_type, PROMETHEUS_TEXT);
        assert!(text.starts_with("# HELP kamaji_leader"));
        assert!(text.contains("\nkamaji_leader 0\n"));
        assert!(text.contains("\nkamaji_ready 1\n"));
    }

    #[tokio::test]
    async fn probes_and_metrics_answer_on_their_addresses() {
        let health = Health::default();
        let exported = Exported {
            health: health.clone(),
            registry: Arc::new(|| "# EOF\n".to_string()),
            tenants: TenantStatuses::default(),
        };
        let any: BindAddress = "127.0.0.1:0".parse().expect("address");
        let servers = start(any, any, exported).await.expect("servers");
        let probes = servers.probes.expect("probe address");
        let metrics = servers.metrics.expect("metrics address");
        assert_ne!(probes, metrics, "port 0 binds two listeners");

        assert_eq!(get_status(probes, "/healthz").await.0, 200);
        let (status, body) = get_status(probes, "/readyz").await;
        assert_eq!((status, body.trim()), (503, "not ready: starting"));
        health.set(Phase::Leading { synced: true });
        assert_eq!(get_status(probes, "/readyz").await.0, 200);
        assert_eq!(
            get_status(probes, "/metrics").await.0,
            404,
            "metrics are on their own port"
        );
        let (status, body) = get_status(metrics, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("\nkamaji_leader 1\n"), "{body}");
        assert!(body.ends_with("# EOF\n"));
    }

    #[test]
    fn the_same_address_twice_is_one_server() {
        let a: BindAddress = "127.0.0.1:9".parse().expect("address");
        assert_eq!(a.socket(), a.socket());
        let disabled: BindAddress = "0".parse().expect("address");
        assert_eq!(disabled.socket(), None);
    }

    /// A minimal HTTP/1.0 GET: status code and body.
    async fn get_status(address: SocketAddr, path: &str) -> (u16, String) {
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(address).expect("connect");
            stream
                .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
                .expect("request");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("response");
            let status = response
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let body = response
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default();
            (status, body)
        })
        .await
        .expect("request task")
    }
}
