//! A fake of the Stripe API, behaving like the real one for what voucherd relies on: it
//! authenticates with its own secret key, creates Checkout Sessions from the form-encoded
//! parameters async-stripe sends, retrieves and lists them, honours `Idempotency-Key` as Stripe
//! does, answers mistakes with Stripe's error shapes and renders objects as API version
//! `2026-09-30.endive` does (the version async-stripe 1.0.0-rc.10 is generated from, so its
//! deserialisers accept them). Tests play the customer on Stripe's page (`pay`,
//! `complete_unpaid`, `settle_async`, `expire`) and build the webhook events Stripe would then
//! send, signed as Stripe signs them. It records what it received.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// The secret key the fake accepts (`Authorization: Bearer …`); anything else gets Stripe's 401 error body.
pub const SECRET_KEY: &str = "sk_test_voucherd_fake";
pub const WEBHOOK_SECRET: &str = "whsec_voucherd_test_secret";
/// The version objects and events are rendered in: async-stripe rc.10's own. A request's
/// `Stripe-Version` is echoed back but changes no shape.
pub const API_VERSION: &str = "2026-09-30.endive";

/// What Stripe keeps about a session besides the object it shows.
struct Session {
    object: Value,
    /// `payment_intent_data[metadata]`: it goes on the PaymentIntent, not the session, and Stripe
    /// copies it onto the Charge the PaymentIntent creates.
    payment_intent_metadata: Map<String, Value>,
    payment_intent_description: Option<String>,
    /// Set once the customer has paid (or, by debit, promised to).
    payment: Option<Payment>,
}

/// The payment behind a completed session: ids fixed when it was made, so that every rendering
/// of its Charge is the same Charge.
struct Payment {
    /// "card" or "bacs_debit": it shapes the Charge.
    method: &'static str,
    charge: String,
    payment_method: String,
    balance_transaction: String,
    mandate: String,
    at: i64,
}

/// A request Stripe answered under an idempotency key, replayed verbatim when the key comes back.
struct Saved {
    path: String,
    body: String,
    status: u16,
    response: String,
}

#[derive(Default)]
struct State {
    /// Oldest first.
    sessions: Vec<Session>,
    idempotency: HashMap<String, Saved>,
    requests: Vec<(String, String, String, Option<String>)>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Where Stripe's hosted page sends its webhook once the customer pays there (the
    /// endpoint configured in Stripe's dashboard); `None` until a test sets it.
    webhook_url: Mutex<Option<String>>,
}

pub struct FakeStripe {
    /// The base URL to give `stripe::ClientBuilder::url`: async-stripe appends `v1/…` to it
    /// as text (`format!("{base}v1{path}")`), hence the trailing slash.
    pub url: String,
    shared: Arc<Shared>,
}

impl FakeStripe {
    /// Starts the fake on 127.0.0.1:0 (needs a running Tokio runtime).
    pub fn start() -> FakeStripe {
        let shared = Arc::new(Shared::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .route("/v1/checkout/sessions", web::post().to(create_session))
                .route("/v1/checkout/sessions", web::get().to(list_sessions))
                .route(
                    "/v1/checkout/sessions/{id}",
                    web::get().to(retrieve_session),
                )
                .route(
                    "/v1/checkout/sessions/{id}/expire",
                    web::post().to(expire_session),
                )
                .route("/c/pay/{id}", web::get().to(hosted_page))
                .route("/c/pay/{id}", web::post().to(hosted_pay))
                .default_service(web::to(unrecognized))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        FakeStripe {
            url: format!("http://127.0.0.1:{port}/"),
            shared,
        }
    }

    /// Every Checkout Session created so far, as Stripe returns it, oldest first.
    pub fn sessions(&self) -> Vec<Value> {
        let state = self.shared.state.lock().unwrap();
        state.sessions.iter().map(|s| s.object.clone()).collect()
    }

    pub fn session(&self, id: &str) -> Value {
        self.update(id, |_| {})
    }

    /// The customer pays by card: status "complete", payment_status "paid", a PaymentIntent.
    pub fn pay(&self, id: &str) -> Value {
        self.update(id, |s| {
            assert_eq!(
                s.object["status"], "open",
                "only an open session can be paid"
            );
            complete(s, "card");
            s.object["payment_status"] = json!("paid");
        })
    }

    /// The customer chose a delayed method (Bacs Direct Debit): the session completes while
    /// its payment_status stays "unpaid" until the debit clears (`settle_async`) or fails (the
    /// session then stays as it is; Stripe only sends `checkout.session.async_payment_failed`).
    pub fn complete_unpaid(&self, id: &str) -> Value {
        self.update(id, |s| {
            assert_eq!(
                s.object["status"], "open",
                "only an open session can complete"
            );
            complete(s, "bacs_debit");
        })
    }

    /// A delayed payment clears: payment_status becomes "paid".
    pub fn settle_async(&self, id: &str) -> Value {
        self.update(id, |s| {
            assert_eq!(
                s.object["status"], "complete",
                "the session must be complete"
            );
            assert_eq!(
                s.object["payment_status"], "unpaid",
                "the payment already cleared"
            );
            s.object["payment_status"] = json!("paid");
        })
    }

    /// The session expires unpaid: status "expired", and its URL stops working.
    pub fn expire(&self, id: &str) -> Value {
        self.update(id, |s| {
            assert_eq!(
                s.object["status"], "open",
                "only an open session can expire"
            );
            expire(s);
        })
    }

    /// The Charge of the session's payment as Stripe renders it (in `charge.refunded` events)
    /// once `amount_refunded_pence` in total has been refunded.
    pub fn refunded_charge(&self, session_id: &str, amount_refunded_pence: i64) -> Value {
        let mut charge = Value::Null;
        self.update(session_id, |s| {
            charge = charge_object(s, amount_refunded_pence)
        });
        charge
    }

    /// Sends the events of payments made on the hosted page (`/c/pay/{id}`) to `url`, signed
    /// with `WEBHOOK_SECRET`, as Stripe does for an endpoint configured in its dashboard.
    pub fn deliver_webhooks_to(&self, url: &str) {
        *self.shared.webhook_url.lock().unwrap() = Some(url.to_string());
    }

    /// A whole event payload, exactly as Stripe POSTs it, with a fresh event id.
    pub fn event(&self, type_: &str, object: Value) -> String {
        event_payload(type_, object)
    }

    /// Every request received: (method, path with its query as sent, i.e. percent-encoded,
    /// body text, `Idempotency-Key`). `decode_form` reads queries and bodies.
    pub fn requests(&self) -> Vec<(String, String, String, Option<String>)> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Session)) -> Value {
        let mut state = self.shared.state.lock().unwrap();
        let session = state
            .sessions
            .iter_mut()
            .find(|s| s.object["id"] == id)
            .unwrap_or_else(|| panic!("no Checkout Session {id}"));
        f(session);
        session.object.clone()
    }
}

/// A whole event payload, exactly as Stripe POSTs it, with a fresh event id.
fn event_payload(type_: &str, object: Value) -> String {
    let event = json!({
        "id": random_id("evt_1", 23),
        "object": "event",
        "api_version": API_VERSION,
        "created": now(),
        "data": {"object": object},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": type_,
    });
    serde_json::to_string_pretty(&event).unwrap()
}

/// Stripe's hosted payment page, reduced to what a customer does there: see the amount and
/// pay by card. (Real sessions point at checkout.stripe.com; a browser test routes that
/// address here.)
async fn hosted_page(shared: web::Data<Shared>, id: web::Path<String>) -> HttpResponse {
    let state = shared.state.lock().unwrap();
    let Some(s) = state
        .sessions
        .iter()
        .find(|s| s.object["id"] == id.as_str())
    else {
        return HttpResponse::NotFound().body("no such Checkout Session");
    };
    if s.object["status"] != "open" {
        return HttpResponse::Gone().body("this Checkout Session is no longer open");
    }
    let pence = s.object["amount_total"].as_i64().unwrap_or(0);
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><title>Stripe Checkout (test)</title></head><body>\
         <main><h1>Pay £{}.{:02}</h1><form method=\"post\"><button type=\"submit\">Pay</button></form></main>\
         </body></html>",
        pence / 100,
        pence % 100
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html)
}

/// The customer pays by card on the hosted page: the session completes and is paid, Stripe
/// sends `checkout.session.completed` to the webhook endpoint, and the browser goes to the
/// session's `success_url`.
async fn hosted_pay(shared: web::Data<Shared>, id: web::Path<String>) -> HttpResponse {
    let object = {
        let mut state = shared.state.lock().unwrap();
        let Some(s) = state
            .sessions
            .iter_mut()
            .find(|s| s.object["id"] == id.as_str() && s.object["status"] == "open")
        else {
            return HttpResponse::Gone().body("this Checkout Session is no longer open");
        };
        complete(s, "card");
        s.object["payment_status"] = json!("paid");
        s.object.clone()
    };
    let target = shared.webhook_url.lock().unwrap().clone();
    if let Some(url) = target {
        let payload = event_payload("checkout.session.completed", object.clone());
        let delivered = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("Stripe-Signature", sign(&payload, WEBHOOK_SECRET, now()))
            .body(payload)
            .send()
            .await;
        // Stripe retries a failed delivery later; a test would see the payment missing.
        if !delivered.is_ok_and(|r| r.status().is_success()) {
            return HttpResponse::BadGateway().body("the webhook endpoint refused the event");
        }
    }
    let success = object["success_url"].as_str().unwrap_or("/").replace(
        "{CHECKOUT_SESSION_ID}",
        object["id"].as_str().unwrap_or_default(),
    );
    HttpResponse::SeeOther()
        .insert_header(("Location", success))
        .finish()
}

/// The `Stripe-Signature` header value Stripe would send for `payload`.
pub fn sign(payload: &str, secret: &str, timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    let v1 = hex::encode(mac.finalize().into_bytes());
    format!("t={timestamp},v1={v1}")
}

/// A form body or query string as (name, value) pairs, names decoded
/// (`line_items[0][quantity]`, not `line_items%5B0%5D%5Bquantity%5D`).
pub fn decode_form(text: &str) -> Vec<(String, String)> {
    web::Query::<Vec<(String, String)>>::from_query(text)
        .unwrap()
        .into_inner()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An id the way Stripe makes them: a prefix and base-62 characters.
fn random_id(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = String::from(prefix);
    while id.len() < prefix.len() + len {
        let mut n = uuid::Uuid::new_v4().as_u128();
        for _ in 0..20 {
            id.push(ALPHABET[(n % 62) as usize] as char);
            n /= 62;
        }
    }
    id.truncate(prefix.len() + len);
    id
}

fn complete(s: &mut Session, method: &'static str) {
    let email = s.object["customer_email"]
        .as_str()
        .unwrap_or("jenny.rosen@example.com")
        .to_string();
    s.object["status"] = json!("complete");
    s.object["url"] = Value::Null;
    s.object["payment_intent"] = json!(random_id("pi_3", 23));
    s.object["customer_details"] = json!({
        "address": {"city": null, "country": "GB", "line1": null, "line2": null,
                    "postal_code": "SW1A 1AA", "state": null},
        "business_name": null, "email": email, "individual_name": null, "name": "Jenny Rosen",
        "phone": null, "tax_exempt": "none", "tax_ids": [],
    });
    s.object["collected_information"] =
        json!({"business_name": null, "individual_name": null, "shipping_details": null});
    s.payment = Some(Payment {
        method,
        charge: random_id("ch_3", 23),
        payment_method: random_id("pm_1", 23),
        balance_transaction: random_id("txn_3", 23),
        mandate: random_id("mandate_1", 23),
        at: now(),
    });
}

fn expire(s: &mut Session) {
    s.object["status"] = json!("expired");
    s.object["url"] = Value::Null;
}

fn charge_object(s: &Session, amount_refunded: i64) -> Value {
    let session = &s.object;
    let Some(payment) = &s.payment else {
        panic!(
            "session {} has no payment: pay or complete_unpaid it first",
            session["id"]
        );
    };
    assert_eq!(
        session["payment_status"], "paid",
        "Stripe refunds only payments that succeeded: settle_async it first"
    );
    let method = payment.method;
    let amount = session["amount_total"].as_i64().unwrap();
    assert!(
        (0..=amount).contains(&amount_refunded),
        "refunded {amount_refunded} of {amount}"
    );
    let email = &session["customer_details"]["email"];
    let details = if method == "card" {
        json!({"card": {
            "amount_authorized": amount, "authorization_code": "831000", "brand": "visa",
            "checks": {"address_line1_check": null, "address_postal_code_check": "pass", "cvc_check": "pass"},
            "country": "GB", "exp_month": 12, "exp_year": 2030,
            "extended_authorization": {"status": "disabled"}, "fingerprint": "Xt5EWLLDS7FJjR1c",
            "funding": "credit", "incremental_authorization": {"status": "unavailable"},
            "installments": null, "last4": "4242", "mandate": null,
            "multicapture": {"status": "unavailable"}, "network": "visa",
            "network_token": {"used": false}, "network_transaction_id": "104557651805572",
            "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
            "regulated_status": "unregulated", "three_d_secure": null, "wallet": null}, "type": "card"})
    } else {
        json!({"bacs_debit": {"expected_debit_date": null, "fingerprint": "PtqAvWVTtdUvJ3bB",
            "last4": "2345", "mandate": payment.mandate, "sort_code": "108800"},
            "type": "bacs_debit"})
    };
    // In parts: one `json!` this size would exceed the default macro recursion limit.
    merge([
        json!({
            "id": payment.charge, "object": "charge",
            "amount": amount, "amount_captured": amount, "amount_refunded": amount_refunded,
            "application": null, "application_fee": null, "application_fee_amount": null,
            "balance_transaction": payment.balance_transaction,
            "billing_details": {
                "address": {"city": null, "country": "GB", "line1": null, "line2": null,
                            "postal_code": "SW1A 1AA", "state": null},
                "email": email, "name": "Jenny Rosen", "phone": null, "tax_id": null},
            "calculated_statement_descriptor": "VOUCHERD",
            "captured": true, "created": payment.at, "currency": session["currency"],
            "customer": null, "description": s.payment_intent_description, "disputed": false,
        }),
        json!({
            "failure_balance_transaction": null, "failure_code": null, "failure_message": null,
            "fraud_details": {}, "livemode": false, "metadata": s.payment_intent_metadata,
            "on_behalf_of": null,
            "outcome": {"advice_code": null, "network_advice_code": null, "network_decline_code": null,
                "network_status": "approved_by_network", "reason": null,
                "risk_level": if method == "card" { "normal" } else { "not_assessed" },
                "risk_score": if method == "card" { json!(17) } else { Value::Null },
                "seller_message": "Payment complete.", "type": "authorized"},
        }),
        json!({
            "paid": true, "payment_intent": session["payment_intent"],
            "payment_method": payment.payment_method, "payment_method_details": details,
            "radar_options": {}, "receipt_email": null, "receipt_number": null,
            "receipt_url": format!("https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8{}", payment.charge),
            "refunded": amount_refunded == amount,
            "review": null, "shipping": null, "source": null, "source_transfer": null,
            "statement_descriptor": null, "statement_descriptor_suffix": null, "status": "succeeded",
            "transfer_data": null, "transfer_group": null,
        }),
    ])
}

fn merge<const N: usize>(parts: [Value; N]) -> Value {
    let mut object = Map::new();
    for part in parts {
        let Value::Object(fields) = part else {
            unreachable!()
        };
        object.extend(fields);
    }
    Value::Object(object)
}

/// A Stripe error: its status and the body Stripe sends with it.
struct Failure(u16, Value);

impl Failure {
    fn respond(self, req: &HttpRequest) -> HttpResponse {
        respond(self.0, self.1.to_string(), req)
    }
}

fn failure(
    status: u16,
    type_: &str,
    code: Option<&str>,
    message: String,
    param: Option<&str>,
) -> Failure {
    let mut error = json!({"message": message, "type": type_,
        "request_log_url": format!("https://dashboard.stripe.com/test/logs/{}", random_id("req_", 14))});
    if let Some(code) = code {
        error["code"] = json!(code);
        error["doc_url"] = json!(format!(
            "https://stripe.com/docs/error-codes/{}",
            code.replace('_', "-")
        ));
    }
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    Failure(status, json!({ "error": error }))
}

fn malformed(message: String) -> Failure {
    failure(400, "invalid_request_error", None, message, None)
}

fn invalid(param: &str, message: String) -> Failure {
    failure(400, "invalid_request_error", None, message, Some(param))
}

fn missing(param: &str) -> Failure {
    failure(
        400,
        "invalid_request_error",
        Some("parameter_missing"),
        format!("Missing required param: {param}."),
        Some(param),
    )
}

fn no_such(kind: &str, id: &str, param: &str) -> Failure {
    failure(
        404,
        "invalid_request_error",
        Some("resource_missing"),
        format!("No such {kind}: '{id}'"),
        Some(param),
    )
}

fn respond(status: u16, body: String, req: &HttpRequest) -> HttpResponse {
    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    response
        .content_type("application/json")
        .insert_header(("Request-Id", random_id("req_", 14)))
        .insert_header((
            "Stripe-Version",
            header(req, "stripe-version").unwrap_or(API_VERSION.into()),
        ));
    if let Some(key) = header(req, "idempotency-key") {
        response.insert_header(("Idempotency-Key", key));
    }
    if status == 401 {
        response.insert_header(("WWW-Authenticate", "Bearer realm=\"Stripe\""));
    }
    response.body(body)
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Records the request and checks its key, as every Stripe endpoint does first.
fn receive(state: &mut State, req: &HttpRequest, body: &str) -> Result<(), Failure> {
    state.requests.push((
        req.method().to_string(),
        req.uri().to_string(),
        body.to_string(),
        header(req, "idempotency-key"),
    ));
    match header(req, "authorization") {
        Some(auth) if auth == format!("Bearer {SECRET_KEY}") => Ok(()),
        Some(auth) => {
            let key = auth.trim_start_matches("Bearer ").trim();
            // Stripe shows the key's prefix and last four characters only.
            let shown = if key.len() > 12 {
                format!("{}{}{}", &key[..8], "*".repeat(key.len() - 12), &key[key.len() - 4..])
            } else {
                key.to_string()
            };
            Err(failure(401, "invalid_request_error", None,
                format!("Invalid API Key provided: {shown}"), None))
        }
        None => Err(failure(401, "invalid_request_error", None,
            "You did not provide an API key. You need to provide your API key in the Authorization header, \
             using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication \
             for details, or we can help at https://support.stripe.com/.".into(), None)),
    }
}

/// Runs a POST as Stripe does with `Idempotency-Key`: the first request with a key that gets
/// past validation is saved, and the same key with the same endpoint and parameters gets that
/// response again (not a second object, even if the object changed since); the key with other
/// parameters is refused. Requests failing validation are not saved, as at Stripe.
fn post(
    shared: &Shared,
    req: &HttpRequest,
    body: web::Bytes,
    run: impl FnOnce(&mut State, &[(String, String)]) -> Result<Value, Failure>,
) -> HttpResponse {
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut state = shared.state.lock().unwrap();
    if let Err(refused) = receive(&mut state, req, &body) {
        return refused.respond(req);
    }
    let key = header(req, "idempotency-key");
    let path = req.path().to_string();
    if let Some(saved) = key.as_ref().and_then(|k| state.idempotency.get(k)) {
        let key = key.as_deref().unwrap_or_default();
        if saved.path != path {
            return failure(400, "idempotency_error", None, format!(
                "Keys for idempotent requests can only be used for the same endpoint they were first used for \
                 ('{path}' vs '{}'). Try using a key other than '{key}' if you meant to execute a different request.",
                saved.path), None).respond(req);
        }
        if saved.body != body {
            return failure(400, "idempotency_error", None, format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. \
                 Try using a key other than '{key}' if you meant to execute a different request."), None).respond(req);
        }
        let mut response = respond(saved.status, saved.response.clone(), req);
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
            actix_web::http::header::HeaderValue::from_static("true"),
        );
        return response;
    }
    let params = match web::Query::<Vec<(String, String)>>::from_query(&body) {
        Ok(params) => params.into_inner(),
        Err(e) => return malformed(format!("Invalid request body: {e}")).respond(req),
    };
    match run(&mut state, &params) {
        Ok(object) => {
            let response = object.to_string();
            if let Some(key) = key {
                state.idempotency.insert(
                    key,
                    Saved {
                        path,
                        body,
                        status: 200,
                        response: response.clone(),
                    },
                );
            }
            respond(200, response, req)
        }
        Err(failed) => failed.respond(req),
    }
}

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn integer(params: &[(String, String)], name: &str) -> Result<Option<i64>, Failure> {
    get(params, name)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                failure(
                    400,
                    "invalid_request_error",
                    Some("parameter_invalid_integer"),
                    format!("Invalid integer: {v}"),
                    Some(name),
                )
            })
        })
        .transpose()
}

/// `prefix[key]=value` pairs as a metadata object, checked against Stripe's limits.
fn read_metadata(params: &[(String, String)], prefix: &str) -> Result<Map<String, Value>, Failure> {
    let mut map = Map::new();
    for (k, v) in params {
        let Some(key) = k
            .strip_prefix(prefix)
            .and_then(|k| k.strip_prefix('['))
            .and_then(|k| k.strip_suffix(']'))
        else {
            continue;
        };
        if key.chars().count() > 40 {
            return Err(invalid(
                k,
                format!(
                    "Metadata keys can have up to 40 characters; `{key}` has {}.",
                    key.chars().count()
                ),
            ));
        }
        if v.chars().count() > 500 {
            return Err(invalid(k, format!("Metadata values can have up to 500 characters, but you passed in a value that is {} characters.", v.chars().count())));
        }
        if v.is_empty() {
            map.remove(key);
        } else {
            map.insert(key.to_string(), json!(v));
        }
    }
    if map.len() > 50 {
        return Err(invalid(
            prefix,
            "You can have up to 50 metadata keys.".into(),
        ));
    }
    Ok(map)
}

fn url_param(params: &[(String, String)], name: &str) -> Result<Option<String>, Failure> {
    match get(params, name) {
        Some(url)
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 5000 =>
        {
            Err(invalid(name, "Not a valid URL".into()))
        }
        url => Ok(url.map(str::to_string)),
    }
}

async fn create_session(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    post(&shared, &req, body, |state, params| {
        let session = new_session(params)?;
        let object = session.object.clone();
        state.sessions.push(session);
        Ok(object)
    })
}

/// Validates the parameters as Stripe does in `payment` mode and builds the session.
fn new_session(params: &[(String, String)]) -> Result<Session, Failure> {
    let created = now();
    let mode = get(params, "mode").ok_or_else(|| missing("mode"))?;
    match mode {
        "payment" => {}
        "setup" | "subscription" => {
            return Err(invalid(
                "mode",
                format!("The Stripe fake only implements `payment` mode, not `{mode}`."),
            ))
        }
        _ => {
            return Err(invalid(
                "mode",
                "Invalid mode: must be one of payment, setup, or subscription".into(),
            ))
        }
    }
    let mut currency: Option<String> = None;
    let mut total = 0i64;
    let mut i = 0;
    while params
        .iter()
        .any(|(k, _)| k.starts_with(&format!("line_items[{i}]")))
    {
        let item = |name: &str| format!("line_items[{i}]{name}");
        if let Some(price) = get(params, &item("[price]")) {
            return Err(no_such("price", price, &item("[price]")));
        }
        let data = item("[price_data]");
        if !params.iter().any(|(k, _)| k.starts_with(&data)) {
            return Err(invalid(
                &item(""),
                "You must specify either `price` or `price_data` for each line item.".into(),
            ));
        }
        let item_currency = get(params, &format!("{data}[currency]"))
            .ok_or_else(|| missing(&format!("{data}[currency]")))?
            .to_ascii_lowercase();
        if item_currency.len() != 3 || !item_currency.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(invalid(
                &format!("{data}[currency]"),
                format!("Invalid currency: {item_currency}."),
            ));
        }
        if currency.as_ref().is_some_and(|c| *c != item_currency) {
            return Err(invalid(
                &format!("{data}[currency]"),
                "All line items must use the same currency.".into(),
            ));
        }
        currency = Some(item_currency);
        if let Some(product) = get(params, &format!("{data}[product]")) {
            return Err(no_such("product", product, &format!("{data}[product]")));
        }
        if !params
            .iter()
            .any(|(k, _)| k.starts_with(&format!("{data}[product_data]")))
        {
            return Err(invalid(
                &format!("{data}[product_data]"),
                "You must specify either `product` or `product_data` when creating a price.".into(),
            ));
        }
        get(params, &format!("{data}[product_data][name]"))
            .ok_or_else(|| missing(&format!("{data}[product_data][name]")))?;
        let unit_amount = match integer(params, &format!("{data}[unit_amount]"))? {
            Some(amount) => amount,
            None => match get(params, &format!("{data}[unit_amount_decimal]")) {
                Some(decimal) => {
                    decimal
                        .parse::<f64>()
                        .map(|d| d.round() as i64)
                        .map_err(|_| {
                            invalid(
                                &format!("{data}[unit_amount_decimal]"),
                                format!("Invalid decimal: {decimal}"),
                            )
                        })?
                }
                None => return Err(missing(&format!("{data}[unit_amount]"))),
            },
        };
        if unit_amount < 0 {
            return Err(invalid(
                &format!("{data}[unit_amount]"),
                "This value must be greater than or equal to 0.".into(),
            ));
        }
        let quantity =
            integer(params, &item("[quantity]"))?.ok_or_else(|| missing(&item("[quantity]")))?;
        if quantity < 1 {
            return Err(invalid(
                &item("[quantity]"),
                "This value must be greater than or equal to 1.".into(),
            ));
        }
        total += unit_amount * quantity;
        i += 1;
    }
    let currency = currency.ok_or_else(|| missing("line_items"))?;
    let minimum = match currency.as_str() {
        "gbp" => Some((30, "£0.30")),
        "usd" => Some((50, "$0.50")),
        "eur" => Some((50, "€0.50")),
        _ => None,
    };
    if let Some((_, shown)) = minimum.filter(|(m, _)| total < *m) {
        return Err(failure(
            400,
            "invalid_request_error",
            Some("amount_too_small"),
            format!(
            "The Checkout Session's total amount due must add up to at least {shown} {currency}"),
            None,
        ));
    }
    let expires_at = match integer(params, "expires_at")? {
        Some(at) if at < created + 30 * 60 => {
            return Err(invalid("expires_at", "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.".into()))
        }
        Some(at) if at > created + 24 * 3600 => {
            return Err(invalid("expires_at", "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.".into()))
        }
        Some(at) => at,
        None => created + 24 * 3600,
    };
    let client_reference_id = get(params, "client_reference_id");
    if client_reference_id.is_some_and(|c| c.chars().count() > 200) {
        return Err(invalid(
            "client_reference_id",
            "Invalid string: must be at most 200 characters".into(),
        ));
    }
    let customer_email = get(params, "customer_email");
    if let Some(email) = customer_email.filter(|e| !e.contains('@') || e.contains(' ')) {
        return Err(invalid(
            "customer_email",
            format!("Invalid email address: {email}"),
        ));
    }
    let success_url = url_param(params, "success_url")?;
    let cancel_url = url_param(params, "cancel_url")?;
    let metadata = read_metadata(params, "metadata")?;
    let payment_intent_metadata = read_metadata(params, "payment_intent_data[metadata]")?;
    let id = random_id("cs_test_a1", 56);
    let object = merge([
        json!({
            "id": id, "object": "checkout.session",
            "adaptive_pricing": {"enabled": false}, "after_expiration": null, "allow_promotion_codes": null,
            "amount_subtotal": total, "amount_total": total,
            "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
            "billing_address_collection": null,
            "branding_settings": {"background_color": "#ffffff", "border_style": "rounded", "button_color": "#0074d4",
                "display_name": "voucherd", "font_family": "default", "icon": null, "logo": null},
            "cancel_url": cancel_url, "client_reference_id": client_reference_id, "client_secret": null,
            "collected_information": null, "consent": null, "consent_collection": null,
        }),
        json!({
            "created": created, "currency": currency, "currency_conversion": null,
            "custom_fields": [],
            "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
            "customer": null, "customer_account": null, "customer_creation": "if_required",
            "customer_details": customer_email.map(|email| json!({"address": null, "business_name": null, "email": email,
                "individual_name": null, "name": null, "phone": null, "tax_exempt": "none", "tax_ids": null})),
            "customer_email": customer_email, "discounts": [],
            "expires_at": expires_at, "integration_identifier": null, "invoice": null,
            "invoice_creation": {"enabled": false, "invoice_data": {"account_tax_ids": null, "custom_fields": null,
                "description": null, "footer": null, "issuer": null, "metadata": {}, "rendering_options": null}},
        }),
        json!({
            "livemode": false, "locale": get(params, "locale"), "managed_payments": null, "metadata": metadata,
            "mode": "payment", "name_collection": null, "optional_items": null, "origin_context": null,
            "payment_intent": null, "payment_link": null, "payment_method_collection": "if_required",
            "payment_method_configuration_details": {"id": random_id("pmc_1", 23), "parent": null},
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": ["card", "bacs_debit", "link"],
        }),
        json!({
            "payment_status": "unpaid", "permissions": null,
            "phone_number_collection": {"enabled": false}, "presentment_details": null, "recovered_from": null,
            "saved_payment_method_options": null, "setup_intent": null,
            "shipping_address_collection": null, "shipping_cost": null, "shipping_options": [],
            "status": "open", "submit_type": get(params, "submit_type"), "subscription": null,
            "success_url": success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted_page",
            "url": format!("https://checkout.stripe.com/c/pay/{id}#fid{}", random_id("", 40)),
            "wallet_options": null,
        }),
    ]);
    Ok(Session {
        object,
        payment_intent_metadata,
        payment_intent_description: get(params, "payment_intent_data[description]")
            .map(str::to_string),
        payment: None,
    })
}

async fn retrieve_session(
    shared: web::Data<Shared>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let mut state = shared.state.lock().unwrap();
    if let Err(refused) = receive(&mut state, &req, "") {
        return refused.respond(&req);
    }
    match state
        .sessions
        .iter()
        .find(|s| s.object["id"] == id.as_str())
    {
        Some(s) => respond(200, s.object.to_string(), &req),
        None => no_such("checkout.session", &id, "session").respond(&req),
    }
}

/// `POST /v1/checkout/sessions/{id}/expire`: only open sessions can be expired.
async fn expire_session(
    shared: web::Data<Shared>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    post(&shared, &req, body, |state, _| {
        let s = state
            .sessions
            .iter_mut()
            .find(|s| s.object["id"] == id.as_str())
            .ok_or_else(|| no_such("checkout.session", &id, "session"))?;
        if s.object["status"] != "open" {
            return Err(invalid("session", format!(
                "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of `{}`.",
                s.object["status"].as_str().unwrap_or_default())));
        }
        expire(s);
        Ok(s.object.clone())
    })
}

/// `GET /v1/checkout/sessions`: newest first, cursor-paginated, filtered on `created` (exact or
/// `created[gt|gte|lt|lte]`), `status` and `payment_intent`.
async fn list_sessions(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let mut state = shared.state.lock().unwrap();
    if let Err(refused) = receive(&mut state, &req, "") {
        return refused.respond(&req);
    }
    match list(&state, req.query_string()) {
        Ok(list) => respond(200, list.to_string(), &req),
        Err(failed) => failed.respond(&req),
    }
}

fn list(state: &State, query: &str) -> Result<Value, Failure> {
    let params = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| malformed(format!("Invalid query string: {e}")))?
        .into_inner();
    const KNOWN: &[&str] = &[
        "created",
        "customer",
        "customer_account",
        "customer_details[email]",
        "ending_before",
        "limit",
        "payment_intent",
        "payment_link",
        "starting_after",
        "status",
        "subscription",
    ];
    for (k, _) in &params {
        let known = KNOWN.contains(&k.as_str())
            || ["created[gt]", "created[gte]", "created[lt]", "created[lte]"].contains(&k.as_str())
            || k.starts_with("expand[");
        if !known {
            return Err(failure(
                400,
                "invalid_request_error",
                Some("parameter_unknown"),
                format!("Received unknown parameter: {k}"),
                Some(k),
            ));
        }
    }
    let limit = integer(&params, "limit")?.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(invalid(
            "limit",
            format!("This value must be between 1 and 100 (it currently is {limit})."),
        ));
    }
    let bounds = [
        (
            "created",
            integer(&params, "created")?,
            i64::eq as fn(&i64, &i64) -> bool,
        ),
        ("created[gt]", integer(&params, "created[gt]")?, i64::gt),
        ("created[gte]", integer(&params, "created[gte]")?, i64::ge),
        ("created[lt]", integer(&params, "created[lt]")?, i64::lt),
        ("created[lte]", integer(&params, "created[lte]")?, i64::le),
    ];
    let status = get(&params, "status");
    if let Some(s) = status.filter(|s| !["open", "complete", "expired"].contains(s)) {
        return Err(invalid(
            "status",
            format!("Invalid status: must be one of complete, expired, or open (got {s})"),
        ));
    }
    let payment_intent = get(&params, "payment_intent");
    // Newest first; sessions created in the same second in reverse order of creation.
    let mut ordered: Vec<&Value> = state.sessions.iter().rev().map(|s| &s.object).collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s["created"].as_i64()));
    let position = |param: &str| -> Result<Option<usize>, Failure> {
        get(&params, param)
            .map(|id| {
                ordered
                    .iter()
                    .position(|s| s["id"] == id)
                    .ok_or_else(|| no_such("checkout.session", id, param))
            })
            .transpose()
    };
    let after = position("starting_after")?;
    let before = position("ending_before")?;
    let matches = |s: &&&Value| {
        let created = s["created"].as_i64().unwrap_or_default();
        bounds
            .iter()
            .all(|(_, bound, cmp)| bound.is_none_or(|b| cmp(&created, &b)))
            && status.is_none_or(|st| s["status"] == st)
            && payment_intent.is_none_or(|pi| s["payment_intent"] == pi)
    };
    let limit = limit as usize;
    let (data, has_more): (Vec<Value>, bool) = if let Some(before) = before {
        let candidates: Vec<&&Value> = ordered[..before].iter().filter(matches).collect();
        let start = candidates.len().saturating_sub(limit);
        (
            candidates[start..].iter().map(|s| (**s).clone()).collect(),
            start > 0,
        )
    } else {
        let from = after.map_or(0, |a| a + 1);
        let candidates: Vec<&&Value> = ordered[from..].iter().filter(matches).collect();
        (
            candidates
                .iter()
                .take(limit)
                .map(|s| (**s).clone())
                .collect(),
            candidates.len() > limit,
        )
    };
    Ok(
        json!({"object": "list", "data": data, "has_more": has_more, "url": "/v1/checkout/sessions"}),
    )
}

async fn unrecognized(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let mut state = shared.state.lock().unwrap();
    let body = String::from_utf8_lossy(&body).into_owned();
    let failed = match receive(&mut state, &req, &body) {
        Err(refused) => refused,
        Ok(()) => failure(404, "invalid_request_error", None, format!(
            "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
            req.method(), req.path()), None),
    };
    failed.respond(&req)
}
