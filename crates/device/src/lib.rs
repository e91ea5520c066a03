//! The Bramble handheld, as a library: what `bramble device …` runs, and what tests and
//! benchmarks drive by the thousand in one process.
//!
//! Owns:
//! - **its identity**: an Ed25519 key whose public half fixes the device's PIN and proves it
//!   to the relay ([`Device::pin`]);
//! - **its local store**: a home directory (`identity.pkcs8`, `state.json`, both readable by
//!   the owner only, the state replaced atomically) holding the relay's address and pinned
//!   certificate fingerprint, and the binding to its enterprise server — or nothing at all
//!   with [`Device::in_memory`];
//! - **its mail** ([`mail`]): the local mail store (`mail.db`), what the server pushes, the
//!   outbox and the changes to tell the server;
//! - **what its organization manages** ([`manage`]): IT policy updates and compliance, the
//!   device password and lock, IT admin commands (lock, wipe, remove the organization's data,
//!   regenerate the key), service books, and applications from software configurations;
//! - **its organizer** ([`organizer`]): calendar, contacts, tasks and memos (`organizer.db`)
//!   synchronized with the organization's server, and the phone user's options with their
//!   wireless backup;
//! - **its session keys**: the master key of the binding, the transmit sequence numbers it has
//!   reserved (persisted a block at a time *before* any of them is used, since they are AEAD
//!   nonces) and the highest number it has received (persisted before a frame is acked, so a
//!   restart cannot open a replay).
//!
//! Must not touch: the enterprise server's database or the relay's internals. The device
//! talks to both only through the wire ([`bramble_net::Link`] to the relay, sealed
//! `Envelope`s to the server). Tests that need a bound device provision the server's side
//! themselves, with the same [`bramble_proto::MasterKey`] given to [`Device::provision`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), bramble_device::DeviceError> {
//! let mut dev = bramble_device::Device::open(std::path::Path::new("/tmp/phone"))?;
//! dev.set_relay("127.0.0.1:4101", None)?; // trust the relay's certificate on first use
//! let mut conn = dev.connect().await?;
//! let rtt = conn.ping("hello").await?;
//! println!("round trip {rtt:?}");
//! conn.close().await;
//! # Ok(()) }
//! ```
//!
//! Each connection runs in a `tracing` span named `device` carrying the PIN and the relay.

/// Declares a struct read from a query's columns by name, with its `sqlx::FromRow` for the
/// device's SQLite rows: what `#[derive(sqlx::FromRow)]` gives, without sqlx's procedural
/// macros (which build the database drivers a second time, for the compiler).
macro_rules! row_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }
        impl<'r> ::sqlx::FromRow<'r, ::sqlx::sqlite::SqliteRow> for $name {
            fn from_row(row: &'r ::sqlx::sqlite::SqliteRow) -> Result<Self, ::sqlx::Error> {
                use ::sqlx::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),* })
            }
        }
    };
}
pub(crate) use row_struct;

pub mod activation;
mod connection;
mod device;
mod error;
mod home;
pub mod mail;
pub mod manage;
pub mod organizer;

pub use connection::{Connection, Incoming, PING_TIMEOUT};
pub use device::{Device, DeviceStatus, TX_BLOCK};
pub use error::DeviceError;
pub use home::{IDENTITY_FILE, LOCK_FILE, STATE_FILE};
pub use mail::{MailEvent, MailStore};
pub use manage::ManageEvent;
pub use organizer::{OrganizerEntry, OrganizerEvent, OrganizerStore};
