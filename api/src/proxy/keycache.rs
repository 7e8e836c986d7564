//! Recently checked keys, so the proxy does not read the database for every request. An entry
//! lives at most `ttl` (1 s by default): a key revoked or expired on any instance stops working
//! everywhere within that time; on the instance that revoked it, at once.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use voucherd_store::keys::ApiKeyRow;
use voucherd_store::vouchers::VoucherRow;

/// A key, its voucher, and the organisation's purchased credit available when it was read.
pub type CachedKey = Arc<(ApiKeyRow, VoucherRow, i64)>;

pub struct KeyCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<String, (Instant, CachedKey)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration, max_entries: usize) -> KeyCache {
        KeyCache {
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key_hash: &str) -> Option<CachedKey> {
        let entries = self.entries.lock();
        entries
            .get(key_hash)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, k)| k.clone())
    }

    pub fn put(&self, key_hash: String, key: CachedKey) {
        let mut entries = self.entries.lock();
        if entries.len() >= self.max_entries {
            // Bounded: drop what is stale, and everything if that is not enough.
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(key_hash, (Instant::now(), key));
    }

    /// Forgets every key of a voucher at once (it was suspended or reinstated here).
    pub fn forget_voucher(&self, voucher_id: &str) {
        self.entries.lock().retain(|_, (_, k)| k.1.id != voucher_id);
    }

    /// Forgets a key at once (it was revoked or rotated here).
    pub fn forget(&self, key_id: &str) {
        self.entries.lock().retain(|_, (_, k)| k.0.id != key_id);
    }
}
