//! What can go wrong starting a relay or administering its SRP ids.

use std::net::SocketAddr;
use std::path::PathBuf;

use bramble_proto::SrpId;

/// A relay could not start, or an SRP administration command failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A listening port could not be opened.
    #[error("cannot listen for {what} on {addr}: {source} (is another relay running there?)")]
    Bind {
        /// "enterprise servers" or "devices".
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded or made.
    #[error("the relay's TLS certificate: {0}")]
    Tls(#[from] bramble_net::TlsError),
    /// The data directory could not be created.
    #[error("cannot create the relay's data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The relay database could not be opened or brought up to date.
    #[error("cannot open the relay database {path}: {source}")]
    OpenDb {
        /// The file.
        path: PathBuf,
        /// Why.
        source: sqlx::Error,
    },
    /// A migration of the relay database failed.
    #[error("cannot bring the relay database {path} up to date: {source}")]
    Migrate {
        /// The file.
        path: PathBuf,
        /// Why.
        source: sqlx::migrate::MigrateError,
    },
    /// The configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// A query on the relay database failed.
    #[error("the relay database failed: {0}")]
    Db(#[from] sqlx::Error),
    /// `srp add` with an id that is already registered.
    #[error("SRP id {0} is already registered at this relay; remove it first to get a new key")]
    SrpExists(SrpId),
    /// An SRP id that is not registered at this relay.
    #[error(
        "SRP id {0} is not registered at this relay ('bramble relay srp list' shows those that are)"
    )]
    SrpNotFound(SrpId),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}
