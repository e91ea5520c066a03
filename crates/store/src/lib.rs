//! The configuration database of the Bramble enterprise server.
//!
//! Owns the schema, its versioned migrations and every query, written for both dialects it
//! supports: SQLite (the embedded default, one file) and PostgreSQL (several servers of one
//! domain sharing a database). The backend is chosen at run time from the URL given to
//! [`Store::open`]; components see only [`Store`]'s methods and the plain values in this crate,
//! never SQL or a driver type.
//!
//! Must not touch: any network other than the database connection, anything of the wire
//! protocol or of cryptography (keys and OPAQUE records are opaque bytes here), and business
//! rules beyond the integrity of the data (which status follows which, when an activation
//! password is void, … are the server's to decide).
//!
//! Conventions: times are `i64` unix milliseconds ([`now_ms`]); email addresses are trimmed and
//! lower-cased on the way in and looked up case-insensitively; PINs, SRP ids and key generations
//! are `u32`; sequence numbers are `u64` but the database holds at most `i64::MAX`.
//!
//! Layout (Stalwart's shape): [`Store`] wraps an enum of connection pools, and each method
//! dispatches on it once. SQL that both dialects accept is written once; where they differ
//! (locking, collation) each dialect's text is written out side by side.

mod activation;
mod admins;
mod commands;
mod devices;
mod error;
mod filters;
mod groups;
mod mail;
mod mail_sync;
mod migrations;
mod model;
mod policies;
mod server;
mod software;
mod sync;
mod target;
mod users;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

pub use admins::{
    AUDIT_RESULTS, AdminAccount, AdminRole, AdminToken, AuditEntry, AuditQuery, NewAuditEntry,
    Principal,
};
pub use commands::{COMMAND_STATES, CommandEvent, CommandRow};
pub use error::StoreError;
pub use filters::{
    FILTER_IMPORTANCES, Filter, FilterAction, FilterConditions, FilterScope, FilterUpdate,
    MAX_FILTER_NAME, MAX_FILTER_PATTERN, NewFilter, ParseFilterActionError,
};
pub use groups::{Group, MAX_NAME};
pub use mail::{MailCursor, MailItemRow, MailSettings, NewMailItem, OUTBOX_STATES, OutboxRow};
pub use mail_sync::MailChangeRow;
pub use model::{
    Activation, Device, NewDevice, ParseUserStatusError, ServerIdentity, StatusEvent, User,
    UserStatus,
};
pub use policies::{DevicePolicyState, PolicyCandidates, PolicySummary, PolicyVersion};
pub use software::{
    ConfigApp, DISPOSITIONS, Package, SoftwareCandidates, SoftwareConfigRow, SoftwareJob,
};
pub use sync::{
    BackupRow, SYNC_CONFLICTS, SYNC_DATABASES, SYNC_DIRECTIONS, SyncCandidates, SyncProblem,
    SyncRecordRow, SyncSetting,
};

/// The current time as unix milliseconds, the store's one time format. A clock set before
/// 1970 gives 0.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// An SQLite file (or `sqlite::memory:`).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
        })
    }
}

/// How [`Store::open_with`] connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most connections the pool opens; `None` for the default (8 for SQLite, 16 for
    /// PostgreSQL). An in-memory SQLite database always uses exactly one.
    pub max_connections: Option<u32>,
    /// How long to keep trying to reach the database when opening it (a server that is still
    /// starting refuses connections for a while), and how long a call waits for a free
    /// connection. Default 10 s.
    pub connect_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            max_connections: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The configuration database. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store holds (and `$kind` to its
/// [`BackendKind`]): the one dispatch of each method. The body is compiled once per backend,
/// so dialect-neutral sqlx code is written once.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
    ($store:expr, $pool:ident, $kind:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => {
                let $kind = $crate::BackendKind::Sqlite;
                $body
            }
            $crate::Backend::Postgres($pool) => {
                let $kind = $crate::BackendKind::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// Declares a struct read from a query's columns by name, with its `sqlx::FromRow` for both
/// backends' rows: what `#[derive(sqlx::FromRow)]` gives, without sqlx's procedural macros
/// (which build both database drivers a second time, for the compiler, in every build).
macro_rules! row_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }
        impl<'r> ::sqlx::FromRow<'r, ::sqlx::sqlite::SqliteRow> for $name {
            fn from_row(row: &'r ::sqlx::sqlite::SqliteRow) -> Result<Self, ::sqlx::Error> {
                use ::sqlx::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),* })
            }
        }
        impl<'r> ::sqlx::FromRow<'r, ::sqlx::postgres::PgRow> for $name {
            fn from_row(row: &'r ::sqlx::postgres::PgRow) -> Result<Self, ::sqlx::Error> {
                use ::sqlx::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),* })
            }
        }
    };
}
pub(crate) use row_struct;

/// Picks the SQL text for the dialect at hand.
pub(crate) fn dialect(
    kind: BackendKind,
    sqlite: &'static str,
    postgres: &'static str,
) -> &'static str {
    match kind {
        BackendKind::Sqlite => sqlite,
        BackendKind::Postgres => postgres,
    }
}

/// The statement that opens a read-write transaction. SQLite's `BEGIN IMMEDIATE` takes the
/// write lock at once, so two writers queue on `busy_timeout` instead of one failing with
/// `SQLITE_BUSY` when it upgrades a read lock.
pub(crate) fn begin_write(kind: BackendKind) -> &'static str {
    dialect(kind, "BEGIN IMMEDIATE", "BEGIN")
}

impl Store {
    /// Connects to the database named by `url` and brings its schema up to date, with the
    /// default [`StoreOptions`].
    ///
    /// Accepted forms: `postgres://…` or `postgresql://…` (PostgreSQL); `sqlite://PATH`,
    /// `sqlite:PATH`, `sqlite::memory:` or a plain filesystem path (SQLite). An SQLite file
    /// and its directory are created when missing, and opened with the WAL journal, foreign
    /// keys on, a 30 s busy timeout and `synchronous = FULL` (reserved sequence numbers must
    /// survive a power cut, or a nonce could be reused).
    ///
    /// Errors: [`StoreError::InvalidUrl`], [`StoreError::Open`], [`StoreError::Migrate`].
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, &StoreOptions::default()).await
    }

    /// [`Store::open`] with explicit pool settings.
    pub async fn open_with(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        let shown = target::redact(url);
        let open_err = |source| StoreError::Open {
            url: shown.clone(),
            source,
        };
        let migrate_err = |source| StoreError::Migrate {
            url: shown.clone(),
            source,
        };
        match target::parse(url)? {
            target::Target::Sqlite { options, in_memory } => {
                if !in_memory {
                    target::create_parent_dir(options.get_filename())
                        .map_err(|e| open_err(sqlx::Error::Io(e)))?;
                }
                let pool_options = if in_memory {
                    // Every connection to `:memory:` would be its own database: keep exactly one,
                    // for ever.
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                } else {
                    SqlitePoolOptions::new().max_connections(opts.max_connections.unwrap_or(8))
                };
                let pool = pool_options
                    .acquire_timeout(opts.connect_timeout)
                    .connect_with(options)
                    .await
                    .map_err(open_err)?;
                if let Err(e) = migrations::migrator(migrations::SQLITE).run(&pool).await {
                    pool.close().await;
                    return Err(migrate_err(e));
                }
                Ok(Store {
                    backend: Backend::Sqlite(pool),
                })
            }
            target::Target::Postgres(options) => {
                let pool = PgPoolOptions::new()
                    .max_connections(opts.max_connections.unwrap_or(16))
                    .acquire_timeout(opts.connect_timeout)
                    .connect_with(options)
                    .await
                    .map_err(open_err)?;
                // sqlx holds an advisory lock while migrating, so servers of one domain
                // starting together migrate once.
                if let Err(e) = migrations::migrator(migrations::POSTGRES).run(&pool).await {
                    pool.close().await;
                    return Err(migrate_err(e));
                }
                Ok(Store {
                    backend: Backend::Postgres(pool),
                })
            }
        }
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Closes every connection (of every clone), waiting for calls in progress to finish.
    /// Calls made afterwards fail.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// Trims and lower-cases an address for storage and look-up.
pub(crate) fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Normalizes an address and checks it is one the store accepts: exactly one `@`, something
/// on both sides, no spaces or control characters, at most 254 bytes.
pub(crate) fn validate_email(email: &str) -> Result<String, StoreError> {
    let e = normalize_email(email);
    let bad = |reason| {
        Err(StoreError::InvalidEmail {
            email: email.to_owned(),
            reason,
        })
    };
    if e.is_empty() {
        return bad("it is empty");
    }
    if e.len() > 254 {
        return bad("it is longer than 254 bytes");
    }
    if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains spaces or control characters");
    }
    let Some((local, domain)) = e.split_once('@') else {
        return bad("it has no '@'");
    };
    if domain.contains('@') {
        return bad("it has more than one '@'");
    }
    if local.is_empty() {
        return bad("there is nothing before the '@'");
    }
    if domain.is_empty() {
        return bad("there is nothing after the '@'");
    }
    Ok(e)
}

/// Converts a `u64` to what the database holds, or says which number was too large.
pub(crate) fn to_db_u64(what: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_rules() {
        assert!(matches!(validate_email(" Bob@Example.COM "), Ok(e) if e == "bob@example.com"));
        for bad in ["", "bob", "@x", "bob@", "a@b@c", "a b@c", "a\u{7}@c"] {
            assert!(
                matches!(validate_email(bad), Err(StoreError::InvalidEmail { .. })),
                "{bad:?} accepted"
            );
        }
        let long = format!("{}@example.com", "a".repeat(243));
        assert_eq!(long.len(), 255);
        assert!(validate_email(&long).is_err());
        assert!(validate_email(&long[1..]).is_ok());
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
