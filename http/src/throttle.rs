//! Per-peer throttling of failed authentication (wrong admin token at login or in a
//! bearer header): after `max_failures` within `window`, the peer gets 429 until the
//! oldest failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Beyond this many tracked peers, peers with no recent failure are forgotten.
const MAX_TRACKED_PEERS: usize = 10_000;

#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl AuthThrottle {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after_s)` when `peer` must wait before trying again.
    pub fn check(&self, peer: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = map.get_mut(&peer) else {
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

    /// Records one failed attempt by `peer`.
    pub fn record_failure(&self, peer: IpAddr) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED_PEERS && !map.contains_key(&peer) {
            let window = self.window;
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let times = map.entry(peer).or_default();
        times.push_back(now);
        while times.len() > self.max_failures {
            times.pop_front();
        }
    }
}

/// Request rates per peer address for the admin API (GCRA, from `governor`): one
/// quota for loopback peers and a stricter one for everyone else.
#[derive(Debug)]
pub struct RateLimits {
    loopback: governor::DefaultKeyedRateLimiter<IpAddr>,
    remote: governor::DefaultKeyedRateLimiter<IpAddr>,
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
        if limiter.len() > MAX_TRACKED_PEERS {
            // Peers whose state has fully replenished carry no information.
            limiter.retain_recent();
        }
        limiter.check_key(&peer).map_err(|not_until| {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}
