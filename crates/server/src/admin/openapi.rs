//! The administration API's OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` attributes and the shapes' `ToSchema` derives, and served without
//! authentication at `GET /api/openapi.json`.
//!
//! Owns: the document (which paths it lists, its tags, the bearer security scheme) and the
//! schemas of the few shapes defined outside this crate. Must not touch: routing (the routes
//! stay in `api::app` and the other route lists), the token check, the database.

use std::sync::OnceLock;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::access::{ENDPOINTS, Need};
use super::error::ApiErrorBody;
use super::{access_api, api, directory_api, policy_api, sync_api};

/// `bramble_store::MailSettings` as the API shows it.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema only: the answers are `bramble_store::MailSettings`
pub struct MailSettings {
    /// Forward new mail to the device.
    push: bool,
    /// Keep a copy of mail sent from the device in the Sent folder.
    save_sent: bool,
    /// Reconcile read/unread, flags, deletes and moves both ways.
    reconcile: bool,
}

/// `bramble_store::FilterConditions` as the API shows them: patterns are case-insensitive
/// substrings in which `*` stands for any run of characters and `?` for one; null is no
/// condition, and a filter with no condition matches every message.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema only
pub struct FilterConditions {
    /// A pattern for the From header (`Name <address>`).
    from: Option<String>,
    /// A pattern one of the To addresses must match.
    to: Option<String>,
    /// A pattern one of the Cc addresses must match.
    cc: Option<String>,
    /// A pattern for the subject.
    subject: Option<String>,
    /// "high", "normal" or "low".
    importance: Option<String>,
}

/// `bramble_store::FilterAction` as the API shows it.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only
pub enum FilterAction {
    /// Forward the message to the device as usual.
    Forward,
    /// Forward it with priority (BES: level 1).
    ForwardWithPriority,
    /// Keep it in the mailbox only.
    DoNotForward,
}

/// `bramble_organizer::Database`: one of the four organizer databases.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // a schema only
pub enum Database {
    /// Events, meeting invitations among them.
    Calendar,
    /// Contacts.
    Contacts,
    /// Tasks.
    Tasks,
    /// Memos.
    Memos,
}

/// The body of `POST /api/v1/software/packages`: the package file's bytes, as they are.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // a schema only: the handler takes the body as bytes
pub struct PackageFile(Vec<u8>);

/// `GET /healthz`: `ok` while the server runs (documentation only; the route is a closure in
/// `api::app`).
#[utoipa::path(
    get, path = "/healthz", tag = "server", operation_id = "healthz",
    summary = "Whether the server is up", security(()),
    responses((status = 200, description = "The server is up.", body = String, content_type = "text/plain"))
)]
#[allow(dead_code)]
fn healthz() {}

/// The administration API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bramble administration API",
        description = "The REST API of a Bramble enterprise server's administration service \
            (what `bramble admin` and the web console drive). Every route under `/api/v1` but \
            `POST /api/v1/login` needs `Authorization: Bearer <token>` (the token file's, \
            `admin-token` in the server's data directory, or an administrator's API token) or \
            the console's session cookie, and the permission each operation names; every \
            change, command and refusal is in the audit log. Lists take `offset` and `limit` \
            and answer with `X-Total-Count` and `Link: <...>; rel=\"next\"`. Every error has \
            one shape: `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        healthz,
        openapi_json,
        api::status,
        api::list_users,
        api::add_user,
        api::show_user,
        api::edit_user,
        api::delete_user,
        api::set_mail_password,
        api::show_mail_settings,
        api::edit_mail_settings,
        api::set_activation_password,
        api::list_global_filters,
        api::add_global_filter,
        api::show_filter,
        api::edit_filter,
        api::delete_filter,
        api::move_filter,
        api::list_user_filters,
        api::add_user_filter,
        policy_api::list_rules,
        policy_api::list_presets,
        policy_api::list_policies,
        policy_api::create_policy,
        policy_api::show_policy,
        policy_api::edit_policy,
        policy_api::delete_policy,
        policy_api::show_version,
        policy_api::diff_policy,
        policy_api::assign_user_policy,
        policy_api::list_groups,
        policy_api::add_group,
        policy_api::show_group,
        policy_api::delete_group,
        policy_api::add_member,
        policy_api::remove_member,
        policy_api::assign_group_policy,
        policy_api::assign_group_software,
        policy_api::add_command,
        policy_api::list_commands,
        policy_api::show_command,
        policy_api::cancel_command,
        policy_api::list_packages,
        policy_api::upload_package,
        policy_api::delete_package,
        policy_api::list_configs,
        policy_api::create_config,
        policy_api::show_config,
        policy_api::edit_config,
        policy_api::delete_config,
        policy_api::set_config_app,
        policy_api::remove_config_app,
        policy_api::assign_user_software,
        policy_api::list_jobs,
        sync_api::show_user,
        sync_api::clear_user,
        sync_api::set_user,
        sync_api::clear_user_db,
        sync_api::show_group,
        sync_api::clear_group,
        sync_api::set_group,
        sync_api::clear_group_db,
        access_api::login,
        access_api::logout,
        access_api::me,
        access_api::permissions,
        access_api::list_roles,
        access_api::add_role,
        access_api::show_role,
        access_api::edit_role,
        access_api::delete_role,
        access_api::list_accounts,
        access_api::add_account,
        access_api::show_account,
        access_api::edit_account,
        access_api::delete_account,
        access_api::set_password,
        access_api::grant_role,
        access_api::revoke_role,
        access_api::list_tokens,
        access_api::add_token,
        access_api::delete_token,
        access_api::list_audit,
        directory_api::show,
        directory_api::search,
        directory_api::import,
        directory_api::sync,
    ),
    components(schemas(ApiErrorBody)),
    modifiers(&BearerToken, &Permissions),
    security(("bearer" = [])),
    tags(
        (name = "server", description = "The server itself: status, health, this document."),
        (name = "users", description = "Users, their activation passwords and mail settings."),
        (name = "mail filters", description = "Push-mail filters, global and per user."),
        (name = "IT policies", description = "IT policies, their rules, versions and assignments."),
        (name = "groups", description = "Groups of users and their members."),
        (name = "IT admin commands", description = "Commands sent to a user's device (lock, wipe, …) and their receipts."),
        (name = "software", description = "The application repository, software configurations and deployment jobs."),
        (name = "synchronization", description = "Organizer synchronization settings, problems and wireless backups."),
        (name = "administrators", description = "Console login, administrator accounts, roles (BES 5's six presets and custom ones) and API tokens."),
        (name = "audit log", description = "Who did what, when, from where, and how it went."),
        (name = "directory", description = "The company directory (LDAP) users are added from and kept in step with (BES: the MailStore service)."),
    )
)]
struct ApiDoc;

/// Adds the `bearer` security scheme the document's `security` names.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "The administration token, from the server's data directory (`admin-token`).",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Adds to every `/api/v1` operation what it needs (from [`ENDPOINTS`], the table the server
/// enforces) and its 403 answer.
struct Permissions;

impl Modify for Permissions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{HttpMethod, RefOr, ResponseBuilder, content::Content};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(routed) = path.strip_prefix("/api/v1") else {
                continue;
            };
            for (method, op) in [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
                (HttpMethod::Patch, item.patch.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ] {
                let Some(op) = op else { continue };
                let m = match method {
                    HttpMethod::Get => axum::http::Method::GET,
                    HttpMethod::Post => axum::http::Method::POST,
                    HttpMethod::Put => axum::http::Method::PUT,
                    HttpMethod::Patch => axum::http::Method::PATCH,
                    _ => axum::http::Method::DELETE,
                };
                let Some(ep) = ENDPOINTS.iter().find(|e| e.method == m && e.path == routed) else {
                    continue;
                };
                let needs = match ep.need {
                    Need::Perm(p) => format!("Needs the permission `{p}` ({}).", p.title()),
                    Need::SignedIn => "Needs only to be signed in.".to_owned(),
                    Need::Command | Need::CancelCommand => "Needs the permission of the \
                        command's kind: `device.lock` for lock, `device.wipe` for wipe and \
                        remove-org-data, `device.resend` for the others."
                        .to_owned(),
                };
                op.description = Some(match op.description.take() {
                    Some(d) if !d.is_empty() => format!("{d}\n\n{needs}"),
                    _ => needs,
                });
                let forbidden = ResponseBuilder::new()
                    .description("The caller's roles do not allow this.")
                    .content(
                        "application/json",
                        Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            "ApiErrorBody",
                        )))),
                    )
                    .build();
                op.responses
                    .responses
                    .entry("403".to_owned())
                    .or_insert(RefOr::T(forbidden));
            }
        }
    }
}

/// The administration API's OpenAPI 3.1 document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/openapi.json`: the document, without authentication.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "server", operation_id = "openapi",
    summary = "This OpenAPI document", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object, content_type = "application/json"))
)]
pub async fn openapi_json() -> Response {
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    match JSON.get_or_init(|| document().to_json().map_err(|e| e.to_string())) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response(),
        Err(e) => {
            tracing::error!("the OpenAPI document does not serialise: {e}");
            super::ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the OpenAPI document could not be made; see the server's log",
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The routes outside `/api/v1`'s permission table: a route added without a table entry
    /// is refused by the guard, and one without a `#[utoipa::path]` entry in the document, or
    /// an entry without a route, fails the test below.
    const OPEN_ROUTES: &[(&str, &str)] = &[
        ("get", "/healthz"),
        ("get", "/api/openapi.json"),
        ("post", "/api/v1/login"),
    ];

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn json() -> serde_json::Value {
        let text = document().to_json().expect("the document serialises");
        serde_json::from_str(&text).expect("the document is JSON")
    }

    #[test]
    fn document_is_openapi_3_1_with_a_bearer_scheme() {
        let doc = json();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
        assert!(doc["components"]["schemas"]["ApiErrorBody"].is_object());
        let upload = &doc["paths"]["/api/v1/software/packages"]["post"]["requestBody"];
        let schema = &upload["content"]["application/octet-stream"]["schema"];
        assert_eq!(
            schema["$ref"], "#/components/schemas/PackageFile",
            "{upload}"
        );
        let file = &doc["components"]["schemas"]["PackageFile"];
        assert_eq!(file["type"], "string", "{file}");
        assert_eq!(file["format"], "binary", "{file}");
    }

    #[test]
    fn every_operation_has_an_id_a_tag_and_answers_401_if_it_needs_the_token() {
        let doc = json();
        let tags: BTreeSet<&str> = doc["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        let mut ids = BTreeSet::new();
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                if !METHODS.contains(&method.as_str()) {
                    continue;
                }
                let id = op["operationId"].as_str().unwrap_or("");
                assert!(!id.is_empty(), "{method} {path} has no operationId");
                assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
                let op_tags = op["tags"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                assert!(!op_tags.is_empty(), "{method} {path} has no tag");
                for t in op_tags {
                    let t = t.as_str().unwrap_or("");
                    assert!(
                        tags.contains(t),
                        "{method} {path}: tag {t:?} is not declared"
                    );
                }
                let open = OPEN_ROUTES.contains(&(method.as_str(), path.as_str()));
                if !open {
                    let e = &op["responses"]["403"]["content"]["application/json"]["schema"];
                    assert_eq!(
                        e["$ref"], "#/components/schemas/ApiErrorBody",
                        "{method} {path} does not document its 403"
                    );
                    let d = op["description"].as_str().unwrap_or("");
                    assert!(
                        d.contains("Needs "),
                        "{method} {path} does not say what it needs"
                    );
                }
                if !open {
                    let e = &op["responses"]["401"]["content"]["application/json"]["schema"];
                    assert_eq!(
                        e["$ref"], "#/components/schemas/ApiErrorBody",
                        "{method} {path} does not document its 401"
                    );
                    assert!(op.get("security").is_none(), "{method} {path} is open");
                } else {
                    assert_eq!(
                        op["security"],
                        serde_json::json!([{}]),
                        "{method} {path} should need no token"
                    );
                }
            }
        }
    }

    #[test]
    fn document_lists_exactly_the_routes_of_app() {
        let doc = json();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if METHODS.contains(&method.as_str()) {
                    documented.insert((method.clone(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = OPEN_ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .chain(ENDPOINTS.iter().map(|e| {
                (
                    e.method.as_str().to_lowercase(),
                    format!("/api/v1{}", e.path),
                )
            }))
            .collect();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "routes without a document entry: {missing:?}; document entries without a route: {extra:?}"
        );
    }

    /// The schemas written here for shapes of other crates have the fields those shapes
    /// serialise.
    #[test]
    fn foreign_shapes_match_their_schemas() {
        let doc = json();
        let schemas = &doc["components"]["schemas"];
        let props = |name: &str| -> BTreeSet<String> {
            schemas[name]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("schema {name} has properties"))
                .keys()
                .cloned()
                .collect()
        };
        let keys = |v: serde_json::Value| -> BTreeSet<String> {
            v.as_object().expect("object").keys().cloned().collect()
        };
        let settings = serde_json::to_value(bramble_store::MailSettings::default()).expect("json");
        assert_eq!(props("MailSettings"), keys(settings));
        let conditions =
            serde_json::to_value(bramble_store::FilterConditions::default()).expect("json");
        assert_eq!(props("FilterConditions"), keys(conditions));
        let enumerated = |name: &str| -> BTreeSet<String> {
            schemas[name]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("schema {name} is an enum"))
                .iter()
                .map(|v| v.to_string())
                .collect()
        };
        let actions: BTreeSet<String> = bramble_store::FilterAction::ALL
            .iter()
            .map(|a| serde_json::to_string(a).expect("json"))
            .collect();
        assert_eq!(enumerated("FilterAction"), actions);
        let dbs: BTreeSet<String> = bramble_organizer::Database::ALL
            .iter()
            .map(|d| serde_json::to_string(d).expect("json"))
            .collect();
        assert_eq!(enumerated("Database"), dbs);
    }
}
