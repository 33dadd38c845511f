//! Integration tests on the real local cluster (tests/cluster/): one binary so
//! the kube client stack is linked once. Each module is one capability.

#[path = "../support/mod.rs"]
mod support;

mod bad_input;
mod ca_rotation;
mod clock_skew;
mod concurrent_edits;
mod crds;
mod customisation;
mod datastore_status;
mod drift;
mod etcd_auth;
mod helm;
mod kamaji_chart;
mod kamaji_manifests;
mod kamaji_metrics;
mod key_hygiene;
mod konnectivity;
mod leader;
mod lifecycle;
mod ownership;
mod pipeline;
mod rbac;
mod rotation;
mod tenant_apiserver;
mod tenant_cluster;
mod tenant_identity;
mod walkthrough;
mod workloads;
