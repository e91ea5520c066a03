//! Which IT policy is in force for a user, and why: the user's own assignment wins, then the
//! assignment of the user's first group by name, then the policy called "Default". The trace
//! lists every assignment considered, the winner marked, as `bramble admin user show` prints.
//!
//! Also makes the six BES 5 presets exist as policies (version 1 each) on first start, and the
//! signed `ItPolicy` of a resolution. The `ItPolicy` of a given policy version is always the
//! same bytes (its time is the version's), so its hash names the version a device applied.
//!
//! Owns: resolution and the presets' seeding. Must not touch: sending (the service does).

use bramble_proto::activation::{DomainKey, sha256};
use bramble_proto::schema::{self, PolicyRule};
use bramble_store::{Store, StoreError};

use super::rules;
use crate::admin::views::TraceStep;

/// The policy every user falls back to.
pub const DEFAULT_POLICY: &str = "Default";

/// The policy in force for a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Its name.
    pub name: String,
    /// Its current version (0 when the Default policy was removed and the catalogue's
    /// defaults stand in).
    pub version: u32,
    /// When that version was made (unix ms).
    pub version_at_ms: i64,
    /// Its rules, the whole catalogue in order.
    pub rules: Vec<PolicyRule>,
    /// "user", "group NAME", or "default".
    pub source: String,
    /// Every assignment considered, the winner marked.
    pub trace: Vec<TraceStep>,
}

impl Resolved {
    /// The `ItPolicy` a device receives.
    pub fn it_policy(&self) -> schema::ItPolicy {
        schema::ItPolicy {
            name: self.name.clone(),
            version: u64::from(self.version),
            issued_at_ms: self.version_at_ms,
            rules: self.rules.clone(),
        }
    }
}

/// Makes each BES 5 preset exist as a policy (created at version 1 when missing; an
/// administrator's later versions are kept).
///
/// # Errors
/// When the database fails.
pub async fn seed_presets(store: &Store) -> Result<(), StoreError> {
    for p in rules::presets() {
        if store.policy(p.name).await?.is_some() {
            continue;
        }
        match store
            .create_policy(
                p.name,
                Some(p.description),
                &rules::to_json(&p.rules()),
                Some("preset"),
            )
            .await
        {
            Ok(_) | Err(StoreError::PolicyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The policy in force for `email`.
///
/// # Errors
/// When the database fails or a stored version is damaged.
pub async fn resolve_user(store: &Store, email: &str) -> Result<Resolved, StoreError> {
    let c = store.policy_candidates(email).await?;
    let mut trace = Vec::new();
    let (source, name) = match (&c.user, c.groups.first()) {
        (Some(p), _) => ("user".to_owned(), p.clone()),
        (None, Some((g, p))) => (format!("group {g}"), p.clone()),
        (None, None) => ("default".to_owned(), DEFAULT_POLICY.to_owned()),
    };
    if let Some(p) = &c.user {
        trace.push(TraceStep {
            source: "user".into(),
            policy: p.clone(),
            won: true,
            why: "assigned to the user directly, which comes before any group".into(),
        });
    }
    for (i, (g, p)) in c.groups.iter().enumerate() {
        let won = c.user.is_none() && i == 0;
        let why = if won {
            if c.groups.len() > 1 {
                "the user's first group by name that has a policy".to_owned()
            } else {
                "the user's only group with a policy".to_owned()
            }
        } else if c.user.is_some() {
            "the user's own assignment comes first".to_owned()
        } else {
            format!(
                "group {} comes first (groups are taken by name)",
                c.groups[0].0
            )
        };
        trace.push(TraceStep {
            source: format!("group {g}"),
            policy: p.clone(),
            won,
            why,
        });
    }
    let default_won = c.user.is_none() && c.groups.is_empty();
    trace.push(TraceStep {
        source: "default".into(),
        policy: DEFAULT_POLICY.into(),
        won: default_won,
        why: if default_won {
            "nothing is assigned to the user or their groups".into()
        } else {
            "used only when nothing is assigned to the user or their groups".into()
        },
    });
    match store.policy_version(&name, None).await? {
        Some(v) => {
            let rules =
                rules::from_json(&v.rules_json).map_err(|what| StoreError::Corrupt { what })?;
            Ok(Resolved {
                name: v.name,
                version: v.version,
                version_at_ms: v.created_at_ms,
                rules,
                source,
                trace,
            })
        }
        // Deleted between the lookup and now, or the Default policy is gone: the
        // catalogue's defaults, under the Default name, keep the device governed.
        None => Ok(Resolved {
            name: DEFAULT_POLICY.into(),
            version: 0,
            version_at_ms: 0,
            rules: rules::resolve(&[]),
            source,
            trace,
        }),
    }
}

/// The signed policy for `email`'s device and its hash (what the device answers with).
///
/// # Errors
/// As [`resolve_user`].
pub async fn signed_policy(
    store: &Store,
    domain: &DomainKey,
    email: &str,
) -> Result<(Resolved, schema::SignedPolicy, [u8; 32]), StoreError> {
    let resolved = resolve_user(store, email).await?;
    let signed = domain.sign_policy(&resolved.it_policy());
    let hash = sha256(&signed.policy);
    Ok((resolved, signed, hash))
}
