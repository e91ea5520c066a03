//! The policy service's part of the API: IT policies (rules, presets, versions, diffs,
//! assignments), groups, IT admin commands and their receipts, the application repository,
//! software configurations and deployment jobs. Shapes in [`super::views`].
//!
//! Every change tells the policy service, which pushes what changed to the devices affected.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, OriginalUri, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use bramble_proto::Pin;
use bramble_proto::schema::PolicyRule;
use bramble_store::{PolicyVersion, StoreError};
use serde::Deserialize;

use super::error::{ApiErrorBody, ApiJson, ApiPath, ApiQuery};
use super::pages::{Page, paged, paged_slice};
use super::views::*;
use super::{AdminState, ApiError};
use crate::policy::{commands, resolve, rules, software};

type Api = State<Arc<AdminState>>;

/// The routes, to be nested under `/api/v1` behind the token check.
pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/policy-rules", get(list_rules))
        .route("/policy-presets", get(list_presets))
        .route("/policies", get(list_policies).post(create_policy))
        .route(
            "/policies/{name}",
            get(show_policy).patch(edit_policy).delete(delete_policy),
        )
        .route("/policies/{name}/versions/{version}", get(show_version))
        .route("/policies/{name}/diff", get(diff_policy))
        .route("/users/{email}/policy", put(assign_user_policy))
        .route("/groups", get(list_groups).post(add_group))
        .route("/groups/{name}", get(show_group).delete(delete_group))
        .route(
            "/groups/{name}/members/{email}",
            put(add_member).delete(remove_member),
        )
        .route("/groups/{name}/policy", put(assign_group_policy))
        .route("/groups/{name}/software", put(assign_group_software))
        .route("/users/{email}/commands", post(add_command))
        .route("/commands", get(list_commands))
        .route("/commands/{id}", get(show_command))
        .route("/commands/{id}/cancel", post(cancel_command))
        .route(
            "/software/packages",
            get(list_packages)
                .post(upload_package)
                .layer(DefaultBodyLimit::max(software::MAX_PACKAGE + 1)),
        )
        .route(
            "/software/packages/{name}/{version}",
            axum::routing::delete(delete_package),
        )
        .route("/software/configs", get(list_configs).post(create_config))
        .route(
            "/software/configs/{name}",
            get(show_config).patch(edit_config).delete(delete_config),
        )
        .route(
            "/software/configs/{name}/apps/{app}",
            put(set_config_app).delete(remove_config_app),
        )
        .route("/users/{email}/software", put(assign_user_software))
        .route("/software/jobs", get(list_jobs))
}

use super::rfc3339 as time;

/// An offset as a count of items to skip.
fn skip(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

use super::error::bad;

fn no_policy(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_policy",
        format!("no IT policy named {name:?}; `bramble admin policy list` shows them"),
    )
}

fn no_group(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_group",
        format!("no group named {name:?}; `bramble admin group list` shows them"),
    )
}

fn no_config(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_software_config",
        format!(
            "no software configuration named {name:?}; `bramble admin software config list` shows them"
        ),
    )
}

fn tell_all(state: &AdminState) {
    if let Some(p) = &state.policy {
        p.everything_changed();
    }
}

fn tell_user(state: &AdminState, email: &str) {
    if let Some(p) = &state.policy {
        p.user_changed(email);
    }
}

// ---- rules and presets

#[utoipa::path(
    get, path = "/api/v1/policy-rules", tag = "IT policies", operation_id = "list_rules",
    summary = "The catalogue of IT policy rules",
    responses(
        (status = 200, description = "Every rule.", body = Vec<RuleView>),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
    )
)]
async fn list_rules() -> Json<Vec<RuleView>> {
    Json(
        rules::catalogue()
            .iter()
            .map(|r| RuleView {
                name: r.name.to_owned(),
                takes: rules::takes(r),
                default: r.default.to_string(),
                description: r.description.to_owned(),
            })
            .collect(),
    )
}

#[utoipa::path(
    get, path = "/api/v1/policy-presets", tag = "IT policies", operation_id = "list_presets",
    summary = "BES 5's preset IT policies",
    responses(
        (status = 200, description = "The presets.", body = Vec<PresetView>),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
    )
)]
async fn list_presets() -> Json<Vec<PresetView>> {
    Json(
        rules::presets()
            .iter()
            .map(|p| PresetView {
                name: p.name.to_owned(),
                description: p.description.to_owned(),
                overrides: p
                    .overrides
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), v.to_string()))
                    .collect(),
            })
            .collect(),
    )
}

// ---- policies

fn rule_views(list: &[PolicyRule]) -> Vec<PolicyRuleView> {
    list.iter()
        .filter_map(|r| {
            let value = rules::RuleValue::from_proto(r.value.as_ref()?);
            let is_default = rules::spec(&r.name).is_some_and(|s| s.default == value);
            Some(PolicyRuleView {
                name: r.name.clone(),
                value: value.to_string(),
                is_default,
            })
        })
        .collect()
}

fn stored_rules(v: &PolicyVersion) -> Result<Vec<PolicyRule>, ApiError> {
    rules::from_json(&v.rules_json).map_err(|what| ApiError::from(StoreError::Corrupt { what }))
}

async fn policy_view(
    state: &AdminState,
    name: &str,
    version: Option<u32>,
) -> Result<PolicyView, ApiError> {
    let summary = state
        .store
        .policy(name)
        .await?
        .ok_or_else(|| no_policy(name))?;
    let v = state
        .store
        .policy_version(&summary.name, version)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_version",
                format!(
                    "IT policy {:?} has versions 1 to {}",
                    summary.name, summary.current_version
                ),
            )
        })?;
    let versions = state
        .store
        .policy_versions(&summary.name)
        .await?
        .into_iter()
        .map(|v| PolicyVersionView {
            version: v.version,
            created_at: time(v.created_at_ms),
            created_by: v.created_by,
            note: v.note,
        })
        .collect();
    let (users, groups) = state.store.policy_assignees(&summary.name).await?;
    Ok(PolicyView {
        rules: rule_views(&stored_rules(&v)?),
        name: summary.name,
        description: summary.description,
        version: v.version,
        updated_at: time(v.created_at_ms),
        versions,
        users,
        groups,
    })
}

#[utoipa::path(
    get, path = "/api/v1/policies", tag = "IT policies", operation_id = "list_policies",
    summary = "The IT policies by name (without rules and versions)",
    params(Page),
    responses(
        (status = 200, description = "A page of policies (X-Total-Count, Link rel=next).", body = Vec<PolicyView>),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
    )
)]
async fn list_policies(
    State(state): Api,
    OriginalUri(uri): OriginalUri,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    let (offset, limit) = page.bounds()?;
    let all = state.store.policies().await?;
    let total = all.len() as u64;
    let mut out = Vec::new();
    for p in all.into_iter().skip(skip(offset)).take(limit as usize) {
        let (users, groups) = state.store.policy_assignees(&p.name).await?;
        out.push(PolicyView {
            name: p.name,
            description: p.description,
            version: p.current_version,
            updated_at: time(p.updated_at_ms),
            rules: Vec::new(),
            versions: Vec::new(),
            users,
            groups,
        });
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

/// The administrator's `name = text` values, checked, over `base`.
fn apply_values(
    base: &[PolicyRule],
    set: &BTreeMap<String, String>,
    reset: &[String],
) -> Result<Vec<PolicyRule>, ApiError> {
    let mut values: Vec<(String, rules::RuleValue)> = base
        .iter()
        .filter_map(|r| {
            Some((
                r.name.clone(),
                rules::RuleValue::from_proto(r.value.as_ref()?),
            ))
        })
        .collect();
    for name in reset {
        let spec = rules::spec(name.trim())
            .ok_or_else(|| bad(rules::RuleError::Unknown { name: name.clone() }.to_string()))?;
        values.push((spec.name.to_owned(), spec.default.clone()));
    }
    for (name, text) in set {
        let value = rules::parse(name, text).map_err(|e| bad(e.to_string()))?;
        values.push((name.trim().to_owned(), value));
    }
    let refs: Vec<(&str, rules::RuleValue)> = values
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    Ok(rules::resolve(&refs))
}

#[utoipa::path(
    post, path = "/api/v1/policies", tag = "IT policies", operation_id = "create_policy",
    summary = "Create an IT policy from the defaults, a preset or another policy",
    request_body = NewPolicy,
    responses(
        (status = 201, description = "The policy, created.", body = PolicyView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "The policy or preset to start from does not exist.", body = ApiErrorBody),
        (status = 409, description = "A policy of that name exists.", body = ApiErrorBody),
    )
)]
async fn create_policy(
    State(state): Api,
    axum::Extension(caller): axum::Extension<super::access::Caller>,
    ApiJson(new): ApiJson<NewPolicy>,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    let base = match new.from.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => rules::resolve(&[]),
        Some(from) => match state.store.policy_version(from, None).await? {
            Some(v) => stored_rules(&v)?,
            None => match rules::preset(from) {
                Some(p) => p.rules(),
                None => return Err(no_policy(from)),
            },
        },
    };
    let list = apply_values(&base, &new.rules, &[])?;
    let made = state
        .store
        .create_policy(
            &new.name,
            new.description.as_deref(),
            &rules::to_json(&list),
            Some(caller.account.as_str()),
        )
        .await?;
    tracing::info!(policy = %made.name, "IT policy created");
    Ok((
        StatusCode::CREATED,
        Json(policy_view(&state, &made.name, None).await?),
    ))
}

#[utoipa::path(
    get, path = "/api/v1/policies/{name}", tag = "IT policies", operation_id = "show_policy",
    summary = "One IT policy with its rules and versions",
    params(("name" = String, Path, description = "The IT policy's name.")),
    responses(
        (status = 200, description = "The policy.", body = PolicyView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such IT policy.", body = ApiErrorBody),
    )
)]
async fn show_policy(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PolicyView>, ApiError> {
    Ok(Json(policy_view(&state, &name, None).await?))
}

#[utoipa::path(
    get, path = "/api/v1/policies/{name}/versions/{version}", tag = "IT policies", operation_id = "show_version",
    summary = "One version of an IT policy",
    params(("name" = String, Path, description = "The IT policy's name."), ("version" = u32, Path, description = "The version, from 1.")),
    responses(
        (status = 200, description = "The policy at that version.", body = PolicyView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such IT policy or version.", body = ApiErrorBody),
    )
)]
async fn show_version(
    State(state): Api,
    ApiPath((name, version)): ApiPath<(String, u32)>,
) -> Result<Json<PolicyView>, ApiError> {
    Ok(Json(policy_view(&state, &name, Some(version)).await?))
}

#[utoipa::path(
    patch, path = "/api/v1/policies/{name}", tag = "IT policies", operation_id = "edit_policy",
    summary = "Change an IT policy: a new version when a rule changes",
    params(("name" = String, Path, description = "The IT policy's name.")),
    request_body = PolicyEdit,
    responses(
        (status = 200, description = "The policy now.", body = PolicyView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such IT policy.", body = ApiErrorBody),
        (status = 409, description = "The rules given are the ones the policy has already.", body = ApiErrorBody),
    )
)]
async fn edit_policy(
    State(state): Api,
    axum::Extension(caller): axum::Extension<super::access::Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(edit): ApiJson<PolicyEdit>,
) -> Result<Json<PolicyView>, ApiError> {
    let current = state
        .store
        .policy_version(&name, None)
        .await?
        .ok_or_else(|| no_policy(&name))?;
    if let Some(d) = &edit.description {
        let d = d.trim();
        state
            .store
            .set_policy_description(&current.name, (!d.is_empty()).then_some(d))
            .await?;
    }
    if !edit.rules.is_empty() || !edit.reset.is_empty() {
        let old = stored_rules(&current)?;
        let list = apply_values(&old, &edit.rules, &edit.reset)?;
        if rules::diff(&old, &list).is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_change",
                format!(
                    "IT policy {:?} version {} already has these values; no new version was made",
                    current.name, current.version
                ),
            ));
        }
        let v = state
            .store
            .update_policy(
                &current.name,
                &rules::to_json(&list),
                Some(caller.account.as_str()),
                edit.note.as_deref(),
            )
            .await?;
        tracing::info!(policy = %v.name, version = v.version, "IT policy changed; pushing it to the devices it governs");
        tell_all(&state);
    }
    Ok(Json(policy_view(&state, &current.name, None).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/policies/{name}", tag = "IT policies", operation_id = "delete_policy",
    summary = "Delete an IT policy",
    params(("name" = String, Path, description = "The IT policy's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such IT policy.", body = ApiErrorBody),
        (status = 409, description = "The Default policy cannot be deleted.", body = ApiErrorBody),
    )
)]
async fn delete_policy(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if name.trim().eq_ignore_ascii_case(resolve::DEFAULT_POLICY) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "policy_in_use",
            "the Default IT policy governs every user with no other assignment and cannot be deleted; change its rules instead",
        ));
    }
    if state.store.delete_policy(&name).await? {
        tell_all(&state);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_policy(&name))
    }
}

/// `?from=V1&to=V2`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DiffQuery {
    /// The first version.
    from: u32,
    /// The second version.
    to: u32,
}

#[utoipa::path(
    get, path = "/api/v1/policies/{name}/diff", tag = "IT policies", operation_id = "diff_policy",
    summary = "What changed between two versions of an IT policy",
    params(("name" = String, Path, description = "The IT policy's name."), DiffQuery),
    responses(
        (status = 200, description = "The differences.", body = PolicyDiffView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such IT policy or version.", body = ApiErrorBody),
    )
)]
async fn diff_policy(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> Result<Json<PolicyDiffView>, ApiError> {
    let summary = state
        .store
        .policy(&name)
        .await?
        .ok_or_else(|| no_policy(&name))?;
    let mut lists = Vec::new();
    for v in [q.from, q.to] {
        let version = state
            .store
            .policy_version(&summary.name, Some(v))
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_version",
                    format!(
                        "IT policy {:?} has no version {v}; it has versions 1 to {}",
                        summary.name, summary.current_version
                    ),
                )
            })?;
        lists.push(stored_rules(&version)?);
    }
    let changes = rules::diff(&lists[0], &lists[1])
        .into_iter()
        .map(|c| {
            let (from, to) = match &c {
                rules::RuleChange::Added { value, .. } => (None, Some(value.to_string())),
                rules::RuleChange::Removed { value, .. } => (Some(value.to_string()), None),
                rules::RuleChange::Changed { old, new, .. } => {
                    (Some(old.to_string()), Some(new.to_string()))
                }
            };
            RuleChangeView {
                rule: c.name().to_owned(),
                from,
                to,
                text: c.to_string(),
            }
        })
        .collect();
    Ok(Json(PolicyDiffView {
        name: summary.name,
        from: q.from,
        to: q.to,
        changes,
    }))
}

#[utoipa::path(
    put, path = "/api/v1/users/{email}/policy", tag = "IT policies", operation_id = "assign_user_policy",
    summary = "Assign an IT policy to a user (null removes the assignment)",
    params(("email" = String, Path, description = "The user's email address.")),
    request_body = PolicyAssignment,
    responses(
        (status = 204, description = "Assigned."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such user or IT policy.", body = ApiErrorBody),
    )
)]
async fn assign_user_policy(
    State(state): Api,
    ApiPath(email): ApiPath<String>,
    ApiJson(a): ApiJson<PolicyAssignment>,
) -> Result<StatusCode, ApiError> {
    let policy = a.policy.as_deref().map(str::trim).filter(|s| !s.is_empty());
    state.store.assign_policy_to_user(&email, policy).await?;
    tell_user(&state, &email);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put, path = "/api/v1/groups/{name}/policy", tag = "IT policies", operation_id = "assign_group_policy",
    summary = "Assign an IT policy to a group (null removes the assignment)",
    params(("name" = String, Path, description = "The group's name.")),
    request_body = PolicyAssignment,
    responses(
        (status = 204, description = "Assigned."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such group or IT policy.", body = ApiErrorBody),
    )
)]
async fn assign_group_policy(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
    ApiJson(a): ApiJson<PolicyAssignment>,
) -> Result<StatusCode, ApiError> {
    let policy = a.policy.as_deref().map(str::trim).filter(|s| !s.is_empty());
    state.store.assign_policy_to_group(&name, policy).await?;
    tell_all(&state);
    Ok(StatusCode::NO_CONTENT)
}

// ---- groups

async fn group_view(state: &AdminState, name: &str) -> Result<GroupView, ApiError> {
    let g = state
        .store
        .group(name)
        .await?
        .ok_or_else(|| no_group(name))?;
    let policy = find_assignment(&state.store.policies().await?, state, &g.name).await?;
    let mut software = None;
    for c in state.store.software_configs().await? {
        let (_, groups) = state.store.software_assignees(&c.name).await?;
        if groups.iter().any(|x| x.eq_ignore_ascii_case(&g.name)) {
            software = Some(c.name);
        }
    }
    Ok(GroupView {
        name: g.name,
        description: g.description,
        members: g.members,
        policy,
        software,
        created_at: time(g.created_at_ms),
    })
}

async fn find_assignment(
    policies: &[bramble_store::PolicySummary],
    state: &AdminState,
    group: &str,
) -> Result<Option<String>, ApiError> {
    for p in policies {
        let (_, groups) = state.store.policy_assignees(&p.name).await?;
        if groups.iter().any(|x| x.eq_ignore_ascii_case(group)) {
            return Ok(Some(p.name.clone()));
        }
    }
    Ok(None)
}

#[utoipa::path(
    get, path = "/api/v1/groups", tag = "groups", operation_id = "list_groups",
    summary = "The groups by name, with members and assignments",
    params(Page),
    responses(
        (status = 200, description = "A page of groups (X-Total-Count, Link rel=next).", body = Vec<GroupView>),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
    )
)]
async fn list_groups(
    State(state): Api,
    OriginalUri(uri): OriginalUri,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    let (offset, limit) = page.bounds()?;
    let all = state.store.groups().await?;
    let total = all.len() as u64;
    let mut out = Vec::new();
    for g in all.iter().skip(skip(offset)).take(limit as usize) {
        out.push(group_view(&state, &g.name).await?);
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

#[utoipa::path(
    post, path = "/api/v1/groups", tag = "groups", operation_id = "add_group",
    summary = "Add a group",
    request_body = NewGroup,
    responses(
        (status = 201, description = "The group, added.", body = GroupView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 409, description = "A group of that name exists.", body = ApiErrorBody),
    )
)]
async fn add_group(
    State(state): Api,
    ApiJson(new): ApiJson<NewGroup>,
) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    let g = state
        .store
        .add_group(&new.name, new.description.as_deref())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(group_view(&state, &g.name).await?),
    ))
}

#[utoipa::path(
    get, path = "/api/v1/groups/{name}", tag = "groups", operation_id = "show_group",
    summary = "One group",
    params(("name" = String, Path, description = "The group's name.")),
    responses(
        (status = 200, description = "The group.", body = GroupView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such group.", body = ApiErrorBody),
    )
)]
async fn show_group(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<GroupView>, ApiError> {
    Ok(Json(group_view(&state, &name).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/groups/{name}", tag = "groups", operation_id = "delete_group",
    summary = "Delete a group",
    params(("name" = String, Path, description = "The group's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such group.", body = ApiErrorBody),
    )
)]
async fn delete_group(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_group(&name).await? {
        tell_all(&state);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_group(&name))
    }
}

#[utoipa::path(
    put, path = "/api/v1/groups/{name}/members/{email}", tag = "groups", operation_id = "add_member",
    summary = "Add a user to a group",
    params(("name" = String, Path, description = "The group's name."), ("email" = String, Path, description = "The user's email address.")),
    responses(
        (status = 200, description = "The group now.", body = GroupView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such group or user.", body = ApiErrorBody),
    )
)]
async fn add_member(
    State(state): Api,
    ApiPath((name, email)): ApiPath<(String, String)>,
) -> Result<Json<GroupView>, ApiError> {
    state.store.add_group_member(&name, &email).await?;
    tell_user(&state, &email);
    Ok(Json(group_view(&state, &name).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/groups/{name}/members/{email}", tag = "groups", operation_id = "remove_member",
    summary = "Remove a user from a group",
    params(("name" = String, Path, description = "The group's name."), ("email" = String, Path, description = "The user's email address.")),
    responses(
        (status = 200, description = "The group now.", body = GroupView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such group or user.", body = ApiErrorBody),
    )
)]
async fn remove_member(
    State(state): Api,
    ApiPath((name, email)): ApiPath<(String, String)>,
) -> Result<Json<GroupView>, ApiError> {
    if state.store.group(&name).await?.is_none() {
        return Err(no_group(&name));
    }
    state.store.remove_group_member(&name, &email).await?;
    tell_user(&state, &email);
    Ok(Json(group_view(&state, &name).await?))
}

// ---- commands

#[utoipa::path(
    post, path = "/api/v1/users/{email}/commands", tag = "IT admin commands", operation_id = "add_command",
    summary = "Queue an IT admin command for the user's device",
    params(("email" = String, Path, description = "The user's email address.")),
    request_body = NewCommand,
    responses(
        (status = 202, description = "Queued; the policy service sends it.", body = CommandView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such user.", body = ApiErrorBody),
        (status = 409, description = "The user has no activated device.", body = ApiErrorBody),
    )
)]
async fn add_command(
    State(state): Api,
    axum::Extension(caller): axum::Extension<super::access::Caller>,
    ApiPath(email): ApiPath<String>,
    ApiJson(new): ApiJson<NewCommand>,
) -> Result<(StatusCode, Json<CommandView>), ApiError> {
    let (kind, params) = commands::check(&new).map_err(bad)?;
    let user = state
        .store
        .user(&email)
        .await?
        .ok_or_else(|| ApiError::no_user(&email))?;
    let device = state
        .store
        .device_for_user(&user.email)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no_device",
                format!(
                    "{} has no activated device, so there is nothing to send {kind} to",
                    user.email
                ),
            )
        })?;
    let row = state
        .store
        .add_command(
            &user.email,
            Some(device.pin),
            kind,
            &params.to_json(),
            Some(caller.account.as_str()),
        )
        .await?;
    tracing::info!(command = row.id, %kind, user = %user.email, pin = %Pin(device.pin), "IT admin command queued");
    if let Some(p) = &state.policy {
        p.wake();
    }
    Ok((StatusCode::ACCEPTED, Json(commands::view(row))))
}

/// Which commands to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CommandQuery {
    /// Only this user's.
    #[serde(default)]
    user: Option<String>,
    /// Only those not yet done, failed or cancelled.
    #[serde(default)]
    open: bool,
    /// Items to skip (default 0).
    #[serde(default)]
    offset: Option<u64>,
    /// Items in the page (default 100, at most 1000).
    #[serde(default)]
    limit: Option<u32>,
}

#[utoipa::path(
    get, path = "/api/v1/commands", tag = "IT admin commands", operation_id = "list_commands",
    summary = "IT admin commands, newest first",
    params(CommandQuery),
    responses(
        (status = 200, description = "A page of commands (X-Total-Count, Link rel=next).", body = Vec<CommandView>),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
    )
)]
async fn list_commands(
    State(state): Api,
    OriginalUri(uri): OriginalUri,
    ApiQuery(q): ApiQuery<CommandQuery>,
) -> Result<Response, ApiError> {
    let (offset, limit) = Page {
        offset: q.offset,
        limit: q.limit,
    }
    .bounds()?;
    let (rows, total) = state
        .store
        .commands_page(q.user.as_deref(), q.open, offset, limit)
        .await?;
    let rows = rows.into_iter().map(commands::view).collect();
    Ok(paged_slice(
        rows,
        offset,
        limit,
        total,
        uri.path(),
        uri.query(),
    ))
}

fn no_command(id: i64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_command",
        format!("no IT admin command {id}; `bramble admin command list` shows them"),
    )
}

#[utoipa::path(
    get, path = "/api/v1/commands/{id}", tag = "IT admin commands", operation_id = "show_command",
    summary = "One IT admin command and its receipt",
    params(("id" = i64, Path, description = "The command's number.")),
    responses(
        (status = 200, description = "The command.", body = CommandView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such command.", body = ApiErrorBody),
    )
)]
async fn show_command(
    State(state): Api,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CommandView>, ApiError> {
    let row = state
        .store
        .command(id)
        .await?
        .ok_or_else(|| no_command(id))?;
    Ok(Json(commands::view(row)))
}

#[utoipa::path(
    post, path = "/api/v1/commands/{id}/cancel", tag = "IT admin commands", operation_id = "cancel_command",
    summary = "Cancel an IT admin command not yet sent",
    params(("id" = i64, Path, description = "The command's number.")),
    responses(
        (status = 200, description = "The command, cancelled.", body = CommandView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such command.", body = ApiErrorBody),
        (status = 409, description = "The command was sent already.", body = ApiErrorBody),
    )
)]
async fn cancel_command(
    State(state): Api,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CommandView>, ApiError> {
    let row = state
        .store
        .command(id)
        .await?
        .ok_or_else(|| no_command(id))?;
    if row.state != "queued" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "command_not_queued",
            format!(
                "command {id} is {} and can no longer be cancelled: only a command not yet sent to the device can",
                row.state
            ),
        ));
    }
    state
        .store
        .set_command_state(
            id,
            "cancelled",
            Some("cancelled by an administrator before it was sent"),
        )
        .await?;
    let row = state
        .store
        .command(id)
        .await?
        .ok_or_else(|| no_command(id))?;
    Ok(Json(commands::view(row)))
}

// ---- software

fn package_view(p: bramble_store::Package) -> PackageView {
    PackageView {
        name: p.name,
        version: p.version,
        size: p.size,
        sha256: hex::encode(&p.sha256),
        uploaded_at: time(p.uploaded_at_ms),
    }
}

#[utoipa::path(
    get, path = "/api/v1/software/packages", tag = "software", operation_id = "list_packages",
    summary = "The application repository",
    params(Page),
    responses(
        (status = 200, description = "A page of packages (X-Total-Count, Link rel=next).", body = Vec<PackageView>),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
    )
)]
async fn list_packages(
    State(state): Api,
    OriginalUri(uri): OriginalUri,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    let list = state
        .store
        .packages()
        .await?
        .into_iter()
        .map(package_view)
        .collect();
    Ok(paged(list, &page, uri.path(), uri.query()))
}

/// The package's name and version.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// The application's name.
    name: String,
    /// Its version.
    version: String,
}

#[utoipa::path(
    post, path = "/api/v1/software/packages", tag = "software", operation_id = "upload_package",
    summary = "Upload an application package (the file is the request body)",
    params(UploadQuery),
    request_body(content = super::openapi::PackageFile, content_type = "application/octet-stream", description = "The package file, as it is (any content type is taken), 1 byte to the repository's limit."),
    responses(
        (status = 201, description = "The package, stored.", body = PackageView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 409, description = "That version of the application is in the repository already.", body = ApiErrorBody),
        (status = 413, description = "The package is larger than the repository takes.", body = ApiErrorBody),
    )
)]
async fn upload_package(
    State(state): Api,
    axum::Extension(caller): axum::Extension<super::access::Caller>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<PackageView>), ApiError> {
    if body.is_empty() {
        return Err(bad(
            "the package is empty: send the file as the request body",
        ));
    }
    if body.len() > software::MAX_PACKAGE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "a package may have at most {} MiB",
                software::MAX_PACKAGE / (1024 * 1024)
            ),
        ));
    }
    let sha = ring::digest::digest(&ring::digest::SHA256, &body);
    let p = state
        .store
        .add_package(
            &q.name,
            &q.version,
            &body,
            sha.as_ref(),
            Some(caller.account.as_str()),
        )
        .await?;
    tracing::info!(package = %p.name, version = %p.version, size = p.size, "application package uploaded");
    Ok((StatusCode::CREATED, Json(package_view(p))))
}

#[utoipa::path(
    delete, path = "/api/v1/software/packages/{name}/{version}", tag = "software", operation_id = "delete_package",
    summary = "Remove a package from the application repository",
    params(("name" = String, Path, description = "The application's name."), ("version" = String, Path, description = "Its version.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such package.", body = ApiErrorBody),
    )
)]
async fn delete_package(
    State(state): Api,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_package(&name, &version).await? {
        tell_all(&state);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_package",
            format!("no package {name} {version} in the application repository"),
        ))
    }
}

async fn config_view(state: &AdminState, name: &str) -> Result<SoftwareConfigView, ApiError> {
    let c = state
        .store
        .software_config(name)
        .await?
        .ok_or_else(|| no_config(name))?;
    let (users, groups) = state.store.software_assignees(&c.name).await?;
    Ok(SoftwareConfigView {
        name: c.name,
        allow_unlisted: c.allow_unlisted,
        apps: c
            .apps
            .into_iter()
            .map(|a| ConfigAppView {
                name: a.name,
                version: a.version,
                disposition: a.disposition,
            })
            .collect(),
        users,
        groups,
        updated_at: time(c.updated_at_ms),
    })
}

#[utoipa::path(
    get, path = "/api/v1/software/configs", tag = "software", operation_id = "list_configs",
    summary = "The software configurations by name",
    params(Page),
    responses(
        (status = 200, description = "A page of configurations (X-Total-Count, Link rel=next).", body = Vec<SoftwareConfigView>),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
    )
)]
async fn list_configs(
    State(state): Api,
    OriginalUri(uri): OriginalUri,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    let (offset, limit) = page.bounds()?;
    let all = state.store.software_configs().await?;
    let total = all.len() as u64;
    let mut out = Vec::new();
    for c in all.iter().skip(skip(offset)).take(limit as usize) {
        out.push(config_view(&state, &c.name).await?);
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

#[utoipa::path(
    post, path = "/api/v1/software/configs", tag = "software", operation_id = "create_config",
    summary = "Create a software configuration",
    request_body = NewSoftwareConfig,
    responses(
        (status = 201, description = "The configuration, created.", body = SoftwareConfigView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 409, description = "A configuration of that name exists.", body = ApiErrorBody),
    )
)]
async fn create_config(
    State(state): Api,
    ApiJson(new): ApiJson<NewSoftwareConfig>,
) -> Result<(StatusCode, Json<SoftwareConfigView>), ApiError> {
    let c = state
        .store
        .create_software_config(&new.name, new.allow_unlisted)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(config_view(&state, &c.name).await?),
    ))
}

#[utoipa::path(
    get, path = "/api/v1/software/configs/{name}", tag = "software", operation_id = "show_config",
    summary = "One software configuration",
    params(("name" = String, Path, description = "The software configuration's name.")),
    responses(
        (status = 200, description = "The configuration.", body = SoftwareConfigView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such software configuration.", body = ApiErrorBody),
    )
)]
async fn show_config(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SoftwareConfigView>, ApiError> {
    Ok(Json(config_view(&state, &name).await?))
}

#[utoipa::path(
    patch, path = "/api/v1/software/configs/{name}", tag = "software", operation_id = "edit_config",
    summary = "Change a software configuration",
    params(("name" = String, Path, description = "The software configuration's name.")),
    request_body = SoftwareConfigEdit,
    responses(
        (status = 200, description = "The configuration now.", body = SoftwareConfigView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such software configuration.", body = ApiErrorBody),
    )
)]
async fn edit_config(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
    ApiJson(edit): ApiJson<SoftwareConfigEdit>,
) -> Result<Json<SoftwareConfigView>, ApiError> {
    if let Some(allow) = edit.allow_unlisted {
        state
            .store
            .set_software_allow_unlisted(&name, allow)
            .await?;
        tell_all(&state);
    }
    Ok(Json(config_view(&state, &name).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/software/configs/{name}", tag = "software", operation_id = "delete_config",
    summary = "Delete a software configuration",
    params(("name" = String, Path, description = "The software configuration's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such software configuration.", body = ApiErrorBody),
    )
)]
async fn delete_config(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_software_config(&name).await? {
        // its users and groups no longer have it: their devices are told what that means
        tell_all(&state);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_config(&name))
    }
}

#[utoipa::path(
    put, path = "/api/v1/software/configs/{name}/apps/{app}", tag = "software", operation_id = "set_config_app",
    summary = "Set how a software configuration treats an application",
    params(("name" = String, Path, description = "The software configuration's name."), ("app" = String, Path, description = "The application's name.")),
    request_body = ConfigAppEdit,
    responses(
        (status = 200, description = "The configuration now.", body = SoftwareConfigView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such configuration or package.", body = ApiErrorBody),
    )
)]
async fn set_config_app(
    State(state): Api,
    ApiPath((name, app)): ApiPath<(String, String)>,
    ApiJson(edit): ApiJson<ConfigAppEdit>,
) -> Result<Json<SoftwareConfigView>, ApiError> {
    let disposition = edit
        .disposition
        .trim()
        .to_ascii_lowercase()
        .replace('_', "-");
    if !bramble_store::DISPOSITIONS.contains(&disposition.as_str()) {
        return Err(bad(format!(
            "{:?} is not a disposition; use required, optional or not-permitted",
            edit.disposition
        )));
    }
    let version = edit
        .version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty());
    if disposition != "not-permitted" && version.is_none() {
        return Err(bad(format!(
            "a {disposition} application needs the version to deploy (a package in the repository)"
        )));
    }
    state
        .store
        .set_software_config_app(&name, &app, version, &disposition)
        .await?;
    tell_all(&state);
    Ok(Json(config_view(&state, &name).await?))
}

#[utoipa::path(
    delete, path = "/api/v1/software/configs/{name}/apps/{app}", tag = "software", operation_id = "remove_config_app",
    summary = "Remove an application from a software configuration",
    params(("name" = String, Path, description = "The software configuration's name."), ("app" = String, Path, description = "The application's name.")),
    responses(
        (status = 200, description = "The configuration now.", body = SoftwareConfigView),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such software configuration.", body = ApiErrorBody),
    )
)]
async fn remove_config_app(
    State(state): Api,
    ApiPath((name, app)): ApiPath<(String, String)>,
) -> Result<Json<SoftwareConfigView>, ApiError> {
    state.store.remove_software_config_app(&name, &app).await?;
    tell_all(&state);
    Ok(Json(config_view(&state, &name).await?))
}

#[utoipa::path(
    put, path = "/api/v1/users/{email}/software", tag = "software", operation_id = "assign_user_software",
    summary = "Assign a software configuration to a user (null removes the assignment)",
    params(("email" = String, Path, description = "The user's email address.")),
    request_body = SoftwareAssignment,
    responses(
        (status = 204, description = "Assigned."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such user or configuration.", body = ApiErrorBody),
    )
)]
async fn assign_user_software(
    State(state): Api,
    ApiPath(email): ApiPath<String>,
    ApiJson(a): ApiJson<SoftwareAssignment>,
) -> Result<StatusCode, ApiError> {
    let config = a.config.as_deref().map(str::trim).filter(|s| !s.is_empty());
    state.store.assign_software_to_user(&email, config).await?;
    tell_user(&state, &email);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put, path = "/api/v1/groups/{name}/software", tag = "software", operation_id = "assign_group_software",
    summary = "Assign a software configuration to a group (null removes the assignment)",
    params(("name" = String, Path, description = "The group's name.")),
    request_body = SoftwareAssignment,
    responses(
        (status = 204, description = "Assigned."),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
        (status = 404, description = "No such group or configuration.", body = ApiErrorBody),
    )
)]
async fn assign_group_software(
    State(state): Api,
    ApiPath(name): ApiPath<String>,
    ApiJson(a): ApiJson<SoftwareAssignment>,
) -> Result<StatusCode, ApiError> {
    let config = a.config.as_deref().map(str::trim).filter(|s| !s.is_empty());
    state.store.assign_software_to_group(&name, config).await?;
    tell_all(&state);
    Ok(StatusCode::NO_CONTENT)
}

/// Which jobs to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct JobQuery {
    /// Only this user's.
    #[serde(default)]
    user: Option<String>,
    /// Items to skip (default 0).
    #[serde(default)]
    offset: Option<u64>,
    /// Items in the page (default 100, at most 1000).
    #[serde(default)]
    limit: Option<u32>,
}

#[utoipa::path(
    get, path = "/api/v1/software/jobs", tag = "software", operation_id = "list_jobs",
    summary = "Software deployment jobs, newest first",
    params(JobQuery),
    responses(
        (status = 200, description = "A page of jobs (X-Total-Count, Link rel=next).", body = Vec<JobView>),
        (status = 400, description = "The request is malformed or a value is refused.", body = ApiErrorBody),
        (status = 401, description = "No valid administration token.", body = ApiErrorBody),
    )
)]
async fn list_jobs(
    State(state): Api,
    OriginalUri(uri): OriginalUri,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> Result<Response, ApiError> {
    let (offset, limit) = Page {
        offset: q.offset,
        limit: q.limit,
    }
    .bounds()?;
    let (jobs, total) = state
        .store
        .software_jobs_page(q.user.as_deref(), offset, limit)
        .await?;
    let jobs = jobs.into_iter().map(software::job_view).collect();
    Ok(paged_slice(
        jobs,
        offset,
        limit,
        total,
        uri.path(),
        uri.query(),
    ))
}

// ---- the user page's policy service parts

/// Fills `groups`, `policy` and `software` of a user's view.
pub(super) async fn user_extras(
    state: &AdminState,
    v: &mut super::UserView,
) -> Result<(), ApiError> {
    v.groups = state.store.groups_of_user(&v.email).await?;
    let r = resolve::resolve_user(&state.store, &v.email).await?;
    let mut device = None;
    if let Some(d) = state.store.device_for_user(&v.email).await?
        && let Some(s) = state.store.device_policy(d.pin).await?
    {
        device = Some(DevicePolicyView {
            pin: Pin(s.pin).to_string(),
            policy: s.policy_name,
            version: s.version,
            sent_at: time(s.sent_at_ms),
            send_count: s.send_count,
            applied: s.applied,
            applied_at: s.applied_at_ms.map(time),
            compliant: s.applied && s.problems.is_empty(),
            problems: s.problems,
        });
    }
    v.policy = Some(UserPolicyView {
        policy: r.name,
        version: r.version,
        source: r.source,
        trace: r.trace,
        device,
    });
    if let Some((config, source)) = software::desired(&state.store, &v.email).await? {
        let mut job = None;
        if let Some(d) = state.store.device_for_user(&v.email).await? {
            job = state
                .store
                .latest_software_job(d.pin)
                .await?
                .map(software::job_view);
        }
        v.software = Some(UserSoftwareView {
            config,
            source,
            job,
        });
    }
    Ok(())
}
