//! Response shapes. Money leaves as decimal strings in major units; times as RFC 3339 UTC.

use crate::error::ApiError;
use chrono::{NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use voucherd_domain::ledger::Totals;
use voucherd_domain::money::format_micros;
use voucherd_domain::ownership::Ownership;
use voucherd_domain::{KeyStatus, VoucherState, VoucherStatus};
use voucherd_store::applications::ApplicationRow;
use voucherd_store::keys::ApiKeyRow;
use voucherd_store::ledger::{AccountRow, TransferRow};
use voucherd_store::lifecycle::Withdrawn;
use voucherd_store::prices::PriceRow;
use voucherd_store::statement::StatementLine;
use voucherd_store::usage::UsageRow;
use voucherd_store::users::UserRow;
use voucherd_store::vouchers::VoucherRow;

pub fn time(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub fn opt_time(t: Option<NaiveDateTime>) -> Option<String> {
    t.map(time)
}

#[derive(Serialize)]
pub struct List<T: Serialize> {
    pub data: Vec<T>,
}

#[derive(Serialize)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub full_name: String,
    pub role: voucherd_domain::Role,
    pub created_at: String,
    pub email_verified: bool,
    /// `invited` (no password chosen yet), `active` or `disabled`.
    pub status: &'static str,
}

impl From<&UserRow> for UserView {
    fn from(u: &UserRow) -> Self {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            full_name: u.full_name.clone(),
            role: u.role,
            created_at: time(u.created_at),
            email_verified: u.email_verified_at.is_some(),
            status: match (u.disabled_at, u.password_hash.is_empty()) {
                (Some(_), _) => "disabled",
                (None, true) => "invited",
                (None, false) => "active",
            },
        }
    }
}

/// An approval awaiting (or decided by) a second administrator.
pub fn second_approval(s: &voucherd_store::applications::SecondApprovalRow) -> Value {
    serde_json::json!({
        "requested_by": s.requested_by,
        "requested_at": time(s.requested_at),
        "reason": s.reason,
        "amount": format_micros(s.amount_micros),
        "total": format_micros(s.total_micros),
        "valid_days": s.valid_days,
        "decided_by": s.decided_by,
        "outcome": s.outcome,
        "decided_at": s.decided_at.map(time),
    })
}

/// How ownership of the application's company was settled (`by` is an administrator's id).
fn ownership(o: &Ownership) -> Value {
    let check = o.check();
    serde_json::json!({
        "state": o.state(),
        "method": check.map(|c| c.method.as_str()),
        "by": check.map(|c| c.by.as_str()),
        "at": check.map(|c| time(c.at)),
        "note": check.map(|c| c.note.as_str()),
    })
}

pub fn application(a: &ApplicationRow, voucher_id: Option<&str>) -> Result<Value, ApiError> {
    let checks: Value = serde_json::from_str(&a.checks).unwrap_or(Value::Array(vec![]));
    let declarations: Value =
        serde_json::from_str(&a.subsidy_declarations).unwrap_or(Value::Array(vec![]));
    let decision = a.decided_at.map(|at| {
        serde_json::json!({
            "decided_by": a.decided_by,
            "decided_at": time(at),
            "reason": a.decision_reason,
        })
    });
    Ok(serde_json::json!({
        "id": a.id,
        "status": a.status,
        "applicant_id": a.applicant_id,
        "company_number": a.company_number,
        "company_name": a.company_name,
        "employees": a.employees,
        "annual_turnover": format_micros(a.annual_turnover),
        "balance_sheet_total": format_micros(a.balance_sheet_total),
        "region": a.region,
        "sic_code": a.sic_code,
        "trading_since": a.trading_since.to_string(),
        "use_case": a.use_case,
        "university_spin_off": a.university_spin_off,
        "subsidy_declarations": declarations,
        "eligibility": { "eligible": a.eligible, "checks": checks },
        "ownership": ownership(&a.ownership()?),
        // Whether it holds the company's number against other applications now.
        "holds_company_number": a.live_company_number.is_some(),
        "decision": decision,
        "voucher_id": voucher_id,
        "created_at": time(a.created_at),
        "updated_at": time(a.updated_at),
    }))
}

/// A voucher's status as its owner sees it: a stored `active` voucher past its expiry is
/// `expired` even before the expiry job has moved its remainder.
pub fn voucher_status(v: &VoucherRow, totals: &Totals) -> VoucherStatus {
    if v.status == VoucherState::Expired || v.expires_at <= Utc::now().naive_utc() {
        VoucherStatus::Expired
    } else if v.suspended_at.is_some() {
        VoucherStatus::Suspended
    } else if v.awaiting_contribution() {
        VoucherStatus::AwaitingContribution
    } else if totals.available() <= 0 && totals.debits_pending == 0 {
        VoucherStatus::Exhausted
    } else {
        VoucherStatus::Active
    }
}

/// A voucher's balance. `unposted` is usage already recorded under leases that have not
/// closed yet: it counts as spent at once, not as held. `spent` is usage only: a remainder
/// forfeited at expiry and credit taken back by a refund are shown apart.
pub fn voucher(v: &VoucherRow, a: &AccountRow, unposted: i64, withdrawn: Withdrawn) -> Value {
    let mut t = a.totals();
    t.debits_posted += unposted;
    t.debits_pending -= unposted;
    let spent = t.debits_posted - withdrawn.forfeited_micros - withdrawn.refunded_micros;
    serde_json::json!({
        "id": v.id,
        "status": voucher_status(v, &t),
        "currency": v.currency,
        "granted": format_micros(t.credits_posted),
        "spent": format_micros(spent),
        "forfeited": format_micros(withdrawn.forfeited_micros),
        "refunded": format_micros(withdrawn.refunded_micros),
        "held": format_micros(t.debits_pending),
        "available": format_micros(t.available()),
        "expires_at": time(v.expires_at),
        "suspension": v.suspended_at.map(|at| serde_json::json!({
            "at": time(at),
            "reason": v.suspension_reason,
        })),
        "contribution": (v.contribution_micros > 0).then(|| serde_json::json!({
            "amount": format_micros(v.contribution_micros),
            "paid_at": opt_time(v.contribution_paid_at),
        })),
        "application_id": v.application_id,
        "company_number": v.company_number,
        "created_at": time(v.created_at),
    })
}

/// What a statement line is, in words.
fn statement_kind(kind: &str) -> &'static str {
    match kind {
        "usage" => "API request",
        "voucher_grant" => "Voucher granted",
        "incentive_milestone" => "Milestone bonus",
        "challenge_award" => "Challenge award",
        "top_up" => "Credit bought",
        "refund" => "Refund: credit taken back",
        "expiry" => "Remainder forfeited at expiry",
        "usage_overrun" => "Usage above a request's hold (not charged)",
        _ => "Other",
    }
}

pub fn statement_line(l: &StatementLine, balance_micros: i64) -> Value {
    serde_json::json!({
        "at": time(l.at),
        "id": l.id,
        "kind": l.kind,
        "description": statement_kind(&l.kind),
        "detail": l.detail,
        "source": l.source,
        "amount": format_micros(l.amount_micros),
        "balance": format_micros(balance_micros),
    })
}

pub fn transfer(t: &TransferRow, account_id: &str) -> Value {
    serde_json::json!({
        "id": t.id,
        "kind": t.kind,
        "code": t.code,
        "direction": if t.debit_account_id == account_id { "debit" } else { "credit" },
        "amount": format_micros(t.amount),
        "pending_id": t.pending_id,
        "memo": t.memo,
        "timeout_at": opt_time(t.timeout_at),
        "created_at": time(t.created_at),
    })
}

pub fn key_status(k: &ApiKeyRow) -> KeyStatus {
    if k.revoked_at.is_some() {
        KeyStatus::Revoked
    } else if k.suspended_at.is_some() {
        KeyStatus::Suspended
    } else if k.expires_at.is_some_and(|e| e <= Utc::now().naive_utc()) {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

pub fn key(k: &ApiKeyRow) -> Value {
    serde_json::json!({
        "id": k.id,
        "voucher_id": k.voucher_id,
        "name": k.name,
        "prefix": k.prefix,
        "status": key_status(k),
        "mode": k.mode,
        "allowed_models": k.allowed_models.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()),
        "rpm": k.rpm,
        "tpm": k.tpm,
        "max_concurrent": k.max_concurrent,
        "monthly_spend_cap": k.monthly_spend_cap.map(format_micros),
        "expires_at": opt_time(k.expires_at),
        "rotated_to": k.rotated_to,
        "created_at": time(k.created_at),
        "last_used_at": opt_time(k.last_used_at),
        "revoked_at": opt_time(k.revoked_at),
        "suspended_at": opt_time(k.suspended_at),
        "suspension_reason": k.suspension_reason,
    })
}

pub fn price(p: &PriceRow) -> Value {
    serde_json::json!({
        "model": p.model,
        "input_per_million": format_micros(p.input_per_million),
        "cached_input_per_million": format_micros(p.cached_input_per_million),
        "output_per_million": format_micros(p.output_per_million),
        "effective_from": time(p.effective_from),
        "version": p.id,
    })
}

pub fn usage(u: &UsageRow) -> Value {
    serde_json::json!({
        "id": u.id,
        "request_id": u.request_id,
        "key_id": u.api_key_id,
        "model": u.model,
        "prompt_tokens": u.prompt_tokens,
        "cached_prompt_tokens": u.cached_prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "cost": format_micros(u.cost),
        "price": {
            "version": u.price_id,
            "input_per_million": format_micros(u.input_per_million),
            "cached_input_per_million": format_micros(u.cached_input_per_million),
            "output_per_million": format_micros(u.output_per_million),
        },
        "hold_id": u.hold_id,
        "transfer_id": u.post_id,
        "created_at": time(u.created_at),
    })
}
