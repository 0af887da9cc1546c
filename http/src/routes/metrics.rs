//! `GET /metrics`: the metric registry of [`crate::metrics`], rendered now.

use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, SecuredRead};
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;

/// The metrics, rendered now.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        SecuredRead,
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    render(&state).await
}

/// Renders every metric, refreshing the gauges first. Also the whole of the separate
/// metrics listener.
pub async fn render(state: &AppState) -> Result<Response, ApiError> {
    let m = &state.metrics;
    m.set_live_sessions(state.sessions.live_count());
    m.set_cluster(
        if state.cluster.is_clustered() {
            "cluster"
        } else {
            "single"
        },
        state.cluster.node_id(),
        state.cluster.watch_owned().borrow().len(),
    );
    let health = state.registry.health().await?;
    let body = m
        .encode(|health_state| health.counts.get(&health_state).copied().unwrap_or(0))
        .map_err(|e| ApiError::Internal(format!("metrics: {e}")))?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::Viewer;
    vec![route(Method::GET, "/metrics", Viewer, metrics)]
}
