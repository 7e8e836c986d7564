//! The double-entry ledger (docs/ARCHITECTURE.md, "Money and the ledger"). Transfers are immutable rows with client-supplied ids;
//! each one moves an amount from a debit account to a credit account and updates the accounts'
//! cached totals in the same transaction. Holds are `pending` transfers resolved exactly once
//! by a `post` (≤ the held amount) or a `void`; the UNIQUE `pending_id` column makes the
//! database enforce "exactly once" even between processes.
//!
//! Every function here takes a connection that is already inside a transaction (see
//! [`crate::Store::write`]), so callers compose them with their own writes atomically.

use crate::db::{now, DbConn};
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::schema::{accounts, instance_holds, transfers};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use std::collections::HashMap;
use voucherd_domain::ledger::{
    AccountKind, Totals, TransferCode, TransferKind, CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
};
use voucherd_domain::Money;

pub const FUNDING_SOURCE: &str = "funding-source";
pub const PROGRAMME_FUND: &str = "programme-fund";
pub const USAGE: &str = "usage";
pub const OVERRUN_LOSS: &str = "overrun-loss";
pub const FORFEITED: &str = "forfeited";
pub const TEST_FUNDING: &str = "test-funding";
/// Purchased credit consumed through the proxy: the SME's own money, kept apart from the
/// programme's consumption.
pub const PURCHASED_USAGE: &str = "purchased-usage";
/// Where money paid through Stripe enters the ledger.
pub const STRIPE_CLEARING: &str = "stripe-clearing";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = accounts)]
pub struct AccountRow {
    pub id: String,
    pub kind: AccountKind,
    pub flags: i32,
    pub currency: String,
    pub debits_pending: i64,
    pub debits_posted: i64,
    pub credits_pending: i64,
    pub credits_posted: i64,
    pub created_at: NaiveDateTime,
}

impl AccountRow {
    pub fn totals(&self) -> Totals {
        Totals {
            debits_pending: self.debits_pending,
            debits_posted: self.debits_posted,
            credits_pending: self.credits_pending,
            credits_posted: self.credits_posted,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = transfers)]
pub struct TransferRow {
    pub id: String,
    pub debit_account_id: String,
    pub credit_account_id: String,
    pub amount: i64,
    pub kind: TransferKind,
    pub pending_id: Option<String>,
    pub code: TransferCode,
    pub memo: String,
    pub timeout_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}

impl TransferRow {
    /// Whether `other` is a replay of this transfer: the same request, whenever it was sent.
    fn same_request(&self, other: &TransferRow) -> bool {
        self.debit_account_id == other.debit_account_id
            && self.credit_account_id == other.credit_account_id
            && self.amount == other.amount
            && self.kind == other.kind
            && self.pending_id == other.pending_id
            && self.code == other.code
            && self.memo == other.memo
    }
}

/// A request to move money.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    pub id: String,
    pub debit_account_id: String,
    pub credit_account_id: String,
    pub amount: Money,
    pub code: TransferCode,
    pub memo: String,
}

/// A new, empty account of `kind`, with the kind's flags and unit.
fn new_account(id: &str, kind: AccountKind) -> AccountRow {
    AccountRow {
        id: id.to_string(),
        kind,
        flags: kind.flags(),
        currency: kind.unit().to_string(),
        debits_pending: 0,
        debits_posted: 0,
        credits_pending: 0,
        credits_posted: 0,
        created_at: now(),
    }
}

pub fn create_account(c: &mut DbConn, id: &str, kind: AccountKind) -> StoreResult<AccountRow> {
    let row = new_account(id, kind);
    diesel::insert_into(accounts::table)
        .values(&row)
        .execute(c)?;
    Ok(row)
}

/// Opens an account unless it exists; safe when two transactions open it at once (a unique
/// violation would abort a PostgreSQL transaction).
pub fn ensure_account(c: &mut DbConn, id: &str, kind: AccountKind) -> StoreResult<()> {
    let row = new_account(id, kind);
    match c {
        DbConn::Sqlite(s) => diesel::insert_or_ignore_into(accounts::table)
            .values(&row)
            .execute(s)?,
        DbConn::Postgresql(pg) => diesel::insert_into(accounts::table)
            .values(&row)
            .on_conflict_do_nothing()
            .execute(pg)?,
    };
    Ok(())
}

pub fn find_account(c: &mut DbConn, id: &str) -> StoreResult<Option<AccountRow>> {
    Ok(accounts::table
        .find(id)
        .select(AccountRow::as_select())
        .first(c)
        .optional()?)
}

pub fn account(c: &mut DbConn, id: &str) -> StoreResult<AccountRow> {
    accounts::table
        .find(id)
        .select(AccountRow::as_select())
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("account"))
}

/// Changes to an account's four totals.
#[derive(Debug, Clone, Copy, Default)]
struct Delta {
    debits_pending: i64,
    debits_posted: i64,
    credits_pending: i64,
    credits_posted: i64,
}

/// Applies `d` in one conditional UPDATE whose WHERE clause re-checks the account's flag on the
/// row's latest version, so concurrent spenders cannot overdraw it between a read and a write.
/// The table's CHECK constraints guard the same rule a second time.
fn adjust(c: &mut DbConn, account_id: &str, d: Delta) -> StoreResult<()> {
    let flags: i32 = accounts::table
        .find(account_id)
        .select(accounts::flags)
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("account"))?;
    let target = accounts::table.filter(accounts::id.eq(account_id));
    let set = (
        accounts::debits_pending.eq(accounts::debits_pending + d.debits_pending),
        accounts::debits_posted.eq(accounts::debits_posted + d.debits_posted),
        accounts::credits_pending.eq(accounts::credits_pending + d.credits_pending),
        accounts::credits_posted.eq(accounts::credits_posted + d.credits_posted),
    );
    let debit_need = d.debits_pending + d.debits_posted - d.credits_posted;
    let credit_need = d.credits_pending + d.credits_posted - d.debits_posted;
    let updated = if flags & DEBITS_MUST_NOT_EXCEED_CREDITS != 0 && debit_need > 0 {
        diesel::update(
            target.filter(
                (accounts::credits_posted - accounts::debits_posted - accounts::debits_pending)
                    .ge(debit_need),
            ),
        )
        .set(set)
        .execute(c)?
    } else if flags & CREDITS_MUST_NOT_EXCEED_DEBITS != 0 && credit_need > 0 {
        diesel::update(
            target.filter(
                (accounts::debits_posted - accounts::credits_posted - accounts::credits_pending)
                    .ge(credit_need),
            ),
        )
        .set(set)
        .execute(c)?
    } else {
        diesel::update(target).set(set).execute(c)?
    };
    if updated != 1 {
        return Err(StoreError::InsufficientFunds {
            account_id: account_id.to_string(),
        });
    }
    // Paired assertion: the rule checked before the write holds after it.
    let after = account(c, account_id)?;
    if !after.totals().respects(after.flags) {
        return Err(StoreError::Invariant(format!(
            "account {account_id} breaks its flags after a transfer: {:?}",
            after.totals()
        )));
    }
    Ok(())
}

/// Returns the stored transfer if `row.id` was used before: the original for a replay of the
/// same request, an error for a different body under the same id.
fn replayed(c: &mut DbConn, row: &TransferRow) -> StoreResult<Option<TransferRow>> {
    let existing = transfers::table
        .find(&row.id)
        .select(TransferRow::as_select())
        .first(c)
        .optional()?;
    match existing {
        Some(e) if e.same_request(row) => Ok(Some(e)),
        Some(_) => Err(StoreError::TransferIdConflict(row.id.clone())),
        None => Ok(None),
    }
}

fn insert(c: &mut DbConn, row: &TransferRow) -> StoreResult<()> {
    match diesel::insert_into(transfers::table).values(row).execute(c) {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(match &row.pending_id {
            Some(p) => StoreError::HoldResolved(p.clone()),
            None => StoreError::Contended,
        }),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ForeignKeyViolation,
            _,
        )) => Err(StoreError::NotFound("account")),
        Err(e) => Err(e.into()),
    }
}

fn new_row(
    req: &TransferRequest,
    kind: TransferKind,
    timeout_at: Option<NaiveDateTime>,
) -> TransferRow {
    TransferRow {
        id: req.id.clone(),
        debit_account_id: req.debit_account_id.clone(),
        credit_account_id: req.credit_account_id.clone(),
        amount: req.amount.micros(),
        kind,
        pending_id: None,
        code: req.code,
        memo: req.memo.clone(),
        timeout_at,
        created_at: now(),
    }
}

fn check_request(req: &TransferRequest) -> StoreResult<()> {
    if req.debit_account_id == req.credit_account_id {
        return Err(StoreError::Invariant(
            "a transfer needs two different accounts".into(),
        ));
    }
    if req.amount.is_zero() {
        return Err(StoreError::Invariant(
            "a transfer needs a positive amount".into(),
        ));
    }
    Ok(())
}

pub fn find_transfer(c: &mut DbConn, id: &str) -> StoreResult<Option<TransferRow>> {
    Ok(transfers::table
        .find(id)
        .select(TransferRow::as_select())
        .first(c)
        .optional()?)
}

/// Moves money at once (a posted transfer). Idempotent on `req.id`.
pub fn transfer(c: &mut DbConn, req: &TransferRequest) -> StoreResult<TransferRow> {
    create(c, req, None)
}

/// Reserves money until `timeout_at` (a pending transfer). Idempotent on `req.id`.
pub fn hold(
    c: &mut DbConn,
    req: &TransferRequest,
    timeout_at: NaiveDateTime,
) -> StoreResult<TransferRow> {
    create(c, req, Some(timeout_at))
}

/// A posted transfer, or with a timeout a pending one.
fn create(
    c: &mut DbConn,
    req: &TransferRequest,
    timeout_at: Option<NaiveDateTime>,
) -> StoreResult<TransferRow> {
    check_request(req)?;
    let kind = if timeout_at.is_some() {
        TransferKind::Pending
    } else {
        TransferKind::Single
    };
    let row = new_row(req, kind, timeout_at);
    if let Some(original) = replayed(c, &row)? {
        return Ok(original);
    }
    insert(c, &row)?;
    let a = row.amount;
    let (debit, credit) = if timeout_at.is_some() {
        (
            Delta {
                debits_pending: a,
                ..Delta::default()
            },
            Delta {
                credits_pending: a,
                ..Delta::default()
            },
        )
    } else {
        (
            Delta {
                debits_posted: a,
                ..Delta::default()
            },
            Delta {
                credits_posted: a,
                ..Delta::default()
            },
        )
    };
    adjust(c, &row.debit_account_id, debit)?;
    adjust(c, &row.credit_account_id, credit)?;
    Ok(row)
}

/// A hold (pending transfer), whatever became of it since.
pub fn pending(c: &mut DbConn, pending_id: &str) -> StoreResult<TransferRow> {
    transfers::table
        .find(pending_id)
        .filter(transfers::kind.eq(TransferKind::Pending))
        .select(TransferRow::as_select())
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("hold"))
}

/// Resolves a hold: `Some(amount)` posts that much (≤ the hold) and releases the rest; `None`
/// voids it. Idempotent on `id`; a hold resolves once.
fn resolve(
    c: &mut DbConn,
    id: &str,
    pending_id: &str,
    post_amount: Option<Money>,
    at: NaiveDateTime,
    after_timeout: bool,
) -> StoreResult<TransferRow> {
    let hold = pending(c, pending_id)?;
    let (kind, amount) = match post_amount {
        Some(a) => (TransferKind::Post, a.micros()),
        None => (TransferKind::Void, hold.amount),
    };
    let row = TransferRow {
        id: id.to_string(),
        debit_account_id: hold.debit_account_id.clone(),
        credit_account_id: hold.credit_account_id.clone(),
        amount,
        kind,
        pending_id: Some(hold.id.clone()),
        code: hold.code,
        memo: hold.memo.clone(),
        timeout_at: None,
        created_at: at,
    };
    if let Some(original) = replayed(c, &row)? {
        return Ok(original);
    }
    let resolved: i64 = transfers::table
        .filter(transfers::pending_id.eq(pending_id))
        .count()
        .get_result(c)?;
    if resolved > 0 {
        return Err(StoreError::HoldResolved(pending_id.to_string()));
    }
    if post_amount.is_some() && !after_timeout && hold.timeout_at.is_some_and(|t| t <= at) {
        return Err(StoreError::HoldExpired(pending_id.to_string()));
    }
    if amount > hold.amount {
        return Err(StoreError::PostExceedsHold {
            amount_micros: amount,
            held_micros: hold.amount,
        });
    }
    insert(c, &row)?;
    let posted = if kind == TransferKind::Post {
        amount
    } else {
        0
    };
    adjust(
        c,
        &row.debit_account_id,
        Delta {
            debits_pending: -hold.amount,
            debits_posted: posted,
            ..Delta::default()
        },
    )?;
    adjust(
        c,
        &row.credit_account_id,
        Delta {
            credits_pending: -hold.amount,
            credits_posted: posted,
            ..Delta::default()
        },
    )?;
    Ok(row)
}

pub fn post(c: &mut DbConn, id: &str, pending_id: &str, amount: Money) -> StoreResult<TransferRow> {
    resolve(c, id, pending_id, Some(amount), now(), false)
}

pub fn void(c: &mut DbConn, id: &str, pending_id: &str) -> StoreResult<TransferRow> {
    resolve(c, id, pending_id, None, now(), false)
}

/// The transfer that posted or voided a hold, if any.
pub fn resolution(c: &mut DbConn, pending_id: &str) -> StoreResult<Option<TransferRow>> {
    Ok(transfers::table
        .filter(transfers::pending_id.eq(pending_id))
        .select(TransferRow::as_select())
        .first(c)
        .optional()?)
}

/// Resolves a hold as of `at`, posting even after its timeout: for the hold-expiry job, which
/// posts what was recorded under a crashed process's lease.
pub fn resolve_at(
    c: &mut DbConn,
    id: &str,
    pending_id: &str,
    post_amount: Option<Money>,
    at: NaiveDateTime,
) -> StoreResult<TransferRow> {
    resolve(c, id, pending_id, post_amount, at, true)
}

/// Up to `limit` holds whose timeout has passed and that nothing resolved yet.
pub fn expired_holds(c: &mut DbConn, at: NaiveDateTime, limit: i64) -> StoreResult<Vec<String>> {
    let resolutions = diesel::alias!(transfers as resolutions);
    Ok(transfers::table
        .filter(transfers::kind.eq(TransferKind::Pending))
        .filter(transfers::timeout_at.le(at))
        // A consulting session's hold belongs to its booking: the consulting job lapses both.
        .filter(transfers::code.ne(TransferCode::ConsultingSession.as_str()))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            resolutions.filter(
                resolutions
                    .field(transfers::pending_id)
                    .eq(transfers::id.nullable()),
            ),
        )))
        // A lease its live instance extended (docs/ARCHITECTURE.md, "Leases") runs on.
        .filter(diesel::dsl::not(diesel::dsl::exists(
            instance_holds::table
                .filter(instance_holds::hold_id.eq(transfers::id))
                .filter(instance_holds::extended_to.gt(at)),
        )))
        .select(transfers::id)
        .order(transfers::timeout_at.asc())
        .limit(limit)
        .load(c)?)
}

/// An account's transfers, newest first.
pub fn account_transfers(
    c: &mut DbConn,
    account_id: &str,
    limit: i64,
    offset: i64,
) -> StoreResult<Vec<TransferRow>> {
    Ok(transfers::table
        .filter(
            transfers::debit_account_id
                .eq(account_id)
                .or(transfers::credit_account_id.eq(account_id)),
        )
        .order((transfers::created_at.desc(), transfers::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(TransferRow::as_select())
        .load(c)?)
}

/// One thing reconciliation found wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = ReconciliationDifference)]
pub struct Difference {
    /// The account concerned; null for the ledger as a whole.
    #[schema(required)]
    pub account_id: Option<String>,
    pub problem: String,
}

/// What a full recomputation of the ledger found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Reconciliation {
    pub accounts_checked: i64,
    pub transfers_checked: i64,
    pub differences: Vec<Difference>,
}

/// Transfers read at once while recomputing: memory stays bounded by the number of accounts,
/// not of transfers.
const RECONCILE_PAGE: i64 = 10_000;

/// Recomputes every account from its transfers and compares: cached totals equal to what the
/// transfers add up to, every account within its flags (no SME account below zero), and
/// Σ debits = Σ credits, posted and pending.
pub fn reconcile(c: &mut DbConn) -> StoreResult<Reconciliation> {
    let all_accounts: Vec<AccountRow> = accounts::table
        .order(accounts::id)
        .select(AccountRow::as_select())
        .load(c)?;
    let units: HashMap<&str, &str> = all_accounts
        .iter()
        .map(|a| (a.id.as_str(), a.currency.as_str()))
        .collect();
    let mut derived: HashMap<String, Totals> = HashMap::new();
    let mut differences = Vec::new();
    let transfers_checked = derive_totals(c, &units, &mut derived, &mut differences)?;
    compare_cached(&all_accounts, &derived, &mut differences);
    Ok(Reconciliation {
        accounts_checked: all_accounts.len() as i64,
        transfers_checked,
        differences,
    })
}

/// Adds up every transfer, a page at a time, into `derived` (per account id); a transfer
/// between accounts of different units is a difference. How many transfers were read.
fn derive_totals(
    c: &mut DbConn,
    units: &HashMap<&str, &str>,
    derived: &mut HashMap<String, Totals>,
    differences: &mut Vec<Difference>,
) -> StoreResult<i64> {
    let mut transfers_checked = 0_i64;
    let mut after: Option<String> = None;
    loop {
        let mut q = transfers::table.into_boxed();
        if let Some(a) = &after {
            q = q.filter(transfers::id.gt(a.clone()));
        }
        let page: Vec<TransferRow> = q
            .order(transfers::id)
            .limit(RECONCILE_PAGE)
            .select(TransferRow::as_select())
            .load(c)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        let pending_ids: Vec<&str> = page
            .iter()
            .filter_map(|t| t.pending_id.as_deref())
            .collect();
        let holds: HashMap<String, i64> = transfers::table
            .filter(transfers::id.eq_any(&pending_ids))
            .select((transfers::id, transfers::amount))
            .load::<(String, i64)>(c)?
            .into_iter()
            .collect();
        for t in &page {
            let held = t
                .pending_id
                .as_deref()
                .and_then(|p| holds.get(p).copied())
                .unwrap_or(0);
            let (pending, posted) = match t.kind {
                TransferKind::Single => (0, t.amount),
                TransferKind::Pending => (t.amount, 0),
                TransferKind::Post => (-held, t.amount),
                TransferKind::Void => (-held, 0),
            };
            // Money and consulting minutes never meet in one transfer.
            if units.get(t.debit_account_id.as_str()) != units.get(t.credit_account_id.as_str()) {
                differences.push(Difference {
                    account_id: Some(t.debit_account_id.clone()),
                    problem: format!(
                        "transfer {} moves between units ({:?} to {:?})",
                        t.id,
                        units.get(t.debit_account_id.as_str()),
                        units.get(t.credit_account_id.as_str())
                    ),
                });
            }
            let d = derived.entry(t.debit_account_id.clone()).or_default();
            d.debits_pending += pending;
            d.debits_posted += posted;
            let cr = derived.entry(t.credit_account_id.clone()).or_default();
            cr.credits_pending += pending;
            cr.credits_posted += posted;
        }
        transfers_checked += page.len() as i64;
    }
    Ok(transfers_checked)
}

/// Compares each account's cached totals with those its transfers add up to and with its
/// flags, and the debits and credits of each unit with each other.
fn compare_cached(
    all_accounts: &[AccountRow],
    derived: &HashMap<String, Totals>,
    differences: &mut Vec<Difference>,
) {
    // Σ debits = Σ credits holds per unit: pounds with pounds, minutes with minutes.
    let mut sums: std::collections::BTreeMap<&str, Totals> = Default::default();
    for a in all_accounts {
        let cached = a.totals();
        let expected = derived.get(a.id.as_str()).copied().unwrap_or_default();
        if cached != expected {
            differences.push(Difference {
                account_id: Some(a.id.clone()),
                problem: format!("caches {cached:?} but its transfers add up to {expected:?}"),
            });
        }
        if !expected.respects(a.flags) {
            differences.push(Difference {
                account_id: Some(a.id.clone()),
                problem: format!(
                    "its transfers break its flags ({}): {expected:?}",
                    a.kind.as_str()
                ),
            });
        }
        // The cached totals: the derived ones balance by construction.
        let sum = sums.entry(a.currency.as_str()).or_default();
        sum.debits_pending += cached.debits_pending;
        sum.debits_posted += cached.debits_posted;
        sum.credits_pending += cached.credits_pending;
        sum.credits_posted += cached.credits_posted;
    }
    for (unit, sum) in &sums {
        if sum.debits_posted != sum.credits_posted || sum.debits_pending != sum.credits_pending {
            differences.push(Difference {
                account_id: None,
                problem: format!("debits and credits in {unit} differ: {sum:?}"),
            });
        }
    }
}

/// [`reconcile`], as an error naming the first difference (for tests and assertions).
pub fn verify(c: &mut DbConn) -> StoreResult<()> {
    match reconcile(c)?.differences.into_iter().next() {
        None => Ok(()),
        Some(d) => Err(StoreError::Invariant(format!(
            "account {}: {}",
            d.account_id.as_deref().unwrap_or("(all)"),
            d.problem
        ))),
    }
}
