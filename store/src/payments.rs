//! Payments through Stripe Checkout: a row per session asked for, and what Stripe later
//! reports of it (paid, failed, expired, refunded) applied to the ledger exactly once.
//!
//! "Exactly once" holds however the news arrives — a webhook, its replay, a reordered event,
//! or the reconciliation job finding a payment whose webhook was lost: each change of status is
//! a conditional `UPDATE` from the statuses it may come from, and each ledger transfer has an
//! id derived from the payment, so a second arrival finds the work done and changes nothing.
//! Processed webhook events are recorded by id in the same transaction as their effect.

use crate::audit::{self, AuditEntry};
use crate::db::{DbConn, Store};
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::ledger::{self, TransferRequest, STRIPE_CLEARING};
use crate::outbox::{self, Notification};
use crate::schema::{payments, stripe_events, vouchers};
use crate::vouchers::VoucherRow;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::ledger::{AccountKind, TransferCode};
use voucherd_domain::money::format_micros;
use voucherd_domain::payment::{PaymentKind, Pence, StripeEventOutcome};
use voucherd_domain::{Money, PaymentStatus, VoucherId};
use voucherd_domain::{PaymentId, UserId};

const PURCHASED_PREFIX: &str = "purchased-";

/// An organisation's purchased credit (its owner's id names it; made at its first top-up).
pub fn purchased_account_id(owner_id: &UserId) -> String {
    format!("{PURCHASED_PREFIX}{owner_id}")
}

/// Whether an account is an organisation's purchased credit.
pub fn is_purchased_account(account_id: &str) -> bool {
    account_id.starts_with(PURCHASED_PREFIX) && account_id != crate::ledger::PURCHASED_USAGE
}

/// An organisation's paid co-funding contributions.
pub fn contribution_account_id(owner_id: &UserId) -> String {
    format!("contribution-{owner_id}")
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = payments)]
pub struct PaymentRow {
    pub id: PaymentId,
    pub kind: PaymentKind,
    pub owner_id: UserId,
    pub voucher_id: Option<VoucherId>,
    pub account_id: String,
    pub amount_micros: i64,
    pub amount_pence: i64,
    pub currency: String,
    /// `open`, `processing` (a delayed method not yet cleared), `paid`, `failed`, `expired`,
    /// `refunded` (in full or in part: see `refunded_micros`).
    pub status: voucherd_domain::PaymentStatus,
    pub stripe_session_id: Option<String>,
    pub checkout_url: Option<String>,
    pub payment_intent_id: Option<String>,
    pub refunded_micros: i64,
    pub reversed_micros: i64,
    pub shortfall_micros: i64,
    pub created_by: UserId,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub paid_at: Option<NaiveDateTime>,
    pub paid_via: Option<Via>,
}

impl PaymentRow {
    fn what(&self) -> &'static str {
        match self.kind {
            PaymentKind::Contribution => "co-funding contribution",
            PaymentKind::TopUp => "credit top-up",
        }
    }
}

/// A new payment, before its Checkout Session exists.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub id: PaymentId,
    pub kind: PaymentKind,
    pub owner_id: UserId,
    pub voucher_id: Option<VoucherId>,
    pub amount: Pence,
    pub created_by: UserId,
    pub at: NaiveDateTime,
    /// When its Checkout Session stops being payable: fixed once, so a retried create sends
    /// Stripe the very same request under the same idempotency key.
    pub expires_at: NaiveDateTime,
}

/// What Stripe says happened to a payment.
#[derive(Debug, Clone)]
pub enum StripeFact {
    /// The session is paid: credit the payment once.
    Paid {
        payment_id: PaymentId,
        session_id: String,
        amount_pence: i64,
        currency: String,
        payment_intent: Option<String>,
    },
    /// Completed with a delayed method that has not cleared yet.
    Processing {
        payment_id: PaymentId,
        session_id: String,
        payment_intent: Option<String>,
    },
    /// A delayed method failed.
    Failed {
        payment_id: PaymentId,
        session_id: String,
    },
    /// The session expired unpaid.
    Expired {
        payment_id: PaymentId,
        session_id: String,
    },
    /// The charge of a payment has `refunded_pence` refunded in all.
    Refunded {
        payment_intent: String,
        /// Our payment, when the charge names it.
        payment_id: Option<PaymentId>,
        refunded_pence: i64,
    },
}

/// Where the news came from.
pub use voucherd_domain::payment::PaidVia as Via;

/// A webhook event, recorded by id with its effect.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: String,
    pub type_: String,
}

/// What applying a fact did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The event was processed before: nothing changed.
    Duplicate,
    /// The fact changed something (what, in a word: `credited`, `refund_reversed`, …).
    Changed(StripeEventOutcome),
    /// The fact was already reflected, or does not apply: nothing changed.
    Unchanged(StripeEventOutcome),
    /// Part of the fact could be applied and was; the rest must wait (a refund of credit that
    /// is held for requests in flight). The event is not recorded, so Stripe delivers it again.
    Retry(StripeEventOutcome),
}

impl Applied {
    pub fn outcome(&self) -> StripeEventOutcome {
        match self {
            Applied::Duplicate => StripeEventOutcome::Duplicate,
            Applied::Changed(o) | Applied::Unchanged(o) | Applied::Retry(o) => *o,
        }
    }
}

/// Filter for listing payments.
#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    pub owner_id: Option<UserId>,
    pub kind: Option<PaymentKind>,
    pub status: Option<PaymentStatus>,
    pub voucher_id: Option<VoucherId>,
    pub limit: i64,
    pub offset: i64,
}

fn find(c: &mut DbConn, id: &PaymentId) -> StoreResult<Option<PaymentRow>> {
    Ok(payments::table
        .find(id)
        .select(PaymentRow::as_select())
        .first(c)
        .optional()?)
}

/// Locks a payment's row until the transaction ends (PostgreSQL; SQLite's writer lock already
/// serialises writers), so a webhook and the reconciliation job apply one after the other.
fn lock(c: &mut DbConn, id: &PaymentId) -> StoreResult<Option<PaymentRow>> {
    if let DbConn::Postgresql(pg) = c {
        payments::table
            .find(id)
            .select(payments::id)
            .for_update()
            .load::<String>(pg)?;
    }
    find(c, id)
}

/// A webhook event recorded by a twin that committed first.
const DUPLICATE_EVENT: voucherd_domain::ErrorCode = voucherd_domain::ErrorCode::DuplicateEvent;

/// Tells every administrator that a payment needs a look, and why.
fn attention(c: &mut DbConn, p: &PaymentRow, key: &str, message: String) -> StoreResult<()> {
    tracing::warn!(payment = %p.id, %message, "a payment needs an administrator");
    let owner_email = outbox::user_email(c, &p.owner_id)?;
    outbox::notify_admins(
        c,
        &format!("payment-attention:{}:{key}", p.id),
        "payment_attention",
        serde_json::json!({
            "payment_id": p.id,
            "what": p.what(),
            "owner_email": owner_email,
            "message": message,
        }),
    )
}

fn money(micros: i64) -> StoreResult<Money> {
    Money::from_micros(micros).map_err(|e| StoreError::Invariant(e.to_string()))
}

impl Store {
    /// Records a payment about to be taken. A contribution must be due on the caller's own
    /// voucher, and only one may be open at a time (a second is refused with `Consulting`-like
    /// conflict code `payment_in_progress`). The credited account is made if missing.
    pub async fn create_payment(&self, p: NewPayment) -> StoreResult<PaymentRow> {
        self.write(move |c| {
            let account_id = match p.kind {
                PaymentKind::Contribution => contribution_account_id(&p.owner_id),
                PaymentKind::TopUp => purchased_account_id(&p.owner_id),
            };
            if let PaymentKind::Contribution = p.kind {
                // Refused for a voucher that can no longer spend: its remainder is forfeit.
                let voucher_id = p
                    .voucher_id
                    .as_ref()
                    .ok_or(StoreError::NotFound("voucher"))?;
                let v: VoucherRow = vouchers::table
                    .find(voucher_id)
                    .select(VoucherRow::as_select())
                    .first(c)
                    .optional()?
                    .ok_or(StoreError::NotFound("voucher"))?;
                if !v.awaiting_contribution() {
                    return Err(StoreError::Payment(
                        voucherd_domain::ErrorCode::ContributionNotDue,
                        "this voucher has no co-funding contribution to pay".into(),
                    ));
                }
                if v.status != voucherd_domain::VoucherState::Active || v.expires_at <= p.at {
                    return Err(StoreError::Payment(
                        voucherd_domain::ErrorCode::VoucherExpired,
                        "this voucher has expired: its contribution can no longer be paid".into(),
                    ));
                }
            }
            let kind = match p.kind {
                PaymentKind::Contribution => AccountKind::Contribution,
                PaymentKind::TopUp => AccountKind::PurchasedCredit,
            };
            ledger::ensure_account(c, &account_id, kind)?;
            let row = PaymentRow {
                id: p.id.clone(),
                kind: p.kind,
                owner_id: p.owner_id.clone(),
                voucher_id: p.voucher_id.clone(),
                account_id,
                amount_micros: p.amount.to_money().micros(),
                amount_pence: p.amount.get(),
                currency: "gbp".into(),
                status: PaymentStatus::Open,
                stripe_session_id: None,
                checkout_url: None,
                payment_intent_id: None,
                refunded_micros: 0,
                reversed_micros: 0,
                shortfall_micros: 0,
                created_by: p.created_by.clone(),
                created_at: p.at,
                updated_at: p.at,
                expires_at: Some(p.expires_at),
                paid_at: None,
                paid_via: None,
            };
            match diesel::insert_into(payments::table).values(&row).execute(c) {
                Ok(_) => Ok(row),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Payment(
                    voucherd_domain::ErrorCode::PaymentInProgress,
                    "a payment for this is already in progress".into(),
                )),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Records the Checkout Session made for a payment.
    pub async fn attach_session(
        &self,
        payment_id: PaymentId,
        session_id: String,
        url: Option<String>,
        at: NaiveDateTime,
    ) -> StoreResult<PaymentRow> {
        self.write(move |c| {
            diesel::update(
                payments::table
                    .filter(payments::id.eq(&payment_id))
                    .filter(payments::stripe_session_id.is_null()),
            )
            .set((
                payments::stripe_session_id.eq(Some(&session_id)),
                payments::checkout_url.eq(url),
                payments::updated_at.eq(at),
            ))
            .execute(c)?;
            find(c, &payment_id)?.ok_or(StoreError::NotFound("payment"))
        })
        .await
    }

    pub async fn payment(&self, id: PaymentId) -> StoreResult<Option<PaymentRow>> {
        self.read(move |c| find(c, &id)).await
    }

    /// The contribution of a voucher that is open or processing, if any.
    pub async fn open_contribution(
        &self,
        voucher_id: VoucherId,
    ) -> StoreResult<Option<PaymentRow>> {
        self.read(move |c| {
            Ok(payments::table
                .filter(payments::voucher_id.eq(&voucher_id))
                .filter(payments::kind.eq(PaymentKind::Contribution))
                .filter(payments::status.eq_any(PaymentStatus::IN_FLIGHT))
                .select(PaymentRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    pub async fn payments(&self, f: PaymentFilter) -> StoreResult<Vec<PaymentRow>> {
        self.read(move |c| {
            let mut q = payments::table.into_boxed();
            if let Some(o) = f.owner_id {
                q = q.filter(payments::owner_id.eq(o));
            }
            if let Some(k) = f.kind {
                q = q.filter(payments::kind.eq(k.as_str()));
            }
            if let Some(s) = f.status {
                q = q.filter(payments::status.eq(s));
            }
            if let Some(v) = f.voucher_id {
                q = q.filter(payments::voucher_id.eq(v));
            }
            Ok(q.order((payments::created_at.desc(), payments::id.desc()))
                .limit(f.limit)
                .offset(f.offset)
                .select(PaymentRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// What an organisation's refunds took back from its purchased credit, in micros.
    pub async fn purchased_refunded(&self, owner_id: UserId) -> StoreResult<i64> {
        self.read(move |c| {
            let reversed: Vec<i64> = payments::table
                .filter(payments::owner_id.eq(&owner_id))
                .filter(payments::kind.eq(PaymentKind::TopUp))
                .select(payments::reversed_micros)
                .load(c)?;
            Ok(reversed.iter().sum())
        })
        .await
    }

    /// Sessions of payments still waiting for Stripe's word (reconciliation asks Stripe of
    /// each, however old: a delayed method can take days to clear), at most `limit`.
    pub async fn unsettled_sessions(&self, limit: i64) -> StoreResult<Vec<String>> {
        self.read(move |c| {
            let ids: Vec<Option<String>> = payments::table
                .filter(payments::status.eq_any(PaymentStatus::IN_FLIGHT))
                .filter(payments::stripe_session_id.is_not_null())
                .order(payments::created_at)
                .limit(limit)
                .select(payments::stripe_session_id)
                .load(c)?;
            Ok(ids.into_iter().flatten().collect())
        })
        .await
    }

    /// Applies what Stripe reported, once. With `event`, the event's id is recorded in the
    /// same transaction, and an event seen before is answered [`Applied::Duplicate`]. Also
    /// returns the voucher of a payment that changed (its keys' cached state is stale).
    pub async fn apply_stripe(
        &self,
        fact: StripeFact,
        via: Via,
        event: Option<EventRecord>,
        at: NaiveDateTime,
    ) -> StoreResult<(Applied, Option<VoucherId>)> {
        let result = self
            .write(move |c| {
                if let Some(e) = &event {
                    let seen: i64 = stripe_events::table
                        .filter(stripe_events::id.eq(&e.id))
                        .count()
                        .get_result(c)?;
                    if seen > 0 {
                        return Ok((Applied::Duplicate, None));
                    }
                }
                let (applied, payment_id) = apply(c, &fact, via, at)?;
                let changed_voucher = match (&applied, &payment_id) {
                    (Applied::Changed(_) | Applied::Retry(_), Some(id)) => {
                        find(c, id)?.and_then(|p| p.voucher_id)
                    }
                    _ => None,
                };
                if let (Some(e), false) = (&event, matches!(applied, Applied::Retry(_))) {
                    // A replay racing this one fails here and rolls back: its twin wins.
                    diesel::insert_into(stripe_events::table)
                        .values((
                            stripe_events::id.eq(&e.id),
                            stripe_events::type_.eq(&e.type_),
                            stripe_events::payment_id.eq(payment_id),
                            stripe_events::outcome.eq(applied.outcome()),
                            stripe_events::received_at.eq(at),
                        ))
                        .execute(c)
                        .map_err(|err| {
                            if is_unique_violation(&err) {
                                StoreError::Payment(DUPLICATE_EVENT, e.id.clone())
                            } else {
                                err.into()
                            }
                        })?;
                }
                Ok((applied, changed_voucher))
            })
            .await;
        match result {
            Err(StoreError::Payment(DUPLICATE_EVENT, _)) => Ok((Applied::Duplicate, None)),
            other => other,
        }
    }

    /// Records an event voucherd does not act on, so its replays are recognised too.
    pub async fn record_ignored_event(
        &self,
        event: EventRecord,
        at: NaiveDateTime,
    ) -> StoreResult<Applied> {
        self.write(move |c| {
            let inserted = match c {
                DbConn::Sqlite(s) => diesel::insert_or_ignore_into(stripe_events::table)
                    .values((
                        stripe_events::id.eq(&event.id),
                        stripe_events::type_.eq(&event.type_),
                        stripe_events::outcome.eq(StripeEventOutcome::Ignored),
                        stripe_events::received_at.eq(at),
                    ))
                    .execute(s)?,
                DbConn::Postgresql(pg) => diesel::insert_into(stripe_events::table)
                    .values((
                        stripe_events::id.eq(&event.id),
                        stripe_events::type_.eq(&event.type_),
                        stripe_events::outcome.eq(StripeEventOutcome::Ignored),
                        stripe_events::received_at.eq(at),
                    ))
                    .on_conflict_do_nothing()
                    .execute(pg)?,
            };
            Ok(if inserted == 1 {
                Applied::Unchanged(StripeEventOutcome::Ignored)
            } else {
                Applied::Duplicate
            })
        })
        .await
    }

    /// The processed events of these payments, oldest first, in one query:
    /// (payment id, event id, type, outcome, received).
    #[allow(clippy::type_complexity)]
    pub async fn payment_events(
        &self,
        payment_ids: Vec<PaymentId>,
    ) -> StoreResult<
        Vec<(
            Option<String>,
            String,
            String,
            StripeEventOutcome,
            NaiveDateTime,
        )>,
    > {
        self.read(move |c| {
            Ok(stripe_events::table
                .filter(stripe_events::payment_id.eq_any(&payment_ids))
                .order((stripe_events::received_at, stripe_events::id))
                .select((
                    stripe_events::payment_id,
                    stripe_events::id,
                    stripe_events::type_,
                    stripe_events::outcome,
                    stripe_events::received_at,
                ))
                .load(c)?)
        })
        .await
    }
}

/// Applies one fact inside the caller's transaction; returns what it did and the payment.
fn apply(
    c: &mut DbConn,
    fact: &StripeFact,
    via: Via,
    at: NaiveDateTime,
) -> StoreResult<(Applied, Option<PaymentId>)> {
    match fact {
        StripeFact::Paid {
            payment_id,
            session_id,
            amount_pence,
            currency,
            payment_intent,
        } => {
            let paid = Paid {
                session_id,
                amount_pence: *amount_pence,
                currency,
                payment_intent,
            };
            apply_paid(c, payment_id, &paid, via, at)
        }
        StripeFact::Processing {
            payment_id,
            session_id,
            ..
        }
        | StripeFact::Failed {
            payment_id,
            session_id,
        }
        | StripeFact::Expired {
            payment_id,
            session_id,
        } if on_another_session(c, payment_id, session_id)? => {
            // A session the payment no longer stands on (one abandoned before a retry):
            // what happens to it says nothing of the payment's own.
            Ok((
                Applied::Unchanged(StripeEventOutcome::OtherSession),
                Some(payment_id.clone()),
            ))
        }
        StripeFact::Processing {
            payment_id,
            session_id,
            payment_intent,
        } => apply_processing(c, payment_id, session_id, payment_intent, at),
        StripeFact::Failed { payment_id, .. } => apply_unpaid(c, payment_id, Unpaid::Failed, at),
        StripeFact::Expired { payment_id, .. } => apply_unpaid(c, payment_id, Unpaid::Expired, at),
        StripeFact::Refunded {
            payment_intent,
            payment_id,
            refunded_pence,
        } => apply_refunded(c, payment_intent, payment_id.as_ref(), *refunded_pence, at),
    }
}

/// What Stripe says of a completed checkout session.
struct Paid<'a> {
    session_id: &'a str,
    amount_pence: i64,
    currency: &'a str,
    payment_intent: &'a Option<String>,
}

/// Whether the payment now stands on another checkout session than `session_id`.
fn on_another_session(
    c: &mut DbConn,
    payment_id: &PaymentId,
    session_id: &str,
) -> StoreResult<bool> {
    Ok(find(c, payment_id)?.is_some_and(|p| {
        p.stripe_session_id
            .as_ref()
            .is_some_and(|s| s != session_id)
    }))
}

/// A checkout session paid: the payment is credited once, and only for what was asked.
fn apply_paid(
    c: &mut DbConn,
    payment_id: &PaymentId,
    paid: &Paid<'_>,
    via: Via,
    at: NaiveDateTime,
) -> StoreResult<(Applied, Option<PaymentId>)> {
    let Some(p) = lock(c, payment_id)? else {
        return Ok((Applied::Unchanged(StripeEventOutcome::UnknownPayment), None));
    };
    let id = Some(p.id.clone());
    if paid.amount_pence != p.amount_pence || !paid.currency.eq_ignore_ascii_case(&p.currency) {
        // Never credit other than what was asked: administrators look into it.
        attention(
            c,
            &p,
            "amount-mismatch",
            format!(
                "Stripe reports {} {} paid in session {}, but {} {} was asked; nothing was \
                 credited",
                paid.amount_pence, paid.currency, paid.session_id, p.amount_pence, p.currency
            ),
        )?;
        return Ok((Applied::Unchanged(StripeEventOutcome::AmountMismatch), id));
    }
    let changed = diesel::update(payments::table.filter(payments::id.eq(&p.id)).filter(
        payments::status.eq_any([
            PaymentStatus::Open,
            PaymentStatus::Processing,
            PaymentStatus::Failed,
            PaymentStatus::Expired,
        ]),
    ))
    .set((
        payments::status.eq(PaymentStatus::Paid),
        payments::stripe_session_id.eq(Some(paid.session_id)),
        payments::payment_intent_id.eq(paid.payment_intent),
        payments::paid_at.eq(Some(at)),
        payments::paid_via.eq(Some(via)),
        payments::updated_at.eq(at),
    ))
    .execute(c)?;
    if changed != 1 {
        return Ok((Applied::Unchanged(StripeEventOutcome::AlreadyPaid), id));
    }
    credit(c, &p, at)?;
    Ok((Applied::Changed(StripeEventOutcome::Credited), id))
}

/// A delayed method (a bank debit) accepted but not cleared: the open payment waits.
fn apply_processing(
    c: &mut DbConn,
    payment_id: &PaymentId,
    session_id: &str,
    payment_intent: &Option<String>,
    at: NaiveDateTime,
) -> StoreResult<(Applied, Option<PaymentId>)> {
    let changed = diesel::update(
        payments::table
            .filter(payments::id.eq(payment_id))
            .filter(payments::status.eq(PaymentStatus::Open)),
    )
    .set((
        payments::status.eq(PaymentStatus::Processing),
        payments::stripe_session_id.eq(Some(session_id)),
        payments::payment_intent_id.eq(payment_intent),
        payments::updated_at.eq(at),
    ))
    .execute(c)?;
    let id = find(c, payment_id)?.map(|p| p.id);
    let applied = if changed == 1 {
        Applied::Changed(StripeEventOutcome::Processing)
    } else {
        Applied::Unchanged(StripeEventOutcome::NotOpen)
    };
    Ok((applied, id))
}

/// How a payment ended without being paid.
#[derive(Clone, Copy)]
enum Unpaid {
    /// The bank declined a delayed payment: the owner is told.
    Failed,
    /// The checkout session lapsed unpaid.
    Expired,
}

/// A payment that will not be paid: failed (from open or processing) or expired (from open).
fn apply_unpaid(
    c: &mut DbConn,
    payment_id: &PaymentId,
    how: Unpaid,
    at: NaiveDateTime,
) -> StoreResult<(Applied, Option<PaymentId>)> {
    let (to, from, outcome): (PaymentStatus, &[PaymentStatus], StripeEventOutcome) = match how {
        Unpaid::Failed => (
            PaymentStatus::Failed,
            &PaymentStatus::IN_FLIGHT,
            StripeEventOutcome::Failed,
        ),
        Unpaid::Expired => (
            PaymentStatus::Expired,
            &[PaymentStatus::Open],
            StripeEventOutcome::Expired,
        ),
    };
    let Some(p) = lock(c, payment_id)? else {
        return Ok((Applied::Unchanged(StripeEventOutcome::UnknownPayment), None));
    };
    let changed = diesel::update(
        payments::table
            .filter(payments::id.eq(&p.id))
            .filter(payments::status.eq_any(from)),
    )
    .set((payments::status.eq(to), payments::updated_at.eq(at)))
    .execute(c)?;
    if changed != 1 {
        return Ok((
            Applied::Unchanged(StripeEventOutcome::NotPending),
            Some(p.id),
        ));
    }
    if let Unpaid::Failed = how {
        let email = outbox::user_email(c, &p.owner_id)?;
        outbox::enqueue(
            c,
            Notification {
                dedupe_key: format!("payment-failed:{}", p.id),
                recipient: &email,
                template: "payment_failed",
                data: serde_json::json!({
                    "payment_id": p.id,
                    "amount": format_micros(p.amount_micros),
                    "what": p.what(),
                    "reason": "the bank declined the delayed payment",
                }),
            },
        )?;
    }
    Ok((Applied::Changed(outcome), Some(p.id)))
}

/// A refund made in Stripe's dashboard or through the API, found by its payment intent.
fn apply_refunded(
    c: &mut DbConn,
    payment_intent: &str,
    payment_id: Option<&PaymentId>,
    refunded_pence: i64,
    at: NaiveDateTime,
) -> StoreResult<(Applied, Option<PaymentId>)> {
    let by_intent: Option<PaymentId> = payments::table
        .filter(payments::payment_intent_id.eq(payment_intent))
        .select(payments::id)
        .first(c)
        .optional()?;
    let found = by_intent.or_else(|| payment_id.cloned());
    let Some(p) = (match found {
        Some(id) => lock(c, &id)?,
        None => None,
    }) else {
        // Not a payment of ours, or one whose session reported no intent yet: recorded
        // and acknowledged, as Stripe would otherwise retry it for days.
        return Ok((Applied::Unchanged(StripeEventOutcome::UnknownPayment), None));
    };
    if !matches!(p.status, PaymentStatus::Paid | PaymentStatus::Refunded) {
        // Stripe may deliver the refund before the payment's own event: refused, so
        // Stripe retries it once the payment is known.
        return Err(StoreError::Payment(
            voucherd_domain::ErrorCode::PaymentNotYetKnown,
            format!("payment {} is {}, not paid yet", p.id, p.status),
        ));
    }
    refund(c, &p, refunded_pence, at)
}

/// Moves a paid payment's money into the ledger: Stripe clearing → the organisation's account;
/// a contribution activates its voucher.
fn credit(c: &mut DbConn, p: &PaymentRow, at: NaiveDateTime) -> StoreResult<()> {
    let kind = p.kind;
    ledger::transfer(
        c,
        &TransferRequest {
            id: format!("payment-{}", p.id),
            debit_account_id: STRIPE_CLEARING.into(),
            credit_account_id: p.account_id.clone(),
            amount: money(p.amount_micros)?,
            code: match kind {
                PaymentKind::Contribution => TransferCode::Contribution,
                PaymentKind::TopUp => TransferCode::TopUp,
            },
            memo: format!("{} paid through Stripe, payment {}", p.what(), p.id),
        },
    )?;
    if let (PaymentKind::Contribution, Some(v)) = (kind, &p.voucher_id) {
        activate_contribution(c, p, v, at)?;
    }
    audit::record(
        c,
        AuditEntry {
            actor_id: None,
            action: "payment.paid",
            subject_type: "payment",
            subject_id: p.id.as_str(),
            reason: None,
            details: serde_json::json!({
                "kind": p.kind,
                "amount_micros": p.amount_micros,
                "voucher_id": p.voucher_id,
                "account_id": p.account_id,
            }),
        },
    )?;
    notify_paid(c, p, kind)
}

/// Marks a voucher's contribution paid, which lets it spend; a second payment for one already
/// paid is recorded and put to a person.
fn activate_contribution(
    c: &mut DbConn,
    p: &PaymentRow,
    v: &VoucherId,
    at: NaiveDateTime,
) -> StoreResult<()> {
    let activated = diesel::update(
        vouchers::table
            .filter(vouchers::id.eq(v))
            .filter(vouchers::contribution_paid_at.is_null()),
    )
    .set(vouchers::contribution_paid_at.eq(Some(at)))
    .execute(c)?;
    if activated == 0 {
        // Paid twice (a second session paid after the first): the money is recorded,
        // and a person decides whether to refund it.
        attention(
            c,
            p,
            "paid-twice",
            format!("voucher {v}'s contribution was already paid; consider refunding this one"),
        )?;
    }
    Ok(())
}

/// Tells the payer their payment was received.
fn notify_paid(c: &mut DbConn, p: &PaymentRow, kind: PaymentKind) -> StoreResult<()> {
    let voucher_reference = match &p.voucher_id {
        Some(id) => Some(crate::vouchers::reference_of(c, id)?),
        None => None,
    };
    let email = outbox::user_email(c, &p.owner_id)?;
    outbox::enqueue(
        c,
        Notification {
            dedupe_key: format!("payment-received:{}", p.id),
            recipient: &email,
            template: "payment_received",
            data: serde_json::json!({
                "payment_id": p.id,
                "amount": format_micros(p.amount_micros),
                "what": p.what(),
                "contribution": kind == PaymentKind::Contribution,
                "voucher_id": p.voucher_id,
                "voucher_reference": voucher_reference,
            }),
        },
    )?;
    Ok(())
}

/// Takes back what Stripe refunded, as far as it is unspent. What is held for requests in
/// flight is waited for (the event is answered 409 and Stripe delivers it again); what was
/// already spent is the shortfall, recorded on the payment and sent to administrators.
fn refund(
    c: &mut DbConn,
    p: &PaymentRow,
    refunded_pence: i64,
    at: NaiveDateTime,
) -> StoreResult<(Applied, Option<PaymentId>)> {
    let id = Some(p.id.clone());
    let total = Pence::new(refunded_pence.min(p.amount_pence))
        .map_err(|e| StoreError::Invariant(format!("refunded amount: {e}")))?
        .to_money()
        .micros();
    // `refunded_micros` is what has been dealt with: taken back or recorded as shortfall.
    let delta = total - p.refunded_micros;
    if delta <= 0 {
        return Ok((Applied::Unchanged(StripeEventOutcome::AlreadyRefunded), id));
    }
    let kind = p.kind;
    let totals = ledger::account(c, &p.account_id)?.totals();
    let reverse = delta
        .min(totals.available().max(0))
        .min(p.amount_micros - p.reversed_micros);
    let rest = delta - reverse;
    let waiting = rest > 0 && totals.debits_pending > 0;
    let shortfall = if waiting { 0 } else { rest };
    let dealt = p.refunded_micros + reverse + shortfall;
    take_back(c, p, reverse, shortfall, dealt, at)?;
    let fully = dealt >= p.amount_micros;
    if let (PaymentKind::Contribution, Some(v)) = (kind, &p.voucher_id) {
        contribution_refunded(c, p, v, refunded_pence, delta, fully)?;
    }
    audit::record(
        c,
        AuditEntry {
            actor_id: None,
            action: "payment.refunded",
            subject_type: "payment",
            subject_id: p.id.as_str(),
            reason: None,
            details: serde_json::json!({
                "refunded_micros": total,
                "reversed_micros": reverse,
                "shortfall_micros": shortfall,
                "waiting_micros": if waiting { rest } else { 0 },
            }),
        },
    )?;
    let email = outbox::user_email(c, &p.owner_id)?;
    if !waiting {
        let contribution = kind == PaymentKind::Contribution && fully;
        notify_refunded(c, p, &email, refunded_pence, total, reverse, contribution)?;
    }
    if shortfall > 0 {
        report_shortfall(c, p, &email, refunded_pence, total, reverse, shortfall)?;
    }
    Ok((
        if waiting {
            Applied::Retry(StripeEventOutcome::RefundWaitingOnHolds)
        } else {
            Applied::Changed(StripeEventOutcome::RefundReversed)
        },
        id,
    ))
}

/// Takes back what is unspent of a refund (`reverse_micros`, now) and records on the payment
/// what has been dealt with in all (`dealt_micros`), and what was already spent.
fn take_back(
    c: &mut DbConn,
    p: &PaymentRow,
    reverse_micros: i64,
    shortfall_micros: i64,
    dealt_micros: i64,
    at: NaiveDateTime,
) -> StoreResult<()> {
    if reverse_micros > 0 {
        ledger::transfer(
            c,
            &TransferRequest {
                // Unique per step: what has been dealt with only grows.
                id: format!("refund-{}-{dealt_micros}", p.id),
                debit_account_id: p.account_id.clone(),
                credit_account_id: STRIPE_CLEARING.into(),
                amount: money(reverse_micros)?,
                code: TransferCode::Refund,
                memo: format!("{} refunded through Stripe, payment {}", p.what(), p.id),
            },
        )?;
    }
    diesel::update(payments::table.filter(payments::id.eq(&p.id)))
        .set((
            payments::status.eq(PaymentStatus::Refunded),
            payments::refunded_micros.eq(dealt_micros),
            payments::reversed_micros.eq(payments::reversed_micros + reverse_micros),
            payments::shortfall_micros.eq(payments::shortfall_micros + shortfall_micros),
            payments::updated_at.eq(at),
        ))
        .execute(c)?;
    Ok(())
}

/// A refunded co-funding contribution: paused when refunded in full, and put to a person.
fn contribution_refunded(
    c: &mut DbConn,
    p: &PaymentRow,
    v: &VoucherId,
    refunded_pence: i64,
    delta_micros: i64,
    fully: bool,
) -> StoreResult<()> {
    // Refunded in full, the share is no longer paid: the voucher stops spending until it
    // is paid again. In part, the voucher goes on; either way a person looks at it.
    if fully {
        diesel::update(vouchers::table.filter(vouchers::id.eq(v)))
            .set(vouchers::contribution_paid_at.eq(None::<NaiveDateTime>))
            .execute(c)?;
    }
    attention(
        c,
        p,
        &format!("contribution-refund:{refunded_pence}"),
        format!(
            "£{} of voucher {v}'s co-funding contribution was refunded{}",
            format_micros(delta_micros),
            if fully {
                "; the voucher is paused until the contribution is paid again"
            } else {
                "; the voucher remains active"
            }
        ),
    )?;
    Ok(())
}

/// Tells the payer what of their refund was taken back; `contribution` when a co-funding
/// contribution was refunded in full.
fn notify_refunded(
    c: &mut DbConn,
    p: &PaymentRow,
    email: &str,
    refunded_pence: i64,
    total_micros: i64,
    reverse_micros: i64,
    contribution: bool,
) -> StoreResult<()> {
    let voucher_reference = match &p.voucher_id {
        Some(id) => Some(crate::vouchers::reference_of(c, id)?),
        None => None,
    };
    outbox::enqueue(
        c,
        Notification {
            dedupe_key: format!("payment-refunded:{}:{refunded_pence}", p.id),
            recipient: email,
            template: "payment_refunded",
            data: serde_json::json!({
                "payment_id": p.id,
                "refunded": format_micros(total_micros),
                "reversed": format_micros(p.reversed_micros + reverse_micros),
                "what": p.what(),
                "contribution": contribution,
                "voucher_id": p.voucher_id,
                "voucher_reference": voucher_reference,
            }),
        },
    )?;
    Ok(())
}

/// Tells administrators a refund exceeded the unspent credit, and by how much.
fn report_shortfall(
    c: &mut DbConn,
    p: &PaymentRow,
    email: &str,
    refunded_pence: i64,
    total_micros: i64,
    reverse_micros: i64,
    shortfall_micros: i64,
) -> StoreResult<()> {
    tracing::warn!(payment = %p.id, shortfall_micros, "a refund exceeds the unspent credit");
    outbox::notify_admins(
        c,
        &format!("refund-shortfall:{}:{refunded_pence}", p.id),
        "refund_shortfall",
        serde_json::json!({
            "payment_id": p.id,
            "what": p.what(),
            "owner_email": email,
            "refunded": format_micros(total_micros),
            "reversed": format_micros(p.reversed_micros + reverse_micros),
            "shortfall": format_micros(p.shortfall_micros + shortfall_micros),
        }),
    )?;
    Ok(())
}
