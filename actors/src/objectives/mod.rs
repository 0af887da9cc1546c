//! The objectives actor: owns agents, objectives (standing orders, heartbeats,
//! programs) and their runs; decides, at each firing, whether a run may start (state,
//! budget, overlap), and records every firing as a durable run.
//!
//! The scheduler actor owns the timers and sends `Fire` when an objective is due; this
//! actor answers by moving `next_run_at` forward and recording the run in one
//! transaction before the run starts, so no firing runs twice across a restart. The
//! provider call itself runs on a tokio worker and reports back to the actor.
//!
//! Layout:
//! - `model.rs`: the records (agents, objectives, runs), `RunStatus`, `ObjectiveState`,
//!   the lifecycle table `TRANSITIONS`, run keys and the rows records are written as.
//!   It imports nothing of the actor or the runner, so the metrics and the runner
//!   depend on it alone.
//! - `input.rs`: what clients send (`New*`, `*Patch`, `ObjectiveFilter`) and its
//!   validation.
//! - `handle.rs`: `ObjectivesHandle` and its start (recovery, then the actor and its
//!   scheduler).
//! - `actor.rs`: the actor's state, recovery after a restart, commit and reload.
//! - `firing.rs`: what a firing comes to (`decide_firing`), starting and finishing
//!   runs.
//! - `agents.rs`: agent CRUD on the actor.
//! - `lifecycle.rs`: objective CRUD and lifecycle actions on the actor.
//! - `runner.rs`: one run on a tokio worker: candidates, prompts, tokens.
//! - `call.rs`: one model turn over the candidates (failover, cooldowns, refresh).
//! - `tool_loop.rs`: one prompt as a conversation with the agent's tools (calls
//!   executed, results returned, until the model answers), within `max_tool_calls`.
//! - `transcript.rs`: the transcript a run's record keeps, without secrets.
//! - `retry.rs`: a run's task around the runner: its attempts, the waits between
//!   them, its deadline; and the pause after consecutive failed runs.
//! - `limits.rs`: the concurrency caps (per node and per agent) and the FIFO of
//!   firings waiting for a slot as durable `queued` runs.
//! - `period.rs`: the daily and monthly budgets checked before a firing starts a run
//!   (`skipped_budget` without a pause), and the soft threshold recorded at its finish.
//! - `waiting.rs`: the FIFO of waiting firings and the cancels asked, as plain data.
//! - `cancel.rs`: cancelling one run (its task aborted, so its provider call is
//!   dropped), and stopping the runs of an objective paused or cancelled.
//! - `sync.rs`: the actor's start, and keeping in step with other nodes: rows they
//!   changed, writes of ours they made the database refuse, shards gained and lost.
//!
//! The rest of the workspace uses the re-exports below; inside the crate, import from
//! the defining file (`crate::objectives::model::RunStatus`) so no file imports
//! itself through this one.

mod actor;
mod agents;
mod call;
mod cancel;
mod firing;
mod handle;
mod input;
mod lifecycle;
mod limits;
pub(crate) mod model;
mod period;
mod retry;
mod runner;
mod sync;
mod tool_loop;
pub(crate) mod transcript;
mod waiting;

pub use actor::ObjectivesPolicy;
pub use handle::ObjectivesHandle;
pub use input::{
    AgentPatch, AutomationInput, NewAgent, NewObjective, ObjectiveFilter, ObjectivePatch,
};
pub use model::{
    AgentPage, AgentRecord, Automation, Budget, LifecycleAction, MAX_OUTPUT_BYTES, Misfire,
    ObjectiveKind, ObjectivePage, ObjectiveRecord, ObjectiveState, Overlap, RetryPolicy, RunPage,
    RunRecord, RunStatus, RunSummary, RunTrigger, TRANSITIONS, Usage, transition,
};
pub use transcript::{TranscriptEntry, TranscriptKind};
