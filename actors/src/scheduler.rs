//! The scheduler actor: one timer structure for every active objective.
//!
//! A min-heap of (due instant, generation, objective id) with lazy deletion and one
//! actix timer armed for the earliest entry; each objective has at most one live
//! entry (its current generation). When an entry falls due the scheduler sends
//! `Fire` to the objectives actor, which decides whether a run starts. Measured on
//! this kind of machine, tokio-cron-scheduler's 500 ms polling dropped firings at
//! 2,000 jobs; this structure wakes only for the next due entry.

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::due_heap::DueHeap;
use crate::due_timer::{DueTimer, TimedActor, arm};
use crate::time::now_ms;

/// Why an objective is fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Its schedule fell due.
    Schedule,
    /// A missed firing caught up after a restart (misfire `run_once`).
    CatchUp,
    /// A firing that waited for the previous run (overlap `queue_one`).
    Queued,
    /// A firing found late after a takeover (its node died or lost its lease), within
    /// `cluster.late_fire_threshold_s`: it runs now and is recorded as late.
    Late,
}

/// An objective is due.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Fire {
    pub objective_id: String,
    /// The schedule's instant (before jitter).
    pub scheduled_for: DateTime<Utc>,
    pub trigger: Trigger,
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
enum Change {
    Schedule {
        objective_id: String,
        due: DateTime<Utc>,
        scheduled_for: DateTime<Utc>,
    },
    Remove(String),
}

/// Handle to the scheduler. Cloning is shallow.
#[derive(Clone)]
pub struct SchedulerHandle {
    addr: Addr<SchedulerActor>,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHandle").finish_non_exhaustive()
    }
}

impl SchedulerHandle {
    /// Starts the scheduler inside the actix System; firings go to `target`.
    /// Crate-private: a `Recipient` is an actix type, and actix types never leave this
    /// crate; the objectives actor is the one caller.
    pub(crate) fn start(target: Recipient<Fire>) -> Self {
        let actor = SchedulerActor {
            target,
            due: DueHeap::default(),
            timer: DueTimer::default(),
        };
        Self {
            addr: actor.start(),
        }
    }

    /// Sets an objective's one entry: fire at `due` for the firing at `scheduled_for`.
    pub fn schedule(&self, objective_id: String, due: DateTime<Utc>, scheduled_for: DateTime<Utc>) {
        self.addr.do_send(Change::Schedule {
            objective_id,
            due,
            scheduled_for,
        });
    }

    /// Drops an objective's entry.
    pub fn remove(&self, objective_id: String) {
        self.addr.do_send(Change::Remove(objective_id));
    }
}

struct SchedulerActor {
    target: Recipient<Fire>,
    /// Each objective's one entry: its due time, with the schedule's instant.
    due: DueHeap<String, DateTime<Utc>>,
    /// The one timer, armed for the earliest due time.
    timer: DueTimer,
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;
}

impl TimedActor for SchedulerActor {
    fn timer(&mut self) -> &mut DueTimer {
        &mut self.timer
    }

    fn on_due(&mut self, ctx: &mut Context<Self>) {
        self.fire(ctx);
    }
}

impl SchedulerActor {
    fn arm(&mut self, ctx: &mut Context<Self>) {
        let due = self.due.next_due();
        arm(self, due, ctx);
    }

    fn fire(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        while let Some((objective_id, _, scheduled_for)) = self.due.pop_due(now) {
            self.target.do_send(Fire {
                objective_id,
                scheduled_for,
                trigger: Trigger::Schedule,
            });
        }
        self.arm(ctx);
    }
}

impl Handler<Change> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: Change, ctx: &mut Self::Context) {
        match msg {
            Change::Schedule {
                objective_id,
                due,
                scheduled_for,
            } => {
                self.due
                    .schedule(objective_id, due.timestamp_millis(), scheduled_for);
            }
            Change::Remove(id) => {
                self.due.remove(&id);
            }
        }
        self.arm(ctx);
    }
}
