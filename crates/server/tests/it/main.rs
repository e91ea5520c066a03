//! The enterprise server against a real relay, a real device library and the configuration
//! database chosen by `BRAMBLE_TEST_DB` (SQLite, or a fresh PostgreSQL database).

mod access;
mod activation;
mod admin;
mod console;
mod dav;
mod directory;
mod e2e;
mod filters;
mod hostile_mail;
mod mail;
mod mail_send;
mod mailbox;
mod openapi;
mod policy;
mod reconcile;
mod roles;
mod support;
mod sync;
mod transport;
