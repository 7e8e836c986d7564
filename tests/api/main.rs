//! End-to-end tests: the real server on port 0, a real database (SQLite and PostgreSQL, each
//! test on its own fresh one) and real HTTP. Only the AI provider is faked, in `upstream.rs`.

// Tests may panic on what they did not expect: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod helpers;
mod accounts;
mod allowlist;
mod applicant_facts;
mod applications;
mod authorization;
mod browser;
mod budget;
mod challenge_rules;
mod challenges;
mod cli;
mod consulting;
mod contract;
mod crash;
mod idempotency;
mod incentives;
mod key_options;
mod keys;
mod last_penny;
mod leases;
mod ledger;
mod outage;
mod ownership_and_conflicts;
mod pages;
mod payments;
mod prices;
mod provider_billing;
mod proxy;
mod references;
mod reports;
mod sandbox;
mod schema;
mod smtp;
mod spine;
mod streaming;
mod strict_input;
mod stripe;
mod surfaces;
mod suspension;
mod upstream;
mod worker;
