//! Groups of users (BES 5: groups carry IT policies and software configurations), and the
//! name rules every named thing of the policy service follows.
//!
//! Must not touch: what a group's assignments mean (the policy service resolves them).

use crate::{Store, StoreError, normalize_email, now_ms, on_pool};

/// The longest name of a group, policy, configuration, application or version.
pub const MAX_NAME: usize = 100;

/// A group and its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its name, as typed.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its members' addresses, sorted.
    pub members: Vec<String>,
    /// When it was made (unix ms).
    pub created_at_ms: i64,
}

/// A name, trimmed, and its look-up key (lower-cased).
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(String, String), StoreError> {
    let n = name.trim();
    let bad = |reason| StoreError::InvalidName {
        what,
        name: name.to_owned(),
        reason,
    };
    if n.is_empty() {
        return Err(bad("it is empty"));
    }
    if n.chars().count() > MAX_NAME {
        return Err(bad("it is longer than 100 characters"));
    }
    if n.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    if n.contains('/') {
        return Err(bad("it contains '/'"));
    }
    Ok((n.to_owned(), n.to_lowercase()))
}

/// A database count or number that must fit a `u32`.
pub(crate) fn as_u32(what: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        what: format!("{what} = {v}"),
    })
}

pub(crate) fn key(name: &str) -> String {
    name.trim().to_lowercase()
}

impl Store {
    /// Adds a group.
    ///
    /// Errors: [`StoreError::GroupExists`], [`StoreError::InvalidName`].
    pub async fn add_group(
        &self,
        name: &str,
        description: Option<&str>,
    ) -> Result<Group, StoreError> {
        let (name, key) = check_name("a group", name)?;
        let now = now_ms();
        let id: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO user_groups (name, name_key, description, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name_key) DO NOTHING RETURNING id",
            )
            .bind(&name)
            .bind(&key)
            .bind(description)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        if id.is_none() {
            return Err(StoreError::GroupExists { name });
        }
        Ok(Group {
            name,
            description: description.map(str::to_owned),
            members: Vec::new(),
            created_at_ms: now,
        })
    }

    /// Every group, by name.
    pub async fn groups(&self) -> Result<Vec<Group>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT name_key FROM user_groups ORDER BY name_key")
                .fetch_all(pool)
                .await?
        });
        let mut out = Vec::with_capacity(rows.len());
        for (k,) in rows {
            if let Some(g) = self.group(&k).await? {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// The group with this name (any case).
    pub async fn group(&self, name: &str) -> Result<Option<Group>, StoreError> {
        let k = key(name);
        let row: Option<(i64, String, Option<String>, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, description, created_at FROM user_groups WHERE name_key = $1",
            )
            .bind(&k)
            .fetch_optional(pool)
            .await?
        });
        let Some((id, name, description, created_at_ms)) = row else {
            return Ok(None);
        };
        let members: Vec<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT u.email FROM group_members m JOIN users u ON u.id = m.user_id \
                 WHERE m.group_id = $1 ORDER BY u.email",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        Ok(Some(Group {
            name,
            description,
            members: members.into_iter().map(|(e,)| e).collect(),
            created_at_ms,
        }))
    }

    /// Deletes a group (its memberships and assignments go with it).
    pub async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let k = key(name);
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM user_groups WHERE name_key = $1")
                .bind(&k)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Adds a user to a group; true when they were not in it.
    ///
    /// Errors: [`StoreError::NoSuchGroup`], [`StoreError::NoSuchUser`].
    pub async fn add_group_member(&self, group: &str, email: &str) -> Result<bool, StoreError> {
        let (gid, uid) = self.group_and_user(group, email).await?;
        let n = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(gid)
            .bind(uid)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Takes a user out of a group; true when they were in it.
    ///
    /// Errors: [`StoreError::NoSuchGroup`], [`StoreError::NoSuchUser`].
    pub async fn remove_group_member(&self, group: &str, email: &str) -> Result<bool, StoreError> {
        let (gid, uid) = self.group_and_user(group, email).await?;
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
                .bind(gid)
                .bind(uid)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// The groups a user belongs to, by name.
    pub async fn groups_of_user(&self, email: &str) -> Result<Vec<String>, StoreError> {
        let email = normalize_email(email);
        let rows: Vec<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT g.name FROM group_members m JOIN user_groups g ON g.id = m.group_id \
                 JOIN users u ON u.id = m.user_id WHERE u.email = $1 ORDER BY g.name_key",
            )
            .bind(&email)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    pub(crate) async fn group_id(&self, name: &str) -> Result<i64, StoreError> {
        let k = key(name);
        let id: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM user_groups WHERE name_key = $1")
                .bind(&k)
                .fetch_optional(pool)
                .await?
        });
        id.ok_or_else(|| StoreError::NoSuchGroup {
            name: name.trim().to_owned(),
        })
    }

    pub(crate) async fn user_id(&self, email: &str) -> Result<i64, StoreError> {
        let email = normalize_email(email);
        let id: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                .bind(&email)
                .fetch_optional(pool)
                .await?
        });
        id.ok_or(StoreError::NoSuchUser { email })
    }

    async fn group_and_user(&self, group: &str, email: &str) -> Result<(i64, i64), StoreError> {
        Ok((self.group_id(group).await?, self.user_id(email).await?))
    }
}
