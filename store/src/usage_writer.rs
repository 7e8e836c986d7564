//! The usage writer (docs/ARCHITECTURE.md, "Batching"): one long-lived thread per process that
//! owns a database connection and writes leased requests' usage in group commits. A request
//! waits for the commit that holds its row before its response ends (the durability rule), so
//! the writer gathers as many rows into one transaction as it can without making anyone wait
//! for nothing. Under load, the rows that arrive while one batch commits make the next batch,
//! which is committed at once. A writer that had nothing to do lingers, a bounded moment, only
//! while requests that will write soon are still on their way ([`Expected`]); a lone request
//! is committed at once. Rows are handed
//! over without waking the writer for each: it is woken by the first row of a batch, by the
//! last expected one, or when a batch is full, so a batch of fifty costs it two wake-ups.

use crate::db::{DbConn, Manager};
use crate::error::{StoreError, StoreResult};
use crate::usage::UsageRow;
use crate::Store;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};
use voucherd_domain::ApiKeyId;

/// Usage rows written in one transaction at most.
const BATCH_ROWS: usize = 1024;
/// Usage rows waiting for the writer at most; beyond it requests wait (back-pressure).
const QUEUE_ROWS: usize = 16_384;
/// A key's `last_used_at` is written at most this often: it is shown to people, who need
/// minutes, not milliseconds, and writing it with every batch would cost a row update per key.
const LAST_USED_EVERY: Duration = Duration::from_secs(10);
/// After a failed batch, how long the writer waits before taking a new connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// One request's row, whether it was paid from the SME's own money, and who waits for it.
struct Entry {
    row: UsageRow,
    own_money: bool,
    done: oneshot::Sender<StoreResult<()>>,
}

/// Usage transactions this process has committed or tried, and the rows they carried: the
/// group commit's batch size is their ratio (exported as metrics).
static BATCHES: AtomicU64 = AtomicU64::new(0);
static BATCH_ROWS_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// (usage transactions, rows in them) so far in this process.
pub fn batches_and_rows() -> (u64, u64) {
    (BATCHES.load(Relaxed), BATCH_ROWS_WRITTEN.load(Relaxed))
}

/// The handle the proxy writes through; the thread stops when every handle is dropped.
pub struct UsageWriter {
    shared: Arc<Shared>,
    expected: Arc<AtomicUsize>,
    /// Places in the queue: a request takes one before queueing and the writer gives it back
    /// once the row's batch is done.
    room: Arc<Semaphore>,
}

/// The queue between requests and the writer thread.
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    entries: Vec<Entry>,
    /// The writer sleeps until a first row arrives (then it must be woken).
    idle: bool,
    /// Every handle is gone: the writer finishes what is queued and stops.
    closed: bool,
}

impl Drop for UsageWriter {
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// A request that will write a usage row soon (a leased, non-streamed request between its
/// reservation and its row): while any is alive, the writer may linger for it.
pub struct Expected {
    expected: Arc<AtomicUsize>,
    live: AtomicBool,
}

impl Expected {
    /// The request has written (or will not write): the writer no longer waits for it.
    pub fn arrived(&self) {
        if self.live.swap(false, SeqCst) {
            self.expected.fetch_sub(1, SeqCst);
        }
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        self.arrived();
    }
}

impl UsageWriter {
    /// Starts the writer thread. `linger` bounds how long a batch waits for expected rows.
    pub fn start(store: Store, linger: Duration) -> StoreResult<UsageWriter> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let expected = Arc::new(AtomicUsize::new(0));
        let room = Arc::new(Semaphore::new(QUEUE_ROWS));
        let writer = Thread {
            store,
            conn: None,
            touched: HashMap::new(),
            expected: expected.clone(),
            linger,
            shared: shared.clone(),
            room: room.clone(),
        };
        std::thread::Builder::new()
            .name("usage-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Unavailable(format!("cannot start the usage writer: {e}")))?;
        Ok(UsageWriter {
            shared,
            expected,
            room,
        })
    }

    /// Announces a request that will write soon.
    pub fn expect(&self) -> Expected {
        self.expected.fetch_add(1, SeqCst);
        Expected {
            expected: self.expected.clone(),
            live: AtomicBool::new(true),
        }
    }

    /// Queues `row` and waits until the transaction holding it has committed. `expected`, the
    /// request's announcement, is withdrawn as the row is queued.
    pub async fn write(
        &self,
        row: UsageRow,
        own_money: bool,
        expected: Option<&Expected>,
    ) -> StoreResult<()> {
        let (done, wait) = oneshot::channel();
        let entry = Entry {
            row,
            own_money,
            done,
        };
        // Withdrawn before the row is queued: a writer that sees the row must not then linger
        // for the same request (that would delay a lone request by the whole linger).
        if let Some(e) = expected {
            e.arrived();
        }
        let permit = self
            .room
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the usage writer has stopped".into()))?;
        // Given back by the writer once the row's batch is done.
        permit.forget();
        let wake = {
            let mut q = self.shared.queue.lock();
            q.entries.push(entry);
            q.idle || q.entries.len() >= BATCH_ROWS || self.expected.load(SeqCst) == 0
        };
        if wake {
            self.shared.wake.notify_one();
        }
        wait.await
            .map_err(|_| StoreError::Unavailable("the usage writer has stopped".into()))?
    }
}

struct Thread {
    store: Store,
    conn: Option<diesel::r2d2::PooledConnection<Manager>>,
    touched: HashMap<ApiKeyId, Instant>,
    expected: Arc<AtomicUsize>,
    linger: Duration,
    shared: Arc<Shared>,
    room: Arc<Semaphore>,
}

impl Thread {
    fn run(mut self) {
        while let Some(batch) = self.gather() {
            let rows = batch.len();
            self.commit(batch);
            self.room.add_permits(rows);
        }
    }

    /// The next batch: what is queued once a first row is there, plus whatever expected rows
    /// arrive within the linger; `None` once every handle is gone and nothing is queued.
    fn gather(&self) -> Option<Vec<Entry>> {
        let mut q = self.shared.queue.lock();
        // Rows that came while the last batch was being committed are committed at once: under
        // load a batch fills by itself during each commit, and lingering would add its wait to
        // every request of it. Only a writer that found nothing to do lingers.
        let backlog = !q.entries.is_empty();
        while q.entries.is_empty() {
            if q.closed {
                return None;
            }
            q.idle = true;
            self.shared.wake.wait(&mut q);
        }
        q.idle = false;
        let deadline = Instant::now() + self.linger;
        while !backlog
            && q.entries.len() < BATCH_ROWS
            && self.expected.load(SeqCst) > 0
            && !q.closed
        {
            if self.shared.wake.wait_until(&mut q, deadline).timed_out() {
                break;
            }
        }
        let take = q.entries.len().min(BATCH_ROWS);
        Some(q.entries.drain(..take).collect())
    }

    fn commit(&mut self, batch: Vec<Entry>) {
        let mut rows = Vec::with_capacity(batch.len());
        let mut waiters = Vec::with_capacity(batch.len());
        let mut own_money: Vec<String> = Vec::new();
        for e in batch {
            if e.own_money && !own_money.contains(&e.row.hold_id) {
                own_money.push(e.row.hold_id.clone());
            }
            rows.push(e.row);
            waiters.push(e.done);
        }
        let mut touch: Vec<ApiKeyId> = Vec::new();
        for r in &rows {
            let due = self
                .touched
                .get(&r.api_key_id)
                .is_none_or(|t| t.elapsed() >= LAST_USED_EVERY);
            if due && !touch.contains(&r.api_key_id) {
                touch.push(r.api_key_id.clone());
            }
        }
        BATCHES.fetch_add(1, Relaxed);
        BATCH_ROWS_WRITTEN.fetch_add(rows.len() as u64, Relaxed);
        let result = self.write(&rows, &touch, &own_money);
        match &result {
            Ok(()) => {
                if self.touched.len() > 100_000 {
                    self.touched.clear();
                }
                let now = Instant::now();
                for k in touch {
                    self.touched.insert(k, now);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = rows.len(), "a usage batch failed; its requests fail");
                // The connection may be what failed: the next batch takes a fresh one.
                self.conn = None;
                std::thread::sleep(RECONNECT_PAUSE);
            }
        }
        for w in waiters {
            // Every request of a failed batch fails alike: none of its rows was committed.
            let told = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Unavailable(format!("usage not recorded: {e}"))),
            };
            let _ = w.send(told);
        }
    }

    fn write(
        &mut self,
        rows: &[UsageRow],
        touch: &[ApiKeyId],
        own_money: &[String],
    ) -> StoreResult<()> {
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => self.conn.insert(self.store.hold_connection()?),
        };
        let conn: &mut DbConn = conn;
        let touch: Vec<&str> = touch.iter().map(ApiKeyId::as_str).collect();
        let own: Vec<&str> = own_money.iter().map(String::as_str).collect();
        // One statement, a transaction by itself: no BEGIN and COMMIT around it.
        self.store
            .write_statement_on(conn, |c| crate::usage::record_batch(c, rows, &touch, &own))
    }
}
