//! The objectives' records as they are stored and answered: agents, objectives, runs,
//! the lifecycle table (`TRANSITIONS`), and the rows a run and an objective are
//! written as.
//!
//! Nothing here knows the actor or the runner, so anything (the metrics, the runner,
//! a future storage backend) can depend on the records without a cycle.

use chrono::{DateTime, Utc};
use palyra_storage::{StoredRecord, Table, WriteOp};
use serde::{Deserialize, Serialize};

use crate::time::{now_ms, to_datetime};

/// An agent: who runs objectives, with which model and credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentRecord {
    pub agent_id: String,
    pub display_name: String,
    /// Absolute paths the agent may work in.
    pub workspace_roots: Vec<String>,
    /// The auth profile runs use when `model_profiles` is empty; when absent too, the
    /// agent's `openai` resolution.
    pub default_model_profile: Option<String>,
    /// For example `gpt-4o-mini`; the model of that one-element case.
    pub model: String,
    /// The candidates a run tries in order, failing over to the next on a retryable
    /// failure; empty means the one-element list (`default_model_profile`, `model`).
    #[serde(default)]
    pub model_profiles: Vec<ModelCandidate>,
    /// Runs of this agent's objectives going at once on a node, at most (below the
    /// node's `objectives.max_concurrent_runs`); firings over it wait as `queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_runs: Option<u32>,
    /// The tools runs offer the model (none by default).
    #[serde(default)]
    pub tools: Vec<crate::tools::AgentTool>,
    /// Tool calls per run, at most (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_calls: Option<u32>,
    /// Daily and monthly token limits over all of the agent's objectives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::usage::budget::AgentBudget>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One candidate of an agent: which profile, with which model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelCandidate {
    #[schema(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub profile_id: String,
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub model: String,
}

impl AgentRecord {
    /// The candidates in order: `model_profiles`, or the one-element case (a `None`
    /// profile: the agent's `openai` resolution).
    pub fn candidates(&self) -> Vec<(Option<String>, String)> {
        if self.model_profiles.is_empty() {
            vec![(self.default_model_profile.clone(), self.model.clone())]
        } else {
            self.model_profiles
                .iter()
                .map(|c| (Some(c.profile_id.clone()), c.model.clone()))
                .collect()
        }
    }
}

impl StoredRecord for AgentRecord {
    const TABLE: Table = Table::Agents;
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveKind {
    /// A goal run on demand or on a schedule: one prompt per run.
    Objective,
    /// Liveness: records the agent's credential health, and runs the prompt if any.
    Heartbeat,
    /// A recurring instruction: one prompt per firing.
    StandingOrder,
    /// An ordered list of steps (prompts), all run per firing.
    Program,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveState {
    Draft,
    Active,
    Paused,
    Cancelled,
    Archived,
}

/// A lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleAction {
    Activate,
    Pause,
    Resume,
    Cancel,
    Archive,
    /// Run now (within budget), whatever the schedule.
    Fire,
}

use ObjectiveState as S;

/// The allowed transitions, the one table: (action, from, to).
pub const TRANSITIONS: &[(LifecycleAction, &[ObjectiveState], ObjectiveState)] = &[
    (LifecycleAction::Activate, &[S::Draft], S::Active),
    (LifecycleAction::Pause, &[S::Active], S::Paused),
    (LifecycleAction::Resume, &[S::Paused], S::Active),
    (
        LifecycleAction::Cancel,
        &[S::Draft, S::Active, S::Paused],
        S::Cancelled,
    ),
    (
        LifecycleAction::Archive,
        &[S::Draft, S::Active, S::Paused, S::Cancelled],
        S::Archived,
    ),
];

/// The state `action` leads to from `from`, if allowed.
pub fn transition(action: LifecycleAction, from: ObjectiveState) -> Option<ObjectiveState> {
    TRANSITIONS
        .iter()
        .find(|(a, froms, _)| *a == action && froms.contains(&from))
        .map(|(_, _, to)| *to)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Budget {
    pub max_runs: Option<u64>,
    pub max_tokens: Option<u64>,
    /// Tokens per local day of the automation's time zone (UTC without one), at most;
    /// over it new runs are `skipped_budget` until midnight (`usage::budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub daily_tokens: Option<u64>,
    /// Tokens per local calendar month, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub monthly_tokens: Option<u64>,
    /// US dollars per local day, at most, priced with `usage.prices` (which must set a
    /// price); tokens of a model without a price have no cost (`usage::budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 1000000000)]
    pub daily_cost_usd: Option<crate::usage::budget::CostUsd>,
    /// US dollars per local calendar month, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 1000000000)]
    pub monthly_cost_usd: Option<crate::usage::budget::CostUsd>,
    /// The soft threshold of the daily and monthly limits, 1 to 100 percent (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub notify_at_percent: Option<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub runs: u64,
    pub tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Record missed firings only.
    #[default]
    Skip,
    /// Also run once if the newest missed firing is within one schedule interval.
    RunOnce,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// A firing while a run is going is recorded as skipped_overlap.
    #[default]
    Forbid,
    /// At most one firing waits for the run going.
    QueueOne,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Automation {
    /// Cron (5 fields, or 6 with seconds first) or a macro such as `@daily`.
    pub schedule: String,
    /// IANA time zone, default UTC.
    pub timezone: String,
    pub misfire: Misfire,
    pub overlap: Overlap,
    /// Random delay up to this many seconds added to each firing.
    pub jitter_s: u32,
    pub enabled: bool,
}

/// How a run that failed is tried again (`retry.rs`): at most `max_attempts` attempts
/// in all, the first retry `backoff_s` after the failure and each next one twice as
/// long after the one before, never past the next scheduled firing, the run's deadline
/// or the budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included: 1 to 10.
    #[schema(minimum = 1, maximum = 10)]
    pub max_attempts: u32,
    /// The wait before the first retry: 0 to 3600 seconds.
    #[schema(maximum = 3600)]
    pub backoff_s: u32,
}

/// Consecutive failed runs after which an objective pauses, when not set.
pub const DEFAULT_PAUSE_AFTER_FAILURES: u32 = 10;

fn default_pause_after_failures() -> u32 {
    DEFAULT_PAUSE_AFTER_FAILURES
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunSummary {
    pub run_id: String,
    pub status: RunStatus,
    #[serde(serialize_with = "crate::time::rfc3339::serialize")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectiveRecord {
    pub objective_id: String,
    pub agent_id: String,
    pub kind: ObjectiveKind,
    pub state: ObjectiveState,
    pub name: String,
    pub prompt: String,
    /// Program steps, run in order per firing.
    pub steps: Vec<String>,
    pub priority: i32,
    pub budget: Budget,
    pub usage: Usage,
    pub automation: Option<Automation>,
    pub state_reason: Option<String>,
    pub last_run: Option<RunSummary>,
    #[serde(serialize_with = "crate::time::rfc3339::option")]
    pub next_run_at: Option<DateTime<Utc>>,
    /// Sequence number of the newest run.
    pub run_seq: u64,
    /// The latest scheduled instant claimed (run or recorded): the schedule never
    /// hands it out again, whichever node (and clock) computes the next firing.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::time::rfc3339::option"
    )]
    pub last_scheduled_for: Option<DateTime<Utc>>,
    /// Retries of a failed run; none: a failed run is not tried again.
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// The whole run (every step, every attempt, the waits between) at most this long;
    /// a run past it is `failed` with `deadline_exceeded`. None: each provider call is
    /// bounded by `objectives.provider_timeout_s` alone.
    #[serde(default)]
    pub deadline_s: Option<u32>,
    /// After this many failed runs in a row the objective pauses with
    /// `state_reason: "consecutive_failures"`; 0 never pauses.
    #[serde(default = "default_pause_after_failures")]
    pub pause_after_failures: u32,
    /// Failed runs since the last one that succeeded.
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(serialize_with = "crate::time::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl StoredRecord for ObjectiveRecord {
    const TABLE: Table = Table::Objectives;
    const VERSION: u32 = 1;
    // A standing order with a short prompt and no steps takes about 720 bytes.
    const SIZE_HINT: usize = 1024;
}

impl ObjectiveRecord {
    /// Whether the usage has reached either limit of the budget.
    pub(crate) fn budget_exhausted(&self) -> bool {
        self.budget.max_runs.is_some_and(|m| self.usage.runs >= m)
            || self
                .budget
                .max_tokens
                .is_some_and(|m| self.usage.tokens >= m)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    Schedule,
    Manual,
    CatchUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    SkippedBudget,
    SkippedOverlap,
    Missed,
    Interrupted,
    /// Stopped by a cancel of the run, or a pause or cancel of its objective: its
    /// provider call was dropped.
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 9] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::SkippedBudget,
        RunStatus::SkippedOverlap,
        RunStatus::Missed,
        RunStatus::Interrupted,
        RunStatus::Cancelled,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunRecord {
    pub run_id: String,
    pub objective_id: String,
    pub trigger: RunTrigger,
    pub status: RunStatus,
    #[serde(serialize_with = "crate::time::rfc3339::option")]
    pub scheduled_for: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::time::rfc3339::option")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::time::rfc3339::option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Total tokens (what budgets count): `prompt_tokens + completion_tokens`.
    pub tokens: u64,
    /// Input tokens over every call of the run.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens over every call of the run.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Every candidate tried (or passed over), in order, across the run's steps.
    #[serde(default)]
    pub attempts: Vec<RunAttempt>,
    /// The assistant's answer, capped.
    pub output: Option<String>,
    pub error: Option<String>,
    /// The node that ran it (several nodes on one database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// How late it started after its scheduled instant, when it was found late after a
    /// takeover (`cluster.late_fire_threshold_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_by_ms: Option<i64>,
    /// Retries taken after failed attempts (`retry`).
    #[serde(default)]
    pub retries: u32,
    /// When the firing was claimed as a `queued` run, for a run that waited for a
    /// slot (over a concurrency cap); `started_at` is when it ran. (A firing that
    /// waited for the run before it, overlap `queue_one`, shows it while queued.)
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::time::rfc3339::option"
    )]
    pub queued_at: Option<DateTime<Utc>>,
    /// Each model turn, each tool call and the final answer, of a run whose agent
    /// enables tools (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<super::transcript::TranscriptEntry>,
}

/// One provider call of a run (or a candidate passed over without one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunAttempt {
    pub profile_id: String,
    pub model: String,
    pub outcome: AttemptOutcome,
    /// From sending the request to the classified answer; 0 for a skip.
    pub latency_ms: u64,
    /// Why it failed or was skipped; a sentence, never a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The profile's provider, for a call that was answered (the usage rollup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Input tokens of this call's answer (0 unless it was answered).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prompt_tokens: u64,
    /// Output tokens of this call's answer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub completion_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What an attempt came to: the adapter's classification, or a skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Ok,
    RateLimited,
    Unavailable,
    Auth,
    Billing,
    BadRequest,
    /// Not called: the profile was unusable (needs reauth, cooling down, missing).
    Skipped,
}

impl StoredRecord for RunRecord {
    const TABLE: Table = Table::Runs;
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectivePage {
    pub items: Vec<ObjectiveRecord>,
    pub next_after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentPage {
    pub items: Vec<AgentRecord>,
    pub next_after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunPage {
    pub items: Vec<RunRecord>,
    /// Pass as `before` for older runs.
    pub next_before: Option<String>,
}

/// Largest stored run output.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024;

/// A run's key: the objective id, a zero byte and the big-endian sequence number, so
/// an objective's history is one ordered range.
pub(crate) fn run_key(objective_id: &str, seq: u64) -> Vec<u8> {
    let mut key = run_prefix(objective_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The prefix every run key of the objective starts with.
pub(crate) fn run_prefix(objective_id: &str) -> Vec<u8> {
    let mut key = objective_id.as_bytes().to_vec();
    key.push(0);
    key
}

/// The write of an objective as it is.
pub(crate) fn objective_op(objective: &ObjectiveRecord) -> WriteOp {
    WriteOp::put(objective.objective_id.as_bytes().to_vec(), objective)
}

/// A new run of `objective` (its sequence number taken).
pub(crate) fn new_run(
    objective: &mut ObjectiveRecord,
    trigger: RunTrigger,
    status: RunStatus,
    scheduled_for: Option<DateTime<Utc>>,
    error: Option<String>,
) -> RunRecord {
    objective.run_seq += 1;
    let now = to_datetime(now_ms());
    let finished = !matches!(status, RunStatus::Running | RunStatus::Queued);
    RunRecord {
        run_id: format!("{}-{}", objective.objective_id, objective.run_seq),
        objective_id: objective.objective_id.clone(),
        trigger,
        status,
        scheduled_for,
        started_at: (status == RunStatus::Running).then_some(now),
        finished_at: finished.then_some(now),
        tokens: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        attempts: Vec::new(),
        output: None,
        error,
        node_id: None,
        late_by_ms: None,
        retries: 0,
        queued_at: (status == RunStatus::Queued).then_some(now),
        transcript: Vec::new(),
    }
}

/// The writes of a run: the run, and the pruning of the run that falls out of the
/// retained history.
pub(crate) fn run_ops(
    objective: &ObjectiveRecord,
    run: &RunRecord,
    retention: u64,
) -> Vec<WriteOp> {
    let seq = objective.run_seq;
    // A new run's row must not exist: with the objective's compare-and-set in the same
    // write, and PostgreSQL's unique (objective_id, scheduled_for), two nodes cannot
    // both record one firing.
    let mut ops = vec![WriteOp::insert_if_absent(
        run_key(&objective.objective_id, seq),
        run,
    )];
    if seq > retention {
        ops.push(WriteOp::delete(
            Table::Runs,
            run_key(&objective.objective_id, seq - retention),
        ));
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keys_order_by_sequence_within_one_objective() {
        // Big-endian sequence numbers: byte order is numeric order, so history is one
        // ordered range and `run_prefix` never matches another objective's runs.
        assert!(run_key("o", 9) < run_key("o", 10));
        assert!(run_key("o", 255) < run_key("o", 256));
        assert!(run_key("o", 1).starts_with(&run_prefix("o")));
        assert!(!run_key("o.b", 1).starts_with(&run_prefix("o")));
    }

    #[test]
    fn rows_written_before_candidates_and_attempts_still_read() {
        let agent: AgentRecord = serde_json::from_value(serde_json::json!({
            "agent_id": "a1", "display_name": "A", "workspace_roots": [],
            "default_model_profile": "p1", "model": "m",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        assert_eq!(
            agent.candidates(),
            [(Some("p1".to_owned()), "m".to_owned())]
        );
        let run: RunRecord = serde_json::from_value(serde_json::json!({
            "run_id": "o-1", "objective_id": "o", "trigger": "manual", "status": "succeeded",
            "scheduled_for": null, "started_at": null, "finished_at": null, "tokens": 9,
            "output": null, "error": null
        }))
        .unwrap();
        assert_eq!(
            (
                run.tokens,
                run.prompt_tokens,
                run.completion_tokens,
                run.attempts.len()
            ),
            (9, 0, 0, 0)
        );
    }

    #[test]
    fn archived_is_final_and_fire_is_no_transition() {
        use LifecycleAction as A;
        for action in [
            A::Activate,
            A::Pause,
            A::Resume,
            A::Cancel,
            A::Archive,
            A::Fire,
        ] {
            assert_eq!(transition(action, S::Archived), None);
        }
        for state in [S::Draft, S::Active, S::Paused, S::Cancelled] {
            assert_eq!(transition(A::Fire, state), None);
        }
        assert_eq!(transition(A::Activate, S::Draft), Some(S::Active));
        assert_eq!(transition(A::Resume, S::Paused), Some(S::Active));
        assert_eq!(transition(A::Cancel, S::Cancelled), None);
    }
}
