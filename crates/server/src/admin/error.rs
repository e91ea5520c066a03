//! The API's one error shape: `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bramble_store::StoreError;

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}
