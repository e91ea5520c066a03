//! SRP ids: the enterprise servers allowed to connect, their keys and their state.
//!
//! These functions work on the data directory's `relay.db` whether or not a relay is running
//! on it: a running relay reads an SRP id's row at every server login, so changes apply to the
//! next login without a restart (and the expiry sweep closes a connected server whose id was
//! disabled or removed).
//!
//! A key is 128 random bits shown as eight groups of four hex digits
//! (`3f9a-07c1-…`); only a SHA-256 hash of those 16 bytes is stored. Dashes, spaces and case
//! do not matter when a server presents it.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use bramble_proto::SrpId;
use serde::{Serialize, Serializer};
use sqlx::SqlitePool;

use crate::RelayError;
use crate::db::{self, now_ms};

/// Bytes of an SRP key.
const KEY_LEN: usize = 16;
/// Domain separation for the stored hash of a key.
const KEY_HASH_CONTEXT: &[u8] = b"bramble/v1/srp-key";

/// Whether an SRP id may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SrpState {
    /// Servers may log in with it.
    Enabled,
    /// Two live servers used it at once; refused until an operator enables it again.
    Conflict,
    /// An operator disabled it.
    Disabled,
}

impl SrpState {
    fn as_str(self) -> &'static str {
        match self {
            SrpState::Enabled => "enabled",
            SrpState::Conflict => "conflict",
            SrpState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for SrpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not an SRP state.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an SRP state (enabled, conflict or disabled)")]
pub struct BadSrpState(String);

impl FromStr for SrpState {
    type Err = BadSrpState;
    fn from_str(s: &str) -> Result<SrpState, BadSrpState> {
        match s {
            "enabled" => Ok(SrpState::Enabled),
            "conflict" => Ok(SrpState::Conflict),
            "disabled" => Ok(SrpState::Disabled),
            _ => Err(BadSrpState(s.to_owned())),
        }
    }
}

/// One SRP id as `srp list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SrpEntry {
    /// The id (serialized as `S40012345`).
    #[serde(serialize_with = "as_text")]
    pub id: SrpId,
    /// Whether servers may log in with it.
    pub state: SrpState,
    /// Why it is in that state (a conflict names both servers' addresses).
    pub state_reason: Option<String>,
    /// When it entered that state, unix milliseconds.
    pub state_at_ms: i64,
    /// When it was added, unix milliseconds.
    pub created_at_ms: i64,
    /// The last successful login, unix milliseconds.
    pub last_login_ms: Option<i64>,
    /// Whether a server is connected with it now. Only a running relay knows this
    /// ([`RelayHandle::srp_list`](crate::RelayHandle::srp_list)); [`srp_list`] says `false`.
    pub connected: bool,
}

fn as_text<S: Serializer>(id: &SrpId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// The stored hash of a key's 16 bytes.
pub(crate) fn key_hash(key: &[u8; KEY_LEN]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(KEY_HASH_CONTEXT);
    ctx.update(key);
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The 16 bytes of a key as typed (dashes, spaces and case ignored), if it is one.
pub(crate) fn parse_key(text: &str) -> Option<[u8; KEY_LEN]> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'-' && !b.is_ascii_whitespace())
        .collect();
    if digits.len() != 2 * KEY_LEN {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (i, pair) in digits.chunks(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// A key as shown to the operator: `3f9a-07c1-…`, eight groups of four.
pub(crate) fn format_key(key: &[u8; KEY_LEN]) -> String {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    hex.as_bytes()
        .chunks(4)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect::<Vec<_>>()
        .join("-")
}

/// Equality of two byte strings in time that depends only on their length.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What a login needs to know of an SRP id.
#[derive(Debug)]
pub(crate) struct SrpRow {
    pub key_hash: Vec<u8>,
    pub state: SrpState,
}

/// The row of `srp`, read fresh.
pub(crate) async fn load(pool: &SqlitePool, srp: SrpId) -> Result<Option<SrpRow>, sqlx::Error> {
    let row: Option<(Vec<u8>, String)> =
        sqlx::query_as("SELECT key_hash, state FROM srp WHERE id = ?")
            .bind(i64::from(srp.get()))
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(key_hash, state)| SrpRow {
        key_hash,
        // The column's CHECK allows nothing else; an unknown value is treated as disabled.
        state: state.parse().unwrap_or(SrpState::Disabled),
    }))
}

/// The state of `srp`, or `None` when it is not registered.
pub(crate) async fn state_of(
    pool: &SqlitePool,
    srp: SrpId,
) -> Result<Option<SrpState>, sqlx::Error> {
    Ok(load(pool, srp).await?.map(|r| r.state))
}

/// Puts `srp` in the conflict state with `reason`.
pub(crate) async fn set_conflict(
    pool: &SqlitePool,
    srp: SrpId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    set_state(pool, srp, SrpState::Conflict, Some(reason)).await?;
    Ok(())
}

async fn set_state(
    pool: &SqlitePool,
    srp: SrpId,
    state: SrpState,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE srp SET state = ?, state_reason = ?, state_at = ? WHERE id = ?")
        .bind(state.as_str())
        .bind(reason)
        .bind(now_ms())
        .bind(i64::from(srp.get()))
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Runs `f` on the data directory's database, then closes it.
async fn with_db<T, F>(data_dir: &Path, f: F) -> Result<T, RelayError>
where
    F: AsyncFnOnce(&SqlitePool) -> Result<T, RelayError>,
{
    let pool = db::open(data_dir, 1).await?;
    let result = f(&pool).await;
    pool.close().await;
    result
}

/// Registers an SRP id (a random one when `id` is `None`) with a new random key, and returns
/// both. The key is shown only now: the relay keeps only its hash.
///
/// # Errors
/// [`RelayError::SrpExists`] when `id` is already registered; database errors.
pub async fn srp_add(data_dir: &Path, id: Option<SrpId>) -> Result<(SrpId, String), RelayError> {
    let rng = ring::rand::SystemRandom::new();
    let mut key = [0u8; KEY_LEN];
    ring::rand::SecureRandom::fill(&rng, &mut key).map_err(|_| RelayError::Random)?;
    let hash = key_hash(&key);
    with_db(data_dir, async |pool| {
        let now = now_ms();
        // A random id has all eight digits; a few tries find a free one.
        for _ in 0..64 {
            let srp = match id {
                Some(s) => s,
                None => {
                    let mut b = [0u8; 4];
                    ring::rand::SecureRandom::fill(&rng, &mut b).map_err(|_| RelayError::Random)?;
                    let n = 10_000_000 + u32::from_be_bytes(b) % 90_000_000;
                    SrpId::new(n).ok_or(RelayError::Random)?
                }
            };
            let done = sqlx::query(
                "INSERT INTO srp (id, key_hash, state, state_at, created_at) VALUES (?, ?, 'enabled', ?, ?) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(i64::from(srp.get()))
            .bind(hash.as_slice())
            .bind(now)
            .bind(now)
            .execute(pool)
            .await?;
            if done.rows_affected() == 1 {
                tracing::info!(%srp, "SRP id added");
                return Ok((srp, format_key(&key)));
            }
            if id.is_some() {
                return Err(RelayError::SrpExists(srp));
            }
        }
        Err(RelayError::Random)
    })
    .await
}

/// The SRP ids registered at the relay of `data_dir`, by id.
///
/// # Errors
/// Database errors.
pub async fn srp_list(data_dir: &Path) -> Result<Vec<SrpEntry>, RelayError> {
    with_db(data_dir, async |pool| list_on(pool).await).await
}

pub(crate) async fn list_on(pool: &SqlitePool) -> Result<Vec<SrpEntry>, RelayError> {
    type Row = (i64, String, Option<String>, i64, i64, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, state, state_reason, state_at, created_at, last_login FROM srp ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(
            |(id, state, state_reason, state_at, created_at, last_login)| {
                Some(SrpEntry {
                    id: SrpId::new(u32::try_from(id).ok()?)?,
                    state: state.parse().unwrap_or(SrpState::Disabled),
                    state_reason,
                    state_at_ms: state_at,
                    created_at_ms: created_at,
                    last_login_ms: last_login,
                    connected: false,
                })
            },
        )
        .collect())
}

/// Lets servers log in with `id` again: clears a conflict or a disable.
///
/// # Errors
/// [`RelayError::SrpNotFound`]; database errors.
pub async fn srp_enable(data_dir: &Path, id: SrpId) -> Result<(), RelayError> {
    with_db(data_dir, async |pool| {
        if !set_state(pool, id, SrpState::Enabled, None).await? {
            return Err(RelayError::SrpNotFound(id));
        }
        tracing::info!(srp = %id, "SRP id enabled");
        Ok(())
    })
    .await
}

/// Refuses further logins with `id` until it is enabled again (a connected server is closed
/// at the relay's next expiry sweep).
///
/// # Errors
/// [`RelayError::SrpNotFound`]; database errors.
pub async fn srp_disable(data_dir: &Path, id: SrpId) -> Result<(), RelayError> {
    with_db(data_dir, async |pool| {
        if !set_state(
            pool,
            id,
            SrpState::Disabled,
            Some("disabled by the operator"),
        )
        .await?
        {
            return Err(RelayError::SrpNotFound(id));
        }
        tracing::info!(srp = %id, "SRP id disabled");
        Ok(())
    })
    .await
}

/// Removes `id`, with the frames queued for it and the reports waiting for it. Returns
/// whether it was registered.
///
/// # Errors
/// Database errors.
pub async fn srp_remove(data_dir: &Path, id: SrpId) -> Result<bool, RelayError> {
    with_db(data_dir, async |pool| {
        let mut tx = pool.begin().await?;
        let n = i64::from(id.get());
        let done = sqlx::query("DELETE FROM srp WHERE id = ?")
            .bind(n)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM queue WHERE dst = ?")
            .bind(db::addr_to_db(bramble_proto::Address::Srp(id)))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM pending_reports WHERE srp = ?")
            .bind(n)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let removed = done.rows_affected() > 0;
        if removed {
            tracing::info!(srp = %id, "SRP id removed");
        }
        Ok(removed)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_as_shown() {
        let key = [0x3f, 0x9a, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xff];
        let shown = format_key(&key);
        assert_eq!(shown, "3f9a-0001-0203-0405-0607-0809-0a0b-0cff");
        assert_eq!(parse_key(&shown), Some(key));
        assert_eq!(
            parse_key(&shown.to_uppercase().replace('-', " ")),
            Some(key)
        );
        assert_eq!(parse_key("3f9a"), None);
        assert_eq!(parse_key(&shown.replace('f', "g")), None);
        assert_eq!(parse_key("+f9a-0001-0203-0405-0607-0809-0a0b-0cff"), None);
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn state_text() {
        for s in [SrpState::Enabled, SrpState::Conflict, SrpState::Disabled] {
            assert_eq!(s.to_string().parse::<SrpState>().ok(), Some(s));
        }
    }
}
