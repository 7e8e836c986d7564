//! Consulting sessions. Each voucher carries an allowance of consulting minutes in a ledger
//! account of its own unit (`MIN`); a booking holds the session's minutes, the adviser's record
//! posts them, a cancellation voids them. The database refuses a second booking of a slot, and
//! a second upcoming booking for a voucher, however many requests race.

use crate::db::{DbConn, Store};
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::ledger::{self, TransferRequest};
use crate::outbox::{self, Notification};
use crate::schema::{consulting_bookings, consulting_slots, users, vouchers};
use crate::vouchers::VoucherRow;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::consulting::{self, Minutes};
use voucherd_domain::ledger::{AccountKind, TransferCode};
use voucherd_domain::{Money, SlotId, VoucherId};
use voucherd_domain::{SessionOutcome, UserId};

pub const SOURCE: &str = "consulting-source";
pub const USED: &str = "consulting-used";

/// How long after its slot ends an unrecorded session's hold lasts before it voids (the
/// minutes return to the voucher).
const RECORD_WITHIN_DAYS: i64 = 30;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consulting_slots)]
pub struct SlotRow {
    pub id: SlotId,
    pub adviser_id: UserId,
    pub starts_at: NaiveDateTime,
    pub ends_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consulting_bookings)]
pub struct BookingRow {
    pub id: String,
    pub slot_id: SlotId,
    pub voucher_id: VoucherId,
    pub booked_by: UserId,
    pub minutes: i64,
    pub hold_id: String,
    pub booked_at: NaiveDateTime,
    pub cancelled_at: Option<NaiveDateTime>,
    pub outcome: Option<SessionOutcome>,
    pub notes: Option<String>,
    pub next_steps: Option<String>,
    pub recorded_at: Option<NaiveDateTime>,
}

/// A voucher's consulting minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowance {
    pub granted: i64,
    pub used: i64,
    pub held: i64,
    pub remaining: i64,
}

pub fn hours_account(voucher_id: &VoucherId) -> String {
    format!("hours-{voucher_id}")
}

/// The ledger keeps amounts as plain integers in each account's unit; minutes ride in the
/// same field as micros only inside this module, and only between `MIN` accounts.
fn minutes_request(
    id: String,
    from: &str,
    to: &str,
    m: Minutes,
    memo: String,
) -> StoreResult<TransferRequest> {
    Ok(TransferRequest {
        id,
        debit_account_id: from.to_string(),
        credit_account_id: to.to_string(),
        amount: Money::from_micros(m.get()).map_err(|e| StoreError::Invariant(e.to_string()))?,
        code: TransferCode::ConsultingGrant,
        memo,
    })
}

/// Gives a new voucher its consulting allowance (inside the approval's transaction).
pub(crate) fn grant_minutes(c: &mut DbConn, voucher_id: &VoucherId, m: Minutes) -> StoreResult<()> {
    let account = hours_account(voucher_id);
    ledger::create_account(c, &account, AccountKind::ConsultingAllowance)?;
    if m.get() > 0 {
        ledger::transfer(
            c,
            &minutes_request(
                format!("hours-grant-{voucher_id}"),
                SOURCE,
                &account,
                m,
                format!("consulting allowance of voucher {voucher_id}"),
            )?,
        )?;
    }
    Ok(())
}

fn slot(c: &mut DbConn, id: &SlotId) -> StoreResult<SlotRow> {
    consulting_slots::table
        .find(id)
        .select(SlotRow::as_select())
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("slot"))
}

fn booking(c: &mut DbConn, id: &str) -> StoreResult<BookingRow> {
    consulting_bookings::table
        .find(id)
        .select(BookingRow::as_select())
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("booking"))
}

fn allowance(c: &mut DbConn, voucher_id: &VoucherId) -> StoreResult<Option<Allowance>> {
    Ok(
        ledger::find_account(c, &hours_account(voucher_id))?.map(|a| Allowance {
            granted: a.credits_posted,
            used: a.debits_posted,
            held: a.debits_pending,
            remaining: a.credits_posted - a.debits_posted - a.debits_pending,
        }),
    )
}

fn when(t: NaiveDateTime) -> String {
    voucherd_domain::uk_time::weekday_time(t)
}

impl Store {
    /// Publishes a slot; refused when it overlaps another of the adviser's.
    pub async fn create_slot(&self, row: SlotRow) -> StoreResult<SlotRow> {
        self.write(move |c| {
            // Two slots created at once must not both pass the overlap check: on PostgreSQL
            // the adviser's row is locked first (SQLite's writer lock already serialises).
            if let DbConn::Postgresql(pg) = c {
                users::table
                    .find(&row.adviser_id)
                    .select(users::id)
                    .for_update()
                    .load::<String>(pg)?;
            }
            let overlapping: i64 = consulting_slots::table
                .filter(consulting_slots::adviser_id.eq(&row.adviser_id))
                .filter(consulting_slots::starts_at.lt(row.ends_at))
                .filter(consulting_slots::ends_at.gt(row.starts_at))
                .count()
                .get_result(c)?;
            if overlapping > 0 {
                return Err(StoreError::Consulting(
                    voucherd_domain::ErrorCode::SlotOverlaps,
                    "this slot overlaps another of your slots".into(),
                ));
            }
            diesel::insert_into(consulting_slots::table)
                .values(&row)
                .execute(c)?;
            Ok(row)
        })
        .await
    }

    /// Future slots with their live booking, if any: one adviser's, or everyone's.
    pub async fn slots(
        &self,
        adviser_id: Option<UserId>,
        now: NaiveDateTime,
    ) -> StoreResult<Vec<(SlotRow, Option<BookingRow>)>> {
        self.read(move |c| {
            let mut q = consulting_slots::table
                .filter(consulting_slots::starts_at.gt(now))
                .into_boxed();
            if let Some(a) = adviser_id {
                q = q.filter(consulting_slots::adviser_id.eq(a));
            }
            let slots: Vec<SlotRow> = q
                .order(consulting_slots::starts_at.asc())
                .limit(500)
                .select(SlotRow::as_select())
                .load(c)?;
            let ids: Vec<&str> = slots.iter().map(|s| s.id.as_str()).collect();
            let booked: Vec<BookingRow> = consulting_bookings::table
                .filter(consulting_bookings::slot_id.eq_any(&ids))
                .filter(consulting_bookings::cancelled_at.is_null())
                .select(BookingRow::as_select())
                .load(c)?;
            Ok(slots
                .into_iter()
                .map(|s| {
                    let b = booked.iter().find(|b| b.slot_id == s.id).cloned();
                    (s, b)
                })
                .collect())
        })
        .await
    }

    /// Books a slot for a voucher its caller owns: holds the session's minutes from the
    /// voucher's allowance. One slot, one booking; one upcoming booking per voucher.
    pub async fn book_slot(
        &self,
        slot_id: SlotId,
        voucher_id: VoucherId,
        user_id: UserId,
        now: NaiveDateTime,
    ) -> StoreResult<BookingRow> {
        self.write(move |c| {
            let s = slot(c, &slot_id)?;
            if s.starts_at <= now {
                return Err(StoreError::Consulting(
                    voucherd_domain::ErrorCode::SlotPast,
                    "this slot has already started".into(),
                ));
            }
            let v = owned_live_voucher(c, &voucher_id, &user_id, now)?;
            check_free(c, &s, &v)?;
            let minutes = session_minutes(c, &s, &v)?;
            let id = uuid::Uuid::now_v7().to_string();
            let mut hold = minutes_request(
                format!("session-{id}"),
                &hours_account(&v.id),
                USED,
                minutes,
                format!("consulting session {id}"),
            )?;
            hold.code = TransferCode::ConsultingSession;
            let hold = ledger::hold(
                c,
                &hold,
                s.ends_at + chrono::Duration::days(RECORD_WITHIN_DAYS),
            )?;
            let row = BookingRow {
                id,
                slot_id: s.id.clone(),
                voucher_id: v.id.clone(),
                booked_by: user_id.clone(),
                minutes: minutes.get(),
                hold_id: hold.id,
                booked_at: now,
                cancelled_at: None,
                outcome: None,
                notes: None,
                next_steps: None,
                recorded_at: None,
            };
            insert_booking(c, &row)?;
            notify_booked(c, &user_id, &s, &v, &row)?;
            Ok(row)
        })
        .await
    }

    /// Cancels a booking at least 24 hours before its slot; the minutes return.
    pub async fn cancel_booking(
        &self,
        id: String,
        user_id: UserId,
        now: NaiveDateTime,
    ) -> StoreResult<BookingRow> {
        self.write(move |c| {
            let b = booking(c, &id)?;
            if b.booked_by != user_id {
                return Err(StoreError::NotFound("booking"));
            }
            if b.cancelled_at.is_some() || b.outcome.is_some() {
                return Err(StoreError::Consulting(
                    voucherd_domain::ErrorCode::BookingClosed,
                    "this booking was already cancelled or recorded".into(),
                ));
            }
            let s = slot(c, &b.slot_id)?;
            if !consulting::may_cancel(s.starts_at, now) {
                return Err(StoreError::Consulting(
                    voucherd_domain::ErrorCode::TooLateToCancel,
                    format!(
                        "a booking can be cancelled until {} hours before it starts",
                        consulting::CANCEL_NOTICE_HOURS
                    ),
                ));
            }
            ledger::void(c, &format!("{}:void", b.hold_id), &b.hold_id)?;
            diesel::update(consulting_bookings::table.find(&b.id))
                .set(consulting_bookings::cancelled_at.eq(Some(now)))
                .execute(c)?;
            booking(c, &b.id)
        })
        .await
    }

    /// The adviser records how a session went, once, after it started: attended or no-show
    /// (either uses the minutes), private notes, and next steps the SME sees.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_outcome(
        &self,
        id: String,
        adviser_id: UserId,
        outcome: SessionOutcome,
        notes: String,
        next_steps: String,
        now: NaiveDateTime,
    ) -> StoreResult<BookingRow> {
        self.write(move |c| {
            let b = booking(c, &id)?;
            let s = slot(c, &b.slot_id)?;
            if s.adviser_id != adviser_id {
                return Err(StoreError::NotFound("booking"));
            }
            if b.cancelled_at.is_some() || b.outcome.is_some() {
                return Err(StoreError::Consulting(
                    voucherd_domain::ErrorCode::BookingClosed,
                    "this booking was already cancelled or recorded".into(),
                ));
            }
            if now < s.starts_at {
                return Err(StoreError::Consulting(
                    voucherd_domain::ErrorCode::SessionNotStarted,
                    "a session is recorded once it has started".into(),
                ));
            }
            let minutes =
                Money::from_micros(b.minutes).map_err(|e| StoreError::Invariant(e.to_string()))?;
            ledger::resolve_at(
                c,
                &format!("{}:post", b.hold_id),
                &b.hold_id,
                Some(minutes),
                now,
            )?;
            diesel::update(consulting_bookings::table.find(&b.id))
                .set((
                    consulting_bookings::outcome.eq(Some(outcome)),
                    consulting_bookings::notes.eq(Some(&notes)),
                    consulting_bookings::next_steps.eq(Some(&next_steps)),
                    consulting_bookings::recorded_at.eq(Some(now)),
                ))
                .execute(c)?;
            let email = outbox::user_email(c, &b.booked_by)?;
            outbox::enqueue(
                c,
                Notification {
                    dedupe_key: format!("consulting-outcome:{}", b.id),
                    recipient: &email,
                    template: "consulting_outcome",
                    data: serde_json::json!({
                        "starts_at": when(s.starts_at),
                        "attended": outcome == SessionOutcome::Attended,
                        "next_steps": next_steps,
                    }),
                },
            )?;
            booking(c, &b.id)
        })
        .await
    }

    /// Bookings with their slots: one booker's, one adviser's, or all.
    pub async fn bookings(
        &self,
        booked_by: Option<UserId>,
        adviser_id: Option<UserId>,
    ) -> StoreResult<Vec<(BookingRow, SlotRow)>> {
        self.read(move |c| {
            let mut q = consulting_bookings::table
                .inner_join(consulting_slots::table)
                .into_boxed();
            if let Some(u) = booked_by {
                q = q.filter(consulting_bookings::booked_by.eq(u));
            }
            if let Some(a) = adviser_id {
                q = q.filter(consulting_slots::adviser_id.eq(a));
            }
            Ok(q.order(consulting_slots::starts_at.desc())
                .limit(500)
                .select((BookingRow::as_select(), SlotRow::as_select()))
                .load(c)?)
        })
        .await
    }

    pub async fn consulting_allowance(&self, voucher_id: VoucherId) -> StoreResult<Allowance> {
        self.read(move |c| Ok(allowance(c, &voucher_id)?.unwrap_or_default()))
            .await
    }

    /// Lapses sessions nobody recorded within 30 days of their end: the booking is closed as
    /// cancelled and its minutes return, so the voucher may book again. Returns how many.
    pub async fn lapse_unrecorded_sessions(&self, at: NaiveDateTime) -> StoreResult<usize> {
        self.write(move |c| {
            let stale: Vec<BookingRow> = consulting_bookings::table
                .inner_join(consulting_slots::table)
                .filter(consulting_bookings::cancelled_at.is_null())
                .filter(consulting_bookings::outcome.is_null())
                .filter(
                    consulting_slots::ends_at.le(at - chrono::Duration::days(RECORD_WITHIN_DAYS)),
                )
                .limit(500)
                .select(BookingRow::as_select())
                .load(c)?;
            for b in &stale {
                ledger::resolve_at(c, &format!("{}:void", b.hold_id), &b.hold_id, None, at)?;
                diesel::update(consulting_bookings::table.find(&b.id))
                    .set(consulting_bookings::cancelled_at.eq(Some(at)))
                    .execute(c)?;
            }
            Ok(stale.len())
        })
        .await
    }

    /// Reminds SMEs of sessions starting within a day, once each. Returns how many.
    pub async fn send_consulting_reminders(&self, at: NaiveDateTime) -> StoreResult<usize> {
        self.write(move |c| {
            let soon: Vec<(BookingRow, SlotRow)> = consulting_bookings::table
                .inner_join(consulting_slots::table)
                .filter(consulting_bookings::cancelled_at.is_null())
                .filter(consulting_bookings::outcome.is_null())
                .filter(consulting_slots::starts_at.gt(at))
                .filter(consulting_slots::starts_at.le(at + chrono::Duration::hours(24)))
                .select((BookingRow::as_select(), SlotRow::as_select()))
                .load(c)?;
            let mut sent = 0;
            for (b, s) in &soon {
                let email = outbox::user_email(c, &b.booked_by)?;
                if outbox::enqueue(
                    c,
                    Notification {
                        dedupe_key: format!("consulting-reminder:{}", b.id),
                        recipient: &email,
                        template: "consulting_reminder",
                        data: serde_json::json!({ "starts_at": when(s.starts_at), "minutes": b.minutes }),
                    },
                )? {
                    sent += 1;
                }
            }
            Ok(sent)
        })
        .await
    }
}

/// The voucher to book on: the caller's own, and live at `now`.
fn owned_live_voucher(
    c: &mut DbConn,
    voucher_id: &VoucherId,
    user_id: &UserId,
    now: NaiveDateTime,
) -> StoreResult<VoucherRow> {
    let v: VoucherRow = vouchers::table
        .find(voucher_id)
        .select(VoucherRow::as_select())
        .first(c)
        .optional()?
        .filter(|v| &v.owner_id == user_id)
        .ok_or(StoreError::NotFound("voucher"))?;
    if v.status != voucherd_domain::VoucherState::Active || v.expires_at <= now {
        return Err(StoreError::Consulting(
            voucherd_domain::ErrorCode::VoucherInactive,
            "this voucher is no longer active".into(),
        ));
    }
    Ok(v)
}

/// Refuses a slot already booked, or a voucher with an upcoming session already.
fn check_free(c: &mut DbConn, s: &SlotRow, v: &VoucherRow) -> StoreResult<()> {
    let taken: i64 = consulting_bookings::table
        .filter(consulting_bookings::slot_id.eq(&s.id))
        .filter(consulting_bookings::cancelled_at.is_null())
        .count()
        .get_result(c)?;
    if taken > 0 {
        return Err(StoreError::Consulting(
            voucherd_domain::ErrorCode::SlotTaken,
            "this slot is already booked".into(),
        ));
    }
    let upcoming: i64 = consulting_bookings::table
        .filter(consulting_bookings::voucher_id.eq(&v.id))
        .filter(consulting_bookings::cancelled_at.is_null())
        .filter(consulting_bookings::outcome.is_null())
        .count()
        .get_result(c)?;
    if upcoming > 0 {
        return Err(StoreError::Consulting(
            voucherd_domain::ErrorCode::BookingInProgress,
            "this voucher already has an upcoming session: one at a time".into(),
        ));
    }
    Ok(())
}

/// The slot's length, refused unless the voucher's consulting allowance still covers it.
fn session_minutes(c: &mut DbConn, s: &SlotRow, v: &VoucherRow) -> StoreResult<Minutes> {
    let Some(left) = allowance(c, &v.id)? else {
        return Err(StoreError::Consulting(
            voucherd_domain::ErrorCode::NoConsultingHours,
            "this voucher carries no consulting hours".into(),
        ));
    };
    let minutes =
        Minutes::new((s.ends_at - s.starts_at).num_minutes()).map_err(StoreError::Invariant)?;
    if left.remaining < minutes.get() {
        return Err(StoreError::Consulting(
            voucherd_domain::ErrorCode::ConsultingHoursShort,
            format!(
                "this session takes {} minutes; the voucher has {} left",
                minutes.get(),
                left.remaining
            ),
        ));
    }
    Ok(minutes)
}

/// Inserts a booking; a unique index refusing it is reported as the check it stands for.
fn insert_booking(c: &mut DbConn, row: &BookingRow) -> StoreResult<()> {
    match diesel::insert_into(consulting_bookings::table)
        .values(row)
        .execute(c)
    {
        Ok(_) => Ok(()),
        // Two requests raced past the checks: the unique indexes decide.
        Err(e) if is_unique_violation(&e) => {
            // Which index refused it: the voucher's (one at a time) or the slot's.
            Err(if e.to_string().contains("voucher") {
                StoreError::Consulting(
                    voucherd_domain::ErrorCode::BookingInProgress,
                    "this voucher already has an upcoming session: one at a time".into(),
                )
            } else {
                StoreError::Consulting(
                    voucherd_domain::ErrorCode::SlotTaken,
                    "this slot is already booked".into(),
                )
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Tells the booker their session is booked, with whom and when.
fn notify_booked(
    c: &mut DbConn,
    user_id: &UserId,
    s: &SlotRow,
    v: &VoucherRow,
    row: &BookingRow,
) -> StoreResult<()> {
    let email = outbox::user_email(c, user_id)?;
    let adviser: String = users::table
        .find(&s.adviser_id)
        .select(users::full_name)
        .first(c)?;
    outbox::enqueue(
        c,
        Notification {
            dedupe_key: format!("consulting-booked:{}", row.id),
            recipient: &email,
            template: "consulting_booked",
            data: serde_json::json!({
                "adviser": adviser,
                "starts_at": when(s.starts_at),
                "minutes": row.minutes,
                "voucher_id": v.id,
                "voucher_reference": v.reference,
            }),
        },
    )?;
    Ok(())
}
