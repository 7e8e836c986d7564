//! Budget lines: ledger accounts funded from the programme fund, each for a financial year and
//! maybe a target group. Approvals draw from the matching line; administrators move money in,
//! out and between lines with a reason, audited.

use crate::audit::{self, AuditEntry};
use crate::db::{DbConn, Store};
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::ledger::{self, TransferRequest, PROGRAMME_FUND};
use crate::schema::{accounts, budget_lines, transfers, vouchers};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::budget::{self, FinancialYear, Organisation, Targeting};
use voucherd_domain::ledger::{AccountKind, TransferCode};
use voucherd_domain::Money;
use voucherd_domain::{BudgetLineId, UserId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = budget_lines)]
pub struct BudgetLineRow {
    pub id: BudgetLineId,
    pub name: String,
    pub financial_year: String,
    pub targeting: String,
    pub account_id: String,
    pub created_by: UserId,
    pub created_at: NaiveDateTime,
}

impl BudgetLineRow {
    pub fn targeting(&self) -> Targeting {
        serde_json::from_str(&self.targeting).unwrap_or_default()
    }

    pub fn year(&self) -> StoreResult<FinancialYear> {
        FinancialYear::parse(&self.financial_year).map_err(StoreError::Invariant)
    }
}

/// A line's figures, in micros.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineFigures {
    /// What the line was given, net of moves: committed + remaining.
    pub approved: i64,
    /// Granted to vouchers.
    pub committed: i64,
    /// Spent through those vouchers.
    pub spent: i64,
    /// Returned by those vouchers at expiry.
    pub forfeited: i64,
    /// Still available to grant.
    pub remaining: i64,
}

/// One side of a move: the programme fund or a line.
#[derive(Debug, Clone)]
pub enum Pot {
    Fund,
    Line(BudgetLineId),
}

fn line(c: &mut DbConn, id: &BudgetLineId) -> StoreResult<BudgetLineRow> {
    budget_lines::table
        .find(id)
        .select(BudgetLineRow::as_select())
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("budget line"))
}

/// The account a pot is, and how it is named in messages.
fn pot(c: &mut DbConn, p: &Pot) -> StoreResult<(String, String)> {
    Ok(match p {
        Pot::Fund => (PROGRAMME_FUND.to_string(), "the programme fund".to_string()),
        Pot::Line(id) => {
            let l = line(c, id)?;
            (l.account_id, format!("budget line {:?}", l.name))
        }
    })
}

/// Moves money between pots, refusing with the source named when it holds too little.
fn move_money(
    c: &mut DbConn,
    id: &str,
    from: &Pot,
    to: &Pot,
    amount: Money,
    reason: &str,
) -> StoreResult<()> {
    let (from_account, from_name) = pot(c, from)?;
    let (to_account, to_name) = pot(c, to)?;
    if from_account == to_account {
        return Err(StoreError::Invariant(
            "money must move between two different pots".into(),
        ));
    }
    let available = ledger::account(c, &from_account)?.totals().available();
    if available < amount.micros() {
        return Err(StoreError::BudgetShort {
            name: from_name,
            available_micros: available,
        });
    }
    ledger::transfer(
        c,
        &TransferRequest {
            id: id.to_string(),
            debit_account_id: from_account,
            credit_account_id: to_account,
            amount,
            code: TransferCode::BudgetMove,
            memo: format!("{from_name} to {to_name}: {reason}"),
        },
    )?;
    Ok(())
}

/// The line an approval draws from, if the year has lines: `Ok(None)` when it has none (the
/// programme fund grants directly), an error naming the year when none matches.
pub(crate) fn line_for(
    c: &mut DbConn,
    year: FinancialYear,
    organisation: &Organisation,
) -> StoreResult<Option<BudgetLineRow>> {
    let rows: Vec<BudgetLineRow> = budget_lines::table
        .filter(budget_lines::financial_year.eq(year.to_string()))
        .order((budget_lines::created_at.asc(), budget_lines::id.asc()))
        .select(BudgetLineRow::as_select())
        .load(c)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let lines: Vec<(BudgetLineId, FinancialYear, Targeting)> = rows
        .iter()
        .map(|r| (r.id.clone(), year, r.targeting()))
        .collect();
    let chosen = budget::choose_line(&lines, year, organisation)
        .ok_or_else(|| {
            StoreError::NoBudgetLine(format!(
                "no budget line of {year} covers this organisation (region, sector or size)"
            ))
        })?
        .clone();
    Ok(rows.into_iter().find(|r| r.id == chosen))
}

/// The account a grant of `amount` from `line` (or the fund) is paid from, refused as the
/// transfer itself would be when it holds too little: approvals and their preview share this.
pub(crate) fn grant_source(
    c: &mut DbConn,
    line: Option<&BudgetLineRow>,
    amount: Money,
) -> StoreResult<String> {
    match line {
        Some(l) => {
            let available = ledger::account(c, &l.account_id)?.totals().available();
            if available < amount.micros() {
                return Err(StoreError::BudgetShort {
                    name: format!("budget line {:?}", l.name),
                    available_micros: available,
                });
            }
            Ok(l.account_id.clone())
        }
        None => {
            let available = ledger::account(c, PROGRAMME_FUND)?.totals().available();
            if available < amount.micros() {
                return Err(StoreError::InsufficientFunds {
                    account_id: PROGRAMME_FUND.to_string(),
                });
            }
            Ok(PROGRAMME_FUND.to_string())
        }
    }
}

/// Every line with what it has available now, for choosing where a bonus is paid from.
pub(crate) fn balances(c: &mut DbConn) -> StoreResult<Vec<(BudgetLineRow, budget::LineBalance)>> {
    let rows: Vec<BudgetLineRow> = budget_lines::table
        .order((budget_lines::created_at.asc(), budget_lines::id.asc()))
        .select(BudgetLineRow::as_select())
        .load(c)?;
    rows.into_iter()
        .map(|r| {
            let available = ledger::account(c, &r.account_id)?.totals().available();
            let b = budget::LineBalance {
                id: r.id.clone(),
                year: r.year()?,
                targeting: r.targeting(),
                available_micros: available,
            };
            Ok((r, b))
        })
        .collect()
}

/// Grants `amount` to a new voucher account from `line` (or the fund), refusing with the line
/// named when it holds too little.
pub(crate) fn grant(
    c: &mut DbConn,
    line: Option<&BudgetLineRow>,
    transfer_id: String,
    account_id: &str,
    amount: Money,
    memo: String,
) -> StoreResult<()> {
    let source = grant_source(c, line, amount)?;
    ledger::transfer(
        c,
        &TransferRequest {
            id: transfer_id,
            debit_account_id: source,
            credit_account_id: account_id.to_string(),
            amount,
            code: TransferCode::VoucherGrant,
            memo,
        },
    )?;
    Ok(())
}

pub(crate) fn figures(c: &mut DbConn, l: &BudgetLineRow) -> StoreResult<LineFigures> {
    let remaining = ledger::account(c, &l.account_id)?.totals().available();
    // Committed: everything the line paid to vouchers (grants and milestone bonuses).
    let paid: Vec<i64> = transfers::table
        .filter(transfers::debit_account_id.eq(&l.account_id))
        .filter(transfers::code.eq_any([
            TransferCode::VoucherGrant.as_str(),
            TransferCode::IncentiveMilestone.as_str(),
        ]))
        .select(transfers::amount)
        .load(c)?;
    let committed: i64 = paid.iter().sum();
    let line_accounts = vouchers::table
        .filter(vouchers::budget_line_id.eq(&l.id))
        .select(vouchers::account_id);
    let debited: Vec<i64> = accounts::table
        .filter(accounts::id.eq_any(line_accounts))
        .select(accounts::debits_posted)
        .load(c)?;
    let forfeited: Vec<i64> = transfers::table
        .filter(transfers::debit_account_id.eq_any(line_accounts))
        .filter(transfers::code.eq(TransferCode::Expiry.as_str()))
        .select(transfers::amount)
        .load(c)?;
    let forfeited: i64 = forfeited.iter().sum();
    Ok(LineFigures {
        approved: committed + remaining,
        committed,
        spent: debited.iter().sum::<i64>() - forfeited,
        forfeited,
        remaining,
    })
}

impl Store {
    /// Creates a line and funds it from the programme fund, in one transaction.
    pub async fn create_budget_line(
        &self,
        row: BudgetLineRow,
        amount: Money,
    ) -> StoreResult<BudgetLineRow> {
        self.write(move |c| {
            ledger::create_account(c, &row.account_id, AccountKind::BudgetLine)?;
            match diesel::insert_into(budget_lines::table)
                .values(&row)
                .execute(c)
            {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::BudgetLineExists(row.name.clone()))
                }
                Err(e) => return Err(e.into()),
            }
            if !amount.is_zero() {
                move_money(
                    c,
                    &format!("line-funding-{}", row.id),
                    &Pot::Fund,
                    &Pot::Line(row.id.clone()),
                    amount,
                    "initial allocation",
                )?;
            }
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&row.created_by),
                    action: "budget_line.create",
                    subject_type: "budget_line",
                    subject_id: row.id.as_str(),
                    reason: None,
                    details: serde_json::json!({
                        "name": row.name,
                        "financial_year": row.financial_year,
                        "targeting": serde_json::from_str::<serde_json::Value>(&row.targeting).unwrap_or_default(),
                        "amount_micros": amount.micros(),
                    }),
                },
            )?;
            Ok(row)
        })
        .await
    }

    /// Every line with its figures, by year then name.
    pub async fn budget_lines(&self) -> StoreResult<Vec<(BudgetLineRow, LineFigures)>> {
        self.read(|c| {
            let rows: Vec<BudgetLineRow> = budget_lines::table
                .order((
                    budget_lines::financial_year.desc(),
                    budget_lines::name.asc(),
                ))
                .select(BudgetLineRow::as_select())
                .load(c)?;
            rows.into_iter()
                .map(|r| {
                    let f = figures(c, &r)?;
                    Ok((r, f))
                })
                .collect()
        })
        .await
    }

    /// Moves money between the fund and lines, with a reason, audited. `id` makes a retried
    /// move happen once.
    #[allow(clippy::too_many_arguments)]
    pub async fn move_budget(
        &self,
        id: String,
        from: Pot,
        to: Pot,
        amount: Money,
        reason: String,
        actor_id: UserId,
    ) -> StoreResult<()> {
        self.write(move |c| {
            // A retry of a move that happened: the same answer, without checking the balance it
            // already took or auditing it twice.
            if let Some(done) = ledger::find_transfer(c, &id)? {
                let (from_account, _) = pot(c, &from)?;
                let (to_account, _) = pot(c, &to)?;
                return if done.amount == amount.micros()
                    && done.debit_account_id == from_account
                    && done.credit_account_id == to_account
                {
                    Ok(())
                } else {
                    Err(StoreError::TransferIdConflict(id))
                };
            }
            move_money(c, &id, &from, &to, amount, &reason)?;
            let side = |p: &Pot| match p {
                Pot::Fund => "programme_fund".to_string(),
                Pot::Line(l) => l.to_string(),
            };
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: "budget_line.move",
                    subject_type: "transfer",
                    subject_id: id.as_str(),
                    reason: Some(&reason),
                    details: serde_json::json!({
                        "from": side(&from),
                        "to": side(&to),
                        "amount_micros": amount.micros(),
                    }),
                },
            )
        })
        .await
    }
}
