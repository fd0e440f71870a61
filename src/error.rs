//! The one place where errors become HTTP answers: a status, a short JSON body
//! `{"error": "<code>", "message": "…"}`, and one log line with the source and the reason.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::source::SignatureError;
use crate::store::StoreError;

/// Seconds a shop is asked to wait before retrying when the store is unavailable.
pub const STORE_RETRY_AFTER_SECS: u32 = 10;
/// Seconds a shop is asked to wait before retrying when every slot is taken.
pub const BUSY_RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route for this path")]
    NotFound,
    #[error("no source `{source_id}` is configured")]
    UnknownSource { source_id: String },
    #[error("source `{source_id}` has no webhook secret configured; set {}", variables.join(" or "))]
    SourceNotConfigured {
        source_id: String,
        variables: Vec<String>,
    },
    #[error("the subscription handshake of source `{source_id}` is not configured; set {}", variables.join(" or "))]
    HandshakeNotConfigured {
        source_id: String,
        variables: Vec<String>,
    },
    #[error("hub.verify_token does not match the configured verify token")]
    HandshakeRefused,
    #[error("method not allowed here; webhooks are POSTed")]
    MethodNotAllowed,
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error("body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("body could not be read: {0}")]
    BodyUnreadable(String),
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("missing topic header {header}")]
    MissingTopic { header: &'static str },
    #[error("the store is unavailable; retry later")]
    StoreUnavailable(#[source] StoreError),
    #[error(
        "the request was not complete within {limit:?} (server.request_timeout); the connection is closed"
    )]
    RequestTimeout { limit: std::time::Duration },
    #[error("{max} webhooks are in progress and no slot freed within {wait:?}; retry later")]
    Busy {
        max: usize,
        wait: std::time::Duration,
    },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound | Self::UnknownSource { .. } => StatusCode::NOT_FOUND,
            Self::SourceNotConfigured { .. }
            | Self::HandshakeNotConfigured { .. }
            | Self::StoreUnavailable(_)
            | Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::HandshakeRefused | Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyUnreadable(_) | Self::NotJson(_) | Self::MissingTopic { .. } => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    /// The machine-readable code in the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::UnknownSource { .. } => "unknown_source",
            Self::SourceNotConfigured { .. } => "source_not_configured",
            Self::HandshakeNotConfigured { .. } => "handshake_not_configured",
            Self::HandshakeRefused => "invalid_verify_token",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Signature(SignatureError::Missing { .. }) => "missing_signature",
            Self::Signature(_) => "invalid_signature",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyUnreadable(_) => "body_unreadable",
            Self::NotJson(_) => "invalid_json",
            Self::MissingTopic { .. } => "missing_topic",
            Self::StoreUnavailable(_) => "store_unavailable",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::Busy { .. } => "busy",
        }
    }

    /// One log line an operator can act on: the source, the delivery id when the platform
    /// sends one, and the reason. Secrets never reach these messages.
    pub fn log(&self, source_id: &str, delivery_id: Option<&str>) {
        let delivery_id = delivery_id.unwrap_or("-");
        let status = self.status().as_u16();
        let code = self.code();
        if let Self::StoreUnavailable(cause) = self {
            tracing::error!(source = source_id, delivery_id, status, code, error = %cause, "webhook not stored: answered 503 so the shop retries");
        } else {
            // As text, quoted and escaped like every other field: the reason may quote the
            // request (an unknown source id is the URL's), and a newline in it must not
            // start a log line of its own.
            let reason = self.to_string();
            let reason = reason.as_str();
            if self.status().is_server_error() {
                tracing::error!(
                    source = source_id,
                    delivery_id,
                    status,
                    code,
                    reason,
                    "webhook refused"
                );
            } else {
                tracing::warn!(
                    source = source_id,
                    delivery_id,
                    status,
                    code,
                    reason,
                    "webhook refused"
                );
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code(), "message": self.to_string() });
        match &self {
            Self::SourceNotConfigured { variables, .. }
            | Self::HandshakeNotConfigured { variables, .. } => {
                body["variables"] = json!(variables);
            }
            Self::BodyTooLarge { limit } => body["limit_bytes"] = json!(limit),
            Self::RequestTimeout { limit } => body["limit_ms"] = json!(limit.as_millis()),
            _ => {}
        }
        let mut response = (self.status(), Json(body)).into_response();
        match self {
            Self::StoreUnavailable(_) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(STORE_RETRY_AFTER_SECS),
                );
            }
            Self::Busy { .. } => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(BUSY_RETRY_AFTER_SECS),
                );
            }
            Self::RequestTimeout { .. } => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Self::MethodNotAllowed => {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST, GET"));
            }
            _ => {}
        }
        response
    }
}
