//! Budget lines over HTTP: adapters over [`crate::service::programme`].

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::handlers::programme::idempotency_key;
use crate::service::programme as service;
pub use crate::service::programme::{BudgetLineRequest, MoveRequest};
use crate::state::AppState;
use crate::views::List;
use actix_web::{web, HttpRequest, HttpResponse};

pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<BudgetLineRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::create_line(&state, &user, body).await?))
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data = service::list_lines(&state).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// Moves money between lines, or between a line and the programme fund; audited with its
/// reason. A retry with the same `Idempotency-Key` moves it once.
pub async fn move_money(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    ApiJson(body): ApiJson<MoveRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    Ok(HttpResponse::Created().json(service::move_money(&state, &user, key, body).await?))
}
