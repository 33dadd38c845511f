//! kamaji-rs: a certificate-lifecycle operator for Kamaji-compatible tenant
//! control planes. The binary (`kamaji`) is a thin shell over this library,
//! which the integration tests and benchmarks use directly.

pub mod api;
pub mod controllers;
pub mod cli;
pub mod pki;
pub mod tenant;
pub mod runtime;
