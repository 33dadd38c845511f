//! kamaji-rs: a certificate-lifecycle operator for Kamaji-compatible tenant
//! control planes. The binary (`kamaji`) is a thin shell over this library,
//! which the integration tests and benchmarks use directly.

pub mod api;
pub mod cli;
pub mod controllers;
pub mod dev;
pub mod pki;
pub mod runtime;
pub mod tenant;
