//! The API's one error shape: `{"error": {"code": "...", "message": "..."}}`, and the
//! extractors ([`ApiJson`], [`ApiPath`], [`ApiQuery`]) that answer a malformed body, path or
//! query in it instead of axum's plain-text refusals.
//!
//! Owns: the error answer and its schema. Must not touch: the database, routing, the token check.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bramble_store::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// A sentence for the administrator.
    pub message: String,
}

impl ApiError {
    /// A 4xx or 5xx with a code and a sentence.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid administration token is required (Authorization: Bearer …)",
        )
    }

    /// 404 for a user.
    pub fn no_user(email: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_user",
            format!("no user with address {email}"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::UserExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "user_exists", e.to_string())
            }
            StoreError::NoSuchUser { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_user", e.to_string())
            }
            StoreError::DirectoryIdInUse { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "directory_entry_in_use",
                e.to_string(),
            ),
            StoreError::InvalidEmail { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_email", e.to_string())
            }
            StoreError::NoSuchGroup { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_group", e.to_string())
            }
            StoreError::NoSuchPolicy { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_policy", e.to_string())
            }
            StoreError::NoSuchCommand { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_command", e.to_string())
            }
            StoreError::NoSuchPackage { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_package", e.to_string())
            }
            StoreError::NoSuchSoftwareConfig { .. } => ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_software_config",
                e.to_string(),
            ),
            StoreError::GroupExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "group_exists", e.to_string())
            }
            StoreError::PolicyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "policy_exists", e.to_string())
            }
            StoreError::PackageExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "package_exists", e.to_string())
            }
            StoreError::SoftwareConfigExists { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "software_config_exists",
                e.to_string(),
            ),
            StoreError::InvalidName { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", e.to_string())
            }
            StoreError::NoSuchRole { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_role", e.to_string())
            }
            StoreError::NoSuchAccount { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_account", e.to_string())
            }
            StoreError::NoSuchToken { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_token", e.to_string())
            }
            StoreError::RoleExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "role_exists", e.to_string())
            }
            StoreError::AccountExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "account_exists", e.to_string())
            }
            StoreError::PresetRole { .. } => {
                ApiError::new(StatusCode::CONFLICT, "preset_role", e.to_string())
            }
            StoreError::InvalidValue { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_value", e.to_string())
            }
            StoreError::NoSuchDevice { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_device", e.to_string())
            }
            _ => {
                tracing::error!("configuration database error: {e}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not complete the request; see its log",
                )
            }
        }
    }
}

/// Middleware: every error answer in the one shape, including the framework's own (a body
/// that is not JSON, a path that does not parse, a method the endpoint does not take).
pub async fn one_shape(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => "bad_request",
        s if s.is_server_error() => "internal",
        _ => "error",
    };
    let message = if text.is_empty() {
        match status {
            StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not take that method".to_owned(),
            s => s.canonical_reason().unwrap_or("error").to_lowercase(),
        }
    } else {
        text
    };
    let mut out = ApiError {
        status,
        code,
        message,
    }
    .into_response();
    // keep what the framework said about the request (Allow, …)
    for (k, v) in &parts.headers {
        if k != axum::http::header::CONTENT_TYPE && k != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiErrorBody {
    /// What went wrong.
    pub error: ApiErrorDetail,
}

/// The `error` member of [`ApiErrorBody`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiErrorDetail {
    /// A stable machine-readable code: `bad_request`, `unauthorized`, `no_such_user`, …
    pub code: String,
    /// A sentence for the administrator.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ApiErrorBody {
            error: ApiErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// 400 with the code `bad_request`.
pub(crate) fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// No text the API takes may hold U+0000: PostgreSQL cannot store it, and no name, address or
/// pattern needs it.
fn no_nul<'a>(where_: &str, mut texts: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    if texts.any(|t| t.contains('\0')) {
        return Err(bad(format!(
            "the request's {where_} holds a NUL character (U+0000), which no value may contain"
        )));
    }
    Ok(())
}

/// Every string of a JSON value, keys included.
fn json_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                out.push(k);
                json_strings(v, out);
            }
        }
        _ => {}
    }
}

/// A JSON request body; a missing, malformed or mistyped one is a 400 in the one error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|e| bad(e.body_text()))?;
        let mut texts = Vec::new();
        json_strings(&value, &mut texts);
        no_nul("body", texts.into_iter())?;
        serde_json::from_value(value)
            .map(ApiJson)
            .map_err(|e| bad(format!("the JSON body does not fit: {e}")))
    }
}

/// Path parameters; one that does not parse (a command id that is not a number) is a 400 in
/// the one error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| bad(e.body_text()))?;
        no_nul("path", raw.iter().map(|(_, v)| v))?;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(bad(e.body_text())),
        }
    }
}

/// A query string; a missing or malformed parameter is a 400 in the one error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                .map_err(|e| bad(e.body_text()))?;
        no_nul(
            "query",
            pairs.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]),
        )?;
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(bad(e.body_text())),
        }
    }
}
