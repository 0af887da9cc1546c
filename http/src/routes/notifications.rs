//! Notification channels (webhooks) and their deliveries: admin only, because a
//! channel sends run output and profile state out of the daemon.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::error::{ApiError, ErrorBody, SecuredJsonWrite, SecuredRead, SecuredWrite};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;
use palyra_actors::audit::AuditKind;
use palyra_actors::notifications::{
    CreatedChannel, Delivery, DeliveryStatus, NewChannel, NotificationChannel,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ChannelPath {
    #[param(pattern = r"^ch_[0-9a-f]{16}$")]
    pub channel_id: String,
}

fn check_channel_id(id: &str) -> Result<(), ApiError> {
    let ok = id.len() == 19
        && id.starts_with("ch_")
        && id[3..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if ok {
        Ok(())
    } else {
        Err(palyra_actors::ActorError::invalid("channel_id", "ch_ and 16 hex digits").into())
    }
}

/// Every channel (never their secrets).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelList {
    pub channels: Vec<NotificationChannel>,
}

/// Every notification channel.
#[utoipa::path(get, path = "/console/v1/notifications/channels", tag = "notifications",
    responses(SecuredRead, (status = 200, body = ChannelList)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn list_channels(State(state): State<AppState>) -> Result<Json<ChannelList>, ApiError> {
    Ok(Json(ChannelList {
        channels: state.notifications.list_channels().await?,
    }))
}

/// Creates a channel. The answer carries its signing secret, this once.
#[utoipa::path(post, path = "/console/v1/notifications/channels", tag = "notifications",
    request_body = NewChannel,
    responses(SecuredJsonWrite, (status = 201, body = CreatedChannel),
        (status = 400, body = ErrorBody),
        (status = 403, description = "The URL's destination is refused", body = ErrorBody),
        (status = 422, description = "The URL's host does not resolve", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn create_channel(
    State(state): State<AppState>,
    audit: Audit,
    ApiJson(req): ApiJson<NewChannel>,
) -> Result<(StatusCode, Json<CreatedChannel>), ApiError> {
    let created = state.notifications.create_channel(req).await?;
    let kinds: Vec<String> = created.channel.events.iter().map(|k| k.name()).collect();
    audit
        .success(
            AuditKind::NotificationChannelCreated,
            &created.channel.channel_id,
            format!(
                "format {:?}; events {}",
                created.channel.format,
                kinds.join(",")
            ),
        )
        .await;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Deletes a channel and its secret; its pending deliveries fail.
#[utoipa::path(delete, path = "/console/v1/notifications/channels/{channel_id}",
    tag = "notifications", params(ChannelPath),
    responses(SecuredWrite, (status = 204, description = "Deleted"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn delete_channel(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(p): ApiPath<ChannelPath>,
) -> Result<StatusCode, ApiError> {
    check_channel_id(&p.channel_id)?;
    state.notifications.delete_channel(&p.channel_id).await?;
    audit
        .success(AuditKind::NotificationChannelDeleted, &p.channel_id, "")
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The event a test queued.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestQueued {
    pub event_id: String,
}

/// Queues a `test` event for this channel, delivered through the outbox like any.
#[utoipa::path(post, path = "/console/v1/notifications/channels/{channel_id}/test",
    tag = "notifications", params(ChannelPath),
    responses(SecuredWrite, (status = 202, body = TestQueued),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The channel is disabled", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn test_channel(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<ChannelPath>,
) -> Result<(StatusCode, Json<TestQueued>), ApiError> {
    check_channel_id(&p.channel_id)?;
    let event_id = state.notifications.test_channel(&p.channel_id).await?;
    Ok((StatusCode::ACCEPTED, Json(TestQueued { event_id })))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// Only this channel's deliveries.
    #[param(pattern = r"^ch_[0-9a-f]{16}$")]
    pub channel_id: Option<String>,
    /// Only deliveries in this status.
    pub status: Option<DeliveryStatus>,
    /// At most this many (1 to 500, 100 by default).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// Deliveries, newest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

/// Deliveries, newest first: status, attempts, the last response code.
#[utoipa::path(get, path = "/console/v1/notifications/deliveries", tag = "notifications",
    params(DeliveryQuery),
    responses(SecuredRead, (status = 200, body = DeliveryList), (status = 400, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    if let Some(id) = &q.channel_id {
        check_channel_id(id)?;
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(palyra_actors::ActorError::invalid("limit", "1 to 500").into());
    }
    Ok(Json(DeliveryList {
        deliveries: state
            .notifications
            .deliveries(q.channel_id.as_deref(), q.status, limit)
            .await?,
    }))
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::Admin;
    vec![
        route(
            Method::GET,
            "/console/v1/notifications/channels",
            Admin,
            list_channels,
        ),
        route(
            Method::POST,
            "/console/v1/notifications/channels",
            Admin,
            create_channel,
        ),
        route(
            Method::DELETE,
            "/console/v1/notifications/channels/{channel_id}",
            Admin,
            delete_channel,
        ),
        route(
            Method::POST,
            "/console/v1/notifications/channels/{channel_id}/test",
            Admin,
            test_channel,
        ),
        route(
            Method::GET,
            "/console/v1/notifications/deliveries",
            Admin,
            deliveries,
        ),
    ]
}
