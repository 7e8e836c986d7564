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
//! A lease is retired when it cannot cover a request, and after `max_age`; it closes once no
//! request is using it. Its size adapts to what is left: a quarter of the balance, at most
//! 256 requests' worth, at least the request at hand.

use super::ProxyError;
use crate::state::AppState;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use voucherd_store::usage::UsageRow;
use voucherd_store::{Store, StoreError};

/// Requests' worth a lease holds at most.
const LEASE_REQUESTS: i64 = 256;
/// Far below zero: a retired lease's remainder, so no reservation can succeed on it again.
const RETIRED: i64 = i64::MIN / 4;
/// Usage rows written in one transaction at most.
const BATCH_ROWS: usize = 512;
/// Usage rows waiting for the writer at most; beyond it requests wait (back-pressure).
const QUEUE_ROWS: usize = 16_384;
/// A key's `last_used_at` is written at most this often: it is shown to people, who need
/// minutes, not milliseconds, and writing it with every batch would cost a row update per key.
const LAST_USED_EVERY: Duration = Duration::from_secs(10);

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
}

impl Lease {
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
}

impl Ticket {
    fn new(lease: Arc<Lease>, reserved: i64) -> Ticket {
        Ticket {
            lease,
            reserved,
            spent: AtomicBool::new(false),
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
    instance_id: String,
}

impl Leases {
    /// `max_age` zero turns leasing off: every request then holds and settles on its own.
    pub fn new(store: Store, max_age: Duration) -> Leases {
        Leases {
            slots: Mutex::new(HashMap::new()),
            max_age,
            writer: UsageWriter::start(store),
            closing: Arc::default(),
            instance_id: uuid::Uuid::now_v7().to_string(),
        }
    }

    pub fn instance_id(&self) -> &str {
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

    fn reserve_in_current(&self, slot: &Slot, need: i64) -> Option<Ticket> {
        let lease = slot.current.lock().clone()?;
        // An aged lease takes no new requests, whenever the retiring task next runs: its hold
        // must outlive every request it serves.
        if lease.opened.elapsed() >= lease.max_age {
            return None;
        }
        lease.in_flight.fetch_add(1, SeqCst);
        if lease.try_reserve(need) {
            Some(Ticket::new(lease, need))
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
    ) -> Result<Ticket, ProxyError> {
        let slot = self.slot(account);
        if let Some(t) = self.reserve_in_current(&slot, need) {
            return Ok(t);
        }
        let _opening = slot.opening.lock().await;
        if let Some(t) = self.reserve_in_current(&slot, need) {
            return Ok(t);
        }
        {
            let mut current = slot.current.lock();
            // A request larger than what a young, mostly unspent lease has left takes a hold
            // of its own rather than locking that lease's balance up until it drains.
            let young_and_full = current.as_ref().is_some_and(|l| {
                l.opened.elapsed() < l.max_age && l.remaining.load(SeqCst) >= l.amount / 4
            });
            if young_and_full {
                return Err(super::meter::quota_exceeded());
            }
            if let Some(old) = current.take() {
                retire(&old);
            }
        }
        // Counted from before the hold is opened, so the hold's timeout covers the age.
        let opened = Instant::now();
        let lease_id = crate::keys::new_id();
        // A lease outlives its last request: requests join it for up to its age limit, and
        // the slowest (a stream) may then run for its own limit.
        let cfg = &state.config;
        let hold_ms = cfg
            .hold_timeout_ms
            .saturating_add(cfg.stream_max_ms)
            .saturating_add(self.max_age.as_millis() as u64 * 5 / 4);
        // Each lease's own age limit is jittered (75–125 %), so the leases of many vouchers
        // do not all rotate at the same moment and queue behind one database writer.
        let max_age = self.max_age.mul_f64(0.75 + rand::random::<f64>() / 2.0);
        let timeout_at = voucherd_store::now()
            + chrono::Duration::milliseconds(i64::try_from(hold_ms).unwrap_or(i64::MAX / 2));
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
        let lease = Arc::new(Lease {
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
            amount,
            max_age,
        });
        *slot.current.lock() = Some(lease.clone());
        Ok(Ticket::new(lease, need))
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
        self.writer.write(row, ticket.lease.own_money).await?;
        ticket.spent.store(true, SeqCst);
        ticket
            .lease
            .remaining
            .fetch_add(ticket.reserved - cost, SeqCst);
        Ok(())
    }

    /// Retires leases older than the age limit (run periodically), so money does not stay
    /// leased and usage is posted promptly.
    pub fn retire_aged(&self) {
        let slots: Vec<Arc<Slot>> = self.slots.lock().values().cloned().collect();
        for slot in slots {
            let aged = {
                let mut current = slot.current.lock();
                match current.as_ref() {
                    Some(l) if l.opened.elapsed() >= l.max_age => current.take(),
                    _ => None,
                }
            };
            if let Some(l) = aged {
                retire(&l);
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

type Waiter = oneshot::Sender<Result<(), String>>;
/// A usage row, whether it was paid from the SME's own money, and who waits for its commit.
type Item = (UsageRow, bool, Waiter);

/// Writes usage rows in batches: while one batch commits, the next gathers.
struct UsageWriter {
    tx: mpsc::Sender<Item>,
}

impl UsageWriter {
    fn start(store: Store) -> UsageWriter {
        let (tx, mut rx) = mpsc::channel::<Item>(QUEUE_ROWS);
        tokio::spawn(async move {
            let mut touched: HashMap<String, Instant> = HashMap::new();
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH_ROWS {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let mut rows = Vec::with_capacity(batch.len());
                let mut waiters = Vec::with_capacity(batch.len());
                let mut own_money: Vec<String> = Vec::new();
                for (row, own, waiter) in batch {
                    if own && !own_money.contains(&row.hold_id) {
                        own_money.push(row.hold_id.clone());
                    }
                    rows.push(row);
                    waiters.push(waiter);
                }
                let mut touch: Vec<String> = Vec::new();
                for r in &rows {
                    let due = touched
                        .get(&r.api_key_id)
                        .is_none_or(|t| t.elapsed() >= LAST_USED_EVERY);
                    if due && !touch.contains(&r.api_key_id) {
                        touch.push(r.api_key_id.clone());
                    }
                }
                let result = store
                    .record_usage(rows, touch.clone(), own_money)
                    .await
                    .map_err(|e| e.to_string());
                if result.is_ok() {
                    if touched.len() > 100_000 {
                        touched.clear();
                    }
                    let now = Instant::now();
                    for k in touch {
                        touched.insert(k, now);
                    }
                }
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        });
        UsageWriter { tx }
    }

    async fn write(&self, row: UsageRow, own_money: bool) -> Result<(), ProxyError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((row, own_money, done))
            .await
            .map_err(|_| ProxyError::Unavailable)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "recording usage failed");
                Err(ProxyError::Unavailable)
            }
            Err(_) => Err(ProxyError::Unavailable),
        }
    }
}
