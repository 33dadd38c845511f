//! `status.credentials.rotation`: where a CA rotation is, in Gardener's terms
//! (`status.credentials.rotation.certificateAuthorities.phase`), and which worker
//! nodes still hold kubelet client certificates of the old CA.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `status.credentials`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsStatus {
    /// Credential rotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<CredentialsRotation>,
}

/// `status.credentials.rotation`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRotation {
    /// The rotation of the tenant CA and the front-proxy CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authorities: Option<CaRotation>,
}

/// Where a two-phase CA rotation is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CaRotationPhase {
    /// A new CA is beside the old one; the control plane rolls out with both trusted.
    Preparing,
    /// Both CAs are trusted, clients hold new-CA certificates, servers still old-CA ones.
    Prepared,
    /// The old CA is retired; the control plane rolls out without it.
    Completing,
    /// One CA again.
    Completed,
}

impl CaRotationPhase {
    /// The phase's name, as in the status.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Preparing => "Preparing",
            Self::Prepared => "Prepared",
            Self::Completing => "Completing",
            Self::Completed => "Completed",
        }
    }
}

/// `status.credentials.rotation.certificateAuthorities`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaRotation {
    /// The phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CaRotationPhase>,
    /// When the last rotation started (prepare).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_initiation_time: Option<Time>,
    /// When its prepare phase had rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_initiation_finished_time: Option<Time>,
    /// When its completion started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_completion_triggered_time: Option<Time>,
    /// When it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_completion_time: Option<Time>,
    /// While prepared: what completion waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// Worker nodes and the CA of their kubelet client certificates, as observed in
    /// the tenant (written by the tenant-side controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeCredentials>,
}

/// Which nodes renewed their kubelet client certificate under the signing CA.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentials {
    /// Serial of the CA these lists are about (the signing CA of the rotation).
    pub signing_ca_serial: String,
    /// Nodes whose kubelet client certificate was issued by that CA.
    #[serde(default)]
    pub renewed: Vec<String>,
    /// Nodes still holding an old-CA kubelet client certificate, as far as observed.
    #[serde(default)]
    pub pending: Vec<String>,
}

impl super::TenantControlPlaneStatus {
    /// `credentials.rotation.certificateAuthorities`, if a CA ever rotated.
    pub fn ca_rotation(&self) -> Option<&CaRotation> {
        self.credentials
            .as_ref()?
            .rotation
            .as_ref()?
            .certificate_authorities
            .as_ref()
    }

    /// The phase of the last CA rotation.
    pub fn ca_rotation_phase(&self) -> Option<CaRotationPhase> {
        self.ca_rotation()?.phase
    }

    /// The nodes seen renewed (or not) under the signing CA during a CA rotation.
    pub fn ca_rotation_nodes(&self) -> Option<&NodeCredentials> {
        self.ca_rotation()?.nodes.as_ref()
    }
}
