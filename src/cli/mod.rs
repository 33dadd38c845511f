//! Command-line subcommands beyond the operator itself.

pub mod check_expiration;
pub mod table;
