//! One binary, two backends: the URL scheme picks SQLite (embedded default) or PostgreSQL.
//! Connections come from a bounded r2d2 pool; every call runs on tokio's blocking threads so
//! database work never stalls the async workers, and waiting for a connection is bounded.

use crate::error::{StoreError, StoreResult};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ManageConnection, Pool};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::sync::Arc;
use std::time::Duration;

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgresql");

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where the database is, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A file path (relative to the working directory unless absolute).
    Sqlite(String),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> StoreResult<DatabaseUrl> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() || path.contains(":memory:") {
                return Err(StoreError::Unavailable(
                    "an SQLite database needs a file path (sqlite://data/voucherd.db); in-memory databases are not shared between pool connections".into(),
                ));
            }
            Ok(DatabaseUrl::Sqlite(path.to_string()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_string()))
        } else {
            Err(StoreError::Unavailable(format!(
                "unsupported database URL scheme in {:?}: use sqlite://PATH or postgres://…",
                redact(url)
            )))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Hides a password in a URL before it reaches a log line or an error.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Opens connections for the pool. Unlike diesel's generic manager it knows the backend from
/// the URL, applies SQLite's PRAGMAs on every connection, and keeps the real connect error.
/// The longest any single statement may run on PostgreSQL.
const STATEMENT_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug)]
pub struct Manager {
    url: DatabaseUrl,
    busy_timeout_ms: u64,
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                let mut c = diesel::PgConnection::establish(url)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                // No statement may hold a connection (and its locks) for long.
                c.batch_execute(&format!(
                    "SET statement_timeout = {}; SET TIME ZONE 'UTC';",
                    STATEMENT_TIMEOUT_MS
                ))
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConn::Postgresql(c))
            }
            DatabaseUrl::Sqlite(path) => {
                let mut c = diesel::SqliteConnection::establish(path)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                // WAL lets readers proceed during a write; busy_timeout makes a second writer
                // wait instead of failing; foreign keys are off by default in SQLite. No
                // connection checkpoints as it commits (that would stall the committing writer
                // on fsync): a background thread does it (`checkpoint_in_background`).
                c.batch_execute(&format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0;",
                    self.busy_timeout_ms
                ))
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConn::Sqlite(c))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    /// A connection used by a panicking thread, or left inside a transaction, is dropped
    /// rather than handed to the next caller.
    fn has_broken(&self, conn: &mut DbConn) -> bool {
        use diesel::connection::TransactionManager;
        std::thread::panicking()
            || !matches!(
                <DbConn as Connection>::TransactionManager::transaction_manager_status_mut(conn)
                    .transaction_depth(),
                Ok(None)
            )
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub database_url: String,
    pub max_connections: u32,
    /// How long a request waits for a connection before the API answers 503.
    pub acquire_timeout_ms: u64,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool<Manager>,
    backend: Backend,
    /// SQLite allows one writer; taking this before a write transaction keeps writers of this
    /// process from failing with SQLITE_BUSY when a read-then-write transaction is overtaken.
    /// Waiting for it is bounded like waiting for a connection.
    sqlite_writer: parking_lot::Mutex<()>,
    acquire_timeout: Duration,
}

/// Statements this process has sent to its database, counted by diesel's instrumentation on
/// every connection (transaction control included): the benchmark's database work per request.
static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many statements this process has sent to its database so far.
pub fn statements_executed() -> u64 {
    STATEMENTS.load(std::sync::atomic::Ordering::Relaxed)
}

fn count_statements() -> Option<Box<dyn diesel::connection::Instrumentation>> {
    Some(Box::new(
        |event: diesel::connection::InstrumentationEvent<'_>| {
            if let diesel::connection::InstrumentationEvent::StartQuery { .. } = event {
                STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        },
    ))
}

impl Store {
    /// Connects once directly (so a wrong URL or password reports the real cause), then builds
    /// the bounded pool.
    pub fn connect(config: &StoreConfig) -> StoreResult<Store> {
        let url = DatabaseUrl::parse(&config.database_url)?;
        if let DatabaseUrl::Sqlite(path) = &url {
            if let Some(parent) = std::path::Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
            }
        }
        let backend = url.backend();
        // Every connection made from here on counts its statements.
        diesel::connection::set_default_instrumentation(count_statements)
            .map_err(|e| StoreError::Invariant(format!("statement counter: {e}")))?;
        let manager = Manager {
            url,
            busy_timeout_ms: config.acquire_timeout_ms.max(1_000),
        };
        manager.connect().map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to {}: {e}",
                redact(&config.database_url)
            ))
        })?;
        let pool = Pool::builder()
            .max_size(config.max_connections.max(1))
            .min_idle(Some(0))
            .connection_timeout(Duration::from_millis(config.acquire_timeout_ms.max(1)))
            .build_unchecked(manager);
        let store = Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                sqlite_writer: parking_lot::Mutex::new(()),
                acquire_timeout: Duration::from_millis(config.acquire_timeout_ms.max(1)),
            }),
        };
        if backend == Backend::Sqlite {
            checkpoint_in_background(&store, config.acquire_timeout_ms.max(1_000))?;
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Runs pending migrations; returns how many ran.
    pub fn migrate(&self) -> StoreResult<usize> {
        let mut conn = self.inner.pool.get()?;
        let ran = match &mut *conn {
            DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
            DbConn::Postgresql(c) => c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len()),
        };
        ran.map_err(|e| StoreError::Invariant(format!("migration failed: {e}")))
    }

    /// Runs `f` on a pooled connection, off the async workers.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut DbConn) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        spawn(move || {
            let mut conn = store.inner.pool.get()?;
            f(&mut conn)
        })
        .await
    }

    /// Runs `f` in one transaction, off the async workers. Any error rolls everything back.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut DbConn) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        spawn(move || store.write_blocking(f)).await
    }

    /// SQLite allows one writer: this process's writers take turns (bounded wait).
    fn writer_lock(&self) -> StoreResult<Option<parking_lot::MutexGuard<'_, ()>>> {
        match self.inner.backend {
            Backend::Sqlite => self
                .inner
                .sqlite_writer
                .try_lock_for(self.inner.acquire_timeout)
                .map(Some)
                .ok_or_else(|| {
                    StoreError::Unavailable("timed out waiting to write to SQLite".into())
                }),
            Backend::Postgres => Ok(None),
        }
    }

    /// The blocking form of [`Store::write`], for start-up and command-line tasks.
    pub fn write_blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut DbConn) -> StoreResult<T>,
    {
        let _writer = self.writer_lock()?;
        let mut conn = self.inner.pool.get()?;
        in_transaction(&mut conn, f)
    }

    /// Runs `f`, one statement that is a transaction by itself, on a connection the caller
    /// holds, with the same SQLite writer lock as every other write of this process.
    pub(crate) fn write_statement_on<T, F>(&self, conn: &mut DbConn, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut DbConn) -> StoreResult<T>,
    {
        let _writer = self.writer_lock()?;
        f(conn)
    }

    /// A connection of the pool kept by a long-lived task; it returns to the pool when dropped.
    pub(crate) fn hold_connection(&self) -> StoreResult<diesel::r2d2::PooledConnection<Manager>> {
        Ok(self.inner.pool.get()?)
    }

    /// Whether the database answers now (for /readyz).
    pub async fn ping(&self) -> StoreResult<()> {
        self.read(|c| {
            c.batch_execute("SELECT 1")?;
            Ok(())
        })
        .await
    }
}

fn in_transaction<T, F>(conn: &mut DbConn, f: F) -> StoreResult<T>
where
    F: FnOnce(&mut DbConn) -> StoreResult<T>,
{
    match conn {
        DbConn::Postgresql(_) => conn.transaction(f),
        DbConn::Sqlite(_) => sqlite_immediate(conn, f),
    }
}

/// How often SQLite's write-ahead log is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// A write-ahead log longer than this is restarted from its beginning by a checkpoint that
/// briefly holds writers back (see [`checkpoint_in_background`]).
const WAL_RESTART_BYTES: i64 = 64 * 1024 * 1024;

/// What `PRAGMA wal_checkpoint` answers: whether it was blocked, the log's length and how much
/// of it is now in the database file, in pages.
#[derive(Debug, diesel::QueryableByName)]
struct Checkpointed {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    checkpointed: i32,
}

/// Checkpoints the SQLite write-ahead log every [`CHECKPOINT_EVERY`] on a thread of its own,
/// for as long as the store lives. Left to SQLite, the connection whose commit crosses 1,000
/// log pages checkpoints inside that commit, fsyncs included: the usage writer then stalls every
/// few batches (measured: 14.4k → 17.6k proxied requests a second without it). A PASSIVE
/// checkpoint takes no lock that writers wait for.
///
/// A PASSIVE checkpoint never restarts the log, though: SQLite rewinds it only when a writer
/// starts after a checkpoint has copied every frame, and under steady load the usage writer has
/// always appended more by then, so the file grew without bound (measured: 840 MB of log after
/// about 78,000 proxied requests). Once the log passes [`WAL_RESTART_BYTES`], a RESTART
/// checkpoint copies the few frames the PASSIVE ones left and makes the next writer start the
/// log again from its beginning, overwriting the file in place: its size stays near the limit.
/// It never waits for a lock (when the writer or a reader is busy it copies what it can and the
/// next round tries again). Measured at one client, 5-second runs: p99 2.4-3.1 ms without a
/// restart, 3.2-3.8 ms with RESTART, 18-40 ms with TRUNCATE, which also shrinks the file so
/// that every later commit has to grow it again.
fn checkpoint_in_background(store: &Store, busy_timeout_ms: u64) -> StoreResult<()> {
    let weak = Arc::downgrade(&store.inner);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let done = inner
                .pool
                .get()
                .map_err(|e| e.to_string())
                .and_then(|mut c| {
                    checkpoint(&mut c, WAL_RESTART_BYTES, busy_timeout_ms)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = done {
                tracing::warn!(error = %e, "SQLite checkpoint failed; retried shortly");
            }
        })
        .map(|_| ())
        .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite checkpointer: {e}")))
}

/// One round of [`checkpoint_in_background`]: PASSIVE, then RESTART if the log is longer
/// than `restart_bytes`, without waiting for locks (the connection's busy timeout,
/// `busy_timeout_ms`, is put back after). Returns the RESTART's answer when there was one.
fn checkpoint(
    c: &mut DbConn,
    restart_bytes: i64,
    busy_timeout_ms: u64,
) -> Result<Option<Checkpointed>, diesel::result::Error> {
    let DbConn::Sqlite(sqlite) = c else {
        return Ok(None);
    };
    let passive: Checkpointed =
        diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(sqlite)?;
    let page_bytes: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "page_size FROM pragma_page_size()",
    ))
    .get_result(sqlite)?;
    if i64::from(passive.log) * page_bytes <= restart_bytes {
        return Ok(None);
    }
    sqlite.batch_execute("PRAGMA busy_timeout = 0")?;
    let restarted =
        diesel::sql_query("PRAGMA wal_checkpoint(RESTART)").get_result::<Checkpointed>(sqlite);
    sqlite.batch_execute(&format!("PRAGMA busy_timeout = {busy_timeout_ms}"))?;
    let restarted = restarted?;
    tracing::debug!(
        busy = restarted.busy,
        log_pages = restarted.log,
        checkpointed_pages = restarted.checkpointed,
        before_pages = passive.log,
        "SQLite write-ahead log restarted"
    );
    Ok(Some(restarted))
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction: SQLite takes the write lock at the start
/// (waiting up to busy_timeout) instead of at the first write, where a transaction that read
/// first would fail at once if another process wrote meanwhile.
fn sqlite_immediate<T, F>(conn: &mut DbConn, f: F) -> StoreResult<T>
where
    F: FnOnce(&mut DbConn) -> StoreResult<T>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    if let DbConn::Sqlite(c) = conn {
        AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
    }
    let result = f(conn);
    if let DbConn::Sqlite(c) = conn {
        // A failed COMMIT is rolled back by diesel itself; a connection left broken is
        // dropped by the pool (`has_broken`).
        match &result {
            Ok(_) => AnsiTransactionManager::commit_transaction(c)?,
            Err(_) => AnsiTransactionManager::rollback_transaction(c)?,
        }
    }
    result
}

async fn spawn<T, F>(f: F) -> StoreResult<T>
where
    F: FnOnce() -> StoreResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Invariant(format!("database task failed: {e}")))?
}

/// The current time as stored: naive UTC, truncated to microseconds (PostgreSQL's precision)
/// so that a value reads back equal on both backends.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{SubsecRound, Utc};
    Utc::now().naive_utc().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_scheme_chooses_the_backend() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/voucherd.db").unwrap(),
            DatabaseUrl::Sqlite("data/voucherd.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/db").unwrap().backend(),
            Backend::Postgres
        );
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
    }

    /// The background checkpointer's round: a log under the limit is only copied back; one
    /// over it is copied in full and restarted, so the next commit writes from the file's
    /// beginning instead of growing it.
    #[test]
    fn a_long_write_ahead_log_is_restarted() {
        let db = crate::testing::TestDatabase::create(Backend::Sqlite).unwrap();
        let store = Store::connect(&StoreConfig {
            database_url: db.url.clone(),
            max_connections: 2,
            acquire_timeout_ms: 5_000,
        })
        .unwrap();
        let path = db.url.trim_start_matches("sqlite://").to_string();
        let wal = || {
            std::fs::metadata(format!("{path}-wal"))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        let mut c = store.hold_connection().unwrap();
        c.batch_execute("CREATE TABLE filler (v BLOB NOT NULL)")
            .unwrap();
        for _ in 0..64 {
            c.batch_execute("INSERT INTO filler VALUES (zeroblob(16384))")
                .unwrap();
        }
        let written = wal();
        assert!(written > 1024 * 1024, "{written} bytes of log");
        // Under the limit: no restart.
        assert!(checkpoint(&mut c, i64::MAX, 1_000).unwrap().is_none());
        // Over it: restarted, every frame copied, nothing in the way.
        let restarted = checkpoint(&mut c, 1024 * 1024, 1_000).unwrap().unwrap();
        assert_eq!(restarted.busy, 0, "{restarted:?}");
        assert_eq!(restarted.checkpointed, restarted.log, "{restarted:?}");
        // The next commit writes at the start of the file: it does not grow, and the log
        // holds only that commit's frames.
        c.batch_execute("INSERT INTO filler VALUES (zeroblob(16))")
            .unwrap();
        assert_eq!(wal(), written);
        let DbConn::Sqlite(sqlite) = &mut *c else {
            unreachable!()
        };
        let after: Checkpointed = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
            .get_result(sqlite)
            .unwrap();
        assert!(after.log < 8, "{after:?}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
