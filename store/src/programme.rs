//! The programme fund: deposits from the funding source, and the fund's totals.

use crate::audit::{self, AuditEntry};
use crate::db::Store;
use crate::error::StoreResult;
use crate::ledger::{
    self, AccountRow, TransferRequest, TransferRow, FORFEITED, FUNDING_SOURCE, PROGRAMME_FUND,
    USAGE,
};
use crate::schema::vouchers;
use diesel::prelude::*;
use voucherd_domain::ledger::TransferCode;
use voucherd_domain::Money;

pub struct ProgrammeTotals {
    pub fund: AccountRow,
    pub usage: AccountRow,
    pub forfeited: AccountRow,
    pub vouchers_issued: i64,
}

impl Store {
    /// Deposits money into the programme fund. Idempotent on `transfer_id`.
    pub async fn deposit(
        &self,
        transfer_id: String,
        amount: Money,
        reference: String,
        actor_id: String,
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
                    subject_id: &t.id,
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
            })
        })
        .await
    }

    /// Checks the whole ledger (see [`ledger::verify`]).
    pub async fn verify_ledger(&self) -> StoreResult<()> {
        self.read(ledger::verify).await
    }
}
