//! The programme fund and the audit trail over HTTP: adapters over
//! [`crate::service::programme`].

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::service::programme as service;
pub use crate::service::programme::{AuditQuery, DepositRequest};
use crate::state::AppState;
use crate::views::List;
use actix_web::{web, HttpRequest, HttpResponse};

/// The optional `Idempotency-Key` header: a retried deposit with the same key is not counted
/// twice; the same key with a different amount is refused.
pub(crate) fn idempotency_key(
    req: &HttpRequest,
) -> Result<Option<crate::service::IdempotencyKey>, ApiError> {
    req.headers()
        .get("idempotency-key")
        .map(|v| crate::service::IdempotencyKey::parse(v.to_str().unwrap_or("")))
        .transpose()
}

pub async fn deposit(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    ApiJson(body): ApiJson<DepositRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    Ok(HttpResponse::Created().json(service::deposit(&state, &user, key, body).await?))
}

pub async fn overview(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::overview(&state).await?))
}

/// The audit trail of one subject, oldest first; or the latest entries of all, newest first.
pub async fn audit(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q: AuditQuery = crate::handlers::query(&req)?;
    let data = service::audit(&state, q).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}
