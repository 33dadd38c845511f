//! Development tools: running a tenant's control plane on this machine from the
//! operator's own Deployment and Secrets (the quick start and the integration
//! tests share it). Hidden from `kamaji --help`.

pub mod control_plane;
pub mod pod;
