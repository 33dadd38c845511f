//! Pure desired state of a tenant control plane: the objects kamaji-rs wants in
//! the management cluster, computed from the TenantControlPlane and what is
//! already stored. Nothing here holds a client; the controllers apply it.

pub mod addons;
pub mod bootstrap;
pub mod certificates;
pub mod datastore;
pub mod deployment;
pub mod derive;
pub mod desired;
pub mod etcd_access;
pub mod konnectivity;
pub mod konnectivity_agent;
pub mod kubeadm_config;
pub mod meta;
pub mod node_credentials;
pub mod ownership;
pub mod rotation;
pub mod service;
pub mod status;
pub mod write_permissions;
