//! The controllers: they read the cluster, call the pure builders of
//! [`crate::tenant`] and [`crate::pki`], and apply the difference.

pub mod certificate_lifecycle;
pub mod context;
pub mod datastore;
pub mod error;
pub mod event_recorder;
pub mod retry;
pub mod tenant_cluster;
pub mod tenant_control_plane;

use std::sync::Arc;

pub use context::{Context, Settings};
pub use error::Error;

/// Cuts `text` to at most `max` bytes (on a character boundary), marking the cut:
/// the API server limits event notes to 1 KiB, conditions are kept readable.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" ...");
    }
    text
}

/// Runs every controller of the operator until shutdown (SIGTERM, Ctrl-C).
/// The manager calls this once it holds the leader lease.
pub async fn run_all(ctx: Arc<Context>) {
    // Each controller is one future; they share the context and stop together.
    let mut controllers = vec![
        tokio::spawn(tenant_control_plane::run(ctx.clone())),
        tokio::spawn(certificate_lifecycle::run(ctx.clone())),
        tokio::spawn(datastore::run(ctx.clone())),
    ];
    if ctx.settings.tenant_cluster_setup {
        controllers.push(tokio::spawn(tenant_cluster::run(ctx.clone())));
    }
    futures::future::join_all(controllers).await;
}
