//! Provider-call cooldowns of profiles: the ladder each failure kind climbs, whether a
//! profile is usable now (and why not), and the messages a run sends after each call
//! (a success clears the cooldown; a failure sets or extends it, durably, in the
//! profile's row, so it holds across a restart and on every node).

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::actor::RegistryActor;
use super::model::{
    AuthCredential, AuthProfileRecord, Cooldown, CooldownReason, ResolveSkip, SkipReason,
};
use crate::error::ActorError;
use crate::time::{now_ms, to_datetime};
use crate::vault::Vault;

/// 30 s, 1 min, 5 min: rate limits without a Retry-After, and outages.
const SHORT_LADDER: [u64; 3] = [30, 60, 300];
/// Billing: 5 h doubling, at most 24 h.
const BILLING_FIRST_S: u64 = 5 * 3600;
const BILLING_CAP_S: u64 = 24 * 3600;

/// How long a cooldown at `step` (1-based) lasts.
pub(crate) fn ladder(reason: CooldownReason, step: u32, retry_after: Option<Duration>) -> Duration {
    let index = step.saturating_sub(1) as usize;
    match (reason, retry_after) {
        (CooldownReason::RateLimited, Some(after)) => after,
        (CooldownReason::RateLimited | CooldownReason::Unavailable, _) => {
            Duration::from_secs(SHORT_LADDER[index.min(SHORT_LADDER.len() - 1)])
        }
        (CooldownReason::Billing, _) => {
            let doubled = BILLING_FIRST_S.saturating_mul(1u64 << index.min(16));
            Duration::from_secs(doubled.min(BILLING_CAP_S))
        }
    }
}

/// The cooldown after a failure of `reason` at `now`, given the one the profile has.
/// A failure while a cooldown of the same kind still runs (another run's call that
/// was already in flight) extends it without climbing; one after it ended climbs.
pub(crate) fn next_cooldown(
    previous: Option<&Cooldown>,
    reason: CooldownReason,
    retry_after: Option<Duration>,
    message: &str,
    now: DateTime<Utc>,
) -> Cooldown {
    let step = match previous {
        Some(p) if p.reason == reason && p.until > now => p.step,
        Some(p) if p.reason == reason => p.step.saturating_add(1),
        _ => 1,
    };
    let lasts = ladder(reason, step, retry_after);
    let mut until = now + chrono::Duration::from_std(lasts).unwrap_or(chrono::Duration::zero());
    if let Some(p) = previous.filter(|p| p.reason == reason) {
        until = until.max(p.until);
    }
    Cooldown {
        reason,
        until,
        step,
        since: now,
        last_error: message.to_owned(),
    }
}

/// Why `record` cannot be used at `now`, or `None` when it can.
pub(crate) fn skip_of(
    record: &AuthProfileRecord,
    vault: &Vault,
    now: DateTime<Utc>,
) -> Option<ResolveSkip> {
    let skip = |reason, until, detail: String| {
        Some(ResolveSkip {
            profile_id: record.profile_id.clone(),
            reason,
            until,
            detail,
        })
    };
    let present = record
        .credential
        .vault_refs()
        .iter()
        .all(|r| vault.contains(r).unwrap_or(false));
    if !present {
        return skip(
            SkipReason::Missing,
            None,
            "its secret is missing from the vault".into(),
        );
    }
    let needs_reauth = match &record.credential {
        AuthCredential::ApiKey { rejected_at, .. } => rejected_at.is_some(),
        AuthCredential::Oauth { refresh_state, .. } => refresh_state.needs_reauth,
    };
    if needs_reauth {
        return skip(
            SkipReason::NeedsReauth,
            None,
            "the provider refused its credential; replace the key or sign in again".into(),
        );
    }
    if let Some(c) = record.cooldown.as_ref().filter(|c| c.until > now) {
        let reason = match c.reason {
            CooldownReason::RateLimited => SkipReason::RateLimited,
            CooldownReason::Unavailable | CooldownReason::Billing => SkipReason::CoolingDown,
        };
        let kind = match c.reason {
            CooldownReason::RateLimited => "rate-limited",
            CooldownReason::Unavailable => "cooling down after the provider failed",
            CooldownReason::Billing => "cooling down after a billing or quota error",
        };
        return skip(
            reason,
            Some(c.until),
            format!("{kind} until {} ({})", c.until.to_rfc3339(), c.last_error),
        );
    }
    None
}

/// Whether each of `profile_ids` is usable now: `None`, or why not.
#[derive(Message)]
#[rtype(result = "Vec<Option<ResolveSkip>>")]
pub(super) struct CheckUsable(pub(super) Vec<String>);

impl Handler<CheckUsable> for RegistryActor {
    type Result = MessageResult<CheckUsable>;

    fn handle(&mut self, CheckUsable(ids): CheckUsable, _ctx: &mut Self::Context) -> Self::Result {
        let now = to_datetime(now_ms());
        MessageResult(
            ids.into_iter()
                .map(|id| match self.profiles.get(&id) {
                    Some(record) => skip_of(record, &self.vault, now),
                    None => Some(ResolveSkip {
                        profile_id: id,
                        reason: SkipReason::Missing,
                        until: None,
                        detail: "no such auth profile".into(),
                    }),
                })
                .collect(),
        )
    }
}

/// What a run's call to a profile's provider came to, for its cooldown.
#[derive(Debug, Clone)]
pub enum CallNote {
    /// Answered: any cooldown ends.
    Succeeded,
    /// Failed in a way that cools the profile down.
    Failed {
        reason: CooldownReason,
        retry_after: Option<Duration>,
        message: String,
    },
}

#[derive(Message)]
#[rtype(result = "Result<Option<Cooldown>, ActorError>")]
pub(super) struct NoteCall(pub(super) String, pub(super) CallNote);

impl Handler<NoteCall> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<Option<Cooldown>, ActorError>>;

    fn handle(&mut self, NoteCall(id, note): NoteCall, _ctx: &mut Self::Context) -> Self::Result {
        let Some(mut record) = self.profiles.get(&id).cloned() else {
            return Box::pin(actix::fut::ready(Err(ActorError::NotFound {
                what: "auth profile",
                id,
            })));
        };
        let now = to_datetime(now_ms());
        let cooldown = match note {
            // Nothing to clear: no write, so a success costs nothing durable.
            CallNote::Succeeded if record.cooldown.is_none() => {
                return Box::pin(actix::fut::ready(Ok(None)));
            }
            CallNote::Succeeded => None,
            CallNote::Failed {
                reason,
                retry_after,
                message,
            } => Some(next_cooldown(
                record.cooldown.as_ref(),
                reason,
                retry_after,
                &message,
                now,
            )),
        };
        match &cooldown {
            Some(c) => {
                tracing::warn!(profile_id = %id, reason = ?c.reason, until = %c.until, "auth profile cools down")
            }
            None => {
                tracing::info!(profile_id = %id, "auth profile answered again; cooldown cleared")
            }
        }
        record.cooldown = cooldown.clone();
        record.updated_at = now;
        let ops = vec![self.sync.put_profile(&record)];
        self.apply_profile(record, Vec::new());
        Box::pin(
            self.commit(ops)
                .map(move |result, _, _| result.map(|()| cooldown)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn ladders_climb_and_cap() {
        use CooldownReason as R;
        let s = |d: Duration| d.as_secs();
        assert_eq!(s(ladder(R::Unavailable, 1, None)), 30);
        assert_eq!(s(ladder(R::Unavailable, 2, None)), 60);
        assert_eq!(s(ladder(R::Unavailable, 3, None)), 300);
        assert_eq!(s(ladder(R::Unavailable, 9, None)), 300);
        assert_eq!(s(ladder(R::RateLimited, 2, None)), 60);
        assert_eq!(
            s(ladder(R::RateLimited, 3, Some(Duration::from_secs(7)))),
            7
        );
        assert_eq!(s(ladder(R::Billing, 1, None)), 5 * 3600);
        assert_eq!(s(ladder(R::Billing, 2, None)), 10 * 3600);
        assert_eq!(s(ladder(R::Billing, 3, None)), 20 * 3600);
        assert_eq!(s(ladder(R::Billing, 4, None)), 24 * 3600);
    }

    #[test]
    fn a_failure_during_a_cooldown_extends_it_and_one_after_it_climbs() {
        let first = next_cooldown(None, CooldownReason::Unavailable, None, "500", at(0));
        assert_eq!((first.step, first.until), (1, at(30)));
        let during = next_cooldown(
            Some(&first),
            CooldownReason::Unavailable,
            None,
            "500",
            at(10),
        );
        assert_eq!((during.step, during.until), (1, at(40)));
        let after = next_cooldown(
            Some(&during),
            CooldownReason::Unavailable,
            None,
            "500",
            at(50),
        );
        assert_eq!((after.step, after.until), (2, at(110)));
        let other = next_cooldown(
            Some(&after),
            CooldownReason::RateLimited,
            None,
            "429",
            at(60),
        );
        assert_eq!((other.step, other.until), (1, at(90)));
    }
}
