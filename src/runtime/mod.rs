//! The process around the controllers: the `kamaji manager` command, leader
//! election, the HTTP endpoints (probes, metrics), logging.

pub mod durations;
pub mod health;
pub mod http;
pub mod kamaji_flags;
pub mod kamaji_metrics;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod process;
pub mod rbac;
pub mod requests;
pub mod telemetry;
pub mod tenant_status;
