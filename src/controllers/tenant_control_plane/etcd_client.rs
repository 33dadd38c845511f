//! A small client of etcd's v3 gRPC API: the calls kamaji-rs makes on an etcd
//! DataStore (users, roles, their permissions, a tenant's keys), over TLS with a
//! client certificate (etcd's `--client-cert-auth`: the certificate's CN is the
//! etcd user).
//!
//! The messages are declared here with `prost` derives, their field numbers those
//! of etcd's `api/etcdserverpb/rpc.proto` and `api/authpb/auth.proto` (a stable,
//! versioned API): a generated client would need `protoc` on every build machine
//! for a dozen messages. etcd's JSON gateway is no alternative: it does not
//! authenticate callers by their certificate's CN.

use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::{
    Code, Request, Status,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take: a reconcile never hangs on an etcd that stopped answering.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS material of a connection, PEM-encoded. Never printed.
pub struct ClientTls<'a> {
    /// CA bundle the etcd serving certificate must chain to.
    pub ca_pem: &'a [u8],
    /// The client certificate (its CN is the etcd user).
    pub certificate_pem: &'a [u8],
    /// Its private key.
    pub key_pem: &'a [u8],
}

/// A failed connection or call. Messages carry etcd's error text and the endpoints,
/// never TLS material.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint accepted a TLS connection.
    #[error("cannot connect to etcd at {endpoints}: {reason}")]
    Connect {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// The last endpoint's error.
        reason: String,
    },
    /// etcd answered a call with an error.
    #[error("etcd {method}: {}", .status.message())]
    Call {
        /// The RPC, e.g. `UserAdd`.
        method: &'static str,
        /// etcd's answer.
        status: Status,
    },
}

impl EtcdError {
    /// etcd's message, for matching its documented errors.
    fn message(&self) -> &str {
        match self {
            EtcdError::Call { status, .. } => status.message(),
            EtcdError::Connect { .. } => "",
        }
    }

    /// `etcdserver: user name not found` / `role name not found`.
    pub fn is_not_found(&self) -> bool {
        self.message().ends_with("name not found")
    }

    /// `etcdserver: user name already exists` / `role name already exists`.
    pub fn is_already_exists(&self) -> bool {
        self.message().ends_with("name already exists")
    }

    /// The caller may not do this (RBAC of an etcd with authentication on).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, EtcdError::Call { status, .. } if status.code() == Code::PermissionDenied)
    }
}

/// A connection to an etcd cluster as one user.
#[derive(Clone)]
pub struct EtcdClient {
    channel: Channel,
}

impl EtcdClient {
    /// Connects to the first of `endpoints` (`https://host:port`) that accepts the
    /// TLS handshake with `tls`.
    pub async fn connect(endpoints: &[String], tls: &ClientTls<'_>) -> Result<Self, EtcdError> {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(tls.ca_pem))
            .identity(Identity::from_pem(tls.certificate_pem, tls.key_pem));
        let mut reason = "no endpoints".to_string();
        for endpoint in endpoints {
            match connect_one(endpoint, config.clone()).await {
                Ok(channel) => return Ok(Self { channel }),
                Err(error) => reason = format!("{endpoint}: {error}"),
            }
        }
        Err(EtcdError::Connect {
            endpoints: endpoints.join(","),
            reason,
        })
    }

    async fn call<Req, Resp>(
        &self,
        method: &'static str,
        path: &'static str,
        request: Req,
    ) -> Result<Resp, EtcdError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let failed = |status| EtcdError::Call { method, status };
        grpc.ready()
            .await
            .map_err(|e| failed(Status::unavailable(e.to_string())))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let mut request = Request::new(request);
        request.set_timeout(CALL_TIMEOUT);
        grpc.unary(request, PathAndQuery::from_static(path), codec)
            .await
            .map(tonic::Response::into_inner)
            .map_err(failed)
    }

    /// Adds a user without a password (it authenticates with its certificate's CN).
    pub async fn user_add(&self, name: &str) -> Result<(), EtcdError> {
        let request = pb::AuthUserAddRequest {
            name: name.into(),
            options: Some(pb::UserAddOptions { no_password: true }),
            ..Default::default()
        };
        self.call::<_, pb::Empty>("UserAdd", "/etcdserverpb.Auth/UserAdd", request)
            .await
            .map(drop)
    }

    /// The roles of a user; `None` when there is no such user.
    pub async fn user_roles(&self, name: &str) -> Result<Option<Vec<String>>, EtcdError> {
        let request = pb::AuthUserGetRequest { name: name.into() };
        match self
            .call::<_, pb::AuthUserGetResponse>("UserGet", "/etcdserverpb.Auth/UserGet", request)
            .await
        {
            Ok(response) => Ok(Some(response.roles)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every user's name.
    pub async fn user_list(&self) -> Result<Vec<String>, EtcdError> {
        self.call::<_, pb::AuthUserListResponse>("UserList", "/etcdserverpb.Auth/UserList", pb::Empty {})
            .await
            .map(|r| r.users)
    }

    /// Deletes a user.
    pub async fn user_delete(&self, name: &str) -> Result<(), EtcdError> {
        let request = pb::AuthUserDeleteRequest { name: name.into() };
        self.call::<_, pb::Empty>("UserDelete", "/etcdserverpb.Auth/UserDelete", request)
            .await
            .map(drop)
    }

    /// Grants `role` to `user` (etcd ignores a role the user already has).
    pub async fn user_grant_role(&self, user: &str, role: &str) -> Result<(), EtcdError> {
        let request = pb::AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        };
        self.call::<_, pb::Empty>("UserGrantRole", "/etcdserverpb.Auth/UserGrantRole", request)
            .await
            .map(drop)
    }

    /// Adds a role without permissions.
    pub async fn role_add(&self, name: &str) -> Result<(), EtcdError> {
        let request = pb::AuthRoleAddRequest { name: name.into() };
        self.call::<_, pb::Empty>("RoleAdd", "/etcdserverpb.Auth/RoleAdd", request)
            .await
            .map(drop)
    }

    /// The key ranges a role may read and write; `None` when there is no such role.
    pub async fn role_permissions(&self, name: &str) -> Result<Option<Vec<Permission>>, EtcdError> {
        let request = pb::AuthRoleGetRequest { role: name.into() };
        match self
            .call::<_, pb::AuthRoleGetResponse>("RoleGet", "/etcdserverpb.Auth/RoleGet", request)
            .await
        {
            Ok(response) => Ok(Some(response.perm.into_iter().map(Permission::from).collect())),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every role's name.
    pub async fn role_list(&self) -> Result<Vec<String>, EtcdError> {
        self.call::<_, pb::AuthRoleListResponse>("RoleList", "/etcdserverpb.Auth/RoleList", pb::Empty {})
            .await
            .map(|r| r.roles)
    }

    /// Deletes a role (and with it the users' grants of it).
    pub async fn role_delete(&self, name: &str) -> Result<(), EtcdError> {
        let request = pb::AuthRoleDeleteRequest { role: name.into() };
        self.call::<_, pb::Empty>("RoleDelete", "/etcdserverpb.Auth/RoleDelete", request)
            .await
            .map(drop)
    }

    /// Lets `role` read and write the keys in `[key, range_end)`.
    pub async fn role_grant_readwrite(
        &self,
        role: &str,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        let request = pb::AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(pb::Permission {
                perm_type: pb::READWRITE,
                key: key.to_vec(),
                range_end: range_end.to_vec(),
            }),
        };
        self.call::<_, pb::Empty>(
            "RoleGrantPermission",
            "/etcdserverpb.Auth/RoleGrantPermission",
            request,
        )
        .await
        .map(drop)
    }

    /// Turns authentication on (the `root` user with the `root` role must exist).
    pub async fn auth_enable(&self) -> Result<(), EtcdError> {
        self.call::<_, pb::Empty>("AuthEnable", "/etcdserverpb.Auth/AuthEnable", pb::Empty {})
            .await
            .map(drop)
    }

    /// How many keys `[key, range_end)` holds.
    pub async fn count(&self, key: &[u8], range_end: &[u8]) -> Result<i64, EtcdError> {
        let request = pb::RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            count_only: true,
        };
        self.call::<_, pb::RangeResponse>("Range", "/etcdserverpb.KV/Range", request)
            .await
            .map(|r| r.count)
    }

    /// Deletes the keys in `[key, range_end)`; returns how many there were.
    pub async fn delete_range(&self, key: &[u8], range_end: &[u8]) -> Result<i64, EtcdError> {
        let request = pb::DeleteRangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
        };
        self.call::<_, pb::DeleteRangeResponse>("DeleteRange", "/etcdserverpb.KV/DeleteRange", request)
            .await
            .map(|r| r.deleted)
    }
}

async fn connect_one(endpoint: &str, tls: ClientTlsConfig) -> Result<Channel, String> {
    Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| error_chain(&e))
}

/// An error with its sources (tonic's own message is only "transport error").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A key range a role may read and write (or only one of the two).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// etcd's `authpb.Permission.Type`: 0 read, 1 write, 2 readwrite.
    pub perm_type: i32,
    /// First key.
    pub key: Vec<u8>,
    /// End of the range (exclusive); empty for the single key.
    pub range_end: Vec<u8>,
}

impl Permission {
    /// Read and write on `[key, range_end)`.
    pub fn readwrite(key: &[u8], range_end: &[u8]) -> Self {
        Self {
            perm_type: pb::READWRITE,
            key: key.to_vec(),
            range_end: range_end.to_vec(),
        }
    }
}

impl From<pb::Permission> for Permission {
    fn from(p: pb::Permission) -> Self {
        Self {
            perm_type: p.perm_type,
            key: p.key,
            range_end: p.range_end,
        }
    }
}

/// The messages used, with etcd's field numbers. Fields a call does not need are
/// left out: protobuf skips unknown fields and defaults missing ones.
mod pb {
    /// `authpb.Permission.Type.READWRITE`.
    pub const READWRITE: i32 = 2;

    /// Any message whose content is not read (requests without fields, responses
    /// that only carry a header).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UserAddOptions {
        #[prost(bool, tag = "1")]
        pub no_password: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthUserAddRequest {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub password: String,
        #[prost(message, optional, tag = "3")]
        pub options: Option<UserAddOptions>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthUserGetRequest {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthUserGetResponse {
        #[prost(string, repeated, tag = "2")]
        pub roles: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthUserListResponse {
        #[prost(string, repeated, tag = "2")]
        pub users: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthUserDeleteRequest {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthUserGrantRoleRequest {
        #[prost(string, tag = "1")]
        pub user: String,
        #[prost(string, tag = "2")]
        pub role: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthRoleAddRequest {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthRoleGetRequest {
        #[prost(string, tag = "1")]
        pub role: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Permission {
        #[prost(int32, tag = "1")]
        pub perm_type: i32,
        #[prost(bytes = "vec", tag = "2")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub range_end: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthRoleGetResponse {
        #[prost(message, repeated, tag = "2")]
        pub perm: Vec<Permission>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthRoleListResponse {
        #[prost(string, repeated, tag = "2")]
        pub roles: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthRoleDeleteRequest {
        #[prost(string, tag = "1")]
        pub role: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthRoleGrantPermissionRequest {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub perm: Option<Permission>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub range_end: Vec<u8>,
        #[prost(bool, tag = "9")]
        pub count_only: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeResponse {
        #[prost(int64, tag = "4")]
        pub count: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeleteRangeRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub range_end: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeleteRangeResponse {
        #[prost(int64, tag = "2")]
        pub deleted: i64,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::pb;

    #[test]
    fn a_role_grant_encodes_as_etcd_expects() {
        let request = pb::AuthRoleGrantPermissionRequest {
            name: "r".into(),
            perm: Some(pb::Permission {
                perm_type: pb::READWRITE,
                key: b"/a/".to_vec(),
                range_end: b"/a0".to_vec(),
            }),
        };
        // name = 1 ("r"), perm = 2 { permType = 1 (2), key = 2, range_end = 3 }.
        let expected = [
            0x0a, 1, b'r', 0x12, 12, 0x08, 2, 0x12, 3, b'/', b'a', b'/', 0x1a, 3, b'/', b'a', b'0',
        ];
        assert_eq!(request.encode_to_vec(), expected);
    }

    #[test]
    fn a_user_without_password_sets_the_option() {
        let request = pb::AuthUserAddRequest {
            name: "u".into(),
            options: Some(pb::UserAddOptions { no_password: true }),
            ..Default::default()
        };
        assert_eq!(request.encode_to_vec(), [0x0a, 1, b'u', 0x1a, 2, 0x08, 1]);
    }
}
