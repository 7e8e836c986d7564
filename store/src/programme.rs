//! The programme fund: deposits from the funding source, and the fund's totals.

use crate::audit::{self, AuditEntry};
use crate::db::{DbConn, Store};
use crate::error::StoreResult;
use crate::ledger::{
    self, AccountRow, TransferRequest, TransferRow, FORFEITED, FUNDING_SOURCE, PROGRAMME_FUND,
    USAGE,
};
use crate::schema::{transfers, vouchers};
use diesel::prelude::*;
use voucherd_domain::ledger::TransferCode;
use voucherd_domain::Money;
use voucherd_domain::UserId;

pub struct ProgrammeTotals {
    pub fund: AccountRow,
    pub usage: AccountRow,
    pub forfeited: AccountRow,
    pub vouchers_issued: i64,
    pub flows: FundFlows,
}

/// The programme's money by where it went, in micros, from posted transfers by their codes.
/// The fund's balance is `deposited + returned - to_lines - to_pools - granted_from_fund` (less
/// anything held).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FundFlows {
    /// Into the fund from the funding source.
    pub deposited: i64,
    /// Back into the fund: from budget lines and what challenge pools did not award.
    pub returned: i64,
    /// From the fund to budget lines.
    pub to_lines: i64,
    /// From the fund to challenges' award pools.
    pub to_pools: i64,
    /// Granted to organisations directly from the fund (vouchers and bonuses).
    pub granted_from_fund: i64,
    /// Granted to organisations from any pot: vouchers at approval (incentive extras included).
    pub granted_vouchers: i64,
    /// Milestone bonuses granted by incentive rules.
    pub granted_bonuses: i64,
    /// Challenge awards.
    pub granted_awards: i64,
}

impl FundFlows {
    /// Everything granted to organisations, from whichever pot.
    pub fn granted(&self) -> i64 {
        self.granted_vouchers + self.granted_bonuses + self.granted_awards
    }
}

/// The posted amounts of transfers with `code`, debited from `from` and credited to `to`
/// (either may be any account).
fn sum(
    c: &mut DbConn,
    codes: &[TransferCode],
    from: Option<&str>,
    to: Option<&str>,
) -> StoreResult<i64> {
    let codes: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let mut q = transfers::table
        .filter(transfers::code.eq_any(codes))
        // Posted money only: a single transfer, or a hold's post (not the hold, nor a void).
        .filter(transfers::kind.eq_any([
            voucherd_domain::ledger::TransferKind::Single,
            voucherd_domain::ledger::TransferKind::Post,
        ]))
        .select(transfers::amount)
        .into_boxed();
    if let Some(a) = from {
        q = q.filter(transfers::debit_account_id.eq(a.to_string()));
    }
    if let Some(a) = to {
        q = q.filter(transfers::credit_account_id.eq(a.to_string()));
    }
    let amounts: Vec<i64> = q.load(c)?;
    Ok(amounts.iter().sum())
}

fn flows(c: &mut DbConn) -> StoreResult<FundFlows> {
    use TransferCode::*;
    let fund = Some(PROGRAMME_FUND);
    Ok(FundFlows {
        deposited: sum(c, &[Deposit], None, fund)?,
        returned: sum(c, &[BudgetMove, ChallengeReturn], None, fund)?,
        to_lines: sum(c, &[BudgetMove], fund, None)?,
        to_pools: sum(c, &[ChallengePool], fund, None)?,
        granted_from_fund: sum(c, &[VoucherGrant, IncentiveMilestone], fund, None)?,
        granted_vouchers: sum(c, &[VoucherGrant], None, None)?,
        granted_bonuses: sum(c, &[IncentiveMilestone], None, None)?,
        granted_awards: sum(c, &[ChallengeAward], None, None)?,
    })
}

impl Store {
    /// Deposits money into the programme fund. Idempotent on `transfer_id`.
    pub async fn deposit(
        &self,
        transfer_id: String,
        amount: Money,
        reference: String,
        actor_id: UserId,
    ) -> StoreResult<TransferRow> {
        self.write(move |c| {
            let replay = ledger::find_transfer(c, &transfer_id)?.is_some();
            let t = ledger::transfer(
                c,
                &TransferRequest {
                    id: transfer_id,
                    debit_account_id: FUNDING_SOURCE.into(),
                    credit_account_id: PROGRAMME_FUND.into(),
                    amount,
                    code: TransferCode::Deposit,
                    memo: reference.clone(),
                },
            )?;
            if replay {
                return Ok(t);
            }
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: "programme.deposit",
                    subject_type: "transfer",
                    subject_id: t.id.as_str(),
                    reason: Some(&reference),
                    details: serde_json::json!({ "amount_micros": t.amount }),
                },
            )?;
            Ok(t)
        })
        .await
    }

    pub async fn programme_totals(&self) -> StoreResult<ProgrammeTotals> {
        self.read(|c| {
            Ok(ProgrammeTotals {
                fund: ledger::account(c, PROGRAMME_FUND)?,
                usage: ledger::account(c, USAGE)?,
                forfeited: ledger::account(c, FORFEITED)?,
                vouchers_issued: vouchers::table.count().get_result(c)?,
                flows: flows(c)?,
            })
        })
        .await
    }

    /// Checks the whole ledger (see [`ledger::verify`]).
    pub async fn verify_ledger(&self) -> StoreResult<()> {
        self.read(ledger::verify).await
    }
}
