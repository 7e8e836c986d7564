//! A voucher's statement: what its organisation can spend through its keys, line by line in
//! the order it happened — each metered request once (its settled cost, whichever of the
//! voucher or the organisation's purchased credit paid it), grants, bonuses and awards,
//! top-ups, refunds and the forfeit at expiry — with a running balance. Holds and their
//! resolutions are not lines: they are how a request is paid, not what it cost.

use crate::db::{DbConn, Store};
use crate::error::{StoreError, StoreResult};
use crate::schema::{transfers, usage_records, vouchers};
use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use voucherd_domain::ledger::TransferCode;
use voucherd_domain::VoucherId;

/// Lines of one page at most.
pub const PAGE_MAX: i64 = 1_000;

/// One line of a statement. `amount_micros` is signed: credit positive, spending negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub at: NaiveDateTime,
    /// The usage row's or the transfer's id: with `at`, the line's place in the statement.
    pub id: String,
    /// `usage` for a request, or the transfer's code.
    pub kind: TransferCode,
    /// `voucher` or `purchased` (the organisation's bought credit).
    pub source: &'static str,
    pub amount_micros: i64,
    /// The model and tokens of a request; the transfer's memo otherwise.
    pub detail: String,
}

/// A page of lines after a cursor, and the balance before its first line.
#[derive(Debug, Clone)]
pub struct StatementPage {
    pub opening_micros: i64,
    pub lines: Vec<StatementLine>,
    /// More lines follow the last one.
    pub more: bool,
}

/// The two accounts a voucher's keys spend: the voucher's own and its owner's purchased credit.
fn accounts_of(c: &mut DbConn, voucher_id: &VoucherId) -> StoreResult<(String, String)> {
    let (account, owner): (String, voucherd_domain::UserId) = vouchers::table
        .find(voucher_id)
        .select((vouchers::account_id, vouchers::owner_id))
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("voucher"))?;
    Ok((account, crate::payments::purchased_account_id(&owner)))
}

/// Ledger lines that are not usage: posted transfers into or out of either account.
fn transfer_lines(
    c: &mut DbConn,
    accounts: &(String, String),
    after: &Option<(NaiveDateTime, String)>,
    limit: i64,
) -> StoreResult<Vec<StatementLine>> {
    let mut q = transfers::table
        .filter(
            transfers::debit_account_id
                .eq_any([&accounts.0, &accounts.1])
                .or(transfers::credit_account_id.eq_any([&accounts.0, &accounts.1])),
        )
        .filter(transfers::code.ne(TransferCode::Usage))
        .filter(transfers::kind.eq_any([
            voucherd_domain::ledger::TransferKind::Single,
            voucherd_domain::ledger::TransferKind::Post,
        ]))
        .into_boxed();
    if let Some((at, id)) = after {
        q = q.filter(
            transfers::created_at.gt(*at).or(transfers::created_at
                .eq(*at)
                .and(transfers::id.gt(id.clone()))),
        );
    }
    let rows: Vec<(
        String,
        String,
        String,
        i64,
        TransferCode,
        String,
        NaiveDateTime,
    )> = q
        .order((transfers::created_at, transfers::id))
        .limit(limit)
        .select((
            transfers::id,
            transfers::debit_account_id,
            transfers::credit_account_id,
            transfers::amount,
            transfers::code,
            transfers::memo,
            transfers::created_at,
        ))
        .load(c)?;
    Ok(rows
        .into_iter()
        .map(|(id, debit, credit, amount, code, memo, at)| {
            let ours_debited = debit == accounts.0 || debit == accounts.1;
            let ours_credited = credit == accounts.0 || credit == accounts.1;
            let source = if debit == accounts.1 || credit == accounts.1 {
                "purchased"
            } else {
                "voucher"
            };
            // A move between the two accounts changes neither their sum nor the balance.
            let amount_micros = match (ours_credited, ours_debited) {
                (true, false) => amount,
                (false, true) => -amount,
                _ => 0,
            };
            StatementLine {
                at,
                id,
                kind: code,
                source,
                amount_micros,
                detail: memo,
            }
        })
        .collect())
}

/// A usage row as a statement reads it: id, time, model, prompt and output tokens, cost,
/// overrun, and the account its hold debited.
type UsageLineRow = (String, NaiveDateTime, String, i64, i64, i64, i64, String);

/// Requests paid from either account, one line each.
fn usage_lines(
    c: &mut DbConn,
    voucher_id: &VoucherId,
    accounts: &(String, String),
    after: &Option<(NaiveDateTime, String)>,
    limit: i64,
) -> StoreResult<Vec<StatementLine>> {
    let mut q = usage_records::table
        .inner_join(transfers::table.on(transfers::id.eq(usage_records::hold_id)))
        .filter(usage_records::voucher_id.eq(voucher_id))
        .filter(transfers::debit_account_id.eq_any([&accounts.0, &accounts.1]))
        .into_boxed();
    if let Some((at, id)) = after {
        q = q.filter(
            usage_records::created_at
                .gt(*at)
                .or(usage_records::created_at
                    .eq(*at)
                    .and(usage_records::id.gt(id.clone()))),
        );
    }
    let rows: Vec<UsageLineRow> = q
        .order((usage_records::created_at, usage_records::id))
        .limit(limit)
        .select((
            usage_records::id,
            usage_records::created_at,
            usage_records::model,
            usage_records::prompt_tokens,
            usage_records::completion_tokens,
            usage_records::cost,
            usage_records::overrun_micros,
            transfers::debit_account_id,
        ))
        .load(c)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, at, model, prompt, completion, cost, overrun, account)| StatementLine {
                at,
                id,
                kind: TransferCode::Usage,
                source: if account == accounts.1 {
                    "purchased"
                } else {
                    "voucher"
                },
                // What the account paid: the cost up to the request's hold.
                amount_micros: -(cost - overrun),
                detail: format!("{model}: {prompt} input and {completion} output tokens"),
            },
        )
        .collect())
}

/// The balance of both accounts before the cursor: every line's amount up to it.
fn opening(
    c: &mut DbConn,
    voucher_id: &VoucherId,
    accounts: &(String, String),
    before: &Option<(NaiveDateTime, String)>,
) -> StoreResult<i64> {
    let Some((at, id)) = before else {
        return Ok(0);
    };
    let sum = || sql::<BigInt>("CAST(COALESCE(SUM(amount), 0) AS BIGINT)");
    let earlier = transfers::created_at.lt(*at).or(transfers::created_at
        .eq(*at)
        .and(transfers::id.le(id.clone())));
    let base = || {
        transfers::table
            .filter(transfers::code.ne(TransferCode::Usage))
            .filter(transfers::kind.eq_any([
                voucherd_domain::ledger::TransferKind::Single,
                voucherd_domain::ledger::TransferKind::Post,
            ]))
    };
    let mut total = 0i64;
    for account in [&accounts.0, &accounts.1] {
        let credited: i64 = base()
            .filter(transfers::credit_account_id.eq(account))
            .filter(earlier.clone())
            .select(sum())
            .get_result(c)?;
        let debited: i64 = base()
            .filter(transfers::debit_account_id.eq(account))
            .filter(earlier.clone())
            .select(sum())
            .get_result(c)?;
        total += credited - debited;
    }
    // A move between the two accounts was counted in and out: it nets to zero already.
    let spent: i64 = usage_records::table
        .inner_join(transfers::table.on(transfers::id.eq(usage_records::hold_id)))
        .filter(usage_records::voucher_id.eq(voucher_id))
        .filter(transfers::debit_account_id.eq_any([&accounts.0, &accounts.1]))
        .filter(
            usage_records::created_at
                .lt(*at)
                .or(usage_records::created_at
                    .eq(*at)
                    .and(usage_records::id.le(id.clone()))),
        )
        .select(sql::<BigInt>(
            "CAST(COALESCE(SUM(usage_records.cost - usage_records.overrun_micros), 0) AS BIGINT)",
        ))
        .get_result(c)?;
    Ok(total - spent)
}

impl Store {
    /// Up to `limit` lines after `after` (oldest first), with the balance before them.
    pub async fn statement(
        &self,
        voucher_id: VoucherId,
        after: Option<(NaiveDateTime, String)>,
        limit: i64,
    ) -> StoreResult<StatementPage> {
        let limit = limit.clamp(1, PAGE_MAX);
        self.read(move |c| {
            let accounts = accounts_of(c, &voucher_id)?;
            let mut lines = transfer_lines(c, &accounts, &after, limit + 1)?;
            lines.extend(usage_lines(c, &voucher_id, &accounts, &after, limit + 1)?);
            lines.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
            let more = lines.len() as i64 > limit;
            lines.truncate(usize::try_from(limit).unwrap_or(0));
            let opening_micros = opening(c, &voucher_id, &accounts, &after)?;
            Ok(StatementPage {
                opening_micros,
                lines,
                more,
            })
        })
        .await
    }
}
