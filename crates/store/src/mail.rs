//! Push mail: the RefID map (which mailbox message each forwarded item is, and whether the
//! device confirmed it), how far each IMAP folder has been looked through, the outbox of
//! messages sent from devices, and each user's mail settings.
//!
//! What makes delivery exactly-once lives here: a message found again in the mailbox after a
//! crash meets the unique `(user, folder, source_key)` and keeps its RefID; a submission the
//! device repeats meets the unique `(user, PIN, client_id)` and is not queued twice.
//!
//! Reconciliation after forwarding (flags, moves, the device's queued changes) is
//! `mail_sync`'s.
//!
//! Must not touch: what an item or a submission contains (encoded protobuf, opaque bytes here).

use crate::{Store, StoreError, normalize_email, now_ms, on_pool, to_db_u64};

/// A message to record as forwarded to a user's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMailItem {
    /// The user.
    pub email: String,
    /// The mailbox folder, e.g. `INBOX`.
    pub folder: String,
    /// Names the message in its mail store: `imap:UIDVALIDITY:UID` or `maildir:NAME`.
    pub source_key: String,
    /// IMAP UIDVALIDITY, when the store is IMAP.
    pub uid_validity: Option<u32>,
    /// IMAP UID, when the store is IMAP.
    pub uid: Option<u32>,
    /// The message's Message-ID.
    pub message_id: Option<String>,
    /// The encoded item as the device gets it (without RefID).
    pub item: Vec<u8>,
    /// The message is read (IMAP `\Seen`).
    pub seen: bool,
    /// The message is flagged (IMAP `\Flagged`).
    pub flagged: bool,
}

crate::row_struct! {
    /// A forwarded message as stored.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct MailItemRow {
        /// The RefID.
        pub ref_id: i64,
        /// The user.
        pub email: String,
        /// The folder.
        pub folder: String,
        /// See [`NewMailItem::source_key`].
        pub source_key: String,
        /// IMAP UIDVALIDITY.
        pub uid_validity: Option<i64>,
        /// IMAP UID.
        pub uid: Option<i64>,
        /// Message-ID.
        pub message_id: Option<String>,
        /// The encoded item.
        pub item: Vec<u8>,
        /// `pending`, `delivered` or `removed`.
        pub state: String,
        /// Read, as last seen in the mailbox or asked for by the device.
        pub seen: bool,
        /// Flagged, as last seen in the mailbox or asked for by the device.
        pub flagged: bool,
        /// When it was recorded.
        pub created_at: i64,
        /// When it was last handed to the relay.
        pub sent_at: Option<i64>,
        /// How many times it was handed to the relay.
        pub sent_count: i64,
        /// When the relay last reported it queued or delivered.
        pub relayed_at: Option<i64>,
        /// When the device confirmed it.
        pub confirmed_at: Option<i64>,
    }
}

/// Selects [`MailItemRow`]s from `mail_items i` joined to `users u`.
macro_rules! item_select {
    () => {
        "SELECT i.ref_id, u.email, i.folder, i.source_key, i.uid_validity, i.uid, \
         i.message_id, i.item, i.state, (i.seen <> 0) AS seen, (i.flagged <> 0) AS flagged, \
         i.created_at, i.sent_at, i.sent_count, i.relayed_at, i.confirmed_at \
         FROM mail_items i JOIN users u ON u.id = i.user_id "
    };
}
pub(crate) use item_select;

crate::row_struct! {
    /// A submission from a device as stored in the outbox.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct OutboxRow {
        /// The row's id.
        pub id: i64,
        /// The sender.
        pub email: String,
        /// The device that sent it.
        pub pin: i64,
        /// The device's id for it.
        pub client_id: i64,
        /// The encoded submission.
        pub request: Vec<u8>,
        /// `queued`, `sending`, `sent` or `failed`.
        pub state: String,
        /// The Message-ID it was (or will be) sent with.
        pub message_id: Option<String>,
        /// Why it failed, or the last transient error.
        pub error: Option<String>,
        /// How many times sending was tried.
        pub attempts: i64,
        /// When it was stored.
        pub created_at: i64,
        /// When its state last changed.
        pub updated_at: i64,
    }
}

/// The states an outbox row can be in, in the order they follow each other.
pub const OUTBOX_STATES: [&str; 4] = ["queued", "sending", "sent", "failed"];

/// Selects [`OutboxRow`]s from `mail_outbox o` joined to `users u`.
macro_rules! outbox_select {
    () => {
        "SELECT o.id, u.email, o.pin, o.client_id, o.request, o.state, o.message_id, o.error, \
         o.attempts, o.created_at, o.updated_at FROM mail_outbox o JOIN users u ON u.id = o.user_id "
    };
}

/// A user's mail settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MailSettings {
    /// Forward new mail to the device.
    pub push: bool,
    /// Keep a copy of mail sent from the device in the Sent folder.
    pub save_sent: bool,
    /// Reconcile read/unread, flags, deletes and moves both ways.
    pub reconcile: bool,
}

impl Default for MailSettings {
    fn default() -> MailSettings {
        MailSettings {
            push: true,
            save_sent: true,
            reconcile: true,
        }
    }
}

/// The id of the user `$email` (normalized), or [`StoreError::NoSuchUser`]; inside `on_pool!`.
macro_rules! user_id {
    ($pool:expr, $email:expr) => {{
        let id: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE email = $1")
            .bind($email)
            .fetch_optional($pool)
            .await?;
        match id {
            Some((id,)) => id,
            None => {
                return Err(StoreError::NoSuchUser {
                    email: $email.to_owned(),
                });
            }
        }
    }};
}
pub(crate) use user_id;

/// How far one folder of a mailbox has been looked through ([`Store::mail_cursor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailCursor {
    /// The folder's IMAP UIDVALIDITY the other two numbers belong to.
    pub uid_validity: u32,
    /// The first UID not yet looked at.
    pub next_uid: u32,
    /// The HIGHESTMODSEQ (RFC 7162 CONDSTORE) the folder's flags were reconciled up to;
    /// `None` when never, or the server has no CONDSTORE.
    pub highest_modseq: Option<u64>,
}

impl Store {
    /// How far `folder` of `email`'s mailbox has been looked through; `None` when it never
    /// was.
    pub async fn mail_cursor(
        &self,
        email: &str,
        folder: &str,
    ) -> Result<Option<MailCursor>, StoreError> {
        let email = normalize_email(email);
        let row: Option<(i64, i64, Option<i64>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT c.uid_validity, c.next_uid, c.highest_modseq FROM mail_cursors c \
                 JOIN users u ON u.id = c.user_id WHERE u.email = $1 AND c.folder = $2",
            )
            .bind(&email)
            .bind(folder)
            .fetch_optional(pool)
            .await?
        });
        let Some((v, n, m)) = row else {
            return Ok(None);
        };
        let corrupt = |what: &str, value: i64| StoreError::Corrupt {
            what: format!("mail_cursors.{what} = {value}"),
        };
        Ok(Some(MailCursor {
            uid_validity: u32::try_from(v).map_err(|_| corrupt("uid_validity", v))?,
            next_uid: u32::try_from(n).map_err(|_| corrupt("next_uid", n))?,
            highest_modseq: m
                .map(|m| u64::try_from(m).map_err(|_| corrupt("highest_modseq", m)))
                .transpose()?,
        }))
    }

    /// Records how far `folder` has been looked through. A lower `next_uid` under the same
    /// UIDVALIDITY never replaces a higher one; a different UIDVALIDITY replaces both, and
    /// forgets the HIGHESTMODSEQ (it belonged to the old one).
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn set_mail_cursor(
        &self,
        email: &str,
        folder: &str,
        uid_validity: u32,
        next_uid: u32,
    ) -> Result<(), StoreError> {
        let email = normalize_email(email);
        on_pool!(self, pool => {
            let user = user_id!(pool, &email);
            sqlx::query(
                "INSERT INTO mail_cursors (user_id, folder, uid_validity, next_uid, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (user_id, folder) DO UPDATE SET \
                   next_uid = CASE WHEN mail_cursors.uid_validity = excluded.uid_validity \
                     AND mail_cursors.next_uid > excluded.next_uid \
                     THEN mail_cursors.next_uid ELSE excluded.next_uid END, \
                   highest_modseq = CASE WHEN mail_cursors.uid_validity = excluded.uid_validity \
                     THEN mail_cursors.highest_modseq ELSE NULL END, \
                   uid_validity = excluded.uid_validity, updated_at = excluded.updated_at",
            )
            .bind(user)
            .bind(folder)
            .bind(i64::from(uid_validity))
            .bind(i64::from(next_uid))
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records a message as forwarded to the user's device and gives its RefID. A message
    /// already recorded (same user, folder and source key) keeps its RefID, its state and its
    /// flags: the answer is `(ref_id, false)`.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn add_mail_item(&self, item: &NewMailItem) -> Result<(i64, bool), StoreError> {
        let email = normalize_email(&item.email);
        let now = now_ms();
        let out = on_pool!(self, pool => {
            let user = user_id!(pool, &email);
            let inserted: Option<(i64,)> = sqlx::query_as(
                "INSERT INTO mail_items \
                 (user_id, folder, source_key, uid_validity, uid, message_id, item, seen, flagged, \
                  created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (user_id, folder, source_key) DO NOTHING RETURNING ref_id",
            )
            .bind(user)
            .bind(&item.folder)
            .bind(&item.source_key)
            .bind(item.uid_validity.map(i64::from))
            .bind(item.uid.map(i64::from))
            .bind(item.message_id.as_deref())
            .bind(&item.item)
            .bind(i64::from(item.seen))
            .bind(i64::from(item.flagged))
            .bind(now)
            .fetch_optional(pool)
            .await?;
            match inserted {
                Some((id,)) => (id, true),
                None => {
                    let (id,): (i64,) = sqlx::query_as(
                        "SELECT ref_id FROM mail_items \
                         WHERE user_id = $1 AND folder = $2 AND source_key = $3",
                    )
                    .bind(user)
                    .bind(&item.folder)
                    .bind(&item.source_key)
                    .fetch_one(pool)
                    .await?;
                    (id, false)
                }
            }
        });
        Ok(out)
    }

    /// The forwarded message `ref_id` of `email`; `None` if there is none (or it is another
    /// user's).
    pub async fn mail_item(
        &self,
        email: &str,
        ref_id: i64,
    ) -> Result<Option<MailItemRow>, StoreError> {
        let email = normalize_email(email);
        let row = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                item_select!(),
                "WHERE i.ref_id = $1 AND u.email = $2"
            ))
            .bind(ref_id)
            .bind(&email)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// The forwarded message recorded under `source_key` in `folder` of `email`.
    pub async fn mail_item_by_source(
        &self,
        email: &str,
        folder: &str,
        source_key: &str,
    ) -> Result<Option<MailItemRow>, StoreError> {
        let email = normalize_email(email);
        let row = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                item_select!(),
                "WHERE u.email = $1 AND i.folder = $2 AND i.source_key = $3"
            ))
            .bind(&email)
            .bind(folder)
            .bind(source_key)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// Pending items whose last send the relay never reported (or that were never sent),
    /// oldest first, at most `limit`: what a server that has just started sends again.
    pub async fn mail_items_unrelayed(&self, limit: u32) -> Result<Vec<MailItemRow>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                item_select!(),
                "WHERE i.state = 'pending' AND (i.sent_at IS NULL OR i.relayed_at IS NULL) \
                 ORDER BY i.ref_id LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Pending items last sent before `before_ms` (or never sent), oldest first, at most
    /// `limit`: what is resent for want of a confirmation.
    pub async fn mail_items_due(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<MailItemRow>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                item_select!(),
                "WHERE i.state = 'pending' AND (i.sent_at IS NULL OR i.sent_at < $1) \
                 ORDER BY i.ref_id LIMIT $2"
            ))
            .bind(before_ms)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Records that item `ref_id` was handed to the relay as frame `seq`.
    pub async fn mark_mail_sent(&self, ref_id: i64, seq: u64) -> Result<(), StoreError> {
        let seq = to_db_u64("sequence number", seq)?;
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE mail_items SET sent_at = $1, sent_seq = $2, sent_count = sent_count + 1, \
                 relayed_at = NULL WHERE ref_id = $3",
            )
            .bind(now_ms())
            .bind(seq)
            .bind(ref_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records the relay's report that frame `seq` to `email`'s device was queued or
    /// delivered; returns the RefID it carried, if it was a mail item.
    ///
    /// A re-activated device counts its sequence numbers from the start again, so an item sent
    /// to the old device may hold the same `seq`: only the one sent last is marked.
    pub async fn mark_mail_relayed(
        &self,
        email: &str,
        seq: u64,
    ) -> Result<Option<i64>, StoreError> {
        let email = normalize_email(email);
        let seq = to_db_u64("sequence number", seq)?;
        let row: Option<(i64,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "UPDATE mail_items SET relayed_at = $1 WHERE ref_id = ( \
                   SELECT i.ref_id FROM mail_items i JOIN users u ON u.id = i.user_id \
                   WHERE u.email = $3 AND i.sent_seq = $2 \
                   ORDER BY i.sent_at DESC, i.ref_id DESC LIMIT 1) RETURNING ref_id",
            )
            .bind(now_ms())
            .bind(seq)
            .bind(&email)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(r,)| r))
    }

    /// Records the device's confirmation of `ref_ids` (of `email`); returns how many were
    /// pending until now (a repeated confirmation counts 0).
    pub async fn confirm_mail(&self, email: &str, ref_ids: &[i64]) -> Result<u64, StoreError> {
        let email = normalize_email(email);
        let now = now_ms();
        let mut changed = 0;
        on_pool!(self, pool => {
            let user = user_id!(pool, &email);
            for chunk in ref_ids.chunks(500) {
                let mut q = sqlx::QueryBuilder::new(
                    "UPDATE mail_items SET state = 'delivered', confirmed_at = ",
                );
                q.push_bind(now);
                q.push(" WHERE state = 'pending' AND user_id = ");
                q.push_bind(user);
                q.push(" AND ref_id IN (");
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                sep.push_unseparated(")");
                changed += q.build().execute(pool).await?.rows_affected();
            }
        });
        Ok(changed)
    }

    /// How many of `email`'s items wait for the device's confirmation.
    pub async fn mail_pending_count(&self, email: &str) -> Result<u64, StoreError> {
        let email = normalize_email(email);
        let (n,): (i64,) = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT COUNT(*) FROM mail_items i JOIN users u ON u.id = i.user_id \
                 WHERE u.email = $1 AND i.state = 'pending'",
            )
            .bind(&email)
            .fetch_one(pool)
            .await?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Marks an item as gone from the mailbox (no longer resent).
    pub async fn remove_mail_item(&self, ref_id: i64) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE mail_items SET state = 'removed' WHERE ref_id = $1 AND state = 'pending'")
                .bind(ref_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Stores a submission from a device in the outbox, unless it is already there (same
    /// user, PIN and client id): returns the row and whether it is new.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn add_outbox(
        &self,
        email: &str,
        pin: u32,
        client_id: u64,
        request: &[u8],
        message_id: &str,
    ) -> Result<(OutboxRow, bool), StoreError> {
        let email = normalize_email(email);
        let client = to_db_u64("client id", client_id)?;
        let now = now_ms();
        let (id, new) = on_pool!(self, pool => {
            let user = user_id!(pool, &email);
            let inserted: Option<(i64,)> = sqlx::query_as(
                "INSERT INTO mail_outbox \
                 (user_id, pin, client_id, request, message_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (user_id, pin, client_id) DO NOTHING RETURNING id",
            )
            .bind(user)
            .bind(i64::from(pin))
            .bind(client)
            .bind(request)
            .bind(message_id)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            match inserted {
                Some((id,)) => (id, true),
                None => {
                    let (id,): (i64,) = sqlx::query_as(
                        "SELECT id FROM mail_outbox \
                         WHERE user_id = $1 AND pin = $2 AND client_id = $3",
                    )
                    .bind(user)
                    .bind(i64::from(pin))
                    .bind(client)
                    .fetch_one(pool)
                    .await?;
                    (id, false)
                }
            }
        });
        let row = self
            .outbox(id)
            .await?
            .ok_or(StoreError::NoSuchUser { email })?;
        Ok((row, new))
    }

    /// Outbox row `id`.
    pub async fn outbox(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        let row = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                outbox_select!(),
                "WHERE o.id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// Outbox rows still to send (`queued`, or `sending` when a crash interrupted it),
    /// oldest first, at most `limit`.
    pub async fn outbox_due(&self, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                outbox_select!(),
                "WHERE o.state IN ('queued', 'sending') ORDER BY o.id LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Moves outbox row `id` to `state` (`sending` counts an attempt), with an error text.
    ///
    /// Errors: [`StoreError::InvalidOutboxState`] for a state not in [`OUTBOX_STATES`].
    pub async fn set_outbox_state(
        &self,
        id: i64,
        state: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        if !OUTBOX_STATES.contains(&state) {
            return Err(StoreError::InvalidOutboxState {
                state: state.to_owned(),
            });
        }
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE mail_outbox SET state = $1, error = $2, updated_at = $3, \
                 attempts = attempts + CASE WHEN $1 = 'sending' THEN 1 ELSE 0 END WHERE id = $4",
            )
            .bind(state)
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// `email`'s mail settings (the defaults when never set).
    pub async fn mail_settings(&self, email: &str) -> Result<MailSettings, StoreError> {
        let email = normalize_email(email);
        let row: Option<(i64, i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT s.push, s.save_sent, s.reconcile FROM mail_settings s \
                 JOIN users u ON u.id = s.user_id WHERE u.email = $1",
            )
            .bind(&email)
            .fetch_optional(pool)
            .await?
        });
        Ok(
            row.map_or_else(MailSettings::default, |(p, s, r)| MailSettings {
                push: p != 0,
                save_sent: s != 0,
                reconcile: r != 0,
            }),
        )
    }

    /// Sets `email`'s mail settings.
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn set_mail_settings(
        &self,
        email: &str,
        settings: &MailSettings,
    ) -> Result<(), StoreError> {
        let email = normalize_email(email);
        let result: Result<(), sqlx::Error> = on_pool!(self, pool => {
            let user = user_id!(pool, &email);
            sqlx::query(
                "INSERT INTO mail_settings (user_id, push, save_sent, reconcile, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET \
                 push = excluded.push, save_sent = excluded.save_sent, \
                 reconcile = excluded.reconcile, updated_at = excluded.updated_at",
            )
            .bind(user)
            .bind(i64::from(settings.push))
            .bind(i64::from(settings.save_sent))
            .bind(i64::from(settings.reconcile))
            .bind(now_ms())
            .execute(pool)
            .await
            .map(|_| ())
        });
        match result {
            Ok(()) => Ok(()),
            // The user was deleted between finding their id and writing the row.
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_foreign_key_violation()) =>
            {
                Err(StoreError::NoSuchUser { email })
            }
            Err(e) => Err(e.into()),
        }
    }
}
