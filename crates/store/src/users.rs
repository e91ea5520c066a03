//! Users and their status timeline.

use crate::model::{StatusRow, UserRow, try_collect};
use crate::{
    StatusEvent, Store, StoreError, User, UserStatus, begin_write, dialect, normalize_email,
    now_ms, on_pool, validate_email,
};

/// The columns of [`UserRow`], from `users u`.
macro_rules! user_select {
    () => {
        "SELECT u.email, u.display_name, u.status, u.status_reason, u.status_at, u.created_at, \
         EXISTS (SELECT 1 FROM activation a WHERE a.user_id = u.id) AS has_activation, \
         u.directory_id FROM users u "
    };
}

impl Store {
    /// Adds a user, in status [`UserStatus::Initializing`] (also the first entry of their
    /// timeline). The address is trimmed and lower-cased.
    ///
    /// Errors: [`StoreError::InvalidEmail`], [`StoreError::UserExists`].
    pub async fn add_user(
        &self,
        email: &str,
        display_name: Option<&str>,
    ) -> Result<User, StoreError> {
        self.insert_user(email, display_name, None).await
    }

    /// Adds a user from a directory entry, keeping the entry's stable identifier so later
    /// directory synchronizations find the user again; otherwise as [`Store::add_user`].
    ///
    /// Errors: [`StoreError::InvalidEmail`], [`StoreError::UserExists`],
    /// [`StoreError::DirectoryIdInUse`].
    pub async fn add_user_from_directory(
        &self,
        email: &str,
        display_name: Option<&str>,
        directory_id: &str,
    ) -> Result<User, StoreError> {
        self.insert_user(email, display_name, Some(directory_id))
            .await
    }

    async fn insert_user(
        &self,
        email: &str,
        display_name: Option<&str>,
        directory_id: Option<&str>,
    ) -> Result<User, StoreError> {
        let email = validate_email(email)?;
        let now = now_ms();
        let status = UserStatus::Initializing;
        on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            if let Some(d) = directory_id {
                let holder: Option<String> =
                    sqlx::query_scalar("SELECT email FROM users WHERE directory_id = $1")
                        .bind(d)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(holder) = holder {
                    return Err(StoreError::DirectoryIdInUse {
                        directory_id: d.to_owned(),
                        email: holder,
                    });
                }
            }
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO users (email, display_name, status, status_at, created_at, \
                 directory_id) VALUES ($1, $2, $3, $4, $4, $5) \
                 ON CONFLICT (email) DO NOTHING RETURNING id",
            )
            .bind(&email)
            .bind(display_name)
            .bind(status.as_db_str())
            .bind(now)
            .bind(directory_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else {
                return Err(StoreError::UserExists { email });
            };
            sqlx::query(
                "INSERT INTO user_status_history (user_id, status, reason, at) \
                 VALUES ($1, $2, NULL, $3)",
            )
            .bind(id)
            .bind(status.as_db_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(User {
            email,
            display_name: display_name.map(str::to_owned),
            status,
            status_reason: None,
            status_at_ms: now,
            created_at_ms: now,
            has_activation_password: false,
            directory_id: directory_id.map(str::to_owned),
        })
    }

    /// The user added from (or linked to) this directory entry, if there is one.
    pub async fn user_by_directory_id(
        &self,
        directory_id: &str,
    ) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(user_select!(), "WHERE u.directory_id = $1"))
                .bind(directory_id)
                .fetch_optional(pool)
                .await?
        });
        row.map(User::try_from).transpose()
    }

    /// Links a user to a directory entry (`None`: unlinks them).
    ///
    /// Errors: [`StoreError::NoSuchUser`], [`StoreError::DirectoryIdInUse`] when another user
    /// holds the entry.
    pub async fn set_directory_id(
        &self,
        email: &str,
        directory_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let email = normalize_email(email);
        on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            if let Some(d) = directory_id {
                let holder: Option<String> = sqlx::query_scalar(
                    "SELECT email FROM users WHERE directory_id = $1 AND email <> $2",
                )
                .bind(d)
                .bind(&email)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(holder) = holder {
                    return Err(StoreError::DirectoryIdInUse {
                        directory_id: d.to_owned(),
                        email: holder,
                    });
                }
            }
            let n = sqlx::query("UPDATE users SET directory_id = $2 WHERE email = $1")
                .bind(&email)
                .bind(directory_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::NoSuchUser { email });
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Sets (or clears) a user's display name.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn set_display_name(
        &self,
        email: &str,
        display_name: Option<&str>,
    ) -> Result<(), StoreError> {
        let email = normalize_email(email);
        let n = on_pool!(self, pool => {
            sqlx::query("UPDATE users SET display_name = $2 WHERE email = $1")
                .bind(&email)
                .bind(display_name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NoSuchUser { email });
        }
        Ok(())
    }

    /// Gives a user a new address (their directory entry's changed, or an administrator
    /// changed it), keeping everything that is theirs: device, mail, settings, history.
    /// Their statistics follow them. Returns the user as now stored.
    ///
    /// What the running server holds by address (the mailbox watcher, a mailbox password
    /// sealed to the address, the organizer worker) is the caller's to move.
    ///
    /// Errors: [`StoreError::InvalidEmail`] for the new address, [`StoreError::NoSuchUser`],
    /// [`StoreError::UserExists`] when another user has the new address.
    pub async fn change_user_email(
        &self,
        email: &str,
        new_email: &str,
    ) -> Result<User, StoreError> {
        let email = normalize_email(email);
        let new_email = validate_email(new_email)?;
        if new_email != email {
            on_pool!(self, pool, kind => {
                let mut tx = pool.begin_with(begin_write(kind)).await?;
                let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                    .bind(&new_email)
                    .fetch_optional(&mut *tx)
                    .await?;
                if taken.is_some() {
                    return Err(StoreError::UserExists { email: new_email });
                }
                let n = sqlx::query("UPDATE users SET email = $2 WHERE email = $1")
                    .bind(&email)
                    .bind(&new_email)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NoSuchUser { email });
                }
                // Statistics are kept by address; what an earlier holder of the new address
                // left behind is not this user's.
                sqlx::query("DELETE FROM statistics WHERE scope = $1")
                    .bind(&new_email)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE statistics SET scope = $2 WHERE scope = $1")
                    .bind(&email)
                    .bind(&new_email)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            });
        }
        self.user(&new_email)
            .await?
            .ok_or(StoreError::NoSuchUser { email: new_email })
    }

    /// The user with this address (any case), if there is one.
    pub async fn user(&self, email: &str) -> Result<Option<User>, StoreError> {
        let email = normalize_email(email);
        let row: Option<UserRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(user_select!(), "WHERE u.email = $1"))
                .bind(&email)
                .fetch_optional(pool)
                .await?
        });
        row.map(User::try_from).transpose()
    }

    /// Every user, ordered by address (byte order, the same on both backends).
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = on_pool!(self, pool, kind => {
            sqlx::query_as(dialect(
                kind,
                concat!(user_select!(), "ORDER BY u.email"),
                concat!(user_select!(), "ORDER BY u.email COLLATE \"C\""),
            ))
            .fetch_all(pool)
            .await?
        });
        try_collect(rows)
    }

    /// Removes a user with their device, activation password, status timeline and
    /// statistics. `false` if there was no such user.
    pub async fn delete_user(&self, email: &str) -> Result<bool, StoreError> {
        let email = normalize_email(email);
        on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            // Devices, activation and history go by ON DELETE CASCADE.
            let deleted = sqlx::query("DELETE FROM users WHERE email = $1")
                .bind(&email)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM statistics WHERE scope = $1")
                .bind(&email)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(true)
    }

    /// Sets a user's status (and why), and appends it to their timeline, in one transaction.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn set_user_status(
        &self,
        email: &str,
        status: UserStatus,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let email = normalize_email(email);
        let now = now_ms();
        on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            let id: Option<i64> = sqlx::query_scalar(
                "UPDATE users SET status = $2, status_reason = $3, status_at = $4 \
                 WHERE email = $1 RETURNING id",
            )
            .bind(&email)
            .bind(status.as_db_str())
            .bind(reason)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else {
                return Err(StoreError::NoSuchUser { email });
            };
            sqlx::query(
                "INSERT INTO user_status_history (user_id, status, reason, at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(status.as_db_str())
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A user's status timeline, oldest first; it starts with `Initializing` when the user
    /// was added.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn status_history(&self, email: &str) -> Result<Vec<StatusEvent>, StoreError> {
        let email = normalize_email(email);
        let rows: Vec<StatusRow> = on_pool!(self, pool => {
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                .bind(&email)
                .fetch_optional(pool)
                .await?;
            let Some(id) = id else {
                return Err(StoreError::NoSuchUser { email });
            };
            sqlx::query_as(
                "SELECT status, reason, at FROM user_status_history \
                 WHERE user_id = $1 ORDER BY at, id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        try_collect(rows)
    }

    /// Whether a user has this (already normalized) address; tells errors apart after a
    /// statement matched no row.
    pub(crate) async fn user_exists(&self, email: &str) -> Result<bool, StoreError> {
        let id: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(pool)
                .await?
        });
        Ok(id.is_some())
    }
}
