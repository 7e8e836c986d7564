use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(crate::views::Health { status: "ok" })
}

/// The process can serve: its database answers.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|_| ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(crate::views::Readiness {
        status: "ready",
        database: state.store.backend().as_str(),
    }))
}
