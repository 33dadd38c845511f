//! The process around the controllers: the `kamaji manager` command, logging.

pub mod manager;
pub mod metrics;
pub mod telemetry;
