//! Reloading an actor's memory from storage after a failed commit.
//!
//! The registry and the objectives actor change their memory as they queue a write, so
//! each message builds on the newest state. When a commit fails, memory is ahead of
//! the database: the actor marks itself stale, refuses every further write with
//! `storage_unavailable` (so nothing builds on a change that was never acknowledged),
//! and reloads in the background: first an empty write, acknowledged only after every
//! write queued before it has committed or failed, then a read of its tables. A
//! reload that fails (the database is still away) is retried with backoff until one
//! succeeds; then the actor writes again.

use std::time::Duration;

use actix::prelude::*;
use palyra_storage::{Storage, StorageError, Table, Writer};

use crate::error::ActorError;
use crate::snapshot::Snapshot;

/// Whether memory may differ from storage, and whether a reload is under way.
#[derive(Debug, Default)]
pub(crate) struct ReloadState {
    /// Set by a failed commit, cleared by a successful reload.
    stale: bool,
    /// A reload is running or waiting to retry.
    reloading: bool,
    /// The next retry's wait.
    backoff: Duration,
}

impl ReloadState {
    /// The error every write answers while memory may differ from storage.
    pub(crate) fn refusal(&self, actor: &'static str) -> Option<ActorError> {
        self.stale.then(|| {
            ActorError::Storage(StorageError::Unavailable {
                target: actor.into(),
                reason: "reloading state after a failed write".into(),
            })
        })
    }
}

/// An actor whose memory can be reloaded from storage.
pub(crate) trait Reloads: Actor<Context = Context<Self>> {
    /// For logs.
    const NAME: &'static str;
    /// The tables its memory is built from.
    const TABLES: &'static [Table];

    fn reload_state(&mut self) -> &mut ReloadState;
    fn storage(&self) -> &Storage;
    fn writer(&self) -> &Writer;
    /// Replaces memory with what `snapshot` holds.
    fn apply(&mut self, snapshot: Snapshot) -> Result<(), ActorError>;
}

const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// Marks `act` stale and starts a reload, unless one is under way.
pub(crate) fn reload<A: Reloads>(act: &mut A, ctx: &mut Context<A>) {
    let state = act.reload_state();
    state.stale = true;
    if state.reloading {
        return;
    }
    state.reloading = true;
    state.backoff = FIRST_RETRY;
    attempt(act, ctx);
}

fn attempt<A: Reloads>(act: &mut A, ctx: &mut Context<A>) {
    let barrier = act.writer().submit(Vec::new());
    let storage = act.storage().clone();
    ctx.spawn(
        async move {
            // Writes queued before the failure resolve first, so the read sees them; a
            // barrier that is not applied (the writer cannot write yet) proves nothing,
            // so the attempt fails and is retried.
            barrier.await?;
            Snapshot::read(&storage, A::TABLES).await
        }
        .into_actor(act)
        .map(|read, act: &mut A, ctx| {
            let applied = read
                .map_err(ActorError::from)
                .and_then(|snapshot| act.apply(snapshot));
            let state = act.reload_state();
            match applied {
                Ok(()) => {
                    state.stale = false;
                    state.reloading = false;
                    tracing::info!(actor = A::NAME, "state reloaded from storage");
                }
                Err(e) => {
                    let wait = state.backoff;
                    state.backoff = (wait * 2).min(LAST_RETRY);
                    tracing::warn!(actor = A::NAME, error = %e, retry_in_ms = wait.as_millis() as u64, "reloading state failed");
                    ctx.run_later(wait, |act, ctx| attempt(act, ctx));
                }
            }
        }),
    );
}
