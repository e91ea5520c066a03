//! The server's own identity at the relay, and statistics counters.

use crate::model::ServerIdentityRow;
use crate::{ServerIdentity, Store, StoreError, dialect, on_pool};

/// Adds `$3` to counter `$2` of scope `$1`, creating it first if new (both dialects).
pub(crate) const BUMP_STAT: &str = "INSERT INTO statistics (scope, name, value) VALUES ($1, $2, $3) \
     ON CONFLICT (scope, name) DO UPDATE SET value = statistics.value + excluded.value";

/// [`BUMP_STAT`] for two different counters in one statement (`$1..$3`, `$4..$6`): the usual
/// pair, a user's counter and the whole server's.
pub(crate) const BUMP_STAT_PAIR: &str = "INSERT INTO statistics (scope, name, value) \
     VALUES ($1, $2, $3), ($4, $5, $6) \
     ON CONFLICT (scope, name) DO UPDATE SET value = statistics.value + excluded.value";

/// The counters to add, normalized and grouped for [`BUMP_STAT_PAIR`]: pairs of different
/// counters, then singles (PostgreSQL refuses one statement that updates a row twice).
pub(crate) fn stat_groups(counters: &[(&str, &str, i64)]) -> Vec<Vec<(String, String, i64)>> {
    let mut groups: Vec<Vec<(String, String, i64)>> = Vec::new();
    for (scope, name, by) in counters {
        let c = (crate::normalize_email(scope), (*name).to_owned(), *by);
        match groups.last_mut() {
            Some(g) if g.len() == 1 && (g[0].0 != c.0 || g[0].1 != c.1) => g.push(c),
            _ => groups.push(vec![c]),
        }
    }
    groups
}

/// Runs one group of [`stat_groups`] on `$exec` (a pool or a transaction).
macro_rules! bump_group {
    ($exec:expr, $group:expr) => {
        match $group.as_slice() {
            [(s1, n1, b1), (s2, n2, b2)] => {
                sqlx::query($crate::server::BUMP_STAT_PAIR)
                    .bind(s1)
                    .bind(n1)
                    .bind(*b1)
                    .bind(s2)
                    .bind(n2)
                    .bind(*b2)
                    .execute($exec)
                    .await?;
            }
            group => {
                for (s, n, b) in group {
                    sqlx::query($crate::server::BUMP_STAT)
                        .bind(s)
                        .bind(n)
                        .bind(*b)
                        .execute($exec)
                        .await?;
                }
            }
        }
    };
}
pub(crate) use bump_group;

impl Store {
    /// The server secret called `name`, made by `make` and stored on first use. When two
    /// servers of one domain race, both get the value that was stored first.
    pub async fn secret_or_insert(
        &self,
        name: &str,
        make: impl FnOnce() -> Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        if let Some(v) = self.secret(name).await? {
            return Ok(v);
        }
        let value = make();
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(&value)
            .bind(crate::now_ms())
            .execute(pool)
            .await?;
        });
        self.secret(name).await?.ok_or(StoreError::Corrupt {
            what: "server secret vanished after insert".into(),
        })
    }

    /// The server secret called `name`, if it was made.
    pub async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT value FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(v,)| v))
    }

    /// The server's SRP identity and relay, if set.
    pub async fn server_identity(&self) -> Result<Option<ServerIdentity>, StoreError> {
        let row: Option<ServerIdentityRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT srp_id, srp_key, relay_addr, relay_fingerprint \
                 FROM server_identity WHERE id = 1",
            )
            .fetch_optional(pool)
            .await?
        });
        row.map(ServerIdentity::try_from).transpose()
    }

    /// Sets the server's SRP identity and relay, replacing what was there.
    pub async fn set_server_identity(&self, id: &ServerIdentity) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO server_identity (id, srp_id, srp_key, relay_addr, relay_fingerprint) \
                 VALUES (1, $1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET srp_id = excluded.srp_id, \
                     srp_key = excluded.srp_key, relay_addr = excluded.relay_addr, \
                     relay_fingerprint = excluded.relay_fingerprint",
            )
            .bind(i64::from(id.srp_id))
            .bind(&id.srp_key)
            .bind(&id.relay_addr)
            .bind(id.relay_fingerprint.as_deref())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Adds `by` (which may be negative) to the counter `name` of `scope` ("global" or a
    /// user's address; trimmed and lower-cased), creating it at 0 first if new.
    pub async fn bump_stat(&self, scope: &str, name: &str, by: i64) -> Result<(), StoreError> {
        let scope = crate::normalize_email(scope);
        on_pool!(self, pool => {
            sqlx::query(
                BUMP_STAT,
            )
            .bind(&scope)
            .bind(name)
            .bind(by)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Adds to several counters (scope, name, amount) in one commit, each as
    /// [`Store::bump_stat`] does; two counters (a user's and the whole server's) take one
    /// statement.
    pub async fn bump_stats(&self, counters: &[(&str, &str, i64)]) -> Result<(), StoreError> {
        let groups = stat_groups(counters);
        on_pool!(self, pool, k => {
            if let [group] = groups.as_slice() {
                bump_group!(pool, group);
            } else if !groups.is_empty() {
                let mut tx = pool.begin_with(crate::begin_write(k)).await?;
                for group in &groups {
                    bump_group!(&mut *tx, group);
                }
                tx.commit().await?;
            }
        });
        Ok(())
    }

    /// The counters of `scope` as (name, value), ordered by name (byte order on both
    /// backends). Empty for a scope never bumped.
    pub async fn stats(&self, scope: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let scope = crate::normalize_email(scope);
        let rows = on_pool!(self, pool, kind => {
            sqlx::query_as(dialect(
                kind,
                "SELECT name, value FROM statistics WHERE scope = $1 ORDER BY name",
                "SELECT name, value FROM statistics WHERE scope = $1 ORDER BY name COLLATE \"C\"",
            ))
            .bind(&scope)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Removes every counter of `scope` (BES's "reset statistics"); returns how many.
    pub async fn clear_stats(&self, scope: &str) -> Result<u64, StoreError> {
        let scope = crate::normalize_email(scope);
        let deleted = on_pool!(self, pool => {
            sqlx::query("DELETE FROM statistics WHERE scope = $1")
                .bind(&scope)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted)
    }
}
