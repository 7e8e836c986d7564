//! Throttling of guessable account actions (signing in, asking for a password reset): per
//! account and per client address, with governor's GCRA in this process's memory, on the
//! programme's clock so tests can move past a window. See docs/ARCHITECTURE.md, "Accounts and
//! sessions".

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use voucherd_store::clock::Clock;

/// The programme's clock as governor reads it: time since the Unix epoch.
#[derive(Clone)]
pub struct ProgrammeClock(pub Arc<dyn Clock>);

impl GovernorClock for ProgrammeClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        let nanos = self.0.now().and_utc().timestamp_nanos_opt().unwrap_or(0);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
    }
}

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, ProgrammeClock, NoOpMiddleware<Duration>>;

/// At most `attempts` in `window`; once they are spent, one more each `window / attempts`.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    pub attempts: u32,
    pub window_secs: u64,
}

impl Allowance {
    fn quota(self) -> Option<Quota> {
        let burst = NonZeroU32::new(self.attempts)?;
        let period = Duration::from_secs(self.window_secs.max(1)) / burst.get();
        Quota::with_period(period).map(|q| q.allow_burst(burst))
    }
}

/// Remembered keys before the idle ones are dropped: bounds memory under a flood of made-up
/// email addresses.
const MAX_KEYS: usize = 100_000;

pub struct Throttle {
    accounts: Option<Keyed<String>>,
    addresses: Option<Keyed<IpAddr>>,
    clock: ProgrammeClock,
}

impl Throttle {
    /// An allowance of zero attempts turns that half off.
    pub fn new(per_account: Allowance, per_address: Allowance, clock: Arc<dyn Clock>) -> Throttle {
        let clock = ProgrammeClock(clock);
        Throttle {
            accounts: per_account
                .quota()
                .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone())),
            addresses: per_address
                .quota()
                .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone())),
            clock,
        }
    }

    /// Takes one attempt for `account` (already normalised, such as a lower-cased email) from
    /// `address`; `Err` is how long to wait before the next is allowed. The account is checked
    /// whether or not it exists, so the answer reveals nothing about who has one.
    pub fn attempt(&self, account: &str, address: IpAddr) -> Result<(), Duration> {
        if let Some(l) = &self.addresses {
            check(l, &address, &self.clock)?;
        }
        if let Some(l) = &self.accounts {
            check(l, &account.to_string(), &self.clock)?;
        }
        Ok(())
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &Keyed<K>,
    key: &K,
    clock: &ProgrammeClock,
) -> Result<(), Duration> {
    if limiter.len() > MAX_KEYS {
        limiter.retain_recent();
    }
    limiter
        .check_key(key)
        .map_err(|not_until| not_until.wait_time_from(clock.now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use voucherd_store::clock::ManualClock;

    #[test]
    fn an_account_is_refused_after_its_allowance_and_allowed_again_after_the_window() {
        let start = chrono::NaiveDate::from_ymd_opt(2026, 12, 6)
            .and_then(|d| d.and_hms_opt(9, 0, 0))
            .unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let t = Throttle::new(
            Allowance {
                attempts: 3,
                window_secs: 300,
            },
            Allowance {
                attempts: 100,
                window_secs: 60,
            },
            clock.clone(),
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.attempt("a@example.com", ip), Ok(()));
        }
        assert_eq!(
            t.attempt("a@example.com", ip),
            Err(Duration::from_secs(100))
        );
        // Another account from the same address is not affected.
        assert_eq!(t.attempt("b@example.com", ip), Ok(()));
        clock.advance(chrono::Duration::seconds(100));
        assert_eq!(t.attempt("a@example.com", ip), Ok(()));
        assert!(t.attempt("a@example.com", ip).is_err());
    }

    #[test]
    fn an_address_is_refused_across_accounts() {
        let clock = Arc::new(ManualClock::new(chrono::NaiveDateTime::default()));
        let t = Throttle::new(
            Allowance {
                attempts: 5,
                window_secs: 300,
            },
            Allowance {
                attempts: 2,
                window_secs: 60,
            },
            clock,
        );
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(t.attempt("a@example.com", ip).is_ok());
        assert!(t.attempt("b@example.com", ip).is_ok());
        assert_eq!(t.attempt("c@example.com", ip), Err(Duration::from_secs(30)));
        assert!(t
            .attempt("c@example.com", "192.0.2.10".parse().unwrap())
            .is_ok());
    }
}
