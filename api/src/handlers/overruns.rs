//! Overrun over HTTP: adapters over [`crate::service::operations`].

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::service::operations as service;
use crate::service::vouchers::SuspensionRequest;
use crate::state::AppState;
use actix_web::{web, HttpResponse};

/// Overrun per key and model, largest first.
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::overruns(&state).await?))
}

/// Lifts the suspension of a key, with the reason; audited.
pub async fn reinstate_key(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<SuspensionRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::reinstate_key(&state, &user, &path, body).await?))
}
