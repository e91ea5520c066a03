//! The synchronization service's state: how each organizer database is synchronized for a
//! user or a group, the CalDAV/CardDAV collection and sync token per user and database, what
//! the server and the device hold of each record (its href and versions, never its content),
//! problems reported, and the newest wireless backup per user (sealed by the server).
//!
//! Must not touch: what a setting means or which one wins, the records themselves, the
//! backup's key (the synchronization service's).

use crate::groups::key;
use crate::{Store, StoreError, begin_write, normalize_email, now_ms, on_pool};

/// The organizer databases, as stored.
pub const SYNC_DATABASES: [&str; 4] = ["calendar", "contacts", "tasks", "memos"];
/// The directions, as stored.
pub const SYNC_DIRECTIONS: [&str; 2] = ["bidirectional", "server-to-device"];
/// The conflict rules, as stored.
pub const SYNC_CONFLICTS: [&str; 3] = ["server-wins", "device-wins", "newest-wins"];

/// How one database is synchronized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSetting {
    /// One of [`SYNC_DATABASES`].
    pub database: String,
    /// Synchronized at all.
    pub enabled: bool,
    /// One of [`SYNC_DIRECTIONS`].
    pub direction: String,
    /// One of [`SYNC_CONFLICTS`].
    pub conflict: String,
}

/// The settings that could apply to a user: their own, and each of their groups' by group
/// name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncCandidates {
    /// Set for the user.
    pub user: Vec<SyncSetting>,
    /// (group, its settings) for each of the user's groups that has any, by group name.
    pub groups: Vec<(String, Vec<SyncSetting>)>,
}

crate::row_struct! {
    /// What the server knows of one record.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SyncRecordRow {
        /// Its UID.
        pub uid: String,
        /// Its CalDAV/CardDAV resource (None: not on the server).
        pub href: Option<String>,
        /// The version of it on the server (None: not on the server).
        pub etag: Option<String>,
        /// The version the device holds (None: the device lacks it).
        pub device_etag: Option<String>,
        /// When the server first saw `etag` (unix ms).
        pub server_seen_at: i64,
        /// The record's own change time (LAST-MODIFIED, REV), unix ms.
        pub modified_ms: Option<i64>,
    }
}

crate::row_struct! {
    /// A record that could not be synchronized.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SyncProblem {
        /// Its number.
        pub id: i64,
        /// The database.
        pub database: String,
        /// The record's UID or CalDAV/CardDAV href.
        pub item: String,
        /// `server` (on the CalDAV/CardDAV server) or `device`.
        pub side: String,
        /// What is wrong.
        pub detail: String,
        /// When (unix ms).
        pub at: i64,
    }
}

/// The newest wireless backup of a user's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRow {
    /// The device it came from.
    pub pin: u32,
    /// When the device took it (unix ms).
    pub taken_at: i64,
    /// The settings, sealed by the synchronization service.
    pub sealed: Vec<u8>,
    /// When the server stored it (unix ms).
    pub stored_at: i64,
}

/// How many problems are kept per user (the oldest go).
const PROBLEMS_KEPT: i64 = 200;

fn check_setting(s: &SyncSetting) -> Result<(), StoreError> {
    let bad = |what: &'static str, v: &str, ok: &[&str]| StoreError::InvalidValue {
        what,
        value: v.to_owned(),
        allowed: ok.join(", "),
    };
    if !SYNC_DATABASES.contains(&s.database.as_str()) {
        return Err(bad("organizer database", &s.database, &SYNC_DATABASES));
    }
    if !SYNC_DIRECTIONS.contains(&s.direction.as_str()) {
        return Err(bad("direction", &s.direction, &SYNC_DIRECTIONS));
    }
    if !SYNC_CONFLICTS.contains(&s.conflict.as_str()) {
        return Err(bad("conflict rule", &s.conflict, &SYNC_CONFLICTS));
    }
    Ok(())
}

type SettingRow = (String, i64, String, String);

fn setting((database, enabled, direction, conflict): SettingRow) -> SyncSetting {
    SyncSetting {
        database,
        enabled: enabled != 0,
        direction,
        conflict,
    }
}

impl Store {
    /// Sets how `setting.database` is synchronized for a user.
    ///
    /// Errors: [`StoreError::NoSuchUser`], [`StoreError::InvalidValue`].
    pub async fn set_user_sync_setting(
        &self,
        email: &str,
        setting: &SyncSetting,
    ) -> Result<(), StoreError> {
        check_setting(setting)?;
        let user = self.user_id(email).await?;
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO user_sync_settings (user_id, database, enabled, direction, conflict, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, database) DO UPDATE SET \
                 enabled = excluded.enabled, direction = excluded.direction, \
                 conflict = excluded.conflict, updated_at = excluded.updated_at",
            )
            .bind(user)
            .bind(&setting.database)
            .bind(i64::from(setting.enabled))
            .bind(&setting.direction)
            .bind(&setting.conflict)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Sets how `setting.database` is synchronized for a group's members.
    ///
    /// Errors: [`StoreError::NoSuchGroup`], [`StoreError::InvalidValue`].
    pub async fn set_group_sync_setting(
        &self,
        group: &str,
        setting: &SyncSetting,
    ) -> Result<(), StoreError> {
        check_setting(setting)?;
        let group = self.group_id(group).await?;
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO group_sync_settings (group_id, database, enabled, direction, conflict, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (group_id, database) DO UPDATE SET \
                 enabled = excluded.enabled, direction = excluded.direction, \
                 conflict = excluded.conflict, updated_at = excluded.updated_at",
            )
            .bind(group)
            .bind(&setting.database)
            .bind(i64::from(setting.enabled))
            .bind(&setting.direction)
            .bind(&setting.conflict)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Removes a user's own setting for `database` (every database with `None`); how many
    /// went.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn clear_user_sync_setting(
        &self,
        email: &str,
        database: Option<&str>,
    ) -> Result<u64, StoreError> {
        let user = self.user_id(email).await?;
        Ok(on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM user_sync_settings WHERE user_id = $1 AND ($2 IS NULL OR database = $2)",
            )
            .bind(user)
            .bind(database)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// Removes a group's setting for `database` (every database with `None`); how many went.
    ///
    /// Errors: [`StoreError::NoSuchGroup`].
    pub async fn clear_group_sync_setting(
        &self,
        group: &str,
        database: Option<&str>,
    ) -> Result<u64, StoreError> {
        let group = self.group_id(group).await?;
        Ok(on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM group_sync_settings WHERE group_id = $1 AND ($2 IS NULL OR database = $2)",
            )
            .bind(group)
            .bind(database)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// A group's settings.
    ///
    /// Errors: [`StoreError::NoSuchGroup`].
    pub async fn group_sync_settings(&self, group: &str) -> Result<Vec<SyncSetting>, StoreError> {
        let group = self.group_id(group).await?;
        let rows: Vec<SettingRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT database, enabled, direction, conflict FROM group_sync_settings \
                 WHERE group_id = $1 ORDER BY database",
            )
            .bind(group)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(setting).collect())
    }

    /// The settings that could apply to a user.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn sync_candidates(&self, email: &str) -> Result<SyncCandidates, StoreError> {
        let user = self.user_id(email).await?;
        let own: Vec<SettingRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT database, enabled, direction, conflict FROM user_sync_settings \
                 WHERE user_id = $1 ORDER BY database",
            )
            .bind(user)
            .fetch_all(pool)
            .await?
        });
        let rows: Vec<(String, String, i64, String, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT g.name, s.database, s.enabled, s.direction, s.conflict \
                 FROM group_members m JOIN user_groups g ON g.id = m.group_id \
                 JOIN group_sync_settings s ON s.group_id = g.id \
                 WHERE m.user_id = $1 ORDER BY g.name_key, s.database",
            )
            .bind(user)
            .fetch_all(pool)
            .await?
        });
        let mut groups: Vec<(String, Vec<SyncSetting>)> = Vec::new();
        for (g, d, e, dir, c) in rows {
            let s = setting((d, e, dir, c));
            match groups.last_mut() {
                Some((name, list)) if key(name) == key(&g) => list.push(s),
                _ => groups.push((g, vec![s])),
            }
        }
        Ok(SyncCandidates {
            user: own.into_iter().map(setting).collect(),
            groups,
        })
    }

    /// A user's collection for `database`: its href and sync token.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn sync_collection(
        &self,
        email: &str,
        database: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let user = self.user_id(email).await?;
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT href, sync_token FROM sync_collections WHERE user_id = $1 AND database = $2",
            )
            .bind(user)
            .bind(database)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Records a user's collection for `database` and the sync token reached.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn set_sync_collection(
        &self,
        email: &str,
        database: &str,
        href: &str,
        token: Option<&str>,
    ) -> Result<(), StoreError> {
        let user = self.user_id(email).await?;
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO sync_collections (user_id, database, href, sync_token, synced_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, database) DO UPDATE SET \
                 href = excluded.href, sync_token = excluded.sync_token, synced_at = excluded.synced_at",
            )
            .bind(user)
            .bind(database)
            .bind(href)
            .bind(token)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// What the server knows of every record of a user's database, by UID.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn sync_records(
        &self,
        email: &str,
        database: &str,
    ) -> Result<Vec<SyncRecordRow>, StoreError> {
        let user = self.user_id(email).await?;
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT uid, href, etag, device_etag, server_seen_at, modified_ms FROM sync_records \
                 WHERE user_id = $1 AND database = $2 ORDER BY uid",
            )
            .bind(user)
            .bind(database)
            .fetch_all(pool)
            .await?
        }))
    }

    /// What the server knows of one record.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn sync_record(
        &self,
        email: &str,
        database: &str,
        uid: &str,
    ) -> Result<Option<SyncRecordRow>, StoreError> {
        let user = self.user_id(email).await?;
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT uid, href, etag, device_etag, server_seen_at, modified_ms FROM sync_records \
                 WHERE user_id = $1 AND database = $2 AND uid = $3",
            )
            .bind(user)
            .bind(database)
            .bind(uid)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Stores these rows (replacing those of the same UIDs), in one transaction.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn put_sync_records(
        &self,
        email: &str,
        database: &str,
        rows: &[SyncRecordRow],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let user = self.user_id(email).await?;
        on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            for r in rows {
                sqlx::query(
                    "INSERT INTO sync_records (user_id, database, uid, href, etag, device_etag, server_seen_at, modified_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id, database, uid) DO UPDATE SET \
                     href = excluded.href, etag = excluded.etag, device_etag = excluded.device_etag, \
                     server_seen_at = excluded.server_seen_at, modified_ms = excluded.modified_ms",
                )
                .bind(user)
                .bind(database)
                .bind(&r.uid)
                .bind(&r.href)
                .bind(&r.etag)
                .bind(&r.device_etag)
                .bind(r.server_seen_at)
                .bind(r.modified_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Forgets these records of a user's database.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn delete_sync_records(
        &self,
        email: &str,
        database: &str,
        uids: &[String],
    ) -> Result<(), StoreError> {
        if uids.is_empty() {
            return Ok(());
        }
        let user = self.user_id(email).await?;
        on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            for uid in uids {
                sqlx::query("DELETE FROM sync_records WHERE user_id = $1 AND database = $2 AND uid = $3")
                    .bind(user)
                    .bind(database)
                    .bind(uid)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A new device for the user holds nothing yet: forgets what the old one held (records
    /// the server does not have either go).
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn forget_device_records(&self, email: &str) -> Result<(), StoreError> {
        let user = self.user_id(email).await?;
        on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            sqlx::query("DELETE FROM sync_records WHERE user_id = $1 AND href IS NULL")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE sync_records SET device_etag = NULL WHERE user_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Reports a record that could not be synchronized (the newest 200 per user are kept).
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn add_sync_problem(
        &self,
        email: &str,
        database: &str,
        item: &str,
        side: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let user = self.user_id(email).await?;
        let item: String = item.chars().take(300).collect();
        let detail: String = detail.chars().take(1000).collect();
        on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            sqlx::query(
                "INSERT INTO sync_problems (user_id, database, item, side, detail, at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(user)
            .bind(database)
            .bind(&item)
            .bind(side)
            .bind(&detail)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM sync_problems WHERE user_id = $1 AND id NOT IN \
                 (SELECT id FROM sync_problems WHERE user_id = $1 ORDER BY id DESC LIMIT $2)",
            )
            .bind(user)
            .bind(PROBLEMS_KEPT)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A user's newest problems, newest first.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn sync_problems(
        &self,
        email: &str,
        limit: u32,
    ) -> Result<Vec<SyncProblem>, StoreError> {
        let user = self.user_id(email).await?;
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, database, item, side, detail, at FROM sync_problems \
                 WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(user)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        }))
    }

    /// Keeps `sealed` as the user's newest wireless backup, unless a newer one is kept.
    /// Whether it was kept.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn put_device_backup(
        &self,
        email: &str,
        pin: u32,
        taken_at: i64,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let user = self.user_id(email).await?;
        let n = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO device_backups (user_id, pin, taken_at, sealed, stored_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET \
                 pin = excluded.pin, taken_at = excluded.taken_at, sealed = excluded.sealed, \
                 stored_at = excluded.stored_at WHERE device_backups.taken_at <= excluded.taken_at",
            )
            .bind(user)
            .bind(i64::from(pin))
            .bind(taken_at)
            .bind(sealed)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// A user's newest wireless backup.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn device_backup(&self, email: &str) -> Result<Option<BackupRow>, StoreError> {
        let email = normalize_email(email);
        let row: Option<(i64, i64, Vec<u8>, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT b.pin, b.taken_at, b.sealed, b.stored_at FROM device_backups b \
                 JOIN users u ON u.id = b.user_id WHERE u.email = $1",
            )
            .bind(&email)
            .fetch_optional(pool)
            .await?
        });
        row.map(|(pin, taken_at, sealed, stored_at)| {
            Ok(BackupRow {
                pin: u32::try_from(pin).map_err(|_| StoreError::Corrupt {
                    what: format!("the PIN of a backup ({pin})"),
                })?,
                taken_at,
                sealed,
                stored_at,
            })
        })
        .transpose()
    }
}
