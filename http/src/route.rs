//! The shape of one route of the API: its method, path template, who may call it and
//! its handler. Each module of [`crate::routes`] lists its own routes with [`route`],
//! and the crate root concatenates them into the route table.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::state::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No authentication (login, handoff consumption, probes, the API document).
    Public,
    /// Session cookie (plus CSRF on mutations) or admin bearer token.
    Authenticated,
}

/// One route of the API, as listed by the route table.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// A route and its handler: what the router is built from.
#[derive(Debug)]
pub struct RouteSpec {
    pub info: RouteInfo,
    pub handler: MethodRouter<AppState>,
}

/// The route `method path` answered by `handler`. The handler is registered under the
/// same method the table lists, so the two cannot disagree.
pub fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> RouteSpec
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone())
        .unwrap_or_else(|e| panic!("route {method} {path}: {e}"));
    RouteSpec {
        info: RouteInfo {
            method,
            path,
            access,
        },
        handler: on(filter, handler),
    }
}
