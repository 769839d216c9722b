//! A circuit breaker in front of MISP.
//!
//! When MISP is down, every lookup would wait for its timeout, and a pipeline
//! feeding thousands of records a minute would back up behind them. The
//! breaker stops asking for a cool-down once MISP looks down, then lets one
//! probe through; lookups in between fail at once with the reason
//! `unavailable` (or are answered from stale cache entries).
//!
//! What opens it:
//! - a timeout or a connection-level failure (refused, DNS, TLS) opens it at
//!   once: each costs a full timeout or means nothing is there, and waiting for
//!   a few more would cost a few more timeouts per outage;
//! - other failures (5xx, 403, a broken answer) open it after
//!   `breaker_failures` in a row, so a flaky MISP that fails every other
//!   request keeps being used;
//! - a 429 opens it until MISP's `X-Rate-Limit-Reset` (or `Retry-After`).
//!
//! Each failed probe doubles the cool-down up to its cap; a success closes the
//! breaker and resets the cool-down.

use std::time::Duration;

/// Longest wait honoured from a rate-limit header: MISP's rate-limit window
/// is 900 s, and a larger value is more likely a broken header than intent.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(900);

/// When to open and how long to stay open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive soft failures that open the breaker.
    pub failures: u32,
    /// First cool-down.
    pub cooldown: Duration,
    /// Cap of the growing cool-down.
    pub max_cooldown: Duration,
}

/// How a request failed, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Timeout or no connection: MISP is unreachable.
    Unreachable,
    /// MISP answered, but not usefully.
    Soft,
    /// MISP asked us to wait this long.
    RateLimited(Option<Duration>),
}

/// What the breaker is doing, for `stats()` and the CLI summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BreakerState {
    /// Requests flow.
    #[default]
    Closed,
    /// Requests fail fast until the cool-down ends.
    Open,
    /// The cool-down ended; the next request is a probe.
    HalfOpen,
}

impl BreakerState {
    /// Lowercase name, as shown in stats.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// The breaker. Time is passed in, like everywhere in the core.
#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    consecutive: u32,
    open_until: Option<Duration>,
    next_cooldown: Duration,
    trips: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        Breaker {
            policy,
            consecutive: 0,
            open_until: None,
            next_cooldown: policy.cooldown,
            trips: 0,
        }
    }

    /// Whether a request may go out now.
    pub fn allows(&self, now: Duration) -> bool {
        self.state(now) != BreakerState::Open
    }

    /// The state at `now`.
    pub fn state(&self, now: Duration) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// How many times the breaker has opened.
    pub fn trips(&self) -> u64 {
        self.trips
    }

    /// Failures in a row, including the one that opened the breaker.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// A request succeeded: close and forget past failures.
    pub fn succeeded(&mut self) {
        self.consecutive = 0;
        self.open_until = None;
        self.next_cooldown = self.policy.cooldown;
    }

    /// A request failed at `now`.
    pub fn failed(&mut self, now: Duration, failure: Failure) {
        self.consecutive = self.consecutive.saturating_add(1);
        let probing = self.state(now) == BreakerState::HalfOpen;
        match failure {
            Failure::RateLimited(wait) => {
                let wait = wait.unwrap_or(self.next_cooldown).min(MAX_RATE_LIMIT_WAIT);
                self.open(now, wait);
            }
            Failure::Unreachable => self.open_growing(now),
            Failure::Soft if probing || self.consecutive >= self.policy.failures => {
                self.open_growing(now);
            }
            Failure::Soft => {}
        }
    }

    fn open_growing(&mut self, now: Duration) {
        let cooldown = self.next_cooldown;
        self.next_cooldown = (cooldown * 2).min(self.policy.max_cooldown);
        self.open(now, cooldown);
    }

    fn open(&mut self, now: Duration, wait: Duration) {
        self.open_until = Some(now + wait);
        self.trips += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy { failures: 3, cooldown: secs(5), max_cooldown: secs(30) })
    }

    #[test]
    fn unreachable_misp_opens_at_once() {
        let mut b = breaker();
        b.failed(secs(0), Failure::Unreachable);
        assert_eq!(b.state(secs(4)), BreakerState::Open);
        assert!(!b.allows(secs(4)));
        assert_eq!(b.state(secs(5)), BreakerState::HalfOpen);
        assert!(b.allows(secs(5)));
    }

    #[test]
    fn soft_failures_open_after_the_threshold_in_a_row() {
        let mut b = breaker();
        b.failed(secs(0), Failure::Soft);
        b.failed(secs(0), Failure::Soft);
        b.succeeded();
        b.failed(secs(0), Failure::Soft);
        b.failed(secs(0), Failure::Soft);
        assert!(b.allows(secs(0)), "a success in between resets the count");
        b.failed(secs(0), Failure::Soft);
        assert!(!b.allows(secs(1)));
        assert_eq!(b.trips(), 1);
    }

    #[test]
    fn failed_probes_double_the_cooldown_up_to_the_cap() {
        let mut b = breaker();
        let mut now = secs(0);
        let mut waits = Vec::new();
        b.failed(now, Failure::Unreachable);
        for _ in 0..5 {
            let until = (now.as_secs()..).find(|&s| b.allows(secs(s))).unwrap();
            waits.push(until - now.as_secs());
            now = secs(until);
            b.failed(now, Failure::Soft);
        }
        assert_eq!(waits, [5, 10, 20, 30, 30]);
    }

    #[test]
    fn a_successful_probe_closes_and_resets_the_cooldown() {
        let mut b = breaker();
        b.failed(secs(0), Failure::Unreachable);
        b.failed(secs(5), Failure::Unreachable);
        b.succeeded();
        assert_eq!(b.state(secs(6)), BreakerState::Closed);
        b.failed(secs(100), Failure::Unreachable);
        assert_eq!(b.state(secs(104)), BreakerState::Open);
        assert_eq!(b.state(secs(105)), BreakerState::HalfOpen);
    }

    #[test]
    fn rate_limit_waits_for_the_reset_time() {
        let mut b = breaker();
        b.failed(secs(0), Failure::RateLimited(Some(secs(120))));
        assert!(!b.allows(secs(119)));
        assert!(b.allows(secs(120)));
        b.failed(secs(200), Failure::RateLimited(Some(secs(100_000))));
        assert!(!b.allows(secs(1099)));
        assert!(b.allows(secs(1100)), "capped at MISP's 900 s window");
    }
}
