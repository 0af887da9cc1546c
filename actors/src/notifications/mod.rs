//! Notifications: channels (webhooks), the durable outbox and its delivery.
//!
//! - `model.rs`: channels, events, deliveries, their views, and [`event_op`], the one
//!   way other code adds an event to the write that causes it.
//! - `events.rs`: the events of runs, objectives, profiles and the certificate.
//! - `handle.rs`: [`NotificationsHandle`] (channels, deliveries, start).
//! - `delivery.rs`: the delivery actor (fan-out, claims, sends, retries);
//!   `state.rs`: what it shares with the handle.
//! - `nodes.rs`: `node_lost`, raised by the holder of shard 0.
//! - `sign.rs`: the formats' bodies and the `palyra-signature` header.
//! - `url.rs`: the receivers' URL policy and the delivery client's resolver.

mod delivery;
pub mod events;
mod handle;
pub mod model;
mod nodes;
pub mod sign;
mod state;
mod url;

pub use handle::NotificationsHandle;
pub use model::{
    ChannelFormat, CreatedChannel, Delivery, DeliveryStatus, EventFilters, EventKind, EventPayload,
    NewChannel, NotificationChannel, NotificationPolicy, event_op,
};
pub use url::check_channel_url;
