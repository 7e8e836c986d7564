//! Incentive rules, managed by administrators and versioned: each change is a new version
//! under the rule's key; vouchers keep the versions applied to them.

use crate::auth::AuthUser;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use crate::views::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;
use voucherd_domain::incentive::{Condition, Effect};
use voucherd_domain::money::Amount;
use voucherd_domain::Money;
use voucherd_store::incentives::RuleRow;

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IncentiveRuleRequest)]
pub struct RuleRequest {
    #[validate(length(min = 1, max = 120, message = "must be 1 to 120 characters"))]
    #[schema(min_length = 1, max_length = 120)]
    pub name: String,
    pub condition: Condition,
    pub effect: Effect,
    /// The budget line milestone bonuses are paid from; the programme fund when absent.
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    #[schema(min_length = 1, max_length = 64)]
    pub budget_line_id: Option<String>,
    /// Inactive rules are not evaluated at approval.
    #[serde(default = "active")]
    #[schema(default = true)]
    pub active: bool,
}

fn active() -> bool {
    true
}

/// One version of an incentive rule.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = IncentiveRule)]
pub struct RuleView {
    /// The rule's key, stable across versions.
    pub key: String,
    #[schema(minimum = 1)]
    pub version: i32,
    /// Time-ordered UUID (v7) of this version.
    pub id: String,
    pub name: String,
    pub condition: Condition,
    pub effect: Effect,
    /// Where milestone bonuses are paid from; null means the programme fund.
    #[schema(required)]
    pub budget_line_id: Option<voucherd_domain::BudgetLineId>,
    pub active: bool,
    pub created_at: Timestamp,
}

impl RuleView {
    fn new(r: &RuleRow) -> Result<RuleView, ApiError> {
        Ok(RuleView {
            key: r.rule_key.clone(),
            version: r.version,
            id: r.id.clone(),
            name: r.name.clone(),
            condition: stored(&r.condition_json)?,
            effect: stored(&r.effect_json)?,
            budget_line_id: r.budget_line_id.clone(),
            active: r.active,
            created_at: Timestamp(r.created_at),
        })
    }
}

/// A rule's stored condition or effect: written from the same type, so one that does not read
/// back is a fault of the store, not the caller's.
fn stored<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, ApiError> {
    serde_json::from_str(json).map_err(|e| ApiError::Internal(format!("a stored rule: {e}")))
}

fn row(key: String, body: RuleRequest, user: &AuthUser) -> Result<RuleRow, ApiError> {
    let mut errors = Vec::new();
    if body.name.trim().is_empty() {
        errors.push(FieldError::new("name", "must not be blank"));
    }
    if let Err((f, m)) = body.condition.check() {
        errors.push(FieldError::new(f, m));
    }
    if let Err((f, m)) = body.effect.check() {
        errors.push(FieldError::new(f, m));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let json = |v: serde_json::Result<String>| v.map_err(|e| ApiError::Internal(e.to_string()));
    Ok(RuleRow {
        id: uuid::Uuid::now_v7().to_string(),
        rule_key: key,
        version: 0,
        name: body.name.trim().to_string(),
        condition_json: json(serde_json::to_string(&body.condition))?,
        effect_json: json(serde_json::to_string(&body.effect))?,
        budget_line_id: body.budget_line_id.map(voucherd_domain::BudgetLineId::from),
        active: body.active,
        created_by: user.id.clone(),
        created_at: voucherd_store::now(),
    })
}

pub async fn create(
    state: &AppState,
    user: &AuthUser,
    body: RuleRequest,
) -> Result<RuleView, ApiError> {
    let r = row(uuid::Uuid::now_v7().to_string(), body, user)?;
    let saved = state.store.save_rule(r).await?;
    RuleView::new(&saved)
}

/// A new version of an existing rule (to change it, or retire it with `active: false`).
pub async fn update(
    state: &AppState,
    user: &AuthUser,
    key: &str,
    body: RuleRequest,
) -> Result<RuleView, ApiError> {
    if !state
        .store
        .latest_rules()
        .await?
        .iter()
        .any(|r| r.rule_key == key)
    {
        return Err(ApiError::NotFound("incentive"));
    }
    let saved = state
        .store
        .save_rule(row(key.to_string(), body, user)?)
        .await?;
    RuleView::new(&saved)
}

/// The latest version of every rule.
pub async fn list(state: &AppState) -> Result<Vec<RuleView>, ApiError> {
    let rules = state.store.latest_rules().await?;
    rules.iter().map(RuleView::new).collect()
}

/// A rule version applied to a voucher: why it matched and what it added.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = VoucherIncentive)]
pub struct AppliedView {
    /// The rule's key.
    pub rule: String,
    /// The rule version applied.
    pub version: i32,
    pub name: String,
    /// Why the rule matched.
    pub why: Vec<String>,
    pub effect: Effect,
    /// What the rule added, or for a milestone bonus what it grants.
    #[schema(value_type = Money)]
    pub amount: Amount,
    /// Whether this is a milestone bonus granted later.
    pub milestone: bool,
    /// Milestone bonuses only: when the worker granted it; null until then.
    #[schema(required)]
    pub granted_at: Option<Timestamp>,
    /// A milestone bonus not paid because it would pass the Minimal Financial Assistance
    /// limit, and why; it is not tried again.
    #[schema(required)]
    pub refused_reason: Option<String>,
}

/// The incentives applied to a voucher: each rule version, why it matched, what it added.
pub async fn for_voucher(
    state: &AppState,
    user: &AuthUser,
    voucher_id: &voucherd_domain::VoucherId,
) -> Result<Vec<AppliedView>, ApiError> {
    let (v, _) = crate::service::vouchers::visible(state, user, voucher_id).await?;
    let rows = state.store.voucher_incentives(v.id.clone()).await?;
    rows.iter()
        .map(|(a, r)| {
            Ok(AppliedView {
                rule: r.rule_key.clone(),
                version: r.version,
                name: r.name.clone(),
                why: stored(&a.why)?,
                effect: stored(&r.effect_json)?,
                amount: Amount(a.amount),
                milestone: a.milestone,
                granted_at: a.granted_at.map(Timestamp),
                refused_reason: a.refused_reason.clone(),
            })
        })
        .collect()
}

/// What every rule works within: together the rules add at most `cap_percent` of the standard
/// voucher, `standard`.
#[derive(Debug, Clone, Serialize)]
pub struct IncentiveLimits {
    pub cap_percent: u32,
    pub standard: voucherd_domain::Money,
}

pub fn limits(state: &AppState) -> IncentiveLimits {
    IncentiveLimits {
        cap_percent: state.config.incentive_cap_percent,
        standard: state.config.standard_voucher,
    }
}
