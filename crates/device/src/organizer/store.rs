//! The organizer store: `HOME/organizer.db` (or one in-memory database) and everything that
//! reads or writes it. Knows SQL and the schema; knows nothing of connections (that is the
//! parent module).
//!
//! ```text
//! records   one row per (database, uid): the record's text, the server's version last got
//!           (NULL if never synchronized), its state (synced | new | changed | deleted |
//!           local), when it changed, the summary columns a list shows (title, when_ms), the
//!           server's refusal (detail), the batch it is on its way in (batch_id), and a
//!           counter of the device's changes (revision; sent_revision: the one sent), so a
//!           change made while an earlier one is on its way is sent after it, naming the
//!           version the earlier one got
//! config    the last SyncConfiguration (one row)
//! batches   outgoing OrganizerBatches not answered yet; batch_id = the row id
//!           (AUTOINCREMENT: never reused)
//! ```

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bramble_organizer::{Database, Fields, Summary};
use bramble_proto::schema::{
    self, OrganizerBatch, OrganizerRecord, SyncConfiguration, SyncDirection,
};
use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::DeviceError;

/// The organizer store's file in the device's home.
pub const ORGANIZER_DB: &str = "organizer.db";
/// The most records in one outgoing batch.
pub const MAX_BATCH_RECORDS: usize = 100;
/// The most record bytes in one outgoing batch.
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE records (
    db          TEXT    NOT NULL,
    uid         TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    version     TEXT,
    state       TEXT    NOT NULL
                CHECK (state IN ('synced', 'new', 'changed', 'deleted', 'local')),
    modified_ms INTEGER NOT NULL,
    title       TEXT    NOT NULL,
    when_ms     INTEGER,
    detail      TEXT,
    batch_id    INTEGER,
    revision      INTEGER NOT NULL DEFAULT 0,
    sent_revision INTEGER,
    PRIMARY KEY (db, uid)
);
CREATE TABLE config (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    config BLOB    NOT NULL
);
CREATE TABLE batches (
    batch_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    db         TEXT    NOT NULL,
    batch      BLOB    NOT NULL,
    created_ms INTEGER NOT NULL
);
PRAGMA user_version = 1;
";

/// Where a record stands against the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    /// As the server has it (at `version`).
    Synced,
    /// Made on the device; the server has not taken it yet.
    New,
    /// Changed on the device since `version`; not taken yet.
    Changed,
    /// Deleted on the device; the server is still to be told (not listed).
    Deleted,
    /// Changed on the device in a database synchronized from the server only: never sent.
    Local,
}

impl RecordState {
    fn as_str(self) -> &'static str {
        match self {
            RecordState::Synced => "synced",
            RecordState::New => "new",
            RecordState::Changed => "changed",
            RecordState::Deleted => "deleted",
            RecordState::Local => "local",
        }
    }

    fn from_str(s: &str) -> Option<RecordState> {
        Some(match s {
            "synced" => RecordState::Synced,
            "new" => RecordState::New,
            "changed" => RecordState::Changed,
            "deleted" => RecordState::Deleted,
            "local" => RecordState::Local,
            _ => return None,
        })
    }

    /// Whether the device holds a change the server has not taken.
    pub fn is_unsent(self) -> bool {
        matches!(
            self,
            RecordState::New | RecordState::Changed | RecordState::Deleted
        )
    }
}

impl std::fmt::Display for RecordState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One organizer record on the device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrganizerEntry {
    /// Its database.
    pub database: Database,
    /// Its UID.
    pub uid: String,
    /// What a list shows.
    pub summary: Summary,
    /// The vCard or iCalendar text.
    pub data: String,
    /// The server's version last got; `None` if never synchronized.
    pub version: Option<String>,
    /// Where it stands.
    pub state: RecordState,
    /// When it last changed (unix ms).
    pub modified_ms: i64,
    /// Why the server refused the device's change, when it did.
    pub detail: Option<String>,
}

/// How a database is synchronized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the server only: the device's changes stay on the device.
    ServerToDevice,
    /// Both ways.
    Bidirectional,
}

/// One database of the synchronization configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseConfig {
    /// The database.
    pub database: Database,
    /// Whether it is synchronized.
    pub enabled: bool,
    /// Which way.
    pub direction: Direction,
    /// Who wins a conflict: "server wins", "device wins", "newest wins".
    pub conflict: String,
}

/// The synchronization configuration the server last sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncConfig {
    /// Whether wireless synchronization is on at all.
    pub enabled: bool,
    /// Per database, in the order they are synchronized (databases this version does not
    /// know are left out).
    pub databases: Vec<DatabaseConfig>,
    /// Whether wireless backup is on.
    pub backup: bool,
}

impl SyncConfig {
    /// From the wire.
    pub fn from_proto(c: &SyncConfiguration) -> SyncConfig {
        SyncConfig {
            enabled: c.enabled,
            databases: c
                .databases
                .iter()
                .filter_map(|d| {
                    Some(DatabaseConfig {
                        database: Database::from_proto(d.database)?,
                        enabled: d.enabled,
                        direction: if d.direction == SyncDirection::DirectionServerToDevice as i32 {
                            Direction::ServerToDevice
                        } else {
                            Direction::Bidirectional
                        },
                        conflict: match schema::ConflictRule::try_from(d.conflict) {
                            Ok(schema::ConflictRule::ConflictDeviceWins) => "device wins",
                            Ok(schema::ConflictRule::ConflictNewestWins) => "newest wins",
                            _ => "server wins",
                        }
                        .to_owned(),
                    })
                })
                .collect(),
            backup: c.backup,
        }
    }

    /// The databases whose changes go to the server, in order.
    pub fn sent(&self) -> Vec<Database> {
        if !self.enabled {
            return Vec::new();
        }
        self.databases
            .iter()
            .filter(|d| d.enabled && d.direction == Direction::Bidirectional)
            .map(|d| d.database)
            .collect()
    }

    /// Whether `db` is synchronized from the server only (changes there stay local).
    pub fn server_only(&self, db: Database) -> bool {
        self.enabled
            && self
                .databases
                .iter()
                .any(|d| d.database == db && d.enabled && d.direction == Direction::ServerToDevice)
    }
}

/// The device's organizer databases. Cheap to clone: clones share one database connection.
///
/// Get it with [`crate::Device::organizer`]. Every method that changes it has committed to
/// disk when it returns.
#[derive(Clone)]
pub struct OrganizerStore {
    pool: SqlitePool,
    location: Arc<str>,
}

impl std::fmt::Debug for OrganizerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrganizerStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

crate::row_struct! {
    struct Row {
        db: String,
        uid: String,
        data: String,
        version: Option<String>,
        state: String,
        modified_ms: i64,
        detail: Option<String>,
        batch_id: Option<i64>,
        revision: i64,
        sent_revision: Option<i64>,
    }
}

/// A record as the sync code sees it: the entry and the batch it is on its way in.
pub(crate) struct Held {
    pub entry: OrganizerEntry,
    pub batch_id: Option<i64>,
    /// Not changed on the device since it was put in its batch.
    pub as_sent: bool,
}

/// What taking the server's record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    New,
    Changed,
    Deleted,
    /// The device holds an unsent change of it: kept, the server's version not taken.
    KeptDevices,
    /// Nothing to do (a deletion of a record the device does not hold).
    Nothing,
}

fn from_db(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn to_u64(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

impl OrganizerStore {
    /// Opens the store in `home` (`home/organizer.db`, mode 0600, created when missing), or a
    /// new empty one in memory when `home` is `None`.
    ///
    /// # Errors
    /// [`DeviceError::OrganizerStoreDamaged`] or [`DeviceError::OrganizerStore`].
    pub async fn open(home: Option<&Path>) -> Result<OrganizerStore, DeviceError> {
        let (options, location): (SqliteConnectOptions, Arc<str>) = match home {
            None => (
                SqliteConnectOptions::from_str("sqlite::memory:")
                    .map_err(|e| DeviceError::OrganizerStore(e.to_string()))?,
                Arc::from("memory"),
            ),
            Some(dir) => {
                let path = dir.join(ORGANIZER_DB);
                crate::mail::create_private_file(dir, &path)?;
                (
                    SqliteConnectOptions::new()
                        .filename(&path)
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Full)
                        .busy_timeout(Duration::from_secs(5)),
                    Arc::from(path.display().to_string()),
                )
            }
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| DeviceError::OrganizerStore(format!("{location}: {e}")))?;
        let store = OrganizerStore { pool, location };
        if let Err(e) = store.migrate().await {
            store.pool.close().await;
            return Err(e);
        }
        Ok(store)
    }

    /// Closes the store (every clone).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), DeviceError> {
        let mut tx = self.begin().await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
        match version {
            0 => {
                sqlx::raw_sql(SCHEMA)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db(&e))?;
            }
            SCHEMA_VERSION => {}
            other => {
                return Err(DeviceError::OrganizerStoreDamaged(format!(
                    "{} is in format {other}, and this build reads format {SCHEMA_VERSION} \
                     (was it written by a newer version of Bramble?)",
                    self.location
                )));
            }
        }
        tx.commit().await.map_err(|e| self.db(&e))
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, DeviceError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.db(&e))
    }

    fn db(&self, e: &sqlx::Error) -> DeviceError {
        let damaged = matches!(e, sqlx::Error::Database(d)
            if matches!(d.code().as_deref(), Some("11" | "26")));
        if damaged {
            DeviceError::OrganizerStoreDamaged(format!("{}: {e}", self.location))
        } else {
            DeviceError::OrganizerStore(format!("{}: {e}", self.location))
        }
    }

    fn damaged(&self, what: impl std::fmt::Display) -> DeviceError {
        DeviceError::OrganizerStoreDamaged(format!("{}: {what}", self.location))
    }

    fn entry(&self, row: Row) -> Result<Held, DeviceError> {
        let database =
            Database::from_name(&row.db).ok_or_else(|| self.damaged("an unknown database"))?;
        let state =
            RecordState::from_str(&row.state).ok_or_else(|| self.damaged("an unknown state"))?;
        // What was stored parsed when it was stored; a summary that no longer comes out (a
        // newer build's record) is shown empty rather than hidden.
        let summary = bramble_organizer::parse(database, &row.data)
            .map(|r| r.summary)
            .unwrap_or_default();
        Ok(Held {
            entry: OrganizerEntry {
                database,
                uid: row.uid,
                summary,
                data: row.data,
                version: row.version,
                state,
                modified_ms: row.modified_ms,
                detail: row.detail,
            },
            batch_id: row.batch_id,
            as_sent: row.sent_revision == Some(row.revision),
        })
    }

    // ---- what the phone user sees and does ----------------------------------------------------

    /// The records of `db` (not those deleted on the device), by date, then title.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn list(&self, db: Database) -> Result<Vec<OrganizerEntry>, DeviceError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT db, uid, data, version, state, modified_ms, detail, batch_id, revision, sent_revision FROM records \
             WHERE db = ? AND state <> 'deleted' \
             ORDER BY when_ms IS NULL, when_ms, lower(title), uid",
        )
        .bind(db.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        rows.into_iter()
            .map(|r| self.entry(r).map(|h| h.entry))
            .collect()
    }

    /// Record `uid` of `db`.
    ///
    /// # Errors
    /// [`DeviceError::NoSuchRecord`], or when the store cannot be read.
    pub async fn get(&self, db: Database, uid: &str) -> Result<OrganizerEntry, DeviceError> {
        match self.held(db, uid).await? {
            Some(h) if h.entry.state != RecordState::Deleted => Ok(h.entry),
            _ => Err(no_such(db, uid)),
        }
    }

    pub(crate) async fn held(&self, db: Database, uid: &str) -> Result<Option<Held>, DeviceError> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT db, uid, data, version, state, modified_ms, detail, batch_id, revision, sent_revision FROM records \
             WHERE db = ? AND uid = ?",
        )
        .bind(db.as_str())
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        row.map(|r| self.entry(r)).transpose()
    }

    /// The state a change made on the device gets in `db`.
    async fn changed_state(&self, db: Database, new: bool) -> Result<RecordState, DeviceError> {
        let server_only = self.sync_config().await?.is_some_and(|c| c.server_only(db));
        Ok(if server_only {
            RecordState::Local
        } else if new {
            RecordState::New
        } else {
            RecordState::Changed
        })
    }

    /// Adds a record built from what the user typed; returns its UID.
    ///
    /// # Errors
    /// [`DeviceError::RecordRefused`] (a field that cannot be written), or a store failure.
    pub async fn add(&self, db: Database, fields: &Fields) -> Result<String, DeviceError> {
        let now = crate::manage::now_ms();
        let (uid, data) = bramble_organizer::new_record(db, None, fields, now)
            .map_err(|e| DeviceError::RecordRefused(e.to_string()))?;
        self.insert_own(db, &uid, &data, now).await?;
        Ok(uid)
    }

    /// Adds a record given as text (an imported vCard or iCalendar object); returns its UID.
    /// A record of that UID already on the device is replaced (as a change).
    ///
    /// # Errors
    /// [`DeviceError::RecordRefused`] saying why it does not parse, or a store failure.
    pub async fn add_raw(&self, db: Database, data: &str) -> Result<String, DeviceError> {
        let record = bramble_organizer::parse(db, data)
            .map_err(|e| DeviceError::RecordRefused(e.to_string()))?;
        let now = crate::manage::now_ms();
        self.insert_own(db, &record.uid, data, now).await?;
        Ok(record.uid)
    }

    async fn insert_own(
        &self,
        db: Database,
        uid: &str,
        data: &str,
        now: i64,
    ) -> Result<(), DeviceError> {
        let summary = bramble_organizer::parse(db, data)
            .map_err(|e| DeviceError::RecordRefused(e.to_string()))?
            .summary;
        let existing = self.held(db, uid).await?;
        let state = match &existing {
            Some(h) if h.entry.version.is_some() => self.changed_state(db, false).await?,
            _ => self.changed_state(db, true).await?,
        };
        sqlx::query(
            "INSERT INTO records (db, uid, data, version, state, modified_ms, title, when_ms, \
             revision) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, 1) \
             ON CONFLICT (db, uid) DO UPDATE SET data = excluded.data, state = excluded.state, \
             modified_ms = excluded.modified_ms, title = excluded.title, \
             when_ms = excluded.when_ms, detail = NULL, revision = records.revision + 1",
        )
        .bind(db.as_str())
        .bind(uid)
        .bind(data)
        .bind(state.as_str())
        .bind(now)
        .bind(&summary.title)
        .bind(summary.when_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        Ok(())
    }

    /// Changes the fields given of record `uid`; everything else in it stays.
    ///
    /// # Errors
    /// [`DeviceError::NoSuchRecord`], [`DeviceError::RecordRefused`], or a store failure.
    pub async fn edit(
        &self,
        db: Database,
        uid: &str,
        fields: &Fields,
    ) -> Result<OrganizerEntry, DeviceError> {
        let entry = self.get(db, uid).await?;
        let now = crate::manage::now_ms();
        let data = bramble_organizer::edit_record(db, &entry.data, fields, now)
            .map_err(|e| DeviceError::RecordRefused(e.to_string()))?;
        let summary = bramble_organizer::parse(db, &data)
            .map_err(|e| DeviceError::RecordRefused(e.to_string()))?
            .summary;
        let state = match entry.state {
            RecordState::New | RecordState::Local => entry.state,
            _ => self.changed_state(db, false).await?,
        };
        sqlx::query(
            "UPDATE records SET data = ?, state = ?, modified_ms = ?, title = ?, when_ms = ?, \
             detail = NULL, revision = revision + 1 WHERE db = ? AND uid = ?",
        )
        .bind(&data)
        .bind(state.as_str())
        .bind(now)
        .bind(&summary.title)
        .bind(summary.when_ms)
        .bind(db.as_str())
        .bind(uid)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        self.get(db, uid).await
    }

    /// Deletes record `uid`: at once when the server never had it (or never hears of this
    /// database's changes), else once the server has taken the deletion.
    ///
    /// # Errors
    /// [`DeviceError::NoSuchRecord`], or a store failure.
    pub async fn delete(&self, db: Database, uid: &str) -> Result<(), DeviceError> {
        let held = self.held(db, uid).await?.ok_or_else(|| no_such(db, uid))?;
        if held.entry.state == RecordState::Deleted {
            return Err(no_such(db, uid));
        }
        let server_only = self.sync_config().await?.is_some_and(|c| c.server_only(db));
        let q = if (held.entry.version.is_none() && held.batch_id.is_none()) || server_only {
            sqlx::query("DELETE FROM records WHERE db = ? AND uid = ?")
        } else {
            sqlx::query(
                "UPDATE records SET state = 'deleted', detail = NULL, revision = revision + 1, \
                 modified_ms = ? WHERE db = ? AND uid = ?",
            )
            .bind(crate::manage::now_ms())
        };
        q.bind(db.as_str())
            .bind(uid)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db(&e))?;
        Ok(())
    }

    /// Drops every organizer record and every batch waiting to go (the phone user chose to
    /// overwrite the device's data with the server's). The configuration stays.
    ///
    /// # Errors
    /// A store failure.
    pub async fn clear(&self) -> Result<(), DeviceError> {
        let mut tx = self.begin().await?;
        for q in ["DELETE FROM records", "DELETE FROM batches"] {
            sqlx::query(q)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db(&e))?;
        }
        tx.commit().await.map_err(|e| self.db(&e))
    }

    /// The synchronization configuration the server last sent, if any.
    ///
    /// # Errors
    /// A store failure.
    pub async fn sync_config(&self) -> Result<Option<SyncConfig>, DeviceError> {
        Ok(self
            .sync_configuration()
            .await?
            .map(|c| SyncConfig::from_proto(&c)))
    }

    pub(crate) async fn sync_configuration(
        &self,
    ) -> Result<Option<SyncConfiguration>, DeviceError> {
        let blob: Option<Vec<u8>> = sqlx::query_scalar("SELECT config FROM config WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db(&e))?;
        blob.map(|b| {
            prost::Message::decode(b.as_slice()).map_err(|e| self.damaged(format!("config: {e}")))
        })
        .transpose()
    }

    pub(crate) async fn set_sync_configuration(
        &self,
        c: &SyncConfiguration,
    ) -> Result<(), DeviceError> {
        sqlx::query(
            "INSERT INTO config (id, config) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET config = excluded.config",
        )
        .bind(prost::Message::encode_to_vec(c))
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        Ok(())
    }

    // ---- batches ------------------------------------------------------------------------------

    /// Puts every change not yet on its way of the databases in `dbs` into new batches.
    pub(crate) async fn queue_changes(&self, dbs: &[Database]) -> Result<usize, DeviceError> {
        let mut made = 0;
        for &db in dbs {
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT db, uid, data, version, state, modified_ms, detail, batch_id, revision, sent_revision \
                 FROM records WHERE db = ? AND state IN ('new', 'changed', 'deleted') \
                 AND batch_id IS NULL AND detail IS NULL ORDER BY modified_ms, uid",
            )
            .bind(db.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db(&e))?;
            if rows.is_empty() {
                continue;
            }
            let records: Vec<OrganizerRecord> = rows
                .into_iter()
                .map(|r| {
                    let deleted = r.state == "deleted";
                    OrganizerRecord {
                        uid: r.uid,
                        data: if deleted { String::new() } else { r.data },
                        deleted,
                        version: r.version.unwrap_or_default(),
                        modified_ms: r.modified_ms,
                    }
                })
                .collect();
            made += self.make_batches(db, records, false).await?.len();
        }
        Ok(made)
    }

    /// Every record of `db` the device holds, as slow-synchronization batches (at least one:
    /// empty for an empty database), the last with `last` set.
    pub(crate) async fn slow_batches(
        &self,
        db: Database,
    ) -> Result<Vec<OrganizerBatch>, DeviceError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT db, uid, data, version, state, modified_ms, detail, batch_id, revision, sent_revision FROM records \
             WHERE db = ? AND state <> 'deleted' ORDER BY modified_ms, uid",
        )
        .bind(db.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        let records = rows
            .into_iter()
            .map(|r| OrganizerRecord {
                uid: r.uid,
                data: r.data,
                deleted: false,
                version: r.version.unwrap_or_default(),
                modified_ms: r.modified_ms,
            })
            .collect();
        self.make_batches(db, records, true).await
    }

    /// Splits `records` into batches (at most [`MAX_BATCH_RECORDS`] or [`MAX_BATCH_BYTES`]),
    /// stores them to be sent (and again until answered) and marks their records on the way.
    async fn make_batches(
        &self,
        db: Database,
        records: Vec<OrganizerRecord>,
        slow: bool,
    ) -> Result<Vec<OrganizerBatch>, DeviceError> {
        let mut groups: Vec<Vec<OrganizerRecord>> = vec![Vec::new()];
        let mut bytes = 0;
        for r in records {
            let len = r.data.len() + r.uid.len() + r.version.len();
            let full = groups.last().is_some_and(|g| {
                !g.is_empty() && (g.len() >= MAX_BATCH_RECORDS || bytes + len > MAX_BATCH_BYTES)
            });
            if full {
                groups.push(Vec::new());
                bytes = 0;
            }
            bytes += len;
            if let Some(g) = groups.last_mut() {
                g.push(r);
            }
        }
        if !slow {
            groups.retain(|g| !g.is_empty());
        }
        let n = groups.len();
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(n);
        for (i, records) in groups.into_iter().enumerate() {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO batches (db, batch, created_ms) VALUES (?, x'', ?) \
                 RETURNING batch_id",
            )
            .bind(db.as_str())
            .bind(crate::manage::now_ms())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
            for r in &records {
                sqlx::query(
                    "UPDATE records SET batch_id = ?, sent_revision = revision \
                     WHERE db = ? AND uid = ?",
                )
                .bind(id)
                .bind(db.as_str())
                .bind(&r.uid)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db(&e))?;
            }
            let batch = OrganizerBatch {
                database: db.to_proto(),
                batch_id: to_u64(id),
                slow,
                records,
                last: slow && i + 1 == n,
            };
            sqlx::query("UPDATE batches SET batch = ? WHERE batch_id = ?")
                .bind(prost::Message::encode_to_vec(&batch))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db(&e))?;
            out.push(batch);
        }
        tx.commit().await.map_err(|e| self.db(&e))?;
        Ok(out)
    }

    /// The batches waiting for the server's answer, oldest first.
    ///
    /// # Errors
    /// A store failure.
    pub async fn pending_batches(&self) -> Result<Vec<OrganizerBatch>, DeviceError> {
        let blobs: Vec<Vec<u8>> = sqlx::query_scalar("SELECT batch FROM batches ORDER BY batch_id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db(&e))?;
        blobs
            .iter()
            .map(|b| {
                prost::Message::decode(b.as_slice())
                    .map_err(|e| self.damaged(format!("batch: {e}")))
            })
            .collect()
    }

    /// Whether batch `id` waits for its answer.
    pub(crate) async fn batch_waiting(&self, id: u64) -> Result<bool, DeviceError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM batches WHERE batch_id = ?")
            .bind(from_db(id))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db(&e))?;
        Ok(n > 0)
    }

    /// Batch `id` was answered: it goes, and its records not named in the answer are free to
    /// be sent again.
    pub(crate) async fn batch_answered(&self, id: u64) -> Result<(), DeviceError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM batches WHERE batch_id = ?")
            .bind(from_db(id))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
        sqlx::query("UPDATE records SET batch_id = NULL WHERE batch_id = ?")
            .bind(from_db(id))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
        tx.commit().await.map_err(|e| self.db(&e))
    }

    // ---- outcomes and the server's records ----------------------------------------------------

    /// The server took the device's copy of `uid` (sent in batch `batch`) at `version`.
    pub(crate) async fn stored(
        &self,
        db: Database,
        uid: &str,
        batch: u64,
        version: &str,
    ) -> Result<Option<OrganizerEntry>, DeviceError> {
        let Some(held) = self.held(db, uid).await? else {
            return Ok(None);
        };
        let same = held.batch_id == Some(from_db(batch)) && held.as_sent;
        let q = match (held.entry.state, same) {
            (RecordState::Deleted, true) => {
                sqlx::query("DELETE FROM records WHERE db = ? AND uid = ?")
            }
            (_, true) => sqlx::query(
                "UPDATE records SET state = 'synced', version = ?, detail = NULL, \
                 batch_id = NULL WHERE db = ? AND uid = ?",
            )
            .bind(version),
            // Changed again since it was sent: the next change names this version.
            (state, false) => {
                sqlx::query("UPDATE records SET version = ?, state = ? WHERE db = ? AND uid = ?")
                    .bind(version)
                    .bind(if state == RecordState::New {
                        RecordState::Changed.as_str()
                    } else {
                        state.as_str()
                    })
            }
        };
        q.bind(db.as_str())
            .bind(uid)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db(&e))?;
        Ok(Some(held.entry))
    }

    /// The server refused the device's copy of `uid`: it stays, marked with why (and is not
    /// sent again until changed).
    pub(crate) async fn refused(
        &self,
        db: Database,
        uid: &str,
        detail: &str,
    ) -> Result<Option<OrganizerEntry>, DeviceError> {
        let Some(held) = self.held(db, uid).await? else {
            return Ok(None);
        };
        if !held.as_sent {
            // Changed since: the new change goes on its own.
            return Ok(None);
        }
        let detail = if detail.trim().is_empty() {
            "the server did not say why"
        } else {
            detail
        };
        sqlx::query(
            "UPDATE records SET detail = ?, batch_id = NULL, \
             state = CASE state WHEN 'deleted' THEN 'synced' ELSE state END \
             WHERE db = ? AND uid = ?",
        )
        .bind(detail)
        .bind(db.as_str())
        .bind(uid)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        Ok(Some(held.entry))
    }

    /// Takes the server's copy of a record. With `force` (a conflict the device lost) it
    /// replaces what the device holds; otherwise an unsent change on the device is kept and
    /// the server's version not taken, so the server sees the conflict when that change
    /// arrives. A deletion is never taken during a slow synchronization (`slow`).
    ///
    /// # Errors
    /// [`DeviceError::RecordRefused`] when the record does not parse (or names another UID).
    pub(crate) async fn take_server(
        &self,
        db: Database,
        r: &OrganizerRecord,
        slow: bool,
        force: bool,
    ) -> Result<Taken, DeviceError> {
        let held = self.held(db, &r.uid).await?;
        let pending = held
            .as_ref()
            .is_some_and(|h| h.entry.state.is_unsent() || h.batch_id.is_some());
        if pending && !force {
            return Ok(Taken::KeptDevices);
        }
        if r.deleted {
            if slow {
                return Err(DeviceError::RecordRefused(
                    "nothing is deleted during the slow synchronization".into(),
                ));
            }
            if held.is_none() {
                return Ok(Taken::Nothing);
            }
            sqlx::query("DELETE FROM records WHERE db = ? AND uid = ?")
                .bind(db.as_str())
                .bind(&r.uid)
                .execute(&self.pool)
                .await
                .map_err(|e| self.db(&e))?;
            return Ok(Taken::Deleted);
        }
        let record = bramble_organizer::parse(db, &r.data)
            .map_err(|e| DeviceError::RecordRefused(e.to_string()))?;
        if record.uid != r.uid {
            return Err(DeviceError::RecordRefused(format!(
                "it holds UID {:?}, not {:?}",
                record.uid, r.uid
            )));
        }
        let modified = if r.modified_ms > 0 {
            r.modified_ms
        } else {
            record
                .summary
                .modified_ms
                .unwrap_or_else(crate::manage::now_ms)
        };
        sqlx::query(
            "INSERT INTO records (db, uid, data, version, state, modified_ms, title, when_ms) \
             VALUES (?, ?, ?, ?, 'synced', ?, ?, ?) \
             ON CONFLICT (db, uid) DO UPDATE SET data = excluded.data, \
             version = excluded.version, state = 'synced', modified_ms = excluded.modified_ms, \
             title = excluded.title, when_ms = excluded.when_ms, detail = NULL, batch_id = NULL",
        )
        .bind(db.as_str())
        .bind(&r.uid)
        .bind(&r.data)
        .bind(&r.version)
        .bind(modified)
        .bind(&record.summary.title)
        .bind(record.summary.when_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        Ok(if held.is_some() {
            Taken::Changed
        } else {
            Taken::New
        })
    }
}

fn no_such(db: Database, uid: &str) -> DeviceError {
    DeviceError::NoSuchRecord {
        what: db.noun(),
        uid: uid.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(name: &str) -> Fields {
        Fields {
            title: Some(name.into()),
            emails: Some(vec![format!("{}@example.com", name.to_lowercase())]),
            ..Fields::default()
        }
    }

    fn config(direction: SyncDirection) -> SyncConfiguration {
        SyncConfiguration {
            enabled: true,
            databases: Database::ALL
                .iter()
                .map(|d| schema::DatabaseSync {
                    database: d.to_proto(),
                    enabled: true,
                    direction: direction as i32,
                    conflict: schema::ConflictRule::ConflictServerWins as i32,
                })
                .collect(),
            backup: true,
        }
    }

    #[tokio::test]
    async fn a_record_added_edited_and_deleted_moves_through_its_states() {
        let s = OrganizerStore::open(None).await.expect("opens");
        let uid = s
            .add(Database::Contacts, &contact("Ann Lee"))
            .await
            .expect("adds");
        let e = s.get(Database::Contacts, &uid).await.expect("there");
        assert_eq!((e.state, e.version.as_deref()), (RecordState::New, None));
        assert_eq!(e.summary.title, "Ann Lee");
        let e = s
            .edit(
                Database::Contacts,
                &uid,
                &Fields {
                    organization: Some("Acme".into()),
                    ..Fields::default()
                },
            )
            .await
            .expect("edits");
        assert_eq!(e.state, RecordState::New, "still never sent");
        assert_eq!(e.summary.organization.as_deref(), Some("Acme"));
        assert_eq!(e.summary.title, "Ann Lee", "the rest stays");

        // Sent and stored: synced with the server's version; a change then names it.
        assert_eq!(s.queue_changes(&[Database::Contacts]).await.expect("q"), 1);
        let batch = s.pending_batches().await.expect("batches").remove(0);
        assert_eq!(batch.records.len(), 1);
        assert!(!batch.slow && !batch.last);
        s.stored(Database::Contacts, &uid, batch.batch_id, "v1")
            .await
            .expect("stored");
        s.batch_answered(batch.batch_id).await.expect("answered");
        let e = s.get(Database::Contacts, &uid).await.expect("there");
        assert_eq!(
            (e.state, e.version.as_deref()),
            (RecordState::Synced, Some("v1"))
        );
        assert!(s.pending_batches().await.expect("b").is_empty());

        s.delete(Database::Contacts, &uid).await.expect("deletes");
        assert!(s.list(Database::Contacts).await.expect("list").is_empty());
        assert!(matches!(
            s.get(Database::Contacts, &uid).await,
            Err(DeviceError::NoSuchRecord { .. })
        ));
        s.queue_changes(&[Database::Contacts]).await.expect("q");
        let batch = s.pending_batches().await.expect("batches").remove(0);
        assert!(batch.records[0].deleted);
        assert_eq!(batch.records[0].version, "v1");
        s.stored(Database::Contacts, &uid, batch.batch_id, "")
            .await
            .expect("stored");
        assert!(s.held(Database::Contacts, &uid).await.expect("h").is_none());

        // A new record never sent goes at once.
        let uid = s
            .add(Database::Memos, &contact("Note"))
            .await
            .expect("adds");
        s.delete(Database::Memos, &uid).await.expect("deletes");
        assert!(s.held(Database::Memos, &uid).await.expect("h").is_none());
    }

    #[tokio::test]
    async fn a_change_made_while_the_last_is_on_its_way_goes_after_it_with_its_version() {
        let s = OrganizerStore::open(None).await.expect("opens");
        let uid = s
            .add(Database::Contacts, &contact("Eve"))
            .await
            .expect("adds");
        s.queue_changes(&[Database::Contacts]).await.expect("q");
        let first = s.pending_batches().await.expect("b").remove(0);
        s.edit(
            Database::Contacts,
            &uid,
            &Fields {
                title: Some("Eve Ng".into()),
                ..Fields::default()
            },
        )
        .await
        .expect("edits");
        // Not sent twice at once (two changes naming one version would be a conflict).
        assert_eq!(s.queue_changes(&[Database::Contacts]).await.expect("q"), 0);
        s.stored(Database::Contacts, &uid, first.batch_id, "v1")
            .await
            .expect("stored");
        s.batch_answered(first.batch_id).await.expect("answered");
        let e = s.get(Database::Contacts, &uid).await.expect("e");
        assert_eq!(
            (e.state, e.version.as_deref()),
            (RecordState::Changed, Some("v1"))
        );
        assert_eq!(s.queue_changes(&[Database::Contacts]).await.expect("q"), 1);
        let second = s.pending_batches().await.expect("b").remove(0);
        assert_eq!(second.records[0].version, "v1");
        assert!(second.records[0].data.contains("Eve Ng"));
    }

    #[tokio::test]
    async fn raw_records_are_checked_and_server_only_changes_stay_local() {
        let s = OrganizerStore::open(None).await.expect("opens");
        let refused = s
            .add_raw(Database::Contacts, "BEGIN:VCARD\r\nFN:x\r\n")
            .await
            .expect_err("refused");
        assert!(
            matches!(refused, DeviceError::RecordRefused(_)),
            "{refused}"
        );
        let uid = s
            .add_raw(
                Database::Contacts,
                "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:abc\r\nFN:Bo Bo\r\nEND:VCARD\r\n",
            )
            .await
            .expect("takes a vCard");
        assert_eq!(uid, "abc");
        s.set_sync_configuration(&config(SyncDirection::DirectionServerToDevice))
            .await
            .expect("config");
        let c = s.sync_config().await.expect("c").expect("some");
        assert!(c.sent().is_empty() && c.server_only(Database::Contacts) && c.backup);
        let uid = s
            .add(Database::Contacts, &contact("Cy"))
            .await
            .expect("adds");
        assert_eq!(
            s.get(Database::Contacts, &uid).await.expect("e").state,
            RecordState::Local
        );
    }

    #[tokio::test]
    async fn the_servers_records_do_not_replace_unsent_changes_and_slow_batches_are_bounded() {
        let s = OrganizerStore::open(None).await.expect("opens");
        let uid = s
            .add(Database::Contacts, &contact("Di"))
            .await
            .expect("adds");
        let (_, theirs) =
            bramble_organizer::new_record(Database::Contacts, Some(&uid), &contact("Server Di"), 1)
                .expect("record");
        let rec = OrganizerRecord {
            uid: uid.clone(),
            data: theirs,
            version: "s1".into(),
            ..OrganizerRecord::default()
        };
        let taken = s
            .take_server(Database::Contacts, &rec, false, false)
            .await
            .expect("ok");
        assert_eq!(taken, Taken::KeptDevices);
        assert_eq!(
            s.get(Database::Contacts, &uid)
                .await
                .expect("e")
                .summary
                .title,
            "Di"
        );
        // A conflict the device lost replaces it.
        s.take_server(Database::Contacts, &rec, false, true)
            .await
            .expect("ok");
        let e = s.get(Database::Contacts, &uid).await.expect("e");
        assert_eq!(
            (e.state, e.summary.title.as_str()),
            (RecordState::Synced, "Server Di")
        );
        // No deletion in a slow batch; a malformed record is refused in words.
        let del = OrganizerRecord {
            uid: uid.clone(),
            deleted: true,
            ..OrganizerRecord::default()
        };
        assert!(
            s.take_server(Database::Contacts, &del, true, false)
                .await
                .is_err()
        );
        let bad = OrganizerRecord {
            uid: "x".into(),
            data: "nonsense".into(),
            ..OrganizerRecord::default()
        };
        assert!(matches!(
            s.take_server(Database::Contacts, &bad, false, false).await,
            Err(DeviceError::RecordRefused(_))
        ));

        // 250 events: three slow batches, only the last marked; an empty database, one.
        for i in 0..250 {
            s.add(
                Database::Calendar,
                &Fields {
                    title: Some(format!("Event {i}")),
                    start: Some("2030-01-01 10:00".into()),
                    ..Fields::default()
                },
            )
            .await
            .expect("adds");
        }
        let batches = s.slow_batches(Database::Calendar).await.expect("batches");
        let sizes: Vec<usize> = batches.iter().map(|b| b.records.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let lasts: Vec<bool> = batches.iter().map(|b| b.last).collect();
        assert_eq!(lasts, [false, false, true]);
        let ids: std::collections::BTreeSet<u64> = batches.iter().map(|b| b.batch_id).collect();
        assert_eq!(ids.len(), 3, "batch ids are unique");
        let empty = s.slow_batches(Database::Tasks).await.expect("batches");
        assert_eq!(empty.len(), 1);
        assert!(empty[0].records.is_empty() && empty[0].last && empty[0].slow);
        s.clear().await.expect("clears");
        assert!(s.list(Database::Calendar).await.expect("l").is_empty());
        assert!(s.pending_batches().await.expect("b").is_empty());
    }
}
