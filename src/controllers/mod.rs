//! The controllers: they read the cluster, call the pure builders of
//! [`crate::tenant`] and [`crate::pki`], and apply the difference.

pub mod context;
pub mod error;
pub mod tenant_control_plane;

pub use context::{Context, Settings};
pub use error::Error;
