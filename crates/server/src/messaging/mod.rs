//! The messaging agent (BES: BlackBerry Messaging Agent): watches each user's mailbox, finds
//! and removes activation mails and runs the activation handshake ([`activation`]), and runs
//! push mail both ways ([`mail`]: filters, RefIDs, delivery confirmations, More, attachments,
//! mail from the device, reconciliation).
//!
//! Owns: mailbox access and the activation handshake. Must not touch: sealing (the
//! dispatcher's), the relay link (the router's), SQL (only `bramble-store`).

pub mod activation;
pub mod credentials;
pub mod mail;
pub mod mailbox;
pub mod push_hook;
