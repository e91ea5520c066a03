//! The synchronization service's part of the API: how each organizer database is
//! synchronized for a user (with where each setting came from), settings for users and
//! groups, the records that could not be synchronized, and the user's wireless backup.
//!
//! Every change tells the synchronization service, which sends the devices affected their new
//! configuration.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use bramble_organizer::Database;
use bramble_store::SyncSetting;
use serde::{Deserialize, Serialize};

use super::error::{ApiErrorBody, ApiJson, ApiPath, ApiQuery};
use super::{AdminState, ApiError};
use crate::sync::settings::{self, Conflict, DbSetting, Direction};

type Api = State<Arc<AdminState>>;

/// The routes, to be nested under `/api/v1` behind the token check.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/users/{email}/sync", get(show_user).delete(clear_user))
        .route(
            "/users/{email}/sync/{database}",
            put(set_user).delete(clear_user_db),
        )
        .route("/groups/{name}/sync", get(show_group).delete(clear_group))
        .route(
            "/groups/{name}/sync/{database}",
            put(set_group).delete(clear_group_db),
        )
}

use super::rfc3339 as time;

/// A user's synchronization, as `bramble admin sync show` prints it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserSyncView {
    /// The user.
    pub email: String,
    /// `[server.sync] url` is set.
    pub configured: bool,
    /// Every database, calendar first, with where its setting came from.
    pub databases: Vec<DbSetting>,
    /// Wireless backup on.
    pub backup: bool,
    /// Records each side holds, per database.
    pub records: Vec<RecordCount>,
    /// The newest problems, newest first.
    pub problems: Vec<ProblemView>,
    /// The newest wireless backup.
    pub last_backup: Option<BackupView>,
}

/// Records of one database.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordCount {
    /// The database.
    #[schema(value_type = super::openapi::Database)]
    pub database: Database,
    /// On the CalDAV/CardDAV server.
    pub on_server: usize,
    /// Held by the device at the server's version.
    pub on_device: usize,
}

/// A record that could not be synchronized.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemView {
    /// The database.
    pub database: String,
    /// The record's UID or href.
    pub item: String,
    /// `server` or `device`.
    pub side: String,
    /// What is wrong.
    pub detail: String,
    /// When.
    pub at: String,
}

/// A wireless backup (its content stays encrypted).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BackupView {
    /// The device it came from.
    pub pin: String,
    /// When the device took it.
    pub taken_at: String,
    /// Its size, encrypted.
    pub bytes: usize,
}

/// `PUT …/sync/{database}`: what to change (what is left out stays as it resolves now).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SettingChange {
    /// On or off.
    pub enabled: Option<bool>,
    /// `bidirectional` or `server-to-device`.
    pub direction: Option<String>,
    /// `server-wins`, `device-wins` or `newest-wins`.
    pub conflict: Option<String>,
}

/// A group's own settings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupSyncView {
    /// The group.
    pub group: String,
    /// Its settings (databases it sets nothing for are left out).
    pub databases: Vec<SettingView>,
}

/// One stored setting.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettingView {
    /// The database.
    pub database: String,
    /// On or off.
    pub enabled: bool,
    /// Which way.
    pub direction: String,
    /// Who wins a conflict.
    pub conflict: String,
}

/// How many problems to show.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Limit {
    /// The newest this many problems (default 20, at most 200).
    problems: Option<u32>,
}

fn database(name: &str) -> Result<Database, ApiError> {
    Database::from_name(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_such_database",
            format!("{name:?} is not an organizer database: calendar, contacts, tasks or memos"),
        )
    })
}

fn tell(state: &AdminState, email: Option<&str>) {
    if let Some(s) = &state.sync {
        s.settings_changed(email);
    }
}

/// A stored setting from what is in force now and the change asked for.
fn merged(current: &DbSetting, c: &SettingChange) -> Result<SyncSetting, ApiError> {
    let direction = match &c.direction {
        Some(d) => Direction::from_name(d).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_direction",
                format!("direction {d:?}: expected bidirectional or server-to-device"),
            )
        })?,
        None => current.direction,
    };
    let conflict = match &c.conflict {
        Some(x) => Conflict::from_name(x).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_conflict_rule",
                format!("conflict rule {x:?}: expected server-wins, device-wins or newest-wins"),
            )
        })?,
        None => current.conflict,
    };
    Ok(SyncSetting {
        database: current.database.as_str().into(),
        enabled: c.enabled.unwrap_or(current.enabled),
        direction: direction.as_str().into(),
        conflict: conflict.as_str().into(),
    })
}

async fn user_view(
    state: &AdminState,
    email: &str,
    problems: u32,
) -> Result<UserSyncView, ApiError> {
    let user = state
        .store
        .user(email)
        .await?
        .ok_or_else(|| ApiError::no_user(email))?;
    let r = settings::resolve(&state.store, &state.sync_config, &user.email).await?;
    let mut records = Vec::new();
    for db in Database::ALL {
        let rows = state.store.sync_records(&user.email, db.as_str()).await?;
        records.push(RecordCount {
            database: db,
            on_server: rows.iter().filter(|r| r.etag.is_some()).count(),
            on_device: rows
                .iter()
                .filter(|r| r.etag.is_some() && r.device_etag == r.etag)
                .count(),
        });
    }
    let problems = state
        .store
        .sync_problems(&user.email, problems.min(200))
        .await?
        .into_iter()
        .map(|p| ProblemView {
            database: p.database,
            item: p.item,
            side: p.side,
            detail: p.detail,
            at: time(p.at),
        })
        .collect();
    let last_backup = state
        .store
        .device_backup(&user.email)
        .await?
        .map(|b| BackupView {
            pin: bramble_proto::Pin(b.pin).to_string(),
            taken_at: time(b.taken_at),
            bytes: b.sealed.len(),
        });
    Ok(UserSyncView {
        email: user.email,
        configured: r.configured,
        databases: r.databases,
        backup: r.backup,
        records,
        problems,
        last_backup,
    })
}

#[utoipa::path(
    get, path = "/api/v1/users/{email}/sync", tag = "synchronization", operation_id = "sync_show_user",
    summary = "How each organizer database is synchronized for a user, the records held, problems and the last wireless backup",
    params(("email" = String, Path, description = "The user's email address."), Limit),
    responses(
        (status = 200, description = "The user's synchronization.", body = UserSyncView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such user.", body = ApiErrorBody),
    )
)]
async fn show_user(
    State(state): Api,
    ApiPath(email): ApiPath<String>,
    ApiQuery(q): ApiQuery<Limit>,
) -> Result<Json<UserSyncView>, ApiError> {
    Ok(Json(
        user_view(&state, &email, q.problems.unwrap_or(20)).await?,
    ))
}

#[utoipa::path(
    put, path = "/api/v1/users/{email}/sync/{database}", tag = "synchronization", operation_id = "sync_set_user",
    summary = "Set how one organizer database is synchronized for a user",
    params(("email" = String, Path, description = "The user's email address."), ("database" = super::openapi::Database, Path, description = "The organizer database.")),
    request_body = SettingChange,
    responses(
        (status = 200, description = "The user's synchronization now.", body = UserSyncView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such user.", body = ApiErrorBody),
    )
)]
async fn set_user(
    State(state): Api,
    ApiPath((email, db)): ApiPath<(String, String)>,
    ApiJson(c): ApiJson<SettingChange>,
) -> Result<Json<UserSyncView>, ApiError> {
    let db = database(&db)?;
    let r = settings::resolve(&state.store, &state.sync_config, &email).await?;
    let current = r
        .of(db)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "no_such_database", db.as_str()))?;
    let s = merged(current, &c)?;
    state.store.set_user_sync_setting(&email, &s).await?;
    tell(&state, Some(&email));
    Ok(Json(user_view(&state, &email, 20).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/users/{email}/sync", tag = "synchronization", operation_id = "sync_clear_user",
    summary = "Remove every synchronization setting of a user's own",
    params(("email" = String, Path, description = "The user's email address.")),
    responses(
        (status = 204, description = "Removed; the group or server settings apply."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such user.", body = ApiErrorBody),
    )
)]
async fn clear_user(
    State(state): Api,
    ApiPath(email): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.store.clear_user_sync_setting(&email, None).await?;
    tell(&state, Some(&email));
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete, path = "/api/v1/users/{email}/sync/{database}", tag = "synchronization", operation_id = "sync_clear_user_db",
    summary = "Remove a user's own setting for one organizer database",
    params(("email" = String, Path, description = "The user's email address."), ("database" = super::openapi::Database, Path, description = "The organizer database.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such user.", body = ApiErrorBody),
    )
)]
async fn clear_user_db(
    State(state): Api,
    ApiPath((email, db)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let db = database(&db)?;
    state
        .store
        .clear_user_sync_setting(&email, Some(db.as_str()))
        .await?;
    tell(&state, Some(&email));
    Ok(StatusCode::NO_CONTENT)
}

async fn group_view(state: &AdminState, name: &str) -> Result<GroupSyncView, ApiError> {
    let g = state.store.group(name).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_group",
            format!("no group named {name:?}; `bramble admin group list` shows them"),
        )
    })?;
    let databases = state
        .store
        .group_sync_settings(&g.name)
        .await?
        .into_iter()
        .map(|s| SettingView {
            database: s.database,
            enabled: s.enabled,
            direction: s.direction,
            conflict: s.conflict,
        })
        .collect();
    Ok(GroupSyncView {
        group: g.name,
        databases,
    })
}

#[utoipa::path(
    get, path = "/api/v1/groups/{name}/sync", tag = "synchronization", operation_id = "sync_show_group",
    summary = "A group's own synchronization settings",
    params(("name" = String, Path, description = "The group's name.")),
    responses(
        (status = 200, description = "The group's settings.", body = GroupSyncView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such group.", body = ApiErrorBody),
    )
)]
async fn show_group(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<GroupSyncView>, ApiError> {
    Ok(Json(group_view(&state, &name).await?))
}

#[utoipa::path(
    put, path = "/api/v1/groups/{name}/sync/{database}", tag = "synchronization", operation_id = "sync_set_group",
    summary = "Set how one organizer database is synchronized for a group's members",
    params(("name" = String, Path, description = "The group's name."), ("database" = super::openapi::Database, Path, description = "The organizer database.")),
    request_body = SettingChange,
    responses(
        (status = 200, description = "The group's settings now.", body = GroupSyncView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such group.", body = ApiErrorBody),
    )
)]
async fn set_group(
    State(state): Api,
    ApiPath((name, db)): ApiPath<(String, String)>,
    ApiJson(c): ApiJson<SettingChange>,
) -> Result<Json<GroupSyncView>, ApiError> {
    let db = database(&db)?;
    let existing = state
        .store
        .group_sync_settings(&name)
        .await?
        .into_iter()
        .find(|s| s.database == db.as_str());
    let cfg = &state.sync_config;
    let current = DbSetting {
        database: db,
        enabled: existing.as_ref().is_none_or(|s| s.enabled),
        direction: existing
            .as_ref()
            .and_then(|s| Direction::from_name(&s.direction))
            .or_else(|| Direction::from_name(&cfg.direction))
            .unwrap_or(Direction::Bidirectional),
        conflict: existing
            .as_ref()
            .and_then(|s| Conflict::from_name(&s.conflict))
            .or_else(|| Conflict::from_name(&cfg.conflict))
            .unwrap_or(Conflict::ServerWins),
        source: String::new(),
    };
    let s = merged(&current, &c)?;
    state.store.set_group_sync_setting(&name, &s).await?;
    tell(&state, None);
    Ok(Json(group_view(&state, &name).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/groups/{name}/sync", tag = "synchronization", operation_id = "sync_clear_group",
    summary = "Remove every synchronization setting of a group",
    params(("name" = String, Path, description = "The group's name.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such group.", body = ApiErrorBody),
    )
)]
async fn clear_group(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.store.clear_group_sync_setting(&name, None).await?;
    tell(&state, None);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete, path = "/api/v1/groups/{name}/sync/{database}", tag = "synchronization", operation_id = "sync_clear_group_db",
    summary = "Remove a group's setting for one organizer database",
    params(("name" = String, Path, description = "The group's name."), ("database" = super::openapi::Database, Path, description = "The organizer database.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such group.", body = ApiErrorBody),
    )
)]
async fn clear_group_db(
    State(state): Api,
    ApiPath((name, db)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let db = database(&db)?;
    state
        .store
        .clear_group_sync_setting(&name, Some(db.as_str()))
        .await?;
    tell(&state, None);
    Ok(StatusCode::NO_CONTENT)
}
