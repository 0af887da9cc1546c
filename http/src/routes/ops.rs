//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::Serialize;

use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProbeStatus {
    /// `alive`, `ready` or `not_ready`.
    pub status: &'static str,
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = ProbeStatus)))]
pub async fn healthz() -> Json<ProbeStatus> {
    Json(ProbeStatus { status: "alive" })
}

/// Storage is open and every actor is running.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = ProbeStatus),
        (status = 503, description = "Not ready", body = ProbeStatus)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<ProbeStatus>) {
    if state.writer.is_alive()
        && state.sessions.is_running()
        && state.handoffs.is_running()
        && state.registry.is_running()
        && state.refresher.is_running()
        && state.objectives.is_running()
    {
        (StatusCode::OK, Json(ProbeStatus { status: "ready" }))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ProbeStatus {
                status: "not_ready",
            }),
        )
    }
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::Public;
    vec![
        route(Method::GET, "/healthz", Public, healthz),
        route(Method::GET, "/readyz", Public, readyz),
    ]
}
