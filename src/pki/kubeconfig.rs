//! Kubeconfig files: build one with embedded CA, client certificate and key (kubeadm's
//! layout and naming), and parse one (YAML or JSON, as kubectl accepts both) down to
//! every user's client certificate.
//!
//! The model is kube's ([`kube::config::Kubeconfig`], client-go's `clientcmd` types with
//! kubectl's field names, unknown fields kept): it is maintained upstream and already a
//! dependency. This module adds what kamaji-rs does with it.

use std::ops::{Deref, DerefMut};

use base64::Engine as _;
pub use kube::config::{AuthInfo, Cluster, Context, NamedAuthInfo, NamedCluster, NamedContext};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

/// A kubeconfig (`apiVersion: v1`, `kind: Config`): kube's model, read through `Deref`
/// (`clusters`, `auth_infos` for `users`, `contexts`, `current_context`), with the
/// constructors and readers below. `Debug` shows no key: kube holds `client-key-data`
/// (and tokens, passwords) as [`SecretString`], which `Debug` redacts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Kubeconfig(pub kube::config::Kubeconfig);

impl Deref for Kubeconfig {
    type Target = kube::config::Kubeconfig;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Kubeconfig {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<kube::config::Kubeconfig> for Kubeconfig {
    fn from(kubeconfig: kube::config::Kubeconfig) -> Self {
        Self(kubeconfig)
    }
}

impl From<Kubeconfig> for kube::config::Kubeconfig {
    fn from(kubeconfig: Kubeconfig) -> Self {
        kubeconfig.0
    }
}

/// What is wrong with a kubeconfig. Never contains its content: YAML errors carry
/// only a position, because parser messages quote the offending text.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KubeconfigError {
    /// Not YAML/JSON, or not shaped like a kubeconfig.
    #[error("not a valid kubeconfig (YAML/JSON error at line {line}, column {column})")]
    Malformed {
        /// 1-based line of the error (0 when unknown).
        line: u64,
        /// 1-based column of the error (0 when unknown).
        column: u64,
    },
    /// No `users` entry.
    #[error("the kubeconfig has no users")]
    WithoutUsers,
    /// A user has no embedded client certificate.
    #[error("user {user:?} has no embedded client certificate (client-certificate-data)")]
    UserWithoutClientCertificate {
        /// The user's name.
        user: String,
    },
    /// An embedded field is not base64.
    #[error("user or cluster {name:?}: {field} is not valid base64")]
    InvalidBase64 {
        /// The user or cluster name.
        name: String,
        /// The field (`client-certificate-data`, ...).
        field: &'static str,
    },
    /// Serialising failed (should not happen).
    #[error("serialising the kubeconfig failed")]
    Serialize,
}

/// The embedded credentials of one user, decoded from base64 (still PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The user's name.
    pub user: String,
    /// The PEM client certificate.
    pub certificate_pem: Vec<u8>,
    /// The PEM client key, when present.
    pub key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What goes into a generated kubeconfig. `Debug` leaves the client key out.
#[derive(Clone, Copy)]
pub struct KubeconfigParams<'a> {
    /// Cluster name (kubeadm: the cluster name; kamaji-rs: the tenant name).
    pub cluster_name: &'a str,
    /// API server URL.
    pub server: &'a str,
    /// PEM CA bundle the client trusts the server with.
    pub ca_pem: &'a str,
    /// User name (kubeadm: the certificate's CN, e.g. `kubernetes-admin`).
    pub user: &'a str,
    /// PEM client certificate.
    pub client_certificate_pem: &'a str,
    /// PEM client key.
    pub client_key_pem: &'a str,
}

impl std::fmt::Debug for KubeconfigParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeconfigParams")
            .field("cluster_name", &self.cluster_name)
            .field("server", &self.server)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(data: &str, name: &str, field: &'static str) -> Result<Vec<u8>, KubeconfigError> {
    // client-go decodes with the standard alphabet; tolerate surrounding whitespace only.
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| KubeconfigError::InvalidBase64 {
            name: name.to_owned(),
            field,
        })
}

/// What parsing one kubeconfig may cost. The parser's defaults (a million events)
/// are sized for any YAML; a kubeconfig is a few dozen nodes, and one in a Secret is
/// parsed again at every reconcile. Fuzzing found that a 362-byte alias bomb
/// (`tests/fixtures/malformed/kubeconfig-alias-bomb.yaml`) spent the default
/// budget before it was refused, seconds of CPU per read; these limits refuse it
/// after a few thousand events and still leave a kubeconfig of hundreds of
/// contexts room.
fn kubeconfig_budget() -> serde_saphyr::Budget {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 50_000;
    budget.max_nodes = 20_000;
    budget.max_aliases = 100;
    budget.max_anchors = 100;
    budget.max_documents = 1;
    budget
}

impl Kubeconfig {
    /// The kubeconfig kubeadm writes: one cluster, one user, one context named
    /// `<user>@<cluster>`, selected as current.
    pub fn new(params: &KubeconfigParams<'_>) -> Self {
        let context = format!("{}@{}", params.user, params.cluster_name);
        Self(kube::config::Kubeconfig {
            api_version: Some("v1".into()),
            clusters: vec![NamedCluster {
                name: params.cluster_name.to_owned(),
                cluster: Some(Cluster {
                    certificate_authority_data: Some(b64(params.ca_pem.as_bytes())),
                    server: Some(params.server.to_owned()),
                    ..Cluster::default()
                }),
                ..NamedCluster::default()
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: Some(Context {
                    cluster: params.cluster_name.to_owned(),
                    user: Some(params.user.to_owned()),
                    ..Context::default()
                }),
                ..NamedContext::default()
            }],
            current_context: Some(context),
            kind: Some("Config".into()),
            auth_infos: vec![NamedAuthInfo {
                name: params.user.to_owned(),
                auth_info: Some(AuthInfo {
                    client_certificate_data: Some(b64(params.client_certificate_pem.as_bytes())),
                    client_key_data: Some(SecretString::from(b64(params.client_key_pem.as_bytes()))),
                    ..AuthInfo::default()
                }),
                ..NamedAuthInfo::default()
            }],
            ..kube::config::Kubeconfig::default()
        })
    }

    /// Parses YAML or JSON, within [`kubeconfig_budget`].
    pub fn parse(bytes: &[u8]) -> Result<Self, KubeconfigError> {
        let mut options = serde_saphyr::Options::default();
        // Snippets would copy the document (and its keys) into the error.
        options.with_snippet = false;
        options.budget = Some(kubeconfig_budget());
        serde_saphyr::from_slice_with_options(bytes, options).map_err(|err| {
            let (line, column) = err.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
            KubeconfigError::Malformed { line, column }
        })
    }

    /// The YAML document.
    pub fn to_yaml(&self) -> Result<String, KubeconfigError> {
        serde_saphyr::to_string(&self.0).map_err(|_| KubeconfigError::Serialize)
    }

    /// Every user's embedded client certificate (and key). Errors when there are no
    /// users, or a user has no embedded certificate: a kubeconfig under certificate
    /// lifecycle management must authenticate with certificates only.
    pub fn client_credentials(&self) -> Result<Vec<ClientCredentials>, KubeconfigError> {
        if self.auth_infos.is_empty() {
            return Err(KubeconfigError::WithoutUsers);
        }
        self.auth_infos
            .iter()
            .map(|named| {
                let auth_info = named.auth_info.as_ref();
                let data = auth_info
                    .and_then(|a| a.client_certificate_data.as_deref())
                    .filter(|d| !d.trim().is_empty())
                    .ok_or_else(|| KubeconfigError::UserWithoutClientCertificate {
                        user: named.name.clone(),
                    })?;
                let certificate_pem = unb64(data, &named.name, "client-certificate-data")?;
                let key_pem = auth_info
                    .and_then(|a| a.client_key_data.as_ref())
                    .map(|k| unb64(k.expose_secret(), &named.name, "client-key-data"))
                    .transpose()?;
                Ok(ClientCredentials {
                    user: named.name.clone(),
                    certificate_pem,
                    key_pem,
                })
            })
            .collect()
    }

    /// The cluster of the current context (or the only/first cluster).
    pub fn current_cluster(&self) -> Option<&NamedCluster> {
        let by_context = self
            .current()
            .and_then(|ctx| self.clusters.iter().find(|c| c.name == ctx.cluster));
        by_context.or_else(|| self.clusters.first())
    }

    /// The API server URL of the current cluster.
    pub fn current_server(&self) -> Option<&str> {
        self.current_cluster()?.cluster.as_ref()?.server.as_deref()
    }

    /// The user of the current context (or the only/first user).
    pub fn current_user(&self) -> Option<&NamedAuthInfo> {
        let by_context = self
            .current()
            .and_then(|ctx| ctx.user.as_deref())
            .and_then(|user| self.auth_infos.iter().find(|u| u.name == user));
        by_context.or_else(|| self.auth_infos.first())
    }

    /// The decoded CA bundle of the current cluster, when embedded.
    pub fn current_ca_pem(&self) -> Result<Option<Vec<u8>>, KubeconfigError> {
        self.current_cluster()
            .and_then(|c| {
                c.cluster
                    .as_ref()?
                    .certificate_authority_data
                    .as_deref()
                    .map(|d| (c.name.as_str(), d))
            })
            .map(|(name, data)| unb64(data, name, "certificate-authority-data"))
            .transpose()
    }

    fn current(&self) -> Option<&Context> {
        let name = self.current_context.as_deref()?;
        self.contexts
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.context.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Kubeconfig {
        Kubeconfig::new(&KubeconfigParams {
            cluster_name: "k8s-133",
            server: "https://10.0.0.1:6443",
            ca_pem: "CA PEM\n",
            user: "kubernetes-admin",
            client_certificate_pem: "CERT PEM\n",
            client_key_pem: "KEY PEM\n",
        })
    }

    /// The whole document, keys included: kube's types have no `PartialEq`.
    fn as_json(kubeconfig: &Kubeconfig) -> serde_json::Value {
        serde_json::to_value(kubeconfig).unwrap()
    }

    #[test]
    fn builds_kubeadm_shaped_yaml() {
        let yaml = sample().to_yaml().unwrap();
        for line in [
            "apiVersion: v1",
            "kind: Config",
            "current-context: kubernetes-admin@k8s-133",
            "- name: k8s-133",
            "    server: https://10.0.0.1:6443",
            "    certificate-authority-data: Q0EgUEVNCg==",
            "    client-certificate-data: Q0VSVCBQRU0K",
            "    client-key-data: S0VZIFBFTQo=",
            "    user: kubernetes-admin",
            "    cluster: k8s-133",
        ] {
            assert!(yaml.lines().any(|l| l == line), "missing {line:?} in\n{yaml}");
        }
    }

    #[test]
    fn parse_round_trips_and_decodes() {
        let kc = sample();
        let parsed = Kubeconfig::parse(kc.to_yaml().unwrap().as_bytes()).unwrap();
        assert_eq!(as_json(&parsed), as_json(&kc));
        let creds = parsed.client_credentials().unwrap();
        assert_eq!(creds.len(), 1);
        assert_eq!(creds[0].user, "kubernetes-admin");
        assert_eq!(creds[0].certificate_pem, b"CERT PEM\n");
        assert_eq!(creds[0].key_pem.as_deref(), Some(&b"KEY PEM\n"[..]));
        assert_eq!(parsed.current_ca_pem().unwrap().unwrap(), b"CA PEM\n");
        assert_eq!(parsed.current_cluster().unwrap().name, "k8s-133");
        assert_eq!(parsed.current_server(), Some("https://10.0.0.1:6443"));
        assert_eq!(parsed.current_user().unwrap().name, "kubernetes-admin");
    }

    /// Fuzzing regression: a kubeconfig whose aliases expand past the budget is
    /// refused, although it is a well-formed kubeconfig that the parser's default
    /// budget accepts (2 * 10^5 scalars in an extension, out of 208 bytes).
    #[test]
    fn a_kubeconfig_expanding_past_the_budget_is_refused() {
        let levels = ["a", "b", "c", "d"];
        let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        for pair in levels.windows(2) {
            let list = vec![format!("*{}", pair[0]); 10].join(",");
            bomb.push_str(&format!("{}: &{} [{list}]\n", pair[1], pair[1]));
        }
        bomb.push_str(
            "apiVersion: v1\nkind: Config\nextensions:\n- name: bomb\n  extension: [*d, *d, *d, *d, *d]\n",
        );
        let unbudgeted: Result<kube::config::Kubeconfig, _> = serde_saphyr::from_str(&bomb);
        assert!(
            unbudgeted.is_ok(),
            "the parser's default budget accepts it: {unbudgeted:?}"
        );
        assert!(matches!(
            Kubeconfig::parse(bomb.as_bytes()),
            Err(KubeconfigError::Malformed { .. })
        ));
        assert!(Kubeconfig::parse(sample().to_yaml().unwrap().as_bytes()).is_ok());
    }

    #[test]
    fn parses_json_as_kubectl_does() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert_eq!(
            as_json(&Kubeconfig::parse(json.as_bytes()).unwrap()),
            as_json(&sample())
        );
    }

    #[test]
    fn users_without_certificates_are_errors() {
        let no_users = Kubeconfig::parse(b"apiVersion: v1\nkind: Config\nusers: []\n").unwrap();
        assert_eq!(no_users.client_credentials(), Err(KubeconfigError::WithoutUsers));
        let null_users = Kubeconfig::parse(b"apiVersion: v1\nusers:\n").unwrap();
        assert_eq!(
            null_users.client_credentials(),
            Err(KubeconfigError::WithoutUsers)
        );
        let token = Kubeconfig::parse(b"users:\n- name: bob\n  user:\n    token: abc\n").unwrap();
        assert_eq!(
            token.client_credentials(),
            Err(KubeconfigError::UserWithoutClientCertificate { user: "bob".into() })
        );
        let bad =
            Kubeconfig::parse(b"users:\n- name: eve\n  user:\n    client-certificate-data: '%%%'\n").unwrap();
        assert!(matches!(
            bad.client_credentials(),
            Err(KubeconfigError::InvalidBase64 { .. })
        ));
    }

    #[test]
    fn yaml_errors_carry_no_content() {
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA==";
        let doc = format!("users:\n- name: x\n  user:\n    client-key-data: [{secret}\n");
        let err = Kubeconfig::parse(doc.as_bytes()).unwrap_err();
        assert!(matches!(err, KubeconfigError::Malformed { .. }));
        assert!(!err.to_string().contains(secret));
        assert!(Kubeconfig::parse(&[0xff, 0xfe, 0x00, 0x01]).is_err());
    }

    #[test]
    fn debug_hides_credentials() {
        let debug = format!("{:?}", sample());
        assert!(!debug.contains("S0VZIFBFTQo="), "{debug}");
        assert!(!debug.contains("KEY PEM"), "{debug}");
    }
}
