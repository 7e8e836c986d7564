//! Storage: the only crate that speaks SQL. Two backends (SQLite, PostgreSQL) behind one
//! connection type; every public operation is an async method on [`Store`] that runs its
//! blocking work on a pooled connection off the async workers.

pub mod applications;
pub mod audit;
pub mod budget;
pub mod challenges;
pub mod clock;
pub mod consulting;
pub mod db;
pub mod error;
pub mod idempotency;
pub mod incentives;
pub mod instances;
pub mod jobs;
pub mod keys;
pub mod ledger;
pub mod lifecycle;
pub mod mfa;
pub mod outbox;
pub mod overruns;
pub mod payments;
pub mod prices;
pub mod programme;
pub mod reports;
pub mod rollup;
mod schema;
pub mod statement;
#[cfg(feature = "testing")]
pub mod testing;
pub mod usage;
pub mod usage_writer;
pub mod users;
pub mod vouchers;

pub use db::{now, Backend, DbConn, Store, StoreConfig};
pub use error::{StoreError, StoreResult};
