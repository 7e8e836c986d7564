//! Leases (docs/ARCHITECTURE.md, "Leases"): instead of a database hold per request, the proxy holds part
//! of a voucher's balance once — a pending transfer, the lease — and reserves each request's
//! worst case from it in memory with an atomic compare-and-swap. Usage is recorded in batches
//! (one transaction for many requests) before each response ends, and the lease closes by
//! posting exactly the usage recorded under it and releasing the rest. So the common request
//! makes no database round trip of its own, and one hot voucher does not serialise on its row.
//!
//! Money stays safe: a lease is an ordinary hold, so the voucher can never lease more than it
//! holds, and nothing is forwarded without a reservation inside a lease. If the process dies,
//! the hold-expiry job posts what was recorded under its leases and releases the rest.
//!
//! Requests may join a lease for `max_age`. A lease still in use then is extended (its hold's
//! timeout moved on, one small write) rather than closed and reopened, for up to
//! [`LIFE_PER_AGE`] times `max_age`; an idle one, one that cannot cover a request, and one at
//! the end of its life is retired, and closes once no request is using it. Its size adapts to
//! what is left: a quarter of the balance, at most [`LEASE_REQUESTS`] requests' worth, at
//! least the request at hand.

use super::ProxyError;
use crate::state::AppState;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use voucherd_domain::InstanceId;
use voucherd_store::usage::UsageRow;
use voucherd_store::usage_writer::{Expected, UsageWriter};
use voucherd_store::{Store, StoreError};

/// Requests' worth a lease holds at most: enough that a voucher serving a few hundred requests
/// a second opens a lease every several seconds, not every second (measured on the benchmark's
/// hot voucher).
const LEASE_REQUESTS: i64 = 4096;
/// How many times its age limit a busy lease may be extended before it is closed (and its
/// usage posted to the ledger) all the same.
const LIFE_PER_AGE: u32 = 60;
/// Age limits a busy lease's joining window grows by at each extension.
const EXTEND_AGES: u32 = 10;
/// Far below zero: a retired lease's remainder, so no reservation can succeed on it again.
const RETIRED: i64 = i64::MIN / 4;

/// Leases closing in the background, so a request short of money can wait for their
/// remainders to come back before it is refused.
#[derive(Default)]
struct Closing {
    count: std::sync::atomic::AtomicUsize,
    done: tokio::sync::Notify,
}

pub struct Lease {
    pub hold_id: String,
    closing: Arc<Closing>,
    /// Leased from purchased credit: the SME's own money, not programme spending.
    own_money: bool,
    amount: i64,
    max_age: Duration,
    store: Store,
    outstanding: prometheus::IntGauge,
    remaining: AtomicI64,
    /// The account's balance in the database right after this lease was opened.
    available_at_open: i64,
    in_flight: AtomicI64,
    retired: AtomicBool,
    closed: AtomicBool,
    opened: Instant,
    /// Milliseconds after `opened` from which no request may join (moved on by extensions).
    joinable_until_ms: AtomicU64,
    /// Milliseconds after `opened` of the latest reservation.
    last_reserved_ms: AtomicU64,
}

impl Lease {
    fn age_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether requests may still join (its hold's timeout covers them).
    fn joinable(&self) -> bool {
        self.age_ms() < self.joinable_until_ms.load(SeqCst)
    }

    /// The voucher's balance as this instance sees it: what the database held beyond the lease
    /// when it opened, plus what the lease has not reserved.
    pub fn available(&self) -> i64 {
        self.available_at_open + self.remaining.load(SeqCst).max(0)
    }

    fn try_reserve(&self, need: i64) -> bool {
        let mut current = self.remaining.load(SeqCst);
        loop {
            if current < need {
                return false;
            }
            match self
                .remaining
                .compare_exchange(current, current - need, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

/// One request's share of a lease. Dropping it gives the share back, however the request
/// ended, so a lease always closes once its requests are done.
pub struct Ticket {
    pub lease: Arc<Lease>,
    pub reserved: i64,
    spent: AtomicBool,
    /// Set for a request whose row is due soon (not a stream): the writer may wait for it.
    expected: Option<Expected>,
}

impl Ticket {
    fn new(lease: Arc<Lease>, reserved: i64, expected: Option<Expected>) -> Ticket {
        Ticket {
            lease,
            reserved,
            spent: AtomicBool::new(false),
            expected,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.spent.load(SeqCst) {
            self.lease.remaining.fetch_add(self.reserved, SeqCst);
        }
        leave(&self.lease);
    }
}

#[derive(Default)]
struct Slot {
    opening: tokio::sync::Mutex<()>,
    current: Mutex<Option<Arc<Lease>>>,
}

pub struct Leases {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    max_age: Duration,
    writer: UsageWriter,
    closing: Arc<Closing>,
    /// This process's proxy instance: new with every start, so a restarted process never
    /// adopts a lease of its previous life. Every hold it opens is registered under it.
    instance_id: InstanceId,
}

impl Leases {
    /// `max_age` zero turns leasing off: every request then holds and settles on its own.
    pub fn new(store: Store, max_age: Duration, linger: Duration) -> Result<Leases, StoreError> {
        Ok(Leases {
            slots: Mutex::new(HashMap::new()),
            max_age,
            writer: UsageWriter::start(store, linger)?,
            closing: Arc::default(),
            instance_id: InstanceId::new(uuid::Uuid::now_v7().to_string()),
        })
    }

    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }

    /// Records this instance's heartbeat every `every`, for as long as the process runs: the
    /// hold-timeouts job settles the holds of an instance whose heartbeat lapses
    /// (docs/ARCHITECTURE.md, "A dead instance's holds").
    pub fn keep_beating(state: actix_web::web::Data<AppState>, every: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let id = state.leases.instance_id.clone();
                if let Err(e) = state.store.heartbeat(id, voucherd_store::now()).await {
                    tracing::warn!(error = %e, "could not record this instance's heartbeat");
                }
            }
        });
    }

    pub fn enabled(&self) -> bool {
        !self.max_age.is_zero()
    }

    fn slot(&self, account: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .entry(account.to_string())
            .or_default()
            .clone()
    }

    /// A streamed request's row comes when the stream ends: the writer does not wait for it.
    fn expect(&self, streamed: bool) -> Option<Expected> {
        (!streamed).then(|| self.writer.expect())
    }

    fn reserve_in_current(&self, slot: &Slot, need: i64, streamed: bool) -> Option<Ticket> {
        let lease = slot.current.lock().clone()?;
        // A lease past its joining window takes no new requests, whenever the maintenance task
        // next runs: its hold must outlive every request it serves.
        if !lease.joinable() {
            return None;
        }
        lease.in_flight.fetch_add(1, SeqCst);
        if lease.try_reserve(need) {
            lease.last_reserved_ms.store(lease.age_ms(), SeqCst);
            Some(Ticket::new(lease, need, self.expect(streamed)))
        } else {
            leave(&lease);
            None
        }
    }

    /// Reserves `need` micros for one request from the account's lease, opening a new lease
    /// (one database write) when the current one cannot cover it.
    pub async fn reserve(
        &self,
        state: &AppState,
        account: &str,
        need: i64,
        streamed: bool,
    ) -> Result<Ticket, ProxyError> {
        let slot = self.slot(account);
        if let Some(t) = self.reserve_in_current(&slot, need, streamed) {
            return Ok(t);
        }
        let _opening = slot.opening.lock().await;
        if let Some(t) = self.reserve_in_current(&slot, need, streamed) {
            return Ok(t);
        }
        {
            let mut current = slot.current.lock();
            // A request larger than what a young, mostly unspent lease has left takes a hold
            // of its own rather than locking that lease's balance up until it drains.
            let young_and_full = current
                .as_ref()
                .is_some_and(|l| l.joinable() && l.remaining.load(SeqCst) >= l.amount / 4);
            if young_and_full {
                return Err(super::meter::quota_exceeded());
            }
            if let Some(old) = current.take() {
                retire(&old);
            }
        }
        let lease = self.open(state, account, need).await?;
        *slot.current.lock() = Some(lease.clone());
        Ok(Ticket::new(lease, need, self.expect(streamed)))
    }

    /// Opens a new lease on `account` (one database write) with `need` reserved from it for
    /// the request at hand.
    async fn open(
        &self,
        state: &AppState,
        account: &str,
        need: i64,
    ) -> Result<Arc<Lease>, ProxyError> {
        // Counted from before the hold is opened, so the hold's timeout covers the age.
        let opened = Instant::now();
        let lease_id = crate::keys::new_id();
        // Each lease's own age limit is jittered (75–125 %), so the leases of many vouchers
        // do not all rotate at the same moment and queue behind one database writer.
        let max_age = self.max_age.mul_f64(0.75 + rand::random::<f64>() / 2.0);
        let timeout_at = self.timeout_from_now(state, max_age);
        let target = need.saturating_mul(LEASE_REQUESTS);
        let (hold_id, amount, available) = state
            .store
            .open_lease(
                lease_id,
                account.to_string(),
                need,
                target,
                timeout_at,
                self.instance_id.clone(),
            )
            .await
            .map_err(|e| match e {
                StoreError::InsufficientFunds { .. } => super::meter::quota_exceeded(),
                other => other.into(),
            })?;
        state.metrics.holds_outstanding.inc();
        Ok(Arc::new(Lease {
            hold_id,
            closing: self.closing.clone(),
            own_money: !voucherd_store::usage::programme_funded(account),
            store: state.store.clone(),
            outstanding: state.metrics.holds_outstanding.clone(),
            remaining: AtomicI64::new(amount - need),
            available_at_open: available,
            in_flight: AtomicI64::new(1),
            retired: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            opened,
            joinable_until_ms: AtomicU64::new(
                u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
            ),
            last_reserved_ms: AtomicU64::new(0),
            amount,
            max_age,
        }))
    }

    /// Gives back what this instance's lease on `account` has not reserved, so a request the
    /// lease cannot cover may use the whole balance: the lease is retired and, when no request
    /// is using it, closed before this returns. Whether a lease was closed (its remainder is
    /// then back in the account).
    pub async fn give_back(&self, state: &AppState, account: &str) -> bool {
        let Some(slot) = self.slots.lock().get(account).cloned() else {
            return false;
        };
        let _opening = slot.opening.lock().await;
        let Some(lease) = slot.current.lock().take() else {
            return self.closed_in_background().await;
        };
        lease.retired.store(true, SeqCst);
        lease.remaining.swap(RETIRED, SeqCst);
        // Requests still using it: it closes when the last one ends.
        if lease.in_flight.load(SeqCst) != 0 {
            return false;
        }
        if lease.closed.swap(true, SeqCst) {
            return self.closed_in_background().await;
        }
        lease.outstanding.dec();
        match state.store.close_lease(lease.hold_id.clone()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, hold_id = %lease.hold_id,
                    "giving a lease back failed; it resolves at its timeout");
                false
            }
        }
    }

    /// Waits (at most a couple of seconds) for leases closing in the background; whether any
    /// was, so their remainders are back in their accounts.
    async fn closed_in_background(&self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut waited = false;
        loop {
            let done = self.closing.done.notified();
            if self.closing.count.load(SeqCst) == 0 {
                return waited;
            }
            waited = true;
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                return false;
            }
        }
    }

    /// Records a leased request's usage, waiting for its batch to commit; the unspent part of
    /// its reservation goes back to the lease.
    pub async fn record(&self, ticket: &Ticket, row: UsageRow) -> Result<(), ProxyError> {
        let cost = row.cost;
        self.writer
            .write(row, ticket.lease.own_money, ticket.expected.as_ref())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "recording usage failed");
                ProxyError::Unavailable
            })?;
        ticket.spent.store(true, SeqCst);
        ticket
            .lease
            .remaining
            .fetch_add(ticket.reserved - cost, SeqCst);
        Ok(())
    }

    /// A lease's hold timeout, counted from now: requests join it for up to `window`, and
    /// the slowest (a stream) may then run for its own limit; a quarter more for jitter.
    fn timeout_from_now(&self, state: &AppState, window: Duration) -> chrono::NaiveDateTime {
        let cfg = &state.config;
        let hold_ms = cfg
            .hold_timeout_ms
            .saturating_add(cfg.stream_max_ms)
            .saturating_add(u64::try_from(window.as_millis() * 5 / 4).unwrap_or(u64::MAX));
        voucherd_store::now()
            + chrono::Duration::milliseconds(i64::try_from(hold_ms).unwrap_or(i64::MAX / 2))
    }

    /// Run every half age limit. A lease used within its age limit whose joining window ends
    /// soon is extended by [`EXTEND_AGES`] age limits (one small write, instead of closing it
    /// and opening another); one idle for its age limit, past its window, or at the end of its
    /// life is retired, so unused money does not stay leased and usage is posted.
    pub async fn maintain(&self, state: &AppState) {
        let slots: Vec<Arc<Slot>> = self.slots.lock().values().cloned().collect();
        for slot in slots {
            let Some(lease) = slot.current.lock().clone() else {
                continue;
            };
            let age_ms = lease.age_ms();
            let max_age_ms = u64::try_from(lease.max_age.as_millis()).unwrap_or(u64::MAX);
            let until = lease.joinable_until_ms.load(SeqCst);
            let idle = lease
                .last_reserved_ms
                .load(SeqCst)
                .saturating_add(max_age_ms)
                <= age_ms;
            let life_over = age_ms >= max_age_ms.saturating_mul(u64::from(LIFE_PER_AGE));
            let retire_now = if idle || life_over {
                age_ms >= max_age_ms.min(until)
            } else if age_ms.saturating_add(max_age_ms / 2) >= until {
                !self.extend(state, &lease, age_ms).await
            } else {
                false
            };
            if !retire_now {
                continue;
            }
            // Only while it is still the account's current lease: one replaced meanwhile was
            // retired when it was replaced.
            let mine = {
                let mut current = slot.current.lock();
                match current.as_ref() {
                    Some(l) if Arc::ptr_eq(l, &lease) => current.take(),
                    _ => None,
                }
            };
            if let Some(l) = mine {
                retire(&l);
            }
        }
    }

    /// Extends a busy lease's joining window; whether it was (otherwise it is retired).
    async fn extend(&self, state: &AppState, lease: &Lease, age_ms: u64) -> bool {
        let window = lease.max_age.saturating_mul(EXTEND_AGES);
        let timeout_at = self.timeout_from_now(state, window);
        match state
            .store
            .extend_lease(lease.hold_id.clone(), timeout_at)
            .await
        {
            Ok(true) => {
                // Counted from before the write, like the timeout it bought.
                let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
                lease
                    .joinable_until_ms
                    .store(age_ms.saturating_add(window_ms), SeqCst);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, hold_id = %lease.hold_id, "could not extend a lease; retiring it");
                false
            }
        }
    }
}

fn retire(lease: &Arc<Lease>) {
    lease.retired.store(true, SeqCst);
    lease.remaining.swap(RETIRED, SeqCst);
    if lease.in_flight.load(SeqCst) == 0 {
        close(lease);
    }
}

fn leave(lease: &Arc<Lease>) {
    if lease.in_flight.fetch_sub(1, SeqCst) == 1 && lease.retired.load(SeqCst) {
        close(lease);
    }
}

fn close(lease: &Arc<Lease>) {
    if lease.closed.swap(true, SeqCst) {
        return;
    }
    lease.outstanding.dec();
    let store = lease.store.clone();
    let hold_id = lease.hold_id.clone();
    let closing = lease.closing.clone();
    closing.count.fetch_add(1, SeqCst);
    tokio::spawn(async move {
        close_now(&store, &hold_id).await;
        closing.count.fetch_sub(1, SeqCst);
        closing.done.notify_waiters();
    });
}

async fn close_now(store: &Store, hold_id: &str) {
    let hold_id = hold_id.to_string();
    // Retried a few times; after that the hold-expiry job posts the same usage.
    for attempt in 0..4u32 {
        match store.close_lease(hold_id.clone()).await {
            Ok(()) => return,
            Err(e) if attempt < 3 => {
                tracing::warn!(error = %e, %hold_id, attempt, "closing a lease failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, %hold_id, "closing a lease failed; it resolves at its timeout")
            }
        }
    }
}
