use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use validator::Validate;
use voucherd_domain::Money;
use voucherd_store::prices::PriceRow;

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = state.store.current_prices(voucherd_store::now()).await?;
    let data: Vec<_> = rows.iter().map(views::price).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

/// Every price version (past, current and scheduled), newest first per model: what each
/// request was priced at can be looked up by its version.
pub async fn history(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = voucherd_store::now();
    let rows = state.store.price_history(10_000).await?;
    let data: Vec<_> = rows
        .iter()
        .map(|p| {
            let mut v = views::price(p);
            v["scheduled"] = serde_json::Value::Bool(p.effective_from > now);
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct SetPriceRequest {
    pub input_per_million: Money,
    pub cached_input_per_million: Money,
    pub output_per_million: Money,
    /// When the price takes effect; now when absent. Never in the past: history is fixed.
    pub effective_from: Option<DateTime<Utc>>,
}

/// How far ahead a price change may be scheduled.
const MAX_DAYS_AHEAD: i64 = 3 * 366;

/// Model names as providers write them: letters, digits and `. - _ :`.
pub fn valid_model(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= 100
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
}

/// Adds a new price version for a model; earlier versions and the usage priced with them stay.
pub async fn set(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<SetPriceRequest>,
) -> Result<HttpResponse, ApiError> {
    let model = path.into_inner();
    if !valid_model(&model) {
        return Err(ApiError::field(
            "model",
            "must be 1 to 100 letters, digits or - . _ :",
        ));
    }
    let now = voucherd_store::now();
    let effective_from = match body.effective_from {
        Some(t) if t.naive_utc() < now - chrono::Duration::seconds(60) => {
            return Err(ApiError::field("effective_from", "must not be in the past"));
        }
        Some(t) if t.naive_utc() > now + chrono::Duration::days(MAX_DAYS_AHEAD) => {
            return Err(ApiError::field(
                "effective_from",
                format!("must be within {MAX_DAYS_AHEAD} days"),
            ));
        }
        // Stored at PostgreSQL's precision, so it reads back equal on both backends.
        Some(t) => t.naive_utc().trunc_subsecs(6),
        None => now,
    };
    let row = state
        .store
        .set_price(PriceRow {
            id: uuid::Uuid::now_v7().to_string(),
            model,
            input_per_million: body.input_per_million.micros(),
            cached_input_per_million: body.cached_input_per_million.micros(),
            output_per_million: body.output_per_million.micros(),
            effective_from,
            created_by: Some(user.id),
            created_at: now,
        })
        .await?;
    state.price_cache.forget(&row.model);
    Ok(HttpResponse::Ok().json(views::price(&row)))
}
