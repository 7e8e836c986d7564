//! Technical consulting: advisers publish slots, SMEs book and cancel them against their
//! voucher's consulting hours, advisers record how each session went.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::vouchers::visible;
use crate::state::AppState;
use crate::views::Timestamp;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;
use voucherd_domain::consulting;
use voucherd_domain::{BookingStatus, Role, SessionOutcome, UserId, VoucherId};
use voucherd_store::consulting::{BookingRow, SlotRow};

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConsultingSlotRequest)]
pub struct SlotRequest {
    /// RFC 3339; in the future.
    pub starts_at: DateTime<Utc>,
    /// RFC 3339; 15 minutes to 8 hours after `starts_at`, in whole minutes.
    pub ends_at: DateTime<Utc>,
}

/// An adviser's consulting slot.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ConsultingSlot)]
pub struct SlotView {
    /// Time-ordered UUID (v7).
    pub id: voucherd_domain::SlotId,
    /// The adviser giving the session.
    pub adviser_id: UserId,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    /// The session's length, held from a voucher's consulting hours when booked.
    #[schema(minimum = 15, maximum = 480)]
    pub minutes: i64,
    /// True while a booking that is not cancelled holds the slot.
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
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ConsultingBooking)]
pub struct BookingView {
    /// Time-ordered UUID (v7).
    pub id: String,
    pub slot: SlotView,
    pub voucher_id: VoucherId,
    /// The voucher's short reference (`VCH-7K2M9Q`).
    pub voucher_reference: String,
    /// Held from the voucher's consulting hours while `booked`; used once `attended` or
    /// `no_show`; released when `cancelled`.
    pub minutes: i64,
    pub status: BookingStatus,
    pub booked_at: Timestamp,
    /// Null unless cancelled.
    #[schema(required)]
    pub cancelled_at: Option<Timestamp>,
    /// The adviser's next steps for the SME, once the outcome is recorded.
    #[schema(required)]
    pub next_steps: Option<String>,
    /// When the outcome was recorded; null until then.
    #[schema(required)]
    pub recorded_at: Option<Timestamp>,
    /// The adviser's notes, private to the programme. Present only for advisers and
    /// administrators.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
}

impl BookingView {
    fn new(b: &BookingRow, s: &SlotRow, with_notes: bool) -> Result<BookingView, ApiError> {
        let status = match (&b.cancelled_at, &b.outcome) {
            (Some(_), _) => BookingStatus::Cancelled,
            (None, Some(o)) => BookingStatus::from(*o),
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
            id: uuid::Uuid::now_v7().to_string().into(),
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

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConsultingBookingRequest)]
pub struct BookingRequest {
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    #[schema(min_length = 1, max_length = 64)]
    pub slot_id: String,
    /// A voucher of the caller's whose consulting hours pay for the session.
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    #[schema(min_length = 1, max_length = 64)]
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
            voucherd_domain::SlotId::new(body.slot_id),
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

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConsultingOutcomeRequest)]
pub struct OutcomeRequest {
    pub outcome: SessionOutcome,
    /// Private to the programme; never shown to the SME.
    #[validate(length(max = 5000, message = "must be at most 5000 characters"))]
    #[serde(default)]
    #[schema(max_length = 5000, default = "")]
    pub notes: String,
    /// Visible to the SME.
    #[validate(length(max = 5000, message = "must be at most 5000 characters"))]
    #[serde(default)]
    #[schema(max_length = 5000, default = "")]
    pub next_steps: String,
}

pub async fn record_outcome(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    body: OutcomeRequest,
) -> Result<BookingView, ApiError> {
    let outcome = body.outcome;
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

/// A voucher's consulting hours, in minutes. A ledger unit of its own, never money.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ConsultingAllowance)]
pub struct AllowanceView {
    pub voucher_id: VoucherId,
    #[schema(schema_with = minutes_unit)]
    pub unit: &'static str,
    /// Minutes granted with the voucher.
    pub granted: i64,
    /// Minutes of sessions attended or missed.
    pub used: i64,
    /// Minutes held by booked sessions whose outcome is not recorded yet.
    pub held: i64,
    /// Minutes still available to book.
    pub remaining: i64,
}

/// The unit of consulting hours, which is always `minutes`.
fn minutes_unit() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    voucherd_domain::schema::one_of(
        &[" The ledger unit of consulting hours."],
        &[("minutes", &[])],
    )
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
