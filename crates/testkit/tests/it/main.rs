//! Integration tests of bramble-testkit: the servers it starts really work.

mod dav;
mod imap;
mod ldap;
mod mail;
mod port;
