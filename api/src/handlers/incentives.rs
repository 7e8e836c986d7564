//! Incentive rules over HTTP: adapters over [`crate::service::incentives`].

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::service::incentives as service;
pub use crate::service::incentives::RuleRequest;
use crate::state::AppState;
use crate::views::List;
use actix_web::{web, HttpResponse};

pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<RuleRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::create(&state, &user, body).await?))
}

/// A new version of an existing rule (to change it, or retire it with `active: false`).
pub async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<RuleRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::update(&state, &user, &path, body).await?))
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data = service::list(&state).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// The incentives applied to a voucher: each rule version, why it matched, what it added.
pub async fn for_voucher(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let voucher_id = voucherd_domain::VoucherId::new(path.into_inner());
    let data = service::for_voucher(&state, &user, &voucher_id).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}
