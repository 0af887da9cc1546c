//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::AppState;

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
