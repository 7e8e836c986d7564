//! Minimal Financial Assistance an organisation has received: one computation shared by every
//! award of assistance — approvals (with their incentive extras), challenge awards and
//! milestone bonuses — run inside the transaction that pays, so two awards at once cannot both
//! fit under the limit. The rule itself is the domain's (`EligibilityRules::check_mfa_award`).

use crate::db::DbConn;
use crate::error::StoreResult;
use crate::schema::{applications, transfers, vouchers};
use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use voucherd_domain::eligibility::{EligibilityRules, MfaCheck, SubsidyDeclaration};
use voucherd_domain::ledger::TransferCode;

/// The transfers by which the programme gives assistance to a company's vouchers.
const ASSISTANCE: [TransferCode; 3] = [
    TransferCode::VoucherGrant,
    TransferCode::ChallengeAward,
    TransferCode::IncentiveMilestone,
];

/// What the company received from `window_start` to `today`, in micros: the assistance it
/// declared on its latest application (award records, which declare nothing, aside) plus every
/// voucher grant, challenge award and milestone bonus this programme paid to its vouchers.
pub fn received_since(
    c: &mut DbConn,
    company_number: &str,
    window_start: NaiveDate,
    today: NaiveDate,
) -> StoreResult<i64> {
    let declared_json: Option<String> = applications::table
        .filter(applications::company_number.eq(company_number))
        .filter(applications::id.not_like("award-%"))
        .order((applications::created_at.desc(), applications::id.desc()))
        .select(applications::subsidy_declarations)
        .first(c)
        .optional()?;
    let declared: Vec<SubsidyDeclaration> = match declared_json {
        Some(j) => serde_json::from_str(&j).map_err(|e| {
            crate::StoreError::Invariant(format!(
                "company {company_number}: stored declarations: {e}"
            ))
        })?,
        None => Vec::new(),
    };
    let declared_micros: i64 = declared
        .iter()
        .filter(|d| d.awarded_on >= window_start && d.awarded_on <= today)
        .map(|d| d.amount.micros())
        .sum();
    let since: NaiveDateTime = window_start.and_time(chrono::NaiveTime::MIN);
    let accounts = vouchers::table
        .filter(vouchers::company_number.eq(company_number))
        .select(vouchers::account_id);
    let paid: Vec<i64> = transfers::table
        .filter(transfers::credit_account_id.eq_any(accounts))
        .filter(transfers::code.eq_any(ASSISTANCE.map(TransferCode::as_str)))
        .filter(transfers::created_at.ge(since))
        .select(transfers::amount)
        .load(c)?;
    Ok(declared_micros.saturating_add(paid.iter().sum::<i64>()))
}

/// Checks an award of `award_micros` to the company at `at` against the limit, with everything
/// it received in the three-financial-year window (the caller's transaction).
pub fn check(
    c: &mut DbConn,
    rules: &EligibilityRules,
    company_number: &str,
    at: NaiveDateTime,
    award_micros: i64,
) -> StoreResult<MfaCheck> {
    let window_start = rules.mfa_window_start(at.date());
    let received = received_since(c, company_number, window_start, at.date())?;
    Ok(rules.check_mfa_award(window_start, received, award_micros))
}
