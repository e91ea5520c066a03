//! The administration service: the REST API that `bramble admin` and the web console drive.
//! Every route under `/api/v1` passes [`access::guard`]: it needs a bearer token (the token
//! file's, made on first start and kept in the data directory as `admin-token`, readable by its
//! owner only, next to `admin.json`, which tells a local `bramble admin` where to connect; or an
//! administrator's API token) or a console session, and the permission the endpoint asks for;
//! every change, command and refusal goes to the audit log.
//!
//! Owns: the HTTP surface and its JSON shapes. Must not touch: SQL (only `bramble-store`),
//! the relay link, payloads.

pub mod access;
pub mod access_api;
mod api;
mod console;
pub mod directory_api;
mod error;
pub mod openapi;
pub mod pages;
mod policy_api;
mod sync_api;
mod users;
pub mod views;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bramble_proto::SrpId;
use bramble_store::Store;

pub use api::{ActivationPasswordView, ClientFile, ComponentView, StatusView, UserView};
pub use error::ApiError;
pub use users::UserServices;

use crate::router::Router;
use crate::{ServerConfig, ServerError};

/// What every handler sees.
#[derive(Debug)]
pub struct AdminState {
    /// The configuration database.
    pub store: Store,
    /// The bearer token.
    pub token: String,
    /// The relay link, for the status endpoint.
    pub router: Router,
    /// The server's SRP id.
    pub srp: SrpId,
    /// The messaging agent's mailbox watchers, told about users added and deleted.
    pub watchers: Option<std::sync::Arc<crate::messaging::mailbox::Watchers>>,
    /// Per-user mailbox passwords.
    pub credentials: Option<std::sync::Arc<crate::messaging::credentials::Credentials>>,
    /// The policy service, told about changes to policies, groups, software and commands.
    pub policy: Option<crate::policy::PolicyHandle>,
    /// The synchronization service, told about changed settings.
    pub sync: Option<crate::sync::SyncHandle>,
    /// `[server.sync]`, for resolving a user's settings.
    pub sync_config: crate::sync::SyncConfig,
    /// Failed console logins, per account.
    pub logins: access_api::LoginThrottle,
    /// The company directory, when `[server.directory]` names one.
    pub directory: Option<std::sync::Arc<crate::directory::DirectoryService>>,
}

impl AdminState {
    /// The state of one administration service.
    pub fn new(store: Store, token: String, router: Router, srp: SrpId) -> AdminState {
        AdminState {
            store,
            token,
            router,
            srp,
            watchers: None,
            credentials: None,
            policy: None,
            sync: None,
            sync_config: crate::sync::SyncConfig::default(),
            logins: access_api::LoginThrottle::default(),
            directory: None,
        }
    }

    /// With the synchronization service and its settings.
    pub fn with_sync(
        mut self,
        h: crate::sync::SyncHandle,
        cfg: crate::sync::SyncConfig,
    ) -> AdminState {
        self.sync = Some(h);
        self.sync_config = cfg;
        self
    }

    /// With the company directory users are added from.
    pub fn with_directory(
        mut self,
        d: Option<std::sync::Arc<crate::directory::DirectoryService>>,
    ) -> AdminState {
        self.directory = d;
        self
    }

    /// With the policy service to tell about changes.
    pub fn with_policy(mut self, p: crate::policy::PolicyHandle) -> AdminState {
        self.policy = Some(p);
        self
    }

    /// With the per-user mailbox passwords, so the API can set them.
    pub fn with_credentials(
        mut self,
        c: std::sync::Arc<crate::messaging::credentials::Credentials>,
    ) -> AdminState {
        self.credentials = Some(c);
        self
    }

    /// With the mailbox watchers to tell about users added and deleted.
    pub fn with_watchers(
        mut self,
        w: std::sync::Arc<crate::messaging::mailbox::Watchers>,
    ) -> AdminState {
        self.watchers = Some(w);
        self
    }
}

pub use api::app;

/// A time (unix ms) as the API shows it: RFC 3339 in UTC, to the millisecond.
pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The token file in effect.
pub fn token_path(cfg: &ServerConfig) -> PathBuf {
    cfg.admin
        .token_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("admin-token"))
}

/// The file telling a local `bramble admin` where the API is and which token to use.
pub fn client_file_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.json")
}

/// Reads the bearer token, or makes one (32 random bytes, hex) on first start.
///
/// # Errors
/// When the file cannot be read or written, or is empty.
pub fn load_or_create_token(cfg: &ServerConfig) -> Result<String, ServerError> {
    let path = token_path(cfg);
    match std::fs::read_to_string(&path) {
        Ok(t) => {
            let t = t.trim().to_owned();
            if t.len() < 16 {
                return Err(ServerError::Config(format!(
                    "{} holds no usable token (at least 16 characters); delete it to make a new one",
                    path.display()
                )));
            }
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = hex::encode(rand::random::<[u8; 32]>());
            write_private(&path, token.as_bytes())?;
            tracing::info!(file = %path.display(), "made a new administration token");
            Ok(token)
        }
        Err(source) => Err(ServerError::File { path, source }),
    }
}

/// Writes `admin.json` (URL and token) into the data directory, readable by its owner only.
///
/// # Errors
/// When it cannot be written.
pub fn write_client_file(
    cfg: &ServerConfig,
    addr: SocketAddr,
    token: &str,
) -> Result<(), ServerError> {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    let file = ClientFile {
        url: format!("http://{host}:{}", addr.port()),
        token: token.to_owned(),
    };
    let body = serde_json::to_vec_pretty(&file).map_err(|e| ServerError::Config(e.to_string()))?;
    let path = client_file_path(&cfg.data_dir);
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, &body)?;
    std::fs::rename(&tmp, &path).map_err(|source| ServerError::File { path, source })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::File {
            path: dir.to_owned(),
            source,
        })?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(|source| ServerError::File {
        path: path.to_owned(),
        source,
    })?;
    f.write_all(bytes).map_err(|source| ServerError::File {
        path: path.to_owned(),
        source,
    })
}
