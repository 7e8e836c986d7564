//! Per-key limits enforced in the proxy's memory: requests and tokens per minute (governor's
//! GCRA limiters) and concurrent requests (a semaphore per key). Each instance enforces them
//! for the traffic it sees; behind a load balancer of N instances a key's effective ceiling
//! is up to N times its limit.

use super::ProxyError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use voucherd_domain::ApiKeyId;
use voucherd_store::keys::ApiKeyRow;

struct KeyRate {
    rpm: Option<(i32, DefaultDirectRateLimiter)>,
    tpm: Option<(i32, DefaultDirectRateLimiter)>,
}

#[derive(Default)]
pub struct Limits {
    rates: Mutex<HashMap<ApiKeyId, Arc<KeyRate>>>,
    concurrency: Mutex<HashMap<ApiKeyId, (i32, Arc<Semaphore>)>>,
}

fn per_minute(n: i32) -> Option<DefaultDirectRateLimiter> {
    let n = NonZeroU32::new(u32::try_from(n).ok()?)?;
    Some(RateLimiter::direct(Quota::per_minute(n)))
}

fn limited(what: &str, wait: std::time::Duration) -> ProxyError {
    ProxyError::RateLimited {
        message: format!(
            "Rate limit reached for {what}. Try again in {:.1}s.",
            wait.as_secs_f64()
        ),
        retry_after_secs: wait.as_secs().max(1),
    }
}

impl Limits {
    fn rate(&self, key: &ApiKeyRow) -> Arc<KeyRate> {
        let mut rates = self.rates.lock();
        let current = rates.get(&key.id).filter(|r| {
            r.rpm.as_ref().map(|x| x.0) == key.rpm && r.tpm.as_ref().map(|x| x.0) == key.tpm
        });
        if let Some(r) = current {
            return r.clone();
        }
        let r = Arc::new(KeyRate {
            rpm: key.rpm.and_then(|n| per_minute(n).map(|l| (n, l))),
            tpm: key.tpm.and_then(|n| per_minute(n).map(|l| (n, l))),
        });
        rates.insert(key.id.clone(), r.clone());
        r
    }

    /// One request of about `tokens` tokens against the key's per-minute limits.
    pub fn check_rate(&self, key: &ApiKeyRow, tokens: u64) -> Result<(), ProxyError> {
        if key.rpm.is_none() && key.tpm.is_none() {
            return Ok(());
        }
        let r = self.rate(key);
        let now = DefaultClock::default().now();
        if let Some((_, l)) = &r.rpm {
            l.check()
                .map_err(|nu| limited("requests per minute", nu.wait_time_from(now)))?;
        }
        if let Some((limit, l)) = &r.tpm {
            let n = NonZeroU32::new(u32::try_from(tokens.max(1)).unwrap_or(u32::MAX))
                .unwrap_or(NonZeroU32::MIN);
            match l.check_n(n) {
                Ok(Ok(())) => {}
                Ok(Err(nu)) => return Err(limited("tokens per minute", nu.wait_time_from(now))),
                Err(_) => {
                    return Err(ProxyError::RateLimited {
                        message: format!("Request too large: about {tokens} tokens, above the key's limit of {limit} tokens per minute."),
                        retry_after_secs: 60,
                    })
                }
            }
        }
        Ok(())
    }

    /// A slot among the key's concurrent requests, held until the request is settled.
    pub fn acquire(&self, key: &ApiKeyRow) -> Result<Option<OwnedSemaphorePermit>, ProxyError> {
        let Some(max) = key.max_concurrent.filter(|m| *m > 0) else {
            return Ok(None);
        };
        let sem = {
            let mut map = self.concurrency.lock();
            let entry = map
                .entry(key.id.clone())
                .or_insert_with(|| (max, Arc::new(Semaphore::new(max as usize))));
            if entry.0 != max {
                *entry = (max, Arc::new(Semaphore::new(max as usize)));
            }
            entry.1.clone()
        };
        sem.try_acquire_owned()
            .map(Some)
            .map_err(|_| ProxyError::RateLimited {
                message: format!("Too many concurrent requests for this key (limit {max})."),
                retry_after_secs: 1,
            })
    }
}
