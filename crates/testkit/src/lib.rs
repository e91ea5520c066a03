//! Real servers for Bramble's tests, started on free loopback ports in temporary
//! directories and torn down when the handle drops.
//!
//! Owns: starting and stopping test processes (Dovecot and Postfix in [`mail`], Radicale in
//! [`dav`], slapd in [`ldap`], headless Chromium in [`browser`], …), free loopback ports for Bramble's own listeners ([`free_port`]), and creating
//! a fresh PostgreSQL database per test on the server at 127.0.0.1:5432 ([`postgres`]). Must not
//! touch Bramble's own crates: testkit is a dependency of their tests, never the other way
//! round.
//!
//! A program that is missing makes the test fail with the Debian package (or, for Radicale,
//! the script) to install it; nothing here skips silently. `scripts/test` (at the repository root) installs them all.

pub mod browser;
pub mod dav;
pub mod ldap;
pub mod mail;
pub mod port;
pub mod postgres;

pub use browser::Browser;
pub use dav::DavServer;
pub use ldap::{LdapServer, Person};
pub use mail::{MailStack, MailStackOptions};
pub use port::{free_listener, free_port};
pub use postgres::{DbKind, TestDb};
