//! Routes and JSON shapes of the administration API, version 1.

use std::sync::Arc;

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use bramble_proto::Pin;
use bramble_store::{
    Filter, FilterAction, FilterConditions, FilterScope, FilterUpdate, NewFilter,
    ParseFilterActionError, StatusEvent, StoreError, User, UserStatus,
};
use serde::{Deserialize, Serialize};

use super::error::{ApiErrorBody, ApiJson, ApiPath, ApiQuery};
use super::pages::{Page, paged, paged_slice};
use super::{AdminState, ApiError};

/// What `admin.json` holds: where a local `bramble admin` connects, with which token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientFile {
    /// Base URL of the API (`http://127.0.0.1:3180`).
    pub url: String,
    /// The bearer token.
    pub token: String,
}

/// The API's routes over `state`.
pub fn app(state: Arc<AdminState>) -> Router {
    let api = Router::new()
        .route("/status", get(status))
        .route("/users", get(list_users).post(add_user))
        .route(
            "/users/{email}",
            get(show_user).patch(edit_user).delete(delete_user),
        )
        .route(
            "/users/{email}/mail-password",
            axum::routing::put(set_mail_password),
        )
        .route(
            "/users/{email}/mail-settings",
            get(show_mail_settings).patch(edit_mail_settings),
        )
        .route(
            "/users/{email}/activation-password",
            axum::routing::post(set_activation_password),
        )
        .route("/filters", get(list_global_filters).post(add_global_filter))
        .route(
            "/filters/{id}",
            get(show_filter).patch(edit_filter).delete(delete_filter),
        )
        .route("/filters/{id}/move", axum::routing::post(move_filter))
        .route(
            "/users/{email}/filters",
            get(list_user_filters).post(add_user_filter),
        )
        .merge(super::policy_api::routes())
        .merge(super::sync_api::routes())
        .merge(super::access_api::routes())
        .merge(super::directory_api::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            super::access::guard,
        ))
        .merge(super::access_api::login_routes())
        .with_state(state);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/openapi.json", get(super::openapi::openapi_json))
        .nest("/api/v1", api)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(middleware::from_fn(super::error::one_shape));
    // the console reads from the same API, so the guard decides for both
    app.clone().merge(super::console::routes(app))
}

/// `GET /api/v1/status`: the server, its relay link and its numbers.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusView {
    /// The server's SRP id.
    pub srp_id: String,
    /// The link to the relay.
    pub relay: crate::router::LinkState,
    /// The configuration database's kind: sqlite or postgres.
    pub database: String,
    /// Users.
    pub users: usize,
    /// Activated devices.
    pub devices: usize,
    /// Push-mail statistics of the whole server.
    pub mail: MailStatsView,
    /// The server's components and whether each is running.
    #[serde(default)]
    pub components: Vec<ComponentView>,
}

/// One component of the enterprise server (DESIGN.md's names) and its health.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentView {
    /// Its name: Router, Configuration database, Messaging agent, …
    pub name: String,
    /// running, up, connecting, down, stopped or not configured.
    pub state: String,
    /// More, in an operator's words.
    pub detail: Option<String>,
}

fn components(state: &AdminState, database: &str, users: usize) -> Vec<ComponentView> {
    use crate::router::LinkState;
    let c = |name: &str, state: &str, detail: Option<String>| ComponentView {
        name: name.to_owned(),
        state: state.to_owned(),
        detail,
    };
    let running = |name: &str, up: Option<bool>, what: &str| match up {
        Some(true) => c(name, "running", Some(what.to_owned())),
        Some(false) => c(
            name,
            "stopped",
            Some("its task has ended; the server's log says why".to_owned()),
        ),
        None => c(name, "not configured", None),
    };
    let relay = match state.router.state() {
        LinkState::Up => c(
            "Router (relay link)",
            "up",
            Some("logged in to the relay".into()),
        ),
        LinkState::Connecting => c("Router (relay link)", "connecting", None),
        LinkState::Down { reason } => c("Router (relay link)", "down", Some(reason)),
        LinkState::Stopped => c("Router (relay link)", "stopped", None),
    };
    vec![
        relay,
        c(
            "Configuration database",
            "up",
            Some(format!("{database}, {users} users")),
        ),
        running(
            "Messaging agent",
            state.watchers.as_ref().map(|_| true),
            "watching the users' mailboxes",
        ),
        running(
            "Policy service",
            state.policy.as_ref().map(|p| p.is_running()),
            "IT policies, commands and software",
        ),
        running(
            "Synchronization service",
            state.sync.as_ref().map(|s| s.is_running()),
            "calendar and contacts",
        ),
        match &state.directory {
            None => c("Directory (MailStore service)", "not configured", None),
            Some(d) => match d.last() {
                Some(r) if r.error.is_some() => {
                    c("Directory (MailStore service)", "down", r.error.clone())
                }
                Some(r) => c(
                    "Directory (MailStore service)",
                    "up",
                    Some(format!(
                        "{}; last synchronized {}",
                        d.directory().config().url,
                        r.at
                    )),
                ),
                None => c(
                    "Directory (MailStore service)",
                    "configured",
                    Some(format!(
                        "{}; not synchronized yet",
                        d.directory().config().url
                    )),
                ),
            },
        },
    ]
}

/// Push-mail statistics (BES's individual and global statistics).
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MailStatsView {
    /// Messages forwarded to the device (first sends).
    pub forwarded: i64,
    /// Messages the device confirmed.
    pub delivered: i64,
    /// Messages forwarded and not yet confirmed (only for one user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// Sends again for want of a confirmation or a relay report.
    pub resent: i64,
    /// Messages a filter kept from the device.
    pub filtered: i64,
    /// Frames the relay gave up on (the device was out of coverage too long).
    pub expired: i64,
    /// Messages from the device handed to the mail server.
    pub sent: i64,
    /// Messages from the device that could not be sent.
    pub send_failed: i64,
}

async fn mail_stats(state: &AdminState, scope: &str) -> Result<MailStatsView, ApiError> {
    let all: std::collections::HashMap<String, i64> =
        state.store.stats(scope).await?.into_iter().collect();
    let get = |k: &str| all.get(k).copied().unwrap_or(0);
    Ok(MailStatsView {
        forwarded: get("forwarded"),
        delivered: get("delivered"),
        pending: None,
        resent: get("resent"),
        filtered: get("filtered"),
        expired: get("expired"),
        sent: get("sent"),
        send_failed: get("send_failed"),
    })
}

#[utoipa::path(
    get, path = "/api/v1/status", tag = "server", operation_id = "status",
    summary = "The server's SRP id, relay link, database and statistics",
    responses((status = 200, description = "The server's state.", body = StatusView), (status = 401, description = "No valid administration token.", body = ApiErrorBody))
)]
async fn status(State(state): State<Arc<AdminState>>) -> Result<Json<StatusView>, ApiError> {
    let database = state.store.backend().to_string();
    let users = state.store.list_users().await?.len();
    Ok(Json(StatusView {
        srp_id: state.srp.to_string(),
        relay: state.router.state(),
        components: components(&state, &database, users),
        database,
        users,
        devices: state.store.list_devices().await?.len(),
        mail: mail_stats(&state, "global").await?,
    }))
}

/// A user as the API shows them.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    /// Email address.
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// BES status text: Initializing, Activating, … Completed, Failed.
    pub status: String,
    /// Why the status was last set.
    pub status_reason: Option<String>,
    /// When the status was last set (RFC 3339).
    pub status_at: String,
    /// When the user was added (RFC 3339).
    pub created_at: String,
    /// Whether an activation password is set.
    pub has_activation_password: bool,
    /// The user's device, if one is activated.
    pub device: Option<DeviceView>,
    /// The stable identifier of the directory entry the user was added from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_id: Option<String>,
    /// The status timeline, oldest first (only on `GET /users/{email}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<EventView>,
    /// Push-mail statistics (only on `GET /users/{email}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailStatsView>,
    /// The groups the user belongs to (only on `GET /users/{email}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The IT policy in force and how it was chosen (only on `GET /users/{email}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::admin::views::UserPolicyView>,
    /// The software configuration in force, where it came from, and the newest deployment
    /// job (only on `GET /users/{email}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<crate::admin::views::UserSoftwareView>,
}

/// A device as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceView {
    /// 8 hex digits.
    pub pin: String,
    /// Key generation (1 at first activation).
    pub key_generation: u32,
    /// When it was activated (RFC 3339).
    pub activated_at: String,
    /// When it was last heard from (RFC 3339).
    pub last_seen: Option<String>,
}

/// One status change.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventView {
    /// BES status text.
    pub status: String,
    /// Why.
    pub reason: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

use super::rfc3339 as time;

pub(crate) async fn view(
    state: &AdminState,
    u: User,
    history: Vec<StatusEvent>,
) -> Result<UserView, ApiError> {
    let device = state
        .store
        .device_for_user(&u.email)
        .await?
        .map(|d| DeviceView {
            pin: Pin(d.pin).to_string(),
            key_generation: d.key_generation,
            activated_at: time(d.activated_at_ms),
            last_seen: d.last_seen_ms.map(time),
        });
    Ok(UserView {
        email: u.email,
        display_name: u.display_name,
        status: u.status.to_string(),
        status_reason: u.status_reason,
        status_at: time(u.status_at_ms),
        created_at: time(u.created_at_ms),
        has_activation_password: u.has_activation_password,
        device,
        directory_id: u.directory_id,
        history: history
            .into_iter()
            .map(|e| EventView {
                status: e.status.to_string(),
                reason: e.reason,
                at: time(e.at_ms),
            })
            .collect(),
        mail: None,
        groups: Vec::new(),
        policy: None,
        software: None,
    })
}

/// Which users to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UserQuery {
    /// Only users whose address or display name contains this (in any case).
    #[serde(default)]
    q: Option<String>,
    /// Only users in this BES status (`Completed`, `Waiting for Services`, …).
    #[serde(default)]
    status: Option<String>,
    /// Items to skip (default 0).
    #[serde(default)]
    offset: Option<u64>,
    /// Items in the page (default 100, at most 1000).
    #[serde(default)]
    limit: Option<u32>,
}

#[utoipa::path(
    get, path = "/api/v1/users", tag = "users", operation_id = "list_users",
    summary = "The users, with status and device, by address",
    params(UserQuery),
    responses(
        (status = 200, description = "A page of users (X-Total-Count, Link rel=next).", body = Vec<UserView>),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
    )
)]
async fn list_users(
    State(state): State<Arc<AdminState>>,
    OriginalUri(uri): OriginalUri,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> Result<Response, ApiError> {
    let (offset, limit) = Page {
        offset: q.offset,
        limit: q.limit,
    }
    .bounds()?;
    let status = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            UserStatus::ALL
                .into_iter()
                .find(|u| u.to_string().eq_ignore_ascii_case(s))
                .ok_or_else(|| {
                    bad(format!(
                        "no BES status {s:?}; the statuses are {}",
                        UserStatus::ALL.map(|u| u.to_string()).join(", ")
                    ))
                })?,
        ),
    };
    let text =
        q.q.map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty());
    let users: Vec<User> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .filter(|u| status.is_none_or(|s| u.status == s))
        .filter(|u| {
            text.as_deref().is_none_or(|t| {
                u.email.contains(t)
                    || u.display_name
                        .as_deref()
                        .is_some_and(|n| n.to_lowercase().contains(t))
            })
        })
        .collect();
    let total = users.len() as u64;
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for u in users.into_iter().skip(start).take(limit as usize) {
        out.push(view(&state, u, Vec::new()).await?);
    }
    Ok(paged_slice(
        out,
        offset,
        limit,
        total,
        uri.path(),
        uri.query(),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    /// The user's email address.
    email: String,
    /// A display name, at most 256 bytes.
    #[serde(default)]
    display_name: Option<String>,
}

#[utoipa::path(
    post, path = "/api/v1/users", tag = "users", operation_id = "add_user",
    summary = "Add a user (BES status Initializing)",
    request_body = NewUser,
    responses(
        (status = 201, description = "The user, added.", body = UserView), (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 409, description = "A user with that address exists.", body = ApiErrorBody),
    )
)]
async fn add_user(
    State(state): State<Arc<AdminState>>,
    ApiJson(new): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let u = create_user(&state, &new.email, new.display_name.as_deref(), None).await?;
    let history = state.store.status_history(&u.email).await?;
    Ok((StatusCode::CREATED, Json(view(&state, u, history).await?)))
}

/// Adds a user (from the directory when `directory_id` is given) and starts watching their
/// mailbox: what `POST /users` and the directory import share.
pub(crate) async fn create_user(
    state: &AdminState,
    email: &str,
    display_name: Option<&str>,
    directory_id: Option<&str>,
) -> Result<User, ApiError> {
    if display_name.is_some_and(|n| n.len() > 256) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the display name is longer than 256 bytes",
        ));
    }
    let u = match directory_id {
        Some(id) => {
            state
                .store
                .add_user_from_directory(email, display_name, id)
                .await?
        }
        None => state.store.add_user(email, display_name).await?,
    };
    tracing::info!(user = %u.email, from_directory = directory_id.is_some(), "user added");
    if let Some(w) = &state.watchers
        && let Err(e) = w.watch(&u.email)
    {
        tracing::warn!(user = %u.email, "cannot watch the mailbox: {e}");
    }
    Ok(u)
}

#[utoipa::path(
    get, path = "/api/v1/users/{email}", tag = "users", operation_id = "show_user",
    summary = "One user with timeline, statistics, groups, IT policy and software",
    params(("email" = String, Path, description = "The user's email address.")),
    responses((status = 200, description = "The user.", body = UserView), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such user.", body = ApiErrorBody))
)]
async fn show_user(
    State(state): State<Arc<AdminState>>,
    ApiPath(email): ApiPath<String>,
) -> Result<Json<UserView>, ApiError> {
    let u = state
        .store
        .user(&email)
        .await?
        .ok_or_else(|| ApiError::no_user(&email))?;
    let history = state.store.status_history(&u.email).await?;
    let mut stats = mail_stats(&state, &u.email).await?;
    stats.pending = Some(state.store.mail_pending_count(&u.email).await?);
    let mut v = view(&state, u, history).await?;
    v.mail = Some(stats);
    super::policy_api::user_extras(&state, &mut v).await?;
    Ok(Json(v))
}

/// `PATCH /users/{email}`: what to change; what is left out stays.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UserEdit {
    /// A new address: the user keeps their device, mail, settings and history; their mailbox
    /// is watched under the new address and an activated phone gets its service books again.
    #[serde(default)]
    email: Option<String>,
    /// A new display name (at most 256 bytes); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    display_name: Option<Option<String>>,
}

#[utoipa::path(
    patch, path = "/api/v1/users/{email}", tag = "users", operation_id = "edit_user",
    summary = "Change a user's address or display name",
    params(("email" = String, Path, description = "The user's email address.")),
    request_body = UserEdit,
    responses(
        (status = 200, description = "The user, changed.", body = UserView), (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such user.", body = ApiErrorBody),
        (status = 409, description = "Another user has the new address.", body = ApiErrorBody),
    )
)]
async fn edit_user(
    State(state): State<Arc<AdminState>>,
    axum::Extension(caller): axum::Extension<super::access::Caller>,
    ApiPath(email): ApiPath<String>,
    ApiJson(edit): ApiJson<UserEdit>,
) -> Result<Json<UserView>, ApiError> {
    if let Some(Some(n)) = &edit.display_name
        && (n.len() > 256 || n.chars().any(char::is_control))
    {
        return Err(super::error::bad(
            "a display name has at most 256 bytes and no control characters",
        ));
    }
    let mut u = state
        .store
        .user(&email)
        .await?
        .ok_or_else(|| ApiError::no_user(&email))?;
    if let Some(new) = &edit.email {
        u = state
            .user_services()
            .change_email(&u.email, new, Some(&caller.account))
            .await?;
    }
    if let Some(name) = &edit.display_name {
        state
            .store
            .set_display_name(&u.email, name.as_deref())
            .await?;
    }
    let u = state
        .store
        .user(&u.email)
        .await?
        .ok_or_else(|| ApiError::no_user(&email))?;
    let history = state.store.status_history(&u.email).await?;
    Ok(Json(view(&state, u, history).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/users/{email}", tag = "users", operation_id = "delete_user",
    summary = "Delete a user and their device",
    params(("email" = String, Path, description = "The user's email address.")),
    responses((status = 204, description = "Deleted."), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such user.", body = ApiErrorBody))
)]
async fn delete_user(
    State(state): State<Arc<AdminState>>,
    ApiPath(email): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_user(&email).await? {
        tracing::info!(user = %email, "user deleted");
        if let Some(w) = &state.watchers {
            w.unwatch(&email.to_lowercase()).await;
        }
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::no_user(&email))
    }
}

/// `POST /users/{email}/activation-password`: either a password or `generate: true`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ActivationPasswordRequest {
    /// The password (6 to 128 characters, no control characters, no spaces at either end);
    /// leave it out and set `generate` to have one made.
    #[serde(default)]
    password: Option<String>,
    /// Have the server make a password, shown once in the answer.
    #[serde(default)]
    generate: bool,
    /// How long it stays valid, as "48h", "2d", "30m". Default 48 h.
    #[serde(default)]
    expires: Option<String>,
    /// Wrong passwords allowed before it is void. Default 5.
    #[serde(default)]
    max_attempts: Option<u32>,
}

/// The answer: when it expires, and the password only when the server made it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActivationPasswordView {
    /// The user.
    pub email: String,
    /// The generated password, shown this once; absent when the administrator chose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// When it stops being accepted (RFC 3339).
    pub expires_at: String,
    /// Wrong passwords allowed before it is void.
    pub max_attempts: u32,
}

/// The default lifetime of an activation password, as in BES.
pub const DEFAULT_ACTIVATION_EXPIRY: std::time::Duration =
    std::time::Duration::from_secs(48 * 3600);
/// The longest lifetime accepted.
pub const MAX_ACTIVATION_EXPIRY: std::time::Duration =
    std::time::Duration::from_secs(30 * 24 * 3600);
/// Wrong passwords allowed by default before the password is void.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub use crate::messaging::activation::OPAQUE_SETUP;

/// Letters and digits that cannot be mistaken for one another when read out over the phone.
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

fn generate_password() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut s = String::with_capacity(14);
    for i in 0..12 {
        if i > 0 && i % 4 == 0 {
            s.push('-');
        }
        s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    s
}

use super::error::bad;

#[utoipa::path(
    post, path = "/api/v1/users/{email}/activation-password", tag = "users",
    operation_id = "set_activation_password",
    summary = "Set or generate the user's Enterprise Activation password",
    params(("email" = String, Path, description = "The user's email address.")),
    request_body = ActivationPasswordRequest,
    responses(
        (status = 200, description = "Set; the password is shown only when the server made it.", body = ActivationPasswordView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such user.", body = ApiErrorBody),
    )
)]
async fn set_activation_password(
    State(state): State<Arc<AdminState>>,
    ApiPath(email): ApiPath<String>,
    ApiJson(req): ApiJson<ActivationPasswordRequest>,
) -> Result<Json<ActivationPasswordView>, ApiError> {
    let user = state
        .store
        .user(&email)
        .await?
        .ok_or_else(|| ApiError::no_user(&email))?;
    let (password, generated) = match (req.password, req.generate) {
        (Some(_), true) => {
            return Err(bad(
                "give either a password or \"generate\": true, not both",
            ));
        }
        (None, false) => {
            return Err(bad(
                "give a password, or \"generate\": true to have one made",
            ));
        }
        (None, true) => (generate_password(), true),
        (Some(p), false) => {
            let len = p.chars().count();
            if !(6..=128).contains(&len) {
                return Err(bad("an activation password has 6 to 128 characters"));
            }
            if p.trim() != p || p.chars().any(char::is_control) {
                return Err(bad(
                    "an activation password may not start or end with spaces or hold control characters",
                ));
            }
            (p, false)
        }
    };
    let expires = match req.expires.as_deref() {
        None => DEFAULT_ACTIVATION_EXPIRY,
        Some(t) => humantime::parse_duration(t).map_err(|e| bad(format!("expires {t:?}: {e}")))?,
    };
    if expires.is_zero() || expires > MAX_ACTIVATION_EXPIRY {
        return Err(bad(
            "an activation password expires after more than 0 and at most 30 days",
        ));
    }
    let max_attempts = req.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=100).contains(&max_attempts) {
        return Err(bad("max_attempts is 1 to 100"));
    }
    let setup = state
        .store
        .secret_or_insert(OPAQUE_SETUP, bramble_proto::pake::new_server_setup)
        .await?;
    let who = user.email.clone();
    let pw = password.clone();
    // OPAQUE registration stretches the password with Argon2id: off the async threads.
    let record = tokio::task::spawn_blocking(move || {
        bramble_proto::pake::register(&setup, &who, pw.as_bytes())
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the password could not be registered",
        )
    })?
    .map_err(|e| {
        tracing::error!("OPAQUE registration failed: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the password could not be registered; see the server's log",
        )
    })?;
    let expires_at = bramble_store::now_ms()
        .saturating_add(i64::try_from(expires.as_millis()).unwrap_or(i64::MAX));
    state
        .store
        .set_activation(&user.email, &record, expires_at, max_attempts)
        .await?;
    let reason = format!("activation password set; it expires {}", time(expires_at));
    state
        .store
        .set_user_status(
            &user.email,
            bramble_store::UserStatus::Initializing,
            Some(&reason),
        )
        .await?;
    tracing::info!(user = %user.email, generated, "activation password set");
    Ok(Json(ActivationPasswordView {
        email: user.email,
        password: generated.then_some(password),
        expires_at: time(expires_at),
        max_attempts,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MailPasswordRequest {
    /// The mailbox password, 1 to 1024 characters, no control characters.
    password: String,
}

/// `PUT /users/{email}/mail-password`: the user's own mailbox password, for servers without a
/// service account (`[server.mail] per_user = true`). Stored encrypted; never shown again.
/// A change to a user's mail settings: each field left out stays as it is.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MailSettingsChange {
    /// Forward new mail to the device.
    push: Option<bool>,
    /// Keep a copy of mail sent from the device in the Sent folder.
    save_sent: Option<bool>,
    /// Reconcile read/unread, flags, deletes and moves both ways.
    reconcile: Option<bool>,
}

#[utoipa::path(
    get, path = "/api/v1/users/{email}/mail-settings", tag = "users",
    operation_id = "show_mail_settings", summary = "The user's push-mail settings",
    params(("email" = String, Path, description = "The user's email address.")),
    responses((status = 200, description = "The settings.", body = super::openapi::MailSettings), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such user.", body = ApiErrorBody))
)]
async fn show_mail_settings(
    State(state): State<Arc<AdminState>>,
    ApiPath(email): ApiPath<String>,
) -> Result<Json<bramble_store::MailSettings>, ApiError> {
    let user = state
        .store
        .user(&email)
        .await?
        .ok_or_else(|| ApiError::no_user(&email))?;
    Ok(Json(state.store.mail_settings(&user.email).await?))
}

#[utoipa::path(
    patch, path = "/api/v1/users/{email}/mail-settings", tag = "users",
    operation_id = "edit_mail_settings",
    summary = "Change the user's push-mail settings (what is left out stays)",
    params(("email" = String, Path, description = "The user's email address.")),
    request_body = MailSettingsChange,
    responses(
        (status = 200, description = "The settings now.", body = super::openapi::MailSettings),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such user.", body = ApiErrorBody),
    )
)]
async fn edit_mail_settings(
    State(state): State<Arc<AdminState>>,
    ApiPath(email): ApiPath<String>,
    ApiJson(change): ApiJson<MailSettingsChange>,
) -> Result<Json<bramble_store::MailSettings>, ApiError> {
    let user = state
        .store
        .user(&email)
        .await?
        .ok_or_else(|| ApiError::no_user(&email))?;
    let mut settings = state.store.mail_settings(&user.email).await?;
    if let Some(v) = change.push {
        settings.push = v;
    }
    if let Some(v) = change.save_sent {
        settings.save_sent = v;
    }
    if let Some(v) = change.reconcile {
        settings.reconcile = v;
    }
    state
        .store
        .set_mail_settings(&user.email, &settings)
        .await?;
    tracing::info!(user = %user.email, ?settings, "mail settings changed");
    Ok(Json(settings))
}

#[utoipa::path(
    put, path = "/api/v1/users/{email}/mail-password", tag = "users",
    operation_id = "set_mail_password",
    summary = "Set the user's own mailbox password (servers without a service account)",
    params(("email" = String, Path, description = "The user's email address.")),
    request_body = MailPasswordRequest,
    responses(
        (status = 204, description = "Stored, encrypted."), (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such user.", body = ApiErrorBody),
        (status = 409, description = "This server does not keep mailbox passwords.", body = ApiErrorBody),
    )
)]
async fn set_mail_password(
    State(state): State<Arc<AdminState>>,
    ApiPath(email): ApiPath<String>,
    ApiJson(req): ApiJson<MailPasswordRequest>,
) -> Result<StatusCode, ApiError> {
    if req.password.is_empty()
        || req.password.len() > 1024
        || req.password.chars().any(char::is_control)
    {
        return Err(bad(
            "a mailbox password has 1 to 1024 characters and no control characters",
        ));
    }
    let user = state
        .store
        .user(&email)
        .await?
        .ok_or_else(|| ApiError::no_user(&email))?;
    let Some(creds) = &state.credentials else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "unavailable",
            "this server does not keep mailbox passwords",
        ));
    };
    creds.set(&state.store, &user.email, &req.password).await?;
    tracing::info!(user = %user.email, "mailbox password set");
    if let Some(w) = &state.watchers {
        // Log in again with the new password.
        w.unwatch(&user.email).await;
        if let Err(e) = w.watch(&user.email) {
            tracing::warn!(user = %user.email, "cannot watch the mailbox: {e}");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- push-mail filters (BES "global filters" and user filters) ----

/// A push-mail filter as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FilterView {
    /// The filter's number, what the other filter routes name it by.
    pub id: i64,
    /// "global" or "user".
    pub scope: String,
    /// The user's address, for a user's filter.
    pub user: Option<String>,
    /// Its place among the filters of its scope, from 1; the first matching enabled filter
    /// decides, global filters before the user's.
    pub position: u32,
    /// Its name, unique within its scope.
    pub name: String,
    /// A disabled filter is skipped.
    pub enabled: bool,
    /// Patterns (case-insensitive substrings, `*` and `?` wildcards) and the importance; null
    /// is no condition.
    #[schema(value_type = super::openapi::FilterConditions)]
    pub conditions: FilterConditions,
    /// "forward", "forward_with_priority" or "do_not_forward".
    #[schema(value_type = super::openapi::FilterAction)]
    pub action: FilterAction,
    /// When it was added (RFC 3339).
    pub created_at: String,
    /// When it was last changed or moved (RFC 3339).
    pub updated_at: String,
}

impl From<Filter> for FilterView {
    fn from(f: Filter) -> FilterView {
        let (scope, user) = match f.scope {
            FilterScope::Global => ("global", None),
            FilterScope::User(email) => ("user", Some(email)),
        };
        FilterView {
            id: f.id,
            scope: scope.to_owned(),
            user,
            position: f.position,
            name: f.name,
            enabled: f.enabled,
            conditions: f.conditions,
            action: f.action,
            created_at: time(f.created_at_ms),
            updated_at: time(f.updated_at_ms),
        }
    }
}

/// The conditions of `POST …/filters`: a pattern or importance, or null (or absent) for none.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ConditionsRequest {
    /// A pattern for the From header.
    #[serde(default)]
    from: Option<String>,
    /// A pattern one of the To addresses must match.
    #[serde(default)]
    to: Option<String>,
    /// A pattern one of the Cc addresses must match.
    #[serde(default)]
    cc: Option<String>,
    /// A pattern for the subject.
    #[serde(default)]
    subject: Option<String>,
    /// "high", "normal" or "low".
    #[serde(default)]
    importance: Option<String>,
}

/// `POST /filters` and `POST /users/{email}/filters`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewFilterRequest {
    /// Its name, unique within its scope.
    #[serde(default)]
    name: String,
    /// What a message must match; absent or null: every message.
    #[serde(default)]
    conditions: ConditionsRequest,
    /// forward, forward_with_priority (or priority) or do_not_forward (or drop); required.
    #[serde(default)]
    action: Option<String>,
    /// From 1; absent: last.
    #[serde(default)]
    position: Option<u32>,
    /// Default true.
    #[serde(default)]
    enabled: Option<bool>,
}

/// Tells an absent field (`None`) from a null one (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The conditions of `PATCH /filters/{id}`: absent stays, null (or "") removes, a value sets.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ConditionsPatch {
    /// A pattern for the From header; null or "" removes it.
    #[serde(default, deserialize_with = "present")]
    from: Option<Option<String>>,
    /// A pattern one of the To addresses must match; null or "" removes it.
    #[serde(default, deserialize_with = "present")]
    to: Option<Option<String>>,
    /// A pattern one of the Cc addresses must match; null or "" removes it.
    #[serde(default, deserialize_with = "present")]
    cc: Option<Option<String>>,
    /// A pattern for the subject; null or "" removes it.
    #[serde(default, deserialize_with = "present")]
    subject: Option<Option<String>>,
    /// "high", "normal" or "low"; null or "" removes it.
    #[serde(default, deserialize_with = "present")]
    importance: Option<Option<String>>,
}

/// `PATCH /filters/{id}`: what is absent stays as it is.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FilterPatch {
    /// A new name.
    #[serde(default)]
    name: Option<String>,
    /// Conditions to change.
    #[serde(default)]
    conditions: ConditionsPatch,
    /// A new action.
    #[serde(default)]
    action: Option<String>,
    /// Enable or disable it.
    #[serde(default)]
    enabled: Option<bool>,
}

/// `POST /filters/{id}/move`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MoveRequest {
    /// Its new place, from 1.
    position: u32,
}

/// Answers the filter errors of the store in the API's shape; the rest as usual.
fn filter_error(e: StoreError) -> ApiError {
    match &e {
        StoreError::InvalidFilter { .. } => bad(e.to_string()),
        StoreError::FilterExists { .. } => {
            ApiError::new(StatusCode::CONFLICT, "filter_exists", e.to_string())
        }
        StoreError::NoSuchFilter { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_filter", e.to_string())
        }
        _ => e.into(),
    }
}

fn no_filter(id: i64) -> ApiError {
    filter_error(StoreError::NoSuchFilter { id })
}

/// A filter id from the path.
fn filter_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| {
        bad(format!(
            "{text:?} is not a filter id; filter ids are whole numbers, as GET /api/v1/filters \
             shows them"
        ))
    })
}

fn parse_action(text: Option<&str>) -> Result<Option<FilterAction>, ApiError> {
    text.map(|a| {
        a.parse()
            .map_err(|e: ParseFilterActionError| bad(e.to_string()))
    })
    .transpose()
}

#[utoipa::path(
    get, path = "/api/v1/filters", tag = "mail filters", operation_id = "list_global_filters",
    summary = "The global push-mail filters, in order",
    params(Page),
    responses((status = 200, description = "A page of filters (X-Total-Count, Link rel=next).", body = Vec<FilterView>), (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody))
)]
async fn list_global_filters(
    State(state): State<Arc<AdminState>>,
    OriginalUri(uri): OriginalUri,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    let list = list_filters(&state, &FilterScope::Global).await?;
    Ok(paged(list, &page, uri.path(), uri.query()))
}

#[utoipa::path(
    get, path = "/api/v1/users/{email}/filters", tag = "mail filters",
    operation_id = "list_user_filters", summary = "A user's push-mail filters, in order",
    params(("email" = String, Path, description = "The user's email address."), Page),
    responses((status = 200, description = "A page of filters (X-Total-Count, Link rel=next).", body = Vec<FilterView>), (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such user.", body = ApiErrorBody))
)]
async fn list_user_filters(
    State(state): State<Arc<AdminState>>,
    OriginalUri(uri): OriginalUri,
    ApiPath(email): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    let list = list_filters(&state, &FilterScope::User(email)).await?;
    Ok(paged(list, &page, uri.path(), uri.query()))
}

async fn list_filters(
    state: &AdminState,
    scope: &FilterScope,
) -> Result<Vec<FilterView>, ApiError> {
    let list = state
        .store
        .list_filters(scope)
        .await
        .map_err(filter_error)?;
    Ok(list.into_iter().map(FilterView::from).collect())
}

#[utoipa::path(
    post, path = "/api/v1/filters", tag = "mail filters", operation_id = "add_global_filter",
    summary = "Add a global push-mail filter",
    request_body = NewFilterRequest,
    responses(
        (status = 201, description = "The filter, added.", body = FilterView), (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 409, description = "A filter of that name exists in this scope.", body = ApiErrorBody),
    )
)]
async fn add_global_filter(
    State(state): State<Arc<AdminState>>,
    ApiJson(body): ApiJson<NewFilterRequest>,
) -> Result<(StatusCode, Json<FilterView>), ApiError> {
    add_filter(&state, FilterScope::Global, body).await
}

#[utoipa::path(
    post, path = "/api/v1/users/{email}/filters", tag = "mail filters",
    operation_id = "add_user_filter", summary = "Add a push-mail filter for one user",
    params(("email" = String, Path, description = "The user's email address.")),
    request_body = NewFilterRequest,
    responses(
        (status = 201, description = "The filter, added.", body = FilterView), (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such user.", body = ApiErrorBody),
        (status = 409, description = "A filter of that name exists in this scope.", body = ApiErrorBody),
    )
)]
async fn add_user_filter(
    State(state): State<Arc<AdminState>>,
    ApiPath(email): ApiPath<String>,
    ApiJson(body): ApiJson<NewFilterRequest>,
) -> Result<(StatusCode, Json<FilterView>), ApiError> {
    add_filter(&state, FilterScope::User(email), body).await
}

async fn add_filter(
    state: &AdminState,
    scope: FilterScope,
    req: NewFilterRequest,
) -> Result<(StatusCode, Json<FilterView>), ApiError> {
    let Some(action) = parse_action(req.action.as_deref())? else {
        return Err(bad(
            "give the filter an action: forward, forward_with_priority or do_not_forward",
        ));
    };
    let c = req.conditions;
    let f = state
        .store
        .add_filter(&NewFilter {
            scope,
            name: req.name,
            conditions: FilterConditions {
                from: c.from,
                to: c.to,
                cc: c.cc,
                subject: c.subject,
                importance: c.importance,
            },
            action,
            enabled: req.enabled.unwrap_or(true),
            position: req.position,
        })
        .await
        .map_err(filter_error)?;
    tracing::info!(filter = f.id, name = %f.name, scope = %f.scope, "filter added");
    Ok((StatusCode::CREATED, Json(f.into())))
}

#[utoipa::path(
    get, path = "/api/v1/filters/{id}", tag = "mail filters", operation_id = "show_filter",
    summary = "One push-mail filter, global or a user's",
    params(("id" = String, Path, description = "The filter's number, as `GET /api/v1/filters` shows it.")),
    responses((status = 200, description = "The filter.", body = FilterView), (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such filter.", body = ApiErrorBody))
)]
async fn show_filter(
    State(state): State<Arc<AdminState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<FilterView>, ApiError> {
    let id = filter_id(&id)?;
    let f = state.store.filter(id).await?.ok_or_else(|| no_filter(id))?;
    Ok(Json(f.into()))
}

#[utoipa::path(
    patch, path = "/api/v1/filters/{id}", tag = "mail filters", operation_id = "edit_filter",
    summary = "Change a push-mail filter (what is left out stays)",
    params(("id" = String, Path, description = "The filter's number, as `GET /api/v1/filters` shows it.")),
    request_body = FilterPatch,
    responses(
        (status = 200, description = "The filter now.", body = FilterView), (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such filter.", body = ApiErrorBody),
        (status = 409, description = "A filter of that name exists in this scope.", body = ApiErrorBody),
    )
)]
async fn edit_filter(
    State(state): State<Arc<AdminState>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<FilterPatch>,
) -> Result<Json<FilterView>, ApiError> {
    let id = filter_id(&id)?;
    let c = req.conditions;
    let f = state
        .store
        .update_filter(
            id,
            &FilterUpdate {
                name: req.name,
                from: c.from,
                to: c.to,
                cc: c.cc,
                subject: c.subject,
                importance: c.importance,
                action: parse_action(req.action.as_deref())?,
                enabled: req.enabled,
            },
        )
        .await
        .map_err(filter_error)?;
    tracing::info!(filter = f.id, name = %f.name, scope = %f.scope, "filter changed");
    Ok(Json(f.into()))
}

#[utoipa::path(
    post, path = "/api/v1/filters/{id}/move", tag = "mail filters", operation_id = "move_filter",
    summary = "Move a push-mail filter to another place among its scope's filters",
    params(("id" = String, Path, description = "The filter's number, as `GET /api/v1/filters` shows it.")),
    request_body = MoveRequest,
    responses((status = 200, description = "The filter, moved.", body = FilterView), (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such filter.", body = ApiErrorBody))
)]
async fn move_filter(
    State(state): State<Arc<AdminState>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<MoveRequest>,
) -> Result<Json<FilterView>, ApiError> {
    let id = filter_id(&id)?;
    let f = state
        .store
        .move_filter(id, req.position)
        .await
        .map_err(filter_error)?;
    tracing::info!(filter = f.id, position = f.position, scope = %f.scope, "filter moved");
    Ok(Json(f.into()))
}

#[utoipa::path(
    delete, path = "/api/v1/filters/{id}", tag = "mail filters", operation_id = "delete_filter",
    summary = "Remove a push-mail filter",
    params(("id" = String, Path, description = "The filter's number, as `GET /api/v1/filters` shows it.")),
    responses((status = 204, description = "Removed."), (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody), (status = 401, description = "No valid administration token.", body = ApiErrorBody), (status = 404, description = "No such filter.", body = ApiErrorBody))
)]
async fn delete_filter(
    State(state): State<Arc<AdminState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = filter_id(&id)?;
    if !state.store.delete_filter(id).await? {
        return Err(no_filter(id));
    }
    tracing::info!(filter = id, "filter removed");
    Ok(StatusCode::NO_CONTENT)
}
