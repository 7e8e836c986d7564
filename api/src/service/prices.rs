//! The price table: current prices, every version, and new versions (never edits: what each
//! request was priced at stays looked up by its version).

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::Timestamp;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use validator::Validate;
use voucherd_domain::money::Amount;
use voucherd_domain::Money;
use voucherd_store::prices::PriceRow;

/// One price version of a model, per million tokens.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Price)]
pub struct PriceView {
    pub model: String,
    /// Per million prompt tokens.
    #[schema(value_type = Money)]
    pub input_per_million: Amount,
    /// Per million cached prompt tokens.
    #[schema(value_type = Money)]
    pub cached_input_per_million: Amount,
    /// Per million completion tokens.
    #[schema(value_type = Money)]
    pub output_per_million: Amount,
    pub effective_from: Timestamp,
    /// Identifier of this price version.
    pub version: String,
    /// Only in the history: the version takes effect later.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub scheduled: Option<bool>,
}

impl PriceView {
    pub fn new(p: &PriceRow) -> PriceView {
        PriceView {
            model: p.model.clone(),
            input_per_million: Amount(p.input_per_million),
            cached_input_per_million: Amount(p.cached_input_per_million),
            output_per_million: Amount(p.output_per_million),
            effective_from: Timestamp(p.effective_from),
            version: p.id.clone(),
            scheduled: None,
        }
    }
}

/// The prices in effect now, one per model.
pub async fn list(state: &AppState) -> Result<Vec<PriceView>, ApiError> {
    let rows = state.store.current_prices(voucherd_store::now()).await?;
    Ok(rows.iter().map(PriceView::new).collect())
}

/// Every price version (past, current and scheduled), newest first per model.
pub async fn history(state: &AppState) -> Result<Vec<PriceView>, ApiError> {
    let now = voucherd_store::now();
    let rows = state.store.price_history(10_000).await?;
    Ok(rows
        .iter()
        .map(|p| PriceView {
            scheduled: Some(p.effective_from > now),
            ..PriceView::new(p)
        })
        .collect())
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPriceRequest {
    pub input_per_million: Money,
    pub cached_input_per_million: Money,
    pub output_per_million: Money,
    /// When the price takes effect; now when absent (or null). Not in the past: history is
    /// fixed.
    pub effective_from: Option<DateTime<Utc>>,
}

/// How far ahead a price change may be scheduled.
const MAX_DAYS_AHEAD: i64 = 3 * 366;

/// A model name as the provider writes it: what [`valid_model`] accepts, as the OpenAPI
/// document states it (the type only names the schema; names travel as text).
pub struct ModelName;

impl utoipa::PartialSchema for ModelName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        voucherd_domain::schema::string("A model name as the provider writes it.")
            .min_length(Some(1))
            .max_length(Some(100))
            .pattern(Some("^[A-Za-z0-9._:-]{1,100}$"))
            .examples(["gpt-4o-mini"])
            .into()
    }
}

impl utoipa::ToSchema for ModelName {}

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
    state: &AppState,
    user: &AuthUser,
    model: &str,
    body: SetPriceRequest,
) -> Result<PriceView, ApiError> {
    if !valid_model(model) {
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
            model: model.to_string(),
            input_per_million: body.input_per_million.micros(),
            cached_input_per_million: body.cached_input_per_million.micros(),
            output_per_million: body.output_per_million.micros(),
            effective_from,
            created_by: Some(user.id.clone()),
            created_at: now,
        })
        .await?;
    state.price_cache.forget(&row.model);
    Ok(PriceView::new(&row))
}
