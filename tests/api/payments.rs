//! Payments through Stripe: co-funding contributions and top-ups, against the fake Stripe API in
//! `stripe.rs` and webhooks signed exactly as Stripe signs them.

use crate::helpers::{
    assert_problem, body, short_chat_request, spawn_app, spawn_app_with, test_config, TestApp,
};
use crate::stripe::{sign, FakeStripe, SECRET_KEY, WEBHOOK_SECRET};
use crate::upstream::Reply;
use reqwest::Response;
use serde_json::{json, Value};
use std::sync::Arc;
use voucherd::config::Config;
use voucherd_domain::Money;
use voucherd_store::Backend;
use voucherd_worker::{Job, ManualClock, Worker, WorkerConfig};

/// A request of 40 prompt and 100 output tokens costs 40 × 2.50 + 100 × 10.00 micros.
const REQUEST_COST: i64 = 1_100;
/// A second signing secret, as while a webhook secret is being rolled.
const ROTATED_SECRET: &str = "whsec_voucherd_rolled_secret";

fn paying(config: &mut Config, stripe: &FakeStripe, co_funding_percent: u32) {
    config.stripe_secret_key = Some(SECRET_KEY.into());
    config.stripe_webhook_secret = Some(format!("{WEBHOOK_SECRET}, {ROTATED_SECRET}"));
    config.stripe_api_base = Some(stripe.url.clone());
    config.co_funding_percent = co_funding_percent;
    config.top_up_min = Money::parse("1").unwrap();
    config.top_up_max = Money::parse("500").unwrap();
}

async fn spawn_paying(backend: Backend, co_funding_percent: u32) -> (TestApp, FakeStripe) {
    spawn_paying_with(backend, co_funding_percent, |_| {}).await
}

async fn spawn_paying_with(
    backend: Backend,
    co_funding_percent: u32,
    adjust: impl FnOnce(&mut Config),
) -> (TestApp, FakeStripe) {
    let stripe = FakeStripe::start();
    let app = spawn_app_with(backend, |c| {
        paying(c, &stripe, co_funding_percent);
        adjust(c);
    })
    .await;
    app.upstream.set_reply(Reply {
        prompt_tokens: 40,
        cached_tokens: 0,
        completion_tokens: 100,
        ..Reply::default()
    });
    (app, stripe)
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn webhook(app: &TestApp, payload: &str, signature: Option<&str>) -> Response {
    let mut req = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(payload.to_string());
    if let Some(s) = signature {
        req = req.header("Stripe-Signature", s);
    }
    req.send().await.unwrap()
}

/// Delivers `payload` signed as Stripe would; returns the outcome voucherd reports.
async fn deliver(app: &TestApp, payload: &str) -> String {
    let resp = webhook(
        app,
        payload,
        Some(&sign(payload, WEBHOOK_SECRET, now_unix())),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    body(resp).await["outcome"].as_str().unwrap().to_string()
}

async fn top_up(app: &TestApp, token: &str, amount: &str, key: Option<&str>) -> Response {
    let mut req = app
        .client
        .post(app.url("/api/v1/topups"))
        .bearer_auth(token)
        .json(&json!({ "amount": amount }));
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

/// A top-up as its owner sees it now.
async fn top_up_view(app: &TestApp, token: &str, payment: &Value) -> Value {
    let id = payment["id"].as_str().unwrap();
    body(app.get(&format!("/api/v1/topups/{id}"), token).await).await
}

/// The session behind a payment, from the fake.
fn session_of(stripe: &FakeStripe, payment: &Value) -> String {
    let id = payment["stripe_session_id"].as_str().unwrap();
    assert_eq!(stripe.session(id)["client_reference_id"], payment["id"]);
    id.to_string()
}

/// (voucher spent, purchased credit spent, purchased credit available), in micros.
async fn spending(app: &TestApp, token: &str, voucher_id: &str) -> (i64, i64, i64) {
    let v = app.voucher(token, voucher_id).await;
    let t = body(app.get("/api/v1/topups", token).await).await;
    let m = |v: &Value| Money::parse(v.as_str().unwrap()).unwrap().micros();
    (
        m(&v["spent"]),
        m(&t["purchased_credit"]["spent"]),
        m(&t["purchased_credit"]["available"]),
    )
}

/// A worker that runs the payment reconciliation job against the fake, on a clock of its own.
fn reconciler(app: &TestApp, stripe: &FakeStripe) -> (Worker, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now().naive_utc()));
    let mut config = test_config(&app.database_url, "http://127.0.0.1:9/");
    paying(&mut config, stripe, 0);
    let worker = Worker::new(
        app.store.clone(),
        WorkerConfig {
            stripe: config.stripe_config().unwrap(),
            ..WorkerConfig::default()
        },
        clock.clone(),
    )
    .unwrap();
    (worker, clock)
}

async fn co_funding_activates_a_voucher_once_its_contribution_is_paid(backend: Backend) {
    let (app, stripe) = spawn_paying(backend, 30).await;
    let (owner, voucher_id, key) = app.funded_voucher("cofund@example.com", "100").await;
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(v["status"], "awaiting_contribution", "{v}");
    assert_eq!(v["contribution"]["amount"], "30.00");
    assert_eq!(v["contribution"]["paid_at"], Value::Null);

    // Not a penny spends before the share is paid.
    let refused = app.chat(&key, &short_chat_request(Some(100))).await;
    assert_eq!(refused.status().as_u16(), 429);
    let refused = body(refused).await;
    assert_eq!(refused["error"]["code"], "insufficient_quota");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("co-funding contribution"),
        "{refused}"
    );

    let path = format!("/api/v1/vouchers/{voucher_id}/contribution");
    let due = body(app.get(&path, &owner).await).await;
    assert_eq!(due["status"], "due");
    assert_eq!(due["amount"], "30.00");
    let started = app.post(&path, &owner, &json!({})).await;
    assert_eq!(started.status().as_u16(), 201);
    let payment = body(started).await;
    assert_eq!(payment["kind"], "contribution");
    assert_eq!(payment["status"], "open");
    assert_eq!(payment["amount"], "30.00");
    assert_eq!(payment["amount_pence"], 3_000);
    assert!(payment["checkout_url"]
        .as_str()
        .unwrap()
        .starts_with("https://checkout.stripe.com/"));
    let session = session_of(&stripe, &payment);
    let s = stripe.session(&session);
    assert_eq!(s["amount_total"], 3_000);
    assert_eq!(s["currency"], "gbp");
    assert_eq!(s["customer_email"], "cofund@example.com");
    // Created under an idempotency key of the payment's own, so a retry makes no second one.
    let creates: Vec<_> = stripe
        .requests()
        .into_iter()
        .filter(|r| r.0 == "POST")
        .collect();
    assert_eq!(creates.len(), 1);
    assert_eq!(
        creates[0].3.as_deref(),
        Some(format!("voucherd-checkout-{}", payment["id"].as_str().unwrap()).as_str())
    );
    // Pence to Stripe: £30.00 is 3000, one line, paid once, tied to our payment.
    let form = crate::stripe::decode_form(&creates[0].2);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        field("line_items[0][price_data][unit_amount]"),
        Some("3000")
    );
    assert_eq!(field("line_items[0][price_data][currency]"), Some("gbp"));
    assert_eq!(field("line_items[0][quantity]"), Some("1"));
    assert_eq!(field("mode"), Some("payment"));
    assert_eq!(field("client_reference_id"), payment["id"].as_str());
    // Asking again while it is open returns the same payment.
    let again = app.post(&path, &owner, &json!({})).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(body(again).await["id"], payment["id"]);
    assert_eq!(stripe.sessions().len(), 1);

    let paid = stripe.pay(&session);
    let outcome = deliver(&app, &stripe.event("checkout.session.completed", paid)).await;
    assert_eq!(outcome, "credited");

    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(v["status"], "active");
    assert!(v["contribution"]["paid_at"].is_string());
    assert_eq!(v["available"], "100.00");
    // Money never appears from nowhere: Stripe clearing → the organisation's contribution.
    let owner_id = body(app.get("/api/v1/me", &owner).await).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let contribution = app
        .store
        .account(format!("contribution-{owner_id}"))
        .await
        .unwrap();
    assert_eq!(contribution.credits_posted, 30_000_000);
    let clearing = app.store.account("stripe-clearing".into()).await.unwrap();
    assert_eq!(clearing.debits_posted, 30_000_000);
    assert_eq!(clearing.credits_posted, 0);

    let served = app.chat(&key, &short_chat_request(Some(100))).await;
    assert_eq!(served.status().as_u16(), 200);
    let v = app.wait_until_settled(&owner, &voucher_id).await;
    assert_eq!(v["spent"], "0.0011");
    let done = app.post(&path, &owner, &json!({})).await;
    assert_problem(done, 409, "contribution_not_due").await;
    assert_eq!(body(app.get(&path, &owner).await).await["status"], "paid");

    // A voucher that expired unpaid takes no contribution, and its keys are refused.
    let (app, stripe) = spawn_paying(backend, 30).await;
    let (late, late_voucher, late_key) = app.funded_voucher("late@example.com", "100").await;
    app.store
        .expire_voucher_for_tests(late_voucher.clone())
        .await;
    let late_path = format!("/api/v1/vouchers/{late_voucher}/contribution");
    assert_problem(
        app.post(&late_path, &late, &json!({})).await,
        409,
        "voucher_expired",
    )
    .await;
    let refused = app.chat(&late_key, &short_chat_request(Some(100))).await;
    assert_eq!(refused.status().as_u16(), 429);
    assert!(body(refused).await["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    assert!(stripe.sessions().is_empty());
}

/// Purchased credit large enough to be leased is spent in the usage writer's batches: its
/// usage is recorded and posted like the voucher's, but it is the SME's own money, so the
/// programme's daily rollups leave it out.
async fn purchased_credit_spent_through_a_lease_stays_out_of_the_programme_figures(
    backend: Backend,
) {
    let (app, stripe) = spawn_paying_with(backend, 0, |c| c.lease_max_age_ms = 200).await;
    let (owner, voucher_id, key) = app.funded_voucher("leased@example.com", "0.01").await;
    let payment = body(top_up(&app, &owner, "100.00", None).await).await;
    let paid = stripe.pay(&session_of(&stripe, &payment));
    assert_eq!(
        deliver(&app, &stripe.event("checkout.session.completed", paid)).await,
        "credited"
    );
    for i in 0..20 {
        let resp = app.chat(&key, &short_chat_request(Some(100))).await;
        assert_eq!(resp.status().as_u16(), 200, "request {i}");
    }
    let (voucher, purchased, _) = spending(&app, &owner, &voucher_id).await;
    assert_eq!(voucher + purchased, 20 * REQUEST_COST);
    assert!(
        purchased >= 10 * REQUEST_COST,
        "purchased credit paid {purchased}"
    );
    // Its requests shared a lease on the purchased credit.
    let usage = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), &owner)
            .await,
    )
    .await;
    let rows = usage["data"].as_array().unwrap();
    assert_eq!(rows.len(), 20);
    let holds: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["hold_id"].as_str().unwrap())
        .collect();
    assert!(holds.len() < 10, "{} holds for 20 requests", holds.len());
    assert_eq!(
        rolled_up_today(&app, &voucher_id).await,
        (voucher / REQUEST_COST, voucher)
    );
}

/// (requests, cost in micros) in the programme's rollups of `voucher_id` for today.
async fn rolled_up_today(app: &TestApp, voucher_id: &str) -> (i64, i64) {
    let today = voucherd_store::now().date();
    let rolled = app
        .store
        .usage_daily(Some(voucher_id.to_string()), today, today)
        .await
        .unwrap();
    rolled
        .iter()
        .fold((0, 0), |(n, c), r| (n + r.requests, c + r.cost))
}

async fn a_top_up_is_spent_only_after_the_voucher_and_outlives_it(backend: Backend) {
    let (app, stripe) = spawn_paying(backend, 0).await;
    let (owner, voucher_id, key) = app.funded_voucher("topup@example.com", "0.01").await;
    let created = top_up(&app, &owner, "1.00", None).await;
    assert_eq!(created.status().as_u16(), 201);
    let payment = body(created).await;
    assert_eq!(payment["kind"], "top_up");
    assert_eq!(payment["amount_pence"], 100);
    // Unpaid, it is nothing yet.
    assert_eq!(spending(&app, &owner, &voucher_id).await, (0, 0, 0));
    let session = session_of(&stripe, &payment);
    let paid = stripe.pay(&session);
    assert_eq!(
        deliver(&app, &stripe.event("checkout.session.completed", paid)).await,
        "credited"
    );
    assert_eq!(spending(&app, &owner, &voucher_id).await, (0, 0, 1_000_000));

    // Request by request: the voucher pays while it covers a request's worst case, then the
    // purchased credit pays, and the voucher is never touched again.
    let mut switched_at = None;
    let mut last = (0, 0);
    for i in 0..15 {
        let resp = app.chat(&key, &short_chat_request(Some(100))).await;
        assert_eq!(resp.status().as_u16(), 200, "request {i}");
        let (voucher, purchased, _) = spending(&app, &owner, &voucher_id).await;
        match switched_at {
            None if purchased == 0 => assert_eq!(voucher, last.0 + REQUEST_COST),
            None => {
                assert_eq!((voucher, purchased), (last.0, REQUEST_COST));
                switched_at = Some(i);
            }
            Some(_) => assert_eq!((voucher, purchased), (last.0, last.1 + REQUEST_COST)),
        }
        last = (voucher, purchased);
    }
    let switched_at = switched_at.expect("purchased credit was never spent");
    assert!(switched_at >= 1, "the voucher paid nothing first");
    // The programme's daily rollup counts what the voucher paid, not the purchased credit.
    assert_eq!(
        rolled_up_today(&app, &voucher_id).await,
        (i64::from(switched_at), last.0)
    );
    let v = app.voucher(&owner, &voucher_id).await;
    // What the voucher kept is less than one request's hold (the worst case, ≥ its cost).
    let hold: i64 = body(
        app.get(
            &format!("/api/v1/vouchers/{voucher_id}/transactions"),
            &owner,
        )
        .await,
    )
    .await["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "pending")
        .map(|t| {
            Money::parse(t["amount"].as_str().unwrap())
                .unwrap()
                .micros()
        })
        .unwrap();
    let kept = 10_000 - last.0;
    assert_eq!(
        v["available"],
        Money::from_micros(kept).unwrap().to_string()
    );
    assert!(kept < hold, "kept {kept}, hold {hold}");
    assert_eq!(last.0 + last.1, 15 * REQUEST_COST);

    // The voucher expires; the purchased credit does not.
    app.store.expire_voucher_for_tests(voucher_id.clone()).await;
    let resp = app.chat(&key, &short_chat_request(Some(100))).await;
    assert_eq!(resp.status().as_u16(), 200);
    let (voucher, purchased, available) = spending(&app, &owner, &voucher_id).await;
    assert_eq!((voucher, purchased), (last.0, last.1 + REQUEST_COST));
    assert_eq!(available, 1_000_000 - purchased);
}

async fn replayed_reordered_and_forged_webhooks_change_nothing(backend: Backend) {
    let (app, stripe) = spawn_paying(backend, 0).await;
    let (owner, voucher_id, _) = app.funded_voucher("replay@example.com", "1").await;
    let payment = body(top_up(&app, &owner, "5.00", None).await).await;
    let session = session_of(&stripe, &payment);
    // Paid by Bacs: completed unpaid, cleared days later.
    let completed = stripe.event(
        "checkout.session.completed",
        stripe.complete_unpaid(&session),
    );
    let succeeded = stripe.event(
        "checkout.session.async_payment_succeeded",
        stripe.settle_async(&session),
    );

    // Forged, tampered, stale, unsigned: refused, and nothing changes.
    let now = now_unix();
    for (payload, signature) in [
        (
            succeeded.clone(),
            Some(sign(&succeeded, "whsec_not_ours", now)),
        ),
        (
            succeeded.replace("\"gbp\"", "\"usd\""),
            Some(sign(&succeeded, WEBHOOK_SECRET, now)),
        ),
        (
            succeeded.clone(),
            Some(sign(&succeeded, WEBHOOK_SECRET, now - 600)),
        ),
        (succeeded.clone(), Some("t=abc,v1=00".to_string())),
        (succeeded.clone(), None),
    ] {
        let resp = webhook(&app, &payload, signature.as_deref()).await;
        assert_eq!(resp.status().as_u16(), 400);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(spending(&app, &owner, &voucher_id).await.2, 0);

    // Reordered: the clearing arrives before the completion that preceded it.
    assert_eq!(deliver(&app, &succeeded).await, "credited");
    assert_eq!(deliver(&app, &completed).await, "not_open");
    // Replayed: answered 200, without effect.
    assert_eq!(deliver(&app, &succeeded).await, "duplicate");
    assert_eq!(deliver(&app, &completed).await, "duplicate");
    // The same news under a new event id: nothing to do.
    let again = stripe.event(
        "checkout.session.async_payment_succeeded",
        stripe.session(&session),
    );
    assert_eq!(deliver(&app, &again).await, "already_paid");
    // Signed with the second secret while rolling secrets, and with several signatures of
    // which one is right: accepted.
    let late_expiry = stripe.event("checkout.session.expired", stripe.session(&session));
    let resp = webhook(
        &app,
        &late_expiry,
        Some(&sign(&late_expiry, ROTATED_SECRET, now)),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["outcome"], "not_pending");
    let failed = stripe.event(
        "checkout.session.async_payment_failed",
        stripe.session(&session),
    );
    let good = sign(&failed, WEBHOOK_SECRET, now);
    let wrong = sign(&failed, "whsec_other", now);
    let both = format!("{good},{}", wrong.split(',').nth(1).unwrap());
    let resp = webhook(&app, &failed, Some(&both)).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["outcome"], "not_pending");

    assert_eq!(spending(&app, &owner, &voucher_id).await.2, 5_000_000);
    let p = top_up_view(&app, &owner, &payment).await;
    assert_eq!(p["status"], "paid");
    assert_eq!(p["paid_via"], "webhook");
    assert_eq!(p["checkout_url"], Value::Null);
    let clearing = app.store.account("stripe-clearing".into()).await.unwrap();
    assert_eq!(clearing.debits_posted, 5_000_000);
}

async fn a_refund_after_partial_spending_reverses_what_is_left(backend: Backend) {
    let (app, stripe) = spawn_paying(backend, 0).await;
    let (owner, voucher_id, key) = app.funded_voucher("refund@example.com", "0.001").await;
    let admin = app
        .user_with_role("refund-admin@example.com", "admin")
        .await;
    let payment = body(top_up(&app, &owner, "1.00", None).await).await;
    let session = session_of(&stripe, &payment);
    let paid = stripe.pay(&session);
    deliver(&app, &stripe.event("checkout.session.completed", paid)).await;
    for _ in 0..3 {
        let resp = app.chat(&key, &short_chat_request(Some(100))).await;
        assert_eq!(resp.status().as_u16(), 200);
    }
    let (voucher_spent, spent, available) = spending(&app, &owner, &voucher_id).await;
    assert_eq!(voucher_spent, 0, "a £0.001 voucher covers no whole request");
    assert_eq!(spent, 3 * REQUEST_COST);
    assert_eq!(available, 1_000_000 - spent);

    // Half refunded: all of it is still unspent.
    let half = stripe.event("charge.refunded", stripe.refunded_charge(&session, 50));
    assert_eq!(deliver(&app, &half).await, "refund_reversed");
    assert_eq!(spending(&app, &owner, &voucher_id).await.2, 500_000 - spent);
    // The rest refunded: what was spent cannot come back, and is the shortfall.
    let full = stripe.event("charge.refunded", stripe.refunded_charge(&session, 100));
    assert_eq!(deliver(&app, &full).await, "refund_reversed");
    assert_eq!(deliver(&app, &full).await, "duplicate");
    let again = stripe.event("charge.refunded", stripe.refunded_charge(&session, 100));
    assert_eq!(deliver(&app, &again).await, "already_refunded");
    assert_eq!(spending(&app, &owner, &voucher_id).await, (0, spent, 0));
    // Nothing covers a whole request now: the next is capped to the output the voucher's
    // £0.001 affords beside the prompt's bound, and paid by the voucher.
    let capped = app.chat(&key, &short_chat_request(Some(100))).await;
    assert_eq!(capped.status().as_u16(), 200);
    let completion = body(capped).await["usage"]["completion_tokens"]
        .as_i64()
        .unwrap();
    assert!((1..100).contains(&completion), "{completion}");
    assert_eq!(
        spending(&app, &owner, &voucher_id).await,
        (100 + 10 * completion, spent, 0)
    );
    let refused = app.chat(&key, &short_chat_request(Some(100))).await;
    assert_eq!(refused.status().as_u16(), 429);

    let listed = body(app.get("/api/v1/payments?status=refunded", &admin).await).await;
    let rows = listed["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let p = &rows[0];
    assert_eq!(p["refunded"], "1.00");
    assert_eq!(
        p["reversed"],
        Money::from_micros(1_000_000 - spent).unwrap().to_string()
    );
    assert_eq!(
        p["shortfall"],
        Money::from_micros(spent).unwrap().to_string()
    );
    let outcomes: Vec<&str> = p["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "credited",
            "refund_reversed",
            "refund_reversed",
            "already_refunded"
        ]
    );
    let outbox = body(app.get("/api/v1/outbox?limit=100", &admin).await).await;
    // Once to each administrator (the one who approved the voucher, and this one).
    let mut told: Vec<&str> = outbox["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["template"] == "refund_shortfall")
        .map(|m| m["recipient"].as_str().unwrap())
        .collect();
    told.sort_unstable();
    assert_eq!(
        told,
        ["admin-refund@example.com", "refund-admin@example.com"]
    );
    // Every pound accounted for: the ledger still balances.
    let (row, _) = app
        .store
        .run_reconciliation(chrono::Utc::now().naive_utc())
        .await
        .unwrap();
    assert!(row.balanced);
    let clearing = app.store.account("stripe-clearing".into()).await.unwrap();
    assert_eq!(clearing.debits_posted, 1_000_000);
    assert_eq!(clearing.credits_posted, 1_000_000 - spent);
}

async fn a_lost_webhook_is_recovered_by_reconciliation_exactly_once(backend: Backend) {
    let (app, stripe) = spawn_paying(backend, 0).await;
    let (owner, voucher_id, _) = app.funded_voucher("lost@example.com", "1").await;
    let payment = body(top_up(&app, &owner, "2.00", None).await).await;
    let session = session_of(&stripe, &payment);
    let paid = stripe.pay(&session);
    let abandoned = body(top_up(&app, &owner, "3.00", None).await).await;
    let abandoned_session = session_of(&stripe, &abandoned);
    stripe.expire(&abandoned_session);

    // A refund of a charge that is none of the programme's: acknowledged, nothing changes.
    let mut foreign = stripe.refunded_charge(&session, 50);
    foreign["payment_intent"] = json!("pi_not_ours");
    foreign["metadata"] = json!({});
    let foreign = stripe.event("charge.refunded", foreign);
    assert_eq!(deliver(&app, &foreign).await, "unknown_payment");
    // Stripe refunds before voucherd has heard of the payment: refused, so Stripe retries.
    let early_refund = stripe.event("charge.refunded", stripe.refunded_charge(&session, 50));
    let resp = webhook(
        &app,
        &early_refund,
        Some(&sign(&early_refund, WEBHOOK_SECRET, now_unix())),
    )
    .await;
    assert_problem(resp, 409, "payment_not_yet_known").await;
    assert_eq!(spending(&app, &owner, &voucher_id).await.2, 0);

    let (worker, clock) = reconciler(&app, &stripe);
    let run = worker.run_once(Job::StripeReconciliation).await.unwrap();
    assert_eq!(run.outcome.as_str(), "succeeded", "{:?}", run.summary);
    assert_eq!(run.summary["sessions_seen"], 2);
    assert_eq!(run.summary["credited"], 1);
    assert_eq!(run.summary["other_changes"], 1);
    assert_eq!(spending(&app, &owner, &voucher_id).await.2, 2_000_000);
    let p = top_up_view(&app, &owner, &payment).await;
    assert_eq!(
        (p["status"].clone(), p["paid_via"].clone()),
        (json!("paid"), json!("reconciliation"))
    );
    let a = top_up_view(&app, &owner, &abandoned).await;
    assert_eq!(a["status"], "expired");

    // Again, and then the webhook after all: nothing more.
    clock.advance(chrono::Duration::minutes(15));
    let run = worker.run_once(Job::StripeReconciliation).await.unwrap();
    assert_eq!(run.summary["credited"], 0);
    assert_eq!(run.summary["unchanged"], 2);
    assert_eq!(
        deliver(&app, &stripe.event("checkout.session.completed", paid)).await,
        "already_paid"
    );
    assert_eq!(spending(&app, &owner, &voucher_id).await.2, 2_000_000);
    let clearing = app.store.account("stripe-clearing".into()).await.unwrap();
    assert_eq!(clearing.debits_posted, 2_000_000);
    // Stripe's retry of the early refund now finds the payment.
    assert_eq!(deliver(&app, &early_refund).await, "refund_reversed");
    assert_eq!(spending(&app, &owner, &voucher_id).await.2, 1_500_000);
}

async fn a_refund_waits_for_credit_held_by_requests_in_flight(backend: Backend) {
    // Leasing on: the proxy holds part of the purchased credit while it serves requests.
    let (app, stripe) = spawn_paying_with(backend, 0, |c| c.lease_max_age_ms = 1_000).await;
    let (owner, voucher_id, key) = app.funded_voucher("inflight@example.com", "0.001").await;
    let payment = body(top_up(&app, &owner, "1.00", None).await).await;
    let session = session_of(&stripe, &payment);
    let paid = stripe.pay(&session);
    deliver(&app, &stripe.event("checkout.session.completed", paid)).await;
    for _ in 0..3 {
        let resp = app.chat(&key, &short_chat_request(Some(100))).await;
        assert_eq!(resp.status().as_u16(), 200);
    }
    let t = body(app.get("/api/v1/topups", &owner).await).await;
    let held = Money::parse(t["purchased_credit"]["held"].as_str().unwrap())
        .unwrap()
        .micros();
    assert!(held > 0, "no lease is open: {t}");
    let available = Money::parse(t["purchased_credit"]["available"].as_str().unwrap())
        .unwrap()
        .micros();

    // Refunded in full while credit is held: what is free comes back now; the rest waits.
    let full = stripe.event("charge.refunded", stripe.refunded_charge(&session, 100));
    let resp = webhook(&app, &full, Some(&sign(&full, WEBHOOK_SECRET, now_unix()))).await;
    assert_problem(resp, 409, "refund_waiting_on_holds").await;
    let p = top_up_view(&app, &owner, &payment).await;
    assert_eq!(
        p["reversed"],
        Money::from_micros(available).unwrap().to_string()
    );
    assert_eq!(p["shortfall"], "0.00");

    // Once the lease closes, Stripe's retry takes back the rest but what was spent.
    for _ in 0..400 {
        let t = body(app.get("/api/v1/topups", &owner).await).await;
        if t["purchased_credit"]["held"] == "0.00" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (_, spent, left) = spending(&app, &owner, &voucher_id).await;
    assert_eq!(spent, 3 * REQUEST_COST);
    assert_eq!(left, 1_000_000 - available - spent);
    assert_eq!(deliver(&app, &full).await, "refund_reversed");
    let p = top_up_view(&app, &owner, &payment).await;
    assert_eq!(
        p["reversed"],
        Money::from_micros(1_000_000 - spent).unwrap().to_string()
    );
    assert_eq!(
        p["shortfall"],
        Money::from_micros(spent).unwrap().to_string()
    );
    assert_eq!(spending(&app, &owner, &voucher_id).await.2, 0);
    assert_eq!(deliver(&app, &full).await, "duplicate");
}

async fn bad_top_ups_are_refused_by_field_and_write_nothing(backend: Backend) {
    let (app, stripe) = spawn_paying(backend, 0).await;
    let stranger = app.applicant("no-voucher@example.com").await;
    assert_problem(top_up(&app, &stranger, "5", None).await, 409, "no_voucher").await;
    let (owner, voucher_id, _) = app.funded_voucher("bad-topup@example.com", "1").await;
    for amount in ["0.99", "500.01", "1.005", "-5", "ten"] {
        let problem = assert_problem(
            top_up(&app, &owner, amount, None).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(crate::helpers::fields(&problem), ["amount"], "{amount}");
    }
    let unknown = app
        .post(
            "/api/v1/topups",
            &owner,
            &json!({"amount": "5", "currency": "usd"}),
        )
        .await;
    assert_eq!(unknown.status().as_u16(), 422);
    assert!(stripe.sessions().is_empty());
    let listed = body(app.get("/api/v1/topups", &owner).await).await;
    assert_eq!(listed["data"], json!([]));

    // One payment per idempotency key; the key with another amount is refused.
    let first = top_up(&app, &owner, "5", Some("buy-1")).await;
    assert_eq!(first.status().as_u16(), 201);
    let first = body(first).await;
    let replay = top_up(&app, &owner, "5.00", Some("buy-1")).await;
    assert_eq!(replay.status().as_u16(), 200);
    assert_eq!(body(replay).await["id"], first["id"]);
    assert_problem(
        top_up(&app, &owner, "6", Some("buy-1")).await,
        409,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(stripe.sessions().len(), 1);
    // Without co-funding there is no contribution to pay.
    let path = format!("/api/v1/vouchers/{voucher_id}/contribution");
    assert_problem(
        app.post(&path, &owner, &json!({})).await,
        409,
        "contribution_not_due",
    )
    .await;
    assert_eq!(
        body(app.get(&path, &owner).await).await["status"],
        "not_required"
    );
}

async fn without_stripe_payments_are_disabled_and_say_so(backend: Backend) {
    let app = spawn_app(backend).await;
    let (owner, voucher_id, key) = app.funded_voucher("no-stripe@example.com", "1").await;
    let settings = body(app.get("/api/v1/payments/settings", &owner).await).await;
    assert_eq!(settings["enabled"], false);
    assert_eq!(settings["co_funding_percent"], 0);
    assert_problem(
        top_up(&app, &owner, "5", None).await,
        503,
        "payments_disabled",
    )
    .await;
    let path = format!("/api/v1/vouchers/{voucher_id}/contribution");
    assert_problem(
        app.post(&path, &owner, &json!({})).await,
        503,
        "payments_disabled",
    )
    .await;
    let resp = webhook(&app, "{}", Some("t=1,v1=00")).await;
    assert_problem(resp, 503, "payments_disabled").await;
    assert_eq!(
        body(app.get("/api/v1/topups", &owner).await).await["data"],
        json!([])
    );
    // Nothing else breaks: the voucher is active and spends.
    assert_eq!(app.voucher(&owner, &voucher_id).await["status"], "active");
    let served = app.chat(&key, &short_chat_request(Some(100))).await;
    assert_eq!(served.status().as_u16(), 200);
    // Co-funding without Stripe stops start-up, saying why.
    let mut config = test_config(&app.database_url, "http://127.0.0.1:9/");
    config.co_funding_percent = 30;
    let err = voucherd::Application::build(config)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("co_funding_percent needs Stripe"), "{err}");
}

macro_rules! paying_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(voucherd_store::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(voucherd_store::Backend::Postgres).await } )*
        }
    };
}

paying_tests!(
    co_funding_activates_a_voucher_once_its_contribution_is_paid,
    a_top_up_is_spent_only_after_the_voucher_and_outlives_it,
    purchased_credit_spent_through_a_lease_stays_out_of_the_programme_figures,
    replayed_reordered_and_forged_webhooks_change_nothing,
    a_refund_after_partial_spending_reverses_what_is_left,
    a_lost_webhook_is_recovered_by_reconciliation_exactly_once,
    a_refund_waits_for_credit_held_by_requests_in_flight,
    bad_top_ups_are_refused_by_field_and_write_nothing,
    without_stripe_payments_are_disabled_and_say_so,
);
