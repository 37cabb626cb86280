//! The API's error type and its JSON form.
//!
//! Every error answer has the body `{"error": {"code": "...", "message": "...", "field": "..."?}}`.
//! Client errors say what was wrong; internal errors are logged with detail and answered with
//! a generic message. The mapping to HTTP statuses is one `match` with no catch-all arm, so a
//! new variant forces a decision.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; `field` names the offending field when there is one.
    #[error("{message}")]
    BadRequest {
        /// The JSON path of the bad field, e.g. `params` or `risk_score`.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// 401: missing, unknown, revoked or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not permitted.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such object (in the caller's organisation).
    #[error("{0}")]
    NotFound(String),
    /// 405: the endpoint exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the object conflicts with an existing one.
    #[error("{0}")]
    Conflict(String),
    /// 422: a policy or data document is well-formed JSON but invalid (does not parse,
    /// compile or pass the safety checks); `problems` locate each error.
    #[error("{message}")]
    Unprocessable {
        /// The body field at fault (`rego`, `value`, ...).
        field: Option<String>,
        /// A summary.
        message: String,
        /// Each problem with its file, line and column.
        problems: Vec<Problem>,
    },
    /// 413: the body is larger than `limits.max_body_bytes`.
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// 415: the body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: too many failed authentications from the caller's address; `Retry-After` says
    /// when to try again (seconds).
    #[error("{message}")]
    TooManyRequests {
        /// What is wrong.
        message: String,
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// 503: a dependency (the database, the audit log) is unavailable; nothing was executed.
    #[error("{0}")]
    Unavailable(String),
    /// 500: an unexpected internal error; the detail is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

/// One located problem of an invalid policy (`file:line:col: message`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// The module's path (`managed/<name>.rego`, `packs/<name>.rego`, `data`, ...).
    pub file: String,
    /// 1-based line; 0 when the problem has no position.
    pub line: u32,
    /// 1-based column; 0 when the problem has no position.
    pub col: u32,
    /// What is wrong.
    pub message: String,
    /// `file:line:col: message`.
    pub text: String,
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Details of an error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `payload_too_large`, `unsupported_media_type`,
    /// `too_many_requests`, `unavailable`, `internal`, `invalid` (422).
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The offending field, for `bad_request` and `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `invalid`: every problem, located.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<Problem>>,
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The HTTP status and stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unprocessable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            }
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Maps a JSON extractor rejection to a client error that names the field when serde
    /// reported one.
    pub fn from_json_rejection(rejection: JsonRejection, max_body: usize) -> ApiError {
        match rejection {
            JsonRejection::JsonDataError(e) => json_error(&e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest {
                field: None,
                message: format!("request body is not valid JSON: {}", e.body_text()),
            },
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "request body must be JSON with content-type: application/json".into(),
            ),
            JsonRejection::BytesRejection(e) => {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(max_body)
                } else {
                    ApiError::BadRequest {
                        field: None,
                        message: format!("could not read request body: {}", e.body_text()),
                    }
                }
            }
            other => ApiError::BadRequest {
                field: None,
                message: other.body_text(),
            },
        }
    }
}

impl ApiError {
    /// A 400 for a query string that does not deserialize (a number out of its type's range,
    /// not a number, an unknown or repeated parameter), naming the parameter in `field` when
    /// serde names it: `Failed to deserialize query string: wait: number too large to fit in
    /// target type` becomes `field: "wait"`.
    pub fn from_query_rejection(rejection: &axum::extract::rejection::QueryRejection) -> ApiError {
        let text = rejection.body_text();
        let detail = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        match json_error(detail) {
            ApiError::BadRequest {
                field: Some(field),
                message,
            } => ApiError::BadRequest {
                message: format!("query parameter {field}: {message}"),
                field: Some(field),
            },
            other => other,
        }
    }
}

/// Turns serde's data error text (`Failed to deserialize the JSON body into the target type:
/// params: invalid type: ... at line 1 column 40`) into a 400 with the field path.
fn json_error(text: &str) -> ApiError {
    let detail = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    // serde_path_to_error style "path: message"; `.` means the root.
    let (field, message) = match detail.split_once(": ") {
        Some((path, msg)) if !path.contains(' ') && path != "." => {
            (Some(path.to_string()), msg.to_string())
        }
        _ => {
            // "missing field `tool` at line 1 column 2"
            let field = detail
                .split('`')
                .nth(1)
                .filter(|_| {
                    detail.starts_with("missing field") || detail.starts_with("unknown field")
                })
                .map(str::to_string);
            (field, detail.to_string())
        }
    };
    ApiError::BadRequest { field, message }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let retry_after = match &self {
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let mut problems = None;
        let (message, field) = match self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (
                    "internal error; the server log has the details".to_string(),
                    None,
                )
            }
            ApiError::Unavailable(detail) => {
                tracing::error!(error = %detail, "service unavailable");
                (detail, None)
            }
            ApiError::BadRequest { field, message } => (message, field),
            ApiError::Unprocessable {
                field,
                message,
                problems: p,
            } => {
                problems = Some(p);
                (message, field)
            }
            other => (other.to_string(), None),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                field,
                problems,
            },
        };
        let mut response = (status, Json(body)).into_response();
        // RFC 6750 section 3 (and RFC 9110 section 15.5.2): a 401 names the scheme it wants.
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"aaf\""),
            );
        }
        if let Some(secs) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        response
    }
}

impl From<aaf_store::StoreError> for ApiError {
    fn from(e: aaf_store::StoreError) -> Self {
        match e {
            aaf_store::StoreError::NotFound(m) => ApiError::NotFound(m),
            aaf_store::StoreError::Conflict(m)
            | aaf_store::StoreError::Stale(m)
            | aaf_store::StoreError::DuplicateVote(m) => ApiError::Conflict(m),
            e @ (aaf_store::StoreError::Unavailable(_)
            | aaf_store::StoreError::KeysNotLoaded(_)) => ApiError::Unavailable(e.to_string()),
            e @ (aaf_store::StoreError::Invalid(_) | aaf_store::StoreError::Corrupt(_)) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}
