//! Overrun: usage the provider billed above what its request held, per key and model, and
//! the administrators' way back for a key the programme suspended for it.

use super::vouchers::SuspensionRequest;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views;
use actix_web::{web, HttpResponse};
use voucherd_domain::money::format_micros;

/// Overrun per key and model, largest first.
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = state.store.overruns().await?;
    let total: i64 = rows
        .iter()
        .fold(0i64, |a, r| a.saturating_add(r.overrun_micros));
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "api_key_id": r.api_key_id,
                "key_name": r.key_name,
                "key_prefix": r.key_prefix,
                "key_suspended": r.key_suspended_at.is_some(),
                "voucher_id": r.voucher_id,
                "company_number": r.company_number,
                "model": r.model,
                "requests": r.requests,
                "overrun": format_micros(r.overrun_micros),
                "last_at": views::time(r.last_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "data": data,
        "total": format_micros(total),
        "suspend_threshold": format_micros(state.config.overrun_suspend_threshold.micros()),
    })))
}

/// Lifts the suspension of a key (the programme suspends one whose overrun passes the
/// threshold), with the reason; audited.
pub async fn reinstate_key(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<SuspensionRequest>,
) -> Result<HttpResponse, ApiError> {
    let reason = body.reason.into_inner();
    let id = path.into_inner();
    state
        .store
        .reinstate_key(id.clone(), user.id, reason)
        .await?;
    // At once here; other instances within their key cache's time to live.
    state.key_cache.forget(&id);
    let (k, _) = state.store.key(id).await?;
    Ok(HttpResponse::Ok().json(views::KeyView::new(&k)))
}
