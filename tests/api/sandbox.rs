//! Test-mode keys: answered by the built-in sandbox, metered and priced like live calls, and
//! paid from the organisation's free test allowance, never from the voucher.

use crate::helpers::*;
use serde_json::json;

on_both_backends!(
    a_test_key_is_answered_by_the_sandbox_and_spends_the_test_allowance,
    sandbox_streams_and_error_models_behave_like_the_provider,
    a_body_the_sandbox_cannot_read_is_refused_like_the_provider_refuses_it,
);

/// Called directly with a body it cannot read, the sandbox answers as the provider would: an
/// OpenAI-style error in JSON, not a framework's plain text.
async fn a_body_the_sandbox_cannot_read_is_refused_like_the_provider_refuses_it(app: TestApp) {
    for (content_type, payload, status) in [
        ("application/json", "{\"model\": ", 400),
        ("text/plain", "{}", 415),
    ] {
        let resp = app
            .client
            .post(app.url("/sandbox/v1/chat/completions"))
            .header("content-type", content_type)
            .body(payload)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{content_type}");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        let b = body(resp).await;
        assert_eq!(b["error"]["type"], "invalid_request_error", "{b}");
        assert!(b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("The body could not be read as JSON"));
    }
}

async fn test_key(app: &TestApp, owner: &str, voucher_id: &str) -> String {
    let resp = app
        .post(
            &format!("/api/v1/vouchers/{voucher_id}/keys"),
            owner,
            &json!({"name": "ci", "mode": "test"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let k = body(resp).await;
    assert_eq!(k["mode"], "test");
    k["key"].as_str().unwrap().to_string()
}

async fn a_test_key_is_answered_by_the_sandbox_and_spends_the_test_allowance(app: TestApp) {
    let (owner, voucher_id, _) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let key = test_key(&app, &owner, &voucher_id).await;
    assert!(key.starts_with("vk_test_"));
    let resp = app.chat(&key, &short_chat_request(None)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let b = body(resp).await;
    assert!(b["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("This is a sandbox reply"));
    let usage = &b["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(
        app.upstream.received().is_empty(),
        "the provider was never called"
    );
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(
        (v["spent"].as_str(), v["held"].as_str()),
        (Some("0.00"), Some("0.00"))
    );
    // Priced like a live call, from the free allowance (£5 by default).
    let cost = rates("2.50", "1.25", "10.00").cost(voucherd_domain::pricing::TokenUsage {
        prompt_tokens: usage["prompt_tokens"].as_u64().unwrap(),
        cached_prompt_tokens: 0,
        completion_tokens: usage["completion_tokens"].as_u64().unwrap(),
    });
    let me = body(app.get("/api/v1/me", &owner).await).await;
    let allowance = app
        .store
        .account(format!("test-allowance-{}", me["id"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(allowance.credits_posted, 5_000_000);
    assert_eq!(allowance.debits_posted, cost.micros());
    let rows = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), &owner)
            .await,
    )
    .await;
    assert_eq!(
        rows["data"][0]["cost"],
        voucherd_domain::money::format_micros(cost.micros())
    );
    // Test-mode usage is not programme spending: no rollup counts it.
    let today = voucherd_store::now().date();
    assert!(app
        .store
        .usage_daily(Some(voucher_id.clone()), today, today)
        .await
        .unwrap()
        .is_empty());
    app.store.verify_ledger().await.unwrap();
}

async fn sandbox_streams_and_error_models_behave_like_the_provider(app: TestApp) {
    let (owner, voucher_id, _) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let key = test_key(&app, &owner, &voucher_id).await;
    let mut req = short_chat_request(Some(5));
    req["stream"] = json!(true);
    let text = app.chat(&key, &req).await.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    // Role chunk, five one-word chunks, finish chunk, [DONE]; the usage chunk it did not ask for is hidden.
    assert_eq!(events.len(), 8, "{text}");
    assert_eq!(events[7], "data: [DONE]");
    assert!(text.contains("\"finish_reason\":\"length\""));

    let mut failing = short_chat_request(None);
    failing["metadata"] = json!({"sandbox_error": "429"});
    let resp = app.chat(&key, &failing).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(body(resp).await["error"]["code"], "rate_limit_exceeded");
    failing["metadata"] = json!({"sandbox_error": "500"});
    assert_eq!(app.chat(&key, &failing).await.status().as_u16(), 500);

    let embed = app
        .client
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&key)
        .json(&json!({"model": MODEL, "input": ["a", "a", "b"]}))
        .send()
        .await
        .unwrap();
    let e = body(embed).await;
    assert_eq!(
        e["data"][0]["embedding"], e["data"][1]["embedding"],
        "deterministic"
    );
    assert_ne!(e["data"][0]["embedding"], e["data"][2]["embedding"]);

    // Nobody reaches the sandbox but the proxy.
    let direct = app
        .client
        .post(app.url("/sandbox/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&short_chat_request(None))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status().as_u16(), 401);
    assert_eq!(app.voucher(&owner, &voucher_id).await["spent"], "0.00");
}
