//! Push mail (seed 002, "Email message flow"), both directions.
//!
//! - [`agent`]: the forwarding agent: new mail from the watchers, filtered, given a RefID,
//!   sent to the device; resends for want of a relay report or a confirmation; changes seen in
//!   the mailbox passed to the device.
//! - [`requests`]: More and attachments, read from the mailbox for the device.
//! - [`changes`]: the device's read/flag/delete/move, made in the mailbox from a durable queue.
//! - [`outbox`]: mail from the device: composed, sent, filed in Sent, answered.
//! - [`transport`]: SMTP, or local delivery into Maildirs on the embedded default.
//! - [`content`]: a message from the mailbox, as bytes, turned into what the device sees
//!   (headers, the first 2 KiB of text, the attachment list), the rest of its text for
//!   "More", and its attachments. No I/O.
//! - [`compose`]: a message from the device turned into RFC 5322 bytes for SMTP, with the
//!   original appended for replies and forwards. No I/O.
//! - [`filter`]: global and per-user filters deciding whether and how a message is forwarded.
//!   No I/O.
//!
//! Owns: what is forwarded, its RefID, delivery confirmations and resends, reconciliation, the
//! outbox from the device. Must not touch: sealing (the dispatcher's), SQL (only `bramble-store`).

pub mod agent;
pub mod changes;
pub mod compose;
pub mod content;
pub mod filter;
pub mod outbox;
pub mod requests;
pub mod transport;
