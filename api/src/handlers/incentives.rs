//! Incentive rules, managed by administrators and versioned: each change is a new version
//! under the rule's key; vouchers keep the versions applied to them.

use crate::auth::AuthUser;
use crate::error::{ApiError, FieldError};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use validator::Validate;
use voucherd_domain::incentive::{Condition, Effect};
use voucherd_store::incentives::RuleRow;

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    #[validate(length(min = 1, max = 120, message = "must be 1 to 120 characters"))]
    pub name: String,
    pub condition: Condition,
    pub effect: Effect,
    /// Where milestone bonuses are paid from; the programme fund when absent.
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    pub budget_line_id: Option<String>,
    #[serde(default = "active")]
    pub active: bool,
}

fn active() -> bool {
    true
}

fn rule_json(r: &RuleRow) -> serde_json::Value {
    serde_json::json!({
        "key": r.rule_key,
        "version": r.version,
        "id": r.id,
        "name": r.name,
        "condition": serde_json::from_str::<serde_json::Value>(&r.condition_json).unwrap_or_default(),
        "effect": serde_json::from_str::<serde_json::Value>(&r.effect_json).unwrap_or_default(),
        "budget_line_id": r.budget_line_id,
        "active": r.active,
        "created_at": views::time(r.created_at),
    })
}

fn row(key: String, body: RuleRequest, user: AuthUser) -> Result<RuleRow, ApiError> {
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
        budget_line_id: body.budget_line_id,
        active: body.active,
        created_by: user.id,
        created_at: voucherd_store::now(),
    })
}

pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<RuleRequest>,
) -> Result<HttpResponse, ApiError> {
    let r = row(uuid::Uuid::now_v7().to_string(), body, user)?;
    let saved = state.store.save_rule(r).await?;
    Ok(HttpResponse::Created().json(rule_json(&saved)))
}

/// A new version of an existing rule (to change it, or retire it with `active: false`).
pub async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<RuleRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    if !state
        .store
        .latest_rules()
        .await?
        .iter()
        .any(|r| r.rule_key == key)
    {
        return Err(ApiError::NotFound("incentive"));
    }
    let saved = state.store.save_rule(row(key, body, user)?).await?;
    Ok(HttpResponse::Ok().json(rule_json(&saved)))
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rules = state.store.latest_rules().await?;
    let data: Vec<_> = rules.iter().map(rule_json).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

/// The incentives applied to a voucher: each rule version, why it matched, what it added.
pub async fn for_voucher(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (v, _) = crate::service::vouchers::visible(&state, &user, &path).await?;
    let rows = state.store.voucher_incentives(v.id.clone()).await?;
    let data: Vec<_> = rows
        .iter()
        .map(|(a, r)| {
            serde_json::json!({
                "rule": r.rule_key,
                "version": r.version,
                "name": r.name,
                "why": serde_json::from_str::<serde_json::Value>(&a.why).unwrap_or_default(),
                "effect": serde_json::from_str::<serde_json::Value>(&r.effect_json).unwrap_or_default(),
                "amount": voucherd_domain::money::format_micros(a.amount),
                "milestone": a.milestone,
                "granted_at": views::opt_time(a.granted_at),
                "refused_reason": a.refused_reason,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}
