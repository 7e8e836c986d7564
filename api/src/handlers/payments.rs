//! Payments over HTTP: adapters over [`crate::service::payments`], and Stripe's webhook.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::handlers::programme::idempotency_key;
use crate::handlers::{query, Page};
use crate::service::payments::{self as service, stripe};
pub use crate::service::payments::{PaymentQuery, TopUpRequest};
use crate::state::AppState;
use crate::views::List;
use actix_web::{web, HttpRequest, HttpResponse};
use voucherd_domain::{ErrorCode, VoucherId};
use voucherd_payments::WebhookRejected;
use voucherd_store::payments::{Applied, EventRecord, Via};

/// Whether payments are on, and the programme's rules for them.
pub async fn settings(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(service::settings(&state))
}

/// 201 with a payment this call made, 200 with one already under way.
fn started(s: service::Started) -> HttpResponse {
    if s.created {
        HttpResponse::Created().json(s.payment)
    } else {
        HttpResponse::Ok().json(s.payment)
    }
}

/// The co-funding contribution a voucher asks for, and how it stands.
pub async fn contribution(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let voucher_id = VoucherId::new(path.into_inner());
    Ok(HttpResponse::Ok().json(service::contribution(&state, &user, &voucher_id).await?))
}

/// Starts paying a voucher's contribution: 201 with the Checkout page to send the SME to, or
/// 200 with the payment already in progress.
pub async fn pay_contribution(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let voucher_id = VoucherId::new(path.into_inner());
    Ok(started(
        service::pay_contribution(&state, &user, &voucher_id).await?,
    ))
}

/// Buys credit: 201 with the Checkout page. A retry with the same `Idempotency-Key` returns
/// the same payment (200); the same key with another amount is refused.
pub async fn create_top_up(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    ApiJson(body): ApiJson<TopUpRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    Ok(started(
        service::create_top_up(&state, &user, key, body).await?,
    ))
}

/// The caller's top-ups and purchased-credit balance (an administrator sees everyone's).
pub async fn list_top_ups(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page: Page = query(&req)?;
    Ok(HttpResponse::Ok().json(service::list_top_ups(&state, &user, page).await?))
}

/// One top-up (its owner's, or any for an administrator).
pub async fn get_top_up(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::get_top_up(&state, &user, &path).await?))
}

/// Every payment, newest first, with its processed Stripe events.
pub async fn list_payments(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q: PaymentQuery = query(&req)?;
    let data = service::list_payments(&state, q).await?;
    Ok(HttpResponse::Ok().json(List { data }))
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
        code: ErrorCode::InvalidPayload,
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
                    WebhookRejected::BadPayload(_) => ErrorCode::InvalidPayload,
                    _ => ErrorCode::InvalidSignature,
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
    if let Applied::Retry(_) = applied {
        // Done in part; Stripe delivers the event again later for the rest.
        return Err(ApiError::conflict(
            ErrorCode::RefundWaitingOnHolds,
            "part of this refund is held for requests in flight; deliver the event again later",
        ));
    }
    tracing::info!(event = %event.id, kind = %event.type_, outcome = %applied.outcome(), "Stripe event");
    Ok(
        HttpResponse::Ok().json(crate::service::payments::WebhookReceipt {
            received: true,
            event: event.id,
            outcome: applied.outcome(),
        }),
    )
}
