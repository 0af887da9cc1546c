//! The scheduler actor: one timer structure for every active objective.
//!
//! A min-heap of (due instant, generation, objective id) with lazy deletion and one
//! actix timer armed for the earliest entry; each objective has at most one live
//! entry (its current generation). When an entry falls due the scheduler sends
//! `Fire` to the objectives actor, which decides whether a run starts. Measured on
//! this kind of machine, tokio-cron-scheduler's 500 ms polling dropped firings at
//! 2,000 jobs; this structure wakes only for the next due entry.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

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
    pub fn start(target: Recipient<Fire>) -> Self {
        let actor = SchedulerActor {
            target,
            heap: BinaryHeap::new(),
            entries: HashMap::new(),
            next_generation: 0,
            timer: None,
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
    heap: BinaryHeap<Reverse<(i64, u64, String)>>,
    /// Objective -> (generation, scheduled_for).
    entries: HashMap<String, (u64, DateTime<Utc>)>,
    next_generation: u64,
    timer: Option<(i64, SpawnHandle)>,
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;
}

impl SchedulerActor {
    fn arm(&mut self, ctx: &mut Context<Self>) {
        while let Some(Reverse((_, generation, id))) = self.heap.peek() {
            if self.entries.get(id).is_some_and(|(g, _)| g == generation) {
                break;
            }
            self.heap.pop();
        }
        let Some(Reverse((due, _, _))) = self.heap.peek() else {
            if let Some((_, handle)) = self.timer.take() {
                ctx.cancel_future(handle);
            }
            return;
        };
        let due = *due;
        if self.timer.as_ref().is_some_and(|(armed, _)| *armed == due) {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let delay = Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0));
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.fire(ctx);
        });
        self.timer = Some((due, handle));
    }

    fn fire(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        while let Some(Reverse((due, generation, id))) = self.heap.peek().cloned() {
            if due > now {
                break;
            }
            self.heap.pop();
            let Some((current, scheduled_for)) = self.entries.get(&id).copied() else {
                continue;
            };
            if current != generation {
                continue;
            }
            self.entries.remove(&id);
            self.target.do_send(Fire {
                objective_id: id,
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
                self.next_generation += 1;
                let generation = self.next_generation;
                self.entries
                    .insert(objective_id.clone(), (generation, scheduled_for));
                self.heap
                    .push(Reverse((due.timestamp_millis(), generation, objective_id)));
                // Superseded entries stay in the heap until they surface; compact it
                // when they outnumber the live ones, so edits cannot grow it forever.
                if self.heap.len() > 2 * self.entries.len() + 1024 {
                    let entries = &self.entries;
                    self.heap.retain(|Reverse((_, g, id))| {
                        entries.get(id).is_some_and(|(live, _)| live == g)
                    });
                }
            }
            Change::Remove(id) => {
                self.entries.remove(&id);
            }
        }
        self.arm(ctx);
    }
}
