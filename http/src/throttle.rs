//! Throttling of failed authentication (a wrong admin token, API token or password),
//! per peer and per operator id: after `max_failures` within `window`, the key gets
//! 429 until the oldest failure leaves the window. A loopback peer with the right
//! credential is let in even while throttled (see `auth.rs`), so wrong attempts from
//! the host cannot lock its own operator out. Also the request rates per peer.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Beyond this many tracked peers, peers with no recent failure are forgotten.
const MAX_TRACKED_PEERS: usize = 10_000;

/// Failed attempts per key (a peer, an operator id): after `max_failures` within
/// `window`, the key gets 429 until the oldest failure leaves the window.
#[derive(Debug)]
pub struct KeyedThrottle<K> {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: std::hash::Hash + Eq + Clone> KeyedThrottle<K> {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after_s)` when `key` must wait before trying again.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = map.get_mut(key) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() < self.max_failures {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        let wait = self.window.saturating_sub(now.duration_since(oldest));
        Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    }

    /// Records one failed attempt under `key`.
    pub fn record_failure(&self, key: K) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED_PEERS && !map.contains_key(&key) {
            let window = self.window;
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let times = map.entry(key).or_default();
        times.push_back(now);
        while times.len() > self.max_failures {
            times.pop_front();
        }
    }
}

/// How many more failures a whole IPv6 /48 may have than one of its /64s.
const SITE_FACTOR: usize = 4;

/// Failed authentication per peer, counted by [`crate::request::peer_key`] (an IPv6
/// /64) and by [`crate::request::peer_site_key`] (its /48, with [`SITE_FACTOR`]
/// times the budget).
#[derive(Debug)]
pub struct AuthThrottle {
    by_peer: KeyedThrottle<IpAddr>,
    by_site: KeyedThrottle<IpAddr>,
}

impl AuthThrottle {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            by_peer: KeyedThrottle::new(max_failures, window),
            by_site: KeyedThrottle::new(max_failures.saturating_mul(SITE_FACTOR), window),
        }
    }

    /// `Err(retry_after_s)` when `peer` must wait before trying again.
    pub fn check(&self, peer: IpAddr) -> Result<(), u64> {
        let by_peer = self.by_peer.check(&crate::request::peer_key(peer));
        let by_site = self.by_site.check(&crate::request::peer_site_key(peer));
        match (by_peer, by_site) {
            (Ok(()), Ok(())) => Ok(()),
            (a, b) => Err(a.err().max(b.err()).unwrap_or(1)),
        }
    }

    /// Records one failed attempt by `peer`.
    pub fn record_failure(&self, peer: IpAddr) {
        self.by_peer.record_failure(crate::request::peer_key(peer));
        self.by_site
            .record_failure(crate::request::peer_site_key(peer));
    }
}

/// Audit events of unauthenticated failures per window, from all peers together.
pub const FAILURE_EVENTS_PER_WINDOW: usize = 100;
/// The window of [`FAILURE_EVENTS_PER_WINDOW`].
pub const FAILURE_EVENTS_WINDOW: Duration = Duration::from_secs(60);

/// The global budget of audit events for unauthenticated failures (wrong tokens and
/// passwords from anywhere): at most `max` a window; the excess is counted and folded
/// into one summary event, so a distributed flood cannot push real events out of the
/// audit log's retention.
#[derive(Debug)]
pub struct AuditBudget {
    max: usize,
    window: Duration,
    // Window start, events recorded in it, events folded.
    state: Mutex<(Instant, usize, usize)>,
}

/// What to do with one unauthenticated failure's event.
#[derive(Debug, PartialEq, Eq)]
pub enum BudgetVerdict {
    /// Record it.
    Record,
    /// Record it, after a summary of `folded` events of the window before.
    RecordAfterSummary { folded: usize },
    /// Count it only.
    Fold,
}

impl AuditBudget {
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Decides one failure's event.
    pub fn admit(&self) -> BudgetVerdict {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut folded_before = 0;
        if now.duration_since(state.0) >= self.window {
            folded_before = state.2;
            *state = (now, 0, 0);
        }
        if state.1 >= self.max {
            state.2 += 1;
            return BudgetVerdict::Fold;
        }
        state.1 += 1;
        match folded_before {
            0 => BudgetVerdict::Record,
            folded => BudgetVerdict::RecordAfterSummary { folded },
        }
    }

    /// The events folded in a window that has ended, once (the periodic summary).
    pub fn take_folded(&self) -> usize {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(state.0) < self.window || state.2 == 0 {
            return 0;
        }
        let folded = state.2;
        *state = (now, 0, 0);
        folded
    }
}

/// Request rates per peer address for the admin API (GCRA, from `governor`): one
/// quota for loopback peers and a stricter one for everyone else.
#[derive(Debug)]
pub struct RateLimits {
    loopback: governor::DefaultKeyedRateLimiter<IpAddr>,
    remote: governor::DefaultKeyedRateLimiter<IpAddr>,
}

impl RateLimits {
    /// Forgets peers whose quota has fully refilled (they carry no information); run
    /// periodically, never on the request path.
    pub fn forget_idle_peers(&self) {
        self.loopback.retain_recent();
        self.remote.retain_recent();
        self.loopback.shrink_to_fit();
        self.remote.shrink_to_fit();
    }
}

/// A sustained rate per second and a burst.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_s: u32,
    pub burst: u32,
}

impl RateLimits {
    pub fn new(loopback: Rate, remote: Rate) -> Self {
        let quota = |rate: Rate| {
            let per_s = std::num::NonZeroU32::new(rate.per_s).unwrap_or(std::num::NonZeroU32::MIN);
            let burst = std::num::NonZeroU32::new(rate.burst).unwrap_or(std::num::NonZeroU32::MIN);
            governor::Quota::per_second(per_s).allow_burst(burst)
        };
        Self {
            loopback: governor::RateLimiter::keyed(quota(loopback)),
            remote: governor::RateLimiter::keyed(quota(remote)),
        }
    }

    /// `Err(retry_after_s)` when `peer` is over its rate.
    pub fn check(&self, peer: IpAddr) -> Result<(), u64> {
        let limiter = if peer.is_loopback() {
            &self.loopback
        } else {
            &self.remote
        };
        limiter
            .check_key(&crate::request::peer_key(peer))
            .map_err(|not_until| {
                use governor::clock::Clock;
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_budget_folds_the_excess_into_one_summary() {
        let budget = AuditBudget::new(2, Duration::from_millis(50));
        assert_eq!(budget.admit(), BudgetVerdict::Record);
        assert_eq!(budget.admit(), BudgetVerdict::Record);
        assert_eq!(budget.admit(), BudgetVerdict::Fold);
        assert_eq!(budget.admit(), BudgetVerdict::Fold);
        assert_eq!(budget.take_folded(), 0, "the window is still open");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            budget.admit(),
            BudgetVerdict::RecordAfterSummary { folded: 2 }
        );
        assert_eq!(budget.admit(), BudgetVerdict::Record);
        assert_eq!(budget.admit(), BudgetVerdict::Fold);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(budget.take_folded(), 1);
        assert_eq!(budget.take_folded(), 0, "summarised once");
    }

    #[test]
    fn ipv6_failures_count_per_64_and_per_48() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(60));
        // Eight /64s of one /48: each has room, the /48 runs out after 2 x 4.
        for i in 0..8u16 {
            let peer: IpAddr = format!("2001:db8:7:{i:x}::1").parse().unwrap();
            assert!(throttle.check(peer).is_ok(), "{peer}");
            throttle.record_failure(peer);
        }
        let fresh_64: IpAddr = "2001:db8:7:ff::1".parse().unwrap();
        assert!(
            throttle.check(fresh_64).is_err(),
            "the /48 is over its budget"
        );
        let other_48: IpAddr = "2001:db8:8::1".parse().unwrap();
        assert!(throttle.check(other_48).is_ok());
    }

    #[test]
    fn ipv6_peers_share_their_64_and_mapped_loopback_is_loopback() {
        let limits = RateLimits::new(
            Rate {
                per_s: 1,
                burst: 100,
            },
            Rate { per_s: 1, burst: 1 },
        );
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.check(a).is_ok());
        assert!(limits.check(b).is_err(), "the same /64 shares one quota");
        assert!(limits.check(other).is_ok(), "another /64 has its own");

        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let mut ext = axum::http::Extensions::new();
        ext.insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
            mapped, 4000,
        )));
        let peer = crate::request::peer_ip(&ext);
        assert!(peer.is_loopback(), "{peer}");
        assert_eq!(peer.to_string(), "127.0.0.1");
    }
}
