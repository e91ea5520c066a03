//! The configuration database under test: a SQLite file in a temp dir, or a fresh PostgreSQL
//! database on the server at 127.0.0.1:5432 (trust auth), chosen by `BRAMBLE_TEST_DB`.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};
use sqlx::{Connection, Executor, PgConnection};

/// Where the PostgreSQL server for tests listens; override with `BRAMBLE_TEST_PG_ADMIN_URL`.
pub const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which backend the tests of this run use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// A SQLite file in a temporary directory (the embedded default).
    Sqlite,
    /// A fresh database on the PostgreSQL server.
    Postgres,
}

impl DbKind {
    /// Reads `BRAMBLE_TEST_DB` (`sqlite`, the default, or `postgres`).
    ///
    /// # Panics
    /// On any other value, so a typo in CI never silently tests the wrong backend.
    pub fn from_env() -> DbKind {
        match std::env::var("BRAMBLE_TEST_DB").as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => DbKind::Sqlite,
            Ok("postgres") | Ok("postgresql") => DbKind::Postgres,
            Ok(other) => panic!("BRAMBLE_TEST_DB={other:?}: expected `sqlite` or `postgres`"),
        }
    }
}

/// A database that exists for one test and is removed when dropped.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    kind: DbKind,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn admin_url() -> String {
    std::env::var("BRAMBLE_TEST_PG_ADMIN_URL").unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_owned())
}

impl TestDb {
    /// A fresh database of the kind `BRAMBLE_TEST_DB` names.
    pub async fn new() -> Result<TestDb> {
        Self::of_kind(DbKind::from_env()).await
    }

    /// A fresh database of the given kind.
    pub async fn of_kind(kind: DbKind) -> Result<TestDb> {
        match kind {
            DbKind::Sqlite => {
                let dir = tempfile::tempdir().context("creating a temp dir for SQLite")?;
                let path = dir.path().join("bramble.db");
                Ok(TestDb {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    kind,
                    _dir: Some(dir),
                    pg: None,
                })
            }
            DbKind::Postgres => {
                let admin = admin_url();
                let name = format!(
                    "bramble_t_{}_{}_{:08x}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    rand::random::<u32>()
                );
                let mut conn = PgConnection::connect(&admin).await.with_context(|| {
                    format!(
                        "connecting to PostgreSQL at {admin} (is the server running? \
                         Debian package: postgresql; start it with \
                         `pg_ctlcluster $(ls /etc/postgresql) main start`)"
                    )
                })?;
                let sql = format!("CREATE DATABASE \"{name}\"");
                conn.execute(sqlx::AssertSqlSafe(sql))
                    .await
                    .with_context(|| format!("creating test database {name}"))?;
                conn.close().await.ok();
                let Some((base, _db)) = admin.rsplit_once('/') else {
                    bail!("BRAMBLE_TEST_PG_ADMIN_URL {admin:?} has no database part");
                };
                Ok(TestDb {
                    url: format!("{base}/{name}"),
                    kind,
                    _dir: None,
                    pg: Some((admin, name)),
                })
            }
        }
    }

    /// The URL to hand to the store (`sqlite://…` or `postgres://…`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which backend this is.
    pub fn kind(&self) -> DbKind {
        self.kind
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop may run inside a runtime: use a thread with its own.
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                conn.execute(sqlx::AssertSqlSafe(sql)).await.ok()?;
                Some(())
            })
        })
        .join();
        let _ = joined;
    }
}
