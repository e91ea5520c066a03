//! Push-mail filters (BES "global filters" and user filters): ordered rules that decide
//! whether a new message is forwarded to the device, forwarded with priority, or not at all.
//!
//! Owns the `mail_filters` table and the values it holds: a filter's scope (global, or one
//! user's), its 1-based position in that scope (kept `1..=n` without gaps), its unique name
//! (unique per scope, in any case), its conditions and its action. Must not touch: how a
//! message is matched against the conditions (the server's messaging agent decides that);
//! the store checks only that what it keeps is well formed.

use std::fmt;
use std::str::FromStr;

use crate::{BackendKind, Store, StoreError, begin_write, normalize_email, now_ms, on_pool};

/// The longest pattern a condition may hold, in bytes.
pub const MAX_FILTER_PATTERN: usize = 256;
/// The longest filter name, in bytes.
pub const MAX_FILTER_NAME: usize = 128;
/// The importance values a condition may name.
pub const FILTER_IMPORTANCES: [&str; 3] = ["high", "normal", "low"];

/// Whose filter it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterScope {
    /// A global filter: checked first, for every user.
    Global,
    /// A filter of the user with this (lower-cased) address: checked when no global filter
    /// matched.
    User(String),
}

impl FilterScope {
    /// The scope in words, as the subject of a sentence: "the global filters", "the filters
    /// of alice@example.com".
    pub fn describe(&self) -> String {
        match self {
            FilterScope::Global => "the global filters".to_owned(),
            FilterScope::User(email) => format!("the filters of {email}"),
        }
    }
}

impl fmt::Display for FilterScope {
    /// "global", or the user's address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterScope::Global => f.write_str("global"),
            FilterScope::User(email) => f.write_str(email),
        }
    }
}

/// What a matching filter does with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterAction {
    /// Forward it to the device as usual.
    Forward,
    /// Forward it with priority (BES: level 1).
    ForwardWithPriority,
    /// Keep it in the mailbox only; the device does not get it.
    DoNotForward,
}

impl FilterAction {
    /// Every action.
    pub const ALL: [FilterAction; 3] = [
        FilterAction::Forward,
        FilterAction::ForwardWithPriority,
        FilterAction::DoNotForward,
    ];

    /// The snake_case name the database and the API use: "forward", "forward_with_priority",
    /// "do_not_forward".
    pub fn as_str(self) -> &'static str {
        match self {
            FilterAction::Forward => "forward",
            FilterAction::ForwardWithPriority => "forward_with_priority",
            FilterAction::DoNotForward => "do_not_forward",
        }
    }

    /// BES's words: "forward", "forward with priority", "do not forward".
    pub fn as_text(self) -> &'static str {
        match self {
            FilterAction::Forward => "forward",
            FilterAction::ForwardWithPriority => "forward with priority",
            FilterAction::DoNotForward => "do not forward",
        }
    }

    fn from_db(s: &str) -> Result<FilterAction, StoreError> {
        FilterAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("unknown filter action {s:?}"),
            })
    }
}

impl fmt::Display for FilterAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_text())
    }
}

/// The text given to [`FilterAction::from_str`] names no action.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a filter action; use forward, forward_with_priority (or priority) or \
     do_not_forward (or drop)"
)]
pub struct ParseFilterActionError(pub String);

impl FromStr for FilterAction {
    type Err = ParseFilterActionError;

    /// Accepts the snake_case names, BES's words ("forward with priority") and the short
    /// forms "priority" and "drop", in any case, with `-`, `_` or spaces between words.
    fn from_str(s: &str) -> Result<FilterAction, ParseFilterActionError> {
        let words: Vec<String> = s
            .split(|c: char| c == '_' || c == '-' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        match words.join("_").as_str() {
            "forward" => Ok(FilterAction::Forward),
            "forward_with_priority" | "priority" => Ok(FilterAction::ForwardWithPriority),
            "do_not_forward" | "drop" => Ok(FilterAction::DoNotForward),
            _ => Err(ParseFilterActionError(s.to_owned())),
        }
    }
}

impl serde::Serialize for FilterAction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for FilterAction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a message must look like for a filter to match; a condition left `None` matches
/// every message, and a filter whose conditions are all `None` matches everything.
///
/// Patterns are case-insensitive substrings in which `*` stands for any run of characters
/// and `?` for one character. The store keeps an empty pattern as `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilterConditions {
    /// A pattern for the From header (`Name <address>`).
    pub from: Option<String>,
    /// A pattern that one of the To addresses must match.
    pub to: Option<String>,
    /// A pattern that one of the Cc addresses must match.
    pub cc: Option<String>,
    /// A pattern for the subject.
    pub subject: Option<String>,
    /// "high", "normal" or "low".
    pub importance: Option<String>,
}

impl FilterConditions {
    /// Whether no condition is set (the filter matches every message).
    pub fn is_empty(&self) -> bool {
        self.from.is_none()
            && self.to.is_none()
            && self.cc.is_none()
            && self.subject.is_none()
            && self.importance.is_none()
    }
}

/// A push-mail filter.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Filter {
    /// The filter's number, unique across scopes; what the API and `bramble admin` name it by.
    pub id: i64,
    /// Global, or one user's.
    pub scope: FilterScope,
    /// Its place among the filters of its scope, from 1: the first matching enabled filter
    /// decides.
    pub position: u32,
    /// Its name, unique within its scope (in any case).
    pub name: String,
    /// A disabled filter is skipped.
    pub enabled: bool,
    /// What a message must look like.
    pub conditions: FilterConditions,
    /// What happens to a matching message.
    pub action: FilterAction,
    /// When it was added (unix ms).
    pub created_at_ms: i64,
    /// When it was last changed or moved (unix ms).
    pub updated_at_ms: i64,
}

/// What [`Store::add_filter`] adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFilter {
    /// Global, or one user's (any case).
    pub scope: FilterScope,
    /// Its name (trimmed; 1 to [`MAX_FILTER_NAME`] bytes).
    pub name: String,
    /// What a message must look like.
    pub conditions: FilterConditions,
    /// What happens to a matching message.
    pub action: FilterAction,
    /// Whether it is in force.
    pub enabled: bool,
    /// Where to put it (from 1; the filters from there on move down one); `None`, or a
    /// position past the end, puts it last.
    pub position: Option<u32>,
}

/// What [`Store::update_filter`] changes: `None` leaves a field as it is. For a condition,
/// `Some(None)` (or `Some(Some(""))`) removes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterUpdate {
    /// A new name.
    pub name: Option<String>,
    /// A new From pattern, or none.
    pub from: Option<Option<String>>,
    /// A new To pattern, or none.
    pub to: Option<Option<String>>,
    /// A new Cc pattern, or none.
    pub cc: Option<Option<String>>,
    /// A new subject pattern, or none.
    pub subject: Option<Option<String>>,
    /// A new importance, or none.
    pub importance: Option<Option<String>>,
    /// A new action.
    pub action: Option<FilterAction>,
    /// Enable or disable it.
    pub enabled: Option<bool>,
}

/// The columns of [`FilterRow`], from `mail_filters f` joined to `users u`.
macro_rules! filter_select {
    () => {
        "SELECT f.id, u.email, f.position, f.name, f.enabled, f.match_from, f.match_to, \
         f.match_cc, f.match_subject, f.match_importance, f.action, f.created_at, f.updated_at \
         FROM mail_filters f LEFT JOIN users u ON u.id = f.user_id "
    };
}

/// The filters of one scope: `$1` is the user's id, or NULL for the global filters.
macro_rules! in_scope {
    () => {
        "(user_id = $1 OR ($1 IS NULL AND user_id IS NULL))"
    };
}

crate::row_struct! {
    struct FilterRow {
        id: i64,
        email: Option<String>,
        position: i64,
        name: String,
        enabled: i64,
        match_from: Option<String>,
        match_to: Option<String>,
        match_cc: Option<String>,
        match_subject: Option<String>,
        match_importance: Option<String>,
        action: String,
        created_at: i64,
        updated_at: i64,
    }
}

impl TryFrom<FilterRow> for Filter {
    type Error = StoreError;

    fn try_from(r: FilterRow) -> Result<Filter, StoreError> {
        let position = u32::try_from(r.position).map_err(|_| StoreError::Corrupt {
            what: format!("mail_filters.position = {}", r.position),
        })?;
        Ok(Filter {
            id: r.id,
            scope: r.email.map_or(FilterScope::Global, FilterScope::User),
            position,
            name: r.name,
            enabled: r.enabled != 0,
            conditions: FilterConditions {
                from: r.match_from,
                to: r.match_to,
                cc: r.match_cc,
                subject: r.match_subject,
                importance: r.match_importance,
            },
            action: FilterAction::from_db(&r.action)?,
            created_at_ms: r.created_at,
            updated_at_ms: r.updated_at,
        })
    }
}

fn invalid(reason: impl Into<String>) -> StoreError {
    StoreError::InvalidFilter {
        reason: reason.into(),
    }
}

/// Trims a name and checks it.
fn clean_name(name: &str) -> Result<String, StoreError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("a filter needs a name"));
    }
    if name.len() > MAX_FILTER_NAME {
        return Err(invalid(format!(
            "the name is {} bytes long; at most {MAX_FILTER_NAME} are allowed",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("the name may not hold control characters"));
    }
    Ok(name.to_owned())
}

/// Checks a pattern; an empty one is no condition.
fn clean_pattern(what: &str, pattern: Option<&str>) -> Result<Option<String>, StoreError> {
    let Some(p) = pattern.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    if p.len() > MAX_FILTER_PATTERN {
        return Err(invalid(format!(
            "the {what} pattern is {} bytes long; at most {MAX_FILTER_PATTERN} are allowed",
            p.len()
        )));
    }
    if p.chars().any(char::is_control) {
        return Err(invalid(format!(
            "the {what} pattern may not hold control characters"
        )));
    }
    Ok(Some(p.to_owned()))
}

/// Lower-cases an importance and checks it; an empty one is no condition.
fn clean_importance(importance: Option<&str>) -> Result<Option<String>, StoreError> {
    let Some(i) = importance.map(str::trim).filter(|i| !i.is_empty()) else {
        return Ok(None);
    };
    let i = i.to_lowercase();
    if !FILTER_IMPORTANCES.contains(&i.as_str()) {
        return Err(invalid(format!(
            "importance {i:?} is not one of high, normal, low"
        )));
    }
    Ok(Some(i))
}

fn clean_conditions(c: &FilterConditions) -> Result<FilterConditions, StoreError> {
    Ok(FilterConditions {
        from: clean_pattern("from", c.from.as_deref())?,
        to: clean_pattern("to", c.to.as_deref())?,
        cc: clean_pattern("cc", c.cc.as_deref())?,
        subject: clean_pattern("subject", c.subject.as_deref())?,
        importance: clean_importance(c.importance.as_deref())?,
    })
}

fn check_position(position: u32) -> Result<(), StoreError> {
    if position == 0 {
        return Err(invalid("filter positions start at 1"));
    }
    Ok(())
}

impl Store {
    /// Adds a filter to its scope: last, or at `new.position` with the filters from there on
    /// moving down one. Names are trimmed; empty patterns are no condition; the importance is
    /// lower-cased.
    ///
    /// Errors: [`StoreError::InvalidFilter`] (an empty or long name, a long pattern, an unknown
    /// importance, position 0); [`StoreError::NoSuchUser`]; [`StoreError::FilterExists`] when
    /// the scope has a filter of that name in any case.
    pub async fn add_filter(&self, new: &NewFilter) -> Result<Filter, StoreError> {
        let name = clean_name(&new.name)?;
        let conditions = clean_conditions(&new.conditions)?;
        if let Some(p) = new.position {
            check_position(p)?;
        }
        let scope = match &new.scope {
            FilterScope::Global => FilterScope::Global,
            FilterScope::User(email) => FilterScope::User(normalize_email(email)),
        };
        let now = now_ms();
        let row: FilterRow = on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            if kind == BackendKind::Postgres {
                sqlx::query(LOCK_POSTGRES).execute(&mut *tx).await?;
            }
            let user_id: Option<i64> = match &scope {
                FilterScope::Global => None,
                FilterScope::User(email) => {
                    let id: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                            .bind(email)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let Some(id) = id else {
                        return Err(StoreError::NoSuchUser {
                            email: email.clone(),
                        });
                    };
                    Some(id)
                }
            };
            let taken: Option<i64> = sqlx::query_scalar(concat!(
                "SELECT id FROM mail_filters WHERE ",
                in_scope!(),
                " AND name_key = $2"
            ))
            .bind(user_id)
            .bind(name.to_lowercase())
            .fetch_optional(&mut *tx)
            .await?;
            if taken.is_some() {
                return Err(StoreError::FilterExists {
                    name,
                    scope: scope.describe(),
                });
            }
            let count: i64 = sqlx::query_scalar(concat!(
                "SELECT COUNT(*) FROM mail_filters WHERE ",
                in_scope!()
            ))
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
            let last = count.saturating_add(1);
            let position = new.position.map_or(last, |p| i64::from(p).min(last));
            sqlx::query(concat!(
                "UPDATE mail_filters SET position = position + 1 WHERE ",
                in_scope!(),
                " AND position >= $2"
            ))
            .bind(user_id)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO mail_filters (user_id, position, name, name_key, enabled, \
                     match_from, match_to, match_cc, match_subject, match_importance, action, \
                     created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
            )
            .bind(user_id)
            .bind(position)
            .bind(&name)
            .bind(name.to_lowercase())
            .bind(i64::from(new.enabled))
            .bind(&conditions.from)
            .bind(&conditions.to)
            .bind(&conditions.cc)
            .bind(&conditions.subject)
            .bind(&conditions.importance)
            .bind(new.action.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let row = sqlx::query_as(concat!(filter_select!(), "WHERE f.id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row
        });
        Filter::try_from(row)
    }

    /// The filters of a scope, in order: the global filters, or one user's (any case).
    ///
    /// Errors: [`StoreError::NoSuchUser`].
    pub async fn list_filters(&self, scope: &FilterScope) -> Result<Vec<Filter>, StoreError> {
        let rows: Vec<FilterRow> = on_pool!(self, pool => {
            match scope {
                FilterScope::Global => {
                    sqlx::query_as(concat!(
                        filter_select!(),
                        "WHERE f.user_id IS NULL ORDER BY f.position, f.id"
                    ))
                    .fetch_all(pool)
                    .await?
                }
                FilterScope::User(email) => {
                    let email = normalize_email(email);
                    let id: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                            .bind(&email)
                            .fetch_optional(pool)
                            .await?;
                    let Some(id) = id else {
                        return Err(StoreError::NoSuchUser { email });
                    };
                    sqlx::query_as(concat!(
                        filter_select!(),
                        "WHERE f.user_id = $1 ORDER BY f.position, f.id"
                    ))
                    .bind(id)
                    .fetch_all(pool)
                    .await?
                }
            }
        });
        rows.into_iter().map(Filter::try_from).collect()
    }

    /// The filter with this id, if there is one.
    pub async fn filter(&self, id: i64) -> Result<Option<Filter>, StoreError> {
        let row: Option<FilterRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(filter_select!(), "WHERE f.id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(Filter::try_from).transpose()
    }

    /// Changes a filter's name, conditions, action or whether it is enabled; what `update`
    /// leaves `None` stays. Its scope and position stay (see [`Store::move_filter`]).
    ///
    /// Errors: [`StoreError::NoSuchFilter`]; [`StoreError::InvalidFilter`];
    /// [`StoreError::FilterExists`] when another filter of the scope has the new name.
    pub async fn update_filter(
        &self,
        id: i64,
        update: &FilterUpdate,
    ) -> Result<Filter, StoreError> {
        let new_name = update.name.as_deref().map(clean_name).transpose()?;
        let now = now_ms();
        let row: FilterRow = on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            if kind == BackendKind::Postgres {
                sqlx::query(LOCK_POSTGRES).execute(&mut *tx).await?;
            }
            let user_id: Option<Option<i64>> =
                sqlx::query_scalar("SELECT user_id FROM mail_filters WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(user_id) = user_id else {
                return Err(StoreError::NoSuchFilter { id });
            };
            let current: FilterRow = sqlx::query_as(concat!(filter_select!(), "WHERE f.id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let current = Filter::try_from(current)?;
            let merge = |new: &Option<Option<String>>, old: &Option<String>| match new {
                Some(n) => n.clone(),
                None => old.clone(),
            };
            let c = &current.conditions;
            let conditions = clean_conditions(&FilterConditions {
                from: merge(&update.from, &c.from),
                to: merge(&update.to, &c.to),
                cc: merge(&update.cc, &c.cc),
                subject: merge(&update.subject, &c.subject),
                importance: merge(&update.importance, &c.importance),
            })?;
            let name = new_name.clone().unwrap_or_else(|| current.name.clone());
            if name.to_lowercase() != current.name.to_lowercase() {
                let taken: Option<i64> = sqlx::query_scalar(concat!(
                    "SELECT id FROM mail_filters WHERE ",
                    in_scope!(),
                    " AND name_key = $2 AND id <> $3"
                ))
                .bind(user_id)
                .bind(name.to_lowercase())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_some() {
                    return Err(StoreError::FilterExists {
                        name,
                        scope: current.scope.describe(),
                    });
                }
            }
            sqlx::query(
                "UPDATE mail_filters SET name = $2, name_key = $3, enabled = $4, \
                     match_from = $5, match_to = $6, match_cc = $7, match_subject = $8, \
                     match_importance = $9, action = $10, updated_at = $11 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(&name)
            .bind(name.to_lowercase())
            .bind(i64::from(update.enabled.unwrap_or(current.enabled)))
            .bind(&conditions.from)
            .bind(&conditions.to)
            .bind(&conditions.cc)
            .bind(&conditions.subject)
            .bind(&conditions.importance)
            .bind(update.action.unwrap_or(current.action).as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query_as(concat!(filter_select!(), "WHERE f.id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row
        });
        Filter::try_from(row)
    }

    /// Moves a filter to `position` (from 1; past the end means last) within its scope; the
    /// filters in between shift by one to make room.
    ///
    /// Errors: [`StoreError::NoSuchFilter`]; [`StoreError::InvalidFilter`] for position 0.
    pub async fn move_filter(&self, id: i64, position: u32) -> Result<Filter, StoreError> {
        check_position(position)?;
        let now = now_ms();
        let row: FilterRow = on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            if kind == BackendKind::Postgres {
                sqlx::query(LOCK_POSTGRES).execute(&mut *tx).await?;
            }
            let found: Option<(Option<i64>, i64)> =
                sqlx::query_as("SELECT user_id, position FROM mail_filters WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((user_id, old)) = found else {
                return Err(StoreError::NoSuchFilter { id });
            };
            let count: i64 = sqlx::query_scalar(concat!(
                "SELECT COUNT(*) FROM mail_filters WHERE ",
                in_scope!()
            ))
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
            let target = i64::from(position).min(count);
            if target != old {
                let shift = if target < old {
                    concat!(
                        "UPDATE mail_filters SET position = position + 1 WHERE ",
                        in_scope!(),
                        " AND position >= $2 AND position < $3"
                    )
                } else {
                    concat!(
                        "UPDATE mail_filters SET position = position - 1 WHERE ",
                        in_scope!(),
                        " AND position > $3 AND position <= $2"
                    )
                };
                sqlx::query(shift)
                    .bind(user_id)
                    .bind(target)
                    .bind(old)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE mail_filters SET position = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(target)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            let row = sqlx::query_as(concat!(filter_select!(), "WHERE f.id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row
        });
        Filter::try_from(row)
    }

    /// Removes a filter; the filters after it in its scope move up one. `false` if there was
    /// no such filter.
    pub async fn delete_filter(&self, id: i64) -> Result<bool, StoreError> {
        on_pool!(self, pool, kind => {
            let mut tx = pool.begin_with(begin_write(kind)).await?;
            if kind == BackendKind::Postgres {
                sqlx::query(LOCK_POSTGRES).execute(&mut *tx).await?;
            }
            let deleted: Option<(Option<i64>, i64)> = sqlx::query_as(
                "DELETE FROM mail_filters WHERE id = $1 RETURNING user_id, position",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((user_id, position)) = deleted else {
                return Ok(false);
            };
            sqlx::query(concat!(
                "UPDATE mail_filters SET position = position - 1 WHERE ",
                in_scope!(),
                " AND position > $2"
            ))
            .bind(user_id)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(true)
    }
}

/// PostgreSQL: writers of filters queue on this lock (it conflicts with itself, not with
/// plain reads), so positions stay `1..=n` and names unique under concurrent changes, even
/// in a scope that has no row to lock yet. SQLite's `BEGIN IMMEDIATE` already serializes
/// writers.
const LOCK_POSTGRES: &str = "LOCK TABLE mail_filters IN SHARE ROW EXCLUSIVE MODE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_in_many_spellings() {
        for (text, want) in [
            ("forward", FilterAction::Forward),
            ("FORWARD", FilterAction::Forward),
            ("forward_with_priority", FilterAction::ForwardWithPriority),
            ("Forward with priority", FilterAction::ForwardWithPriority),
            ("forward-with-priority", FilterAction::ForwardWithPriority),
            ("priority", FilterAction::ForwardWithPriority),
            ("do_not_forward", FilterAction::DoNotForward),
            ("do not forward", FilterAction::DoNotForward),
            ("drop", FilterAction::DoNotForward),
        ] {
            assert_eq!(text.parse::<FilterAction>(), Ok(want), "{text:?}");
        }
        for bad in ["", "fwd", "forward_priority", "do"] {
            assert!(bad.parse::<FilterAction>().is_err(), "{bad:?} accepted");
        }
        for a in FilterAction::ALL {
            assert_eq!(a.as_str().parse::<FilterAction>(), Ok(a));
            assert_eq!(a.as_text().parse::<FilterAction>(), Ok(a));
        }
    }

    #[test]
    fn values_are_checked() {
        assert!(matches!(clean_name("  VIP  "), Ok(n) if n == "VIP"));
        assert!(clean_name(" ").is_err());
        assert!(clean_name(&"n".repeat(MAX_FILTER_NAME + 1)).is_err());
        assert!(clean_name("a\nb").is_err());
        assert_eq!(clean_pattern("from", Some("")).ok(), Some(None));
        assert!(clean_pattern("from", Some(&"x".repeat(MAX_FILTER_PATTERN))).is_ok());
        let long = clean_pattern("subject", Some(&"x".repeat(MAX_FILTER_PATTERN + 1)));
        assert!(
            matches!(&long, Err(e) if e.to_string().contains("subject pattern is 257 bytes")),
            "{long:?}"
        );
        assert_eq!(
            clean_importance(Some(" High ")).ok(),
            Some(Some("high".to_owned()))
        );
        assert!(clean_importance(Some("urgent")).is_err());
        assert!(check_position(0).is_err());
    }
}
