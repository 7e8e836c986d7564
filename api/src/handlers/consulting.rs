//! Technical consulting over HTTP: adapters over [`crate::service::consulting`].

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::service::consulting as service;
pub use crate::service::consulting::{BookingRequest, OutcomeRequest, SlotRequest};
use crate::state::AppState;
use crate::views::List;
use actix_web::{web, HttpResponse};
use voucherd_domain::VoucherId;

pub async fn create_slot(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<SlotRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::create_slot(&state, &user, body).await?))
}

/// Future slots: an adviser sees their own; an SME the free ones; an administrator all.
pub async fn list_slots(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let data = service::list_slots(&state, &user).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

pub async fn book(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<BookingRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::book(&state, &user, body).await?))
}

/// An SME sees its bookings; an adviser the bookings of their slots; an administrator all.
pub async fn list_bookings(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let data = service::list_bookings(&state, &user).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

pub async fn cancel(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service::cancel(&state, &user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn record_outcome(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<OutcomeRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::record_outcome(&state, &user, &path, body).await?))
}

/// A voucher's consulting hours: granted, used, held by booked sessions, remaining.
pub async fn allowance(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let voucher_id = VoucherId::new(path.into_inner());
    Ok(HttpResponse::Ok().json(service::allowance(&state, &user, &voucher_id).await?))
}
