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
    /// What is not ready: `storage` (the database does not answer, or its writer
    /// stopped) or the name of an actor that is not running.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<&'static str>,
}

/// How long readiness waits for the database to answer.
const STORAGE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = ProbeStatus)))]
pub async fn healthz() -> Json<ProbeStatus> {
    Json(ProbeStatus {
        status: "alive",
        failing: Vec::new(),
    })
}

/// Storage is open and every actor is running.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = ProbeStatus),
        (status = 503, description = "Not ready", body = ProbeStatus)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<ProbeStatus>) {
    let mut failing = Vec::new();
    let storage_answers = matches!(
        tokio::time::timeout(STORAGE_PROBE_TIMEOUT, state.storage.check()).await,
        Ok(Ok(()))
    );
    if !state.writer.can_write() || !storage_answers {
        failing.push("storage");
    }
    for (name, running) in [
        ("sessions", state.sessions.is_running()),
        ("handoffs", state.handoffs.is_running()),
        ("registry", state.registry.is_running()),
        ("refresher", state.refresher.is_running()),
        ("objectives", state.objectives.is_running()),
    ] {
        if !running {
            failing.push(name);
        }
    }
    if failing.is_empty() {
        (
            StatusCode::OK,
            Json(ProbeStatus {
                status: "ready",
                failing,
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ProbeStatus {
                status: "not_ready",
                failing,
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
