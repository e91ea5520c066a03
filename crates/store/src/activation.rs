//! Activation passwords, kept as OPAQUE registration records: the password itself never
//! reaches the store.

use crate::model::ActivationRow;
use crate::{Activation, Store, StoreError, normalize_email, now_ms, on_pool};

impl Store {
    /// Stores the OPAQUE registration record of a user's new activation password, replacing
    /// any earlier one and resetting the count of failed attempts.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn set_activation(
        &self,
        email: &str,
        record: &[u8],
        expires_at_ms: i64,
        max_attempts: u32,
    ) -> Result<(), StoreError> {
        let email = normalize_email(email);
        let now = now_ms();
        let done = on_pool!(self, pool => {
            // (SQLite needs the WHERE of INSERT … SELECT before ON CONFLICT; it has one.)
            sqlx::query(
                "INSERT INTO activation \
                     (user_id, record, expires_at, failed_attempts, max_attempts, created_at) \
                 SELECT id, $2, $3, 0, $4, $5 FROM users WHERE email = $1 \
                 ON CONFLICT (user_id) DO UPDATE SET \
                     record = excluded.record, expires_at = excluded.expires_at, \
                     failed_attempts = 0, max_attempts = excluded.max_attempts, \
                     created_at = excluded.created_at",
            )
            .bind(&email)
            .bind(record)
            .bind(expires_at_ms)
            .bind(i64::from(max_attempts))
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NoSuchUser { email });
        }
        Ok(())
    }

    /// A user's pending activation password, if one is set (and the user exists). It is
    /// returned even when expired or out of attempts: the server decides.
    pub async fn activation(&self, email: &str) -> Result<Option<Activation>, StoreError> {
        let email = normalize_email(email);
        let row: Option<ActivationRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT a.record, a.expires_at, a.failed_attempts, a.max_attempts, a.created_at \
                 FROM activation a JOIN users u ON u.id = a.user_id WHERE u.email = $1",
            )
            .bind(&email)
            .fetch_optional(pool)
            .await?
        });
        row.map(Activation::try_from).transpose()
    }

    /// Counts one wrong activation password, atomically, and returns the new count.
    ///
    /// Errors: [`StoreError::NoActivation`] (no password set), [`StoreError::NoSuchUser`].
    pub async fn count_failed_activation(&self, email: &str) -> Result<u32, StoreError> {
        let email = normalize_email(email);
        let count: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "UPDATE activation SET failed_attempts = failed_attempts + 1 \
                 WHERE user_id = (SELECT id FROM users WHERE email = $1) \
                 RETURNING failed_attempts",
            )
            .bind(&email)
            .fetch_optional(pool)
            .await?
        });
        match count {
            Some(n) => u32::try_from(n).map_err(|_| StoreError::Corrupt {
                what: format!("activation.failed_attempts = {n}"),
            }),
            None if self.user_exists(&email).await? => Err(StoreError::NoActivation { email }),
            None => Err(StoreError::NoSuchUser { email }),
        }
    }

    /// Removes a user's activation password, if one is set (after activation, or when the
    /// administrator withdraws it).
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn clear_activation(&self, email: &str) -> Result<(), StoreError> {
        let email = normalize_email(email);
        let deleted = on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM activation WHERE user_id = (SELECT id FROM users WHERE email = $1)",
            )
            .bind(&email)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if deleted == 0 && !self.user_exists(&email).await? {
            return Err(StoreError::NoSuchUser { email });
        }
        Ok(())
    }

    /// Records that the activation request with this hash (SHA-256 of its ETP.DAT) was acted
    /// on. Returns `false` when it was recorded before: a replayed activation mail.
    pub async fn record_activation_request(
        &self,
        hash: &[u8],
        email: &str,
        pin: u32,
    ) -> Result<bool, StoreError> {
        let email = crate::normalize_email(email);
        let done = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO activation_requests (hash, email, pin, seen_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (hash) DO NOTHING",
            )
            .bind(hash)
            .bind(&email)
            .bind(i64::from(pin))
            .bind(crate::now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Stores a user's mailbox password, already encrypted by the server (`sealed`), replacing
    /// any earlier one.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn set_mail_credential(&self, email: &str, sealed: &[u8]) -> Result<(), StoreError> {
        let email = normalize_email(email);
        let done = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO mail_credentials (user_id, sealed, updated_at) \
                 SELECT id, $2, $3 FROM users WHERE email = $1 \
                 ON CONFLICT (user_id) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            )
            .bind(&email)
            .bind(sealed)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NoSuchUser { email });
        }
        Ok(())
    }

    /// Every stored (encrypted) mailbox password, by the user's address.
    pub async fn mail_credentials(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows: Vec<(String, Vec<u8>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT u.email, c.sealed FROM mail_credentials c JOIN users u ON u.id = c.user_id \
                 ORDER BY u.email",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}
