//! Metered usage: the hold before a proxied request and its settlement after. A settlement
//! posts the cost against the hold and writes the usage row in one transaction, so a usage row
//! always belongs to exactly one posted transfer and a request id is billed at most once.

use crate::db::{now, DbConn, Store};
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::ledger::{self, TransferRequest, OVERRUN_LOSS, USAGE};
use crate::schema::{api_keys, usage_records};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::ledger::TransferCode;
use voucherd_domain::Money;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = usage_records)]
pub struct UsageRow {
    pub id: String,
    pub request_id: String,
    pub voucher_id: String,
    pub api_key_id: String,
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
    pub post_id: String,
    pub upstream_status: i32,
    pub created_at: NaiveDateTime,
}

pub fn hold_id(request_id: &str) -> String {
    format!("hold-{request_id}")
}

impl Store {
    /// Reserves `amount` of a voucher's account for one request until `timeout_at`.
    pub async fn open_hold(
        &self,
        request_id: String,
        voucher_account_id: String,
        amount: Money,
        timeout_at: NaiveDateTime,
    ) -> StoreResult<String> {
        self.write(move |c| {
            let row = ledger::hold(
                c,
                &TransferRequest {
                    id: hold_id(&request_id),
                    debit_account_id: voucher_account_id,
                    credit_account_id: USAGE.into(),
                    amount,
                    code: TransferCode::Usage,
                    memo: format!("request {request_id}"),
                },
                timeout_at,
            )?;
            Ok(row.id)
        })
        .await
    }

    /// Releases a hold whose request was never served (upstream unreachable, timed out).
    pub async fn release_hold(&self, hold_id: String) -> StoreResult<()> {
        self.write(move |c| {
            ledger::void(c, &format!("{hold_id}:void"), &hold_id)?;
            Ok(())
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
        voucher_id: String,
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

    /// Voids holds whose timeout has passed; returns how many.
    pub async fn void_expired_holds(&self, limit: i64) -> StoreResult<usize> {
        self.write(move |c| ledger::void_expired_holds(c, now(), limit).map(|v| v.len()))
            .await
    }
}

fn settle(c: &mut DbConn, row: &mut UsageRow) -> StoreResult<()> {
    let held = ledger::account_hold_amount(c, &row.hold_id)?;
    let cost = Money::from_micros(row.cost)
        .map_err(|e| StoreError::Invariant(format!("usage cost: {e}")))?;
    let held_money =
        Money::from_micros(held).map_err(|e| StoreError::Invariant(format!("hold amount: {e}")))?;
    let posted = cost.min(held_money);
    let post = ledger::post(c, &format!("{}:post", row.hold_id), &row.hold_id, posted)?;
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
    row.post_id = post.id;
    // Recorded here rather than on its own so the hot path makes no extra write.
    diesel::update(api_keys::table.filter(api_keys::id.eq(&row.api_key_id)))
        .set(api_keys::last_used_at.eq(Some(row.created_at)))
        .execute(c)?;
    match diesel::insert_into(usage_records::table)
        .values(&*row)
        .execute(c)
    {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Contended),
        Err(e) => Err(e.into()),
    }
}
