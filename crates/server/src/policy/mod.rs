//! The policy service (BES: BlackBerry Policy Service): IT policies, IT admin commands and
//! software configurations, everything signed with the domain's Ed25519 key or sealed per
//! device and sent through the dispatcher.
//!
//! - [`rules`]: the catalogue of rules and the six BES 5 presets (pure).
//! - [`resolve`]: which policy is in force for a user (user over group over Default), with the
//!   trace of every assignment considered, and the signed `ItPolicy` made from it.
//! - [`service`]: the task that pushes a policy to every affected device when it changes and
//!   resends it periodically, records what each device applied and its compliance, carries
//!   IT admin commands to devices with their receipts, and deploys software configurations.
//! - [`commands`] and [`software`]: what those two send and how their answers are recorded.
//!
//! Owns: the domain signing key and what is signed with it, the policy, command and software
//! tables' meaning. Must not touch: mailboxes, sealing (it hands envelopes to the dispatcher),
//! the activation handshake's state (activation asks [`resolve`] for the policy to send).

pub mod commands;
pub mod resolve;
pub mod rules;
pub mod service;
pub mod software;

use std::collections::HashMap;
use std::time::Duration;

use bramble_proto::SrpId;
use bramble_proto::activation::DomainKey;
use bramble_proto::schema;
use bramble_store::{Store, StoreError};

pub use resolve::{Resolved, resolve_user, seed_presets, signed_policy};
pub use service::{PolicyHandle, PolicyService};

/// Settings of the policy service (`[server.policy]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// How often the IT policy in force is sent again to every device (BES resent it
    /// periodically so a device that missed one catches up). Default 24 h.
    #[serde(with = "crate::config::duration_text")]
    pub resend_every: Duration,
    /// How long to wait for a device's answer (to a policy, a command, a software job) before
    /// sending again. Default 10 min.
    #[serde(with = "crate::config::duration_text")]
    pub retry_after: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            resend_every: Duration::from_secs(24 * 3600),
            retry_after: Duration::from_secs(600),
        }
    }
}

/// The name of the domain signing key among the server's secrets.
pub const DOMAIN_KEY: &str = "domain_signing_key";

/// The service books every activated device receives (seed 002's table).
pub const SERVICE_BOOKS: [&str; 7] = [
    "CMIME",
    "CICAL",
    "SYNC",
    "ALP",
    "IPPP",
    "BrowserConfig",
    "BBIM",
];

/// Loads the domain's signing key, making it on first use.
///
/// # Errors
/// When the database fails or the stored key is damaged.
pub async fn domain_key(store: &Store) -> Result<DomainKey, StoreError> {
    // Made before it is needed, so a failing random source is an error, never a weak key.
    let fresh = DomainKey::generate_pkcs8().map_err(|e| StoreError::Corrupt {
        what: format!("making the domain signing key: {e}"),
    })?;
    let pkcs8 = store.secret_or_insert(DOMAIN_KEY, || fresh).await?;
    DomainKey::from_pkcs8(&pkcs8).map_err(|e| StoreError::Corrupt {
        what: format!("the domain signing key: {e}"),
    })
}

/// The service books for a user's device, each naming this server by SRP id.
pub fn service_books(srp: SrpId, email: &str) -> schema::ServiceBooks {
    let books = SERVICE_BOOKS
        .iter()
        .map(|cid| {
            let mut settings = HashMap::new();
            let name = match *cid {
                "CMIME" => {
                    settings.insert("email".to_owned(), email.to_owned());
                    format!("Desktop [{srp}]")
                }
                "CICAL" => format!("Desktop [{srp}]"),
                "SYNC" => {
                    settings.insert("wireless_backup".to_owned(), "on".to_owned());
                    format!("Desktop [{srp}]")
                }
                "ALP" => format!("Address Lookup [{srp}]"),
                "IPPP" => format!("IPPP for BES [{srp}]"),
                "BrowserConfig" => format!("BlackBerry Browser [{srp}]"),
                _ => format!("Enterprise Messenger [{srp}]"),
            };
            schema::ServiceBook {
                cid: (*cid).to_owned(),
                name,
                srp_id: srp.get(),
                settings,
            }
        })
        .collect();
    schema::ServiceBooks { books }
}
