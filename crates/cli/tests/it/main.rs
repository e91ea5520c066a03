//! The `bramble` binary, driven as an administrator would: real processes on loopback ports,
//! their output and exit codes. Every background process is killed when its test ends.
//!
//! The server's configuration database follows `BRAMBLE_TEST_DB` (SQLite in the data
//! directory, or a fresh PostgreSQL database from `bramble-testkit`).

mod access;
mod bench;
mod config;
mod demo;
mod directory;
mod filters;
mod kill;
mod organizer;
mod policy;
mod relay_device;
mod serve;
mod tui;
mod usage;
mod util;
