//! Current prices, remembered for a second so the proxy does not read the price table for
//! every request. A price change reaches every instance within that time (at once on the
//! instance that made it); usage always records the exact version it was priced with.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use voucherd_store::prices::PriceRow;
use voucherd_store::{Store, StoreResult};

/// Models remembered at once, known or unknown.
const MAX_ENTRIES: usize = 10_000;

pub struct PriceCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<PriceRow>)>>,
}

impl PriceCache {
    pub fn new(ttl: Duration) -> PriceCache {
        PriceCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub async fn current(&self, store: &Store, model: &str) -> StoreResult<Option<PriceRow>> {
        if let Some((at, p)) = self.entries.lock().get(model) {
            if at.elapsed() < self.ttl {
                return Ok(p.clone());
            }
        }
        let p = store
            .current_price(model.to_string(), voucherd_store::now())
            .await?;
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(model.to_string(), (Instant::now(), p.clone()));
        Ok(p)
    }

    pub fn forget(&self, model: &str) {
        self.entries.lock().remove(model);
    }
}
