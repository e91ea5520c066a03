//! The web console: small server-rendered pages under `/console` for the administrators who
//! ran BES's BlackBerry Administration Service: dashboard, users, groups, IT policies, software
//! configurations (each with its applications), administrators and roles, the audit log, and
//! each administrator's own API tokens.
//!
//! The console is one more client of the administration API. Each page reads what it shows
//! from `/api/v1` itself, in process, with the administrator's session cookie; each form and
//! button calls `/api/v1` from the browser (`static/console.js`, the one small script). So who
//! may see and change what, and what goes to the audit log, is decided in one place:
//! [`super::access::guard`]. A page asks the API for [`super::access_api::MeView`] first, to
//! show only what the administrator's roles allow.
//!
//! Owns: the pages' HTML (`templates/`), the stylesheet and the script (`static/`).
//! Must not touch: the store, permissions, the audit log (all through the API).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use askama::Template;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use super::access_api::{AccountView, AuditView, MeView, PermissionView, RoleView, TokenView};
use super::api::{StatusView, UserView};
use super::views::{
    COMMAND_KINDS, CommandView, GroupView, JobView, PackageView, PolicyDiffView, PolicyView,
    PresetView, RuleView, SoftwareConfigView,
};

/// The largest API answer a page reads (the audit log's pages are the largest).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Audit entries on one page of the console.
const AUDIT_PAGE: u32 = 100;

/// Characters left alone in a path segment: what RFC 3986 calls unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// BES's user statuses, in the order a user goes through them.
const STATUSES: [&str; 7] = [
    "Initializing",
    "Activating",
    "Verifying Encryption",
    "Waiting for Services",
    "Services Received",
    "Completed",
    "Failed",
];

/// The console's routes; `api` is the administration API they read from.
pub(crate) fn routes(api: Router) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(dashboard))
        .route("/console/login", get(login))
        .route("/console/static/console.css", get(css))
        .route("/console/static/console.js", get(js))
        .route("/console/users", get(users))
        .route("/console/users/{email}", get(user))
        .route("/console/groups", get(groups))
        .route("/console/groups/{name}", get(group))
        .route("/console/policies", get(policies))
        .route("/console/policies/{name}", get(policy))
        .route("/console/software", get(software))
        .route("/console/software/{name}", get(software_config))
        .route("/console/admins", get(admins))
        .route("/console/tokens", get(tokens))
        .route("/console/audit", get(audit))
        .with_state(Console { api })
}

#[derive(Clone, Debug)]
struct Console {
    api: Router,
}

// ---- reading the API

/// The administration API, as the administrator behind this request.
struct Api {
    api: Router,
    cookie: Option<HeaderValue>,
    peer: Option<ConnectInfo<SocketAddr>>,
}

impl FromRequestParts<Console> for Api {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &Console) -> Result<Api, Infallible> {
        Ok(Api {
            api: state.api.clone(),
            cookie: parts.headers.get(header::COOKIE).cloned(),
            peer: parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned(),
        })
    }
}

/// Why a page cannot be shown.
#[derive(Debug)]
enum PageError {
    /// No session (or it ended): to the login page.
    SignedOut,
    /// The API answered with an error, in its words.
    Api(StatusCode, String),
}

#[derive(Deserialize)]
struct ErrorDoc {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    message: String,
}

impl Api {
    async fn call(&self, path: &str) -> Result<(HeaderMap, Bytes), PageError> {
        let mut req = Request::get(format!("/api/v1{path}"))
            .body(Body::empty())
            .map_err(|e| PageError::Api(StatusCode::BAD_REQUEST, e.to_string()))?;
        if let Some(c) = &self.cookie {
            req.headers_mut().insert(header::COOKIE, c.clone());
        }
        if let Some(p) = self.peer {
            req.extensions_mut().insert(p);
        }
        let resp = match self.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
            .await
            .map_err(|e| PageError::Api(StatusCode::BAD_GATEWAY, e.to_string()))?;
        if status.is_success() {
            return Ok((headers, body));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(PageError::SignedOut);
        }
        let message = serde_json::from_slice::<ErrorDoc>(&body)
            .map(|d| d.error.message)
            .unwrap_or_else(|_| status.to_string());
        Err(PageError::Api(status, message))
    }

    /// `GET /api/v1{path}`, read as `T`.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, PageError> {
        let (_, body) = self.call(path).await?;
        serde_json::from_slice(&body).map_err(|e| {
            PageError::Api(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the API's answer to {path} was not understood: {e}"),
            )
        })
    }

    /// The same, with the total of a paged list (`X-Total-Count`).
    async fn page<T: DeserializeOwned>(&self, path: &str) -> Result<(Vec<T>, u64), PageError> {
        let (headers, body) = self.call(path).await?;
        let items: Vec<T> = serde_json::from_slice(&body).map_err(|e| {
            PageError::Api(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the API's answer to {path} was not understood: {e}"),
            )
        })?;
        let total = headers
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(items.len() as u64);
        Ok((items, total))
    }

    /// The same, or nothing when the administrator may not see it (a part of a page).
    async fn get_if<T: DeserializeOwned>(
        &self,
        allowed: bool,
        path: &str,
    ) -> Result<Option<T>, PageError> {
        if !allowed {
            return Ok(None);
        }
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(PageError::Api(StatusCode::FORBIDDEN, _)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Who is asking: the frame of every page.
    async fn shell(&self, here: &'static str) -> Result<Shell, PageError> {
        let me: MeView = self.get("/me").await?;
        Ok(Shell {
            account: me.account,
            via: me.via,
            permissions: me.permissions,
            here,
        })
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignedOut => Redirect::to("/console/login").into_response(),
            PageError::Api(status, message) => {
                let title = match status {
                    StatusCode::FORBIDDEN => "Not allowed",
                    StatusCode::NOT_FOUND => "Not found",
                    s if s.is_client_error() => "Not understood",
                    _ => "Something went wrong",
                };
                let page = ErrorPage {
                    title,
                    message,
                    status: status.as_u16(),
                };
                (status, render(&page)).into_response()
            }
        }
    }
}

fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "this console page could not be rendered; the server's log says why",
            )
                .into_response()
        }
    }
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

// ---- what every page shows

/// The frame of a page: who is signed in, what they may do, where they are.
#[derive(Debug)]
pub(crate) struct Shell {
    account: String,
    via: String,
    permissions: Vec<String>,
    here: &'static str,
}

impl Shell {
    /// Whether the administrator holds the permission (`user.create`).
    pub(crate) fn can(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }

    /// Whether the administrator may see a section (any `.view` of it).
    pub(crate) fn sees(&self, section: &str) -> bool {
        match section {
            "dashboard" => true,
            "users" => self.can("user.view"),
            "groups" => self.can("group.view"),
            "policies" => self.can("policy.view"),
            "software" => self.can("software.view"),
            "admins" => self.can("role.view"),
            "audit" => self.can("audit.view"),
            "tokens" => true,
            _ => false,
        }
    }

    /// `class="here"` for the current section's link.
    pub(crate) fn here_class(&self, section: &str) -> &'static str {
        if self.here == section { "here" } else { "" }
    }

    /// An RFC 3339 time as a person reads it: `2026-12-02 18:04 UTC`.
    pub(crate) fn when(&self, rfc3339: &str) -> String {
        when(rfc3339)
    }

    /// The badge colour of a BES status or a result.
    pub(crate) fn badge(&self, status: &str) -> &'static str {
        match status {
            "Completed" | "success" | "done" | "Up" | "up" | "running" | "applied"
            | "installed" => "ok",
            "Failed" | "failed" | "denied" | "Down" | "down" | "stopped" | "expired" => "bad",
            "Initializing" | "cancelled" => "",
            _ => "warn",
        }
    }

    /// A path segment, percent-encoded.
    pub(crate) fn seg(&self, s: &str) -> String {
        seg(s)
    }

    /// Whether the administrator may delete this account from the console: not their own,
    /// and not the server's own `admin` (the API refuses both; the button is not offered).
    pub(crate) fn may_delete_account(&self, name: &str) -> bool {
        !name.eq_ignore_ascii_case(&self.account)
            && !name.eq_ignore_ascii_case(super::access::OWNER_ACCOUNT)
    }
}

fn when(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_owned())
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: &'static str,
    message: String,
    status: u16,
}

// ---- static files

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../static/console.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../static/console.js"),
    )
}

// ---- login

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage;

async fn login() -> Response {
    render(&LoginPage)
}

// ---- dashboard

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    shell: Shell,
    status: Option<StatusView>,
    by_status: Vec<(&'static str, u64)>,
    users: Option<u64>,
    /// The first page of commands not finished, and how many there are.
    open_commands: Option<(Vec<CommandView>, u64)>,
}

async fn dashboard(api: Api) -> Result<Response, PageError> {
    let shell = api.shell("dashboard").await?;
    let status: Option<StatusView> = api.get_if(shell.can("server.view"), "/status").await?;
    let mut by_status = Vec::new();
    let mut users = None;
    let mut open_commands = None;
    if shell.can("user.view") {
        for s in STATUSES {
            let path = format!("/users?limit=1&status={}", seg(s));
            by_status.push((s, api.page::<UserView>(&path).await?.1));
        }
        users = Some(api.page::<UserView>("/users?limit=1").await?.1);
        open_commands = Some(api.page("/commands?open=true&limit=50").await?);
    }
    Ok(render(&DashboardPage {
        shell,
        status,
        by_status,
        users,
        open_commands,
    }))
}

// ---- users

/// Users on one page of the console.
const USERS_PAGE: u32 = 100;

#[derive(Deserialize)]
struct UsersQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    offset: Option<u64>,
    /// A search of the company directory.
    #[serde(default)]
    dq: Option<String>,
}

/// The "Add from the directory" panel of the users page.
struct DirectoryPanel {
    /// The search text.
    dq: String,
    /// Whether a search was made.
    searched: bool,
    found: Vec<super::directory_api::DirectoryEntryView>,
    more: bool,
    /// Why the search failed, in the API's words.
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    shell: Shell,
    users: Vec<UserView>,
    total: u64,
    offset: u64,
    next: Option<String>,
    previous: Option<String>,
    q: String,
    status: String,
    statuses: [&'static str; 7],
    /// Present when a directory is configured and the administrator may add users.
    directory: Option<DirectoryPanel>,
}

/// The directory panel, when there is a directory and the administrator may add users.
async fn directory_panel(
    api: &Api,
    shell: &Shell,
    dq: Option<String>,
) -> Result<Option<DirectoryPanel>, PageError> {
    if !shell.can("user.create") {
        return Ok(None);
    }
    let d: super::directory_api::DirectoryView = api.get("/directory").await?;
    if !d.configured {
        return Ok(None);
    }
    let mut panel = DirectoryPanel {
        dq: dq.clone().unwrap_or_default().trim().to_owned(),
        searched: dq.is_some(),
        found: Vec::new(),
        more: false,
        error: None,
    };
    if panel.searched {
        let path = format!(
            "/directory/search?{}",
            serde_urlencoded::to_string([("q", panel.dq.as_str()), ("limit", "50")])
                .unwrap_or_default()
        );
        match api.call(&path).await {
            Ok((headers, body)) => {
                panel.more = headers
                    .get("x-more-results")
                    .is_some_and(|v| v.as_bytes() == b"true");
                match serde_json::from_slice(&body) {
                    Ok(found) => panel.found = found,
                    Err(e) => {
                        panel.error = Some(format!("the directory's answer is unreadable: {e}"))
                    }
                }
            }
            // the directory being down is shown on the page, the users below it still are
            Err(PageError::Api(_, message)) => panel.error = Some(message),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(panel))
}

async fn users(api: Api, Query(query): Query<UsersQuery>) -> Result<Response, PageError> {
    let shell = api.shell("users").await?;
    let q = query.q.unwrap_or_default().trim().to_owned();
    let status = query.status.unwrap_or_default();
    let filter = serde_urlencoded::to_string([("q", q.as_str()), ("status", status.as_str())])
        .unwrap_or_default();
    let offset = query.offset.unwrap_or(0);
    let (users, total) = api
        .page(&format!(
            "/users?{filter}&offset={offset}&limit={USERS_PAGE}"
        ))
        .await?;
    let directory = directory_panel(&api, &shell, query.dq).await?;
    let step = u64::from(USERS_PAGE);
    let at = |o: u64| format!("/console/users?{filter}&offset={o}");
    Ok(render(&UsersPage {
        shell,
        users,
        total,
        offset,
        next: (offset + step < total).then(|| at(offset + step)),
        previous: (offset > 0).then(|| at(offset.saturating_sub(step))),
        q,
        status,
        statuses: STATUSES,
        directory,
    }))
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    shell: Shell,
    u: UserView,
    commands: Vec<CommandView>,
    kinds: &'static [&'static str],
    policies: Vec<String>,
    configs: Vec<String>,
}

async fn user(api: Api, Path(email): Path<String>) -> Result<Response, PageError> {
    let shell = api.shell("users").await?;
    let u: UserView = api.get(&format!("/users/{}", seg(&email))).await?;
    let commands: Vec<CommandView> = api
        .get_if(true, &format!("/commands?user={}&limit=50", seg(&u.email)))
        .await?
        .unwrap_or_default();
    let policies: Vec<PolicyView> = api
        .get_if(shell.can("policy.edit"), "/policies?limit=1000")
        .await?
        .unwrap_or_default();
    let configs: Vec<SoftwareConfigView> = api
        .get_if(shell.can("software.edit"), "/software/configs?limit=1000")
        .await?
        .unwrap_or_default();
    Ok(render(&UserPage {
        shell,
        u,
        commands,
        kinds: &COMMAND_KINDS,
        policies: policies.into_iter().map(|p| p.name).collect(),
        configs: configs.into_iter().map(|c| c.name).collect(),
    }))
}

// ---- groups

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    shell: Shell,
    groups: Vec<GroupView>,
}

async fn groups(api: Api) -> Result<Response, PageError> {
    let shell = api.shell("groups").await?;
    let groups = api.get("/groups?limit=1000").await?;
    Ok(render(&GroupsPage { shell, groups }))
}

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage {
    shell: Shell,
    g: GroupView,
    policies: Vec<String>,
    configs: Vec<String>,
    candidates: Vec<String>,
}

async fn group(api: Api, Path(name): Path<String>) -> Result<Response, PageError> {
    let shell = api.shell("groups").await?;
    let g: GroupView = api.get(&format!("/groups/{}", seg(&name))).await?;
    let policies: Vec<PolicyView> = api
        .get_if(shell.can("policy.edit"), "/policies?limit=1000")
        .await?
        .unwrap_or_default();
    let configs: Vec<SoftwareConfigView> = api
        .get_if(shell.can("software.edit"), "/software/configs?limit=1000")
        .await?
        .unwrap_or_default();
    let users: Vec<UserView> = api
        .get_if(
            shell.can("group.edit") && shell.can("user.view"),
            "/users?limit=1000",
        )
        .await?
        .unwrap_or_default();
    let candidates = users
        .into_iter()
        .map(|u| u.email)
        .filter(|e| !g.members.contains(e))
        .collect();
    Ok(render(&GroupPage {
        shell,
        g,
        policies: policies.into_iter().map(|p| p.name).collect(),
        configs: configs.into_iter().map(|c| c.name).collect(),
        candidates,
    }))
}

// ---- IT policies

#[derive(Template)]
#[template(path = "policies.html")]
struct PoliciesPage {
    shell: Shell,
    policies: Vec<PolicyView>,
    presets: Vec<PresetView>,
}

async fn policies(api: Api) -> Result<Response, PageError> {
    let shell = api.shell("policies").await?;
    let policies = api.get("/policies?limit=1000").await?;
    let presets = api
        .get_if(shell.can("policy.create"), "/policy-presets")
        .await?
        .unwrap_or_default();
    Ok(render(&PoliciesPage {
        shell,
        policies,
        presets,
    }))
}

#[derive(Deserialize)]
struct DiffQuery {
    #[serde(default)]
    from: Option<u32>,
    #[serde(default)]
    to: Option<u32>,
}

/// One rule of a policy, with what the catalogue says of it.
struct RuleRow {
    name: String,
    value: String,
    is_default: bool,
    takes: String,
    description: String,
}

#[derive(Template)]
#[template(path = "policy.html")]
struct PolicyPage {
    shell: Shell,
    p: PolicyView,
    rules: Vec<RuleRow>,
    diff: Option<PolicyDiffView>,
    from: u32,
    to: u32,
}

async fn policy(
    api: Api,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Result<Response, PageError> {
    let shell = api.shell("policies").await?;
    let p: PolicyView = api.get(&format!("/policies/{}", seg(&name))).await?;
    let catalogue: Vec<RuleView> = api.get("/policy-rules").await?;
    let catalogue: BTreeMap<String, RuleView> =
        catalogue.into_iter().map(|r| (r.name.clone(), r)).collect();
    let rules = p
        .rules
        .iter()
        .map(|r| {
            let c = catalogue.get(&r.name);
            RuleRow {
                name: r.name.clone(),
                value: r.value.clone(),
                is_default: r.is_default,
                takes: c.map(|c| c.takes.clone()).unwrap_or_default(),
                description: c.map(|c| c.description.clone()).unwrap_or_default(),
            }
        })
        .collect();
    let to = q.to.unwrap_or(p.version);
    let from = q.from.unwrap_or(to.saturating_sub(1).max(1));
    let diff = if from != to {
        Some(
            api.get(&format!(
                "/policies/{}/diff?from={from}&to={to}",
                seg(&p.name)
            ))
            .await?,
        )
    } else {
        None
    };
    Ok(render(&PolicyPage {
        shell,
        p,
        rules,
        diff,
        from,
        to,
    }))
}

// ---- software

/// What a software configuration may say of an application: the API's word and the console's.
const DISPOSITIONS: [(&str, &str); 3] = [
    ("required", "Required"),
    ("optional", "Optional"),
    ("not-permitted", "Not permitted"),
];

#[derive(Template)]
#[template(path = "software.html")]
struct SoftwarePage {
    shell: Shell,
    configs: Vec<SoftwareConfigView>,
    packages: Vec<PackageView>,
    jobs: Vec<JobView>,
}

async fn software(api: Api) -> Result<Response, PageError> {
    let shell = api.shell("software").await?;
    let configs = api.get("/software/configs?limit=1000").await?;
    let packages = api.get("/software/packages?limit=1000").await?;
    let jobs = api.get("/software/jobs?limit=100").await?;
    Ok(render(&SoftwarePage {
        shell,
        configs,
        packages,
        jobs,
    }))
}

/// One software configuration: its applications, what it does with the others, who has it.
#[derive(Template)]
#[template(path = "software_config.html")]
struct SoftwareConfigPage {
    shell: Shell,
    c: SoftwareConfigView,
    /// The application repository, to choose what to add.
    packages: Vec<PackageView>,
    /// The repository's application names, once each.
    names: Vec<String>,
    dispositions: [(&'static str, &'static str); 3],
}

impl SoftwareConfigPage {
    /// The console's word for a disposition (the API's when it is not one of the three).
    fn disposition<'a>(&self, word: &'a str) -> &'a str {
        DISPOSITIONS
            .iter()
            .find(|(w, _)| *w == word)
            .map_or(word, |(_, label)| label)
    }
}

async fn software_config(api: Api, Path(name): Path<String>) -> Result<Response, PageError> {
    let shell = api.shell("software").await?;
    let c: SoftwareConfigView = api
        .get(&format!("/software/configs/{}", seg(&name)))
        .await?;
    let packages: Vec<PackageView> = api
        .get_if(shell.can("software.edit"), "/software/packages?limit=1000")
        .await?
        .unwrap_or_default();
    let mut names: Vec<String> = packages.iter().map(|p| p.name.clone()).collect();
    names.sort_unstable();
    names.dedup();
    Ok(render(&SoftwareConfigPage {
        shell,
        c,
        packages,
        names,
        dispositions: DISPOSITIONS,
    }))
}

// ---- administrators and roles

/// One permission of the catalogue, and whether a role has it.
struct PermissionRow {
    name: String,
    title: String,
    held: bool,
}

/// A role with the whole catalogue beside it: ticked where the role has the permission.
struct RoleRow {
    role: RoleView,
    permissions: Vec<PermissionRow>,
    /// Names the role holds that the catalogue does not (none, unless the catalogue shrank).
    unknown: Vec<String>,
}

/// Each role beside the permission catalogue (`GET /api/v1/permissions`), in its order.
fn role_rows(roles: Vec<RoleView>, catalogue: &[PermissionView]) -> Vec<RoleRow> {
    roles
        .into_iter()
        .map(|role| {
            let permissions = catalogue
                .iter()
                .map(|p| PermissionRow {
                    name: p.name.clone(),
                    title: p.title.clone(),
                    held: role.permissions.contains(&p.name),
                })
                .collect();
            let unknown = role
                .permissions
                .iter()
                .filter(|n| !catalogue.iter().any(|p| &p.name == *n))
                .cloned()
                .collect();
            RoleRow {
                role,
                permissions,
                unknown,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "admins.html")]
struct AdminsPage {
    shell: Shell,
    accounts: Vec<AccountView>,
    roles: Vec<RoleRow>,
    permissions: Vec<PermissionView>,
    /// The signed-in administrator's own API tokens.
    tokens: Vec<TokenView>,
}

async fn admins(api: Api) -> Result<Response, PageError> {
    let shell = api.shell("admins").await?;
    let (accounts, _) = api.page("/accounts?limit=1000").await?;
    let (roles, _) = api.page("/roles?limit=1000").await?;
    let permissions: Vec<PermissionView> = api.get("/permissions").await?;
    let tokens = api.get("/tokens").await?;
    Ok(render(&AdminsPage {
        shell,
        accounts,
        roles: role_rows(roles, &permissions),
        permissions,
        tokens,
    }))
}

/// The signed-in administrator's own API tokens, for every administrator (the
/// administrators page, which shows them too, needs role.view).
#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    shell: Shell,
    tokens: Vec<TokenView>,
}

async fn tokens(api: Api) -> Result<Response, PageError> {
    let shell = api.shell("tokens").await?;
    let tokens = api.get("/tokens").await?;
    Ok(render(&TokensPage { shell, tokens }))
}

// ---- audit log

#[derive(Debug, Default, Deserialize, serde::Serialize)]
struct AuditFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<String>,
}

impl AuditFilter {
    /// Empty fields (a form sends them) are no filter.
    fn cleaned(self) -> AuditFilter {
        let keep = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        AuditFilter {
            actor: keep(self.actor),
            text: keep(self.text),
            result: keep(self.result),
            since: keep(self.since),
            until: keep(self.until),
        }
    }

    fn query(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct AuditPageQuery {
    #[serde(flatten)]
    filter: AuditFilter,
    #[serde(default)]
    offset: Option<u64>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    shell: Shell,
    entries: Vec<AuditView>,
    total: u64,
    offset: u64,
    next: Option<String>,
    previous: Option<String>,
    csv: String,
    f: AuditFilter,
}

async fn audit(api: Api, Query(q): Query<AuditPageQuery>) -> Result<Response, PageError> {
    let shell = api.shell("audit").await?;
    let f = q.filter.cleaned();
    let query = f.query();
    let offset = q.offset.unwrap_or(0);
    let sep = if query.is_empty() { "" } else { "&" };
    let (entries, total): (Vec<AuditView>, u64) = api
        .page(&format!(
            "/audit?{query}{sep}offset={offset}&limit={AUDIT_PAGE}"
        ))
        .await?;
    let at = |o: u64| format!("/console/audit?{query}{sep}offset={o}");
    let next = (offset + u64::from(AUDIT_PAGE) < total).then(|| at(offset + u64::from(AUDIT_PAGE)));
    let previous = (offset > 0).then(|| at(offset.saturating_sub(u64::from(AUDIT_PAGE))));
    Ok(render(&AuditPage {
        shell,
        entries,
        total,
        offset,
        next,
        previous,
        csv: format!("/api/v1/audit?{query}{sep}format=csv"),
        f,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_a_person_writes_them() {
        assert_eq!(when("2026-12-02T18:04:05.123Z"), "2026-12-02 18:04:05 UTC");
        assert_eq!(when("not a time"), "not a time");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("a b/c@d.example"), "a%20b%2Fc%40d.example");
    }

    #[test]
    fn a_role_is_shown_against_the_whole_catalogue() {
        let catalogue = ["policy.view", "audit.view"].map(|n| PermissionView {
            name: n.into(),
            title: format!("may {n}"),
        });
        let role = RoleView {
            name: "Auditors".into(),
            description: None,
            preset: false,
            permissions: vec!["audit.view".into(), "gone.away".into()],
            accounts: 0,
        };
        let rows = role_rows(vec![role], &catalogue);
        let ticked: Vec<(&str, bool)> = rows[0]
            .permissions
            .iter()
            .map(|p| (p.name.as_str(), p.held))
            .collect();
        assert_eq!(ticked, [("policy.view", false), ("audit.view", true)]);
        assert_eq!(rows[0].permissions[1].title, "may audit.view");
        assert_eq!(rows[0].unknown, ["gone.away"]);
    }

    #[test]
    fn the_console_offers_every_disposition_the_api_takes() {
        assert_eq!(DISPOSITIONS.map(|(w, _)| w), bramble_store::DISPOSITIONS);
    }

    #[test]
    fn empty_audit_fields_are_no_filter() {
        let f = AuditFilter {
            actor: Some(" ".into()),
            text: Some("lock".into()),
            ..AuditFilter::default()
        }
        .cleaned();
        assert_eq!(f.query(), "text=lock");
    }
}
