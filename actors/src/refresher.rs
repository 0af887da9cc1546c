//! The refresher actor: keeps every OAuth profile's tokens fresh in the background.
//!
//! One timer structure for all profiles: the shared [`DueHeap`] of due times and one
//! actix timer armed for the earliest. Nothing polls; with nothing due, the actor
//! sleeps. Refreshes are single-flight per profile: a manual refresh joins the one in
//! flight. Results become durable through the registry, which then tells this actor
//! the profile's new schedule.
//!
//! On several nodes, background refreshes run only on the node that holds the
//! profile's shard (the schedule follows `ClusterHandle::watch_owned`), and every
//! refresh, background or manual, first claims the profile in the database
//! (`registry/refresh_claim.rs`): one that another node claimed is joined, not redeemed
//! again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use palyra_storage::StorageError;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::cluster::ClusterHandle;
use crate::due_heap::DueHeap;
use crate::due_timer::{DueTimer, TimedActor, arm};
use crate::error::{ActorError, stopped};
use crate::oauth::{
    OAuthRefreshAdapter, OAuthRefreshOutcome, StandardRefreshAdapter, compute_backoff_ms,
};
use crate::refresh_schedule::{ScheduleChange, ScheduleEntry};
use crate::registry::handle::RegistryHandle;
use crate::registry::model::AuthProfile;
use crate::registry::oauth_refresh::RefreshResult;
use crate::registry::refresh_claim::{ClaimAnswer, Claimed, Joined};
use crate::time::{now_ms, to_datetime};

/// How a refresh ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefreshOutcomeKind {
    Succeeded,
    TransientFailure,
    PermanentFailure,
}

/// The outcome of one refresh and the profile after it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefreshReport {
    pub outcome: RefreshOutcomeKind,
    /// Why it failed (sanitized).
    pub reason: Option<String>,
    pub profile: AuthProfile,
}

/// The refresh adapter of each provider, with a default for providers without one.
#[derive(Clone)]
pub struct RefreshAdapters {
    pub default: Arc<dyn OAuthRefreshAdapter>,
    pub per_provider: HashMap<String, Arc<dyn OAuthRefreshAdapter>>,
}

impl std::fmt::Debug for RefreshAdapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshAdapters")
            .field(
                "per_provider",
                &self.per_provider.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RefreshAdapters {
    /// The standard RFC 6749 adapter for every provider, on the daemon's outbound
    /// client.
    pub fn standard(http: reqwest::Client) -> Self {
        Self {
            default: Arc::new(StandardRefreshAdapter::new(http)),
            per_provider: HashMap::new(),
        }
    }

    fn for_provider(&self, provider: &str) -> Arc<dyn OAuthRefreshAdapter> {
        self.per_provider
            .get(provider)
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.default))
    }
}

/// Timing and limits of the refresher.
#[derive(Debug, Clone)]
pub struct RefresherPolicy {
    /// Refresh this long before expiry.
    pub lead: Duration,
    /// Most refreshes in flight at once.
    pub max_in_flight: usize,
    /// A token without expiry (and with a refresh token) is refreshed this long after
    /// its last refresh (`oauth.refresh_without_expiry_s`).
    pub refresh_without_expiry: Duration,
}

/// Counters for the bench tool.
#[derive(Debug, Default)]
pub struct RefresherStats {
    pub completed: AtomicU64,
    pub peak_in_flight: AtomicU64,
}

/// Handle to the refresher actor. Cloning is shallow.
#[derive(Clone)]
pub struct RefresherHandle {
    addr: Addr<RefresherActor>,
    stats: Arc<RefresherStats>,
}

impl std::fmt::Debug for RefresherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefresherHandle").finish_non_exhaustive()
    }
}

impl RefresherHandle {
    /// Starts the refresher inside the actix System; it loads every OAuth profile's
    /// schedule from the registry and subscribes to its changes.
    pub fn start(
        registry: RegistryHandle,
        policy: RefresherPolicy,
        adapters: RefreshAdapters,
        cluster: ClusterHandle,
    ) -> Self {
        let stats = Arc::new(RefresherStats::default());
        let actor = RefresherActor {
            registry,
            cluster,
            entries: HashMap::new(),
            policy,
            adapters,
            draining: false,
            due: DueHeap::default(),
            timer: DueTimer::default(),
            in_flight: HashMap::new(),
            waiting: VecDeque::new(),
            stats: Arc::clone(&stats),
        };
        Self {
            addr: actor.start(),
            stats,
        }
    }

    /// Refreshes now, or joins the refresh in flight, and returns its outcome.
    pub async fn refresh_now(&self, profile_id: &str) -> Result<RefreshReport, ActorError> {
        let answer = self
            .addr
            .send(RefreshNow(profile_id.to_owned()))
            .await
            .map_err(stopped("refresher"))?;
        answer.await.map_err(stopped("refresher"))?
    }

    /// At shutdown: starts no new refresh and waits (up to `limit`) for the ones in
    /// flight, so a rotated refresh token is stored before the writer stops.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let Ok(in_flight) = self.addr.send(Drain).await else {
                return;
            };
            if in_flight == 0 || tokio::time::Instant::now() >= deadline {
                if in_flight > 0 {
                    tracing::warn!(in_flight, "stopping with OAuth refreshes in flight");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stats(&self) -> &RefresherStats {
        &self.stats
    }

    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }
}

type Waiter = oneshot::Sender<Result<RefreshReport, ActorError>>;

struct RefresherActor {
    registry: RegistryHandle,
    /// Which profiles' background refreshes are this node's (their shard's lease).
    cluster: ClusterHandle,
    /// Every OAuth profile's schedule as the registry sent it, owned here or not, so
    /// a shard gained is scheduled at once.
    entries: HashMap<String, ScheduleEntry>,
    policy: RefresherPolicy,
    adapters: RefreshAdapters,
    /// Set at shutdown: no new refresh starts.
    draining: bool,
    /// The due time of every scheduled profile, by profile id.
    due: DueHeap<String, ()>,
    /// The one timer, armed for the earliest due time.
    timer: DueTimer,
    /// Profiles being refreshed, with whoever waits for the outcome.
    in_flight: HashMap<String, Vec<Waiter>>,
    /// Due profiles held back by the concurrency cap.
    waiting: VecDeque<String>,
    stats: Arc<RefresherStats>,
}

impl TimedActor for RefresherActor {
    fn timer(&mut self) -> &mut DueTimer {
        &mut self.timer
    }

    fn on_due(&mut self, ctx: &mut Context<Self>) {
        self.fire(ctx);
    }
}

impl Actor for RefresherActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Shards gained or lost: schedule what is now ours, drop what is not. On one
        // node every shard is owned from the start and the watch never changes.
        let mut owned = self.cluster.watch_owned();
        let me = ctx.address().downgrade();
        tokio::spawn(async move {
            while owned.changed().await.is_ok() {
                let Some(addr) = me.upgrade() else { break };
                if addr.send(OwnedChanged).await.is_err() {
                    break;
                }
            }
        });
        let registry = self.registry.clone();
        let me = ctx.address().recipient();
        ctx.spawn(
            async move {
                registry.attach_refresher(me).await?;
                registry.oauth_schedule().await
            }
            .into_actor(self)
            .map(|entries, act, ctx| match entries {
                Ok(entries) => {
                    for entry in entries {
                        act.schedule(entry);
                    }
                    act.arm(ctx);
                }
                Err(e) => tracing::error!(error = %e, "refresher cannot load the schedule"),
            }),
        );
    }
}

impl RefresherActor {
    /// Puts a profile on the heap at its due time (or takes it off): only if this node
    /// holds its shard.
    fn schedule(&mut self, entry: ScheduleEntry) {
        let owned = self.cluster.owns(entry.profile_id.as_bytes());
        match self.due_ms(&entry).filter(|_| owned) {
            Some(due) => {
                self.due.schedule(entry.profile_id.clone(), due, ());
            }
            None => {
                self.due.remove(&entry.profile_id);
            }
        }
        self.entries.insert(entry.profile_id.clone(), entry);
    }

    /// When to refresh: the backoff's next try after a failure; otherwise `lead`
    /// before expiry, but never sooner than halfway to expiry (a token that lives
    /// shorter than the lead must not be refreshed in a loop), nor sooner than a second.
    /// Without a refresh token, never; without an expiry, the configured interval after
    /// the last success.
    fn due_ms(&self, entry: &ScheduleEntry) -> Option<i64> {
        if entry.needs_reauth || !entry.refreshable {
            return None;
        }
        if let Some(next) = entry.next_attempt_at {
            return Some(next.timestamp_millis());
        }
        let now = now_ms();
        let Some(expires_at) = entry.expires_at else {
            let interval = i64::try_from(self.policy.refresh_without_expiry.as_millis())
                .unwrap_or(i64::MAX / 2);
            let since = entry.last_success_at.map_or(now, |t| t.timestamp_millis());
            return Some(since.saturating_add(interval).max(now + 1_000));
        };
        let expires = expires_at.timestamp_millis();
        let lead = i64::try_from(self.policy.lead.as_millis()).unwrap_or(i64::MAX);
        let halfway = now + (expires - now) / 2;
        Some((expires.saturating_sub(lead)).max(halfway).max(now + 1_000))
    }

    /// Arms the one timer for the earliest live entry.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        let due = self.due.next_due();
        arm(self, due, ctx);
    }

    /// Starts every refresh that is due, then re-arms the timer.
    fn fire(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        while let Some((id, _, ())) = self.due.pop_due(now) {
            // A lease lost since it was scheduled: the new owner refreshes it.
            if !self.in_flight.contains_key(&id) && self.cluster.owns(id.as_bytes()) {
                self.waiting.push_back(id);
            }
        }
        self.start_waiting(ctx);
        self.arm(ctx);
    }

    fn start_waiting(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        while self.in_flight.len() < self.policy.max_in_flight.max(1) {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            if !self.in_flight.contains_key(&id) {
                self.start_refresh(id, true, ctx);
            }
        }
    }

    /// `background`: started by the schedule, so fenced by the shard's lease.
    fn start_refresh(&mut self, id: String, background: bool, ctx: &mut Context<Self>) {
        self.in_flight.insert(id.clone(), Vec::new());
        let peak = self.in_flight.len() as u64;
        self.stats.peak_in_flight.fetch_max(peak, Ordering::Relaxed);
        let registry = self.registry.clone();
        let adapters = self.adapters.clone();
        let cluster = background.then(|| self.cluster.clone());
        let profile_id = id.clone();
        // The refresh (an HTTP call and a registry round trip) runs on the tokio
        // workers, not on the actors' thread; the actor only awaits its outcome.
        let task = tokio::spawn(async move {
            refresh_once(&registry, &adapters, cluster.as_ref(), &profile_id).await
        });
        ctx.spawn(
            async move {
                task.await
                    .map_err(stopped("refresher"))
                    .and_then(std::convert::identity)
            }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.stats.completed.fetch_add(1, Ordering::Relaxed);
                    match &result {
                        // Gone, or waiting for a new sign-in: nothing to retry. A conflict
                        // (another node's claim, a lease lost): the registry re-sends the
                        // schedule when that node's outcome arrives.
                        Err(ActorError::NotFound { .. } | ActorError::RefreshRefused(_) | ActorError::Conflict(_)) | Ok(_) => {}
                        Err(e) => {
                            // The refresh could not even run (storage, vault): try again
                            // later rather than dropping the profile from the schedule.
                            // Soon when the database was unreachable (back from a restart
                            // in seconds, and a try while it is down is refused at once);
                            // otherwise (a vault key not here yet) at a slower pace.
                            let retry_in_ms = match e {
                                ActorError::Storage(StorageError::Unavailable { .. }) => UNREACHABLE_RETRY_MS,
                                _ => COULD_NOT_RUN_RETRY_MS,
                            };
                            tracing::warn!(profile_id = %id, error = %e, retry_in_ms, "refresh could not run; retrying");
                            if !act.due.contains(&id) && act.cluster.owns(id.as_bytes()) {
                                act.due.schedule(id.clone(), now_ms() + retry_in_ms, ());
                                act.arm(ctx);
                            }
                        }
                    }
                    for waiter in act.in_flight.remove(&id).unwrap_or_default() {
                        let _ = waiter.send(result.clone());
                    }
                    act.start_waiting(ctx);
                }),
        );
    }
}

/// One refresh: claim it (or join the one another node claimed), redeem the refresh
/// token, make the result durable. `cluster` (a background refresh) fences the claim
/// with the shard's lease.
async fn refresh_once(
    registry: &RegistryHandle,
    adapters: &RefreshAdapters,
    cluster: Option<&ClusterHandle>,
    profile_id: &str,
) -> Result<RefreshReport, ActorError> {
    // A claim that expires unfinished is taken over; twice more at most.
    for _ in 0..3 {
        let fence = match cluster {
            Some(cluster) => match cluster.claim(profile_id.as_bytes()) {
                Some(claim) => claim.fence_op(),
                None => {
                    return Err(ActorError::Conflict(
                        "another node holds this profile's shard now".into(),
                    ));
                }
            },
            None => None,
        };
        match registry.claim_refresh(profile_id, fence).await? {
            ClaimAnswer::Claimed(claimed) => {
                return redeem(registry, adapters, profile_id, *claimed).await;
            }
            ClaimAnswer::InFlight { generation } => {
                if let Some(joined) = registry.await_refresh(profile_id, generation).await? {
                    return Ok(joined_report(joined));
                }
                tracing::warn!(%profile_id, "a refresh claim expired unfinished (its node died or hung); taking it over");
            }
        }
    }
    Err(ActorError::Conflict(
        "the refresh kept being claimed by other nodes; retry".into(),
    ))
}

/// The outcome of a refresh another node (or an earlier claim of this one) made.
fn joined_report(joined: Joined) -> RefreshReport {
    let state = match &joined.profile.record.credential {
        crate::registry::model::AuthCredential::Oauth { refresh_state, .. } => Some(refresh_state),
        crate::registry::model::AuthCredential::ApiKey { .. } => None,
    };
    let (outcome, reason) = match state {
        _ if joined.succeeded => (RefreshOutcomeKind::Succeeded, None),
        Some(s) if s.needs_reauth => (RefreshOutcomeKind::PermanentFailure, s.last_error.clone()),
        s => (
            RefreshOutcomeKind::TransientFailure,
            s.and_then(|s| s.last_error.clone()),
        ),
    };
    RefreshReport {
        outcome,
        reason,
        profile: joined.profile,
    }
}

/// When a refresh that could not run (the database unreachable; anything else) is
/// tried again.
const UNREACHABLE_RETRY_MS: i64 = 5_000;
const COULD_NOT_RUN_RETRY_MS: i64 = 30_000;

/// The first wait before storing a refresh's outcome again; doubled up to
/// [`STORE_RETRY_MAX`].
const STORE_RETRY_FIRST: Duration = Duration::from_millis(200);
const STORE_RETRY_MAX: Duration = Duration::from_secs(2);
/// How long past the claim's end a refresh's outcome is still tried.
const STORE_RETRY_PAST_CLAIM: Duration = Duration::from_secs(300);

/// Redeems the refresh token this node claimed and stores the outcome.
async fn redeem(
    registry: &RegistryHandle,
    adapters: &RefreshAdapters,
    profile_id: &str,
    claimed: Claimed,
) -> Result<RefreshReport, ActorError> {
    let Claimed {
        input,
        generation,
        until_ms,
    } = claimed;
    // With the client secret opened from the vault; zeroized when dropped below.
    let (_, settings) = registry
        .oauth_client(&input.provider)
        .await
        .map_err(|e| ActorError::RefreshRefused(e.to_string()))?;
    let started_at = to_datetime(now_ms());
    let adapter = adapters.for_provider(&input.provider);
    let outcome = adapter.refresh(&settings, &input.refresh_token).await;
    drop(input.refresh_token);
    let now = to_datetime(now_ms());
    let (result, kind, reason) = match outcome {
        OAuthRefreshOutcome::Success(tokens) => {
            let expires_at = tokens.expires_in.map(|s| {
                now + chrono::Duration::seconds(
                    i64::try_from(s).unwrap_or(i64::MAX).min(10 * 365 * 86_400),
                )
            });
            (
                RefreshResult::Success {
                    access_token: tokens.access_token,
                    refresh_token: tokens.refresh_token,
                    expires_at,
                },
                RefreshOutcomeKind::Succeeded,
                None,
            )
        }
        OAuthRefreshOutcome::TransientFailure {
            reason,
            retry_after_s,
        } => {
            let attempt = input.refresh_state.failure_count.saturating_add(1);
            let mut delay_ms = compute_backoff_ms(&settings, attempt);
            if let Some(retry) = retry_after_s {
                // Honour Retry-After, up to the backoff cap.
                delay_ms = delay_ms.max(retry.saturating_mul(1000).min(settings.backoff_cap_ms));
            }
            let mut next = now
                + chrono::Duration::milliseconds(i64::try_from(delay_ms).unwrap_or(i64::MAX / 2));
            if let Some(expiry) = input.expires_at.filter(|e| *e > now) {
                // Never back off past the expiry: one more try at it, after which the
                // health report shows the token as expired.
                next = next.min(expiry);
            }
            let rate_limited_until = retry_after_s.map(|s| {
                now + chrono::Duration::seconds(i64::try_from(s).unwrap_or(0).min(86_400))
            });
            (
                RefreshResult::Transient {
                    reason: reason.clone(),
                    next_attempt_at: next,
                    rate_limited_until,
                },
                RefreshOutcomeKind::TransientFailure,
                Some(reason),
            )
        }
        OAuthRefreshOutcome::PermanentFailure { reason } => {
            // The claim taken over had expired unfinished: its node may have redeemed
            // the token and died before storing the new one, and a rotating provider
            // refuses the old token now. Say so rather than a bare invalid_grant.
            let reason = if input.refresh_state.claim.is_some() {
                format!(
                    "{reason} (after taking over a refresh a node left unfinished: it may have redeemed the token before it stopped; sign in again)"
                )
            } else {
                reason
            };
            (
                RefreshResult::Permanent {
                    reason: reason.clone(),
                },
                RefreshOutcomeKind::PermanentFailure,
                Some(reason),
            )
        }
    };
    match kind {
        RefreshOutcomeKind::Succeeded => tracing::info!(%profile_id, "OAuth token refreshed"),
        RefreshOutcomeKind::TransientFailure => {
            tracing::warn!(%profile_id, reason = reason.as_deref().unwrap_or(""), "OAuth refresh failed; will retry")
        }
        RefreshOutcomeKind::PermanentFailure => {
            tracing::warn!(%profile_id, reason = reason.as_deref().unwrap_or(""), "OAuth refresh failed permanently; the profile needs a new sign-in")
        }
    }
    let profile = store_outcome(
        registry, profile_id, started_at, generation, until_ms, result,
    )
    .await?;
    Ok(RefreshReport {
        outcome: kind,
        reason,
        profile,
    })
}

/// Makes a refresh's outcome durable, trying again while the database is unreachable.
/// The provider may have rotated the refresh token already: the tokens in `result` may
/// be the only valid ones, and dropping them on a lost connection would leave the
/// profile needing a new sign-in. Trying again is safe because every try is a
/// compare-and-set on the row this node claimed (`RecordRefresh`): once another node
/// took the claim over, a try stores nothing and answers a conflict. Past the claim's
/// end that becomes likely, so the tries stop [`STORE_RETRY_PAST_CLAIM`] after it.
async fn store_outcome(
    registry: &RegistryHandle,
    profile_id: &str,
    started_at: chrono::DateTime<chrono::Utc>,
    generation: u64,
    until_ms: i64,
    result: RefreshResult,
) -> Result<AuthProfile, ActorError> {
    let give_up_at = until_ms
        .saturating_add(i64::try_from(STORE_RETRY_PAST_CLAIM.as_millis()).unwrap_or(i64::MAX));
    let mut wait = STORE_RETRY_FIRST;
    loop {
        let stored = registry
            .record_refresh(profile_id, started_at, generation, result.clone())
            .await;
        let Err(ActorError::Storage(e @ StorageError::Unavailable { .. })) = &stored else {
            return stored;
        };
        let retry_at = now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        if retry_at >= give_up_at {
            tracing::error!(%profile_id, error = %e, "the refresh's outcome could not be stored before giving up; the tokens it got are dropped and the profile may need a new sign-in");
            return stored;
        }
        tracing::warn!(%profile_id, error = %e, retry_in_ms = wait.as_millis(), "storing a refresh's outcome failed; trying again");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(STORE_RETRY_MAX);
    }
}

impl Handler<ScheduleChange> for RefresherActor {
    type Result = ();

    fn handle(&mut self, msg: ScheduleChange, ctx: &mut Self::Context) {
        match msg {
            ScheduleChange::Upsert(entry) => self.schedule(entry),
            ScheduleChange::Remove(id) => {
                self.due.remove(&id);
                self.entries.remove(&id);
            }
        }
        self.arm(ctx);
    }
}

/// Stop starting refreshes; answers how many are still in flight.
#[derive(Message)]
#[rtype(result = "usize")]
struct Drain;

impl Handler<Drain> for RefresherActor {
    type Result = usize;

    fn handle(&mut self, _msg: Drain, ctx: &mut Self::Context) -> usize {
        self.draining = true;
        arm(self, None, ctx);
        self.in_flight.len()
    }
}

#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Result<RefreshReport, ActorError>>")]
struct RefreshNow(String);

impl Handler<RefreshNow> for RefresherActor {
    type Result = MessageResult<RefreshNow>;

    fn handle(&mut self, RefreshNow(id): RefreshNow, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if self.draining {
            let _ = tx.send(Err(ActorError::Stopped("refresher")));
            return MessageResult(rx);
        }
        if !self.in_flight.contains_key(&id) {
            self.start_refresh(id.clone(), false, ctx);
        }
        if let Some(waiters) = self.in_flight.get_mut(&id) {
            waiters.push(tx);
        }
        MessageResult(rx)
    }
}

/// The shards this node holds changed.
#[derive(Message)]
#[rtype(result = "()")]
struct OwnedChanged;

impl Handler<OwnedChanged> for RefresherActor {
    type Result = ();

    fn handle(&mut self, _msg: OwnedChanged, ctx: &mut Self::Context) {
        let entries: Vec<ScheduleEntry> = self.entries.values().cloned().collect();
        for entry in entries {
            self.schedule(entry);
        }
        self.arm(ctx);
    }
}
