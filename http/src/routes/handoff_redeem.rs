//! Redeeming a browser handoff link: its page (GET, which redeems nothing) and the
//! POST of that page's button, which does.
//!
//! A link scanner (a mail or chat gateway's preview, a security proxy) fetches every
//! URL it sees; if the GET redeemed the token, the scanner would use it up and the
//! operator's click would fail, or worse, the scanner would hold the session. So the
//! GET only answers a page whose button POSTs the token (scanners do not submit forms),
//! and only that POST sets the cookie and hands the console its CSRF token, through a
//! page whose one script (allowed by the console's strict policy) keeps the token in
//! the tab's sessionStorage and opens the console.

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};

use crate::audit::Audit;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::route::{Access, RouteSpec, route};
use crate::routes::console_auth::{
    ConsumeQuery, HandoffSessionRequest, consume_audited, session_cookie_header,
};
use crate::state::AppState;

/// The page of a handoff link: a button that POSTs its token. Nothing is redeemed.
#[utoipa::path(get, path = "/console/v1/auth/browser-handoff/consume", tag = "auth",
    params(ConsumeQuery),
    responses(
        (status = 200, description = "A page whose button POSTs the token to this path; the token is not used up", content_type = "text/html", body = String),
        (status = 400, description = "Malformed query (a browser, which accepts text/html, gets an HTML page)", content(
            (ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "No token in the link (a browser, which accepts text/html, gets an HTML page)", content(
            (ErrorBody = "application/json"), (String = "text/html")))))]
pub async fn handoff_page(
    method: Method,
    request_headers: HeaderMap,
    query: Result<ApiQuery<ConsumeQuery>, ApiError>,
) -> Response {
    // axum answers HEAD with the GET handler; a link checker's HEAD gets nothing.
    if method == Method::HEAD {
        return ApiError::MethodNotAllowed.into_response();
    }
    let token = query.and_then(|ApiQuery(query)| {
        query
            .token
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized("the handoff token is missing"))
    });
    match token {
        Ok(token) => crate::console::handoff_page(token.expose()),
        Err(e) => failed(&request_headers, e),
    }
}

/// Redeems a handoff link from its page's button: sets the session cookie and answers a
/// page that keeps the session's CSRF token in the tab and opens the handoff's path.
#[utoipa::path(post, path = "/console/v1/auth/browser-handoff/consume", tag = "auth",
    request_body(content = HandoffSessionRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Logged in: the session cookie is set; the page hands the console its CSRF token and goes on to the handoff's path", content_type = "text/html", body = String),
        (status = 400, description = "Not a form with the token (a browser, which accepts text/html, gets an HTML page)", content(
            (ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "Unknown, expired or used token (a browser, which accepts text/html, gets an HTML page)", content(
            (ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "Posted from another origin", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody)))]
pub async fn redeem_handoff(
    State(state): State<AppState>,
    audit: Audit,
    request: Request,
) -> Response {
    let request_headers = request.headers().clone();
    match redeem(&state, &audit, request).await {
        Ok(response) => response,
        Err(e) => failed(&request_headers, e),
    }
}

async fn redeem(state: &AppState, audit: &Audit, request: Request) -> Result<Response, ApiError> {
    if !same_origin(request.headers()) {
        // Another site's form could otherwise sign this browser in as the attacker
        // (login CSRF) with a token the attacker minted.
        return Err(ApiError::CsrfRejected);
    }
    let axum::Form(form) = axum::Form::<HandoffSessionRequest>::from_request(request, state)
        .await
        .map_err(|rejection| match rejection {
            axum::extract::rejection::FormRejection::BytesRejection(bytes) => {
                crate::extract::unreadable_body(bytes.status(), &bytes)
            }
            _ => ApiError::BadRequest {
                code: "invalid_form",
                message: "send the handoff token as a form \
                              (application/x-www-form-urlencoded, `token=...`)"
                    .to_owned(),
            },
        })?;
    if form.token.is_empty() {
        return Err(ApiError::Unauthorized("the handoff token is missing"));
    }
    let consumed = consume_audited(state, audit, form.token.expose(), "link").await?;
    let mut response = crate::console::handoff_done_page(
        &consumed.issued.session.csrf_token,
        &consumed.redirect_path,
    );
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(state, &consumed.issued.token),
    );
    Ok(response)
}

/// Whether a browser's POST came from a page of this daemon. Current browsers send
/// `Sec-Fetch-Site`, which decides; older ones an `Origin`, which must name this host
/// (the page is served with `Referrer-Policy: same-origin` so that they send it; `null`
/// cannot be checked). A client that sends neither (a script) is not a browser another
/// site could drive.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// A refusal: the JSON error, or for a browser a page it can read.
fn failed(request_headers: &HeaderMap, e: ApiError) -> Response {
    if crate::console::wants_html(request_headers) {
        crate::console::handoff_failed_page(e)
    } else {
        e.into_response()
    }
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    const LINK: &str = "/console/v1/auth/browser-handoff/consume";
    vec![
        route(Method::GET, LINK, Access::Public, handoff_page),
        route(Method::POST, LINK, Access::Public, redeem_handoff),
    ]
}
