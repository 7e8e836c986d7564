//! Payments through Stripe Checkout: co-funding contributions and top-ups, Stripe's webhook,
//! and the administrators' view of every payment (refund shortfalls included). Amounts go to
//! Stripe in pence and into the ledger in micro-units; `Pence` converts exactly or refuses.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::handlers::programme::idempotency_key;
use crate::handlers::vouchers::visible;
use crate::handlers::{query, Page};
use crate::state::AppState;
use crate::views::{opt_time, time};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use std::sync::Arc;
use validator::Validate;
use voucherd_domain::money::format_micros;
use voucherd_domain::payment::{PaymentKind, Pence};
use voucherd_domain::{Money, PaymentStatus};
use voucherd_payments::{CheckoutRequest, Stripe, WebhookRejected};
use voucherd_store::payments::{Applied, EventRecord, NewPayment, PaymentFilter, PaymentRow, Via};

fn stripe(state: &AppState) -> Result<Arc<Stripe>, ApiError> {
    state.stripe.clone().ok_or_else(|| ApiError::Disabled {
        code: "payments_disabled",
        detail: "payments are not enabled on this programme: it has no Stripe account configured \
                 (VOUCHERD_STRIPE_SECRET_KEY and VOUCHERD_STRIPE_WEBHOOK_SECRET)"
            .into(),
    })
}

pub fn payment_json(p: &PaymentRow) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "kind": p.kind,
        "status": p.status,
        "amount": format_micros(p.amount_micros),
        "amount_pence": p.amount_pence,
        "currency": p.currency.to_ascii_uppercase(),
        "voucher_id": p.voucher_id,
        "owner_id": p.owner_id,
        // Only an open session can be paid; its page is of no use after.
        "checkout_url": if p.status == PaymentStatus::Open { p.checkout_url.clone() } else { None },
        "stripe_session_id": p.stripe_session_id,
        "expires_at": opt_time(p.expires_at),
        "paid_at": opt_time(p.paid_at),
        "paid_via": p.paid_via,
        "refunded": format_micros(p.refunded_micros),
        "reversed": format_micros(p.reversed_micros),
        "shortfall": format_micros(p.shortfall_micros),
        "created_at": time(p.created_at),
        "updated_at": time(p.updated_at),
    })
}

/// Whether payments are on, and the programme's rules for them.
pub async fn settings(state: web::Data<AppState>) -> HttpResponse {
    let p = &state.config.payments;
    HttpResponse::Ok().json(serde_json::json!({
        "enabled": state.stripe.is_some(),
        "currency": "GBP",
        "co_funding_percent": p.co_funding.get(),
        "top_up": {"min": p.top_ups.min().to_string(), "max": p.top_ups.max().to_string()},
    }))
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
            "payment_expired",
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
    let description = match p.kind()? {
        PaymentKind::Contribution => format!(
            "Co-funding contribution for AI voucher {}",
            p.voucher_id.as_deref().unwrap_or("")
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

/// The co-funding contribution a voucher asks for, and how it stands.
pub async fn contribution(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (v, _) = visible(&state, &user, path.into_inner()).await?;
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
        "not_required"
    } else if v.contribution_paid_at.is_some() {
        "paid"
    } else {
        "due"
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "voucher_id": v.id,
        "status": status,
        "amount": format_micros(v.contribution_micros),
        "paid_at": opt_time(v.contribution_paid_at),
        "payments": payments.iter().map(payment_json).collect::<Vec<_>>(),
    })))
}

/// Starts paying a voucher's contribution: 201 with the Checkout page to send the SME to, or
/// 200 with the payment already in progress.
pub async fn pay_contribution(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let stripe = stripe(&state)?;
    let (v, _) = visible(&state, &user, path.into_inner()).await?;
    if !v.awaiting_contribution() {
        return Err(ApiError::conflict(
            "contribution_not_due",
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
            refresh(&state, &stripe, open).await?
        } else {
            open
        };
        if matches!(open.status.as_str(), "open" | "processing") {
            let open = checkout(&state, &stripe, open, email).await?;
            return Ok(HttpResponse::Ok().json(payment_json(&open)));
        }
    }
    let amount = Pence::exact(
        Money::from_micros(v.contribution_micros).map_err(|e| ApiError::Internal(e.to_string()))?,
    )
    .map_err(|e| ApiError::Internal(format!("contribution of voucher {}: {e}", v.id)))?;
    let p = state
        .store
        .create_payment(new_payment(
            &state,
            uuid::Uuid::now_v7().to_string(),
            PaymentKind::Contribution,
            &user,
            &v.owner_id,
            &v.id,
            amount,
        ))
        .await?;
    let p = checkout(&state, &stripe, p, email).await?;
    Ok(HttpResponse::Created().json(payment_json(&p)))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct TopUpRequest {
    pub amount: Money,
}

/// Buys credit: 201 with the Checkout page. A retry with the same `Idempotency-Key` returns
/// the same payment (200); the same key with another amount is refused.
pub async fn create_top_up(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    ApiJson(body): ApiJson<TopUpRequest>,
) -> Result<HttpResponse, ApiError> {
    let stripe = stripe(&state)?;
    let pence = state
        .config
        .payments
        .top_ups
        .check(body.amount)
        .map_err(|m| ApiError::field("amount", m))?;
    let vouchers = state.store.vouchers(Some(user.id.clone()), 1, 0).await?;
    let Some((voucher, _)) = vouchers.first() else {
        return Err(ApiError::conflict(
            "no_voucher",
            "credit can be bought once the organisation holds a voucher",
        ));
    };
    let id = match idempotency_key(&req)? {
        Some(k) => format!(
            "topup-{}",
            &crate::keys::hash(&format!("{}:{k}", user.id))[..32]
        ),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let email = state.store.user(user.id.clone()).await?.email;
    let replay = |existing: PaymentRow| {
        if existing.amount_pence != pence.get() || existing.owner_id != user.id {
            return Err(ApiError::conflict(
                "idempotency_key_reused",
                "this idempotency key was already used with a different request",
            ));
        }
        Ok(existing)
    };
    if let Some(existing) = state.store.payment(id.clone()).await? {
        let p = checkout(&state, &stripe, replay(existing)?, email).await?;
        return Ok(HttpResponse::Ok().json(payment_json(&p)));
    }
    let created = state
        .store
        .create_payment(new_payment(
            &state,
            id.clone(),
            PaymentKind::TopUp,
            &user,
            &user.id,
            &voucher.id,
            pence,
        ))
        .await;
    let (p, status) = match created {
        Ok(p) => (p, actix_web::http::StatusCode::CREATED),
        // The same key, sent twice at once: the other request made it.
        Err(voucherd_store::StoreError::Payment("payment_in_progress", _)) => {
            let existing = state
                .store
                .payment(id)
                .await?
                .ok_or(ApiError::Unavailable)?;
            (replay(existing)?, actix_web::http::StatusCode::OK)
        }
        Err(e) => return Err(e.into()),
    };
    let p = checkout(&state, &stripe, p, email).await?;
    Ok(HttpResponse::build(status).json(payment_json(&p)))
}

fn new_payment(
    state: &AppState,
    id: String,
    kind: PaymentKind,
    user: &AuthUser,
    owner_id: &str,
    voucher_id: &str,
    amount: Pence,
) -> NewPayment {
    let at = state.clock.now();
    NewPayment {
        id,
        kind,
        owner_id: owner_id.to_string(),
        voucher_id: Some(voucher_id.to_string()),
        amount,
        created_by: user.id.clone(),
        at,
        expires_at: at
            + chrono::Duration::minutes(i64::from(state.config.payments.checkout_minutes)),
    }
}

/// The caller's top-ups and purchased-credit balance (an administrator sees everyone's).
pub async fn list_top_ups(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page: Page = query(&req)?;
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
    let balance = match owner {
        Some(o) => {
            let id = voucherd_store::payments::purchased_account_id(&o);
            let t = match state.store.account(id.clone()).await {
                Ok(a) => a.totals(),
                Err(voucherd_store::StoreError::NotFound(_)) => Default::default(),
                Err(e) => return Err(e.into()),
            };
            let unposted = state.store.unposted_usage(id).await?;
            let refunded = state.store.purchased_refunded(o).await?;
            serde_json::json!({
                "bought": format_micros(t.credits_posted),
                "refunded": format_micros(refunded),
                "spent": format_micros(t.debits_posted - refunded + unposted),
                "held": format_micros(t.debits_pending - unposted),
                "available": format_micros(t.available()),
            })
        }
        None => serde_json::Value::Null,
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "purchased_credit": balance,
        "data": rows.iter().map(payment_json).collect::<Vec<_>>(),
    })))
}

/// One top-up (its owner's, or any for an administrator).
pub async fn get_top_up(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let p = state
        .store
        .payment(path.into_inner())
        .await?
        .filter(|p| p.kind == "top_up" && (user.is_admin() || p.owner_id == user.id))
        .ok_or(ApiError::NotFound("top-up"))?;
    Ok(HttpResponse::Ok().json(payment_json(&p)))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct PaymentQuery {
    pub status: Option<PaymentStatus>,
    pub kind: Option<PaymentKind>,
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
    #[validate(range(min = 0, max = 1_000_000, message = "must be between 0 and 1000000"))]
    pub offset: Option<i64>,
}

/// Every payment, newest first, with its processed Stripe events: what administrators follow
/// up (refund shortfalls above all).
pub async fn list_payments(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q: PaymentQuery = query(&req)?;
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
    let data: Vec<_> = rows
        .iter()
        .map(|p| {
            let mut j = payment_json(p);
            j["events"] = events
                .iter()
                .filter(|e| e.0.as_deref() == Some(p.id.as_str()))
                .map(|(_, id, kind, outcome, at)| {
                    serde_json::json!({"id": id, "type": kind, "outcome": outcome, "received_at": time(*at)})
                })
                .collect();
            j
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

/// Stripe's webhook: the signature is verified (any configured secret, within the timestamp
/// tolerance) before anything is read; each event takes effect once, and a replay is answered
/// 200 without effect. A refund that arrives before its payment is known is refused with 409,
/// so Stripe delivers it again later.
pub async fn stripe_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let stripe = stripe(&state)?;
    let payload = std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest {
        code: "invalid_payload",
        detail: "the body is not UTF-8".into(),
    })?;
    let signature = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let at = state.clock.now();
    let event = stripe
        .verify(payload, signature, at.and_utc().timestamp())
        .map_err(|e| {
            tracing::warn!(error = %e, "a Stripe webhook was refused");
            ApiError::BadRequest {
                code: match e {
                    WebhookRejected::BadPayload(_) => "invalid_payload",
                    _ => "invalid_signature",
                },
                detail: e.to_string(),
            }
        })?;
    let record = EventRecord {
        id: event.id.clone(),
        type_: event.type_.clone(),
    };
    let (applied, changed_voucher) = match event.fact() {
        Some(fact) => {
            state
                .store
                .apply_stripe(fact, Via::Webhook, Some(record), at)
                .await?
        }
        None => (state.store.record_ignored_event(record, at).await?, None),
    };
    // A payment that activated or paused a voucher, or moved purchased credit, is seen by this
    // instance's proxy at once (other instances within their key cache's second).
    if let Some(v) = changed_voucher {
        state.key_cache.forget_voucher(&v);
    }
    if let Applied::Retry(why) = applied {
        // Done in part; Stripe delivers the event again later for the rest.
        return Err(ApiError::conflict(
            why,
            "part of this refund is held for requests in flight; deliver the event again later",
        ));
    }
    tracing::info!(event = %event.id, kind = %event.type_, outcome = applied.outcome(), "Stripe event");
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "received": true,
        "event": event.id,
        "outcome": applied.outcome(),
    })))
}
