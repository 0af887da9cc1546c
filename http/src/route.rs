//! The shape of one route of the API: its method, path template, the role it needs
//! and its handler. Each module of [`crate::routes`] lists its own routes with
//! [`route`], and the crate root concatenates them into the route table.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use palyra_actors::operators::Role;

use crate::state::AppState;

/// Who may call a route. There is deliberately no "any authenticated caller": every
/// protected route names the least role it needs, so a route cannot be registered
/// without one (a route written against an older table does not compile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No authentication (login, handoff consumption, probes, the API document).
    Public,
    /// Reads: any signed-in operator, token or the admin token.
    Viewer,
    /// Running and managing objectives, agents, browser sessions; provider sign-ins.
    Operator,
    /// Operators, tokens and the vault; the admin token (root) always has it.
    Admin,
}

impl Access {
    /// The least role the route needs; none for a public route.
    pub fn role(self) -> Option<Role> {
        match self {
            Access::Public => None,
            Access::Viewer => Some(Role::Viewer),
            Access::Operator => Some(Role::Operator),
            Access::Admin => Some(Role::Admin),
        }
    }
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
