//! The mail store: `HOME/mail.db` (or one in-memory database) and everything that reads or
//! writes it. Knows SQL and the schema; knows nothing of connections (that is `sync`).
//!
//! ```text
//! messages          one row per RefID: the MailItem as received (without its text), the
//!                   body text gathered so far, flags, folder, deleted
//! attachments       attachments being downloaded or downloaded: total, received, error
//! attachment_parts  their pieces, in order, until saved to a file
//! outbox            what the user wrote; client_id = the row id (AUTOINCREMENT: never reused)
//! changes           local changes (read, flagged, deleted, moved) not yet sent
//! ```
//!
//! The schema version is SQLite's `user_version`; a newer one than this build knows is
//! refused rather than misread.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bramble_proto::schema::{
    AttachmentChunk, Envelope, ErrorCode, ErrorReport, Importance, MailChange, MailItem, MailKind,
    MailMore, MailReceived, MailSubmit, MailSubmitted, SubmitState, envelope::Body,
    mail_change::Change,
};
use bramble_proto::seal::{MAX_PLAINTEXT, MAX_SEAL_INPUT};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::{
    Attachment, Draft, Handled, INBOX, MAIL_DB, MAX_ATTACHMENT, MAX_FOLDER, MAX_MESSAGES, MAX_TEXT,
    MailEvent, Message, MessageSummary, OutboxEntry, OutboxState, PendingChange, SavedAttachment,
    bare_address, cut_at, kind_name,
};
use crate::{Device, DeviceError, Incoming};

/// The schema this build writes (SQLite `user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE messages (
    ref_id      INTEGER PRIMARY KEY,
    item        BLOB    NOT NULL,
    received_ms INTEGER NOT NULL,
    date_ms     INTEGER NOT NULL,
    sender      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    seen        INTEGER NOT NULL,
    flagged     INTEGER NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    priority    INTEGER NOT NULL,
    attachments INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    body_len    INTEGER NOT NULL,
    text_total  INTEGER NOT NULL,
    truncated   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_received ON messages (received_ms);
CREATE TABLE attachments (
    ref_id       INTEGER NOT NULL REFERENCES messages (ref_id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    total        INTEGER NOT NULL,
    received     INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (ref_id, idx)
);
CREATE TABLE attachment_parts (
    ref_id INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    pos    INTEGER NOT NULL,
    data   BLOB    NOT NULL,
    PRIMARY KEY (ref_id, idx, pos),
    FOREIGN KEY (ref_id, idx) REFERENCES attachments (ref_id, idx) ON DELETE CASCADE
);
CREATE TABLE outbox (
    client_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    submit     BLOB    NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('queued', 'accepted', 'sent', 'failed')),
    message    TEXT    NOT NULL DEFAULT '',
    message_id TEXT    NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    change     BLOB    NOT NULL,
    created_ms INTEGER NOT NULL
);
PRAGMA user_version = 1;
";

/// Most recipients in one message the device sends.
const MAX_RECIPIENTS: usize = 500;
/// Longest address or subject the device sends, bytes.
const MAX_HEADER: usize = 998;

/// The device's mail store. Cheap to clone: clones share one database connection.
///
/// Get it with [`Device::mail_store`] (before connecting: a [`crate::Connection`] borrows the
/// device) or [`MailStore::open`]. Every method that changes it has committed to disk when it
/// returns.
#[derive(Clone)]
pub struct MailStore {
    pool: SqlitePool,
    /// The file, or "memory", for messages.
    location: Arc<str>,
}

impl std::fmt::Debug for MailStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// The device's mail store: `HOME/mail.db`, created on first use; for an in-memory device,
    /// a new empty store in memory on **each** call (keep the one you get, and clone it).
    ///
    /// # Errors
    /// [`DeviceError::MailStoreDamaged`] or [`DeviceError::MailStore`].
    pub async fn mail_store(&self) -> Result<MailStore, DeviceError> {
        MailStore::open(self.home()).await
    }
}

/// A u64 as stored in an INTEGER column, bit for bit.
fn to_db(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// A u64 from its stored form.
fn from_db(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

/// A length as stored.
fn len_db(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn envelope(body: Body) -> Envelope {
    Envelope {
        version: u32::from(bramble_proto::PROTOCOL_VERSION),
        body: Some(body),
    }
}

fn bad_request(seq: u64, reason: &str) -> Envelope {
    envelope(Body::Error(ErrorReport {
        code: ErrorCode::BadRequest.into(),
        message: format!("The device could not use a mail message: {reason}"),
        about_seq: seq,
    }))
}

fn refused(seq: u64, reason: String) -> Handled {
    tracing::warn!(seq, %reason, "mail refused");
    Handled {
        replies: vec![bad_request(seq, &reason)],
        event: MailEvent::Refused { reason },
    }
}

fn event(event: MailEvent) -> Handled {
    Handled {
        event,
        replies: Vec::new(),
    }
}

/// A file, folder or name the user gave: no control characters, not empty, not too long.
fn check_folder(folder: &str) -> Result<&str, String> {
    let f = folder.trim();
    if f.is_empty() {
        return Err("the folder name is empty".into());
    }
    if f.len() > MAX_FOLDER {
        return Err(format!("the folder name is longer than {MAX_FOLDER} bytes"));
    }
    if f.chars().any(char::is_control) {
        return Err("the folder name contains control characters".into());
    }
    Ok(f)
}

crate::row_struct! {
    struct MessageRow {
        ref_id: i64,
        item: Vec<u8>,
        received_ms: i64,
        folder: String,
        seen: bool,
        flagged: bool,
        deleted: bool,
        priority: bool,
        body: String,
        text_total: i64,
        truncated: bool,
    }
}

crate::row_struct! {
    struct SummaryRow {
        ref_id: i64,
        sender: String,
        subject: String,
        date_ms: i64,
        received_ms: i64,
        folder: String,
        seen: bool,
        flagged: bool,
        priority: bool,
        attachments: i64,
        body_len: i64,
        text_total: i64,
        truncated: bool,
    }
}

crate::row_struct! {
    struct OutboxRow {
        client_id: i64,
        submit: Vec<u8>,
        state: String,
        message: String,
        message_id: String,
        created_ms: i64,
        updated_ms: i64,
    }
}

crate::row_struct! {
    struct AttachmentRow {
        name: String,
        content_type: String,
        total: i64,
        received: i64,
    }
}

/// Whether a message holding `have` bytes of a `total`-byte text can fetch more.
fn has_more(have: u64, total: u64, truncated: bool) -> bool {
    !truncated && have < total && have < MAX_TEXT as u64
}

impl MailStore {
    /// Opens the mail store in `home` (`home/mail.db`, created with mode 0600 when missing,
    /// and the folder when missing), or a new empty one in memory when `home` is `None`.
    ///
    /// Prefer [`Device::mail_store`], which uses the device's home while the device holds its
    /// lock.
    ///
    /// # Errors
    /// [`DeviceError::MailStoreDamaged`] (not a database, or written by a newer build) or
    /// [`DeviceError::MailStore`] (cannot be created or opened).
    pub async fn open(home: Option<&Path>) -> Result<MailStore, DeviceError> {
        let (options, location): (SqliteConnectOptions, Arc<str>) = match home {
            None => (
                SqliteConnectOptions::from_str("sqlite::memory:")
                    .map_err(|e| DeviceError::MailStore(e.to_string()))?,
                Arc::from("memory"),
            ),
            Some(dir) => {
                let path = dir.join(MAIL_DB);
                create_private_file(dir, &path)?;
                (
                    SqliteConnectOptions::new()
                        .filename(&path)
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        // A message is confirmed to the server once stored: it must survive
                        // a power cut.
                        .synchronous(SqliteSynchronous::Full)
                        .busy_timeout(Duration::from_secs(5)),
                    Arc::from(path.display().to_string()),
                )
            }
        };
        // One connection: every call is short, and `:memory:` is one database per connection.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.foreign_keys(true))
            .await
            .map_err(|e| open_error(&location, &e))?;
        let store = MailStore { pool, location };
        if let Err(e) = store.migrate().await {
            store.pool.close().await;
            return Err(e);
        }
        tracing::debug!(location = %store.location, "mail store opened");
        Ok(store)
    }

    /// Closes the store (every clone); calls made afterwards fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), DeviceError> {
        let mut tx = self.begin().await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| open_error(&self.location, &e))?;
        match version {
            0 => {
                sqlx::raw_sql(SCHEMA)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| open_error(&self.location, &e))?;
            }
            SCHEMA_VERSION => {}
            other => {
                return Err(DeviceError::MailStoreDamaged(format!(
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

    /// A database failure, in words: damaged when SQLite says so.
    fn db(&self, e: &sqlx::Error) -> DeviceError {
        let damaged = matches!(e, sqlx::Error::Database(d)
            if matches!(d.code().as_deref(), Some("11" | "26")));
        if damaged {
            DeviceError::MailStoreDamaged(format!("{}: {e}", self.location))
        } else {
            DeviceError::MailStore(format!("{}: {e}", self.location))
        }
    }

    fn damaged(&self, what: impl std::fmt::Display) -> DeviceError {
        DeviceError::MailStoreDamaged(format!("{}: {what}", self.location))
    }

    // ---- what arrives ------------------------------------------------------------------------

    /// Handles what [`crate::Connection::recv`] returned: an envelope as [`MailStore::handle`]
    /// does (with its sequence number in any `ErrorReport`), anything else is
    /// [`MailEvent::NotMail`].
    ///
    /// # Errors
    /// As [`MailStore::handle`].
    pub async fn handle_incoming(&self, incoming: &Incoming) -> Result<Handled, DeviceError> {
        match incoming {
            Incoming::Envelope { seq, env } => self.handle_seq(*seq, env).await,
            Incoming::Rejected { .. } | Incoming::Activation { .. } => {
                Ok(event(MailEvent::NotMail))
            }
        }
    }

    /// Stores what a mail envelope from the server carries, durably, before returning; says
    /// what happened and what to send back. Call it before the next
    /// [`crate::Connection::recv`], which acks the frame to the relay.
    ///
    /// - `MailItem`: stored unless its RefID is already there (a resend: not stored or shown
    ///   twice); a `MailReceived` goes back either way.
    /// - `MailMore`: the text is appended at its offset (up to [`MAX_TEXT`] in all).
    /// - `AttachmentChunk`: the piece is kept; pieces must come in order and agree with each
    ///   other; at most [`MAX_ATTACHMENT`].
    /// - `MailSubmitted`: the outbox entry moves on (queued → accepted → sent | failed).
    /// - `MailChange`: the message is marked read, flagged, deleted or moved.
    ///
    /// What makes no sense is [`MailEvent::Refused`] (or a failed attachment or "More") with
    /// an `ErrorReport` to send, never an error or a panic.
    ///
    /// # Errors
    /// Only when the store cannot be written ([`DeviceError::MailStore`],
    /// [`DeviceError::MailStoreDamaged`]); then nothing was stored and nothing should be
    /// confirmed.
    pub async fn handle(&self, env: &Envelope) -> Result<Handled, DeviceError> {
        self.handle_seq(0, env).await
    }

    async fn handle_seq(&self, seq: u64, env: &Envelope) -> Result<Handled, DeviceError> {
        match &env.body {
            Some(Body::MailItem(item)) => self.on_item(seq, item).await,
            Some(Body::MailMore(more)) => self.on_more(seq, more).await,
            Some(Body::AttachmentChunk(chunk)) => self.on_chunk(seq, chunk).await,
            Some(Body::MailSubmitted(s)) => self.on_submitted(seq, s).await,
            Some(Body::MailChange(c)) => self.on_change(seq, c).await,
            Some(
                Body::MailReceived(_)
                | Body::MoreRequest(_)
                | Body::AttachmentRequest(_)
                | Body::MailSubmit(_),
            ) => Ok(refused(
                seq,
                "a message meant for the server was sent to the device".into(),
            )),
            _ => Ok(event(MailEvent::NotMail)),
        }
    }

    async fn on_item(&self, seq: u64, item: &MailItem) -> Result<Handled, DeviceError> {
        let ref_id = item.ref_id;
        if ref_id == 0 {
            return Ok(refused(seq, "a message without a RefID".into()));
        }
        let mut stored = item.clone();
        let full_text = std::mem::take(&mut stored.text);
        let text = cut_at(&full_text, MAX_TEXT);
        let truncated = text.len() < full_text.len();
        let folder = match check_folder(&item.folder) {
            Ok(f) => f.to_owned(),
            Err(_) if item.folder.trim().is_empty() => INBOX.to_owned(),
            Err(_) => cut_at(&item.folder, MAX_FOLDER)
                .chars()
                .filter(|c| !c.is_control())
                .collect(),
        };
        let headers = item.headers.clone().unwrap_or_default();
        let flags = item.flags.unwrap_or_default();
        let total = item.text_total.max(full_text.len() as u64);
        let attachments = len_db(item.attachments.len());
        let blob = prost::Message::encode_to_vec(&stored);

        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO messages (ref_id, item, received_ms, date_ms, sender, subject, folder, \
             seen, flagged, priority, attachments, body, body_len, text_total, truncated) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (ref_id) DO NOTHING",
        )
        .bind(to_db(ref_id))
        .bind(&blob)
        .bind(now_ms())
        .bind(headers.date_ms)
        .bind(&headers.from)
        .bind(&headers.subject)
        .bind(&folder)
        .bind(flags.seen)
        .bind(flags.flagged)
        .bind(item.priority)
        .bind(attachments)
        .bind(text)
        .bind(len_db(text.len()))
        .bind(to_db(total))
        .bind(truncated)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db(&e))?
        .rows_affected()
            == 1;
        if inserted {
            self.prune(&mut tx).await?;
        }
        tx.commit().await.map_err(|e| self.db(&e))?;
        let reply = envelope(Body::MailReceived(MailReceived {
            ref_ids: vec![ref_id],
        }));
        let event = if inserted {
            tracing::debug!(ref_id, "new message");
            MailEvent::NewMessage { ref_id }
        } else {
            tracing::debug!(
                ref_id,
                resent = item.resent,
                "message already on the device"
            );
            MailEvent::Duplicate { ref_id }
        };
        Ok(Handled {
            event,
            replies: vec![reply],
        })
    }

    /// Drops the oldest messages beyond [`MAX_MESSAGES`].
    async fn prune(&self, tx: &mut Transaction<'static, Sqlite>) -> Result<(), DeviceError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| self.db(&e))?;
        let max = i64::try_from(MAX_MESSAGES).unwrap_or(i64::MAX);
        if count > max {
            sqlx::query(
                "DELETE FROM messages WHERE ref_id IN \
                 (SELECT ref_id FROM messages ORDER BY received_ms, rowid LIMIT ?)",
            )
            .bind(count - max)
            .execute(&mut **tx)
            .await
            .map_err(|e| self.db(&e))?;
        }
        Ok(())
    }

    async fn on_more(&self, seq: u64, more: &MailMore) -> Result<Handled, DeviceError> {
        let ref_id = more.ref_id;
        let mut tx = self.begin().await?;
        let row: Option<(String, i64, bool)> = sqlx::query_as(
            "SELECT body, text_total, truncated FROM messages WHERE ref_id = ? AND ref_id != 0",
        )
        .bind(to_db(ref_id))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.db(&e))?;
        let Some((mut body, total, mut truncated)) = row else {
            return Ok(refused(
                seq,
                format!("more text for message {ref_id}, which is not on the device"),
            ));
        };
        if !more.error.is_empty() {
            return Ok(event(MailEvent::MoreFailed {
                ref_id,
                error: more.error.clone(),
            }));
        }
        let have = body.len() as u64;
        let failed = |reason: String| -> Result<Handled, DeviceError> {
            tracing::warn!(seq, ref_id, %reason, "more text refused");
            Ok(Handled {
                replies: vec![bad_request(seq, &reason)],
                event: MailEvent::MoreFailed {
                    ref_id,
                    error: format!(
                        "The server's answer did not fit the text on the device ({reason})."
                    ),
                },
            })
        };
        if more.offset > have {
            return failed(format!(
                "text from byte {} of message {ref_id}, but the device holds only {have} bytes",
                more.offset
            ));
        }
        // What of it the device already holds (an answer to a repeated request).
        let skip = usize::try_from(have - more.offset).unwrap_or(usize::MAX);
        let new = if skip >= more.text.len() {
            ""
        } else if more.text.is_char_boundary(skip) {
            &more.text[skip..]
        } else {
            return failed(format!(
                "text from byte {} of message {ref_id} does not line up with the device's",
                more.offset
            ));
        };
        let room = MAX_TEXT.saturating_sub(body.len());
        let part = cut_at(new, room);
        if part.len() < new.len() {
            truncated = true;
        }
        body.push_str(part);
        let have = body.len() as u64;
        let total = if more.text_total > 0 {
            more.text_total
        } else {
            from_db(total)
        }
        .max(have);
        if !part.is_empty() || truncated || more.text_total > 0 {
            sqlx::query(
                "UPDATE messages SET body = ?, body_len = ?, text_total = ?, truncated = ? \
                 WHERE ref_id = ?",
            )
            .bind(&body)
            .bind(len_db(body.len()))
            .bind(to_db(total))
            .bind(truncated)
            .bind(to_db(ref_id))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
            tx.commit().await.map_err(|e| self.db(&e))?;
        }
        Ok(event(MailEvent::MoreText {
            ref_id,
            have,
            total,
            complete: !has_more(have, total, truncated),
        }))
    }

    async fn on_chunk(&self, seq: u64, chunk: &AttachmentChunk) -> Result<Handled, DeviceError> {
        let (ref_id, index) = (chunk.ref_id, chunk.index);
        let mut tx = self.begin().await?;
        let count: Option<i64> =
            sqlx::query_scalar("SELECT attachments FROM messages WHERE ref_id = ? AND ref_id != 0")
                .bind(to_db(ref_id))
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.db(&e))?;
        let Some(count) = count else {
            return Ok(refused(
                seq,
                format!("an attachment of message {ref_id}, which is not on the device"),
            ));
        };
        if i64::from(index) >= count {
            return Ok(refused(
                seq,
                format!("attachment {index} of message {ref_id}, which has {count}"),
            ));
        }
        let fail = |tx, error, report| self.drop_attachment(tx, seq, ref_id, index, error, report);
        if !chunk.error.is_empty() {
            return fail(tx, chunk.error.clone(), None).await;
        }
        if chunk.total > MAX_ATTACHMENT {
            let e = DeviceError::AttachmentTooLarge {
                size: chunk.total,
                max: MAX_ATTACHMENT,
            };
            return fail(tx, e.to_string(), None).await;
        }
        let len = chunk.data.len() as u64;
        let Some(end) = chunk.offset.checked_add(len).filter(|e| *e <= chunk.total) else {
            let r = format!(
                "a piece of attachment {index} of message {ref_id} ends past its size ({} + {len} > {})",
                chunk.offset, chunk.total
            );
            return fail(tx, broken(&r), Some(r)).await;
        };
        let now = now_ms();
        if chunk.offset == 0 {
            // The first piece: (re)start, making room.
            sqlx::query("DELETE FROM attachments WHERE ref_id = ? AND idx = ?")
                .bind(to_db(ref_id))
                .bind(i64::from(index))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db(&e))?;
            self.make_room(&mut tx, chunk.total).await?;
            sqlx::query(
                "INSERT INTO attachments (ref_id, idx, name, content_type, total, received, \
                 updated_ms) VALUES (?, ?, ?, ?, ?, 0, ?)",
            )
            .bind(to_db(ref_id))
            .bind(i64::from(index))
            .bind(cut_at(&chunk.name, MAX_FOLDER))
            .bind(cut_at(&chunk.content_type, MAX_FOLDER))
            .bind(to_db(chunk.total))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
        } else {
            let row: Option<(i64, i64)> = sqlx::query_as(
                "SELECT total, received FROM attachments WHERE ref_id = ? AND idx = ?",
            )
            .bind(to_db(ref_id))
            .bind(i64::from(index))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
            let problem = match row {
                None => Some(format!(
                    "a piece of attachment {index} of message {ref_id} from byte {} without its \
                     beginning",
                    chunk.offset
                )),
                Some((total, _)) if from_db(total) != chunk.total => Some(format!(
                    "pieces of attachment {index} of message {ref_id} disagree about its size \
                     ({} and {})",
                    from_db(total),
                    chunk.total
                )),
                Some((_, received)) if from_db(received) != chunk.offset => Some(format!(
                    "a piece of attachment {index} of message {ref_id} out of order (from byte \
                     {}, expected {})",
                    chunk.offset,
                    from_db(received)
                )),
                Some(_) => None,
            };
            if let Some(r) = problem {
                return fail(tx, broken(&r), Some(r)).await;
            }
        }
        if len > 0 {
            sqlx::query(
                "INSERT INTO attachment_parts (ref_id, idx, pos, data) VALUES (?, ?, ?, ?)",
            )
            .bind(to_db(ref_id))
            .bind(i64::from(index))
            .bind(to_db(chunk.offset))
            .bind(chunk.data.as_ref())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
        }
        sqlx::query(
            "UPDATE attachments SET received = ?, updated_ms = ? WHERE ref_id = ? AND idx = ?",
        )
        .bind(to_db(end))
        .bind(now)
        .bind(to_db(ref_id))
        .bind(i64::from(index))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db(&e))?;
        tx.commit().await.map_err(|e| self.db(&e))?;
        Ok(event(MailEvent::AttachmentPiece {
            ref_id,
            index,
            received: end,
            total: chunk.total,
            complete: end == chunk.total,
        }))
    }

    /// Drops what arrived of an attachment and reports it failed (with an `ErrorReport` for
    /// the server when `report` says what it did wrong).
    async fn drop_attachment(
        &self,
        mut tx: Transaction<'static, Sqlite>,
        seq: u64,
        ref_id: u64,
        index: u32,
        error: String,
        report: Option<String>,
    ) -> Result<Handled, DeviceError> {
        sqlx::query("DELETE FROM attachments WHERE ref_id = ? AND idx = ?")
            .bind(to_db(ref_id))
            .bind(i64::from(index))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
        tx.commit().await.map_err(|e| self.db(&e))?;
        let replies = match report {
            Some(r) => {
                tracing::warn!(seq, ref_id, index, reason = %r, "attachment piece refused");
                vec![bad_request(seq, &r)]
            }
            None => Vec::new(),
        };
        Ok(Handled {
            event: MailEvent::AttachmentFailed {
                ref_id,
                index,
                error,
            },
            replies,
        })
    }

    /// Drops the least recently touched attachments until `total` more bytes fit in
    /// [`MAX_ATTACHMENT`].
    async fn make_room(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        total: u64,
    ) -> Result<(), DeviceError> {
        loop {
            let held: i64 =
                sqlx::query_scalar("SELECT COALESCE(SUM(received), 0) FROM attachments")
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(|e| self.db(&e))?;
            let held = u64::try_from(held).unwrap_or(u64::MAX);
            if held.saturating_add(total) <= MAX_ATTACHMENT {
                return Ok(());
            }
            let oldest: Option<(i64, i64)> = sqlx::query_as(
                "SELECT ref_id, idx FROM attachments ORDER BY updated_ms, rowid LIMIT 1",
            )
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.db(&e))?;
            let Some((r, i)) = oldest else {
                return Ok(());
            };
            tracing::debug!(
                ref_id = from_db(r),
                index = i,
                "attachment dropped to make room"
            );
            sqlx::query("DELETE FROM attachments WHERE ref_id = ? AND idx = ?")
                .bind(r)
                .bind(i)
                .execute(&mut **tx)
                .await
                .map_err(|e| self.db(&e))?;
        }
    }

    async fn on_submitted(&self, seq: u64, s: &MailSubmitted) -> Result<Handled, DeviceError> {
        let state = match SubmitState::try_from(s.state) {
            Ok(SubmitState::SubmitAccepted) => OutboxState::Accepted,
            Ok(SubmitState::SubmitSent) => OutboxState::Sent,
            Ok(SubmitState::SubmitFailed) => OutboxState::Failed,
            _ => {
                return Ok(refused(
                    seq,
                    format!(
                        "a report of unknown state {} for sent message {}",
                        s.state, s.client_id
                    ),
                ));
            }
        };
        // Sent and failed are final; accepted only follows queued (reports may come reordered).
        let from: &[&str] = match state {
            OutboxState::Accepted => &["queued"],
            _ => &["queued", "accepted"],
        };
        let mut tx = self.begin().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT state FROM outbox WHERE client_id = ?")
                .bind(to_db(s.client_id))
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.db(&e))?;
        let Some(current) = current else {
            return Ok(refused(
                seq,
                format!(
                    "a report about message {}, which this device did not send",
                    s.client_id
                ),
            ));
        };
        let mut now_state = OutboxState::from_db(&current)
            .ok_or_else(|| self.damaged(format!("outbox state {current:?}")))?;
        if from.contains(&current.as_str()) {
            sqlx::query(
                "UPDATE outbox SET state = ?, message = ?, message_id = ?, updated_ms = ? \
                 WHERE client_id = ?",
            )
            .bind(state.as_db())
            .bind(cut_at(&s.message, MAX_HEADER * 4))
            .bind(cut_at(&s.message_id, MAX_HEADER))
            .bind(now_ms())
            .bind(to_db(s.client_id))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
            tx.commit().await.map_err(|e| self.db(&e))?;
            now_state = state;
        }
        tracing::debug!(
            client_id = s.client_id,
            state = now_state.as_db(),
            "submit report"
        );
        Ok(event(MailEvent::Submitted {
            client_id: s.client_id,
            state: now_state,
            message: s.message.clone(),
        }))
    }

    async fn on_change(&self, seq: u64, c: &MailChange) -> Result<Handled, DeviceError> {
        let Some(change) = &c.change else {
            return Ok(refused(
                seq,
                format!("a change to message {} that changes nothing", c.ref_id),
            ));
        };
        if let Change::MovedTo(f) = change
            && let Err(e) = check_folder(f)
        {
            return Ok(refused(seq, format!("a move of message {}: {e}", c.ref_id)));
        }
        let mut tx = self.begin().await?;
        let applied = apply_change(&mut tx, c.ref_id, change)
            .await
            .map_err(|e| self.db(&e))?;
        tx.commit().await.map_err(|e| self.db(&e))?;
        Ok(event(MailEvent::Changed {
            ref_id: c.ref_id,
            applied,
        }))
    }

    // ---- reading -----------------------------------------------------------------------------

    /// The messages on the device, newest first (by their Date, else by arrival), without the
    /// deleted ones.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn inbox(&self) -> Result<Vec<MessageSummary>, DeviceError> {
        let rows: Vec<SummaryRow> = sqlx::query_as(
            "SELECT ref_id, sender, subject, date_ms, received_ms, folder, seen, flagged, \
             priority, attachments, body_len, text_total, truncated FROM messages \
             WHERE deleted = 0 \
             ORDER BY CASE WHEN date_ms > 0 THEN date_ms ELSE received_ms END DESC, \
             received_ms DESC, rowid DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        Ok(rows
            .into_iter()
            .map(|r| MessageSummary {
                ref_id: from_db(r.ref_id),
                from: r.sender,
                subject: r.subject,
                date_ms: (r.date_ms != 0).then_some(r.date_ms),
                received_ms: r.received_ms,
                folder: r.folder,
                seen: r.seen,
                flagged: r.flagged,
                priority: r.priority,
                attachments: u32::try_from(r.attachments).unwrap_or(u32::MAX),
                more: has_more(
                    u64::try_from(r.body_len).unwrap_or(0),
                    from_db(r.text_total),
                    r.truncated,
                ),
            })
            .collect())
    }

    /// One message, whole.
    ///
    /// # Errors
    /// [`DeviceError::MessageNotFound`] when it is not on the device (or deleted), or when
    /// the store cannot be read.
    pub async fn message(&self, ref_id: u64) -> Result<Message, DeviceError> {
        let row: Option<MessageRow> = sqlx::query_as(
            "SELECT ref_id, item, received_ms, folder, seen, flagged, deleted, priority, body, \
             text_total, truncated FROM messages WHERE ref_id = ?",
        )
        .bind(to_db(ref_id))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        let row = match row {
            Some(r) if !r.deleted && ref_id != 0 => r,
            _ => return Err(DeviceError::MessageNotFound(ref_id)),
        };
        let item: MailItem = bramble_proto::decode_message(&row.item, MAX_PLAINTEXT)
            .map_err(|e| self.damaged(format!("message {ref_id}: {e}")))?;
        let headers = item.headers.unwrap_or_default();
        let total = from_db(row.text_total);
        let more = has_more(row.body.len() as u64, total, row.truncated);
        Ok(Message {
            ref_id: from_db(row.ref_id),
            folder: row.folder,
            from: headers.from,
            to: headers.to,
            cc: headers.cc,
            reply_to: headers.reply_to,
            subject: headers.subject,
            date_ms: (headers.date_ms != 0).then_some(headers.date_ms),
            received_ms: row.received_ms,
            message_id: headers.message_id,
            importance: match Importance::try_from(headers.importance) {
                Ok(Importance::High) => "high",
                Ok(Importance::Low) => "low",
                _ => "normal",
            },
            priority: row.priority,
            seen: row.seen,
            flagged: row.flagged,
            text: row.body,
            text_total: total,
            more,
            truncated: row.truncated,
            attachments: item
                .attachments
                .into_iter()
                .map(|a| Attachment {
                    index: a.index,
                    name: a.name,
                    content_type: a.content_type,
                    size: a.size,
                })
                .collect(),
            notes: item.notes,
            size: item.size,
        })
    }

    // ---- attachments -------------------------------------------------------------------------

    /// Whether attachment `index` of `ref_id` is all on the device (ready for
    /// [`MailStore::save_attachment`]).
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn attachment_ready(&self, ref_id: u64, index: u32) -> Result<bool, DeviceError> {
        Ok(self
            .attachment_row(ref_id, index)
            .await?
            .is_some_and(|a| a.received == a.total))
    }

    async fn attachment_row(
        &self,
        ref_id: u64,
        index: u32,
    ) -> Result<Option<AttachmentRow>, DeviceError> {
        sqlx::query_as(
            "SELECT name, content_type, total, received FROM attachments \
             WHERE ref_id = ? AND idx = ?",
        )
        .bind(to_db(ref_id))
        .bind(i64::from(index))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db(&e))
    }

    /// Writes a downloaded attachment to `out` (replacing it: written beside it, flushed, then
    /// renamed), then drops it from the store.
    ///
    /// # Errors
    /// [`DeviceError::AttachmentFailed`] when it is not (all) downloaded, a file error, or
    /// when the store cannot be read.
    pub async fn save_attachment(
        &self,
        ref_id: u64,
        index: u32,
        out: &Path,
    ) -> Result<SavedAttachment, DeviceError> {
        use tokio::io::AsyncWriteExt;
        let Some(row) = self.attachment_row(ref_id, index).await? else {
            return Err(DeviceError::AttachmentFailed(format!(
                "attachment {index} of message {ref_id} is not on the device; fetch it first"
            )));
        };
        if row.received != row.total {
            return Err(DeviceError::AttachmentFailed(format!(
                "only {} of {} bytes of attachment {index} of message {ref_id} arrived",
                from_db(row.received),
                from_db(row.total)
            )));
        }
        let total = from_db(row.total);
        let name = out
            .file_name()
            .map_or_else(|| "attachment".into(), |n| n.to_string_lossy().into_owned());
        let tmp = out.with_file_name(format!(".{name}.part"));
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(DeviceError::file("create", &tmp))?;
        let written = async {
            let mut pos: u64 = 0;
            while pos < total {
                let part: Option<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT pos, data FROM attachment_parts WHERE ref_id = ? AND idx = ? \
                     AND pos >= ? ORDER BY pos LIMIT 1",
                )
                .bind(to_db(ref_id))
                .bind(i64::from(index))
                .bind(to_db(pos))
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.db(&e))?;
                let Some((at, data)) = part.filter(|(at, d)| from_db(*at) == pos && !d.is_empty())
                else {
                    return Err(self.damaged(format!(
                        "attachment {index} of message {ref_id} has a hole at byte {pos}"
                    )));
                };
                file.write_all(&data)
                    .await
                    .map_err(DeviceError::file("write", &tmp))?;
                pos = from_db(at).saturating_add(data.len() as u64);
            }
            file.sync_all()
                .await
                .map_err(DeviceError::file("flush", &tmp))?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        if let Err(e) = tokio::fs::rename(&tmp, out).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(DeviceError::file("write", out)(e));
        }
        sqlx::query("DELETE FROM attachments WHERE ref_id = ? AND idx = ?")
            .bind(to_db(ref_id))
            .bind(i64::from(index))
            .execute(&self.pool)
            .await
            .map_err(|e| self.db(&e))?;
        Ok(SavedAttachment {
            path: out.to_owned(),
            name: row.name,
            content_type: row.content_type,
            size: total,
        })
    }

    // ---- the outbox --------------------------------------------------------------------------

    /// Puts a message in the outbox and returns the `MailSubmit` to send. Its `client_id` is
    /// the outbox row's number: it goes up, is written before this returns, and is never used
    /// again, even after a crash.
    ///
    /// # Errors
    /// [`DeviceError::BadDraft`] (no recipient, a line break in an address or the subject,
    /// a reply without its original), [`DeviceError::TooLarge`], or when the store cannot be
    /// written.
    pub async fn compose(&self, draft: &Draft) -> Result<MailSubmit, DeviceError> {
        let clean = |list: &[String]| -> Result<Vec<String>, DeviceError> {
            list.iter()
                .map(|a| a.trim())
                .filter(|a| !a.is_empty())
                .map(|a| {
                    if a.len() > MAX_HEADER || a.chars().any(char::is_control) {
                        Err(DeviceError::BadDraft(format!(
                            "{a:?} is not an email address"
                        )))
                    } else {
                        Ok(a.to_owned())
                    }
                })
                .collect()
        };
        let (to, cc, bcc) = (clean(&draft.to)?, clean(&draft.cc)?, clean(&draft.bcc)?);
        let recipients = to.len() + cc.len() + bcc.len();
        if recipients == 0 {
            return Err(DeviceError::BadDraft("add at least one recipient".into()));
        }
        if recipients > MAX_RECIPIENTS {
            return Err(DeviceError::BadDraft(format!(
                "it has {recipients} recipients; at most {MAX_RECIPIENTS} are allowed"
            )));
        }
        let subject = draft.subject.trim();
        if subject.len() > MAX_HEADER || subject.contains(['\r', '\n']) {
            return Err(DeviceError::BadDraft(
                "the subject must be one line of at most 998 bytes".into(),
            ));
        }
        if draft.kind != MailKind::MailNew && draft.original_ref_id == 0 {
            return Err(DeviceError::BadDraft(format!(
                "a {} needs the message it answers",
                kind_name(draft.kind)
            )));
        }
        let mut submit = MailSubmit {
            client_id: u64::MAX,
            kind: draft.kind.into(),
            original_ref_id: if draft.kind == MailKind::MailNew {
                0
            } else {
                draft.original_ref_id
            },
            to,
            cc,
            bcc,
            subject: subject.to_owned(),
            body: draft.body.clone(),
        };
        // The largest client_id, so the real one fits too.
        let len = prost::Message::encoded_len(&envelope(Body::MailSubmit(submit.clone())));
        if len > MAX_SEAL_INPUT {
            return Err(DeviceError::TooLarge {
                len,
                max: MAX_SEAL_INPUT,
            });
        }
        let now = now_ms();
        let mut tx = self.begin().await?;
        let id = sqlx::query(
            "INSERT INTO outbox (submit, state, created_ms, updated_ms) VALUES (x'', 'queued', ?, ?)",
        )
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db(&e))?
        .last_insert_rowid();
        submit.client_id = u64::try_from(id).map_err(|_| self.damaged("outbox numbering"))?;
        sqlx::query("UPDATE outbox SET submit = ? WHERE client_id = ?")
            .bind(prost::Message::encode_to_vec(&submit))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
        tx.commit().await.map_err(|e| self.db(&e))?;
        tracing::debug!(client_id = submit.client_id, "message queued in the outbox");
        Ok(submit)
    }

    /// A reply to `ref_id` (to its sender, or its Reply-To; with `all`, copied to its other
    /// recipients except `own_address`), with "Re: " before its subject.
    ///
    /// # Errors
    /// [`DeviceError::MessageNotFound`], or when the store cannot be read.
    pub async fn reply_draft(
        &self,
        ref_id: u64,
        all: bool,
        body: &str,
        own_address: Option<&str>,
    ) -> Result<Draft, DeviceError> {
        let m = self.message(ref_id).await?;
        let to = if m.reply_to.trim().is_empty() {
            m.from.clone()
        } else {
            m.reply_to.clone()
        };
        let mut cc = Vec::new();
        if all {
            let mut skip: Vec<String> = vec![bare_address(&to).to_lowercase()];
            if let Some(me) = own_address {
                skip.push(bare_address(me).to_lowercase());
            }
            for a in m.to.iter().chain(&m.cc) {
                let bare = bare_address(a).to_lowercase();
                if !bare.is_empty() && !skip.contains(&bare) {
                    skip.push(bare);
                    cc.push(a.clone());
                }
            }
        }
        Ok(Draft {
            kind: if all {
                MailKind::MailReplyAll
            } else {
                MailKind::MailReply
            },
            original_ref_id: ref_id,
            to: vec![to],
            cc,
            bcc: Vec::new(),
            subject: prefixed("Re: ", &["re:"], &m.subject),
            body: body.to_owned(),
        })
    }

    /// A forward of `ref_id` (the server adds the original and its attachments), with
    /// "Fw: " before its subject.
    ///
    /// # Errors
    /// [`DeviceError::MessageNotFound`], or when the store cannot be read.
    pub async fn forward_draft(
        &self,
        ref_id: u64,
        to: &[String],
        cc: &[String],
        body: &str,
    ) -> Result<Draft, DeviceError> {
        let m = self.message(ref_id).await?;
        Ok(Draft {
            kind: MailKind::MailForward,
            original_ref_id: ref_id,
            to: to.to_vec(),
            cc: cc.to_vec(),
            bcc: Vec::new(),
            subject: prefixed("Fw: ", &["fw:", "fwd:"], &m.subject),
            body: body.to_owned(),
        })
    }

    /// The submits whose fate the device does not know yet (not accepted, or accepted but not
    /// yet reported sent or failed), oldest first: send them on every connection. The server
    /// recognises a repeated `client_id`, sends nothing twice, and answers with where the
    /// message stands, so an answer lost with a connection (or a server that stopped) is given
    /// again.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn unsent(&self) -> Result<Vec<MailSubmit>, DeviceError> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT client_id, submit FROM outbox WHERE state IN ('queued', 'accepted') \
             ORDER BY client_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        rows.into_iter()
            .map(|(id, blob)| {
                bramble_proto::decode_message::<MailSubmit>(&blob, MAX_PLAINTEXT)
                    .map_err(|e| self.damaged(format!("outbox message {id}: {e}")))
            })
            .collect()
    }

    /// Everything in the outbox, newest first.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn outbox(&self) -> Result<Vec<OutboxEntry>, DeviceError> {
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT client_id, submit, state, message, message_id, created_ms, updated_ms \
             FROM outbox ORDER BY client_id DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        rows.into_iter().map(|r| self.outbox_entry_of(r)).collect()
    }

    /// One outbox entry, if there is one with this `client_id`.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn outbox_entry(&self, client_id: u64) -> Result<Option<OutboxEntry>, DeviceError> {
        let row: Option<OutboxRow> = sqlx::query_as(
            "SELECT client_id, submit, state, message, message_id, created_ms, updated_ms \
             FROM outbox WHERE client_id = ?",
        )
        .bind(to_db(client_id))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db(&e))?;
        row.map(|r| self.outbox_entry_of(r)).transpose()
    }

    fn outbox_entry_of(&self, r: OutboxRow) -> Result<OutboxEntry, DeviceError> {
        let s: MailSubmit = bramble_proto::decode_message(&r.submit, MAX_PLAINTEXT)
            .map_err(|e| self.damaged(format!("outbox message {}: {e}", r.client_id)))?;
        let state = OutboxState::from_db(&r.state)
            .ok_or_else(|| self.damaged(format!("outbox state {:?}", r.state)))?;
        Ok(OutboxEntry {
            client_id: from_db(r.client_id),
            kind: kind_name(MailKind::try_from(s.kind).unwrap_or(MailKind::MailNew)),
            original_ref_id: s.original_ref_id,
            to: s.to,
            cc: s.cc,
            bcc: s.bcc,
            subject: s.subject,
            state,
            message: r.message,
            message_id: r.message_id,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
        })
    }

    // ---- local changes -----------------------------------------------------------------------

    /// Marks a message read or unread, flagged or not, deleted (or back), or moves it to a
    /// folder, on the device at once, and queues the change for the server (see
    /// [`MailStore::pending_changes`]). Returns the change to send.
    ///
    /// # Errors
    /// [`DeviceError::MessageNotFound`], [`DeviceError::BadDraft`] for an unusable folder
    /// name, or when the store cannot be written.
    pub async fn mark(&self, ref_id: u64, change: Change) -> Result<MailChange, DeviceError> {
        let change = match change {
            Change::MovedTo(f) => {
                Change::MovedTo(check_folder(&f).map_err(DeviceError::BadDraft)?.to_owned())
            }
            other => other,
        };
        let msg = MailChange {
            ref_id,
            change: Some(change.clone()),
        };
        let mut tx = self.begin().await?;
        if ref_id == 0
            || !apply_change(&mut tx, ref_id, &change)
                .await
                .map_err(|e| self.db(&e))?
        {
            return Err(DeviceError::MessageNotFound(ref_id));
        }
        sqlx::query("INSERT INTO changes (change, created_ms) VALUES (?, ?)")
            .bind(prost::Message::encode_to_vec(&msg))
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(&e))?;
        tx.commit().await.map_err(|e| self.db(&e))?;
        Ok(msg)
    }

    /// Local changes not yet sent to the server, oldest first.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn pending_changes(&self) -> Result<Vec<PendingChange>, DeviceError> {
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, change FROM changes ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db(&e))?;
        rows.into_iter()
            .map(|(id, blob)| {
                let change = bramble_proto::decode_message::<MailChange>(&blob, MAX_PLAINTEXT)
                    .map_err(|e| self.damaged(format!("queued change {id}: {e}")))?;
                Ok(PendingChange { id, change })
            })
            .collect()
    }

    /// Drops a change from the queue once it was sent.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub async fn change_sent(&self, id: i64) -> Result<(), DeviceError> {
        sqlx::query("DELETE FROM changes WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db(&e))?;
        Ok(())
    }
}

/// Applies a change to a message; whether the message is there.
async fn apply_change(
    tx: &mut Transaction<'static, Sqlite>,
    ref_id: u64,
    change: &Change,
) -> Result<bool, sqlx::Error> {
    let q = match change {
        Change::Seen(v) => sqlx::query("UPDATE messages SET seen = ? WHERE ref_id = ?").bind(*v),
        Change::Flagged(v) => {
            sqlx::query("UPDATE messages SET flagged = ? WHERE ref_id = ?").bind(*v)
        }
        Change::Deleted(v) => {
            sqlx::query("UPDATE messages SET deleted = ? WHERE ref_id = ?").bind(*v)
        }
        Change::MovedTo(f) => {
            sqlx::query("UPDATE messages SET folder = ? WHERE ref_id = ?").bind(f.trim().to_owned())
        }
    };
    Ok(q.bind(to_db(ref_id))
        .execute(&mut **tx)
        .await?
        .rows_affected()
        > 0)
}

/// `prefix` before `subject`, unless it starts with one of `already` (lower case).
fn prefixed(prefix: &str, already: &[&str], subject: &str) -> String {
    let s = subject.trim();
    let lower = s.to_lowercase();
    if already.iter().any(|a| lower.starts_with(a)) {
        s.to_owned()
    } else {
        format!("{prefix}{s}")
    }
}

/// The user's words for a broken transfer.
fn broken(reason: &str) -> String {
    format!("the server sent it inconsistently ({reason}); try again")
}

fn open_error(location: &str, e: &sqlx::Error) -> DeviceError {
    let damaged = matches!(e, sqlx::Error::Database(d)
        if matches!(d.code().as_deref(), Some("11" | "26")));
    if damaged {
        DeviceError::MailStoreDamaged(format!(
            "{location} is not a mail store this device can read ({e}); move it away to start \
             with an empty one"
        ))
    } else {
        DeviceError::MailStore(format!("{location}: {e}"))
    }
}

/// Creates `path` empty with mode 0600 (and `dir` with 0700) when missing, so the database
/// and its journals are readable by the owner only.
pub(crate) fn create_private_file(dir: &Path, path: &PathBuf) -> Result<(), DeviceError> {
    if !dir.is_dir() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(DeviceError::file("create", dir))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path).map_err(DeviceError::file("create", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_not_doubled() {
        assert_eq!(prefixed("Re: ", &["re:"], "Lunch"), "Re: Lunch");
        assert_eq!(prefixed("Re: ", &["re:"], "RE: Lunch"), "RE: Lunch");
        assert_eq!(prefixed("Fw: ", &["fw:", "fwd:"], "Fwd: x"), "Fwd: x");
        assert_eq!(prefixed("Fw: ", &["fw:", "fwd:"], ""), "Fw: ");
    }

    #[test]
    fn ids_round_trip_through_the_database_form() {
        for v in [0, 1, u64::MAX, 1 << 63] {
            assert_eq!(from_db(to_db(v)), v);
        }
    }

    #[test]
    fn more_is_bounded() {
        assert!(has_more(10, 20, false));
        assert!(!has_more(20, 20, false));
        assert!(!has_more(10, 20, true));
        assert!(!has_more(MAX_TEXT as u64, u64::MAX, false));
    }

    #[test]
    fn folder_names_are_checked() {
        assert_eq!(check_folder(" Archive "), Ok("Archive"));
        assert!(check_folder("").is_err());
        assert!(check_folder("a\nb").is_err());
        assert!(check_folder(&"x".repeat(MAX_FOLDER + 1)).is_err());
    }

    #[tokio::test]
    async fn an_empty_store_lists_nothing() {
        let store = MailStore::open(None).await.expect("opens");
        assert!(store.inbox().await.expect("inbox").is_empty());
        assert!(store.outbox().await.expect("outbox").is_empty());
        assert!(store.unsent().await.expect("unsent").is_empty());
        assert!(matches!(
            store.message(1).await,
            Err(DeviceError::MessageNotFound(1))
        ));
    }
}
