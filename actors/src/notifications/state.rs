//! What the handle and the delivery actor share: the storage, the policy, the client
//! and the places in flight per channel.

use std::collections::HashMap;
use std::sync::Mutex;

use palyra_storage::{Storage, Writer};
use tokio::sync::Notify;

use super::model::NotificationPolicy;
use crate::registry::RegistryHandle;

pub(super) struct Inner {
    pub(super) storage: Storage,
    pub(super) writer: Writer,
    /// Seals, opens and deletes channel secrets (the vault is the registry's).
    pub(super) registry: RegistryHandle,
    pub(super) policy: NotificationPolicy,
    /// Whose claims are whose, on a shared database.
    pub(super) node_id: String,
    /// Other nodes share the database. Without them, a claim of another node id is
    /// this daemon's before a restart (a SIGKILL mid-send), and is taken over at once.
    pub(super) clustered: bool,
    pub(super) client: reqwest::Client,
    /// Wakes the delivery actor before its next poll (a new event, a send ended).
    pub(super) wake: Notify,
    /// Sends in flight per channel on this node.
    pub(super) in_flight: Mutex<HashMap<String, usize>>,
    pub(super) stopping: tokio::sync::watch::Sender<bool>,
}
