//! Browser sessions: headless Chromium driven for agents and operators.
//!
//! These handlers are the one place where sessions are created, navigated and closed,
//! so those events are logged (and audited) here.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palyra_actors::browser::{
    BrowserError, BrowserSessionInfo, BrowserSessionList, NavigationResult, NewBrowserSession,
    PageContent, PageState, Viewport,
};
use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::error::{ApiError, ErrorBody, SecuredJsonWrite, SecuredRead, SecuredWrite};
use crate::extract::{ApiJson, ApiPath, OptionalJson};
use crate::request::Caller;
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;
use palyra_actors::audit::AuditKind;

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBrowserSessionRequest {
    /// An http or https URL to load first (at most 8192 bytes); the session starts on
    /// `about:blank` without.
    pub start_url: Option<String>,
    /// The page area; default from `browser.viewport_width` and `viewport_height`.
    pub viewport: Option<Viewport>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NavigateRequest {
    /// An http or https URL (at most 8192 bytes).
    pub url: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClickRequest {
    /// A CSS selector; the first matching element is clicked.
    #[schema(min_length = 1, max_length = 1024)]
    pub selector: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeRequest {
    /// A CSS selector of a text field; the first match gets the text.
    #[schema(min_length = 1, max_length = 1024)]
    pub selector: String,
    /// Inserted at the field's caret, as if typed (at most 16384 characters).
    pub text: String,
}

/// Most characters typed in one request.
const MAX_TYPED_CHARS: usize = 16384;
/// Longest URL accepted.
const MAX_URL_BYTES: usize = 8192;

fn check_url_length(field: &'static str, url: &str) -> Result<(), ApiError> {
    if url.len() > MAX_URL_BYTES {
        return Err(palyra_actors::browser::BrowserError::Invalid {
            field,
            message: format!("must be at most {MAX_URL_BYTES} bytes"),
        }
        .into());
    }
    Ok(())
}

/// Starts a headless browser session (its own Chromium process and fresh profile).
#[utoipa::path(post, path = "/console/v1/browser/sessions", tag = "browser",
    request_body(content = Option<CreateBrowserSessionRequest>, description = "Optional; an empty body starts on about:blank"),
    responses(
        SecuredJsonWrite,
        (status = 201, description = "The session", body = BrowserSessionInfo),
        (status = 400, description = "Malformed request, invalid URL or viewport, or a refused scheme", body = ErrorBody),
        (status = 403, description = "CSRF token missing or wrong, or a refused destination", body = ErrorBody),
        (status = 422, description = "The start URL's host does not resolve", body = ErrorBody),
        (status = 429, description = "All allowed sessions are live, or too many failed bearer attempts", body = ErrorBody),
        (status = 502, description = "The start URL could not be loaded", body = ErrorBody),
        (status = 503, description = "Browser sessions are disabled or Chromium cannot start", body = ErrorBody),
        (status = 504, description = "The start URL did not load in time", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn create_session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    audit: Audit,
    OptionalJson(req): OptionalJson<CreateBrowserSessionRequest>,
) -> Result<Response, ApiError> {
    if let Some(url) = &req.start_url {
        check_url_length("start_url", url)?;
    }
    let start = req.start_url.as_deref().map(origin_of);
    let created = state
        .browser
        .create(NewBrowserSession {
            start_url: req.start_url,
            viewport: req.viewport,
        })
        .await;
    let info = match created {
        Ok(info) => info,
        Err(e) => {
            audit_refusal(&audit, AuditKind::BrowserSessionCreated, "new", &e).await;
            return Err(e.into());
        }
    };
    tracing::info!(principal = %caller.principal(), session_id = %info.session_id,
        "browser session created");
    audit
        .success(
            AuditKind::BrowserSessionCreated,
            &info.session_id,
            match &start {
                Some(origin) => format!("start at {origin}"),
                None => "blank page".to_owned(),
            },
        )
        .await;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// The live browser sessions.
#[utoipa::path(get, path = "/console/v1/browser/sessions", tag = "browser",
    responses(
        SecuredRead,
        (status = 200, description = "The sessions", body = BrowserSessionList)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn list_sessions(
    State(state): State<AppState>,
) -> Result<Json<BrowserSessionList>, ApiError> {
    Ok(Json(state.browser.list().await?))
}

/// One session: its URL, title and last activity.
#[utoipa::path(get, path = "/console/v1/browser/sessions/{session_id}", tag = "browser",
    params(("session_id" = String, Path, description = "The session's id")),
    responses(
        SecuredRead,
        (status = 200, description = "The session", body = BrowserSessionInfo),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 410, description = "The session's browser crashed; the session is closed", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn get_session(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
) -> Result<Json<BrowserSessionInfo>, ApiError> {
    Ok(Json(state.browser.get(&session_id).await?))
}

/// Closes a session: ends its browser and deletes its profile.
#[utoipa::path(delete, path = "/console/v1/browser/sessions/{session_id}", tag = "browser",
    params(("session_id" = String, Path, description = "The session's id")),
    responses(
        SecuredWrite,
        (status = 204, description = "Closed"),
        (status = 404, description = "No such session", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn close_session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    audit: Audit,
    ApiPath(session_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.browser.close(&session_id).await?;
    tracing::info!(principal = %caller.principal(), %session_id, "browser session closed by request");
    audit
        .success(
            AuditKind::BrowserSessionClosed,
            &session_id,
            "closed by request",
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Loads a URL and waits (bounded by `browser.navigation_timeout_s`) until it has loaded.
#[utoipa::path(post, path = "/console/v1/browser/sessions/{session_id}/navigate", tag = "browser",
    params(("session_id" = String, Path, description = "The session's id")),
    request_body = NavigateRequest,
    responses(
        SecuredJsonWrite,
        (status = 200, description = "Loaded: URL, title and HTTP status", body = NavigationResult),
        (status = 400, description = "Malformed request, invalid URL or a refused scheme", body = ErrorBody),
        (status = 403, description = "CSRF token missing or wrong, or a refused destination (also when a redirect leads there)", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 410, description = "The session's browser crashed; the session is closed", body = ErrorBody),
        (status = 422, description = "The host does not resolve", body = ErrorBody),
        (status = 502, description = "The page could not be loaded", body = ErrorBody),
        (status = 504, description = "The page did not load in time", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn navigate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    audit: Audit,
    ApiPath(session_id): ApiPath<String>,
    ApiJson(req): ApiJson<NavigateRequest>,
) -> Result<Json<NavigationResult>, ApiError> {
    check_url_length("url", &req.url)?;
    let target = origin_of(&req.url);
    let result = match state.browser.navigate(&session_id, &req.url).await {
        Ok(result) => result,
        Err(e) => {
            audit_refusal(&audit, AuditKind::BrowserNavigated, &session_id, &e).await;
            return Err(e.into());
        }
    };
    tracing::info!(principal = %caller.principal(), %session_id, status = ?result.status,
        "browser session navigated");
    audit
        .success(
            AuditKind::BrowserNavigated,
            &session_id,
            format!(
                "to {target} (HTTP {})",
                result.status.map_or("-".to_owned(), |s| s.to_string())
            ),
        )
        .await;
    Ok(Json(result))
}

/// Clicks the first element matching a CSS selector and waits for a navigation it starts.
#[utoipa::path(post, path = "/console/v1/browser/sessions/{session_id}/click", tag = "browser",
    params(("session_id" = String, Path, description = "The session's id")),
    request_body = ClickRequest,
    responses(
        SecuredJsonWrite,
        (status = 200, description = "Clicked: the resulting URL and title", body = PageState),
        (status = 400, description = "Malformed request or an invalid selector", body = ErrorBody),
        (status = 403, description = "CSRF token missing or wrong, or the click led to a refused destination", body = ErrorBody),
        (status = 404, description = "No such session, or no element matches", body = ErrorBody),
        (status = 409, description = "The element cannot be clicked (hidden, disabled, covered)", body = ErrorBody),
        (status = 410, description = "The session's browser crashed; the session is closed", body = ErrorBody),
        (status = 504, description = "The navigation it started did not load in time", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn click(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
    ApiJson(req): ApiJson<ClickRequest>,
) -> Result<Json<PageState>, ApiError> {
    Ok(Json(state.browser.click(&session_id, &req.selector).await?))
}

/// Types text into the first element matching a CSS selector.
#[utoipa::path(post, path = "/console/v1/browser/sessions/{session_id}/type", tag = "browser",
    params(("session_id" = String, Path, description = "The session's id")),
    request_body = TypeRequest,
    responses(
        SecuredJsonWrite,
        (status = 200, description = "Typed: the page's URL and title", body = PageState),
        (status = 400, description = "Malformed request, an invalid selector or too much text", body = ErrorBody),
        (status = 404, description = "No such session, or no element matches", body = ErrorBody),
        (status = 409, description = "The element is not a text field that takes input", body = ErrorBody),
        (status = 410, description = "The session's browser crashed; the session is closed", body = ErrorBody),
        (status = 504, description = "The browser did not answer in time", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn type_text(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
    ApiJson(req): ApiJson<TypeRequest>,
) -> Result<Json<PageState>, ApiError> {
    if req.text.chars().count() > MAX_TYPED_CHARS {
        return Err(palyra_actors::browser::BrowserError::Invalid {
            field: "text",
            message: format!("must be at most {MAX_TYPED_CHARS} characters"),
        }
        .into());
    }
    Ok(Json(
        state
            .browser
            .type_text(&session_id, &req.selector, &req.text)
            .await?,
    ))
}

/// A PNG of the session's viewport.
#[utoipa::path(get, path = "/console/v1/browser/sessions/{session_id}/screenshot", tag = "browser",
    params(("session_id" = String, Path, description = "The session's id")),
    responses(
        SecuredRead,
        (status = 200, description = "The viewport as PNG", content_type = "image/png", body = Vec<u8>),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 410, description = "The session's browser crashed; the session is closed", body = ErrorBody),
        (status = 504, description = "The browser did not answer in time", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn screenshot(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let png = state.browser.screenshot(&session_id).await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// The page's visible text, cut at `browser.content_max_bytes`.
#[utoipa::path(get, path = "/console/v1/browser/sessions/{session_id}/content", tag = "browser",
    params(("session_id" = String, Path, description = "The session's id")),
    responses(
        SecuredRead,
        (status = 200, description = "The page's text", body = PageContent),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 410, description = "The session's browser crashed; the session is closed", body = ErrorBody),
        (status = 504, description = "The browser did not answer in time", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn content(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
) -> Result<Json<PageContent>, ApiError> {
    Ok(Json(state.browser.content(&session_id).await?))
}

/// A URL's scheme, host and port only: paths and queries can carry tokens, and the
/// audit log never holds a secret.
fn origin_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.host_str().is_some() => u.origin().ascii_serialization(),
        Ok(u) => format!("a {}: URL", u.scheme()),
        Err(_) => "an invalid URL".to_owned(),
    }
}

/// Audits what the URL policy refused and a session that died under a request; other
/// failures (bad selectors, timeouts, unknown sessions) are the caller's business.
async fn audit_refusal(audit: &Audit, kind: AuditKind, subject: &str, e: &BrowserError) {
    let (code, closed) = match e {
        BrowserError::SchemeRefused { .. } => ("url_scheme_refused", false),
        BrowserError::DestinationRefused { .. } => ("destination_refused", false),
        BrowserError::Gone(_) => ("browser_session_gone", true),
        _ => return,
    };
    audit.failure(kind, subject, code).await;
    if closed {
        audit
            .failure(
                AuditKind::BrowserSessionClosed,
                subject,
                "the browser exited or crashed during a request",
            )
            .await;
    }
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::{Operator, Viewer};
    vec![
        route(
            Method::GET,
            "/console/v1/browser/sessions",
            Viewer,
            list_sessions,
        ),
        route(
            Method::POST,
            "/console/v1/browser/sessions",
            Operator,
            create_session,
        ),
        route(
            Method::GET,
            "/console/v1/browser/sessions/{session_id}",
            Viewer,
            get_session,
        ),
        route(
            Method::DELETE,
            "/console/v1/browser/sessions/{session_id}",
            Operator,
            close_session,
        ),
        route(
            Method::POST,
            "/console/v1/browser/sessions/{session_id}/navigate",
            Operator,
            navigate,
        ),
        route(
            Method::POST,
            "/console/v1/browser/sessions/{session_id}/click",
            Operator,
            click,
        ),
        route(
            Method::POST,
            "/console/v1/browser/sessions/{session_id}/type",
            Operator,
            type_text,
        ),
        route(
            Method::GET,
            "/console/v1/browser/sessions/{session_id}/screenshot",
            Viewer,
            screenshot,
        ),
        route(
            Method::GET,
            "/console/v1/browser/sessions/{session_id}/content",
            Viewer,
            content,
        ),
    ]
}
