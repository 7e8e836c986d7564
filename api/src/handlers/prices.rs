//! The price table over HTTP: adapters over [`crate::service::prices`].

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::service::prices as service;
pub use crate::service::prices::{valid_model, SetPriceRequest};
use crate::state::AppState;
use crate::views::List;
use actix_web::{web, HttpResponse};

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data = service::list(&state).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// Every price version (past, current and scheduled), newest first per model.
pub async fn history(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data = service::history(&state).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// Adds a new price version for a model.
pub async fn set(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<SetPriceRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::set(&state, &user, &path, body).await?))
}
