//! The web console: a page shell and its ES modules and stylesheet, embedded in the
//! binary and served at `/` and `/assets/{name}`.
//!
//! The console is plain JavaScript against the JSON API: the page holds no data, so its
//! routes are public and sit outside the API's route table and OpenAPI document. Every
//! piece of data comes from `/console/v1`, where the auth middleware checks the session
//! cookie and the CSRF token. The HTML page carries a strict Content-Security-Policy:
//! scripts and styles only from this origin, nothing inline.

use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The policy of every HTML page the console serves: nothing inline, nothing from
/// another origin, no framing.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its name under `/assets/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The page shell, served at `/`.
pub const INDEX: Asset = Asset {
    name: "index.html",
    content_type: HTML,
    body: include_str!("../console/index.html"),
};

/// Everything under `/assets/`.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "console.css",
        content_type: CSS,
        body: include_str!("../console/console.css"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_str!("../console/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_str!("../console/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: JS,
        body: include_str!("../console/dom.js"),
    },
    Asset {
        name: "overview.js",
        content_type: JS,
        body: include_str!("../console/overview.js"),
    },
    Asset {
        name: "profiles.js",
        content_type: JS,
        body: include_str!("../console/profiles.js"),
    },
    Asset {
        name: "agents.js",
        content_type: JS,
        body: include_str!("../console/agents.js"),
    },
    Asset {
        name: "objectives.js",
        content_type: JS,
        body: include_str!("../console/objectives.js"),
    },
    Asset {
        name: "transcript.js",
        content_type: JS,
        body: include_str!("../console/transcript.js"),
    },
    Asset {
        name: "audit.js",
        content_type: JS,
        body: include_str!("../console/audit.js"),
    },
    Asset {
        name: "notifications.js",
        content_type: JS,
        body: include_str!("../console/notifications.js"),
    },
    Asset {
        name: "operators.js",
        content_type: JS,
        body: include_str!("../console/operators.js"),
    },
    Asset {
        name: "handoff.js",
        content_type: JS,
        body: include_str!("../console/handoff.js"),
    },
    Asset {
        name: "usage.js",
        content_type: JS,
        body: include_str!("../console/usage.js"),
    },
];

/// Strong validators, computed once: the files cannot change while the binary runs.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    std::iter::once(&INDEX)
        .chain(ASSETS)
        .map(|asset| {
            let digest = Sha256::digest(asset.body.as_bytes());
            let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
});

/// The console's route templates.
pub const ROUTES: [&str; 2] = ["/", "/assets/{name}"];

/// The console's routes (public; merged into the application router). They need no
/// state, so any router can carry them.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(ROUTES[0], get(index))
        .route(ROUTES[1], get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&headers, &INDEX, &ETAGS[0])
}

async fn asset(headers: HeaderMap, Path(name): Path<String>) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => serve(&headers, &ASSETS[i], &ETAGS[i + 1]),
        None => ApiError::NotFound.into_response(),
    }
}

/// Answers an embedded file. `Cache-Control: no-cache` with a strong ETag: a browser
/// keeps its copy but asks each time (a 304 costs one round trip on loopback), so a
/// new daemon binary is never hidden behind a stale cached script.
fn serve(request: &HeaderMap, asset: &Asset, etag: &str) -> Response {
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(asset.body))
    };
    let headers = response.headers_mut();
    if !fresh {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type == HTML {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONSOLE_CSP),
        );
    }
    response
}

/// Whether a request is a browser navigation (it asks for HTML), as opposed to a
/// script or the CLI, which get JSON.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// A failed handoff as a browser sees it: the error's status, a readable page with a
/// way to the login form, and no script. The error's response is kept (its status,
/// headers and the logged cause of a 5xx); only the body becomes HTML.
pub fn handoff_failed_page(error: ApiError) -> Response {
    let mut response = error.into_response();
    let status = response.status();
    let text = if status == StatusCode::UNAUTHORIZED {
        "This sign-in link has expired or was already used. \
         Links from \u{201c}palyra console open\u{201d} work once, for about a minute."
    } else if status.is_client_error() {
        "This sign-in link is malformed: copy the whole link, or mint a new one."
    } else {
        "The daemon could not complete this sign-in; try again, and see its log if it keeps failing."
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign-in link not valid \u{2013} Palyra console</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\"></head>\
         <body><main class=\"standalone\"><h1>Sign-in link not valid</h1>\
         <p class=\"notice error\" id=\"handoff-error\">{text}</p>\
         <p><a href=\"/#/login\">Log in with the admin token</a> or mint a new link.</p>\
         </main></body></html>"
    );
    *response.body_mut() = Body::from(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Text for an HTML attribute or element: the five characters that could end either.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML page of the handoff: the console's policy and never stored. Its address
/// carries the token: `Referrer-Policy` (the security headers' `no-referrer`, or the
/// link page's `same-origin`) keeps it from any other origin.
fn handoff_html(body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The page of a handoff link: a button that POSTs the token (to the same path). It
/// redeems nothing, so a link scanner that fetches it leaves the link usable.
///
/// Served with `Referrer-Policy: same-origin`: under `no-referrer` a browser posts the
/// form with `Origin: null`, which the redeeming POST cannot tell from another site's
/// form, so a browser that sends no `Sec-Fetch-Site` (Safari before 16.4) could never
/// redeem a link. The token still goes to no other origin.
pub fn handoff_page(token: &str) -> Response {
    let mut response = handoff_html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>Sign in \u{2013} Palyra console</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\"></head>\
         <body><main class=\"standalone\"><h1>Sign in to the Palyra console</h1>\
         <p>This link signs this browser in to the console. It works once, for about a minute.</p>\
         <form method=\"post\" action=\"consume\" id=\"handoff-form\">\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\
         <button type=\"submit\" class=\"primary\" id=\"handoff-sign-in\">Sign in</button>\
         </form></main></body></html>",
        escape_html(token)
    ));
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The answer to a redeemed handoff: its script keeps the session's CSRF token in the
/// tab's sessionStorage, where the console reads it, and opens the handoff's path.
pub fn handoff_done_page(csrf_token: &str, redirect_path: &str) -> Response {
    let path = escape_html(redirect_path);
    handoff_html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"palyra-csrf\" content=\"{}\">\
         <meta name=\"palyra-redirect\" content=\"{path}\">\
         <title>Signed in \u{2013} Palyra console</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\">\
         <script src=\"/assets/handoff.js\"></script></head>\
         <body><main class=\"standalone\"><h1>Signed in</h1>\
         <p>Opening the console\u{2026} <a id=\"handoff-continue\" href=\"{path}\">Continue</a></p>\
         </main></body></html>",
        escape_html(csrf_token)
    ))
}
