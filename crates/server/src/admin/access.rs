//! Who may do what in the administration service, and the record of what they did.
//!
//! - [`Permission`]: the fine-grained permissions of BES 5's administrative roles.
//! - [`PRESETS`]: the six preset roles (Security Administrator … User Only Administrator),
//!   seeded into the configuration database at every start; custom roles start with nothing,
//!   and an account with several roles holds their union.
//! - [`ENDPOINTS`]: every endpoint of `/api/v1` with what it needs and the words the audit log
//!   uses for it. A route missing from it is refused, so nothing is reachable unchecked.
//! - [`guard`]: the middleware on every `/api/v1` route: it finds who is asking (the token
//!   file's bearer token, an API token, or a console session cookie), checks the permission
//!   (for IT admin commands, the permission of the command's kind), and appends every change,
//!   command and refusal to the audit log: who, what, when, from where, and the result.
//!
//! Owns: authentication and authorization of the API, the audit log's entries.
//! Must not touch: what a handler does; secrets in the audit log (bodies are read only for the
//! command's kind and the target's name).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bramble_store::{NewAuditEntry, Store, StoreError};

use super::{AdminState, ApiError};

/// The name of the console's session cookie.
pub const SESSION_COOKIE: &str = "bramble_session";

/// The account the token file speaks for (made at first start with every permission).
pub const OWNER_ACCOUNT: &str = "admin";

/// A session ends after this long without use…
pub const SESSION_IDLE_MS: i64 = 60 * 60 * 1000;
/// …and after this long in any case.
pub const SESSION_MAX_MS: i64 = 12 * 60 * 60 * 1000;

/// The largest JSON body the guard reads to find a command's kind or a target's name.
const MAX_INSPECTED_BODY: usize = 256 * 1024;

macro_rules! permissions {
    ($($variant:ident = $name:literal, $title:literal;)*) => {
        /// One thing an administrator may be allowed to do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Permission {
            $(
                #[doc = $title]
                $variant,
            )*
        }

        impl Permission {
            /// Every permission, in catalogue order.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),*];

            /// Its name in the API and the database (`policy.edit`).
            pub fn as_str(self) -> &'static str {
                match self { $(Permission::$variant => $name),* }
            }

            /// What it allows, in the console's words.
            pub fn title(self) -> &'static str {
                match self { $(Permission::$variant => $title),* }
            }

            /// The permission with this name.
            pub fn from_name(s: &str) -> Option<Permission> {
                match s { $($name => Some(Permission::$variant),)* _ => None }
            }
        }
    };
}

permissions! {
    PolicyView = "policy.view", "View IT policies";
    PolicyCreate = "policy.create", "Create IT policies";
    PolicyEdit = "policy.edit", "Edit IT policies and assign them to users and groups";
    PolicyDelete = "policy.delete", "Delete IT policies";
    SoftwareView = "software.view", "View software configurations and applications";
    SoftwareCreate = "software.create", "Create software configurations and add applications";
    SoftwareEdit = "software.edit", "Edit software configurations and assign them";
    SoftwareDelete = "software.delete", "Delete software configurations and applications";
    UserView = "user.view", "View users, their devices and IT admin commands";
    UserCreate = "user.create", "Create users (by hand or from the company directory)";
    UserEdit = "user.edit", "Edit users: activation passwords, mail and synchronization settings";
    UserDelete = "user.delete", "Delete users";
    GroupView = "group.view", "View groups";
    GroupCreate = "group.create", "Create groups";
    GroupEdit = "group.edit", "Edit groups and their members";
    GroupDelete = "group.delete", "Delete groups";
    ResendData = "device.resend", "Resend data to devices: IT policy, service books, keys";
    LockDevice = "device.lock", "Lock devices and set their passwords";
    DeleteDeviceData = "device.wipe", "Delete device data: wipe, remove the organization's data";
    RoleView = "role.view", "View administrator accounts, roles and their assignments";
    AssignRoles = "role.assign", "Manage administrator accounts and roles, and assign roles";
    ViewAudit = "audit.view", "View and export the audit log";
    ServerView = "server.view", "View the server's status and components";
    ServerEdit = "server.edit", "Change server-wide settings: global mail filters";
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

use Permission as P;

/// A preset role of BES 5.
#[derive(Debug)]
pub struct Preset {
    /// Its name.
    pub name: &'static str,
    /// What it is for.
    pub description: &'static str,
    /// What it may do.
    pub permissions: &'static [Permission],
}

/// Enterprise Administrator's: everything but managing accounts and roles (BES: it "can only
/// view role assignments").
const ALL_BUT_ROLES: &[Permission] = &[
    P::RoleView,
    P::PolicyView,
    P::PolicyCreate,
    P::PolicyEdit,
    P::PolicyDelete,
    P::SoftwareView,
    P::SoftwareCreate,
    P::SoftwareEdit,
    P::SoftwareDelete,
    P::UserView,
    P::UserCreate,
    P::UserEdit,
    P::UserDelete,
    P::GroupView,
    P::GroupCreate,
    P::GroupEdit,
    P::GroupDelete,
    P::ResendData,
    P::LockDevice,
    P::DeleteDeviceData,
    P::ViewAudit,
    P::ServerView,
    P::ServerEdit,
];

/// The six preset roles of BES 5, most powerful first.
pub const PRESETS: [Preset; 6] = [
    Preset {
        name: "Security Administrator",
        description: "Everything, including administrator accounts, roles and their assignment",
        permissions: Permission::ALL,
    },
    Preset {
        name: "Enterprise Administrator",
        description: "Everything except managing administrator accounts and roles and \
                      assigning roles, which it may only view",
        permissions: ALL_BUT_ROLES,
    },
    Preset {
        name: "Senior Helpdesk Administrator",
        description: "Users and their devices, including deleting device data; creates and \
                      edits groups; views IT policies and software",
        permissions: &[
            P::UserView,
            P::UserCreate,
            P::UserEdit,
            P::UserDelete,
            P::GroupView,
            P::GroupCreate,
            P::GroupEdit,
            P::PolicyView,
            P::SoftwareView,
            P::ResendData,
            P::LockDevice,
            P::DeleteDeviceData,
            P::ServerView,
        ],
    },
    Preset {
        name: "Junior Helpdesk Administrator",
        description: "Views users and sets activation passwords, locks devices and resends \
                      data; cannot delete users or device data",
        permissions: &[
            P::UserView,
            P::UserEdit,
            P::GroupView,
            P::PolicyView,
            P::SoftwareView,
            P::ResendData,
            P::LockDevice,
            P::ServerView,
        ],
    },
    Preset {
        name: "Server Only Administrator",
        description: "The server and its components only; no users",
        permissions: &[P::ServerView, P::ServerEdit],
    },
    Preset {
        name: "User Only Administrator",
        description: "Creates, edits and deletes users and groups only; no devices, \
                      policies or servers",
        permissions: &[
            P::UserView,
            P::UserCreate,
            P::UserEdit,
            P::UserDelete,
            P::GroupView,
            P::GroupCreate,
            P::GroupEdit,
            P::GroupDelete,
        ],
    },
];

/// What an endpoint needs of the one asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// This permission.
    Perm(Permission),
    /// Only to be logged in (their own account, their own tokens).
    SignedIn,
    /// The permission of the IT admin command in the body (`command`).
    Command,
    /// The permission of the IT admin command being cancelled.
    CancelCommand,
}

/// Where an endpoint's target is named, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Nothing in particular.
    None,
    /// A path parameter, and optionally a second one joined with a space.
    Path(&'static str),
    /// Two path parameters (`name version`, `group member`).
    Path2(&'static str, &'static str),
    /// A field of the JSON body.
    Body(&'static str),
}

/// One endpoint of `/api/v1`.
#[derive(Debug)]
pub struct Endpoint {
    /// Its method.
    pub method: Method,
    /// Its path under `/api/v1`, as routed (`/users/{email}`).
    pub path: &'static str,
    /// What it needs.
    pub need: Need,
    /// What it does, in the audit log's words.
    pub action: &'static str,
    /// What it acts on.
    pub target: Target,
}

const fn ep(
    method: Method,
    path: &'static str,
    need: Need,
    action: &'static str,
    target: Target,
) -> Endpoint {
    Endpoint {
        method,
        path,
        need,
        action,
        target,
    }
}

use Need::Perm;
use Target::{Body as B, None as N, Path as T};

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

/// Every endpoint of `/api/v1`.
#[rustfmt::skip]
pub static ENDPOINTS: &[Endpoint] = &[
    // the server
    ep(GET, "/status", Perm(P::ServerView), "View server status", N),
    // who is asking
    ep(GET, "/me", Need::SignedIn, "View own account", N),
    ep(GET, "/permissions", Need::SignedIn, "View permissions", N),
    ep(POST, "/logout", Need::SignedIn, "Log out", N),
    // users
    ep(GET, "/users", Perm(P::UserView), "List users", N),
    ep(POST, "/users", Perm(P::UserCreate), "Add user", B("email")),
    ep(GET, "/users/{email}", Perm(P::UserView), "View user", T("email")),
    ep(PATCH, "/users/{email}", Perm(P::UserEdit), "Edit user", T("email")),
    ep(DELETE, "/users/{email}", Perm(P::UserDelete), "Delete user", T("email")),
    ep(PUT, "/users/{email}/mail-password", Perm(P::UserEdit), "Set mailbox password", T("email")),
    ep(GET, "/users/{email}/mail-settings", Perm(P::UserView), "View mail settings", T("email")),
    ep(PATCH, "/users/{email}/mail-settings", Perm(P::UserEdit), "Change mail settings", T("email")),
    ep(POST, "/users/{email}/activation-password", Perm(P::UserEdit), "Set activation password", T("email")),
    ep(GET, "/users/{email}/filters", Perm(P::UserView), "List user's mail filters", T("email")),
    ep(POST, "/users/{email}/filters", Perm(P::UserEdit), "Add mail filter for user", T("email")),
    ep(GET, "/users/{email}/sync", Perm(P::UserView), "View synchronization settings", T("email")),
    ep(DELETE, "/users/{email}/sync", Perm(P::UserEdit), "Clear synchronization settings", T("email")),
    ep(PUT, "/users/{email}/sync/{database}", Perm(P::UserEdit), "Change synchronization setting", Target::Path2("email", "database")),
    ep(DELETE, "/users/{email}/sync/{database}", Perm(P::UserEdit), "Clear synchronization setting", Target::Path2("email", "database")),
    ep(PUT, "/users/{email}/policy", Perm(P::PolicyEdit), "Assign IT policy to user", T("email")),
    ep(PUT, "/users/{email}/software", Perm(P::SoftwareEdit), "Assign software configuration to user", T("email")),
    // the directory import (BES: the MailStore service)
    ep(GET, "/directory", Perm(P::UserView), "View directory settings", N),
    ep(GET, "/directory/search", Perm(P::UserCreate), "Search the directory", N),
    ep(POST, "/directory/import", Perm(P::UserCreate), "Add users from the directory", N),
    ep(POST, "/directory/sync", Perm(P::UserEdit), "Synchronize with the directory", N),
    // IT admin commands
    ep(POST, "/users/{email}/commands", Need::Command, "Send IT admin command", T("email")),
    ep(GET, "/commands", Perm(P::UserView), "List IT admin commands", N),
    ep(GET, "/commands/{id}", Perm(P::UserView), "View IT admin command", T("id")),
    ep(POST, "/commands/{id}/cancel", Need::CancelCommand, "Cancel IT admin command", T("id")),
    // global mail filters
    ep(GET, "/filters", Perm(P::ServerView), "List global mail filters", N),
    ep(POST, "/filters", Perm(P::ServerEdit), "Add global mail filter", B("name")),
    ep(GET, "/filters/{id}", Perm(P::ServerView), "View mail filter", T("id")),
    ep(PATCH, "/filters/{id}", Perm(P::ServerEdit), "Change mail filter", T("id")),
    ep(DELETE, "/filters/{id}", Perm(P::ServerEdit), "Delete mail filter", T("id")),
    ep(POST, "/filters/{id}/move", Perm(P::ServerEdit), "Reorder mail filter", T("id")),
    // IT policies
    ep(GET, "/policy-rules", Perm(P::PolicyView), "List IT policy rules", N),
    ep(GET, "/policy-presets", Perm(P::PolicyView), "List IT policy presets", N),
    ep(GET, "/policies", Perm(P::PolicyView), "List IT policies", N),
    ep(POST, "/policies", Perm(P::PolicyCreate), "Create IT policy", B("name")),
    ep(GET, "/policies/{name}", Perm(P::PolicyView), "View IT policy", T("name")),
    ep(PATCH, "/policies/{name}", Perm(P::PolicyEdit), "Edit IT policy", T("name")),
    ep(DELETE, "/policies/{name}", Perm(P::PolicyDelete), "Delete IT policy", T("name")),
    ep(GET, "/policies/{name}/versions/{version}", Perm(P::PolicyView), "View IT policy version", Target::Path2("name", "version")),
    ep(GET, "/policies/{name}/diff", Perm(P::PolicyView), "Compare IT policy versions", T("name")),
    // groups
    ep(GET, "/groups", Perm(P::GroupView), "List groups", N),
    ep(POST, "/groups", Perm(P::GroupCreate), "Create group", B("name")),
    ep(GET, "/groups/{name}", Perm(P::GroupView), "View group", T("name")),
    ep(DELETE, "/groups/{name}", Perm(P::GroupDelete), "Delete group", T("name")),
    ep(PUT, "/groups/{name}/members/{email}", Perm(P::GroupEdit), "Add user to group", Target::Path2("name", "email")),
    ep(DELETE, "/groups/{name}/members/{email}", Perm(P::GroupEdit), "Remove user from group", Target::Path2("name", "email")),
    ep(PUT, "/groups/{name}/policy", Perm(P::PolicyEdit), "Assign IT policy to group", T("name")),
    ep(PUT, "/groups/{name}/software", Perm(P::SoftwareEdit), "Assign software configuration to group", T("name")),
    ep(GET, "/groups/{name}/sync", Perm(P::GroupView), "View group synchronization settings", T("name")),
    ep(DELETE, "/groups/{name}/sync", Perm(P::GroupEdit), "Clear group synchronization settings", T("name")),
    ep(PUT, "/groups/{name}/sync/{database}", Perm(P::GroupEdit), "Change group synchronization setting", Target::Path2("name", "database")),
    ep(DELETE, "/groups/{name}/sync/{database}", Perm(P::GroupEdit), "Clear group synchronization setting", Target::Path2("name", "database")),
    // software
    ep(GET, "/software/packages", Perm(P::SoftwareView), "List applications", N),
    ep(POST, "/software/packages", Perm(P::SoftwareCreate), "Add application", N),
    ep(DELETE, "/software/packages/{name}/{version}", Perm(P::SoftwareDelete), "Delete application", Target::Path2("name", "version")),
    ep(GET, "/software/configs", Perm(P::SoftwareView), "List software configurations", N),
    ep(POST, "/software/configs", Perm(P::SoftwareCreate), "Create software configuration", B("name")),
    ep(GET, "/software/configs/{name}", Perm(P::SoftwareView), "View software configuration", T("name")),
    ep(PATCH, "/software/configs/{name}", Perm(P::SoftwareEdit), "Edit software configuration", T("name")),
    ep(DELETE, "/software/configs/{name}", Perm(P::SoftwareDelete), "Delete software configuration", T("name")),
    ep(PUT, "/software/configs/{name}/apps/{app}", Perm(P::SoftwareEdit), "Add application to software configuration", Target::Path2("name", "app")),
    ep(DELETE, "/software/configs/{name}/apps/{app}", Perm(P::SoftwareEdit), "Remove application from software configuration", Target::Path2("name", "app")),
    ep(GET, "/software/jobs", Perm(P::SoftwareView), "List software deployment jobs", N),
    // administrators and roles
    ep(GET, "/roles", Perm(P::RoleView), "List roles", N),
    ep(POST, "/roles", Perm(P::AssignRoles), "Create role", B("name")),
    ep(GET, "/roles/{name}", Perm(P::RoleView), "View role", T("name")),
    ep(PATCH, "/roles/{name}", Perm(P::AssignRoles), "Edit role", T("name")),
    ep(DELETE, "/roles/{name}", Perm(P::AssignRoles), "Delete role", T("name")),
    ep(GET, "/accounts", Perm(P::RoleView), "List administrators", N),
    ep(POST, "/accounts", Perm(P::AssignRoles), "Add administrator", B("name")),
    ep(GET, "/accounts/{name}", Perm(P::RoleView), "View administrator", T("name")),
    ep(PATCH, "/accounts/{name}", Perm(P::AssignRoles), "Edit administrator", T("name")),
    ep(DELETE, "/accounts/{name}", Perm(P::AssignRoles), "Delete administrator", T("name")),
    ep(PUT, "/accounts/{name}/password", Perm(P::AssignRoles), "Set administrator password", T("name")),
    ep(PUT, "/accounts/{name}/roles/{role}", Perm(P::AssignRoles), "Assign role", Target::Path2("name", "role")),
    ep(DELETE, "/accounts/{name}/roles/{role}", Perm(P::AssignRoles), "Remove role", Target::Path2("name", "role")),
    ep(GET, "/tokens", Need::SignedIn, "List API tokens", N),
    ep(POST, "/tokens", Need::SignedIn, "Make API token", B("name")),
    ep(DELETE, "/tokens/{id}", Need::SignedIn, "Revoke API token", T("id")),
    // the audit log
    ep(GET, "/audit", Perm(P::ViewAudit), "View audit log", N),
];

/// The endpoint routed at `path` (under `/api/v1`) for `method`.
pub fn endpoint(method: &Method, path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .find(|e| e.method == *method && e.path == path)
}

/// The permission an IT admin command of this kind needs.
pub fn command_permission(kind: &str) -> Option<Permission> {
    match kind {
        "lock" => Some(P::LockDevice),
        "wipe" | "remove-org-data" => Some(P::DeleteDeviceData),
        "regenerate-key" | "resend-policy" | "resend-service-books" => Some(P::ResendData),
        _ => None,
    }
}

/// Who is asking, with what they may do; put in each request's extensions by [`guard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account's name.
    pub account: String,
    /// How they proved it.
    pub via: Via,
    /// What they may do.
    pub permissions: BTreeSet<Permission>,
    /// The peer's address.
    pub source: Option<String>,
}

impl Caller {
    /// Whether they hold `p`.
    pub fn may(&self, p: Permission) -> bool {
        self.permissions.contains(&p)
    }
}

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The token file's bearer token (the server's owner).
    TokenFile,
    /// An API token.
    ApiToken,
    /// A console session cookie.
    Session,
}

/// What a handler adds to its response for the audit log (extra words; never a secret).
#[derive(Debug, Clone)]
pub struct AuditNote(pub String);

/// SHA-256 hex of a session or token secret: what the database keeps.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref())
}

/// A new random secret for a session or an API token (32 bytes, hex, with a prefix that says
/// what it is).
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// Seeds the preset roles and, on first start, the owner's account holding Security
/// Administrator.
///
/// # Errors
/// When the database fails.
pub async fn seed(store: &Store) -> Result<(), StoreError> {
    for p in &PRESETS {
        let perms: Vec<String> = p
            .permissions
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        store
            .ensure_preset_role(p.name, p.description, &perms)
            .await?;
    }
    if store.account(OWNER_ACCOUNT).await?.is_none() {
        match store
            .add_account(OWNER_ACCOUNT, Some("Administrator"), None, None)
            .await
        {
            Ok(_) | Err(StoreError::AccountExists { .. }) => {}
            Err(e) => return Err(e),
        }
        store.grant_role(OWNER_ACCOUNT, PRESETS[0].name).await?;
    }
    Ok(())
}

fn permission_set(names: &[String]) -> BTreeSet<Permission> {
    names
        .iter()
        .filter_map(|n| Permission::from_name(n))
        .collect()
}

/// The value of a cookie sent with a request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn peer(req: &Request) -> Option<String> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string())
}

/// Finds the caller of a request; `None` when it proves no one.
///
/// # Errors
/// When the database fails.
pub async fn authenticate(
    state: &AdminState,
    headers: &HeaderMap,
    source: Option<String>,
) -> Result<Option<Caller>, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let (account, via) = if let Some(given) = bearer {
        if digest(given) == digest(&state.token) {
            return Ok(Some(Caller {
                account: OWNER_ACCOUNT.to_owned(),
                via: Via::TokenFile,
                permissions: Permission::ALL.iter().copied().collect(),
                source,
            }));
        }
        match state.store.token_account(&secret_hash(given)).await? {
            Some(a) => (a, Via::ApiToken),
            None => return Ok(None),
        }
    } else if let Some(s) = cookie(headers, SESSION_COOKIE) {
        match state
            .store
            .session(&secret_hash(s), SESSION_IDLE_MS)
            .await?
        {
            Some(a) => (a, Via::Session),
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    let Some(p) = state.store.principal(&account).await? else {
        return Ok(None);
    };
    Ok(Some(Caller {
        account: p.account,
        via,
        permissions: permission_set(&p.permissions),
        source,
    }))
}

/// Comparing digests keeps the comparison's timing independent of the token's bytes.
fn digest(s: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `None` when the caller holds a permission of some IT admin command, else the one to ask for.
fn any_device_permission(caller: &Caller) -> Option<Permission> {
    let device = [P::LockDevice, P::DeleteDeviceData, P::ResendData];
    if device.iter().any(|p| caller.may(*p)) {
        None
    } else {
        Some(P::LockDevice)
    }
}

fn forbidden(p: Permission) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "your roles do not allow this: it needs the permission \"{}\" ({p}); ask a \
             Security Administrator",
            p.title()
        ),
    )
}

/// The middleware on every `/api/v1` route: authenticate, authorize, audit.
pub async fn guard(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let routed = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let path = routed.strip_prefix("/api/v1").unwrap_or(&routed).to_owned();
    let Some(ep) = endpoint(&method, &path) else {
        let allowed: Vec<&str> = ENDPOINTS
            .iter()
            .filter(|e| e.path == path)
            .map(|e| e.method.as_str())
            .collect();
        if !allowed.is_empty() {
            let mut resp = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{path} takes {}, not {method}", allowed.join(", ")),
            )
            .into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&allowed.join(", ")) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            return resp;
        }
        tracing::error!(%method, %path, "an administration endpoint has no entry in the permission table");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this endpoint is not in the permission table, so nobody may use it",
        )
        .into_response();
    };
    let headers = req.headers().clone();
    let caller = match authenticate(&state, &headers, peer(&req)).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            if method != Method::GET {
                audit(
                    &state.store,
                    NewAuditEntry {
                        actor: "(not signed in)".into(),
                        source: peer(&req),
                        action: ep.action.to_owned(),
                        target: None,
                        detail: Some("no valid token or session".into()),
                        result: "denied".into(),
                        status: 401,
                    },
                )
                .await;
            }
            return ApiError::unauthorized().into_response();
        }
        Err(e) => return e.into_response(),
    };
    // A browser's session must come from the console itself (cross-site requests are refused).
    if caller.via == Via::Session && method != Method::GET && !same_origin(&req) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "this request came from another web site; use the console itself",
        )
        .into_response();
    }
    let params = path_params(ep.path, req.uri().path());
    let (req, body) = match ep.target {
        Target::Body(_) => buffer(req).await,
        _ if ep.need == Need::Command => buffer(req).await,
        _ => (Ok(req), None),
    };
    let mut req = match req {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let json: Option<serde_json::Value> =
        body.as_deref().and_then(|b| serde_json::from_slice(b).ok());
    let target = match ep.target {
        Target::None => None,
        Target::Path(a) => param(&params, a),
        Target::Path2(a, b) => match (param(&params, a), param(&params, b)) {
            (Some(a), Some(b)) => Some(format!("{a} {b}")),
            (a, b) => a.or(b),
        },
        Target::Body(f) => json
            .as_ref()
            .and_then(|j| j.get(f))
            .and_then(|v| v.as_str())
            .map(|s| s.chars().take(200).collect()),
    };
    let mut action = ep.action.to_owned();
    // What is needed, now that the body or the command is known.
    let needed: Option<Permission> = match ep.need {
        Need::Perm(p) => Some(p),
        Need::SignedIn => None,
        Need::Command => {
            let kind = json
                .as_ref()
                .and_then(|j| j.get("command"))
                .and_then(|v| v.as_str())
                .unwrap_or("");
            if !kind.is_empty() {
                action = format!("{action} ({})", kind.chars().take(40).collect::<String>());
            }
            // An unknown kind is the handler's to refuse (400), to anyone who may send some.
            command_permission(kind).or_else(|| any_device_permission(&caller))
        }
        Need::CancelCommand => {
            let id = param(&params, "id").and_then(|s| s.parse::<i64>().ok());
            match id {
                Some(id) => match state.store.command(id).await {
                    Ok(Some(c)) => {
                        action = format!("{action} ({})", c.kind);
                        command_permission(&c.kind)
                    }
                    // a missing command is the handler's 404, for anyone who may cancel some
                    Ok(None) => any_device_permission(&caller),
                    Err(e) => return ApiError::from(e).into_response(),
                },
                None => any_device_permission(&caller),
            }
        }
    };
    if let Some(p) = needed
        && !caller.may(p)
    {
        audit(
            &state.store,
            NewAuditEntry {
                actor: caller.account.clone(),
                source: caller.source.clone(),
                action,
                target,
                detail: Some(format!("needs the permission {p}")),
                result: "denied".into(),
                status: 403,
            },
        )
        .await;
        return forbidden(p).into_response();
    }
    let audited = method != Method::GET && method != Method::HEAD;
    let actor = caller.account.clone();
    let source = caller.source.clone();
    req.extensions_mut().insert(caller);
    let resp = next.run(req).await;
    if audited {
        let status = resp.status();
        let note = resp.extensions().get::<AuditNote>().map(|n| n.0.clone());
        let result = if status.is_success() {
            "success"
        } else {
            "failed"
        };
        let detail = match (note, status.is_success()) {
            (Some(n), _) => Some(n),
            (None, true) => None,
            (None, false) => Some(format!("answered {}", status.as_u16())),
        };
        audit(
            &state.store,
            NewAuditEntry {
                actor,
                source,
                action,
                target,
                detail,
                result: result.into(),
                status: status.as_u16(),
            },
        )
        .await;
    }
    resp
}

/// Appends to the audit log; a failure is logged (the request's own outcome stands).
pub async fn audit(store: &Store, e: NewAuditEntry) {
    if let Err(err) = store.audit(&e).await {
        tracing::error!(actor = %e.actor, action = %e.action, "cannot write the audit log: {err}");
    }
}

fn same_origin(req: &Request) -> bool {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        // not a browser's cross-site request: browsers send Origin on every unsafe method
        return true;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

/// Reads a JSON body (bounded) so it can be looked at, and puts it back.
async fn buffer(req: Request) -> (Result<Request, Response>, Option<Bytes>) {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, MAX_INSPECTED_BODY).await {
        Ok(bytes) => {
            let req = Request::from_parts(parts, Body::from(bytes.clone()));
            (Ok(req), Some(bytes))
        }
        Err(_) => (
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than {MAX_INSPECTED_BODY} bytes"),
            )
            .into_response()),
            None,
        ),
    }
}

/// The path parameters of `uri_path` against the routed `pattern` (both under `/api/v1`),
/// percent-decoded.
fn path_params(pattern: &str, uri_path: &str) -> Vec<(String, String)> {
    let uri_path = uri_path.strip_prefix("/api/v1").unwrap_or(uri_path);
    pattern
        .split('/')
        .zip(uri_path.split('/'))
        .filter_map(|(p, v)| {
            let name = p.strip_prefix('{')?.strip_suffix('}')?;
            let value = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            Some((name.to_owned(), value.chars().take(200).collect()))
        })
        .collect()
}

fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = BTreeSet::new();
        for p in Permission::ALL {
            assert_eq!(Permission::from_name(p.as_str()), Some(*p));
            assert!(seen.insert(p.as_str()));
        }
    }

    #[test]
    fn presets_follow_bes() {
        let sec: BTreeSet<_> = PRESETS[0].permissions.iter().collect();
        let ent: BTreeSet<_> = PRESETS[1].permissions.iter().collect();
        assert_eq!(sec.len(), Permission::ALL.len());
        assert_eq!(
            sec.difference(&ent).collect::<Vec<_>>(),
            vec![&&P::AssignRoles]
        );
    }

    #[test]
    fn every_endpoint_is_listed_once() {
        let mut seen = BTreeSet::new();
        for e in ENDPOINTS {
            assert!(
                seen.insert((e.method.as_str(), e.path)),
                "{} {}",
                e.method,
                e.path
            );
        }
    }

    #[test]
    fn path_params_are_decoded() {
        let p = path_params(
            "/users/{email}/sync/{database}",
            "/api/v1/users/a%40b.c/sync/calendar",
        );
        assert_eq!(param(&p, "email").as_deref(), Some("a@b.c"));
        assert_eq!(param(&p, "database").as_deref(), Some("calendar"));
    }
}
