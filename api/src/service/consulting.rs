//! Technical consulting: advisers publish slots, SMEs book and cancel them against their
//! voucher's consulting hours, advisers record how each session went.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::vouchers::visible;
use crate::state::AppState;
use crate::views::Timestamp;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use validator::Validate;
use voucherd_domain::consulting;
use voucherd_domain::{BookingStatus, Role, UserId, VoucherId};
use voucherd_store::consulting::{BookingRow, SlotRow};

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct SlotRequest {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// An adviser's consulting slot.
#[derive(Debug, Clone, Serialize)]
pub struct SlotView {
    pub id: String,
    pub adviser_id: UserId,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub minutes: i64,
    pub booked: bool,
}

impl SlotView {
    fn new(s: &SlotRow, booked: bool) -> SlotView {
        SlotView {
            id: s.id.clone(),
            adviser_id: s.adviser_id.clone(),
            starts_at: Timestamp(s.starts_at),
            ends_at: Timestamp(s.ends_at),
            minutes: (s.ends_at - s.starts_at).num_minutes(),
            booked,
        }
    }
}

/// A booking as its reader may see it: the adviser's notes are the programme's, not the SME's.
#[derive(Debug, Clone, Serialize)]
pub struct BookingView {
    pub id: String,
    pub slot: SlotView,
    pub voucher_id: VoucherId,
    /// The voucher's short reference (`VCH-7K2M9Q`).
    pub voucher_reference: String,
    pub minutes: i64,
    pub status: BookingStatus,
    pub booked_at: Timestamp,
    pub cancelled_at: Option<Timestamp>,
    pub next_steps: Option<String>,
    pub recorded_at: Option<Timestamp>,
    /// Only for advisers and administrators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<Option<String>>,
}

impl BookingView {
    fn new(b: &BookingRow, s: &SlotRow, with_notes: bool) -> Result<BookingView, ApiError> {
        let status = match (&b.cancelled_at, &b.outcome) {
            (Some(_), _) => BookingStatus::Cancelled,
            (None, Some(o)) => o
                .parse()
                .map_err(|e| ApiError::Internal(format!("booking {}: {e}", b.id)))?,
            (None, None) => BookingStatus::Booked,
        };
        Ok(BookingView {
            id: b.id.clone(),
            slot: SlotView::new(s, b.cancelled_at.is_none()),
            voucher_id: b.voucher_id.clone(),
            voucher_reference: String::new(),
            minutes: b.minutes,
            status,
            booked_at: Timestamp(b.booked_at),
            cancelled_at: b.cancelled_at.map(Timestamp),
            next_steps: b.next_steps.clone(),
            recorded_at: b.recorded_at.map(Timestamp),
            notes: with_notes.then(|| b.notes.clone()),
        })
    }
}

pub async fn create_slot(
    state: &AppState,
    user: &AuthUser,
    body: SlotRequest,
) -> Result<SlotView, ApiError> {
    let now = state.clock.now();
    let (starts_at, ends_at) = (body.starts_at.naive_utc(), body.ends_at.naive_utc());
    consulting::check_slot(starts_at, ends_at, now).map_err(|(f, m)| ApiError::field(f, m))?;
    let row = state
        .store
        .create_slot(SlotRow {
            id: uuid::Uuid::now_v7().to_string(),
            adviser_id: user.id.clone(),
            starts_at,
            ends_at,
            created_at: now,
        })
        .await?;
    Ok(SlotView::new(&row, false))
}

/// Future slots: an adviser sees their own; an SME the free ones; an administrator all.
pub async fn list_slots(state: &AppState, user: &AuthUser) -> Result<Vec<SlotView>, ApiError> {
    let own = (user.role == Role::Adviser).then(|| user.id.clone());
    let rows = state.store.slots(own, state.clock.now()).await?;
    Ok(rows
        .iter()
        .filter(|(_, b)| user.role != Role::Applicant || b.is_none())
        .map(|(s, b)| SlotView::new(s, b.is_some()))
        .collect())
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
    state: &AppState,
    user: &AuthUser,
    body: BookingRequest,
) -> Result<BookingView, ApiError> {
    let b = state
        .store
        .book_slot(
            body.slot_id,
            VoucherId::new(body.voucher_id),
            user.id.clone(),
            state.clock.now(),
        )
        .await?;
    let (_, s) = state
        .store
        .bookings(Some(b.booked_by.clone()), None)
        .await?
        .into_iter()
        .find(|(x, _)| x.id == b.id)
        .ok_or(ApiError::NotFound("booking"))?;
    named(state, vec![BookingView::new(&b, &s, false)?])
        .await?
        .pop()
        .ok_or(ApiError::NotFound("booking"))
}

/// Bookings with their vouchers' references, read in one statement.
async fn named(
    state: &AppState,
    mut views: Vec<BookingView>,
) -> Result<Vec<BookingView>, ApiError> {
    let ids = views.iter().map(|v| v.voucher_id.to_string()).collect();
    let references = state
        .store
        .references(voucherd_domain::ReferenceKind::Voucher, ids)
        .await?;
    for v in &mut views {
        if let Some(r) = references.get(v.voucher_id.as_str()) {
            v.voucher_reference = r.clone();
        }
    }
    Ok(views)
}

/// An SME sees its bookings; an adviser the bookings of their slots (with notes); an
/// administrator all (with notes).
pub async fn list_bookings(
    state: &AppState,
    user: &AuthUser,
) -> Result<Vec<BookingView>, ApiError> {
    let (booker, adviser) = match user.role {
        Role::Applicant => (Some(user.id.clone()), None),
        Role::Adviser => (None, Some(user.id.clone())),
        _ => (None, None),
    };
    let rows = state.store.bookings(booker, adviser).await?;
    let with_notes = user.role != Role::Applicant;
    let views = rows
        .iter()
        .map(|(b, s)| BookingView::new(b, s, with_notes))
        .collect::<Result<_, _>>()?;
    named(state, views).await
}

pub async fn cancel(state: &AppState, user: &AuthUser, id: &str) -> Result<(), ApiError> {
    state
        .store
        .cancel_booking(id.to_string(), user.id.clone(), state.clock.now())
        .await?;
    Ok(())
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
    state: &AppState,
    user: &AuthUser,
    id: &str,
    body: OutcomeRequest,
) -> Result<BookingView, ApiError> {
    let outcome = match body.outcome {
        Outcome::Attended => "attended",
        Outcome::NoShow => "no_show",
    };
    let b = state
        .store
        .record_outcome(
            id.to_string(),
            user.id.clone(),
            outcome,
            body.notes.trim().to_string(),
            body.next_steps.trim().to_string(),
            state.clock.now(),
        )
        .await?;
    let (_, s) = state
        .store
        .bookings(None, Some(user.id.clone()))
        .await?
        .into_iter()
        .find(|(x, _)| x.id == b.id)
        .ok_or(ApiError::NotFound("booking"))?;
    named(state, vec![BookingView::new(&b, &s, true)?])
        .await?
        .pop()
        .ok_or(ApiError::NotFound("booking"))
}

/// A voucher's consulting time, in minutes.
#[derive(Debug, Clone, Serialize)]
pub struct AllowanceView {
    pub voucher_id: VoucherId,
    pub unit: &'static str,
    pub granted: i64,
    pub used: i64,
    pub held: i64,
    pub remaining: i64,
}

/// A voucher's consulting hours: granted, used, held by booked sessions, remaining.
pub async fn allowance(
    state: &AppState,
    user: &AuthUser,
    voucher_id: &VoucherId,
) -> Result<AllowanceView, ApiError> {
    let (v, _) = visible(state, user, voucher_id).await?;
    let a = state.store.consulting_allowance(v.id.clone()).await?;
    Ok(AllowanceView {
        voucher_id: v.id,
        unit: "minutes",
        granted: a.granted,
        used: a.used,
        held: a.held,
        remaining: a.remaining,
    })
}
