//! The one table from every error the daemon can answer with to an HTTP status.
//!
//! Every error body is `{"error": {"code": "snake_case", "message": "sentence"}}`.
//! Matching is exhaustive down to the storage errors, so a new variant anywhere below
//! cannot slip through without a status. Internal causes are not put in the body: they
//! ride in a response extension and the request-logging middleware logs them.
//!
//! [`SecuredRead`], [`SecuredWrite`] and [`SecuredJsonWrite`] document, once, the
//! errors every authenticated operation can answer before its handler runs.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palyra_actors::ActorError;
use palyra_actors::browser::BrowserError;
use palyra_actors::provider::KeyCheckError;
use palyra_actors::vault::VaultError;
use palyra_storage::{ConnectFailure, StorageError};
use serde::Serialize;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request body or query is malformed; the message names the field.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// Missing or invalid credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated by cookie, but the CSRF token is missing or wrong.
    #[error("missing or invalid x-palyra-csrf-token header")]
    CsrfRejected,
    /// Authenticated, but the caller's role is below the route's.
    #[error("this needs the {need} role; the caller has {have}")]
    Forbidden {
        need: &'static str,
        have: &'static str,
    },
    /// The Host header names none of the daemon's names (DNS rebinding).
    #[error("this daemon does not answer for that host name")]
    MisdirectedHost,
    #[error("no route for this path")]
    NotFound,
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    #[error("the request body is larger than the daemon's limit")]
    PayloadTooLarge,
    /// The body did not arrive within `server.body_read_timeout_s` (a trickled body
    /// must not hold a connection).
    #[error("the request body did not arrive in time; the connection is closed")]
    BodyTimeout,
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("too many failed attempts; retry in {retry_after_s} s")]
    TooManyRequests { retry_after_s: u64 },
    /// The peer sent more requests than its rate allows.
    #[error("too many requests from this address; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    /// A fault of the daemon itself; the cause is logged, not sent.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Actor(#[from] ActorError),
}

/// The JSON error body, as documented in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code for programs.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

/// The answers of an authenticated read, for a handler's `responses(...)`: 401, 403
/// (the role, or the CSRF check, which reads with a cookie pass too), 421 and 429 (the
/// rate limit, or the failed-bearer throttle).
#[derive(Debug)]
pub struct SecuredRead;

/// The answers of an authenticated change without a body: those of [`SecuredRead`].
#[derive(Debug)]
pub struct SecuredWrite;

/// The answers of an authenticated change with a JSON body: those of [`SecuredWrite`],
/// 413 and 415.
#[derive(Debug)]
pub struct SecuredJsonWrite;

/// The documented answers of an operation, by status.
type Answers = BTreeMap<String, RefOr<utoipa::openapi::Response>>;

// `(status, description)` of the answers the auth middleware, the rate limit and the
// JSON extractor give before a handler runs.
const UNAUTHORIZED: (&str, &str) = ("401", "Not authenticated");
const TOO_MANY: (&str, &str) = (
    "429",
    "Too many requests, or too many failed bearer attempts",
);
const CSRF: (&str, &str) = (
    "403",
    "CSRF token missing or wrong, or the caller's role is below the route's",
);
const MISDIRECTED: (&str, &str) = ("421", "The Host header is not one of the daemon's names");
const TOO_LARGE: (&str, &str) = ("413", "Body too large");
const NOT_JSON: (&str, &str) = ("415", "Not JSON");

/// Each answer with an [`ErrorBody`], as `body = ErrorBody` documents it.
fn error_answers(answers: &[(&str, &str)]) -> Answers {
    answers
        .iter()
        .map(|(status, description)| {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build();
            let response = ResponseBuilder::new()
                .description(*description)
                .content("application/json", body)
                .build();
            ((*status).to_owned(), response.into())
        })
        .collect()
}

impl IntoResponses for SecuredRead {
    fn responses() -> Answers {
        error_answers(&[UNAUTHORIZED, CSRF, MISDIRECTED, TOO_MANY])
    }
}

impl IntoResponses for SecuredWrite {
    fn responses() -> Answers {
        error_answers(&[UNAUTHORIZED, CSRF, MISDIRECTED, TOO_MANY])
    }
}

impl IntoResponses for SecuredJsonWrite {
    fn responses() -> Answers {
        error_answers(&[
            UNAUTHORIZED,
            CSRF,
            MISDIRECTED,
            TOO_LARGE,
            NOT_JSON,
            TOO_MANY,
        ])
    }
}

/// The cause of a 5xx, attached to the response for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

impl ApiError {
    /// The table: status and code of every error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::CsrfRejected => (StatusCode::FORBIDDEN, "csrf_rejected"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::MisdirectedHost => (StatusCode::MISDIRECTED_REQUEST, "misdirected_host"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            }
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Actor(e) => match e {
                ActorError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
                ActorError::NoSession => (StatusCode::UNAUTHORIZED, "no_session"),
                ActorError::HandoffRejected => (StatusCode::UNAUTHORIZED, "handoff_rejected"),
                ActorError::Stopped(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
                ActorError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
                ActorError::SignIn(_) => (StatusCode::BAD_REQUEST, "sign_in_rejected"),
                ActorError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                ActorError::RefreshRefused(_) => (StatusCode::CONFLICT, "refresh_refused"),
                ActorError::KeyCheck(k) => match k {
                    KeyCheckError::Rejected { .. } => {
                        (StatusCode::UNPROCESSABLE_ENTITY, "credential_rejected")
                    }
                    KeyCheckError::RateLimited { .. } => {
                        (StatusCode::FAILED_DEPENDENCY, "provider_rate_limited")
                    }
                    KeyCheckError::Unavailable(_) => {
                        (StatusCode::FAILED_DEPENDENCY, "provider_unavailable")
                    }
                    KeyCheckError::NotConfigured(_) => {
                        (StatusCode::BAD_REQUEST, "provider_not_configured")
                    }
                },
                ActorError::Vault(v) => match v {
                    VaultError::EnvKeyNotRotatable => (StatusCode::CONFLICT, "vault_key_from_env"),
                    // The operator's step (copy the key file) is missing on this node:
                    // it cannot seal until then, and says so.
                    VaultError::KeyNotHere { .. } => {
                        (StatusCode::SERVICE_UNAVAILABLE, "vault_key_not_here")
                    }
                    VaultError::Storage(s) => storage_status(s),
                    VaultError::Key(_)
                    | VaultError::WrongKey { .. }
                    | VaultError::Unreadable(_) => {
                        (StatusCode::INTERNAL_SERVER_ERROR, "vault_failure")
                    }
                },
                ActorError::Storage(s) => storage_status(s),
                ActorError::Browser(b) => browser_status(b),
            },
        }
    }

    /// True when a 5xx's message may go to the client: it describes the browser
    /// session or its page, not the daemon's internals.
    fn message_is_public(&self) -> bool {
        match self {
            ApiError::Actor(ActorError::Browser(b)) => !matches!(b, BrowserError::Protocol(_)),
            // A key id and what to do; never key material.
            ApiError::Actor(ActorError::Vault(VaultError::KeyNotHere { .. })) => true,
            _ => false,
        }
    }
}

fn browser_status(e: &BrowserError) -> (StatusCode, &'static str) {
    match e {
        BrowserError::Disabled => (StatusCode::SERVICE_UNAVAILABLE, "browser_disabled"),
        BrowserError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "browser_unavailable"),
        BrowserError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        BrowserError::SessionNotFound(_) => (StatusCode::NOT_FOUND, "browser_session_not_found"),
        BrowserError::SessionLimit { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, "browser_session_limit")
        }
        BrowserError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
        BrowserError::InvalidUrl { .. } => (StatusCode::BAD_REQUEST, "invalid_url"),
        BrowserError::SchemeRefused { .. } => (StatusCode::BAD_REQUEST, "url_scheme_refused"),
        BrowserError::DestinationRefused { .. } => (StatusCode::FORBIDDEN, "destination_refused"),
        BrowserError::Unresolvable { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "host_unresolvable")
        }
        BrowserError::SelectorNotFound(_) => (StatusCode::NOT_FOUND, "selector_not_found"),
        BrowserError::InvalidSelector(_) => (StatusCode::BAD_REQUEST, "invalid_selector"),
        BrowserError::NotInteractable { .. } => (StatusCode::CONFLICT, "element_not_interactable"),
        BrowserError::NavigationTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "navigation_timeout"),
        BrowserError::Unresponsive(_) => (StatusCode::GATEWAY_TIMEOUT, "browser_unresponsive"),
        BrowserError::NavigationFailed(_) => (StatusCode::BAD_GATEWAY, "navigation_failed"),
        BrowserError::Gone(_) => (StatusCode::GONE, "browser_session_gone"),
        BrowserError::PageScript(_) => (StatusCode::BAD_GATEWAY, "page_script_failed"),
        BrowserError::Protocol(_) => (StatusCode::INTERNAL_SERVER_ERROR, "browser_failure"),
    }
}

/// The code of every answer given while the database cannot be reached.
const STORAGE_UNAVAILABLE: &str = "storage_unavailable";
/// What such an answer's Retry-After says: the writer reconnects within about this.
const STORAGE_RETRY_AFTER_S: u64 = 2;

fn storage_status(e: &StorageError) -> (StatusCode, &'static str) {
    match e {
        StorageError::WriterStopped => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        StorageError::Unavailable { .. }
        | StorageError::Connect {
            failure: ConnectFailure::Unreachable,
            ..
        } => (StatusCode::SERVICE_UNAVAILABLE, STORAGE_UNAVAILABLE),
        StorageError::Backend(_)
        | StorageError::SchemaTooNew { .. }
        | StorageError::Corrupt { .. }
        | StorageError::Connect { .. }
        | StorageError::Config(_)
        | StorageError::Refused { .. }
        | StorageError::TargetNotEmpty { .. }
        | StorageError::CopyMismatch { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "storage_failure")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if code == STORAGE_UNAVAILABLE {
            // Which database, and why, go to the log; the client learns when to retry.
            format!("the database is unavailable; retry in {STORAGE_RETRY_AFTER_S} s")
        } else if status.is_server_error() && !self.message_is_public() {
            // The cause goes to the log, not to the client.
            "the daemon could not complete this request; see its log".to_owned()
        } else {
            self.to_string()
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::Actor(ActorError::KeyCheck(KeyCheckError::RateLimited {
            retry_after_s: Some(retry_after_s),
        })) = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
        }
        if let ApiError::TooManyRequests { retry_after_s }
        | ApiError::RateLimited { retry_after_s } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)));
        }
        if matches!(self, ApiError::BodyTimeout) {
            // The rest of the body is never read: the connection cannot carry another
            // request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if code == STORAGE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(STORAGE_RETRY_AFTER_S),
            );
        }
        if status.is_server_error() {
            response
                .extensions_mut()
                .insert(InternalCause(self.to_string()));
        }
        response
    }
}

impl From<BrowserError> for ApiError {
    fn from(e: BrowserError) -> Self {
        ApiError::Actor(ActorError::Browser(e))
    }
}
