//! Push-mail reconciliation: keeping the device's view of a mailbox and the mailbox itself
//! in step after a message was forwarded — its read and flagged state, which folder it is in
//! (a move keeps its RefID), whether it is still there at all, how far a folder's flag changes
//! were followed (CONDSTORE's HIGHESTMODSEQ), and the durable queue of changes a device asked
//! for, which the messaging agent applies to the mailbox and then finishes or retries.
//!
//! Owns the `seen` and `flagged` columns of `mail_items`, `mail_cursors.highest_modseq` and
//! the `mail_change_queue` table. Must not touch: what a queued change says (an encoded
//! protobuf, opaque bytes here), how or when it is applied, and which side wins when the
//! device and the mailbox disagree (the server's messaging agent decides all of that).

use crate::mail::{MailItemRow, item_select, user_id};
use crate::{Store, StoreError, normalize_email, now_ms, on_pool, to_db_u64};

crate::row_struct! {
    /// A change a device asked for, waiting to be applied to the mailbox.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct MailChangeRow {
        /// The queue entry's id, for [`Store::finish_mail_change`] and
        /// [`Store::retry_mail_change`].
        pub id: i64,
        /// The user whose mailbox it changes.
        pub email: String,
        /// The message it changes.
        pub ref_id: i64,
        /// The encoded change, as given to [`Store::enqueue_mail_change`].
        pub change: Vec<u8>,
        /// When it was queued (unix ms).
        pub created_at: i64,
        /// How many times applying it failed.
        pub attempts: i64,
        /// Why applying it last failed.
        pub last_error: Option<String>,
    }
}

impl Store {
    /// Sets the read (`seen`) and flagged state of message `ref_id`; `None` leaves that one as
    /// it is. Returns whether anything changed (`false` too when there is no such message).
    pub async fn set_mail_flags(
        &self,
        ref_id: i64,
        seen: Option<bool>,
        flagged: Option<bool>,
    ) -> Result<bool, StoreError> {
        if seen.is_none() && flagged.is_none() {
            return Ok(false);
        }
        let changed = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE mail_items SET seen = COALESCE($1, seen), flagged = COALESCE($2, flagged) \
                 WHERE ref_id = $3 \
                 AND (seen <> COALESCE($1, seen) OR flagged <> COALESCE($2, flagged))",
            )
            .bind(seen.map(i64::from))
            .bind(flagged.map(i64::from))
            .bind(ref_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed > 0)
    }

    /// Records that message `ref_id` is now in `folder` under `source_key` (and the IMAP
    /// UIDVALIDITY and UID it has there), keeping its RefID, state and flags: a move in the
    /// mailbox, made there or asked for by the device, is not a new message.
    ///
    /// Errors: [`StoreError::NoSuchMailItem`]; [`StoreError::MailItemExists`] when another of
    /// the user's messages is already recorded under that folder and source key (the watcher
    /// of the destination folder may have found the moved message first and given it a RefID
    /// of its own): nothing changes, and the caller decides which of the two to forget.
    pub async fn move_mail_item(
        &self,
        ref_id: i64,
        folder: &str,
        source_key: &str,
        uid_validity: Option<u32>,
        uid: Option<u32>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let res = sqlx::query(
                "UPDATE mail_items SET folder = $1, source_key = $2, uid_validity = $3, uid = $4 \
                 WHERE ref_id = $5",
            )
            .bind(folder)
            .bind(source_key)
            .bind(uid_validity.map(i64::from))
            .bind(uid.map(i64::from))
            .bind(ref_id)
            .execute(pool)
            .await;
            match res {
                Ok(done) if done.rows_affected() == 0 => {
                    return Err(StoreError::NoSuchMailItem { ref_id });
                }
                Ok(_) => {}
                Err(e) if e.as_database_error().is_some_and(|e| e.is_unique_violation()) => {
                    let existing: Option<(i64,)> = sqlx::query_as(
                        "SELECT o.ref_id FROM mail_items o \
                         JOIN mail_items i ON i.user_id = o.user_id \
                         WHERE i.ref_id = $1 AND o.folder = $2 AND o.source_key = $3",
                    )
                    .bind(ref_id)
                    .bind(folder)
                    .bind(source_key)
                    .fetch_optional(pool)
                    .await?;
                    return Err(match existing {
                        Some((existing,)) => StoreError::MailItemExists {
                            ref_id,
                            folder: folder.to_owned(),
                            source_key: source_key.to_owned(),
                            existing,
                        },
                        // The other one went away in the meantime: report what failed.
                        None => StoreError::Database(e),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        });
        Ok(())
    }

    /// Marks message `ref_id` as gone from the mailbox (deleted there, or moved out of the
    /// folders the device sees), whatever its state: it is no longer resent, nor listed by
    /// [`Store::mail_items_in_folder`]. Returns whether it was not already so (`false` too
    /// when there is no such message). Unlike [`Store::remove_mail_item`], which leaves a
    /// message the device has confirmed alone.
    pub async fn forget_mail_item(&self, ref_id: i64) -> Result<bool, StoreError> {
        let changed = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE mail_items SET state = 'removed' WHERE ref_id = $1 AND state <> 'removed'",
            )
            .bind(ref_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed > 0)
    }

    /// `email`'s messages recorded in `folder` and not removed, by UID (then RefID; messages
    /// without a UID, from a Maildir store, come last by RefID): the newest `limit` of them
    /// (by RefID) when there are more. What the messaging agent compares with the flags the
    /// mailbox shows.
    pub async fn mail_items_in_folder(
        &self,
        email: &str,
        folder: &str,
        limit: u32,
    ) -> Result<Vec<MailItemRow>, StoreError> {
        let email = normalize_email(email);
        let rows = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                item_select!(),
                "WHERE u.email = $1 AND i.folder = $2 AND i.state <> 'removed' \
                 ORDER BY i.ref_id DESC LIMIT $3"
            ))
            .bind(&email)
            .bind(folder)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        let mut rows: Vec<MailItemRow> = rows;
        rows.sort_by_key(|r| (r.uid.is_none(), r.uid, r.ref_id));
        Ok(rows)
    }

    /// Records that `folder`'s flag changes were followed up to `modseq` (CONDSTORE's
    /// HIGHESTMODSEQ) under `uid_validity`. A lower value under the same UIDVALIDITY never
    /// replaces a higher one.
    ///
    /// Returns `false`, and records nothing, when the folder has no cursor or one under
    /// another UIDVALIDITY: a mod-sequence means nothing without the cursor it belongs to, so
    /// [`Store::set_mail_cursor`] comes first.
    ///
    /// Errors: [`StoreError::NoSuchUser`]; [`StoreError::OutOfRange`] for a `modseq` above
    /// `i64::MAX` (RFC 7162 keeps them to 63 bits).
    pub async fn set_mail_modseq(
        &self,
        email: &str,
        folder: &str,
        uid_validity: u32,
        modseq: u64,
    ) -> Result<bool, StoreError> {
        let email = normalize_email(email);
        let modseq = to_db_u64("mod-sequence", modseq)?;
        let found = on_pool!(self, pool => {
            let user = user_id!(pool, &email);
            sqlx::query(
                "UPDATE mail_cursors SET highest_modseq = CASE \
                   WHEN highest_modseq IS NOT NULL AND highest_modseq > $1 THEN highest_modseq \
                   ELSE $1 END, updated_at = $2 \
                 WHERE user_id = $3 AND folder = $4 AND uid_validity = $5",
            )
            .bind(modseq)
            .bind(now_ms())
            .bind(user)
            .bind(folder)
            .bind(i64::from(uid_validity))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(found > 0)
    }

    /// Queues a change `email`'s device asked for to message `ref_id` (`change` is opaque
    /// here: an encoded protobuf), to be applied to the mailbox; returns its id. Changes are
    /// handed out oldest first ([`Store::mail_changes_due`]).
    ///
    /// Errors: [`StoreError::NoSuchUser`]; [`StoreError::NoSuchMailItem`] when `ref_id` is not
    /// one of the user's messages.
    pub async fn enqueue_mail_change(
        &self,
        email: &str,
        ref_id: i64,
        change: &[u8],
    ) -> Result<i64, StoreError> {
        let email = normalize_email(email);
        let id: Option<(i64,)> = on_pool!(self, pool => {
            let user = user_id!(pool, &email);
            sqlx::query_as(
                "INSERT INTO mail_change_queue (user_id, ref_id, change, created_at) \
                 SELECT user_id, ref_id, $1, $2 FROM mail_items WHERE ref_id = $3 AND user_id = $4 \
                 RETURNING id",
            )
            .bind(change)
            .bind(now_ms())
            .bind(ref_id)
            .bind(user)
            .fetch_optional(pool)
            .await?
        });
        id.map(|(id,)| id)
            .ok_or(StoreError::NoSuchMailItem { ref_id })
    }

    /// Queued changes, oldest first, at most `limit`, with their user's address. A change
    /// stays queued (and is handed out again) until [`Store::finish_mail_change`].
    pub async fn mail_changes_due(&self, limit: u32) -> Result<Vec<MailChangeRow>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT q.id, u.email, q.ref_id, q.change, q.created_at, q.attempts, q.last_error \
                 FROM mail_change_queue q JOIN users u ON u.id = q.user_id \
                 ORDER BY q.id LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Removes change `id` from the queue: it was applied (or given up on). Returns whether it
    /// was there.
    pub async fn finish_mail_change(&self, id: i64) -> Result<bool, StoreError> {
        let deleted = on_pool!(self, pool => {
            sqlx::query("DELETE FROM mail_change_queue WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
    }

    /// Records that applying change `id` failed with `error`: one more attempt, and the error
    /// kept. It stays queued. Returns whether it was there.
    pub async fn retry_mail_change(&self, id: i64, error: &str) -> Result<bool, StoreError> {
        let changed = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE mail_change_queue SET attempts = attempts + 1, last_error = $1 WHERE id = $2",
            )
            .bind(error)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed > 0)
    }
}
