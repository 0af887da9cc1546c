//! The HTTP admin API of palyrad: router, extractors, authentication and the error table.
//!
//! Layout:
//! - [`routes`]: one module per resource; handlers forward requests to actor handles.
//! - [`console`]: the web console's page and assets, embedded and served at `/`.
//! - [`auth`]: the one middleware that authenticates protected routes, checks the role
//!   each route declares, and enforces CSRF.
//! - [`extract`]: JSON and query extractors that answer our JSON errors.
//! - [`error`]: the one table from every error to a status.
//! - [`openapi`]: the generated OpenAPI document.
//! - [`throttle`]: per-peer throttling of failed authentication, and request rates.
//! - [`middleware`]: the request pipeline: request ids and spans, metrics, rate limits,
//!   security headers, handlers of state-changing requests on their own task.
//! - [`metrics`]: the metric registry behind `/metrics`.
//! - [`request`]: what a request carries: caller, peer, request id, cookie names.
//! - [`state`]: [`AppState`] and the settings.
//! - [`route`]: the shape of a route; each module of [`routes`] lists its own.
//! - [`audit`]: the `Audit` extractor for handlers.

pub mod audit;
pub mod auth;
pub mod console;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod request;
pub mod route;
pub mod routes;
pub mod state;
pub mod throttle;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::get;

pub use error::ApiError;
pub use route::{Access, RouteInfo};
pub use state::{AppState, AppStateInner, HttpConfig};
pub use throttle::AuthThrottle;

use crate::route::RouteSpec;
use crate::routes::oauth_client_secret;
use crate::routes::{browser, cluster, console_auth, deployment, metrics as metrics_route, oauth};
use crate::routes::{
    handoff_redeem, notifications, objectives, operators, ops, profiles, tokens, usage,
};

/// The routes, resource by resource: the router is built from this list and tests
/// enumerate it.
fn routes() -> Vec<RouteSpec> {
    [
        ops::routes(),
        openapi::routes(),
        console_auth::routes(),
        handoff_redeem::routes(),
        profiles::routes(),
        oauth::routes(),
        oauth_client_secret::routes(),
        objectives::routes(),
        deployment::routes(),
        cluster::routes(),
        metrics_route::routes(),
        browser::routes(),
        operators::routes(),
        tokens::routes(),
        notifications::routes(),
        usage::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Every route with its method and access.
pub fn route_table() -> Vec<RouteInfo> {
    routes().into_iter().map(|r| r.info).collect()
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    let mut templates = Vec::new();
    for RouteSpec { info, handler } in routes() {
        templates.push(info.path);
        // Each protected route gets the one auth middleware with the role it declared;
        // axum merges the methods of one path into one route.
        let handler = match info.access.role() {
            None => handler,
            Some(role) => handler.route_layer(auth::AuthLayer::new(state.clone(), role)),
        };
        api = api.route(info.path, handler);
    }
    state
        .metrics
        .know_routes(templates.into_iter().chain(console::ROUTES));
    Router::new()
        .merge(api)
        .merge(console::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(middleware::PipelineLayer::new(state.clone()))
        .with_state(state)
}

/// The router of the separate metrics listener: `GET /metrics` without
/// authentication (a scraper on a private address), nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { metrics_route::render(&state).await }),
        )
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}
