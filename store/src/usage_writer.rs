//! The usage writer (docs/ARCHITECTURE.md, "Batching"): one long-lived thread per process that
//! owns a database connection and writes leased requests' usage in group commits. A request
//! waits for the commit that holds its row before its response ends (the durability rule), so
//! the writer gathers as many rows into one transaction as it can without making anyone wait
//! for nothing: it lingers, a bounded moment, only while requests that will write soon are
//! still on their way ([`Expected`]); a lone request is committed at once.

use crate::db::{DbConn, Manager};
use crate::error::{StoreError, StoreResult};
use crate::usage::UsageRow;
use crate::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

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
    tx: mpsc::Sender<Entry>,
    expected: Arc<AtomicUsize>,
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
        let (tx, rx) = mpsc::channel::<Entry>(QUEUE_ROWS);
        let expected = Arc::new(AtomicUsize::new(0));
        let writer = Thread {
            store,
            conn: None,
            touched: HashMap::new(),
            expected: expected.clone(),
            linger,
        };
        std::thread::Builder::new()
            .name("usage-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the usage writer: {e}")))?;
        Ok(UsageWriter { tx, expected })
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
        self.tx
            .send(entry)
            .await
            .map_err(|_| StoreError::Unavailable("the usage writer has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Unavailable("the usage writer has stopped".into()))?
    }
}

struct Thread {
    store: Store,
    conn: Option<diesel::r2d2::PooledConnection<Manager>>,
    touched: HashMap<String, Instant>,
    expected: Arc<AtomicUsize>,
    linger: Duration,
}

impl Thread {
    fn run(mut self, mut rx: mpsc::Receiver<Entry>) {
        // A runtime of the thread's own, only for waiting on the queue with a deadline; the
        // database work runs right here, on the connection this thread keeps.
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "the usage writer could not start");
                return;
            }
        };
        rt.block_on(async move {
            while let Some(batch) = self.gather(&mut rx).await {
                self.commit(batch).await;
            }
        });
    }

    /// The next batch: what is queued, plus whatever expected rows arrive within the linger.
    async fn gather(&self, rx: &mut mpsc::Receiver<Entry>) -> Option<Vec<Entry>> {
        let first = rx.recv().await?;
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.linger;
        loop {
            while batch.len() < BATCH_ROWS {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            if batch.len() >= BATCH_ROWS || self.expected.load(SeqCst) == 0 {
                return Some(batch);
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                Ok(None) | Err(_) => return Some(batch),
            }
        }
    }

    async fn commit(&mut self, batch: Vec<Entry>) {
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
        let mut touch: Vec<String> = Vec::new();
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
                tokio::time::sleep(RECONNECT_PAUSE).await;
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
        touch: &[String],
        own_money: &[String],
    ) -> StoreResult<()> {
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => self.conn.insert(self.store.hold_connection()?),
        };
        let conn: &mut DbConn = conn;
        let touch: Vec<&str> = touch.iter().map(String::as_str).collect();
        let own: Vec<&str> = own_money.iter().map(String::as_str).collect();
        self.store
            .write_on(conn, |c| crate::usage::record_batch(c, rows, &touch, &own))
    }
}
