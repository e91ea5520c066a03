//! Push mail on the handheld (seed 002, "Email message flow"): the device's local mail store
//! and the exchanges with the enterprise server's messaging agent.
//!
//! Owns:
//! - **the mail store** ([`MailStore`]): `HOME/mail.db`, an SQLite file (WAL journal,
//!   `synchronous = FULL`, mode 0600) created on first use — or one in-memory database for
//!   [`Device::in_memory`](crate::Device::in_memory). It holds the messages the server pushed
//!   (keyed by RefID, each stored once however often the server resends it), the body text
//!   gathered so far ("More"), attachments being downloaded, the outbox (what the user wrote,
//!   with its durable `client_id` and the server's answers) and the queue of local changes
//!   (read, flagged, deleted, moved) still to tell the server;
//! - **the reactions to what arrives** ([`MailStore::handle`]): every mail message from the
//!   server is written (durably) before the call returns, so calling it before the next
//!   [`Connection::recv`](crate::Connection::recv) (which acks the frame to the relay) means
//!   nothing the relay forgets is lost; it returns the replies to send (a `MailReceived` for
//!   every `MailItem`, new or resent);
//! - **the helpers that drive a connection** ([`sync`], [`request_more`], [`fetch_attachment`],
//!   [`wait_for_submit`], [`handle_and_answer`]).
//!
//! Everything that arrives is bounded before it is stored: at most [`MAX_TEXT`] of body text
//! per message, [`MAX_ATTACHMENT`] per attachment and in all attachment pieces held at once,
//! [`MAX_MESSAGES`] messages (the oldest are dropped). Nothing that arrives can make it panic:
//! nonsense is answered with an `ErrorReport` (BAD_REQUEST) and reported as an event.
//!
//! Must not touch: the device's identity, keys and `state.json` (that is [`crate::Device`]'s),
//! the relay's or the server's files. It reaches the server only through a
//! [`Connection`](crate::Connection).
//!
//! ```no_run
//! # async fn demo(dev: &mut bramble_device::Device) -> Result<(), bramble_device::DeviceError> {
//! use std::time::Duration;
//! let store = dev.mail_store().await?; // before connecting: the connection borrows the device
//! let mut conn = dev.connect().await?;
//! let report = bramble_device::mail::sync(&mut conn, &store, Duration::from_secs(2)).await?;
//! conn.close().await;
//! println!("{} new message(s)", report.new_messages);
//! for m in store.inbox().await? {
//!     println!("{} {} {}", m.ref_id, m.from, m.subject);
//! }
//! # Ok(()) }
//! ```

mod store;
mod sync;

use serde::Serialize;

pub use bramble_proto::schema::MailKind;
pub use bramble_proto::schema::mail_change::Change;
pub use store::MailStore;
pub(crate) use store::create_private_file;
pub use sync::{
    SyncReport, fetch_attachment, handle_and_answer, request_more, send_pending, sync,
    wait_for_organizer, wait_for_submit,
};

/// The mail store's file in the device's home.
pub const MAIL_DB: &str = "mail.db";
/// The most body text kept for one message, in bytes; the rest is not fetched.
pub const MAX_TEXT: usize = 1 << 20;
/// The largest attachment the device downloads, and the most attachment bytes it holds at once.
pub const MAX_ATTACHMENT: u64 = 64 << 20;
/// The most messages kept; when more arrive, the oldest received are dropped.
pub const MAX_MESSAGES: u64 = 10_000;
/// The longest folder name accepted, in bytes.
pub const MAX_FOLDER: usize = 1024;
/// The folder of a message whose server named none.
pub const INBOX: &str = "INBOX";

/// What [`MailStore::handle`] did with an envelope, and what to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// What happened.
    pub event: MailEvent,
    /// Envelopes to send to the server, in order (after the store was written).
    pub replies: Vec<bramble_proto::schema::Envelope>,
}

/// What an envelope from the server did to the mail store.
#[derive(Debug, Clone, PartialEq)]
pub enum MailEvent {
    /// A message the device did not have: stored, to be shown.
    NewMessage {
        /// Its RefID.
        ref_id: u64,
    },
    /// A message the device already had (the server sent it again): not stored again, but
    /// confirmed again.
    Duplicate {
        /// Its RefID.
        ref_id: u64,
    },
    /// More body text ("More") was stored.
    MoreText {
        /// The message.
        ref_id: u64,
        /// Bytes of body text now on the device.
        have: u64,
        /// Bytes of the whole body text, as the server said.
        total: u64,
        /// Whether nothing more can be fetched (all of it is here, or the device's limit is
        /// reached).
        complete: bool,
    },
    /// The server could not give more text, or what it gave did not fit what the device
    /// holds.
    MoreFailed {
        /// The message.
        ref_id: u64,
        /// Why, for the user.
        error: String,
    },
    /// A piece of an attachment was stored.
    AttachmentPiece {
        /// The message.
        ref_id: u64,
        /// The attachment's number.
        index: u32,
        /// Bytes received so far.
        received: u64,
        /// Bytes in all.
        total: u64,
        /// Whether it is all here (and can be saved with [`MailStore::save_attachment`]).
        complete: bool,
    },
    /// An attachment cannot be downloaded: the server's reason, a piece out of order or
    /// inconsistent, or too large. What had arrived of it is dropped.
    AttachmentFailed {
        /// The message.
        ref_id: u64,
        /// The attachment's number.
        index: u32,
        /// Why, for the user.
        error: String,
    },
    /// The server said what became of a message the user sent.
    Submitted {
        /// The outbox entry.
        client_id: u64,
        /// Its state now.
        state: OutboxState,
        /// The server's words (why it failed).
        message: String,
    },
    /// A change made in the mailbox (read, flagged, deleted, moved).
    Changed {
        /// The message.
        ref_id: u64,
        /// Whether the message is on the device (a change to another one changes nothing).
        applied: bool,
    },
    /// Mail that made no sense (a message without a RefID, an answer about something the
    /// device does not hold, …): an `ErrorReport` goes back to the server.
    Refused {
        /// Why, in words.
        reason: String,
    },
    /// Not mail but the policy service's (an IT policy, an IT admin command, a software
    /// configuration, …): handled by [`crate::manage`], which says what it did. A wipe or the
    /// removal of the organization's data closes the mail store
    /// ([`crate::ManageEvent::ends_session`]).
    Managed(Vec<crate::ManageEvent>),
    /// Not mail but the synchronization service's (organizer records, their outcomes, the
    /// configuration, a backup to restore): handled by [`crate::organizer`].
    Organizer(Vec<crate::OrganizerEvent>),
    /// Not a mail message (Ping, …), or not an envelope: nothing done.
    NotMail,
}

impl MailEvent {
    /// Whether the device's data is gone (a wipe, or the organization's data removed): the
    /// mail store is closed and must not be used any more.
    pub fn ends_session(&self) -> bool {
        matches!(self, MailEvent::Managed(events) if events.iter().any(crate::ManageEvent::ends_session))
    }
}

/// Where a message the user wrote stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Stored on the device; not yet accepted by the server (sent again on each connection).
    Queued,
    /// Stored by the server; it will be sent.
    Accepted,
    /// Handed to the mail server.
    Sent,
    /// Not sent, and it will not be.
    Failed,
}

impl OutboxState {
    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, OutboxState::Sent | OutboxState::Failed)
    }

    pub(crate) fn as_db(self) -> &'static str {
        match self {
            OutboxState::Queued => "queued",
            OutboxState::Accepted => "accepted",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
        }
    }

    pub(crate) fn from_db(s: &str) -> Option<OutboxState> {
        Some(match s {
            "queued" => OutboxState::Queued,
            "accepted" => OutboxState::Accepted,
            "sent" => OutboxState::Sent,
            "failed" => OutboxState::Failed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for OutboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutboxState::Queued => "waiting to be sent",
            OutboxState::Accepted => "accepted by the server",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
        })
    }
}

/// A message as the inbox lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageSummary {
    /// The server's reference for it.
    pub ref_id: u64,
    /// The sender, `Name <address>` or the address.
    pub from: String,
    /// The subject.
    pub subject: String,
    /// The Date header (unix ms), if it had a readable one.
    pub date_ms: Option<i64>,
    /// When it arrived on the device (unix ms).
    pub received_ms: i64,
    /// The mailbox folder it is in.
    pub folder: String,
    /// Read.
    pub seen: bool,
    /// Flagged.
    pub flagged: bool,
    /// Forwarded with priority by a filter.
    pub priority: bool,
    /// How many attachments it has.
    pub attachments: u32,
    /// Whether the server has more of its text ("More").
    pub more: bool,
}

/// A message as `read` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// The server's reference for it.
    pub ref_id: u64,
    /// The mailbox folder it is in.
    pub folder: String,
    /// The sender.
    pub from: String,
    /// The To recipients.
    pub to: Vec<String>,
    /// The Cc recipients.
    pub cc: Vec<String>,
    /// Where replies go, when not to the sender.
    pub reply_to: String,
    /// The subject.
    pub subject: String,
    /// The Date header (unix ms), if readable.
    pub date_ms: Option<i64>,
    /// When it arrived on the device (unix ms).
    pub received_ms: i64,
    /// Its Message-ID.
    pub message_id: String,
    /// "normal", "high" or "low".
    pub importance: &'static str,
    /// Forwarded with priority by a filter.
    pub priority: bool,
    /// Read.
    pub seen: bool,
    /// Flagged.
    pub flagged: bool,
    /// The body text on the device so far.
    pub text: String,
    /// The length of the whole body text in bytes, as the server said.
    pub text_total: u64,
    /// Whether the server has more of the text that the device can fetch.
    pub more: bool,
    /// Whether the text was cut at the device's limit ([`MAX_TEXT`]).
    pub truncated: bool,
    /// Its attachments.
    pub attachments: Vec<Attachment>,
    /// The server's notes for the user about what could not be shown.
    pub notes: Vec<String>,
    /// Its size in the mailbox, bytes.
    pub size: u64,
}

/// An attachment of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// Its number, from 0 (what `attachment REFID N` names).
    pub index: u32,
    /// Its file name.
    pub name: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A finished attachment written to a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedAttachment {
    /// The file written.
    pub path: std::path::PathBuf,
    /// The attachment's name, as the server gave it.
    pub name: String,
    /// Its MIME type.
    pub content_type: String,
    /// Bytes written.
    pub size: u64,
}

/// What the user wants to send; [`MailStore::compose`] turns it into a `MailSubmit`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Draft {
    /// New, reply, reply to all, or forward.
    pub kind: MailKind,
    /// The message replied to or forwarded (0 for a new message).
    pub original_ref_id: u64,
    /// Recipients.
    pub to: Vec<String>,
    /// Copy recipients.
    pub cc: Vec<String>,
    /// Blind copy recipients.
    pub bcc: Vec<String>,
    /// The subject.
    pub subject: String,
    /// What the user typed (the server adds the original for replies and forwards).
    pub body: String,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEntry {
    /// The device's number for it (what the server's answers name).
    pub client_id: u64,
    /// "new", "reply", "reply all" or "forward".
    pub kind: &'static str,
    /// The message replied to or forwarded (0: none).
    pub original_ref_id: u64,
    /// Recipients.
    pub to: Vec<String>,
    /// Copy recipients.
    pub cc: Vec<String>,
    /// Blind copy recipients.
    pub bcc: Vec<String>,
    /// The subject.
    pub subject: String,
    /// Where it stands.
    pub state: OutboxState,
    /// The server's words (why it failed).
    pub message: String,
    /// The Message-ID it was sent with.
    pub message_id: String,
    /// When it was written (unix ms).
    pub created_ms: i64,
    /// When its state last changed (unix ms).
    pub updated_ms: i64,
}

/// A local change not yet sent to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChange {
    /// Its place in the queue (for [`MailStore::change_sent`]).
    pub id: i64,
    /// The change.
    pub change: bramble_proto::schema::MailChange,
}

/// The words for a kind of message.
pub fn kind_name(kind: MailKind) -> &'static str {
    match kind {
        MailKind::MailNew => "new",
        MailKind::MailReply => "reply",
        MailKind::MailReplyAll => "reply all",
        MailKind::MailForward => "forward",
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn cut_at(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The address in `Name <address>`, or the whole text trimmed.
pub(crate) fn bare_address(s: &str) -> &str {
    let s = s.trim();
    match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].trim(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_at_respects_character_boundaries() {
        assert_eq!(cut_at("héllo", 2), "h");
        assert_eq!(cut_at("héllo", 3), "hé");
        assert_eq!(cut_at("héllo", 100), "héllo");
        assert_eq!(cut_at("€", 2), "");
        assert_eq!(cut_at("", 0), "");
    }

    #[test]
    fn bare_address_takes_the_angle_brackets() {
        assert_eq!(
            bare_address("Alice <alice@example.com>"),
            "alice@example.com"
        );
        assert_eq!(bare_address("  bob@example.com "), "bob@example.com");
        assert_eq!(bare_address("odd > <"), "odd > <");
        assert_eq!(bare_address("<>"), "");
    }

    #[test]
    fn outbox_states_round_trip() {
        for s in [
            OutboxState::Queued,
            OutboxState::Accepted,
            OutboxState::Sent,
            OutboxState::Failed,
        ] {
            assert_eq!(OutboxState::from_db(s.as_db()), Some(s));
        }
        assert_eq!(OutboxState::from_db("lost"), None);
    }
}
