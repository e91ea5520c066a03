//! How each organizer database is synchronized for a user: the user's own setting wins, then
//! their first group's (by group name) that has one for that database, then `[server.sync]`.
//! The same order as IT policies, so an administrator reasons about both alike.

use bramble_organizer::Database;
use bramble_proto::schema;
use bramble_store::{Store, StoreError, SyncSetting};

use super::SyncConfig;

/// Which way a database goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Both ways.
    Bidirectional,
    /// From the server only: what the phone user changes stays on the device.
    ServerToDevice,
}

impl Direction {
    /// As stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Bidirectional => "bidirectional",
            Direction::ServerToDevice => "server-to-device",
        }
    }

    /// From its name.
    pub fn from_name(s: &str) -> Option<Direction> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bidirectional" | "both" => Some(Direction::Bidirectional),
            "server-to-device" | "unidirectional" | "to-device" => Some(Direction::ServerToDevice),
            _ => None,
        }
    }

    fn to_proto(self) -> i32 {
        (match self {
            Direction::Bidirectional => schema::SyncDirection::DirectionBidirectional,
            Direction::ServerToDevice => schema::SyncDirection::DirectionServerToDevice,
        }) as i32
    }
}

/// Who wins when a record changed on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Conflict {
    /// The server's copy.
    ServerWins,
    /// The device's copy.
    DeviceWins,
    /// The later change.
    NewestWins,
}

impl Conflict {
    /// As stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Conflict::ServerWins => "server-wins",
            Conflict::DeviceWins => "device-wins",
            Conflict::NewestWins => "newest-wins",
        }
    }

    /// From its name.
    pub fn from_name(s: &str) -> Option<Conflict> {
        match s.trim().to_ascii_lowercase().as_str() {
            "server-wins" | "server" => Some(Conflict::ServerWins),
            "device-wins" | "device" => Some(Conflict::DeviceWins),
            "newest-wins" | "newest" => Some(Conflict::NewestWins),
            _ => None,
        }
    }

    fn to_proto(self) -> i32 {
        (match self {
            Conflict::ServerWins => schema::ConflictRule::ConflictServerWins,
            Conflict::DeviceWins => schema::ConflictRule::ConflictDeviceWins,
            Conflict::NewestWins => schema::ConflictRule::ConflictNewestWins,
        }) as i32
    }
}

/// How one database is synchronized for a user, and where that came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DbSetting {
    /// The database.
    #[schema(value_type = crate::admin::openapi::Database)]
    pub database: Database,
    /// Synchronized at all.
    pub enabled: bool,
    /// Which way.
    pub direction: Direction,
    /// Who wins a conflict.
    pub conflict: Conflict,
    /// "user", "group NAME" or "server default".
    pub source: String,
}

/// A user's synchronization configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resolved {
    /// Organizer synchronization is configured on this server (`[server.sync] url`).
    pub configured: bool,
    /// Every database, calendar first.
    pub databases: Vec<DbSetting>,
    /// Wireless backup.
    pub backup: bool,
}

impl Resolved {
    /// Whether anything is synchronized.
    pub fn enabled(&self) -> bool {
        self.configured && self.databases.iter().any(|d| d.enabled)
    }

    /// The setting of `db`.
    pub fn of(&self, db: Database) -> Option<&DbSetting> {
        self.databases.iter().find(|d| d.database == db)
    }

    /// As the device gets it.
    pub fn to_proto(&self) -> schema::SyncConfiguration {
        schema::SyncConfiguration {
            enabled: self.enabled(),
            databases: self
                .databases
                .iter()
                .map(|d| schema::DatabaseSync {
                    database: d.database.to_proto(),
                    enabled: self.configured && d.enabled,
                    direction: d.direction.to_proto(),
                    conflict: d.conflict.to_proto(),
                })
                .collect(),
            backup: self.configured && self.backup,
        }
    }
}

fn from_store(s: &SyncSetting, source: String) -> Option<DbSetting> {
    Some(DbSetting {
        database: Database::from_name(&s.database)?,
        enabled: s.enabled,
        direction: Direction::from_name(&s.direction)?,
        conflict: Conflict::from_name(&s.conflict)?,
        source,
    })
}

/// `email`'s configuration.
///
/// # Errors
/// [`StoreError::NoSuchUser`], or when the database fails.
pub async fn resolve(store: &Store, cfg: &SyncConfig, email: &str) -> Result<Resolved, StoreError> {
    let candidates = store.sync_candidates(email).await?;
    let default_direction =
        Direction::from_name(&cfg.direction).unwrap_or(Direction::Bidirectional);
    let default_conflict = Conflict::from_name(&cfg.conflict).unwrap_or(Conflict::ServerWins);
    let databases = Database::ALL
        .iter()
        .map(|&db| {
            let own = candidates
                .user
                .iter()
                .find(|s| s.database == db.as_str())
                .and_then(|s| from_store(s, "user".into()));
            let group = || {
                candidates.groups.iter().find_map(|(g, list)| {
                    list.iter()
                        .find(|s| s.database == db.as_str())
                        .and_then(|s| from_store(s, format!("group {g}")))
                })
            };
            own.or_else(group).unwrap_or_else(|| DbSetting {
                database: db,
                enabled: cfg
                    .databases
                    .iter()
                    .any(|d| Database::from_name(d) == Some(db)),
                direction: default_direction,
                conflict: default_conflict,
                source: "server default".into(),
            })
        })
        .collect();
    Ok(Resolved {
        configured: cfg.enabled(),
        databases,
        backup: cfg.backup,
    })
}
