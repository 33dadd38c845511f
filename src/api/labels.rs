//! Label and annotation keys of the Kamaji compatibility contract (DESIGN.md section 2).
//! Kamaji users select and annotate objects with these exact strings.

/// Every object kamaji-rs creates for a tenant carries `kamaji.clastix.io/project: kamaji`.
pub const PROJECT: &str = "kamaji.clastix.io/project";
/// Value of [`PROJECT`].
pub const PROJECT_VALUE: &str = "kamaji";
/// The owning TenantControlPlane's name.
pub const NAME: &str = "kamaji.clastix.io/name";
/// The object's suffix in `<tcp>-<suffix>`, e.g. `api-server-certificate`.
pub const COMPONENT: &str = "kamaji.clastix.io/component";
/// Which parser the CertificateLifecycle controller applies: `x509` or `kubeconfig`.
pub const CERTIFICATE_LIFECYCLE: &str = "kamaji.clastix.io/certificate_lifecycle_controller";
/// `""` asks for a rotation; after it, the rotation time in RFC 3339.
pub const ROTATE: &str = "certs.kamaji.clastix.io/rotate";
/// On a TenantControlPlane: complete the prepared CA rotation now, without waiting for
/// the worker nodes or the grace period. Removed by the operator once done.
pub const COMPLETE_CA_ROTATION: &str = "certs.kamaji.clastix.io/complete-ca-rotation";
/// On a TenantControlPlane or a Secret: the operator keeps its hands off.
pub const PAUSED: &str = "kamaji.clastix.io/paused";
/// The field manager of every server-side apply kamaji-rs makes.
pub const FIELD_MANAGER: &str = "kamaji-rs";
/// On a TenantControlPlane: the key of `<tcp>-admin-kubeconfig` the operator connects
/// to the tenant with (Kamaji's; default `super-admin.conf`).
pub const KUBECONFIG_SECRET_KEY: &str = "kamaji.clastix.io/kubeconfig-secret-key";
