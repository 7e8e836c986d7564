//! The worker's record over HTTP: adapters over [`crate::service::operations`].

use crate::error::ApiError;
use crate::service::operations as service;
pub use crate::service::operations::{LimitQuery, OutboxQuery, RunsQuery};
use crate::state::AppState;
use crate::views::List;
use actix_web::{web, HttpRequest, HttpResponse};

/// Job runs, newest first.
pub async fn runs(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let data = service::runs(&state, crate::handlers::query(&req)?).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// Reconciliation results, newest first.
pub async fn reconciliations(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let data = service::reconciliations(&state, crate::handlers::query(&req)?).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// Notifications and their delivery state, newest first.
pub async fn outbox(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let data = service::outbox(&state, crate::handlers::query(&req)?).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}
