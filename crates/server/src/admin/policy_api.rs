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
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use bramble_proto::Pin;
use bramble_proto::schema::PolicyRule;
use bramble_store::{PolicyVersion, StoreError};
use serde::Deserialize;

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

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

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

async fn list_policies(State(state): Api) -> Result<Json<Vec<PolicyView>>, ApiError> {
    let mut out = Vec::new();
    for p in state.store.policies().await? {
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
    Ok(Json(out))
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

async fn create_policy(
    State(state): Api,
    Json(new): Json<NewPolicy>,
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
            Some("administrator"),
        )
        .await?;
    tracing::info!(policy = %made.name, "IT policy created");
    Ok((
        StatusCode::CREATED,
        Json(policy_view(&state, &made.name, None).await?),
    ))
}

async fn show_policy(
    State(state): Api,
    Path(name): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    Ok(Json(policy_view(&state, &name, None).await?))
}

async fn show_version(
    State(state): Api,
    Path((name, version)): Path<(String, u32)>,
) -> Result<Json<PolicyView>, ApiError> {
    Ok(Json(policy_view(&state, &name, Some(version)).await?))
}

async fn edit_policy(
    State(state): Api,
    Path(name): Path<String>,
    Json(edit): Json<PolicyEdit>,
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
                Some("administrator"),
                edit.note.as_deref(),
            )
            .await?;
        tracing::info!(policy = %v.name, version = v.version, "IT policy changed; pushing it to the devices it governs");
        tell_all(&state);
    }
    Ok(Json(policy_view(&state, &current.name, None).await?))
}

async fn delete_policy(
    State(state): Api,
    Path(name): Path<String>,
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

#[derive(Deserialize)]
struct DiffQuery {
    from: u32,
    to: u32,
}

async fn diff_policy(
    State(state): Api,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
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

async fn assign_user_policy(
    State(state): Api,
    Path(email): Path<String>,
    Json(a): Json<PolicyAssignment>,
) -> Result<StatusCode, ApiError> {
    let policy = a.policy.as_deref().map(str::trim).filter(|s| !s.is_empty());
    state.store.assign_policy_to_user(&email, policy).await?;
    tell_user(&state, &email);
    Ok(StatusCode::NO_CONTENT)
}

async fn assign_group_policy(
    State(state): Api,
    Path(name): Path<String>,
    Json(a): Json<PolicyAssignment>,
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

async fn list_groups(State(state): Api) -> Result<Json<Vec<GroupView>>, ApiError> {
    let mut out = Vec::new();
    for g in state.store.groups().await? {
        out.push(group_view(&state, &g.name).await?);
    }
    Ok(Json(out))
}

async fn add_group(
    State(state): Api,
    Json(new): Json<NewGroup>,
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

async fn show_group(
    State(state): Api,
    Path(name): Path<String>,
) -> Result<Json<GroupView>, ApiError> {
    Ok(Json(group_view(&state, &name).await?))
}

async fn delete_group(State(state): Api, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if state.store.delete_group(&name).await? {
        tell_all(&state);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_group(&name))
    }
}

async fn add_member(
    State(state): Api,
    Path((name, email)): Path<(String, String)>,
) -> Result<Json<GroupView>, ApiError> {
    state.store.add_group_member(&name, &email).await?;
    tell_user(&state, &email);
    Ok(Json(group_view(&state, &name).await?))
}

async fn remove_member(
    State(state): Api,
    Path((name, email)): Path<(String, String)>,
) -> Result<Json<GroupView>, ApiError> {
    if state.store.group(&name).await?.is_none() {
        return Err(no_group(&name));
    }
    state.store.remove_group_member(&name, &email).await?;
    tell_user(&state, &email);
    Ok(Json(group_view(&state, &name).await?))
}

// ---- commands

async fn add_command(
    State(state): Api,
    Path(email): Path<String>,
    Json(new): Json<NewCommand>,
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
            Some("administrator"),
        )
        .await?;
    tracing::info!(command = row.id, %kind, user = %user.email, pin = %Pin(device.pin), "IT admin command queued");
    if let Some(p) = &state.policy {
        p.wake();
    }
    Ok((StatusCode::ACCEPTED, Json(commands::view(row))))
}

#[derive(Deserialize)]
struct CommandQuery {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    open: bool,
    #[serde(default)]
    limit: Option<u32>,
}

async fn list_commands(
    State(state): Api,
    Query(q): Query<CommandQuery>,
) -> Result<Json<Vec<CommandView>>, ApiError> {
    let rows = state
        .store
        .commands(q.user.as_deref(), q.open, q.limit.unwrap_or(100).min(1000))
        .await?;
    Ok(Json(rows.into_iter().map(commands::view).collect()))
}

fn no_command(id: i64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_command",
        format!("no IT admin command {id}; `bramble admin command list` shows them"),
    )
}

async fn show_command(
    State(state): Api,
    Path(id): Path<i64>,
) -> Result<Json<CommandView>, ApiError> {
    let row = state
        .store
        .command(id)
        .await?
        .ok_or_else(|| no_command(id))?;
    Ok(Json(commands::view(row)))
}

async fn cancel_command(
    State(state): Api,
    Path(id): Path<i64>,
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

async fn list_packages(State(state): Api) -> Result<Json<Vec<PackageView>>, ApiError> {
    Ok(Json(
        state
            .store
            .packages()
            .await?
            .into_iter()
            .map(package_view)
            .collect(),
    ))
}

#[derive(Deserialize)]
struct UploadQuery {
    name: String,
    version: String,
}

async fn upload_package(
    State(state): Api,
    Query(q): Query<UploadQuery>,
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
            Some("administrator"),
        )
        .await?;
    tracing::info!(package = %p.name, version = %p.version, size = p.size, "application package uploaded");
    Ok((StatusCode::CREATED, Json(package_view(p))))
}

async fn delete_package(
    State(state): Api,
    Path((name, version)): Path<(String, String)>,
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

async fn list_configs(State(state): Api) -> Result<Json<Vec<SoftwareConfigView>>, ApiError> {
    let mut out = Vec::new();
    for c in state.store.software_configs().await? {
        out.push(config_view(&state, &c.name).await?);
    }
    Ok(Json(out))
}

async fn create_config(
    State(state): Api,
    Json(new): Json<NewSoftwareConfig>,
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

async fn show_config(
    State(state): Api,
    Path(name): Path<String>,
) -> Result<Json<SoftwareConfigView>, ApiError> {
    Ok(Json(config_view(&state, &name).await?))
}

async fn edit_config(
    State(state): Api,
    Path(name): Path<String>,
    Json(edit): Json<SoftwareConfigEdit>,
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

async fn delete_config(
    State(state): Api,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_software_config(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_config(&name))
    }
}

async fn set_config_app(
    State(state): Api,
    Path((name, app)): Path<(String, String)>,
    Json(edit): Json<ConfigAppEdit>,
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

async fn remove_config_app(
    State(state): Api,
    Path((name, app)): Path<(String, String)>,
) -> Result<Json<SoftwareConfigView>, ApiError> {
    state.store.remove_software_config_app(&name, &app).await?;
    tell_all(&state);
    Ok(Json(config_view(&state, &name).await?))
}

async fn assign_user_software(
    State(state): Api,
    Path(email): Path<String>,
    Json(a): Json<SoftwareAssignment>,
) -> Result<StatusCode, ApiError> {
    let config = a.config.as_deref().map(str::trim).filter(|s| !s.is_empty());
    state.store.assign_software_to_user(&email, config).await?;
    tell_user(&state, &email);
    Ok(StatusCode::NO_CONTENT)
}

async fn assign_group_software(
    State(state): Api,
    Path(name): Path<String>,
    Json(a): Json<SoftwareAssignment>,
) -> Result<StatusCode, ApiError> {
    let config = a.config.as_deref().map(str::trim).filter(|s| !s.is_empty());
    state.store.assign_software_to_group(&name, config).await?;
    tell_all(&state);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct JobQuery {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

async fn list_jobs(
    State(state): Api,
    Query(q): Query<JobQuery>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let jobs = state
        .store
        .software_jobs(q.user.as_deref(), q.limit.unwrap_or(100).min(1000))
        .await?;
    Ok(Json(jobs.into_iter().map(software::job_view).collect()))
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
