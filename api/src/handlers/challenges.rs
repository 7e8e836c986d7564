//! Innovation challenges over HTTP: adapters over [`crate::service::challenges`].

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::service::challenges as service;
pub use crate::service::challenges::{
    CancellationRequest, ChallengeRequest, ConflictRequest, EntryRequest, EntryUpdate,
    EvidenceRequest, KindCheckRequest, KindDecision, ScoreRequest,
};
use crate::state::AppState;
use crate::views::List;
use actix_web::{web, HttpResponse};

pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<ChallengeRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::create(&state, &user, body).await?))
}

/// Replaces a challenge's fields before it opens (409 `challenge_open` once it has).
pub async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<ChallengeRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::update(&state, &user, &path, body).await?))
}

/// Cancels a challenge before its decisions are released: its pool goes back to the fund.
pub async fn cancel(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<CancellationRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::cancel(&state, &user, &path, body).await?))
}

/// An administrator accepts or rejects the evidence of an entry's kind.
pub async fn check_kind(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<KindCheckRequest>,
) -> Result<HttpResponse, ApiError> {
    let (challenge_id, entry_id) = path.into_inner();
    let entry = service::check_kind(&state, &user, &challenge_id, &entry_id, body).await?;
    Ok(HttpResponse::Ok().json(entry))
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data = service::list(&state).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

pub async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::get(&state, &user, &path).await?))
}

pub async fn submit_entry(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<EntryRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::submit_entry(&state, &user, &path, body).await?))
}

pub async fn update_entry(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<EntryUpdate>,
) -> Result<HttpResponse, ApiError> {
    let (challenge_id, entry_id) = path.into_inner();
    let entry = service::update_entry(&state, &user, &challenge_id, &entry_id, body).await?;
    Ok(HttpResponse::Ok().json(entry))
}

/// An administrator sees every entry; an entrant their own.
pub async fn list_entries(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let data = service::list_entries(&state, &user, &path).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// Declares a conflict of interest; the entries it takes off the assessor are listed.
pub async fn declare_conflict(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<ConflictRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::declare_conflict(&state, &user, body).await?))
}

pub async fn list_conflicts(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let data = service::list_conflicts(&state, &user).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// The entries allocated to the calling assessor, with their own scores.
pub async fn assessments(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let data = service::assessments(&state, &user).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// One entry allocated to the calling assessor.
pub async fn assessment(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::assessment(&state, &user, &path).await?))
}

pub async fn score(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<ScoreRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::score(&state, &user, &path, body).await?))
}
