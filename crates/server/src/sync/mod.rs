//! The synchronization service (seed 002, "BlackBerry Synchronization Service"; activation
//! steps 13-15): the organizer databases (calendar, contacts, tasks, memos) of every user
//! against the organization's CalDAV/CardDAV server, and wireless backup of device settings.
//!
//! - [`dav`]: the CalDAV/CardDAV client.
//! - [`settings`]: how each database is synchronized for a user (the user's own setting, then
//!   their first group's by name, then `[server.sync]`), with the trace of which won.
//! - [`service`]: the task: the configuration a device asks for, the slow synchronization at
//!   activation (no deletes; the device's records merged, or replaced when the phone user
//!   chose to overwrite), then incremental synchronization both ways with the conflict rules,
//!   and wireless backup and restore.
//!
//! Owns: what the server knows of each record (its href and versions on both sides, never its
//! content: that lives on the CalDAV/CardDAV server and on the device), through
//! `bramble-store`. Must not touch: sealing (the dispatcher's), mailboxes, IT policy.

pub mod dav;
mod service;
pub mod settings;

use std::time::Duration;

pub use service::{SyncHandle, SyncService};
pub use settings::{Conflict, DbSetting, Direction, Resolved};

/// Settings of the synchronization service (`[server.sync]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// The CalDAV/CardDAV server's base URL (`https://dav.example.com/`). Without one, no
    /// organizer data is synchronized and activations complete without a slow sync.
    pub url: Option<String>,
    /// A service account that may read and write every user's collections (as BES's service
    /// account reached every mailbox). Without one, each user logs in with their own address
    /// and the mailbox password kept for them (`bramble admin user mail-password`).
    pub service_user: Option<String>,
    /// The service account's password.
    pub service_password: Option<String>,
    /// Where a user's collections live on the server, `{email}` standing for the address;
    /// used with the service account. Default `/{email}/` (Radicale's layout).
    pub home: String,
    /// How often each user's collections are looked at for changes made on the server.
    /// Default 60 s.
    #[serde(with = "crate::config::duration_text")]
    pub interval: Duration,
    /// How long to wait for a device's answer to a batch of records before sending it again.
    /// Default 2 min.
    #[serde(with = "crate::config::duration_text")]
    pub retry_after: Duration,
    /// The databases synchronized for a user with no setting of their own or their groups'.
    /// Default: all four.
    pub databases: Vec<String>,
    /// Their direction: `bidirectional` (default) or `server-to-device`.
    pub direction: String,
    /// Their conflict rule: `server-wins` (default), `device-wins` or `newest-wins`.
    pub conflict: String,
    /// Wireless backup of device settings (default on).
    pub backup: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            url: None,
            service_user: None,
            service_password: None,
            home: "/{email}/".into(),
            interval: Duration::from_secs(60),
            retry_after: Duration::from_secs(120),
            databases: bramble_organizer::Database::ALL
                .iter()
                .map(|d| d.as_str().to_owned())
                .collect(),
            direction: "bidirectional".into(),
            conflict: "server-wins".into(),
            backup: true,
        }
    }
}

impl SyncConfig {
    /// Whether organizer data is synchronized at all.
    pub fn enabled(&self) -> bool {
        self.url.as_deref().is_some_and(|u| !u.trim().is_empty())
    }

    /// What is wrong with these settings, in an administrator's words.
    pub fn check(&self) -> Result<(), String> {
        for d in &self.databases {
            if bramble_organizer::Database::from_name(d).is_none() {
                return Err(format!(
                    "[server.sync] databases: {d:?} is not an organizer database (calendar, contacts, tasks, memos)"
                ));
            }
        }
        Direction::from_name(&self.direction).ok_or_else(|| {
            format!(
                "[server.sync] direction: {:?} is neither bidirectional nor server-to-device",
                self.direction
            )
        })?;
        Conflict::from_name(&self.conflict).ok_or_else(|| {
            format!(
                "[server.sync] conflict: {:?} is not server-wins, device-wins or newest-wins",
                self.conflict
            )
        })?;
        if self.service_user.is_some() != self.service_password.is_some() {
            return Err("[server.sync] service_user and service_password go together".into());
        }
        if !self.home.contains("{email}") {
            return Err(format!(
                "[server.sync] home {:?} must contain {{email}}",
                self.home
            ));
        }
        Ok(())
    }
}
