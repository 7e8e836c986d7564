//! The metering proxy's money rules for non-streaming chat completions.

use crate::helpers::*;
use crate::upstream::Reply;
use serde_json::json;
use voucherd_store::Backend;

on_both_backends!(
    n_choices_are_billed_for_every_choice,
    an_unknown_model_or_bad_request_is_refused_before_anything_is_held,
    a_request_the_voucher_cannot_cover_gets_insufficient_quota_and_is_not_forwarded,
    an_unbounded_request_is_capped_to_what_the_voucher_affords,
    many_concurrent_requests_never_overspend_a_small_voucher,
    upstream_errors_pass_through_and_bill_nothing,
    an_answer_without_usage_is_billed_at_its_bound,
);

async fn n_choices_are_billed_for_every_choice(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let mut req = chat_request();
    req["n"] = json!(2);
    let resp = app.chat(&key, &req).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["usage"]["completion_tokens"], 666);
    // 800 × 2.50 + 200 × 1.25 + 666 × 10.00 = 2,000 + 250 + 6,660 = 8,910 micros.
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(v["spent"], "0.00891");
    assert_eq!(v["available"], "99.99109");
}

async fn an_unknown_model_or_bad_request_is_refused_before_anything_is_held(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let mut req = chat_request();
    req["model"] = json!("gpt-imaginary");
    let resp = app.chat(&key, &req).await;
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(body(resp).await["error"]["code"], "model_not_found");

    let cases = [
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "model",
        ),
        (json!({"model": MODEL, "messages": []}), "messages"),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 0}),
            "n",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}),
            "max_tokens",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}),
            "stream",
        ),
    ];
    for (req, param) in cases {
        let resp = app.chat(&key, &req).await;
        assert_eq!(resp.status().as_u16(), 400, "{req}");
        let e = body(resp).await;
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["param"], param, "{e}");
    }
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = app
        .client
        .post(app.url("/v1/embeddingz"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(body(resp).await["error"]["code"], "unknown_url");

    assert!(app.upstream.received().is_empty());
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(
        (v["spent"].as_str(), v["held"].as_str()),
        (Some("0.00"), Some("0.00"))
    );
    let txs = body(
        app.get(
            &format!("/api/v1/vouchers/{voucher_id}/transactions"),
            &owner,
        )
        .await,
    )
    .await;
    assert_eq!(txs["data"].as_array().unwrap().len(), 1, "only the grant");
}

async fn a_request_the_voucher_cannot_cover_gets_insufficient_quota_and_is_not_forwarded(
    app: TestApp,
) {
    // £0.01 = 10,000 micros: the 4,400-character prompt's bound alone costs more.
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "0.01").await;
    let resp = app.chat(&key, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 429);
    let e = body(resp).await;
    assert_eq!(e["error"]["type"], "insufficient_quota");
    assert_eq!(e["error"]["code"], "insufficient_quota");
    assert!(app.upstream.received().is_empty());
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(v["available"], "0.01");
}

async fn an_unbounded_request_is_capped_to_what_the_voucher_affords(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "0.001").await;
    app.upstream.set_reply(Reply {
        prompt_tokens: 10,
        cached_tokens: 0,
        completion_tokens: 5_000,
        ..Reply::default()
    });
    let resp = app.chat(&key, &short_chat_request(None)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let completion = body(resp).await;
    let forwarded = app.upstream.received()[0].body.clone();
    let cap = forwarded["max_completion_tokens"]
        .as_u64()
        .expect("a cap was added");
    // The whole voucher (1,000 micros) after the prompt's worst case buys fewer than 100
    // output tokens at £10 per million; the provider stopped there.
    assert!(cap > 0 && cap < 100, "{cap}");
    assert_eq!(completion["usage"]["completion_tokens"], cap);
    assert_eq!(completion["choices"][0]["finish_reason"], "length");
    let spent_micros = 25 + 10 * cap as i64; // ceil(10 × 2.5) + cap × 10
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(
        v["spent"],
        voucherd_domain::money::format_micros(spent_micros)
    );
    assert_eq!(
        v["available"],
        voucherd_domain::money::format_micros(1_000 - spent_micros)
    );
    assert_eq!(v["held"], "0.00");
}

async fn many_concurrent_requests_never_overspend_a_small_voucher(app: TestApp) {
    // Each request may cost up to ≈ £0.0015; the voucher holds £0.005: a handful fit.
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "0.005").await;
    app.upstream.set_reply(Reply {
        prompt_tokens: 40,
        cached_tokens: 0,
        completion_tokens: 100,
        ..Reply::default()
    });
    let req = short_chat_request(Some(100));
    let ok = fire(&app, &[app.url("/v1/chat/completions")], &key, &req, 500).await;
    // Late requests are capped to what is left, so each served request costs exactly
    // 40 × 2.5 + its completion tokens × 10 micros, and together no more than the voucher.
    let v = app.voucher(&owner, &voucher_id).await;
    let micros = |s: &serde_json::Value| {
        voucherd_domain::Money::parse(s.as_str().unwrap())
            .unwrap()
            .micros()
    };
    let total = short_usage_total(&app, &owner, &voucher_id, ok).await;
    assert!(ok >= 1);
    assert_eq!(micros(&v["spent"]), total);
    assert!(total <= 5_000, "{total}");
    assert_eq!(micros(&v["available"]), 5_000 - total);
    assert_eq!(v["held"], "0.00");
    assert_eq!(app.upstream.received().len() as i64, ok);
    app.store.verify_ledger().await.unwrap();
}

async fn upstream_errors_pass_through_and_bill_nothing(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    app.upstream.set_reply(Reply {
        status: 500,
        ..Reply::default()
    });
    let resp = app.chat(&key, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 500);
    assert_eq!(body(resp).await["error"]["type"], "server_error");
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(
        (
            v["spent"].as_str(),
            v["held"].as_str(),
            v["available"].as_str()
        ),
        (Some("0.00"), Some("0.00"), Some("100.00"))
    );
    app.store.verify_ledger().await.unwrap();
}

async fn an_answer_without_usage_is_billed_at_its_bound(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    app.upstream.set_reply(Reply {
        include_usage: false,
        ..Reply::default()
    });
    assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    let usage = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), &owner)
            .await,
    )
    .await;
    let row = &usage["data"][0];
    assert_eq!(row["completion_tokens"], 400, "the request's own bound");
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(v["spent"], row["cost"]);
    assert_eq!(v["held"], "0.00");
}

#[tokio::test]
async fn an_unreachable_upstream_gives_502_and_releases_the_hold() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app =
            spawn_app_with(backend, |c| c.upstream_url = "http://127.0.0.1:9/v1".into()).await;
        let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
        let resp = app.chat(&key, &chat_request()).await;
        assert_eq!(resp.status().as_u16(), 502);
        assert_eq!(body(resp).await["error"]["code"], "upstream_unreachable");
        let v = app.voucher(&owner, &voucher_id).await;
        assert_eq!(
            (v["spent"].as_str(), v["held"].as_str()),
            (Some("0.00"), Some("0.00"))
        );
        app.store.verify_ledger().await.unwrap();
    }
}

#[tokio::test]
async fn two_proxy_instances_spending_one_voucher_never_overspend() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = spawn_app(backend).await;
        let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "0.01").await;
        app.upstream.set_reply(Reply {
            prompt_tokens: 40,
            cached_tokens: 0,
            completion_tokens: 100,
            ..Reply::default()
        });
        let other = another_instance(&app, voucherd::Role::Proxy, |_| {});
        let req = short_chat_request(Some(100));
        let ok = fire(
            &app,
            &[
                app.url("/v1/chat/completions"),
                other.url("/v1/chat/completions"),
            ],
            &key,
            &req,
            40,
        )
        .await;
        let v = app.voucher(&owner, &voucher_id).await;
        let spent = voucherd_domain::Money::parse(v["spent"].as_str().unwrap())
            .unwrap()
            .micros();
        assert!(ok >= 1 && spent <= 10_000, "{ok} served, {spent} spent");
        assert_eq!(v["held"], "0.00");
        let usage = body(
            app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), &owner)
                .await,
        )
        .await;
        let total: i64 = usage["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                voucherd_domain::Money::parse(r["cost"].as_str().unwrap())
                    .unwrap()
                    .micros()
            })
            .sum();
        assert_eq!(total, spent);
        assert_eq!(usage["data"].as_array().unwrap().len() as i64, ok);
        app.store.verify_ledger().await.unwrap();
    }
}
