//! The programme's money: deposits into the fund, its overview, budget lines and moves between
//! them, and the audit trail.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::IdempotencyKey;
use crate::state::AppState;
use crate::views::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use validator::Validate;
use voucherd_domain::budget::{FinancialYear, SicSection, SizeBand, Targeting};
use voucherd_domain::money::Amount;
use voucherd_domain::{Money, Region, UserId};
use voucherd_store::audit::AuditFilter;
use voucherd_store::budget::{BudgetLineRow, LineFigures, Pot};

/// How the programme fund is named where a line id could stand.
const FUND: &str = "programme_fund";

/// More than nothing: a deposit or a move of £0 records nothing.
fn positive(amount: &Money) -> Result<(), validator::ValidationError> {
    if amount.is_zero() {
        Err(validator::ValidationError::new("amount").with_message("must be more than 0".into()))
    } else {
        Ok(())
    }
}

/// Text that says something once trimmed.
fn not_blank(text: &str) -> Result<(), validator::ValidationError> {
    if text.trim().is_empty() {
        Err(validator::ValidationError::new("blank").with_message("must not be blank".into()))
    } else {
        Ok(())
    }
}

// Checked whole when read (the pages read it before showing it back for confirmation). Each
// limit is stated twice, side by side: `validate` enforces it, `schema` publishes it.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// More than 0.
    #[validate(custom(function = "positive"))]
    pub amount: Money,
    #[validate(
        length(min = 1, max = 200, message = "must be 1 to 200 characters"),
        custom(function = "not_blank")
    )]
    #[schema(min_length = 1, max_length = 200)]
    pub reference: String,
}

/// Money paid into the programme fund by its funding source.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Deposit)]
pub struct DepositView {
    /// The ledger transfer's id.
    pub id: String,
    #[schema(value_type = Money)]
    pub amount: Amount,
    pub reference: String,
    pub created_at: Timestamp,
}

/// Pays money into the fund. A retry with the same idempotency key is not counted twice; the
/// same key with a different amount is refused.
pub async fn deposit(
    state: &AppState,
    user: &AuthUser,
    key: Option<IdempotencyKey>,
    body: DepositRequest,
) -> Result<DepositView, ApiError> {
    let reference = body.reference.trim().to_string();
    let transfer_id = match key {
        Some(k) => format!("deposit-{k}"),
        None => format!("deposit-{}", uuid::Uuid::now_v7()),
    };
    let t = state
        .store
        .deposit(transfer_id, body.amount, reference, user.id.clone())
        .await?;
    Ok(DepositView {
        id: t.id,
        amount: Amount(t.amount),
        reference: t.memo,
        created_at: Timestamp(t.created_at),
    })
}

/// The fund's money by where it came from and went, from posted transfers by their codes:
/// `balance` = `deposited` + `returned` - `transferred_to_lines` - `transferred_to_pools` -
/// `granted`, less anything held.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ProgrammeFund)]
pub struct FundView {
    /// Available to grant.
    pub balance: Amount,
    /// Deposits from the funding source only.
    #[schema(value_type = Money)]
    pub deposited: Amount,
    /// Money back in the fund from budget lines and what challenge pools did not award.
    #[schema(value_type = Money)]
    pub returned: Amount,
    /// Moved from the fund to budget lines.
    #[schema(value_type = Money)]
    pub transferred_to_lines: Amount,
    /// Set aside from the fund for challenges' award pools.
    #[schema(value_type = Money)]
    pub transferred_to_pools: Amount,
    /// Granted to organisations straight from the fund (vouchers and milestone bonuses).
    #[schema(value_type = Money)]
    pub granted: Amount,
}

/// Granted to organisations from any pot (the fund, budget lines, challenge pools).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ProgrammeGranted)]
pub struct GrantedView {
    #[schema(value_type = Money)]
    pub total: Amount,
    /// Vouchers at approval, incentive extras included.
    #[schema(value_type = Money)]
    pub vouchers: Amount,
    #[schema(value_type = Money)]
    pub milestone_bonuses: Amount,
    #[schema(value_type = Money)]
    pub challenge_awards: Amount,
}

/// The programme's money at a glance.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Programme)]
pub struct OverviewView {
    #[schema(examples("GBP"))]
    pub currency: String,
    pub fund: FundView,
    pub granted: GrantedView,
    pub vouchers_issued: i64,
    /// Settled usage across all vouchers.
    #[schema(value_type = Money)]
    pub consumed: Amount,
    /// Held for proxied requests in flight.
    #[schema(value_type = Money)]
    pub held: Amount,
    /// Voucher remainders returned at expiry.
    #[schema(value_type = Money)]
    pub forfeited: Amount,
    /// The budget lines dividing the programme fund.
    pub budget_lines: Vec<BudgetLineView>,
    /// The latest deposits (at most 20) into the fund from the funding source, newest first.
    pub recent_deposits: Vec<DepositView>,
}

/// How many deposits the overview lists.
const RECENT_DEPOSITS: i64 = 20;

pub async fn overview(state: &AppState) -> Result<OverviewView, ApiError> {
    let p = state.store.programme_totals().await?;
    let budget_lines = list_lines(state).await?;
    // Every transfer out of the funding source is a deposit into the fund.
    let recent_deposits = state
        .store
        .account_transfers(
            voucherd_store::ledger::FUNDING_SOURCE.to_string(),
            RECENT_DEPOSITS,
            0,
        )
        .await?
        .into_iter()
        .map(|t| DepositView {
            id: t.id,
            amount: Amount(t.amount),
            reference: t.memo,
            created_at: Timestamp(t.created_at),
        })
        .collect();
    let fund = p.fund.totals();
    let usage = p.usage.totals();
    let f = p.flows;
    Ok(OverviewView {
        currency: p.fund.currency,
        fund: FundView {
            balance: Amount(fund.available()),
            deposited: Amount(f.deposited),
            returned: Amount(f.returned),
            transferred_to_lines: Amount(f.to_lines),
            transferred_to_pools: Amount(f.to_pools),
            granted: Amount(f.granted_from_fund),
        },
        granted: GrantedView {
            total: Amount(f.granted()),
            vouchers: Amount(f.granted_vouchers),
            milestone_bonuses: Amount(f.granted_bonuses),
            challenge_awards: Amount(f.granted_awards),
        },
        vouchers_issued: p.vouchers_issued,
        consumed: Amount(usage.credits_posted),
        held: Amount(usage.credits_pending),
        forfeited: Amount(p.forfeited.totals().credits_posted),
        budget_lines,
        recent_deposits,
    })
}

#[derive(Debug, Default, Deserialize, Validate)]
pub struct AuditQuery {
    #[validate(length(min = 1, max = 40, message = "must be 1 to 40 characters"))]
    pub subject_type: Option<String>,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    pub subject_id: Option<String>,
    /// Only entries of this action (`application.approve`, `voucher.suspend`, ...).
    #[validate(length(min = 1, max = 80, message = "must be 1 to 80 characters"))]
    pub action: Option<String>,
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
    #[validate(range(min = 0, max = 1_000_000, message = "must be between 0 and 1000000"))]
    pub offset: Option<i64>,
}

/// One entry of the audit trail: who did what to which subject, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = AuditEntry)]
pub struct AuditView {
    /// Time-ordered UUID (v7).
    pub id: String,
    /// Null for actions of the system.
    #[schema(required)]
    pub actor_id: Option<UserId>,
    /// Who the actor is, "Full Name (email)"; null for the system or an account that no
    /// longer exists.
    #[schema(required)]
    pub actor_name: Option<String>,
    pub action: String,
    pub subject_type: String,
    pub subject_id: String,
    /// An application's or a voucher's short reference (`APP-7K2M9Q`, `VCH-7K2M9Q`); null for
    /// other subjects.
    #[schema(required)]
    pub subject_reference: Option<String>,
    #[schema(required)]
    pub reason: Option<String>,
    /// What the action recorded beside its reason (its own fields per action).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub created_at: Timestamp,
}

/// How many entries the audit log holds (of one kind of subject, of one action), for paging
/// through them.
pub async fn audit_count(
    state: &AppState,
    subject_type: Option<String>,
    action: Option<String>,
) -> Result<i64, ApiError> {
    Ok(state
        .store
        .audit_count(AuditFilter {
            subject_type,
            action,
        })
        .await?)
}

/// What the audit log can be filtered by: the kinds of subject and the actions it holds.
#[derive(Debug, Clone, Serialize)]
pub struct AuditFacetsView {
    pub subject_types: Vec<String>,
    pub actions: Vec<String>,
}

pub async fn audit_facets(state: &AppState) -> Result<AuditFacetsView, ApiError> {
    let (subject_types, actions) = state.store.audit_facets().await?;
    Ok(AuditFacetsView {
        subject_types,
        actions,
    })
}

/// The audit trail of one subject (an application, a key, a price, a transfer), oldest first;
/// or the latest entries, newest first: of all, of one kind of subject, of one action.
pub async fn audit(state: &AppState, q: AuditQuery) -> Result<Vec<AuditView>, ApiError> {
    let rows = match (q.subject_type, q.subject_id) {
        (Some(t), Some(id)) => state.store.audit_for(t, id).await?,
        (None, Some(_)) => {
            return Err(ApiError::field(
                "subject_type",
                "must be given with subject_id",
            ))
        }
        (subject_type, None) => {
            let filter = AuditFilter {
                subject_type,
                action: q.action,
            };
            state
                .store
                .audit_recent(filter, q.limit.unwrap_or(100), q.offset.unwrap_or(0))
                .await?
        }
    };
    // Each actor read once: a page of entries has few of them.
    let names =
        crate::service::users::names(state, rows.iter().filter_map(|r| r.actor_id.clone())).await?;
    // Applications and vouchers are named by their references: one read per kind.
    let mut references = std::collections::HashMap::new();
    for (subject, kind) in [
        ("application", voucherd_domain::ReferenceKind::Application),
        ("voucher", voucherd_domain::ReferenceKind::Voucher),
    ] {
        let ids: Vec<String> = rows
            .iter()
            .filter(|r| r.subject_type == subject)
            .map(|r| r.subject_id.clone())
            .collect();
        if !ids.is_empty() {
            references.extend(state.store.references(kind, ids).await?);
        }
    }
    Ok(rows
        .into_iter()
        .map(|r| AuditView {
            details: serde_json::from_str(&r.details).unwrap_or_default(),
            subject_reference: references.get(&r.subject_id).cloned(),
            actor_name: r
                .actor_id
                .as_ref()
                .and_then(|id| names.get(id).cloned().flatten()),
            id: r.id,
            actor_id: r.actor_id,
            action: r.action,
            subject_type: r.subject_type,
            subject_id: r.subject_id,
            reason: r.reason,
            created_at: Timestamp(r.created_at),
        })
        .collect())
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetLineRequest {
    #[validate(length(min = 1, max = 120, message = "must be 1 to 120 characters"))]
    #[schema(min_length = 1, max_length = 120)]
    pub name: String,
    pub financial_year: FinancialYear,
    /// Moved from the programme fund at creation; may be 0, to fund it later.
    pub amount: Money,
    /// Empty or absent means any region.
    #[serde(default)]
    #[validate(length(max = 12, message = "must list at most 12 regions"))]
    #[schema(max_items = 12, value_type = Vec<voucherd_domain::RegionInput>)]
    pub regions: Vec<Region>,
    /// Empty or absent means any section.
    #[serde(default)]
    #[validate(length(max = 21, message = "must list at most 21 sections"))]
    #[schema(max_items = 21)]
    pub sic_sections: Vec<SicSection>,
    /// Empty or absent means any size.
    #[serde(default)]
    #[validate(length(max = 3, message = "must list at most 3 size bands"))]
    #[schema(max_items = 3)]
    pub size_bands: Vec<SizeBand>,
}

/// A share of the programme fund for one UK financial year and target group. Approvals draw
/// from the most specific line of the approval's financial year that matches the organisation
/// (region, SIC section, size band); when the year has no lines, from the programme fund.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = BudgetLine)]
pub struct BudgetLineView {
    /// Time-ordered UUID (v7).
    pub id: voucherd_domain::BudgetLineId,
    pub name: String,
    #[schema(value_type = FinancialYear)]
    pub financial_year: String,
    pub targeting: Targeting,
    /// What the line was given, net of moves: `committed` + `remaining`.
    #[schema(value_type = Money)]
    pub approved: Amount,
    /// Granted to vouchers.
    #[schema(value_type = Money)]
    pub committed: Amount,
    /// Spent through those vouchers.
    #[schema(value_type = Money)]
    pub spent: Amount,
    /// Returned by those vouchers at expiry.
    #[schema(value_type = Money)]
    pub forfeited: Amount,
    /// Still available to grant.
    #[schema(value_type = Money)]
    pub remaining: Amount,
    pub created_at: Timestamp,
}

impl BudgetLineView {
    pub fn new(l: &BudgetLineRow, f: &LineFigures) -> BudgetLineView {
        BudgetLineView {
            id: l.id.clone(),
            name: l.name.clone(),
            financial_year: l.financial_year.clone(),
            targeting: l.targeting(),
            approved: Amount(f.approved),
            committed: Amount(f.committed),
            spent: Amount(f.spent),
            forfeited: Amount(f.forfeited),
            remaining: Amount(f.remaining),
            created_at: Timestamp(l.created_at),
        }
    }
}

pub async fn create_line(
    state: &AppState,
    user: &AuthUser,
    body: BudgetLineRequest,
) -> Result<BudgetLineView, ApiError> {
    let name = body.name.trim().to_string();
    if name.is_empty() {
        return Err(ApiError::field("name", "must not be blank"));
    }
    let targeting = Targeting {
        regions: body.regions.iter().copied().collect::<BTreeSet<_>>(),
        sic_sections: body.sic_sections.iter().copied().collect(),
        size_bands: body.size_bands.iter().copied().collect(),
    };
    let id = uuid::Uuid::now_v7().to_string();
    let row = BudgetLineRow {
        account_id: format!("line-{id}"),
        id: id.into(),
        name,
        financial_year: body.financial_year.to_string(),
        targeting: serde_json::to_string(&targeting)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        created_by: user.id.clone(),
        created_at: voucherd_store::now(),
    };
    let row = state.store.create_budget_line(row, body.amount).await?;
    let figures = LineFigures {
        approved: body.amount.micros(),
        remaining: body.amount.micros(),
        ..Default::default()
    };
    Ok(BudgetLineView::new(&row, &figures))
}

pub async fn list_lines(state: &AppState) -> Result<Vec<BudgetLineView>, ApiError> {
    let lines = state.store.budget_lines().await?;
    Ok(lines
        .iter()
        .map(|(l, f)| BudgetLineView::new(l, f))
        .collect())
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BudgetMoveRequest)]
pub struct MoveRequest {
    /// A budget line id, or `programme_fund`.
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    #[schema(min_length = 1, max_length = 64)]
    pub from: String,
    /// A budget line id, or `programme_fund`. Not equal to `from`.
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    #[schema(min_length = 1, max_length = 64)]
    pub to: String,
    /// More than 0.
    #[validate(custom(function = "positive"))]
    pub amount: Money,
    /// Recorded in the audit trail.
    #[validate(
        length(min = 1, max = 500, message = "must be 1 to 500 characters"),
        custom(function = "not_blank")
    )]
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// Money moved between budget lines or a line and the fund.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = BudgetMove)]
pub struct MoveView {
    pub id: String,
    /// A budget line id, or `programme_fund`.
    pub from: String,
    /// A budget line id, or `programme_fund`.
    pub to: String,
    pub amount: Money,
    pub reason: String,
}

fn pot(s: &str) -> Pot {
    if s == FUND {
        Pot::Fund
    } else {
        Pot::Line(voucherd_domain::BudgetLineId::new(s))
    }
}

/// Moves money between lines, or between a line and the programme fund; audited with its
/// reason. A retry with the same idempotency key moves it once.
pub async fn move_money(
    state: &AppState,
    user: &AuthUser,
    key: Option<IdempotencyKey>,
    body: MoveRequest,
) -> Result<MoveView, ApiError> {
    if body.from == body.to {
        return Err(ApiError::field("to", "must differ from `from`"));
    }
    let reason = body.reason.trim().to_string();
    let id = match key {
        Some(k) => format!("budget-move-{k}"),
        None => format!("budget-move-{}", uuid::Uuid::now_v7()),
    };
    state
        .store
        .move_budget(
            id.clone(),
            pot(&body.from),
            pot(&body.to),
            body.amount,
            reason.clone(),
            user.id.clone(),
        )
        .await?;
    Ok(MoveView {
        id,
        from: body.from,
        to: body.to,
        amount: body.amount,
        reason,
    })
}
