//! `GET /v1/models`: the models a key may use, with the programme's prices.

use super::meter;
use super::ProxyError;
use crate::state::AppState;
use crate::views;
use actix_web::{web, HttpRequest, HttpResponse};
use voucherd_domain::money::format_micros;

pub async fn list_models(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ProxyError> {
    let cached = meter::authenticate(&state, &req).await?;
    let allowed: Option<Vec<String>> = cached
        .0
        .allowed_models
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok());
    let mut prices = state.store.current_prices(voucherd_store::now()).await?;
    if let Some(allowed) = allowed {
        prices.retain(|p| allowed.contains(&p.model));
    }
    let data: Vec<_> = prices
        .iter()
        .map(|p| {
            serde_json::json!({
                "id": p.model,
                "object": "model",
                "created": p.effective_from.and_utc().timestamp(),
                "owned_by": "voucherd",
                "pricing": {
                    "currency": "GBP",
                    "input_per_million": format_micros(p.input_per_million),
                    "cached_input_per_million": format_micros(p.cached_input_per_million),
                    "output_per_million": format_micros(p.output_per_million),
                    "effective_from": views::time(p.effective_from),
                },
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "object": "list", "data": data })))
}
