//! Metered usage: the hold before a proxied request and its settlement after. A settlement
//! posts the cost against the hold and writes the usage row in one transaction, so a usage row
//! always belongs to exactly one posted transfer and a request id is billed at most once.

use crate::db::{now, DbConn, Store};
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::ledger::{self, TransferRequest, OVERRUN_LOSS, PURCHASED_USAGE, TEST_FUNDING, USAGE};
use crate::schema::{api_keys, capped_holds, key_spend, usage_records};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};
use voucherd_domain::ledger::TransferCode;
use voucherd_domain::UserId;
use voucherd_domain::{ApiKeyId, Money, VoucherId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = usage_records)]
// `None` is written as NULL, not DEFAULT: with no DEFAULT in a row, diesel sends a batch of
// rows to SQLite as one multi-row INSERT instead of one statement per row.
#[diesel(treat_none_as_default_value = false)]
pub struct UsageRow {
    pub id: String,
    pub request_id: String,
    pub voucher_id: VoucherId,
    pub api_key_id: ApiKeyId,
    pub model: String,
    pub price_id: String,
    pub input_per_million: i64,
    pub cached_input_per_million: i64,
    pub output_per_million: i64,
    pub prompt_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: i64,
    pub hold_id: String,
    /// The request's own post; `None` for a leased request, whose post is the transfer that
    /// resolves its hold (the lease) when the lease closes.
    pub post_id: Option<String>,
    pub upstream_status: i32,
    pub created_at: NaiveDateTime,
    /// The part of `cost` above what the request held (0 when the hold bounded it).
    pub overrun_micros: i64,
}

/// Test allowance accounts are named with this prefix and the owner's id.
pub const TEST_ALLOWANCE_PREFIX: &str = "test-allowance-";

pub fn hold_id(request_id: &str) -> String {
    format!("hold-{request_id}")
}

/// Where a hold on `debit_account_id` is consumed to: the programme's usage account, or, for
/// purchased credit, an account of its own (the SME's money is not programme spending).
pub fn usage_account(debit_account_id: &str) -> &'static str {
    if crate::payments::is_purchased_account(debit_account_id) {
        PURCHASED_USAGE
    } else {
        USAGE
    }
}

/// Whether usage paid from `debit_account_id` counts in the programme's figures: not test
/// allowances, not purchased credit.
pub fn programme_funded(debit_account_id: &str) -> bool {
    !debit_account_id.starts_with(TEST_ALLOWANCE_PREFIX)
        && !crate::payments::is_purchased_account(debit_account_id)
}

/// A key's monthly spend cap, counted against for one request.
#[derive(Debug, Clone)]
pub struct KeyCap {
    pub api_key_id: ApiKeyId,
    /// Calendar month, `YYYY-MM`.
    pub month: String,
    pub cap_micros: i64,
}

/// Counts a hold against its key's cap for the month: refused when spent + held would pass it.
fn reserve(c: &mut DbConn, hold_id: &str, cap: &KeyCap, amount: i64) -> StoreResult<()> {
    let row = (
        key_spend::api_key_id.eq(&cap.api_key_id),
        key_spend::month.eq(&cap.month),
        key_spend::spent.eq(0_i64),
        key_spend::held.eq(0_i64),
    );
    // The month's counter may not exist yet; both backends create it only if absent.
    match c {
        DbConn::Sqlite(c) => diesel::insert_or_ignore_into(key_spend::table)
            .values(row)
            .execute(c)?,
        DbConn::Postgresql(c) => diesel::insert_into(key_spend::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c)?,
    };
    let updated = diesel::update(
        key_spend::table
            .filter(key_spend::api_key_id.eq(&cap.api_key_id))
            .filter(key_spend::month.eq(&cap.month))
            .filter((key_spend::spent + key_spend::held).le(cap.cap_micros - amount)),
    )
    .set(key_spend::held.eq(key_spend::held + amount))
    .execute(c)?;
    if updated != 1 {
        return Err(StoreError::KeySpendCapReached);
    }
    diesel::insert_into(capped_holds::table)
        .values((
            capped_holds::hold_id.eq(hold_id),
            capped_holds::api_key_id.eq(&cap.api_key_id),
            capped_holds::month.eq(&cap.month),
            capped_holds::amount.eq(amount),
        ))
        .execute(c)?;
    Ok(())
}

/// Moves a resolved hold out of its key's monthly counter: `posted` becomes spent.
fn unreserve(c: &mut DbConn, hold_id: &str, posted: i64) -> StoreResult<()> {
    let capped: Option<(String, String, i64)> = capped_holds::table
        .find(hold_id)
        .select((
            capped_holds::api_key_id,
            capped_holds::month,
            capped_holds::amount,
        ))
        .first(c)
        .optional()?;
    if let Some((key, month, amount)) = capped {
        diesel::update(
            key_spend::table
                .filter(key_spend::api_key_id.eq(key))
                .filter(key_spend::month.eq(month)),
        )
        .set((
            key_spend::held.eq(key_spend::held - amount),
            key_spend::spent.eq(key_spend::spent + posted),
        ))
        .execute(c)?;
    }
    Ok(())
}

impl Store {
    /// Reserves `amount` of a voucher's account for one request until `timeout_at`.
    /// `instance_id` is the proxy instance serving it: should the instance die, the hold is
    /// released as soon as its heartbeat lapses.
    pub async fn open_hold(
        &self,
        request_id: String,
        debit_account_id: String,
        amount: Money,
        timeout_at: NaiveDateTime,
        cap: Option<KeyCap>,
        instance_id: voucherd_domain::InstanceId,
    ) -> StoreResult<(String, i64)> {
        self.write(move |c| {
            let row = ledger::hold(
                c,
                &TransferRequest {
                    id: hold_id(&request_id),
                    credit_account_id: usage_account(&debit_account_id).into(),
                    debit_account_id,
                    amount,
                    code: TransferCode::Usage,
                    memo: format!("request {request_id}"),
                },
                timeout_at,
            )?;
            if let Some(cap) = &cap {
                reserve(c, &row.id, cap, row.amount)?;
            }
            crate::instances::register_hold(c, &row.id, &instance_id)?;
            // Read in the same transaction, so the caller learns the balance without another
            // round trip.
            let available = ledger::account(c, &row.debit_account_id)?
                .totals()
                .available();
            Ok((row.id, available))
        })
        .await
    }

    /// Releases a hold whose request was never served (upstream unreachable, timed out).
    pub async fn release_hold(&self, hold_id: String) -> StoreResult<()> {
        self.write(move |c| {
            ledger::void(c, &format!("{hold_id}:void"), &hold_id)?;
            crate::instances::forget_hold(c, &hold_id)?;
            unreserve(c, &hold_id, 0)
        })
        .await
    }

    /// Posts a request's cost and records its usage. A cost above the hold (which the hold's
    /// bound should make impossible) is posted up to the hold and the excess is booked to the
    /// overrun-loss account, so consumption stays exact and the voucher is never overdrawn.
    pub async fn settle_usage(&self, mut row: UsageRow) -> StoreResult<UsageRow> {
        self.write(move |c| settle(c, &mut row).map(|_| row)).await
    }

    pub async fn usage_for_voucher(
        &self,
        voucher_id: VoucherId,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<UsageRow>> {
        self.read(move |c| {
            Ok(usage_records::table
                .filter(usage_records::voucher_id.eq(voucher_id))
                .order((usage_records::created_at.desc(), usage_records::id.desc()))
                .limit(limit)
                .offset(offset)
                .select(UsageRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// Resolves holds whose timeout has passed: the usage recorded under one (a crashed
    /// process's lease) is posted, the rest released. Returns how many.
    pub async fn void_expired_holds(&self, limit: i64) -> StoreResult<usize> {
        self.void_expired_holds_at(now(), limit).await
    }

    /// [`Store::void_expired_holds`] as of `at` (the worker's clock).
    pub async fn void_expired_holds_at(&self, at: NaiveDateTime, limit: i64) -> StoreResult<usize> {
        let expired = self
            .read(move |c| ledger::expired_holds(c, at, limit))
            .await?;
        // Each in its own transaction: one hold that fails to resolve must not stop the rest.
        let mut resolved = 0;
        for hold in expired {
            let id = hold.clone();
            let closed = self.write(move |c| {
                // Checked under the hold's lock: its live instance may have extended it
                // since it was found expired.
                lock_holds(c, &[id.as_str()])?;
                if crate::instances::extended_past(c, &id, at)? {
                    return Ok(false);
                }
                close_hold(c, &id, at)?;
                Ok(true)
            });
            match closed.await {
                Ok(true) => resolved += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, %hold, "an expired hold could not be resolved")
                }
            }
        }
        Ok(resolved)
    }

    /// Leases part of an account's balance to a proxy instance: `target` if the account holds
    /// that much, less if not, but at least `need`. Returns the hold, its amount and the
    /// account's balance after it.
    pub async fn open_lease(
        &self,
        lease_id: String,
        debit_account_id: String,
        need_micros: i64,
        target_micros: i64,
        timeout_at: NaiveDateTime,
        instance_id: voucherd_domain::InstanceId,
    ) -> StoreResult<(String, i64, i64)> {
        self.write(move |c| {
            let available = ledger::account(c, &debit_account_id)?.totals().available();
            if available < need_micros {
                return Err(StoreError::InsufficientFunds {
                    account_id: debit_account_id,
                });
            }
            // What is left decides: a quarter of it, within [need, target].
            let amount = (available / 4).clamp(need_micros, target_micros.max(need_micros));
            let amount =
                Money::from_micros(amount).map_err(|e| StoreError::Invariant(e.to_string()))?;
            let row = ledger::hold(
                c,
                &TransferRequest {
                    id: hold_id(&lease_id),
                    credit_account_id: usage_account(&debit_account_id).into(),
                    debit_account_id,
                    amount,
                    code: TransferCode::Usage,
                    memo: format!("lease {lease_id}"),
                },
                timeout_at,
            )?;
            crate::instances::register_hold(c, &row.id, &instance_id)?;
            Ok((row.id, row.amount, available - row.amount))
        })
        .await
    }

    /// Records leased requests' usage in one transaction of its own (the proxy's usage writer
    /// batches them instead: [`crate::usage_writer`]).
    pub async fn record_usage(
        &self,
        rows: Vec<UsageRow>,
        touch: Vec<String>,
        own_money: Vec<String>,
    ) -> StoreResult<()> {
        self.write(move |c| {
            let touch: Vec<&str> = touch.iter().map(String::as_str).collect();
            let own: Vec<&str> = own_money.iter().map(String::as_str).collect();
            record_batch(c, &rows, &touch, &own)
        })
        .await
    }

    /// Extends a busy lease's hold to `timeout_at`, so it goes on serving instead of closing and
    /// reopening; false when the hold was resolved meanwhile (the lease then takes no more).
    pub async fn extend_lease(
        &self,
        hold_id: String,
        timeout_at: NaiveDateTime,
    ) -> StoreResult<bool> {
        self.write(move |c| {
            lock_holds(c, &[hold_id.as_str()])?;
            if ledger::resolution(c, &hold_id)?.is_some() {
                return Ok(false);
            }
            crate::instances::extend_hold(c, &hold_id, timeout_at)
        })
        .await
    }

    /// Closes a lease: posts the usage recorded under it and releases the rest. Closing twice
    /// changes nothing.
    pub async fn close_lease(&self, hold_id: String) -> StoreResult<()> {
        self.write(move |c| close_hold(c, &hold_id, now())).await
    }

    /// Usage recorded under a voucher account's open holds: spent, though not yet posted.
    pub async fn unposted_usage(&self, account_id: String) -> StoreResult<i64> {
        self.read(move |c| unposted(c, &account_id)).await
    }

    /// What a capped key has spent in `month` (`YYYY-MM`), in micros.
    pub async fn key_month_spend(
        &self,
        api_key_id: ApiKeyId,
        month: String,
    ) -> StoreResult<(i64, i64)> {
        self.read(move |c| {
            Ok(key_spend::table
                .filter(key_spend::api_key_id.eq(api_key_id))
                .filter(key_spend::month.eq(month))
                .select((key_spend::spent, key_spend::held))
                .first(c)
                .optional()?
                .unwrap_or((0, 0)))
        })
        .await
    }

    /// The organisation's free allowance for test-mode keys, granted once at `amount`.
    /// Returns its account id.
    pub async fn ensure_test_allowance(
        &self,
        owner_id: UserId,
        amount: Money,
    ) -> StoreResult<String> {
        self.write(move |c| {
            let id = format!("{TEST_ALLOWANCE_PREFIX}{owner_id}");
            if ledger::find_account(c, &id)?.is_none() {
                ledger::create_account(
                    c,
                    &id,
                    voucherd_domain::ledger::AccountKind::TestAllowance,
                )?;
                if !amount.is_zero() {
                    ledger::transfer(
                        c,
                        &TransferRequest {
                            id: format!("{id}-grant"),
                            debit_account_id: TEST_FUNDING.into(),
                            credit_account_id: id.clone(),
                            amount,
                            code: TransferCode::TestAllowance,
                            memo: "free allowance for test-mode keys".into(),
                        },
                    )?;
                }
            }
            Ok(id)
        })
        .await
    }

    pub async fn account(&self, id: String) -> StoreResult<ledger::AccountRow> {
        self.read(move |c| ledger::account(c, &id)).await
    }
}

/// [`record_batch`] on PostgreSQL in one round trip: the batch goes to the database function
/// `record_usage_rows` (migration `000025`) as one typed array per column, which does the same
/// in the same order. Called outside a transaction it is one by itself.
pub(crate) fn record_batch_postgres(
    pg: &mut diesel::PgConnection,
    rows: &[UsageRow],
    touch: &[&str],
    own_money: &[&str],
) -> StoreResult<()> {
    use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamp};
    let text = |f: fn(&UsageRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let number = |f: fn(&UsageRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let done = diesel::sql_query(
        "SELECT record_usage_rows($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
         $15, $16, $17, $18, $19, $20)",
    )
    .bind::<Array<Text>, _>(text(|r| &r.id))
    .bind::<Array<Text>, _>(text(|r| &r.request_id))
    .bind::<Array<Text>, _>(text(|r| r.voucher_id.as_str()))
    .bind::<Array<Text>, _>(text(|r| r.api_key_id.as_str()))
    .bind::<Array<Text>, _>(text(|r| &r.model))
    .bind::<Array<Text>, _>(text(|r| &r.price_id))
    .bind::<Array<BigInt>, _>(number(|r| r.input_per_million))
    .bind::<Array<BigInt>, _>(number(|r| r.cached_input_per_million))
    .bind::<Array<BigInt>, _>(number(|r| r.output_per_million))
    .bind::<Array<BigInt>, _>(number(|r| r.prompt_tokens))
    .bind::<Array<BigInt>, _>(number(|r| r.cached_prompt_tokens))
    .bind::<Array<BigInt>, _>(number(|r| r.completion_tokens))
    .bind::<Array<BigInt>, _>(number(|r| r.cost))
    .bind::<Array<Text>, _>(text(|r| &r.hold_id))
    .bind::<Array<Nullable<Text>>, _>(
        rows.iter()
            .map(|r| r.post_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Integer>, _>(rows.iter().map(|r| r.upstream_status).collect::<Vec<i32>>())
    .bind::<Array<Timestamp>, _>(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(number(|r| r.overrun_micros))
    .bind::<Array<Text>, _>(touch)
    .bind::<Array<Text>, _>(own_money)
    .execute(pg);
    match done {
        Ok(_) => Ok(()),
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.hint() == Some("hold_resolved") =>
        {
            Err(StoreError::HoldResolved(
                info.details().unwrap_or_default().to_string(),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Records leased requests' usage in one statement, a transaction by itself when called
/// outside one (the usage writer's group commit), and marks `touch` keys as used at the time of
/// their latest row. Rows under `own_money` holds (purchased credit) stay out of the
/// programme's rollups. Usage may only join a hold that is still open (a lease the hold-expiry
/// job has already resolved would never post it): the database refuses such a batch. On
/// PostgreSQL the function `record_usage_rows` does it ([`record_batch_postgres`]); on SQLite
/// one multi-row INSERT into the view `usage_batch_rows`, whose trigger writes each row with
/// its lease's total, its rollup and its key (migration `000025`).
pub(crate) fn record_batch(
    c: &mut DbConn,
    rows: &[UsageRow],
    touch: &[&str],
    own_money: &[&str],
) -> StoreResult<()> {
    let sqlite = match c {
        DbConn::Postgresql(pg) => return record_batch_postgres(pg, rows, touch, own_money),
        DbConn::Sqlite(sqlite) => sqlite,
    };
    let table = crate::schema::usage_batch_rows::table;
    let batch = batch_rows(rows, touch, own_money);
    let inserted = match batch.as_slice() {
        // A lone request's row (one client at a time): this statement's text never changes,
        // so it is prepared, and its trigger compiled, once per connection. A multi-row INSERT
        // is prepared anew for each batch, which its rows share.
        [row] => diesel::insert_into(table).values(row).execute(sqlite),
        _ if batch.len() <= SQLITE_ROWS_PER_INSERT => {
            diesel::insert_into(table).values(&batch).execute(sqlite)
        }
        // More than the usage writer ever sends at once: several INSERTs, one transaction.
        _ => sqlite.transaction(|c| {
            let mut n = 0;
            for chunk in batch.chunks(SQLITE_ROWS_PER_INSERT) {
                n += diesel::insert_into(table).values(chunk).execute(c)?;
            }
            Ok(n)
        }),
    };
    match inserted {
        Ok(_) => Ok(()),
        // Raised by the trigger `usage_joins_open_hold` (migration 000021) as a row is inserted.
        Err(diesel::result::Error::DatabaseError(_, info)) if info.message() == "hold_resolved" => {
            let holds: Vec<&str> = rows.iter().map(|r| r.hold_id.as_str()).collect();
            Err(StoreError::HoldResolved(holds.join(", ")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Rows one INSERT into `usage_batch_rows` carries at most: 20 bound values a row, within
/// SQLite's limit of 32,766 (and the usage writer's batches are at most 1,024 rows).
const SQLITE_ROWS_PER_INSERT: usize = 1024;

/// One row of a SQLite usage batch: the usage row and what its trigger needs to know.
#[derive(Insertable)]
#[diesel(table_name = crate::schema::usage_batch_rows)]
#[diesel(treat_none_as_default_value = false)]
struct BatchRow<'a> {
    id: &'a str,
    request_id: &'a str,
    voucher_id: &'a str,
    api_key_id: &'a str,
    model: &'a str,
    price_id: &'a str,
    input_per_million: i64,
    cached_input_per_million: i64,
    output_per_million: i64,
    prompt_tokens: i64,
    cached_prompt_tokens: i64,
    completion_tokens: i64,
    cost: i64,
    hold_id: &'a str,
    post_id: Option<&'a str>,
    upstream_status: i32,
    created_at: NaiveDateTime,
    overrun_micros: i64,
    own_money: bool,
    touch: bool,
}

/// The batch's rows, each `touch` key marked on its latest row (the time its last use
/// becomes).
fn batch_rows<'a>(rows: &'a [UsageRow], touch: &[&str], own_money: &[&str]) -> Vec<BatchRow<'a>> {
    let touch: HashSet<&str> = touch.iter().copied().collect();
    let own_money: HashSet<&str> = own_money.iter().copied().collect();
    let mut latest: HashMap<&str, usize> = HashMap::with_capacity(touch.len());
    for (i, r) in rows.iter().enumerate() {
        if touch.contains(r.api_key_id.as_str()) {
            let at = latest.entry(r.api_key_id.as_str()).or_insert(i);
            if rows[*at].created_at <= r.created_at {
                *at = i;
            }
        }
    }
    rows.iter()
        .enumerate()
        .map(|(i, r)| BatchRow {
            id: &r.id,
            request_id: &r.request_id,
            voucher_id: r.voucher_id.as_str(),
            api_key_id: r.api_key_id.as_str(),
            model: &r.model,
            price_id: &r.price_id,
            input_per_million: r.input_per_million,
            cached_input_per_million: r.cached_input_per_million,
            output_per_million: r.output_per_million,
            prompt_tokens: r.prompt_tokens,
            cached_prompt_tokens: r.cached_prompt_tokens,
            completion_tokens: r.completion_tokens,
            cost: r.cost,
            hold_id: &r.hold_id,
            post_id: r.post_id.as_deref(),
            upstream_status: r.upstream_status,
            created_at: r.created_at,
            overrun_micros: r.overrun_micros,
            own_money: own_money.contains(r.hold_id.as_str()),
            touch: latest.get(r.api_key_id.as_str()) == Some(&i),
        })
        .collect()
}

/// What a lease has recorded so far (its running total; 0 when nothing was).
fn hold_total(c: &mut DbConn, hold_id: &str) -> StoreResult<i64> {
    use crate::schema::hold_usage;
    Ok(hold_usage::table
        .find(hold_id)
        .select(hold_usage::cost)
        .first::<i64>(c)
        .optional()?
        .unwrap_or(0))
}

fn lock_holds(c: &mut DbConn, hold_ids: &[&str]) -> StoreResult<()> {
    use crate::schema::transfers;
    if let DbConn::Postgresql(pg) = c {
        transfers::table
            .filter(transfers::id.eq_any(hold_ids))
            .order(transfers::id)
            .select(transfers::id)
            .for_update()
            .load::<String>(pg)?;
    }
    Ok(())
}

pub(crate) fn close_hold(c: &mut DbConn, hold_id: &str, at: NaiveDateTime) -> StoreResult<()> {
    lock_holds(c, &[hold_id])?;
    if ledger::resolution(c, hold_id)?.is_some() {
        return Ok(());
    }
    crate::instances::forget_hold(c, hold_id)?;
    // The hold is locked (or, on SQLite, this is the only writer): no batch adds to the total
    // between this read and the resolution, and none can join once it is resolved.
    let total = hold_total(c, hold_id)?;
    diesel::delete(crate::schema::hold_usage::table.find(hold_id)).execute(c)?;
    if total == 0 {
        ledger::resolve_at(c, &format!("{hold_id}:void"), hold_id, None, at)?;
        return unreserve(c, hold_id, 0);
    }
    let held = ledger::pending(c, hold_id)?.amount;
    let posted = total.min(held);
    let amount = Money::from_micros(posted).map_err(|e| StoreError::Invariant(e.to_string()))?;
    ledger::resolve_at(c, &format!("{hold_id}:post"), hold_id, Some(amount), at)?;
    if total > posted {
        // Absurd reported usage must not make the hold unresolvable: the overrun is capped.
        let overrun = (total - posted).min(voucherd_domain::money::MAX_AMOUNT_MICROS);
        ledger::transfer(
            c,
            &TransferRequest {
                id: format!("{hold_id}:overrun"),
                debit_account_id: OVERRUN_LOSS.into(),
                credit_account_id: USAGE.into(),
                amount: Money::from_micros(overrun)
                    .map_err(|e| StoreError::Invariant(e.to_string()))?,
                code: TransferCode::UsageOverrun,
                memo: format!("usage under {hold_id} above its hold"),
            },
        )?;
    }
    unreserve(c, hold_id, posted)
}

/// Usage recorded under the account's leases that are still open (not yet posted).
pub(crate) fn unposted(c: &mut DbConn, account_id: &str) -> StoreResult<i64> {
    use crate::schema::{hold_usage, transfers};
    let resolutions = diesel::alias!(transfers as resolutions);
    let costs: Vec<i64> = hold_usage::table
        .inner_join(transfers::table.on(transfers::id.eq(hold_usage::hold_id)))
        .filter(transfers::debit_account_id.eq(account_id))
        .filter(transfers::kind.eq(voucherd_domain::ledger::TransferKind::Pending))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            resolutions.filter(
                resolutions
                    .field(transfers::pending_id)
                    .eq(transfers::id.nullable()),
            ),
        )))
        .select(hold_usage::cost)
        .load(c)?;
    Ok(costs.iter().sum())
}

fn settle(c: &mut DbConn, row: &mut UsageRow) -> StoreResult<()> {
    // A retry after a commit that succeeded but reported an error: already settled.
    let done: i64 = usage_records::table
        .filter(usage_records::request_id.eq(&row.request_id))
        .count()
        .get_result(c)?;
    if done > 0 {
        return Ok(());
    }
    // One read of the hold: its amount bounds the post, its account tells test from live.
    let hold = ledger::pending(c, &row.hold_id)?;
    let held = hold.amount;
    let cost = Money::from_micros(row.cost)
        .map_err(|e| StoreError::Invariant(format!("usage cost: {e}")))?;
    let held_money =
        Money::from_micros(held).map_err(|e| StoreError::Invariant(format!("hold amount: {e}")))?;
    let posted = cost.min(held_money);
    let post = ledger::post(c, &format!("{}:post", row.hold_id), &row.hold_id, posted)?;
    unreserve(c, &row.hold_id, posted.micros())?;
    crate::instances::forget_hold(c, &row.hold_id)?;
    // What the provider billed beyond the hold: shown per key and model, and may suspend it.
    row.overrun_micros = cost.micros() - posted.micros();
    if let Some(overrun) = cost.checked_sub(posted).filter(|m| !m.is_zero()) {
        ledger::transfer(
            c,
            &TransferRequest {
                id: format!("{}:overrun", row.hold_id),
                debit_account_id: OVERRUN_LOSS.into(),
                credit_account_id: USAGE.into(),
                amount: overrun,
                code: TransferCode::UsageOverrun,
                memo: format!("request {} cost above its hold", row.request_id),
            },
        )?;
    }
    row.post_id = Some(post.id);
    // Recorded here rather than on its own so the hot path makes no extra write.
    diesel::update(api_keys::table.filter(api_keys::id.eq(&row.api_key_id)))
        .set(api_keys::last_used_at.eq(Some(row.created_at)))
        .execute(c)?;
    match diesel::insert_into(usage_records::table)
        .values(&*row)
        .execute(c)
    {
        Ok(_) => {
            // Test-mode usage is paid from the free allowance, and purchased credit is the
            // SME's own money: neither is programme spending.
            if programme_funded(&hold.debit_account_id) {
                crate::rollup::add(c, std::iter::once(&*row))?;
            }
            Ok(())
        }
        Err(e) if is_unique_violation(&e) => Err(StoreError::Contended),
        Err(e) => Err(e.into()),
    }
}
