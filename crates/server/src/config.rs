//! The server's configuration: the `[server]` (with `[server.directory]` and the others), `[admin]` and `[uplink]` sections of the
//! configuration file, with defaults for the embedded set-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where the administration service listens by default (loopback only).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:3180";

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the server keeps its files (database, admin token, the embedded relay's files).
    pub data_dir: PathBuf,
    /// The configuration database: `sqlite://…` or `postgres://…`; default: a SQLite file in
    /// the data directory.
    pub database: Option<String>,
    /// The administration service.
    pub admin: AdminConfig,
    /// The relay to connect to. Absent: `bramble serve` runs a relay in-process.
    pub uplink: Option<UplinkConfig>,
    /// The dispatcher.
    pub dispatcher: DispatcherConfig,
    /// The mail store the messaging agent watches.
    pub mail: MailConfig,
    /// The activation handshake.
    pub activation: crate::messaging::activation::ActivationConfig,
    /// The policy service: IT policy resends, IT admin commands, software deployment.
    pub policy: crate::policy::PolicyConfig,
    /// The synchronization service: organizer data against CalDAV/CardDAV, wireless backup.
    pub sync: crate::sync::SyncConfig,
    /// The company directory (LDAP) users are added from; absent: users are added by hand.
    pub directory: Option<crate::directory::DirectoryConfig>,
    /// First reconnection delay after the relay link drops.
    #[serde(with = "duration_text")]
    pub uplink_backoff_min: Duration,
    /// Longest reconnection delay.
    #[serde(with = "duration_text")]
    pub uplink_backoff_max: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("bramble-data"),
            database: None,
            admin: AdminConfig::default(),
            uplink: None,
            dispatcher: DispatcherConfig::default(),
            mail: MailConfig::default(),
            activation: Default::default(),
            policy: Default::default(),
            sync: Default::default(),
            directory: None,
            uplink_backoff_min: Duration::from_millis(250),
            uplink_backoff_max: Duration::from_secs(30),
        }
    }
}

impl ServerConfig {
    /// Defaults with the data directory set.
    pub fn with_data_dir(dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data_dir: dir.into(),
            ..ServerConfig::default()
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("bramble.db").display()))
    }
}

/// The administration service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the REST API listens.
    pub listen: SocketAddr,
    /// A file holding the API's bearer token; default `admin-token` in the data directory,
    /// made on first start.
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: DEFAULT_ADMIN_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 3180))),
            token_file: None,
        }
    }
}

/// The relay this server connects out to, under its SRP identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// `host:port` of the relay's server port (3101 by default).
    pub relay: String,
    /// The relay certificate's SHA-256 fingerprint; absent: trusted on first use and pinned.
    pub fingerprint: Option<String>,
    /// The SRP id, `S` and 8 digits.
    pub srp_id: String,
    /// The SRP key. Prefer `srp_key_file` or `BRAMBLE_UPLINK__SRP_KEY`.
    pub srp_key: Option<String>,
    /// A file holding the SRP key.
    pub srp_key_file: Option<PathBuf>,
}

/// Where users' mailboxes are (`[server.mail]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// Push mail: send a message to the device again when it has not confirmed it within this
    /// long (BES: four hours). Default "4h".
    #[serde(with = "duration_text")]
    pub resend_after: Duration,
    /// An IMAP server (`host:port`); absent: the embedded Maildir store.
    pub imap: Option<String>,
    /// TLS to the IMAP server: "none" (loopback only), "starttls" or "tls".
    pub imap_tls: Option<String>,
    /// The service account that reaches every mailbox (Dovecot master user: logged in as
    /// `user@domain*service`).
    pub service_user: Option<String>,
    /// Log in to each mailbox as its user, with the password the administrator set for the
    /// user (`bramble admin user mail-password`), kept encrypted; instead of a service account.
    pub per_user: bool,
    /// Its password. Prefer `service_password_file` or `BRAMBLE_SERVER__MAIL__SERVICE_PASSWORD`.
    pub service_password: Option<String>,
    /// A file holding the service account's password.
    pub service_password_file: Option<PathBuf>,
    /// The Maildir root of the embedded store; default `mail` in the data directory.
    pub maildir: Option<PathBuf>,
    /// Where mail sent from devices goes: an SMTP server, `host:port`, e.g.
    /// `[server.mail] smtp = "127.0.0.1:25"` (plain SMTP, no TLS yet: loopback or a trusted
    /// network). Absent while `imap` is set: a configuration error (mail from devices would
    /// have nowhere to go). Absent on the embedded default: delivered locally, to this
    /// server's own users only.
    pub smtp: Option<String>,
    /// Where the mail server's push hook (Dovecot push_notification, Lua driver) posts its
    /// events, e.g. `127.0.0.1:3181`: new mail is then seen in milliseconds instead of after
    /// IMAP IDLE's 500 ms. Absent: IDLE only.
    pub push_listen: Option<std::net::SocketAddr>,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            resend_after: Duration::from_secs(4 * 3600),
            imap: None,
            imap_tls: None,
            service_user: None,
            per_user: false,
            service_password: None,
            service_password_file: None,
            maildir: None,
            push_listen: None,
            smtp: None,
        }
    }
}

impl MailConfig {
    /// The forwarding agent's settings.
    pub fn agent_config(&self) -> crate::messaging::mail::agent::AgentConfig {
        crate::messaging::mail::agent::AgentConfig {
            resend_after: self.resend_after,
            // often enough that a short resend_after (tests) is kept, at most every 30 s
            check_every: (self.resend_after / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(30)),
            ..Default::default()
        }
    }

    /// The Maildir root in effect for `data_dir`.
    pub fn maildir_root(&self, data_dir: &std::path::Path) -> PathBuf {
        self.maildir
            .clone()
            .unwrap_or_else(|| data_dir.join("mail"))
    }
}

/// The dispatcher.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherConfig {
    /// Worker tasks; each owns the sessions of the devices hashed to it.
    pub shards: usize,
    /// Transmit sequence numbers reserved in the database at a time, per device.
    pub seq_block: u64,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            shards: 4,
            seq_block: 64,
        }
    }
}

/// `Duration` as humantime text ("250ms", "30s") in configuration files.
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}
