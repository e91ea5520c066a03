//! The administration service's own endpoints: logging in and out of the console, the caller's
//! account, administrator accounts, roles and their assignment, API tokens, and the audit log
//! (viewed in pages, exported as CSV or JSON).
//!
//! Owns: those routes and their JSON shapes. Must not touch: who may call them (that is
//! [`super::access`]'s table), SQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use bramble_store::{AdminAccount, AdminRole, AdminToken, AuditEntry, AuditQuery, NewAuditEntry};
use serde::{Deserialize, Serialize};

use super::access::{self, Caller, Permission, SESSION_COOKIE, SESSION_MAX_MS};
use super::error::{ApiErrorBody, ApiJson, ApiPath, ApiQuery};
use super::pages::{Page, paged};
use super::{AdminState, ApiError};

type Api = State<Arc<AdminState>>;

/// Passwords of administrators: at least this long…
pub const MIN_PASSWORD: usize = 8;
/// …and at most this long.
pub const MAX_PASSWORD: usize = 256;

/// Failed logins an account may have in [`LOGIN_WINDOW`] before logins are refused for the
/// rest of it.
const MAX_LOGIN_FAILURES: u32 = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failed console logins per account, in memory (a restart forgives them).
#[derive(Debug, Default)]
pub struct LoginThrottle(Mutex<HashMap<String, (u32, Instant)>>);

impl LoginThrottle {
    fn locked(&self, account: &str) -> bool {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(account)
            .is_some_and(|(n, since)| *n >= MAX_LOGIN_FAILURES && since.elapsed() < LOGIN_WINDOW)
    }

    fn failed(&self, account: &str) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < LOGIN_WINDOW);
        }
        let e = map.entry(account.to_owned()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= LOGIN_WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    fn succeeded(&self, account: &str) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(account);
    }
}

/// The routes behind the guard, nested under `/api/v1`.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/me", get(me))
        .route("/permissions", get(permissions))
        .route("/logout", post(logout))
        .route("/roles", get(list_roles).post(add_role))
        .route(
            "/roles/{name}",
            get(show_role).patch(edit_role).delete(delete_role),
        )
        .route("/accounts", get(list_accounts).post(add_account))
        .route(
            "/accounts/{name}",
            get(show_account).patch(edit_account).delete(delete_account),
        )
        .route("/accounts/{name}/password", put(set_password))
        .route(
            "/accounts/{name}/roles/{role}",
            put(grant_role).delete(revoke_role),
        )
        .route("/tokens", get(list_tokens).post(add_token))
        .route("/tokens/{id}", delete(delete_token))
        .route("/audit", get(list_audit))
}

/// The route outside the guard: logging in (`POST /api/v1/login`, which sets the session
/// cookie).
pub fn login_routes() -> Router<Arc<AdminState>> {
    Router::new().route("/login", post(login))
}

use super::rfc3339 as time;

use super::error::bad;

// ---- shapes

/// `GET /api/v1/me`, and the answer to a login.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MeView {
    /// The account's name.
    pub account: String,
    /// How the request was authenticated: token-file, api-token or session.
    pub via: String,
    /// What the account may do.
    pub permissions: Vec<String>,
    /// When the session ends at the latest (only on login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `GET /api/v1/permissions`: one permission of the catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PermissionView {
    /// Its name (`policy.edit`).
    pub name: String,
    /// What it allows.
    pub title: String,
}

/// A role.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleView {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// One of BES's presets (which cannot be changed).
    pub preset: bool,
    /// Its permissions' names.
    pub permissions: Vec<String>,
    /// How many administrators hold it.
    pub accounts: u32,
}

/// An administrator account.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountView {
    /// Login name.
    pub name: String,
    /// The person's name.
    pub display_name: Option<String>,
    /// The person's address.
    pub email: Option<String>,
    /// Whether a console password is set.
    pub has_password: bool,
    /// A disabled account cannot log in or use its tokens.
    pub disabled: bool,
    /// Its roles.
    pub roles: Vec<String>,
    /// What its roles allow together.
    pub permissions: Vec<String>,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it last logged in (RFC 3339).
    pub last_login: Option<String>,
}

/// An API token (never its secret, except once, when made).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    /// Its number.
    pub id: i64,
    /// Its owner.
    pub account: String,
    /// What it is called.
    pub name: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it was last used (RFC 3339).
    pub last_used: Option<String>,
    /// When it stops working (RFC 3339).
    pub expires_at: Option<String>,
    /// The secret: only in the answer to `POST /api/v1/tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditView {
    /// Its number.
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: String,
    /// From where.
    pub source: Option<String>,
    /// What.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// More about it.
    pub detail: Option<String>,
    /// success, denied or failed.
    pub result: String,
    /// The HTTP status answered.
    pub status: u16,
}

fn role_view(r: AdminRole) -> RoleView {
    RoleView {
        name: r.name,
        description: r.description,
        preset: r.preset,
        permissions: r.permissions,
        accounts: r.accounts,
    }
}

async fn account_view(state: &AdminState, a: AdminAccount) -> Result<AccountView, ApiError> {
    let permissions = state
        .store
        .principal(&a.name)
        .await?
        .map(|p| p.permissions)
        .unwrap_or_default();
    Ok(AccountView {
        name: a.name,
        display_name: a.display_name,
        email: a.email,
        has_password: a.has_password,
        disabled: a.disabled,
        roles: a.roles,
        permissions,
        created_at: time(a.created_at_ms),
        last_login: a.last_login_ms.map(time),
    })
}

fn token_view(t: AdminToken) -> TokenView {
    TokenView {
        id: t.id,
        account: t.account,
        name: t.name,
        created_at: time(t.created_at_ms),
        last_used: t.last_used_ms.map(time),
        expires_at: t.expires_at_ms.map(time),
        token: None,
    }
}

fn audit_view(e: AuditEntry) -> AuditView {
    AuditView {
        id: e.id,
        at: time(e.at_ms),
        actor: e.actor,
        source: e.source,
        action: e.action,
        target: e.target,
        detail: e.detail,
        result: e.result,
        status: e.status,
    }
}

fn via_name(v: access::Via) -> &'static str {
    match v {
        access::Via::TokenFile => "token-file",
        access::Via::ApiToken => "api-token",
        access::Via::Session => "session",
    }
}

// ---- login and the caller

/// `POST /api/v1/login`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The account's name.
    pub name: String,
    /// Its password.
    pub password: String,
}

#[utoipa::path(
    post, path = "/api/v1/login", tag = "administrators", operation_id = "login",
    summary = "Log in to the console: sets the session cookie", security(()),
    request_body = Login,
    responses(
        (status = 200, description = "Logged in; the cookie `bramble_session` is set.", body = MeView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "Wrong name or password.", body = ApiErrorBody),
        (status = 429, description = "Too many failed logins.", body = ApiErrorBody),
    )
)]
async fn login(
    State(state): Api,
    connect: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    ApiJson(login): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let source = connect.map(|Extension(ConnectInfo(a))| a.ip().to_string());
    let name = login.name.trim().to_lowercase();
    let refuse = |detail: &str| NewAuditEntry {
        actor: login.name.chars().take(100).collect(),
        source: source.clone(),
        action: "Log in".into(),
        target: None,
        detail: Some(detail.to_owned()),
        result: "denied".into(),
        status: 401,
    };
    if name.is_empty() || name.len() > 100 || login.password.len() > MAX_PASSWORD {
        return Err(bad("give the account's name and password"));
    }
    if state.logins.locked(&name) {
        access::audit(&state.store, refuse("too many failed logins")).await;
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_logins",
            "too many failed logins for this account; wait 15 minutes or ask a Security \
             Administrator to set a new password",
        ));
    }
    let hash = state.store.account_password_hash(&name).await?;
    let password = login.password.clone();
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => verify_password(&password, &h),
        None => {
            // the same work for a name that has no password, so timing tells nothing
            let _ = hash_password("not the password");
            false
        }
    })
    .await
    .unwrap_or(false);
    if !ok {
        state.logins.failed(&name);
        access::audit(&state.store, refuse("wrong name or password")).await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "login_failed",
            "the name or the password is wrong (or the account is disabled)",
        ));
    }
    state.logins.succeeded(&name);
    let secret = access::new_secret("bs_");
    let expires = bramble_store::now_ms() + SESSION_MAX_MS;
    state
        .store
        .add_session(
            &access::secret_hash(&secret),
            &name,
            source.as_deref(),
            expires,
        )
        .await?;
    state.store.touch_login(&name).await?;
    let principal = state.store.principal(&name).await?;
    let account = principal
        .as_ref()
        .map_or_else(|| name.clone(), |p| p.account.clone());
    access::audit(
        &state.store,
        NewAuditEntry {
            actor: account.clone(),
            source,
            action: "Log in".into(),
            target: None,
            detail: None,
            result: "success".into(),
            status: 200,
        },
    )
    .await;
    let body = MeView {
        account,
        via: "session".into(),
        permissions: principal.map(|p| p.permissions).unwrap_or_default(),
        expires_at: Some(time(expires)),
    };
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_MAX_MS / 1000
    );
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[utoipa::path(
    post, path = "/api/v1/logout", tag = "administrators", operation_id = "logout",
    summary = "Log out: ends the console session",
    responses(
        (status = 204, description = "The session ended."),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
    )
)]
async fn logout(State(state): Api, headers: HeaderMap) -> Result<Response, ApiError> {
    let secret = access::cookie(&headers, SESSION_COOKIE).map(str::to_owned);
    if let Some(s) = secret {
        state.store.end_session(&access::secret_hash(&s)).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("bramble_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(resp)
}

#[utoipa::path(
    get, path = "/api/v1/me", tag = "administrators", operation_id = "me",
    summary = "The caller's account and permissions",
    responses(
        (status = 200, description = "Who is asking.", body = MeView),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
    )
)]
async fn me(Extension(caller): Extension<Caller>) -> Json<MeView> {
    Json(MeView {
        account: caller.account,
        via: via_name(caller.via).into(),
        permissions: caller
            .permissions
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        expires_at: None,
    })
}

#[utoipa::path(
    get, path = "/api/v1/permissions", tag = "administrators", operation_id = "permissions",
    summary = "The catalogue of permissions",
    responses(
        (status = 200, description = "Every permission.", body = Vec<PermissionView>),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
    )
)]
async fn permissions() -> Json<Vec<PermissionView>> {
    Json(
        Permission::ALL
            .iter()
            .map(|p| PermissionView {
                name: p.as_str().into(),
                title: p.title().into(),
            })
            .collect(),
    )
}

/// Argon2id of a password, as a PHC string.
///
/// # Errors
/// When hashing fails (it does not, for passwords within [`MAX_PASSWORD`]).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    use argon2::PasswordHasher;
    let salt = rand::random::<[u8; 16]>();
    argon2::password_hash::SaltString::encode_b64(&salt)
        .and_then(|salt| {
            argon2::Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .map_err(|e| {
            tracing::error!("cannot hash a password: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the password could not be stored; see the server's log",
            )
        })
}

fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::password_hash::PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

fn check_password(p: &str) -> Result<(), ApiError> {
    let n = p.chars().count();
    if n < MIN_PASSWORD {
        return Err(bad(format!(
            "the password is too short: use at least {MIN_PASSWORD} characters"
        )));
    }
    if p.len() > MAX_PASSWORD {
        return Err(bad(format!(
            "the password is too long: use at most {MAX_PASSWORD} bytes"
        )));
    }
    Ok(())
}

fn check_permissions(names: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let p = Permission::from_name(n.trim()).ok_or_else(|| {
            bad(format!(
                "{n:?} is not a permission; GET /api/v1/permissions lists them"
            ))
        })?;
        out.push(p.as_str().to_owned());
    }
    Ok(out)
}

// ---- roles

/// `POST /api/v1/roles`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// Its name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Its permissions (custom roles start with none).
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// `PATCH /api/v1/roles/{name}`: what is given changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleEdit {
    /// A new description.
    #[serde(default)]
    pub description: Option<String>,
    /// The permissions it has from now on.
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
}

#[utoipa::path(
    get, path = "/api/v1/roles", tag = "administrators", operation_id = "list_roles",
    summary = "Every role, presets first",
    params(Page),
    responses(
        (status = 200, description = "A page of roles (X-Total-Count, Link rel=next).", body = Vec<RoleView>),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
    )
)]
async fn list_roles(
    State(state): Api,
    OriginalUri(uri): OriginalUri,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    let roles: Vec<RoleView> = state
        .store
        .roles()
        .await?
        .into_iter()
        .map(role_view)
        .collect();
    Ok(paged(roles, &page, uri.path(), uri.query()))
}

#[utoipa::path(
    get, path = "/api/v1/roles/{name}", tag = "administrators", operation_id = "show_role",
    summary = "One role",
    params(("name" = String, Path, description = "The role's name.")),
    responses(
        (status = 200, description = "The role.", body = RoleView),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such role.", body = ApiErrorBody),
    )
)]
async fn show_role(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<RoleView>, ApiError> {
    let r = state
        .store
        .role(&name)
        .await?
        .ok_or_else(|| no_role(&name))?;
    Ok(Json(role_view(r)))
}

fn no_role(name: &str) -> ApiError {
    ApiError::from(bramble_store::StoreError::NoSuchRole {
        name: name.to_owned(),
    })
}

#[utoipa::path(
    post, path = "/api/v1/roles", tag = "administrators", operation_id = "add_role",
    summary = "Create a custom role (it starts with no permissions unless given)",
    request_body = NewRole,
    responses(
        (status = 201, description = "The role.", body = RoleView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 409, description = "A role of that name exists.", body = ApiErrorBody),
    )
)]
async fn add_role(
    State(state): Api,
    ApiJson(new): ApiJson<NewRole>,
) -> Result<(StatusCode, Json<RoleView>), ApiError> {
    let perms = check_permissions(&new.permissions)?;
    if new.description.as_ref().is_some_and(|d| d.len() > 1000) {
        return Err(bad("the description is longer than 1000 bytes"));
    }
    let r = state
        .store
        .add_role(&new.name, new.description.as_deref(), &perms)
        .await?;
    Ok((StatusCode::CREATED, Json(role_view(r))))
}

#[utoipa::path(
    patch, path = "/api/v1/roles/{name}", tag = "administrators", operation_id = "edit_role",
    summary = "Change a custom role's description or permissions",
    params(("name" = String, Path, description = "The role's name.")),
    request_body = RoleEdit,
    responses(
        (status = 200, description = "The role.", body = RoleView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such role.", body = ApiErrorBody),
        (status = 409, description = "A preset role cannot be changed.", body = ApiErrorBody),
    )
)]
async fn edit_role(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
    ApiJson(edit): ApiJson<RoleEdit>,
) -> Result<Json<RoleView>, ApiError> {
    let perms = edit
        .permissions
        .as_deref()
        .map(check_permissions)
        .transpose()?;
    if edit.description.as_ref().is_some_and(|d| d.len() > 1000) {
        return Err(bad("the description is longer than 1000 bytes"));
    }
    let r = state
        .store
        .edit_role(&name, edit.description.as_deref(), perms.as_deref())
        .await?;
    Ok(Json(role_view(r)))
}

#[utoipa::path(
    delete, path = "/api/v1/roles/{name}", tag = "administrators", operation_id = "delete_role",
    summary = "Delete a custom role",
    params(("name" = String, Path, description = "The role's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such role.", body = ApiErrorBody),
        (status = 409, description = "A preset role cannot be deleted.", body = ApiErrorBody),
    )
)]
async fn delete_role(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_role(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_role(&name))
    }
}

// ---- accounts

/// `POST /api/v1/accounts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// Login name.
    pub name: String,
    /// The person's name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The person's address.
    #[serde(default)]
    pub email: Option<String>,
    /// A console password (none: API tokens only, until one is set).
    #[serde(default)]
    pub password: Option<String>,
    /// Roles to give it.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `PATCH /api/v1/accounts/{name}`: what is given changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountEdit {
    /// The person's name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The person's address.
    #[serde(default)]
    pub email: Option<String>,
    /// Disable (ending its sessions) or enable it.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// `PUT /api/v1/accounts/{name}/password`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordSet {
    /// The new password.
    pub password: String,
}

fn no_account(name: &str) -> ApiError {
    ApiError::from(bramble_store::StoreError::NoSuchAccount {
        name: name.to_owned(),
    })
}

fn check_short(what: &str, v: Option<&String>) -> Result<(), ApiError> {
    if v.is_some_and(|s| s.len() > 256 || s.chars().any(char::is_control)) {
        return Err(bad(format!(
            "the {what} is longer than 256 bytes or holds control characters"
        )));
    }
    Ok(())
}

#[utoipa::path(
    get, path = "/api/v1/accounts", tag = "administrators", operation_id = "list_accounts",
    summary = "Every administrator account",
    params(Page),
    responses(
        (status = 200, description = "A page of accounts (X-Total-Count, Link rel=next).", body = Vec<AccountView>),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
    )
)]
async fn list_accounts(
    State(state): Api,
    OriginalUri(uri): OriginalUri,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    let mut out = Vec::new();
    for a in state.store.accounts().await? {
        out.push(account_view(&state, a).await?);
    }
    Ok(paged(out, &page, uri.path(), uri.query()))
}

#[utoipa::path(
    get, path = "/api/v1/accounts/{name}", tag = "administrators", operation_id = "show_account",
    summary = "One administrator account",
    params(("name" = String, Path, description = "The account's name.")),
    responses(
        (status = 200, description = "The account.", body = AccountView),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such account.", body = ApiErrorBody),
    )
)]
async fn show_account(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<AccountView>, ApiError> {
    let a = state
        .store
        .account(&name)
        .await?
        .ok_or_else(|| no_account(&name))?;
    Ok(Json(account_view(&state, a).await?))
}

#[utoipa::path(
    post, path = "/api/v1/accounts", tag = "administrators", operation_id = "add_account",
    summary = "Add an administrator account",
    request_body = NewAccount,
    responses(
        (status = 201, description = "The account.", body = AccountView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such role.", body = ApiErrorBody),
        (status = 409, description = "An account of that name exists.", body = ApiErrorBody),
    )
)]
async fn add_account(
    State(state): Api,
    ApiJson(new): ApiJson<NewAccount>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    check_short("display name", new.display_name.as_ref())?;
    check_short("address", new.email.as_ref())?;
    for r in &new.roles {
        if state.store.role(r).await?.is_none() {
            return Err(no_role(r));
        }
    }
    let hash = match new.password {
        Some(p) => {
            check_password(&p)?;
            Some(
                tokio::task::spawn_blocking(move || hash_password(&p))
                    .await
                    .map_err(|_| bad("the password could not be stored"))??,
            )
        }
        None => None,
    };
    let a = state
        .store
        .add_account(
            &new.name,
            new.display_name.as_deref(),
            new.email.as_deref(),
            hash.as_deref(),
        )
        .await?;
    for r in &new.roles {
        state.store.grant_role(&a.name, r).await?;
    }
    let a = state
        .store
        .account(&a.name)
        .await?
        .ok_or_else(|| no_account(&new.name))?;
    Ok((StatusCode::CREATED, Json(account_view(&state, a).await?)))
}

#[utoipa::path(
    patch, path = "/api/v1/accounts/{name}", tag = "administrators", operation_id = "edit_account",
    summary = "Change an account's name, address, or disable it",
    params(("name" = String, Path, description = "The account's name.")),
    request_body = AccountEdit,
    responses(
        (status = 200, description = "The account.", body = AccountView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such account.", body = ApiErrorBody),
        (status = 409, description = "You cannot disable your own account.", body = ApiErrorBody),
    )
)]
async fn edit_account(
    State(state): Api,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(edit): ApiJson<AccountEdit>,
) -> Result<Json<AccountView>, ApiError> {
    check_short("display name", edit.display_name.as_ref())?;
    check_short("address", edit.email.as_ref())?;
    if edit.disabled == Some(true) && name.eq_ignore_ascii_case(&caller.account) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "own_account",
            "you cannot disable your own account",
        ));
    }
    let a = state
        .store
        .edit_account(
            &name,
            edit.display_name.as_deref(),
            edit.email.as_deref(),
            edit.disabled,
        )
        .await?;
    Ok(Json(account_view(&state, a).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/accounts/{name}", tag = "administrators", operation_id = "delete_account",
    summary = "Delete an administrator account with its sessions and tokens",
    params(("name" = String, Path, description = "The account's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such account.", body = ApiErrorBody),
        (status = 409, description = "Your own account and `admin` cannot be deleted.", body = ApiErrorBody),
    )
)]
async fn delete_account(
    State(state): Api,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if name.eq_ignore_ascii_case(&caller.account) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "own_account",
            "you cannot delete your own account",
        ));
    }
    if name.eq_ignore_ascii_case(access::OWNER_ACCOUNT) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "owner_account",
            "the account \"admin\" is the server's own (its token file speaks for it); disable it instead",
        ));
    }
    if state.store.delete_account(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_account(&name))
    }
}

#[utoipa::path(
    put, path = "/api/v1/accounts/{name}/password", tag = "administrators", operation_id = "set_password",
    summary = "Set an account's console password (its sessions end)",
    params(("name" = String, Path, description = "The account's name.")),
    request_body = PasswordSet,
    responses(
        (status = 204, description = "Set."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such account.", body = ApiErrorBody),
    )
)]
async fn set_password(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
    ApiJson(set): ApiJson<PasswordSet>,
) -> Result<(StatusCode, Extension<access::AuditNote>), ApiError> {
    check_password(&set.password)?;
    if state.store.account(&name).await?.is_none() {
        return Err(no_account(&name));
    }
    let p = set.password;
    let hash = tokio::task::spawn_blocking(move || hash_password(&p))
        .await
        .map_err(|_| bad("the password could not be stored"))??;
    state.store.set_account_password(&name, Some(&hash)).await?;
    Ok((
        StatusCode::NO_CONTENT,
        Extension(access::AuditNote(
            "the account's sessions were ended".into(),
        )),
    ))
}

#[utoipa::path(
    put, path = "/api/v1/accounts/{name}/roles/{role}", tag = "administrators", operation_id = "grant_role",
    summary = "Give an account a role",
    params(("name" = String, Path, description = "The account's name."), ("role" = String, Path, description = "The role's name.")),
    responses(
        (status = 200, description = "The account.", body = AccountView),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such account or role.", body = ApiErrorBody),
    )
)]
async fn grant_role(
    State(state): Api,
    ApiPath((name, role)): ApiPath<(String, String)>,
) -> Result<Json<AccountView>, ApiError> {
    state.store.grant_role(&name, &role).await?;
    let a = state
        .store
        .account(&name)
        .await?
        .ok_or_else(|| no_account(&name))?;
    Ok(Json(account_view(&state, a).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/accounts/{name}/roles/{role}", tag = "administrators", operation_id = "revoke_role",
    summary = "Take a role from an account",
    params(("name" = String, Path, description = "The account's name."), ("role" = String, Path, description = "The role's name.")),
    responses(
        (status = 200, description = "The account.", body = AccountView),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such account or role.", body = ApiErrorBody),
        (status = 409, description = "You cannot take Security Administrator from yourself.", body = ApiErrorBody),
    )
)]
async fn revoke_role(
    State(state): Api,
    Extension(caller): Extension<Caller>,
    ApiPath((name, role)): ApiPath<(String, String)>,
) -> Result<Json<AccountView>, ApiError> {
    if name.eq_ignore_ascii_case(&caller.account)
        && role.eq_ignore_ascii_case(access::PRESETS[0].name)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "own_account",
            "you cannot take Security Administrator from yourself; ask another Security Administrator",
        ));
    }
    state.store.revoke_role(&name, &role).await?;
    let a = state
        .store
        .account(&name)
        .await?
        .ok_or_else(|| no_account(&name))?;
    Ok(Json(account_view(&state, a).await?))
}

// ---- API tokens

/// `POST /api/v1/tokens`: a token for the caller (or, for a holder of role.assign, for
/// another account).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What to call it.
    pub name: String,
    /// Whose it is (default: the caller's).
    #[serde(default)]
    pub account: Option<String>,
    /// Days until it stops working (default: never).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// Which tokens to list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// Only this account's (holders of role.assign); default the caller's own.
    #[serde(default)]
    pub account: Option<String>,
    /// Every account's (holders of role.assign).
    #[serde(default)]
    pub all: bool,
}

fn may_manage(caller: &Caller, account: &str) -> Result<(), ApiError> {
    if account.eq_ignore_ascii_case(&caller.account) || caller.may(Permission::AssignRoles) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only your own API tokens are yours to see and change; other accounts' need the \
             permission role.assign",
        ))
    }
}

#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "administrators", operation_id = "list_tokens",
    summary = "API tokens: the caller's, or (with role.assign) anyone's",
    params(TokenQuery),
    responses(
        (status = 200, description = "The tokens (never their secrets).", body = Vec<TokenView>),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
    )
)]
async fn list_tokens(
    State(state): Api,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let account = if q.all {
        may_manage(&caller, "")?;
        None
    } else {
        let a = q.account.unwrap_or_else(|| caller.account.clone());
        may_manage(&caller, &a)?;
        Some(a)
    };
    let t = state.store.tokens(account.as_deref()).await?;
    Ok(Json(t.into_iter().map(token_view).collect()))
}

#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "administrators", operation_id = "add_token",
    summary = "Make an API token; its secret is in this answer only",
    request_body = NewToken,
    responses(
        (status = 201, description = "The token, with its secret.", body = TokenView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such account.", body = ApiErrorBody),
    )
)]
async fn add_token(
    State(state): Api,
    Extension(caller): Extension<Caller>,
    ApiJson(new): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let account = new.account.unwrap_or_else(|| caller.account.clone());
    may_manage(&caller, &account)?;
    let expires = match new.expires_in_days {
        Some(0) => return Err(bad("expires_in_days must be at least 1")),
        Some(d) if d > 3650 => return Err(bad("expires_in_days must be at most 3650")),
        Some(d) => Some(bramble_store::now_ms() + i64::from(d) * 86_400_000),
        None => None,
    };
    let secret = access::new_secret("bt_");
    let t = state
        .store
        .add_token(&account, &new.name, &access::secret_hash(&secret), expires)
        .await?;
    let mut v = token_view(t);
    v.token = Some(secret);
    Ok((StatusCode::CREATED, Json(v)))
}

#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "administrators", operation_id = "delete_token",
    summary = "Revoke an API token",
    params(("id" = i64, Path, description = "The token's number.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
        (status = 404, description = "No such token.", body = ApiErrorBody),
    )
)]
async fn delete_token(
    State(state): Api,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let Some(t) = state
        .store
        .tokens(None)
        .await?
        .into_iter()
        .find(|t| t.id == id)
    else {
        return Err(ApiError::from(bramble_store::StoreError::NoSuchToken {
            id,
        }));
    };
    may_manage(&caller, &t.account)?;
    state.store.delete_token(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- audit log

/// Which audit entries, and how.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this administrator's.
    #[serde(default)]
    pub actor: Option<String>,
    /// Only entries whose action, target or detail contain this.
    #[serde(default)]
    pub text: Option<String>,
    /// success, denied or failed.
    #[serde(default)]
    pub result: Option<String>,
    /// From this time (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// Before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<String>,
    /// json (default) or csv: csv exports every matching entry.
    #[serde(default)]
    pub format: Option<String>,
    /// Entries to skip.
    #[serde(default)]
    pub offset: Option<u64>,
    /// Entries in one page.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The most entries one CSV export holds.
pub const MAX_EXPORT: u64 = 1_000_000;

fn parse_time(what: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(|s| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| {
                    d.and_hms_opt(0, 0, 0)
                        .map(|t| t.and_utc().timestamp_millis())
                        .unwrap_or(0)
                })
            })
            .map_err(|_| {
                bad(format!(
                    "{what} {s:?} is not a time; use RFC 3339 (2026-12-01T09:00:00Z) or a date (2026-12-01)"
                ))
            })
    })
    .transpose()
}

#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit log", operation_id = "list_audit",
    summary = "The audit log, newest first, in pages or exported as CSV",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of entries (X-Total-Count, Link rel=next), or with format=csv every matching entry as CSV.", body = Vec<AuditView>),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid token or session.", body = ApiErrorBody),
    )
)]
async fn list_audit(
    State(state): Api,
    OriginalUri(uri): OriginalUri,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Response, ApiError> {
    if let Some(r) = &p.result
        && !bramble_store::AUDIT_RESULTS.contains(&r.as_str())
    {
        return Err(bad(format!(
            "result {r:?} is none of success, denied, failed"
        )));
    }
    let q = AuditQuery {
        actor: p.actor.clone().filter(|s| !s.is_empty()),
        text: p.text.clone().filter(|s| !s.is_empty()),
        result: p.result.clone(),
        since_ms: parse_time("since", p.since.as_deref())?,
        until_ms: parse_time("until", p.until.as_deref())?,
    };
    match p.format.as_deref().unwrap_or("json") {
        "json" => {
            let page = Page {
                offset: p.offset,
                limit: p.limit,
            };
            let (offset, limit) = page.bounds()?;
            let (entries, total) = state.store.audit_entries(&q, offset, limit).await?;
            let views: Vec<AuditView> = entries.into_iter().map(audit_view).collect();
            Ok(super::pages::paged_slice(
                views,
                offset,
                limit,
                total,
                uri.path(),
                uri.query(),
            ))
        }
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let csv_err = |e: csv::Error| {
                tracing::error!("cannot write the audit export: {e}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the export failed",
                )
            };
            w.write_record([
                "id", "at", "actor", "source", "action", "target", "detail", "result", "status",
            ])
            .map_err(csv_err)?;
            let mut offset = 0u64;
            loop {
                let (entries, _) = state.store.audit_entries(&q, offset, 1000).await?;
                let n = entries.len() as u64;
                for e in entries {
                    let v = audit_view(e);
                    w.write_record([
                        v.id.to_string(),
                        v.at,
                        v.actor,
                        v.source.unwrap_or_default(),
                        v.action,
                        v.target.unwrap_or_default(),
                        v.detail.unwrap_or_default(),
                        v.result,
                        v.status.to_string(),
                    ])
                    .map_err(csv_err)?;
                }
                offset += n;
                if n < 1000 || offset >= MAX_EXPORT {
                    break;
                }
            }
            let body = w.into_inner().map_err(|e| csv_err(e.into_error().into()))?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"bramble-audit.csv\"",
                    ),
                ],
                body,
            )
                .into_response())
        }
        other => Err(bad(format!("format {other:?} is neither json nor csv"))),
    }
}
