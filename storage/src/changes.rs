//! Changes other nodes made, as a feed each actor that keeps rows in memory follows.
//!
//! On PostgreSQL, triggers announce every change to the tables nodes keep in memory
//! (`palyra_changes`, see migration 0002) and one listening connection per node turns
//! them into [`Change`]s; a node's own writes are left out. On redb (one node) the
//! feed stays silent.

use tokio::sync::broadcast;

use crate::schema::Table;

/// One change seen on the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Another node inserted, updated or deleted the row under `key`.
    Row { table: Table, key: Vec<u8> },
    /// The listening connection is lost: changes made from now on may be missed until
    /// [`Change::Resync`]. Caches of what another node may revoke must drop now.
    Lost,
    /// Listening (again), or changes were dropped because this subscriber fell behind:
    /// anything may have changed; reread what is kept in memory.
    Resync,
}

/// Room for changes not yet taken by a slow subscriber before it must resync.
pub(crate) const FEED_CAPACITY: usize = 8192;

/// One subscriber's view of the feed.
#[derive(Debug)]
pub struct ChangeFeed {
    rx: broadcast::Receiver<Change>,
}

impl ChangeFeed {
    pub(crate) fn new(rx: broadcast::Receiver<Change>) -> Self {
        Self { rx }
    }

    /// The next change; `None` once the database is closed. A subscriber that fell
    /// behind gets [`Change::Resync`] for what it missed.
    pub async fn next(&mut self) -> Option<Change> {
        match self.rx.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Change::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
