//! The one timer an actor arms for the earliest entry of its [`crate::due_heap::DueHeap`]
//! (the scheduler for objectives, the refresher for OAuth profiles): re-armed only
//! when the earliest due time changes, cancelled when nothing is due.

use std::time::Duration;

use actix::prelude::*;

use crate::time::now_ms;

/// The armed timer: the due time it fires at and its handle.
#[derive(Debug, Default)]
pub(crate) struct DueTimer {
    armed: Option<(i64, SpawnHandle)>,
}

/// An actor with one [`DueTimer`].
pub(crate) trait TimedActor: Actor<Context = Context<Self>> {
    fn timer(&mut self) -> &mut DueTimer;
    /// The timer fired: take what is due (and arm again).
    fn on_due(&mut self, ctx: &mut Context<Self>);
}

/// Arms `act`'s timer for `due` (Unix ms), or cancels it when `due` is `None`.
pub(crate) fn arm<A: TimedActor>(act: &mut A, due: Option<i64>, ctx: &mut Context<A>) {
    let timer = act.timer();
    if let (Some(due), Some((armed, _))) = (due, &timer.armed)
        && *armed == due
    {
        return;
    }
    if let Some((_, handle)) = timer.armed.take() {
        ctx.cancel_future(handle);
    }
    let Some(due) = due else {
        return;
    };
    let delay = Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0));
    let handle = ctx.run_later(delay, |act, ctx| {
        act.timer().armed = None;
        act.on_due(ctx);
    });
    act.timer().armed = Some((due, handle));
}
