//! The administration service's own data: administrator accounts, roles (their permissions
//! as the server names them), which account holds which role, console sessions, API tokens,
//! and the audit log.
//!
//! Must not touch: what a permission allows (the server decides), password hashing (the
//! server hashes; only the PHC string is kept here), the secrets of sessions and tokens (only
//! their SHA-256 hex reaches this module).

use crate::groups::{check_name, key};
use crate::{Store, StoreError, now_ms, on_pool};

/// An administrator account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAccount {
    /// Its login name, as typed.
    pub name: String,
    /// The person's name.
    pub display_name: Option<String>,
    /// The person's address.
    pub email: Option<String>,
    /// Whether a password is set (console login).
    pub has_password: bool,
    /// A disabled account cannot log in, and its sessions and tokens are refused.
    pub disabled: bool,
    /// Its roles, by name.
    pub roles: Vec<String>,
    /// When it was made (unix ms).
    pub created_at_ms: i64,
    /// When it last logged in (unix ms).
    pub last_login_ms: Option<i64>,
}

/// A role: a named set of permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRole {
    /// Its name, as typed.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// One of the presets, which nobody edits or deletes.
    pub preset: bool,
    /// The permissions' names, sorted.
    pub permissions: Vec<String>,
    /// How many accounts hold it.
    pub accounts: u32,
}

/// An API token's description (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// Its number.
    pub id: i64,
    /// The owning account's name.
    pub account: String,
    /// What its owner called it.
    pub name: String,
    /// When it was made (unix ms).
    pub created_at_ms: i64,
    /// When it was last used (unix ms).
    pub last_used_ms: Option<i64>,
    /// When it stops working (unix ms), if ever.
    pub expires_at_ms: Option<i64>,
}

/// Who a session or token belongs to, as the server needs it on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account's name.
    pub account: String,
    /// The union of its roles' permissions, sorted and without repeats.
    pub permissions: Vec<String>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its number, increasing.
    pub id: i64,
    /// When (unix ms).
    pub at_ms: i64,
    /// Who: an account's name, or what tried to be one.
    pub actor: String,
    /// From where (the peer's address).
    pub source: Option<String>,
    /// What, in words ("Set an activation password").
    pub action: String,
    /// On what (a user's address, a policy's name, …).
    pub target: Option<String>,
    /// More about it, never a secret.
    pub detail: Option<String>,
    /// success, denied or failed.
    pub result: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// An entry to append to the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// Who.
    pub actor: String,
    /// From where.
    pub source: Option<String>,
    /// What, in words.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// More about it, never a secret.
    pub detail: Option<String>,
    /// success, denied or failed.
    pub result: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this actor's (any case).
    pub actor: Option<String>,
    /// Only entries whose action, target or detail contain this text (any case).
    pub text: Option<String>,
    /// Only with this result.
    pub result: Option<String>,
    /// From this time on (unix ms, inclusive).
    pub since_ms: Option<i64>,
    /// Before this time (unix ms, exclusive).
    pub until_ms: Option<i64>,
}

/// The results an audit entry can have.
pub const AUDIT_RESULTS: [&str; 3] = ["success", "denied", "failed"];

fn join_permissions(p: &[String]) -> String {
    let mut v: Vec<&str> = p
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    v.sort_unstable();
    v.dedup();
    v.join(" ")
}

fn split_permissions(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The filter of [`Store::audit_entries`], as a literal for `concat!`.
macro_rules! audit_where {
    () => {
        " WHERE ($1 IS NULL OR LOWER(actor) = $1) \
         AND ($2 IS NULL OR LOWER(action) LIKE $2 ESCAPE '\\' \
              OR LOWER(COALESCE(target, '')) LIKE $2 ESCAPE '\\' \
              OR LOWER(COALESCE(detail, '')) LIKE $2 ESCAPE '\\') \
         AND ($3 IS NULL OR result = $3) AND at >= $4 AND at < $5"
    };
}

type TokenRow = (i64, String, String, i64, Option<i64>, Option<i64>);

type AccountRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
);

impl Store {
    // ---- roles

    /// Makes a preset role, or brings its description and permissions up to date (the server
    /// calls this at every start with the presets it knows).
    pub async fn ensure_preset_role(
        &self,
        name: &str,
        description: &str,
        permissions: &[String],
    ) -> Result<(), StoreError> {
        let (name, key) = check_name("a role", name)?;
        let perms = join_permissions(permissions);
        let now = now_ms();
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO admin_roles \
                 (name, name_key, description, preset, permissions, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, $4, $5, $5) \
                 ON CONFLICT (name_key) DO UPDATE SET name = excluded.name, \
                 description = excluded.description, preset = 1, \
                 permissions = excluded.permissions, updated_at = excluded.updated_at",
            )
            .bind(&name)
            .bind(&key)
            .bind(description)
            .bind(&perms)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Adds a custom role.
    ///
    /// Errors: [`StoreError::RoleExists`], [`StoreError::InvalidName`].
    pub async fn add_role(
        &self,
        name: &str,
        description: Option<&str>,
        permissions: &[String],
    ) -> Result<AdminRole, StoreError> {
        let (name, key) = check_name("a role", name)?;
        let perms = join_permissions(permissions);
        let now = now_ms();
        let id: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO admin_roles \
                 (name, name_key, description, preset, permissions, created_at, updated_at) \
                 VALUES ($1, $2, $3, 0, $4, $5, $5) ON CONFLICT (name_key) DO NOTHING \
                 RETURNING id",
            )
            .bind(&name)
            .bind(&key)
            .bind(description)
            .bind(&perms)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        if id.is_none() {
            return Err(StoreError::RoleExists { name });
        }
        self.role(&key)
            .await?
            .ok_or(StoreError::NoSuchRole { name: key })
    }

    /// Changes a custom role's description and permissions (`None` keeps what it has).
    ///
    /// Errors: [`StoreError::NoSuchRole`], [`StoreError::PresetRole`].
    pub async fn edit_role(
        &self,
        name: &str,
        description: Option<&str>,
        permissions: Option<&[String]>,
    ) -> Result<AdminRole, StoreError> {
        let role = self
            .role(name)
            .await?
            .ok_or_else(|| StoreError::NoSuchRole {
                name: name.to_owned(),
            })?;
        if role.preset {
            return Err(StoreError::PresetRole { name: role.name });
        }
        let perms = permissions.map(join_permissions);
        let k = key(name);
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE admin_roles SET description = COALESCE($2, description), \
                 permissions = COALESCE($3, permissions), updated_at = $4 WHERE name_key = $1",
            )
            .bind(&k)
            .bind(description)
            .bind(perms.as_deref())
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        self.role(&k)
            .await?
            .ok_or(StoreError::NoSuchRole { name: k })
    }

    /// Deletes a custom role (accounts holding it lose it); false when there was none.
    ///
    /// Errors: [`StoreError::PresetRole`].
    pub async fn delete_role(&self, name: &str) -> Result<bool, StoreError> {
        let Some(role) = self.role(name).await? else {
            return Ok(false);
        };
        if role.preset {
            return Err(StoreError::PresetRole { name: role.name });
        }
        let k = key(name);
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM admin_roles WHERE name_key = $1 AND preset = 0")
                .bind(&k)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// The role with this name (any case).
    pub async fn role(&self, name: &str) -> Result<Option<AdminRole>, StoreError> {
        let k = key(name);
        let row: Option<(String, Option<String>, i64, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT r.name, r.description, r.preset, r.permissions, \
                 (SELECT COUNT(*) FROM admin_account_roles a WHERE a.role_id = r.id) \
                 FROM admin_roles r WHERE r.name_key = $1",
            )
            .bind(&k)
            .fetch_optional(pool)
            .await?
        });
        row.map(role_from_row).transpose()
    }

    /// Every role: the presets first, then by name.
    pub async fn roles(&self) -> Result<Vec<AdminRole>, StoreError> {
        let rows: Vec<(String, Option<String>, i64, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT r.name, r.description, r.preset, r.permissions, \
                 (SELECT COUNT(*) FROM admin_account_roles a WHERE a.role_id = r.id) \
                 FROM admin_roles r ORDER BY r.preset DESC, r.id",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(role_from_row).collect()
    }

    // ---- accounts

    /// Adds an administrator account with an Argon2 PHC string (or none: tokens only).
    ///
    /// Errors: [`StoreError::AccountExists`], [`StoreError::InvalidName`].
    pub async fn add_account(
        &self,
        name: &str,
        display_name: Option<&str>,
        email: Option<&str>,
        password_hash: Option<&str>,
    ) -> Result<AdminAccount, StoreError> {
        let (name, key) = check_name("an administrator account", name)?;
        let id: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO admin_accounts \
                 (name, name_key, display_name, email, password_hash, disabled, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (name_key) DO NOTHING \
                 RETURNING id",
            )
            .bind(&name)
            .bind(&key)
            .bind(display_name)
            .bind(email)
            .bind(password_hash)
            .bind(now_ms())
            .fetch_optional(pool)
            .await?
        });
        if id.is_none() {
            return Err(StoreError::AccountExists { name });
        }
        self.account(&key)
            .await?
            .ok_or(StoreError::NoSuchAccount { name: key })
    }

    /// The account with this name (any case).
    pub async fn account(&self, name: &str) -> Result<Option<AdminAccount>, StoreError> {
        let k = key(name);
        let row: Option<AccountRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, display_name, email, password_hash, disabled, created_at, \
                 last_login_at FROM admin_accounts WHERE name_key = $1",
            )
            .bind(&k)
            .fetch_optional(pool)
            .await?
        });
        match row {
            Some(r) => Ok(Some(self.account_from_row(r).await?)),
            None => Ok(None),
        }
    }

    /// Every account, by name.
    pub async fn accounts(&self) -> Result<Vec<AdminAccount>, StoreError> {
        let rows: Vec<AccountRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, display_name, email, password_hash, disabled, created_at, \
                 last_login_at FROM admin_accounts ORDER BY name_key",
            )
            .fetch_all(pool)
            .await?
        });
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.account_from_row(r).await?);
        }
        Ok(out)
    }

    async fn account_from_row(&self, r: AccountRow) -> Result<AdminAccount, StoreError> {
        let (id, name, display_name, email, hash, disabled, created_at_ms, last_login_ms) = r;
        let roles: Vec<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT r.name FROM admin_account_roles a JOIN admin_roles r ON r.id = a.role_id \
                 WHERE a.account_id = $1 ORDER BY r.preset DESC, r.id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        Ok(AdminAccount {
            name,
            display_name,
            email,
            has_password: hash.is_some(),
            disabled: disabled != 0,
            roles: roles.into_iter().map(|(n,)| n).collect(),
            created_at_ms,
            last_login_ms,
        })
    }

    /// Changes an account's name to show, address or disabled flag (`None` keeps it). Disabling
    /// ends its sessions.
    ///
    /// Errors: [`StoreError::NoSuchAccount`].
    pub async fn edit_account(
        &self,
        name: &str,
        display_name: Option<&str>,
        email: Option<&str>,
        disabled: Option<bool>,
    ) -> Result<AdminAccount, StoreError> {
        let k = key(name);
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE admin_accounts SET display_name = COALESCE($2, display_name), \
                 email = COALESCE($3, email), disabled = COALESCE($4, disabled) \
                 WHERE name_key = $1",
            )
            .bind(&k)
            .bind(display_name)
            .bind(email)
            .bind(disabled.map(i64::from))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NoSuchAccount {
                name: name.to_owned(),
            });
        }
        if disabled == Some(true) {
            self.end_sessions(&k).await?;
        }
        self.account(&k)
            .await?
            .ok_or(StoreError::NoSuchAccount { name: k })
    }

    /// Sets (or with `None` removes) an account's password hash and ends its sessions.
    ///
    /// Errors: [`StoreError::NoSuchAccount`].
    pub async fn set_account_password(
        &self,
        name: &str,
        password_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        let k = key(name);
        let n = on_pool!(self, pool => {
            sqlx::query("UPDATE admin_accounts SET password_hash = $2 WHERE name_key = $1")
                .bind(&k)
                .bind(password_hash)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NoSuchAccount {
                name: name.to_owned(),
            });
        }
        self.end_sessions(&k).await
    }

    /// An enabled account's password hash, for a login; `None` when there is no such enabled
    /// account or it has no password.
    pub async fn account_password_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        let k = key(name);
        let row: Option<(Option<String>,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT password_hash FROM admin_accounts WHERE name_key = $1 AND disabled = 0",
            )
            .bind(&k)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.and_then(|(h,)| h))
    }

    /// Deletes an account with its sessions and tokens; false when there was none.
    pub async fn delete_account(&self, name: &str) -> Result<bool, StoreError> {
        let k = key(name);
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM admin_accounts WHERE name_key = $1")
                .bind(&k)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Gives an account a role; true when it did not hold it.
    ///
    /// Errors: [`StoreError::NoSuchAccount`], [`StoreError::NoSuchRole`].
    pub async fn grant_role(&self, account: &str, role: &str) -> Result<bool, StoreError> {
        let (aid, rid) = self.account_and_role(account, role).await?;
        let n = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO admin_account_roles (account_id, role_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(aid)
            .bind(rid)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Takes a role from an account; true when it held it.
    ///
    /// Errors: [`StoreError::NoSuchAccount`], [`StoreError::NoSuchRole`].
    pub async fn revoke_role(&self, account: &str, role: &str) -> Result<bool, StoreError> {
        let (aid, rid) = self.account_and_role(account, role).await?;
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM admin_account_roles WHERE account_id = $1 AND role_id = $2")
                .bind(aid)
                .bind(rid)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    async fn account_and_role(&self, account: &str, role: &str) -> Result<(i64, i64), StoreError> {
        let (ak, rk) = (key(account), key(role));
        let aid: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM admin_accounts WHERE name_key = $1")
                .bind(&ak)
                .fetch_optional(pool)
                .await?
        });
        let aid = aid.ok_or_else(|| StoreError::NoSuchAccount {
            name: account.to_owned(),
        })?;
        let rid: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM admin_roles WHERE name_key = $1")
                .bind(&rk)
                .fetch_optional(pool)
                .await?
        });
        let rid = rid.ok_or_else(|| StoreError::NoSuchRole {
            name: role.to_owned(),
        })?;
        Ok((aid, rid))
    }

    /// The enabled account's name and permissions (the union over its roles), for a request
    /// made in its name.
    pub async fn principal(&self, account: &str) -> Result<Option<Principal>, StoreError> {
        let k = key(account);
        let row: Option<(i64, String)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id, name FROM admin_accounts WHERE name_key = $1 AND disabled = 0")
                .bind(&k)
                .fetch_optional(pool)
                .await?
        });
        let Some((id, name)) = row else {
            return Ok(None);
        };
        let perms: Vec<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT r.permissions FROM admin_account_roles a \
                 JOIN admin_roles r ON r.id = a.role_id WHERE a.account_id = $1",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        let all: Vec<String> = perms.iter().flat_map(|(p,)| split_permissions(p)).collect();
        Ok(Some(Principal {
            account: name,
            permissions: split_permissions(&join_permissions(&all)),
        }))
    }

    /// Records a login.
    pub async fn touch_login(&self, account: &str) -> Result<(), StoreError> {
        let k = key(account);
        on_pool!(self, pool => {
            sqlx::query("UPDATE admin_accounts SET last_login_at = $2 WHERE name_key = $1")
                .bind(&k)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    // ---- sessions

    /// Starts a console session for an account, valid until `expires_at_ms` (and only while it
    /// is used at least every `idle_ms`, see [`Store::session`]).
    ///
    /// Errors: [`StoreError::NoSuchAccount`].
    pub async fn add_session(
        &self,
        token_hash: &str,
        account: &str,
        source: Option<&str>,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let k = key(account);
        let now = now_ms();
        let n = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO admin_sessions \
                 (token_hash, account_id, source, created_at, last_seen_at, expires_at) \
                 SELECT $1, id, $3, $4, $4, $5 FROM admin_accounts WHERE name_key = $2",
            )
            .bind(token_hash)
            .bind(&k)
            .bind(source)
            .bind(now)
            .bind(expires_at_ms)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NoSuchAccount {
                name: account.to_owned(),
            });
        }
        Ok(())
    }

    /// The account of a live session (not expired, used within `idle_ms`, account enabled),
    /// marking it used; `None` otherwise.
    pub async fn session(
        &self,
        token_hash: &str,
        idle_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let now = now_ms();
        let row: Option<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "UPDATE admin_sessions SET last_seen_at = $2 \
                 WHERE token_hash = $1 AND expires_at > $2 AND last_seen_at > $3 \
                 AND account_id IN (SELECT id FROM admin_accounts WHERE disabled = 0) \
                 RETURNING (SELECT name FROM admin_accounts WHERE id = account_id)",
            )
            .bind(token_hash)
            .bind(now)
            .bind(now.saturating_sub(idle_ms))
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(n,)| n))
    }

    /// Ends one session (logout); true when it existed.
    pub async fn end_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Ends every session of an account.
    pub async fn end_sessions(&self, account: &str) -> Result<(), StoreError> {
        let k = key(account);
        on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM admin_sessions WHERE account_id IN \
                 (SELECT id FROM admin_accounts WHERE name_key = $1)",
            )
            .bind(&k)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Forgets sessions that expired or sat idle longer than `idle_ms`; how many.
    pub async fn prune_sessions(&self, idle_ms: i64) -> Result<u64, StoreError> {
        let now = now_ms();
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
                .bind(now)
                .bind(now.saturating_sub(idle_ms))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    // ---- API tokens

    /// Adds an API token for an account.
    ///
    /// Errors: [`StoreError::NoSuchAccount`], [`StoreError::InvalidName`].
    pub async fn add_token(
        &self,
        account: &str,
        name: &str,
        token_hash: &str,
        expires_at_ms: Option<i64>,
    ) -> Result<AdminToken, StoreError> {
        let (name, _) = check_name("an API token", name)?;
        let k = key(account);
        let now = now_ms();
        let id: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO admin_tokens (account_id, name, token_hash, created_at, expires_at) \
                 SELECT id, $2, $3, $4, $5 FROM admin_accounts WHERE name_key = $1 RETURNING id",
            )
            .bind(&k)
            .bind(&name)
            .bind(token_hash)
            .bind(now)
            .bind(expires_at_ms)
            .fetch_optional(pool)
            .await?
        });
        let id = id.ok_or_else(|| StoreError::NoSuchAccount {
            name: account.to_owned(),
        })?;
        self.tokens(Some(&k))
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or(StoreError::NoSuchToken { id })
    }

    /// API tokens, of one account or of all, oldest first.
    pub async fn tokens(&self, account: Option<&str>) -> Result<Vec<AdminToken>, StoreError> {
        let k = account.map(key);
        let rows: Vec<TokenRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT t.id, a.name, t.name, t.created_at, t.last_used_at, t.expires_at \
                 FROM admin_tokens t JOIN admin_accounts a ON a.id = t.account_id \
                 WHERE $1 IS NULL OR a.name_key = $1 ORDER BY t.id",
            )
            .bind(k.as_deref())
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, account, name, created_at_ms, last_used_ms, expires_at_ms)| AdminToken {
                    id,
                    account,
                    name,
                    created_at_ms,
                    last_used_ms,
                    expires_at_ms,
                },
            )
            .collect())
    }

    /// The account of a live API token (not expired, account enabled), marking it used.
    pub async fn token_account(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let now = now_ms();
        let row: Option<(String,)> = on_pool!(self, pool => {
            sqlx::query_as(
                "UPDATE admin_tokens SET last_used_at = $2 \
                 WHERE token_hash = $1 AND (expires_at IS NULL OR expires_at > $2) \
                 AND account_id IN (SELECT id FROM admin_accounts WHERE disabled = 0) \
                 RETURNING (SELECT name FROM admin_accounts WHERE id = account_id)",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(n,)| n))
    }

    /// Revokes an API token; true when it existed.
    pub async fn delete_token(&self, id: i64) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM admin_tokens WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    // ---- audit log

    /// Appends an entry to the audit log.
    ///
    /// Errors: [`StoreError::InvalidValue`] for a result not in [`AUDIT_RESULTS`].
    pub async fn audit(&self, e: &NewAuditEntry) -> Result<i64, StoreError> {
        if !AUDIT_RESULTS.contains(&e.result.as_str()) {
            return Err(StoreError::InvalidValue {
                what: "audit result",
                value: e.result.clone(),
                allowed: AUDIT_RESULTS.join(", "),
            });
        }
        let id: i64 = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO audit_log (at, actor, source, action, target, detail, result, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(now_ms())
            .bind(&e.actor)
            .bind(e.source.as_deref())
            .bind(&e.action)
            .bind(e.target.as_deref())
            .bind(e.detail.as_deref())
            .bind(&e.result)
            .bind(i64::from(e.status))
            .fetch_one(pool)
            .await?
        });
        Ok(id)
    }

    /// Audit entries matching `q`, newest first: `limit` of them after skipping `offset`, with
    /// how many match in all.
    pub async fn audit_entries(
        &self,
        q: &AuditQuery,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<AuditEntry>, u64), StoreError> {
        let actor = q.actor.as_deref().map(key);
        let text = q.text.as_deref().map(like_pattern);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let since = q.since_ms.unwrap_or(i64::MIN);
        let until = q.until_ms.unwrap_or(i64::MAX);
        type Row = (
            i64,
            i64,
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            String,
            i64,
        );
        let (rows, total): (Vec<Row>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(concat!(
                "SELECT id, at, actor, source, action, target, detail, result, status FROM audit_log",
                audit_where!(),
                " ORDER BY at DESC, id DESC LIMIT $6 OFFSET $7"
            ))
            .bind(actor.as_deref())
            .bind(text.as_deref())
            .bind(q.result.as_deref())
            .bind(since)
            .bind(until)
            .bind(i64::from(limit))
            .bind(offset)
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar(concat!("SELECT COUNT(*) FROM audit_log", audit_where!()))
                .bind(actor.as_deref())
                .bind(text.as_deref())
                .bind(q.result.as_deref())
                .bind(since)
                .bind(until)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        let entries = rows
            .into_iter()
            .map(
                |(id, at_ms, actor, source, action, target, detail, result, status)| AuditEntry {
                    id,
                    at_ms,
                    actor,
                    source,
                    action,
                    target,
                    detail,
                    result,
                    status: u16::try_from(status).unwrap_or(0),
                },
            )
            .collect();
        Ok((entries, u64::try_from(total).unwrap_or(0)))
    }
}

fn role_from_row(
    (name, description, preset, permissions, accounts): (String, Option<String>, i64, String, i64),
) -> Result<AdminRole, StoreError> {
    Ok(AdminRole {
        name,
        description,
        preset: preset != 0,
        permissions: split_permissions(&permissions),
        accounts: crate::groups::as_u32("role holders", accounts)?,
    })
}
