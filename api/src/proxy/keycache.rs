//! Recently checked keys and sessions, so neither the proxy nor the API reads the database for
//! every request. An entry lives at most `ttl` (1 s by default): a key revoked or a session
//! ended on any instance stops working everywhere within that time; on the instance that did
//! it, at once.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use voucherd_domain::VoucherId;
use voucherd_store::keys::ApiKeyRow;
use voucherd_store::vouchers::VoucherRow;

/// A key, its voucher, and the organisation's purchased credit available when it was read.
pub type CachedKey = Arc<(ApiKeyRow, VoucherRow, i64)>;

/// Keys by hash.
pub type KeyCache = TtlCache<CachedKey>;

/// A bounded map whose entries are trusted for `ttl` after they were read.
pub struct TtlCache<V> {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration, max_entries: usize) -> TtlCache<V> {
        TtlCache {
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock();
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: String, value: V) {
        let mut entries = self.entries.lock();
        if entries.len() >= self.max_entries {
            // Bounded: drop what is stale, and everything if that is not enough.
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// Forgets one entry at once.
    pub fn remove(&self, key: &str) {
        self.entries.lock().remove(key);
    }

    /// Forgets every entry whose value `matches`, at once.
    pub fn forget_where(&self, matches: impl Fn(&V) -> bool) {
        self.entries.lock().retain(|_, (_, v)| !matches(v));
    }
}

impl TtlCache<CachedKey> {
    /// Forgets every key of a voucher at once (it was suspended or reinstated here).
    pub fn forget_voucher(&self, voucher_id: &VoucherId) {
        self.forget_where(|k| k.1.id == *voucher_id);
    }

    /// Forgets a key at once (it was revoked or rotated here).
    pub fn forget(&self, key_id: &str) {
        self.forget_where(|k| k.0.id == *key_id);
    }
}
