//! Payments through Stripe Checkout: co-funding contributions and top-ups, and the
//! administrators' view of every payment (refund shortfalls included). Amounts go to Stripe in
//! pence and into the ledger in micro-units; `Pence` converts exactly or refuses.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::handlers::Page;
use crate::service::vouchers::visible;
use crate::state::AppState;
use crate::views::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;
use validator::Validate;
use voucherd_domain::money::Amount;
use voucherd_domain::payment::{PaymentKind, Pence, StripeEventOutcome};
use voucherd_domain::ErrorCode;
use voucherd_domain::{Money, PaymentId, PaymentStatus, UserId, VoucherId};
use voucherd_payments::{CheckoutRequest, Stripe};
use voucherd_store::payments::{NewPayment, PaymentFilter, PaymentRow, Via};

pub(crate) fn stripe(state: &AppState) -> Result<Arc<Stripe>, ApiError> {
    state.stripe.clone().ok_or_else(|| ApiError::Disabled {
        code: ErrorCode::PaymentsDisabled,
        detail: "payments are not enabled on this programme: it has no Stripe account configured \
                 (VOUCHERD_STRIPE_SECRET_KEY and VOUCHERD_STRIPE_WEBHOOK_SECRET)"
            .into(),
    })
}

/// A payment through Stripe Checkout: what it is for, how it stands, and what Stripe and
/// refunds did to it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Payment)]
pub struct PaymentView {
    /// Time-ordered UUID (v7), or `topup-<32 hex>` for a top-up made with an
    /// `Idempotency-Key`.
    pub id: PaymentId,
    pub kind: PaymentKind,
    pub status: PaymentStatus,
    /// What is asked, a whole number of pence.
    #[schema(value_type = Money)]
    pub amount: Amount,
    /// The same amount in pence, as Stripe charges it.
    #[schema(minimum = 0, maximum = 99_999_999)]
    pub amount_pence: i64,
    #[schema(examples("GBP"))]
    pub currency: String,
    /// The voucher contributed to, or the voucher the organisation held when it bought the
    /// top-up.
    #[schema(required)]
    pub voucher_id: Option<VoucherId>,
    /// User id of the applicant whose organisation pays.
    pub owner_id: UserId,
    /// Stripe's payment page to send the SME to; set only while the payment is `open` (it is
    /// of no use after).
    #[schema(required)]
    pub checkout_url: Option<String>,
    /// The Checkout Session's id (`cs_…`); null until Stripe has made it.
    #[schema(required)]
    pub stripe_session_id: Option<String>,
    /// When the Checkout page stops being payable.
    #[schema(required)]
    pub expires_at: Option<Timestamp>,
    #[schema(required)]
    pub paid_at: Option<Timestamp>,
    /// How the payment became known to be paid; null until it is.
    #[schema(required)]
    pub paid_via: Option<voucherd_domain::payment::PaidVia>,
    /// Refunded through Stripe in all.
    #[schema(value_type = Money)]
    pub refunded: Amount,
    /// Of the refund, what was taken back from the unspent credit.
    #[schema(value_type = Money)]
    pub reversed: Amount,
    /// Of the refund, what had already been spent or held and could not be taken back;
    /// administrators follow it up.
    #[schema(value_type = Money)]
    pub shortfall: Amount,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl PaymentView {
    pub fn new(p: &PaymentRow) -> PaymentView {
        PaymentView {
            id: p.id.clone(),
            kind: p.kind,
            status: p.status,
            amount: Amount(p.amount_micros),
            amount_pence: p.amount_pence,
            currency: p.currency.to_ascii_uppercase(),
            voucher_id: p.voucher_id.clone(),
            owner_id: p.owner_id.clone(),
            checkout_url: if p.status == PaymentStatus::Open {
                p.checkout_url.clone()
            } else {
                None
            },
            stripe_session_id: p.stripe_session_id.clone(),
            expires_at: p.expires_at.map(Timestamp),
            paid_at: p.paid_at.map(Timestamp),
            paid_via: p.paid_via,
            refunded: Amount(p.refunded_micros),
            reversed: Amount(p.reversed_micros),
            shortfall: Amount(p.shortfall_micros),
            created_at: Timestamp(p.created_at),
            updated_at: Timestamp(p.updated_at),
        }
    }
}

/// The smallest and largest credit top-up bought at once.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = TopUpLimits)]
pub struct TopUpLimitsView {
    pub min: Money,
    pub max: Money,
}

/// Whether payments are on, and the programme's rules for them.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PaymentSettings)]
pub struct SettingsView {
    /// Whether the programme has a Stripe account configured.
    pub enabled: bool,
    #[schema(examples("GBP"))]
    pub currency: &'static str,
    /// The SME's share of each voucher granted, paid before the voucher activates (rounded up
    /// to a whole penny); 0 when the programme asks for none.
    #[schema(maximum = 99)]
    pub co_funding_percent: u8,
    pub top_up: TopUpLimitsView,
}

pub fn settings(state: &AppState) -> SettingsView {
    let p = &state.config.payments;
    SettingsView {
        enabled: state.stripe.is_some(),
        currency: "GBP",
        co_funding_percent: p.co_funding.get(),
        top_up: TopUpLimitsView {
            min: p.top_ups.min(),
            max: p.top_ups.max(),
        },
    }
}

/// Makes (or, after a failed attempt, makes again under the same idempotency key) the
/// payment's Checkout Session.
async fn checkout(
    state: &AppState,
    stripe: &Stripe,
    p: PaymentRow,
    email: String,
) -> Result<PaymentRow, ApiError> {
    if p.stripe_session_id.is_some() {
        return Ok(p);
    }
    let cfg = &state.config.payments;
    let now = state.clock.now();
    // Fixed when the payment was recorded, so a retry sends Stripe the same request. Stripe
    // refuses a session expiring within 30 minutes: such a payment is over, not retried.
    let expires_at = p.expires_at.unwrap_or(now);
    if expires_at < now + chrono::Duration::minutes(31) {
        return Err(ApiError::conflict(
            ErrorCode::PaymentExpired,
            "this payment can no longer be started: start a new one (with a new Idempotency-Key)",
        ));
    }
    let amount = Pence::new(p.amount_pence).map_err(|e| ApiError::Internal(e.to_string()))?;
    let back = |result: &str| {
        let sep = if cfg.return_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}payment={}&result={result}", cfg.return_url, p.id)
    };
    let description = match p.kind {
        PaymentKind::Contribution => format!(
            "Co-funding contribution for AI voucher {}",
            p.voucher_id.as_ref().map_or("", VoucherId::as_str)
        ),
        PaymentKind::TopUp => "AI voucher programme: purchased credit".to_string(),
    };
    let session = stripe
        .create_checkout(&CheckoutRequest {
            payment_id: p.id.clone(),
            description,
            amount,
            customer_email: Some(email),
            success_url: back("success"),
            cancel_url: back("cancelled"),
            expires_at_unix: expires_at.and_utc().timestamp(),
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, payment = %p.id, "creating a Checkout Session failed");
            ApiError::BadGateway(
                "Stripe could not start the payment; retry shortly (with the same Idempotency-Key)"
                    .into(),
            )
        })?;
    Ok(state
        .store
        .attach_session(p.id, session.id, session.url, now)
        .await?)
}

/// Asks Stripe how an open payment stands and records it (an expired session the webhook
/// has not reported yet, say), returning the payment as it is now.
async fn refresh(state: &AppState, stripe: &Stripe, p: PaymentRow) -> Result<PaymentRow, ApiError> {
    let Some(session_id) = &p.stripe_session_id else {
        return Ok(p);
    };
    let session = stripe
        .session(session_id)
        .await
        .map_err(|e| ApiError::BadGateway(format!("Stripe could not be asked: {e}")))?;
    if let Some(fact) = session.fact() {
        let (_, changed_voucher) = state
            .store
            .apply_stripe(fact, Via::Reconciliation, None, state.clock.now())
            .await?;
        if let Some(v) = changed_voucher {
            state.key_cache.forget_voucher(&v);
        }
    }
    state
        .store
        .payment(p.id)
        .await?
        .ok_or(ApiError::NotFound("payment"))
}

/// How a voucher's co-funding contribution stands: `not_required` when the voucher asks for no
/// contribution; `due` until it is paid (and again after its payment is refunded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContributionStatus {
    NotRequired,
    Due,
    Paid,
}

/// A voucher's co-funding contribution and its payments.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Contribution)]
pub struct ContributionView {
    pub voucher_id: VoucherId,
    pub status: ContributionStatus,
    /// The contribution asked for; `0.00` when not required.
    #[schema(value_type = Money)]
    pub amount: Amount,
    #[schema(required)]
    pub paid_at: Option<Timestamp>,
    /// The voucher's contribution payments (at most 20), newest first.
    pub payments: Vec<PaymentView>,
}

/// The co-funding contribution a voucher asks for, and how it stands.
pub async fn contribution(
    state: &AppState,
    user: &AuthUser,
    voucher_id: &VoucherId,
) -> Result<ContributionView, ApiError> {
    let (v, _) = visible(state, user, voucher_id).await?;
    let payments = state
        .store
        .payments(PaymentFilter {
            voucher_id: Some(v.id.clone()),
            kind: Some(PaymentKind::Contribution),
            limit: 20,
            ..Default::default()
        })
        .await?;
    let status = if v.contribution_micros == 0 {
        ContributionStatus::NotRequired
    } else if v.contribution_paid_at.is_some() {
        ContributionStatus::Paid
    } else {
        ContributionStatus::Due
    };
    Ok(ContributionView {
        voucher_id: v.id,
        status,
        amount: Amount(v.contribution_micros),
        paid_at: v.contribution_paid_at.map(Timestamp),
        payments: payments.iter().map(PaymentView::new).collect(),
    })
}

/// A payment started, or one already under way that a repeat found.
#[derive(Debug, Clone)]
pub struct Started {
    pub payment: PaymentView,
    /// Made by this call (201), rather than found in progress (200).
    pub created: bool,
}

/// Starts paying a voucher's contribution: the Checkout page to send the SME to, or the
/// payment already in progress.
pub async fn pay_contribution(
    state: &AppState,
    user: &AuthUser,
    voucher_id: &VoucherId,
) -> Result<Started, ApiError> {
    let stripe = stripe(state)?;
    let (v, _) = visible(state, user, voucher_id).await?;
    if !v.awaiting_contribution() {
        return Err(ApiError::conflict(
            ErrorCode::ContributionNotDue,
            if v.contribution_micros == 0 {
                "this voucher asks for no co-funding contribution"
            } else {
                "this voucher's contribution is already paid"
            },
        ));
    }
    let email = state.store.user(user.id.clone()).await?.email;
    if let Some(open) = state.store.open_contribution(v.id.clone()).await? {
        let now = state.clock.now();
        let open = if open.expires_at.is_some_and(|e| e <= now) {
            refresh(state, &stripe, open).await?
        } else {
            open
        };
        if matches!(open.status, PaymentStatus::Open | PaymentStatus::Processing) {
            let open = checkout(state, &stripe, open, email).await?;
            return Ok(Started {
                payment: PaymentView::new(&open),
                created: false,
            });
        }
    }
    let amount = Pence::exact(
        Money::from_micros(v.contribution_micros).map_err(|e| ApiError::Internal(e.to_string()))?,
    )
    .map_err(|e| ApiError::Internal(format!("contribution of voucher {}: {e}", v.id)))?;
    let p = state
        .store
        .create_payment(new_payment(
            state,
            crate::keys::new_id::<PaymentId>(),
            PaymentKind::Contribution,
            user,
            &v.owner_id,
            &v.id,
            amount,
        ))
        .await?;
    let p = checkout(state, &stripe, p, email).await?;
    Ok(Started {
        payment: PaymentView::new(&p),
        created: true,
    })
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpRequest {
    /// A whole number of pence, between the programme's `top_up.min` and `top_up.max`.
    pub amount: Money,
}

/// Buys credit: the Checkout page. A retry with the same idempotency key returns the same
/// payment; the same key with another amount is refused.
pub async fn create_top_up(
    state: &AppState,
    user: &AuthUser,
    idempotency_key: Option<super::IdempotencyKey>,
    body: TopUpRequest,
) -> Result<Started, ApiError> {
    let stripe = stripe(state)?;
    let pence = state
        .config
        .payments
        .top_ups
        .check(body.amount)
        .map_err(|m| ApiError::field("amount", m))?;
    let vouchers = state.store.vouchers(Some(user.id.clone()), 1, 0).await?;
    let Some((voucher, _)) = vouchers.first() else {
        return Err(ApiError::conflict(
            ErrorCode::NoVoucher,
            "credit can be bought once the organisation holds a voucher",
        ));
    };
    let id = top_up_id(user, idempotency_key);
    let email = state.store.user(user.id.clone()).await?.email;
    let replay = |existing: PaymentRow| replayed(existing, pence, user);
    if let Some(existing) = state.store.payment(id.clone()).await? {
        let p = checkout(state, &stripe, replay(existing)?, email).await?;
        return Ok(Started {
            payment: PaymentView::new(&p),
            created: false,
        });
    }
    let created = state
        .store
        .create_payment(new_payment(
            state,
            id.clone(),
            PaymentKind::TopUp,
            user,
            &user.id,
            &voucher.id,
            pence,
        ))
        .await;
    let (p, created) = match created {
        Ok(p) => (p, true),
        // The same key, sent twice at once: the other request made it.
        Err(voucherd_store::StoreError::Payment(
            voucherd_domain::ErrorCode::PaymentInProgress,
            _,
        )) => {
            let existing = state
                .store
                .payment(id)
                .await?
                .ok_or(ApiError::Unavailable)?;
            (replay(existing)?, false)
        }
        Err(e) => return Err(e.into()),
    };
    let p = checkout(state, &stripe, p, email).await?;
    Ok(Started {
        payment: PaymentView::new(&p),
        created,
    })
}

/// A top-up's payment id: drawn from the buyer and their idempotency key, so a retry finds the
/// same payment, or new without one.
fn top_up_id(user: &AuthUser, idempotency_key: Option<super::IdempotencyKey>) -> PaymentId {
    match idempotency_key {
        Some(k) => PaymentId::new(format!(
            "topup-{}",
            &crate::keys::hash(&format!("{}:{}", user.id, k.as_str()))[..32]
        )),
        None => crate::keys::new_id(),
    }
}

/// The payment a retried top-up made before, refused unless it is the same request: the same
/// amount, by the same buyer.
fn replayed(existing: PaymentRow, pence: Pence, user: &AuthUser) -> Result<PaymentRow, ApiError> {
    if existing.amount_pence != pence.get() || existing.owner_id != user.id {
        return Err(ApiError::conflict(
            ErrorCode::IdempotencyKeyReused,
            "this idempotency key was already used with a different request",
        ));
    }
    Ok(existing)
}

fn new_payment(
    state: &AppState,
    id: PaymentId,
    kind: PaymentKind,
    user: &AuthUser,
    owner_id: &UserId,
    voucher_id: &VoucherId,
    amount: Pence,
) -> NewPayment {
    let at = state.clock.now();
    NewPayment {
        id,
        kind,
        owner_id: owner_id.clone(),
        voucher_id: Some(voucher_id.clone()),
        amount,
        created_by: user.id.clone(),
        at,
        expires_at: at
            + chrono::Duration::minutes(i64::from(state.config.payments.checkout_minutes)),
    }
}

/// The caller's organisation's purchased credit: what it bought, got back, spent and holds.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PurchasedCredit)]
pub struct PurchasedCreditView {
    /// Credit added by paid top-ups.
    #[schema(value_type = Money)]
    pub bought: Amount,
    /// Taken back because Stripe refunded top-ups (their unspent part).
    #[schema(value_type = Money)]
    pub refunded: Amount,
    /// Spent through the proxy.
    #[schema(value_type = Money)]
    pub spent: Amount,
    /// Held for proxied requests in flight.
    #[schema(value_type = Money)]
    pub held: Amount,
    pub available: Amount,
}

/// Top-ups, newest first, with the caller's purchased credit.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = TopUpList)]
pub struct TopUpsView {
    /// The caller's own purchased credit; null for an administrator (who sees everyone's
    /// top-ups).
    #[schema(required)]
    pub purchased_credit: Option<PurchasedCreditView>,
    pub data: Vec<PaymentView>,
}

/// The caller's top-ups and purchased-credit balance (an administrator sees everyone's).
pub async fn list_top_ups(
    state: &AppState,
    user: &AuthUser,
    page: Page,
) -> Result<TopUpsView, ApiError> {
    let owner = (!user.is_admin()).then(|| user.id.clone());
    let rows = state
        .store
        .payments(PaymentFilter {
            owner_id: owner.clone(),
            kind: Some(PaymentKind::TopUp),
            limit: page.limit(),
            offset: page.offset(),
            ..Default::default()
        })
        .await?;
    let purchased_credit = match owner {
        Some(o) => {
            let id = voucherd_store::payments::purchased_account_id(&o);
            let t = match state.store.account(id.clone()).await {
                Ok(a) => a.totals(),
                Err(voucherd_store::StoreError::NotFound(_)) => Default::default(),
                Err(e) => return Err(e.into()),
            };
            let unposted = state.store.unposted_usage(id).await?;
            let refunded = state.store.purchased_refunded(o).await?;
            Some(PurchasedCreditView {
                bought: Amount(t.credits_posted),
                refunded: Amount(refunded),
                spent: Amount(t.debits_posted - refunded + unposted),
                held: Amount(t.debits_pending - unposted),
                available: Amount(t.available()),
            })
        }
        None => None,
    };
    Ok(TopUpsView {
        purchased_credit,
        data: rows.iter().map(PaymentView::new).collect(),
    })
}

/// One top-up (its owner's, or any for an administrator).
pub async fn get_top_up(
    state: &AppState,
    user: &AuthUser,
    id: &str,
) -> Result<PaymentView, ApiError> {
    let p = state
        .store
        .payment(PaymentId::new(id))
        .await?
        .filter(|p| p.kind == PaymentKind::TopUp && (user.is_admin() || p.owner_id == user.id))
        .ok_or(ApiError::NotFound("top-up"))?;
    Ok(PaymentView::new(&p))
}

#[derive(Debug, Default, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct PaymentQuery {
    pub status: Option<PaymentStatus>,
    pub kind: Option<PaymentKind>,
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
    #[validate(range(min = 0, max = 1_000_000, message = "must be between 0 and 1000000"))]
    pub offset: Option<i64>,
}

/// A Stripe event as processed for a payment.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PaymentEvent)]
pub struct PaymentEventView {
    /// Stripe's event id (`evt_…`).
    pub id: String,
    #[serde(rename = "type")]
    #[schema(examples("checkout.session.completed"))]
    pub kind: String,
    pub outcome: StripeEventOutcome,
    pub received_at: Timestamp,
}

fn always_true() -> RefOr<Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .description(Some("Always true."))
        .into()
}

/// The answer to a Stripe webhook that was processed (or seen before).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = StripeWebhookReceipt)]
pub struct WebhookReceipt {
    #[schema(schema_with = always_true)]
    pub received: bool,
    /// Stripe's event id.
    pub event: String,
    pub outcome: StripeEventOutcome,
}

/// A payment with the Stripe events processed for it (oldest first).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PaymentWithEvents)]
pub struct PaymentWithEvents {
    #[serde(flatten)]
    pub payment: PaymentView,
    pub events: Vec<PaymentEventView>,
}

/// Every payment, newest first, with its processed Stripe events: what administrators follow
/// up (refund shortfalls above all).
pub async fn list_payments(
    state: &AppState,
    q: PaymentQuery,
) -> Result<Vec<PaymentWithEvents>, ApiError> {
    let rows = state
        .store
        .payments(PaymentFilter {
            status: q.status,
            kind: q.kind,
            limit: q.limit.unwrap_or(100),
            offset: q.offset.unwrap_or(0),
            ..Default::default()
        })
        .await?;
    let events = state
        .store
        .payment_events(rows.iter().map(|p| p.id.clone()).collect())
        .await?;
    Ok(rows
        .iter()
        .map(|p| PaymentWithEvents {
            payment: PaymentView::new(p),
            events: events
                .iter()
                .filter(|e| e.0.as_deref() == Some(p.id.as_str()))
                .map(|(_, id, kind, outcome, at)| PaymentEventView {
                    id: id.clone(),
                    kind: kind.clone(),
                    outcome: *outcome,
                    received_at: Timestamp(*at),
                })
                .collect(),
        })
        .collect())
}
