//! `/api/v1/directory`: the directory import (seed 002's BlackBerry MailStore service) over
//! HTTP. Search the company directory by name or mail address, add people from it as users
//! (or link existing users to their entry), and bring names in step on demand.
//!
//! Owns: these routes and their JSON shapes. Must not touch: LDAP (that is
//! `crate::directory`), SQL.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::directory::{DirectoryError, DirectoryService, Entry, SyncReport};

use super::access::AuditNote;
use super::api::UserView;
use super::error::{ApiErrorBody, ApiJson, ApiQuery};
use super::{AdminState, ApiError};

type Api = State<Arc<AdminState>>;

/// Entries one import takes at most.
const MAX_IMPORT: usize = 100;
/// Longest query or identifier taken.
const MAX_TEXT: usize = 256;

/// The routes, to be nested under `/api/v1` behind the guard.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/directory", get(show))
        .route("/directory/search", get(search))
        .route("/directory/import", post(import))
        .route("/directory/sync", post(sync))
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> ApiError {
        match e {
            DirectoryError::Store(s) => s.into(),
            DirectoryError::Unavailable { .. } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "directory_unavailable",
                format!("{e}; nothing was changed"),
            ),
            DirectoryError::TooMany { .. } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "directory_too_large",
                format!("{e}; nothing was changed"),
            ),
        }
    }
}

fn service(state: &AdminState) -> Result<&DirectoryService, ApiError> {
    state.directory.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "directory_not_configured",
            "no directory is configured: add a [server.directory] section (url, base_dn) to \
             the server's configuration and restart it",
        )
    })
}

/// `GET /directory`: whether a directory is configured, and the last synchronization.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirectoryView {
    /// `[server.directory]` is set.
    pub configured: bool,
    /// The directory's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where people are searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_dn: Option<String>,
    /// Which entries are people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// How often names are brought in step ("1h"; "0s": only when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<String>,
    /// The last synchronization since the server started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<SyncReport>,
}

#[utoipa::path(
    get, path = "/api/v1/directory", tag = "directory", operation_id = "show_directory",
    summary = "The directory users are added from, and its last synchronization",
    responses(
        (status = 200, description = "The directory.", body = DirectoryView),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
    )
)]
async fn show(State(state): Api) -> Json<DirectoryView> {
    Json(match state.directory.as_deref() {
        None => DirectoryView {
            configured: false,
            url: None,
            base_dn: None,
            filter: None,
            sync_interval: None,
            last_sync: None,
        },
        Some(d) => {
            let c = d.directory().config();
            DirectoryView {
                configured: true,
                url: Some(c.url.clone()),
                base_dn: Some(c.base_dn.clone()),
                filter: Some(c.filter.clone()),
                sync_interval: Some(humantime::format_duration(c.sync_interval).to_string()),
                last_sync: d.last(),
            }
        }
    })
}

/// `?q=&limit=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// Part of a name or mail address; empty: everyone (up to the limit).
    #[serde(default)]
    q: Option<String>,
    /// Entries at most (default 50, at most 1000).
    #[serde(default)]
    limit: Option<u32>,
}

/// A directory entry, and the user it already is, if any.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirectoryEntryView {
    /// The entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// The user added from this entry, or with its address.
    pub user: Option<String>,
}

#[utoipa::path(
    get, path = "/api/v1/directory/search", tag = "directory", operation_id = "search_directory",
    summary = "Find people in the directory by name or mail address",
    params(SearchQuery),
    responses(
        (status = 200, description = "The entries, by name; `X-More-Results: true` when the directory holds more.", body = [DirectoryEntryView]),
        (status = 400, description = "The query is too long.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 409, description = "No directory is configured.", body = ApiErrorBody),
        (status = 502, description = "The directory cannot be reached or refused the search.", body = ApiErrorBody),
    )
)]
async fn search(
    State(state): Api,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Response, ApiError> {
    let d = service(&state)?;
    let text = q.q.unwrap_or_default();
    if text.len() > MAX_TEXT {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the search text is longer than {MAX_TEXT} bytes"),
        ));
    }
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "limit must be from 1 to 1000",
        ));
    }
    let (entries, more) = d.directory().search(&text, limit).await?;
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let user = match state.store.user_by_directory_id(&entry.id).await? {
            Some(u) => Some(u.email),
            None => match &entry.mail {
                Some(m) => state.store.user(m).await?.map(|u| u.email),
                None => None,
            },
        };
        out.push(DirectoryEntryView { entry, user });
    }
    let mut resp = Json(out).into_response();
    resp.headers_mut().insert(
        "x-more-results",
        HeaderValue::from_static(if more { "true" } else { "false" }),
    );
    Ok(resp)
}

/// `POST /directory/import`: the entries to add, by their stable identifier (as search shows).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ImportRequest {
    /// Identifiers of directory entries, 1 to 100.
    ids: Vec<String>,
}

/// What an import did with each entry.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Users added (BES status Initializing), ready for an activation password.
    pub added: Vec<UserView>,
    /// Users who were there already with the entry's address, now linked to it.
    pub linked: Vec<String>,
    /// Entries not added, and why.
    pub skipped: Vec<Skipped>,
}

/// An entry an import left out.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    /// The entry's identifier.
    pub id: String,
    /// Why, in an administrator's words.
    pub reason: String,
}

#[utoipa::path(
    post, path = "/api/v1/directory/import", tag = "directory", operation_id = "import_from_directory",
    summary = "Add users from directory entries (existing users with the entry's address are linked)",
    request_body = ImportRequest,
    responses(
        (status = 200, description = "What was added, linked and left out.", body = ImportReport),
        (status = 400, description = "No identifiers, or too many.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 409, description = "No directory is configured.", body = ApiErrorBody),
        (status = 502, description = "The directory cannot be reached.", body = ApiErrorBody),
    )
)]
async fn import(
    State(state): Api,
    ApiJson(req): ApiJson<ImportRequest>,
) -> Result<(Extension<AuditNote>, Json<ImportReport>), ApiError> {
    let d = service(&state)?;
    if req.ids.is_empty() || req.ids.len() > MAX_IMPORT {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("give 1 to {MAX_IMPORT} directory entries to add"),
        ));
    }
    let mut report = ImportReport::default();
    let mut seen = std::collections::HashSet::new();
    for id in req.ids {
        if id.is_empty() || id.len() > MAX_TEXT {
            report.skipped.push(Skipped {
                id: id.chars().take(64).collect(),
                reason: "not a directory entry's identifier".into(),
            });
            continue;
        }
        if !seen.insert(id.clone()) {
            continue;
        }
        let skip = |reason: String| Skipped {
            id: id.clone(),
            reason,
        };
        let Some(entry) = d.directory().lookup(&id).await? else {
            report.skipped.push(skip(
                "no such entry in the directory (or the filter leaves it out)".into(),
            ));
            continue;
        };
        let Some(mail) = entry.mail.clone() else {
            report
                .skipped
                .push(skip(format!("{} has no mail address", entry.dn)));
            continue;
        };
        if let Some(u) = state.store.user_by_directory_id(&id).await? {
            report
                .skipped
                .push(skip(format!("already the user {}", u.email)));
            continue;
        }
        match state.store.user(&mail).await? {
            Some(u) if u.directory_id.is_none() => {
                state.store.set_directory_id(&u.email, Some(&id)).await?;
                if entry.name.is_some() {
                    state
                        .store
                        .set_display_name(&u.email, entry.name.as_deref())
                        .await?;
                }
                report.linked.push(u.email);
            }
            Some(u) => report.skipped.push(skip(format!(
                "{} is already a user, added from another directory entry",
                u.email
            ))),
            None => {
                match super::api::create_user(&state, &mail, entry.name.as_deref(), Some(&id)).await
                {
                    Ok(u) => {
                        let history = state.store.status_history(&u.email).await?;
                        report
                            .added
                            .push(super::api::view(&state, u, history).await?);
                    }
                    Err(e) if e.status.is_client_error() => {
                        report.skipped.push(skip(e.message));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let mut note = Vec::new();
    if !report.added.is_empty() {
        let who: Vec<&str> = report.added.iter().map(|u| u.email.as_str()).collect();
        note.push(format!("added {}", who.join(", ")));
    }
    if !report.linked.is_empty() {
        note.push(format!("linked {}", report.linked.join(", ")));
    }
    if !report.skipped.is_empty() {
        note.push(format!("{} left out", report.skipped.len()));
    }
    let note: String = note.join("; ").chars().take(1000).collect();
    Ok((Extension(AuditNote(note)), Json(report)))
}

#[utoipa::path(
    post, path = "/api/v1/directory/sync", tag = "directory", operation_id = "sync_directory",
    summary = "Bring the names of users added from the directory in step now",
    responses(
        (status = 200, description = "What was compared and changed.", body = SyncReport),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 409, description = "No directory is configured.", body = ApiErrorBody),
        (status = 502, description = "The directory cannot be reached; nothing was changed.", body = ApiErrorBody),
    )
)]
async fn sync(State(state): Api) -> Result<(Extension<AuditNote>, Json<SyncReport>), ApiError> {
    let d = service(&state)?;
    let report = d.sync_now(&state.user_services()).await?;
    let note = format!(
        "{} checked, {} renamed, {} given their new address, {} with a new address not applied, \
         {} gone from the directory",
        report.checked,
        report.renamed.len(),
        report.readdressed.len(),
        report.address_changed.len(),
        report.missing.len()
    );
    Ok((Extension(AuditNote(note)), Json(report)))
}
