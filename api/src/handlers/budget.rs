//! Budget lines: created and funded from the programme fund, listed with their figures, and
//! money moved between them (or back to the fund) with a reason.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::handlers::programme::idempotency_key;
use crate::state::AppState;
use crate::views;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use std::collections::BTreeSet;
use validator::Validate;
use voucherd_domain::budget::{FinancialYear, SicSection, SizeBand, Targeting};
use voucherd_domain::money::format_micros;
use voucherd_domain::{Money, Region};
use voucherd_store::budget::{BudgetLineRow, LineFigures, Pot};

/// How the programme fund is named where a line id could stand.
const FUND: &str = "programme_fund";

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct BudgetLineRequest {
    #[validate(length(min = 1, max = 120, message = "must be 1 to 120 characters"))]
    pub name: String,
    pub financial_year: FinancialYear,
    /// Moved from the programme fund at creation (may be 0, to fund it later).
    pub amount: Money,
    #[serde(default)]
    #[validate(length(max = 12, message = "must list at most 12 regions"))]
    pub regions: Vec<Region>,
    #[serde(default)]
    #[validate(length(max = 21, message = "must list at most 21 sections"))]
    pub sic_sections: Vec<SicSection>,
    #[serde(default)]
    #[validate(length(max = 3, message = "must list at most 3 size bands"))]
    pub size_bands: Vec<SizeBand>,
}

pub fn line_json(l: &BudgetLineRow, f: &LineFigures) -> serde_json::Value {
    serde_json::json!({
        "id": l.id,
        "name": l.name,
        "financial_year": l.financial_year,
        "targeting": l.targeting(),
        "approved": format_micros(f.approved),
        "committed": format_micros(f.committed),
        "spent": format_micros(f.spent),
        "forfeited": format_micros(f.forfeited),
        "remaining": format_micros(f.remaining),
        "created_at": views::time(l.created_at),
    })
}

pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<BudgetLineRequest>,
) -> Result<HttpResponse, ApiError> {
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
        id,
        name,
        financial_year: body.financial_year.to_string(),
        targeting: serde_json::to_string(&targeting)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        created_by: user.id,
        created_at: voucherd_store::now(),
    };
    let row = state.store.create_budget_line(row, body.amount).await?;
    let figures = LineFigures {
        approved: body.amount.micros(),
        remaining: body.amount.micros(),
        ..Default::default()
    };
    Ok(HttpResponse::Created().json(line_json(&row, &figures)))
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let lines = state.store.budget_lines().await?;
    let data: Vec<_> = lines.iter().map(|(l, f)| line_json(l, f)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// A line id, or `programme_fund`.
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    pub from: String,
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    pub to: String,
    pub amount: Money,
    #[validate(length(min = 1, max = 500, message = "must be 1 to 500 characters"))]
    pub reason: String,
}

fn pot(s: &str) -> Pot {
    if s == FUND {
        Pot::Fund
    } else {
        Pot::Line(s.to_string())
    }
}

/// Moves money between lines, or between a line and the programme fund; audited with its
/// reason. A retry with the same `Idempotency-Key` moves it once.
pub async fn move_money(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    ApiJson(body): ApiJson<MoveRequest>,
) -> Result<HttpResponse, ApiError> {
    if body.amount.is_zero() {
        return Err(ApiError::field("amount", "must be more than 0"));
    }
    if body.from == body.to {
        return Err(ApiError::field("to", "must differ from `from`"));
    }
    let reason = body.reason.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::field("reason", "must not be blank"));
    }
    let id = match idempotency_key(&req)? {
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
            user.id,
        )
        .await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "id": id,
        "from": body.from,
        "to": body.to,
        "amount": body.amount.to_string(),
        "reason": reason,
    })))
}
