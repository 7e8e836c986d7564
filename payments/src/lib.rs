//! Stripe, behind an interface of the programme's own: Checkout Sessions (create, retrieve,
//! list) and webhook events verified against their signature. Everything Stripe-shaped stays
//! in this crate; the rest of voucherd sees pence, ids and a handful of event kinds.

use std::time::Duration;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionPaymentIntentData, ListCheckoutSession, ProductData,
    RetrieveCheckoutSession,
};
use stripe_checkout::{
    CheckoutSession, CheckoutSessionMode, CheckoutSessionPaymentStatus, CheckoutSessionStatus,
};
use stripe_types::{Currency, RangeQueryTs};
use stripe_webhook::{EventObject, Webhook, WebhookError};
use voucherd_domain::payment::Pence;
use voucherd_domain::PaymentId;
use voucherd_store::payments::StripeFact;

/// The metadata key naming our payment on sessions, payment intents and charges.
pub const PAYMENT_ID_METADATA: &str = "voucherd_payment_id";
/// Sessions read per list call (Stripe's largest page).
const PAGE: i64 = 100;
/// How far back the signature's timestamp may be (Stripe's own default tolerance).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `sk_live_…` or `sk_test_…` (a restricted key with Checkout Sessions write suffices).
    pub secret_key: String,
    /// The endpoint's signing secrets (`whsec_…`). Several while a secret is being rolled:
    /// Stripe then signs with each, and an event verifies against any.
    pub webhook_secrets: Vec<String>,
    /// Another API base (a test double); Stripe's own when `None`.
    pub api_base: Option<String>,
    pub timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("Stripe refused the request: {0}")]
    Refused(String),
    #[error("Stripe could not be reached: {0}")]
    Unreachable(String),
    #[error("Stripe is misconfigured: {0}")]
    Config(String),
}

impl From<stripe::StripeError> for PaymentError {
    fn from(e: stripe::StripeError) -> PaymentError {
        match e {
            stripe::StripeError::Stripe(err, status) => PaymentError::Refused(format!(
                "{status}: {}",
                err.message.as_deref().unwrap_or("no message")
            )),
            stripe::StripeError::ConfigError(m) => PaymentError::Config(m),
            other => PaymentError::Unreachable(other.to_string()),
        }
    }
}

/// Why a webhook was not accepted: the caller answers 400 and changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum WebhookRejected {
    #[error("the Stripe-Signature header is missing")]
    MissingSignature,
    #[error("no signature matches any configured webhook secret")]
    BadSignature,
    #[error("the signature's timestamp is more than {SIGNATURE_TOLERANCE_SECS} s from now")]
    Stale,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("the payload is not a Stripe event: {0}")]
    BadPayload(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Open,
    Complete,
    Expired,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaidStatus {
    Paid,
    Unpaid,
    NoPaymentRequired,
    Other,
}

/// What voucherd needs of a Checkout Session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    /// Our payment id, set when the session was created.
    pub client_reference_id: Option<String>,
    pub status: SessionStatus,
    pub paid: PaidStatus,
    pub amount_total_pence: Option<i64>,
    /// Lower-case ISO code, as Stripe writes it (`gbp`).
    pub currency: Option<String>,
    pub payment_intent: Option<String>,
    pub url: Option<String>,
    pub created_unix: i64,
    pub expires_at_unix: i64,
}

impl From<&CheckoutSession> for Session {
    fn from(s: &CheckoutSession) -> Session {
        Session {
            id: s.id.as_str().to_string(),
            client_reference_id: s.client_reference_id.clone(),
            status: match s.status {
                Some(CheckoutSessionStatus::Open) => SessionStatus::Open,
                Some(CheckoutSessionStatus::Complete) => SessionStatus::Complete,
                Some(CheckoutSessionStatus::Expired) => SessionStatus::Expired,
                _ => SessionStatus::Other,
            },
            paid: match s.payment_status {
                CheckoutSessionPaymentStatus::Paid => PaidStatus::Paid,
                CheckoutSessionPaymentStatus::Unpaid => PaidStatus::Unpaid,
                CheckoutSessionPaymentStatus::NoPaymentRequired => PaidStatus::NoPaymentRequired,
                _ => PaidStatus::Other,
            },
            amount_total_pence: s.amount_total,
            currency: s.currency.as_ref().map(|c| c.to_string()),
            payment_intent: s
                .payment_intent
                .as_ref()
                .map(|p| p.id().as_str().to_string()),
            url: s.url.clone(),
            created_unix: s.created,
            expires_at_unix: s.expires_at,
        }
    }
}

/// The events voucherd acts on; everything else is acknowledged and ignored.
#[derive(Debug, Clone)]
pub enum EventKind {
    /// `checkout.session.completed`: paid by card now, or (unpaid) awaiting a delayed method.
    SessionCompleted(Session),
    /// `checkout.session.async_payment_succeeded`: a delayed method cleared.
    AsyncPaymentSucceeded(Session),
    /// `checkout.session.async_payment_failed`: a delayed method failed.
    AsyncPaymentFailed(Session),
    /// `checkout.session.expired`: never paid.
    SessionExpired(Session),
    /// `charge.refunded`: `amount_refunded_pence` is the charge's refunded total so far.
    ChargeRefunded {
        payment_intent: Option<String>,
        /// Our payment, from the charge's metadata (copied from the payment intent's).
        payment_id: Option<String>,
        amount_refunded_pence: i64,
        currency: String,
    },
    Ignored,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub type_: String,
    pub kind: EventKind,
}

/// A payment to take through Checkout.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    /// Our payment id: the session's client reference and the request's idempotency key, so
    /// a retried create never makes a second session.
    pub payment_id: PaymentId,
    /// What the SME sees on Stripe's page.
    pub description: String,
    pub amount: Pence,
    pub customer_email: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    pub expires_at_unix: i64,
}

pub struct Stripe {
    client: Client,
    webhook_secrets: Vec<String>,
}

impl Stripe {
    pub fn new(config: &StripeConfig) -> Result<Stripe, PaymentError> {
        if config.webhook_secrets.is_empty() {
            return Err(PaymentError::Config(
                "at least one webhook signing secret is needed".into(),
            ));
        }
        let mut builder = ClientBuilder::new(config.secret_key.clone())
            .timeout(Duration::from_millis(config.timeout_ms))
            .app_info("voucherd", Some(env!("CARGO_PKG_VERSION").into()), None);
        if let Some(base) = &config.api_base {
            builder = builder.url(base.clone());
        }
        Ok(Stripe {
            client: builder.build()?,
            webhook_secrets: config.webhook_secrets.clone(),
        })
    }

    pub async fn create_checkout(&self, req: &CheckoutRequest) -> Result<Session, PaymentError> {
        let mut price = CreateCheckoutSessionLineItemsPriceData::new(Currency::GBP);
        price.unit_amount = Some(req.amount.get());
        price.product_data = Some(ProductData::new(req.description.clone()));
        let mut line = CreateCheckoutSessionLineItems::new();
        line.price_data = Some(price);
        line.quantity = Some(1);
        let tag = std::collections::HashMap::from([(
            PAYMENT_ID_METADATA.to_string(),
            req.payment_id.to_string(),
        )]);
        // Also on the payment intent, whence Stripe copies it onto the charge: a refund then
        // names our payment even when it arrives before the payment's own event.
        let mut intent = CreateCheckoutSessionPaymentIntentData::new();
        intent.metadata = Some(tag.clone());
        let mut create = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .line_items(vec![line])
            .client_reference_id(req.payment_id.to_string())
            .metadata(tag)
            .payment_intent_data(intent)
            .success_url(req.success_url.clone())
            .cancel_url(req.cancel_url.clone())
            .expires_at(req.expires_at_unix);
        if let Some(email) = &req.customer_email {
            create = create.customer_email(email.clone());
        }
        let key = IdempotencyKey::new(format!("voucherd-checkout-{}", req.payment_id))
            .map_err(|e| PaymentError::Config(e.to_string()))?;
        let session = create
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await?;
        Ok(Session::from(&session))
    }

    pub async fn session(&self, id: &str) -> Result<Session, PaymentError> {
        let s = RetrieveCheckoutSession::new(id).send(&self.client).await?;
        Ok(Session::from(&s))
    }

    /// Sessions created at or after `since_unix`, newest first, at most `max`.
    pub async fn sessions_since(
        &self,
        since_unix: i64,
        max: usize,
    ) -> Result<Vec<Session>, PaymentError> {
        let mut out: Vec<Session> = Vec::new();
        loop {
            let mut list = ListCheckoutSession::new()
                .created(RangeQueryTs::gte(since_unix))
                .limit(PAGE);
            if let Some(last) = out.last() {
                list = list.starting_after(last.id.clone());
            }
            let page = list.send(&self.client).await?;
            out.extend(page.data.iter().map(Session::from));
            if !page.has_more || page.data.is_empty() || out.len() >= max {
                out.truncate(max);
                return Ok(out);
            }
        }
    }

    /// Verifies a webhook's `Stripe-Signature` against every configured secret and parses
    /// its event. `now_unix` is the programme clock, against which the timestamp's tolerance
    /// is measured.
    pub fn verify(
        &self,
        payload: &str,
        signature: Option<&str>,
        now_unix: i64,
    ) -> Result<Event, WebhookRejected> {
        let signature = signature.ok_or(WebhookRejected::MissingSignature)?;
        let mut rejected = WebhookRejected::BadSignature;
        for secret in &self.webhook_secrets {
            match Webhook::construct_event_with_timestamp(payload, signature, secret, now_unix) {
                Ok(event) => return Ok(convert(event)),
                Err(WebhookError::BadSignature) | Err(WebhookError::BadKey) => {}
                Err(WebhookError::BadTimestamp(_)) => rejected = WebhookRejected::Stale,
                Err(WebhookError::BadHeader(_)) => return Err(WebhookRejected::Malformed),
                Err(WebhookError::BadParse(m)) => return Err(WebhookRejected::BadPayload(m)),
            }
        }
        Err(rejected)
    }
}

fn convert(event: stripe_webhook::Event) -> Event {
    let kind = match &event.data.object {
        EventObject::CheckoutSessionCompleted(s) => {
            EventKind::SessionCompleted(Session::from(&**s))
        }
        EventObject::CheckoutSessionAsyncPaymentSucceeded(s) => {
            EventKind::AsyncPaymentSucceeded(Session::from(&**s))
        }
        EventObject::CheckoutSessionAsyncPaymentFailed(s) => {
            EventKind::AsyncPaymentFailed(Session::from(&**s))
        }
        EventObject::CheckoutSessionExpired(s) => EventKind::SessionExpired(Session::from(&**s)),
        EventObject::ChargeRefunded(c) => EventKind::ChargeRefunded {
            payment_intent: c
                .payment_intent
                .as_ref()
                .map(|p| p.id().as_str().to_string()),
            payment_id: c.metadata.get(PAYMENT_ID_METADATA).cloned(),
            amount_refunded_pence: c.amount_refunded,
            currency: c.currency.to_string(),
        },
        _ => EventKind::Ignored,
    };
    Event {
        id: event.id.as_str().to_string(),
        type_: event.type_.as_str().to_string(),
        kind,
    }
}

impl Session {
    /// What this session says of its payment, if it is one of ours and says anything yet.
    pub fn fact(&self) -> Option<StripeFact> {
        let payment_id = PaymentId::new(self.client_reference_id.clone()?);
        match (self.status, self.paid) {
            (_, PaidStatus::Paid) | (SessionStatus::Complete, PaidStatus::NoPaymentRequired) => {
                Some(StripeFact::Paid {
                    payment_id,
                    session_id: self.id.clone(),
                    amount_pence: self.amount_total_pence.unwrap_or(0),
                    currency: self.currency.clone().unwrap_or_default(),
                    payment_intent: self.payment_intent.clone(),
                })
            }
            (SessionStatus::Complete, _) => Some(StripeFact::Processing {
                payment_id,
                session_id: self.id.clone(),
                payment_intent: self.payment_intent.clone(),
            }),
            (SessionStatus::Expired, _) => Some(StripeFact::Expired {
                payment_id,
                session_id: self.id.clone(),
            }),
            _ => None,
        }
    }
}

impl Event {
    /// What this event says of a payment; `None` for events voucherd does not act on.
    pub fn fact(&self) -> Option<StripeFact> {
        match &self.kind {
            EventKind::SessionCompleted(s) | EventKind::AsyncPaymentSucceeded(s) => s.fact(),
            EventKind::AsyncPaymentFailed(s) => Some(StripeFact::Failed {
                payment_id: PaymentId::new(s.client_reference_id.clone()?),
                session_id: s.id.clone(),
            }),
            EventKind::SessionExpired(s) => Some(StripeFact::Expired {
                payment_id: PaymentId::new(s.client_reference_id.clone()?),
                session_id: s.id.clone(),
            }),
            EventKind::ChargeRefunded {
                payment_intent,
                payment_id,
                amount_refunded_pence,
                ..
            } => Some(StripeFact::Refunded {
                payment_intent: payment_intent.clone()?,
                payment_id: payment_id.clone().map(PaymentId::new),
                refunded_pence: *amount_refunded_pence,
            }),
            EventKind::Ignored => None,
        }
    }
}
