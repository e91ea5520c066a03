//! The policy service (BES: BlackBerry Policy Service): the IT policy, signed with the
//! domain's Ed25519 key, and the service books, sent to a device at activation. What policies
//! contain and the IT admin commands come later; here: the default policy and the books, and
//! [`rules`], the catalogue of rules and the BES 5 presets (not yet used by the default policy).
//!
//! Owns: the domain signing key and what is signed with it. Must not touch: mailboxes,
//! sealing (it hands envelopes to the dispatcher).

pub mod rules;

use std::collections::HashMap;

use bramble_proto::SrpId;
use bramble_proto::activation::DomainKey;
use bramble_proto::schema::{self, policy_rule::Value};
use bramble_store::{Store, StoreError};

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

fn rule(name: &str, value: Value) -> schema::PolicyRule {
    schema::PolicyRule {
        name: name.to_owned(),
        value: Some(value),
    }
}

/// BES's Default IT policy, as data.
pub fn default_policy(now_ms: i64) -> schema::ItPolicy {
    schema::ItPolicy {
        name: "Default".into(),
        version: 1,
        issued_at_ms: now_ms,
        rules: vec![
            rule("password_required", Value::Flag(false)),
            rule("minimum_password_length", Value::Number(4)),
            rule("maximum_password_attempts", Value::Number(10)),
            rule("inactivity_lock_minutes", Value::Number(0)),
            rule("disable_camera", Value::Flag(false)),
            rule("disable_bluetooth", Value::Flag(false)),
            rule("allow_third_party_applications", Value::Flag(true)),
            rule("maximum_attachment_kib", Value::Number(25 * 1024)),
            rule("content_protection", Value::Flag(false)),
        ],
    }
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
