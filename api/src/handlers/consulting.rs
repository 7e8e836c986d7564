//! Technical consulting: advisers publish slots, SMEs book and cancel them against their
//! voucher's consulting hours, advisers record how each session went.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use validator::Validate;
use voucherd_domain::consulting;
use voucherd_domain::Role;
use voucherd_store::consulting::{BookingRow, SlotRow};

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct SlotRequest {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

fn slot_json(s: &SlotRow, booked: bool) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "adviser_id": s.adviser_id,
        "starts_at": views::time(s.starts_at),
        "ends_at": views::time(s.ends_at),
        "minutes": (s.ends_at - s.starts_at).num_minutes(),
        "booked": booked,
    })
}

/// A booking as its reader may see it: the adviser's notes are the programme's, not the SME's.
fn booking_json(b: &BookingRow, s: &SlotRow, with_notes: bool) -> serde_json::Value {
    let status = match (&b.cancelled_at, &b.outcome) {
        (Some(_), _) => "cancelled",
        (None, Some(o)) => o.as_str(),
        (None, None) => "booked",
    };
    let mut j = serde_json::json!({
        "id": b.id,
        "slot": slot_json(s, b.cancelled_at.is_none()),
        "voucher_id": b.voucher_id,
        "minutes": b.minutes,
        "status": status,
        "booked_at": views::time(b.booked_at),
        "cancelled_at": views::opt_time(b.cancelled_at),
        "next_steps": b.next_steps,
        "recorded_at": views::opt_time(b.recorded_at),
    });
    if with_notes {
        j["notes"] = serde_json::json!(b.notes);
    }
    j
}

pub async fn create_slot(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<SlotRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let (starts_at, ends_at) = (body.starts_at.naive_utc(), body.ends_at.naive_utc());
    consulting::check_slot(starts_at, ends_at, now).map_err(|(f, m)| ApiError::field(f, m))?;
    let row = state
        .store
        .create_slot(SlotRow {
            id: uuid::Uuid::now_v7().to_string(),
            adviser_id: user.id,
            starts_at,
            ends_at,
            created_at: now,
        })
        .await?;
    Ok(HttpResponse::Created().json(slot_json(&row, false)))
}

/// Future slots: an adviser sees their own; an SME the free ones; an administrator all.
pub async fn list_slots(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let own = (user.role == Role::Adviser).then(|| user.id.clone());
    let rows = state.store.slots(own, state.clock.now()).await?;
    let data: Vec<_> = rows
        .iter()
        .filter(|(_, b)| user.role != Role::Applicant || b.is_none())
        .map(|(s, b)| slot_json(s, b.is_some()))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct BookingRequest {
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    pub slot_id: String,
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    pub voucher_id: String,
}

pub async fn book(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<BookingRequest>,
) -> Result<HttpResponse, ApiError> {
    let b = state
        .store
        .book_slot(body.slot_id, body.voucher_id, user.id, state.clock.now())
        .await?;
    let (_, s) = state
        .store
        .bookings(Some(b.booked_by.clone()), None)
        .await?
        .into_iter()
        .find(|(x, _)| x.id == b.id)
        .ok_or(ApiError::NotFound("booking"))?;
    Ok(HttpResponse::Created().json(booking_json(&b, &s, false)))
}

/// An SME sees its bookings; an adviser the bookings of their slots (with notes); an
/// administrator all (with notes).
pub async fn list_bookings(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let (booker, adviser) = match user.role {
        Role::Applicant => (Some(user.id.clone()), None),
        Role::Adviser => (None, Some(user.id.clone())),
        _ => (None, None),
    };
    let rows = state.store.bookings(booker, adviser).await?;
    let with_notes = user.role != Role::Applicant;
    let data: Vec<_> = rows
        .iter()
        .map(|(b, s)| booking_json(b, s, with_notes))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

pub async fn cancel(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state
        .store
        .cancel_booking(path.into_inner(), user.id, state.clock.now())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Attended,
    NoShow,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRequest {
    pub outcome: Outcome,
    #[validate(length(max = 5000, message = "must be at most 5000 characters"))]
    #[serde(default)]
    pub notes: String,
    #[validate(length(max = 5000, message = "must be at most 5000 characters"))]
    #[serde(default)]
    pub next_steps: String,
}

pub async fn record_outcome(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<OutcomeRequest>,
) -> Result<HttpResponse, ApiError> {
    let outcome = match body.outcome {
        Outcome::Attended => "attended",
        Outcome::NoShow => "no_show",
    };
    let b = state
        .store
        .record_outcome(
            path.into_inner(),
            user.id.clone(),
            outcome,
            body.notes.trim().to_string(),
            body.next_steps.trim().to_string(),
            state.clock.now(),
        )
        .await?;
    let (_, s) = state
        .store
        .bookings(None, Some(user.id))
        .await?
        .into_iter()
        .find(|(x, _)| x.id == b.id)
        .ok_or(ApiError::NotFound("booking"))?;
    Ok(HttpResponse::Ok().json(booking_json(&b, &s, true)))
}

/// A voucher's consulting hours: granted, used, held by booked sessions, remaining.
pub async fn allowance(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (v, _) = crate::service::vouchers::visible(&state, &user, &path).await?;
    let a = state.store.consulting_allowance(v.id.clone()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "voucher_id": v.id,
        "unit": "minutes",
        "granted": a.granted,
        "used": a.used,
        "held": a.held,
        "remaining": a.remaining,
    })))
}
