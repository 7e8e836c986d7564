//! The other OpenAI surfaces: the Responses API (plain and streaming), embeddings, models.

use crate::helpers::*;
use crate::upstream::Reply;
use serde_json::json;

on_both_backends!(
    the_responses_api_is_metered_from_input_and_output_tokens,
    a_responses_stream_is_settled_before_its_completed_event,
    embeddings_are_billed_for_input_only,
    models_lists_the_priced_models_for_a_valid_key,
    responses_inputs_the_proxy_cannot_bound_are_refused,
);

async fn the_responses_api_is_metered_from_input_and_output_tokens(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let req = json!({"model": MODEL, "input": "Customers may return goods within 30 days. ".repeat(100), "max_output_tokens": 400});
    let resp = app
        .client
        .post(app.url("/v1/responses"))
        .bearer_auth(&key)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let b = body(resp).await;
    assert_eq!(b["object"], "response");
    assert_eq!(b["usage"]["output_tokens"], 333);
    // Same usage as the chat case: 800 × 2.50 + 200 × 1.25 + 333 × 10.00 = 5,580 micros.
    assert_eq!(app.voucher(&owner, &voucher_id).await["spent"], "0.00558");
    // Forwarded as sent, except that the provider keeps nothing (`store` defaults to true).
    let mut forwarded = req.clone();
    forwarded["store"] = json!(false);
    assert_eq!(app.upstream.received()[0].body, forwarded);
}

async fn a_responses_stream_is_settled_before_its_completed_event(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    app.upstream.set_reply(Reply {
        prompt_tokens: 50,
        cached_tokens: 0,
        completion_tokens: 20,
        ..Reply::default()
    });
    let req =
        json!({"model": MODEL, "input": "Say hello to the whole team, please.", "stream": true});
    let resp = app
        .client
        .post(app.url("/v1/responses"))
        .bearer_auth(&key)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 1 + 20 + 1);
    assert!(events
        .last()
        .unwrap()
        .starts_with("event: response.completed\n"));
    // The proxy capped the unbounded request to what the voucher affords.
    assert!(app.upstream.received()[0].body["max_output_tokens"]
        .as_u64()
        .is_some());
    // 50 × 2.50 + 20 × 10.00 = 325 micros, committed before the completed event was sent.
    let usage = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), &owner)
            .await,
    )
    .await;
    assert_eq!(usage["data"][0]["cost"], "0.000325");
    assert_eq!(app.voucher(&owner, &voucher_id).await["held"], "0.00");
}

async fn embeddings_are_billed_for_input_only(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    app.upstream.set_reply(Reply {
        prompt_tokens: 12,
        ..Reply::default()
    });
    let req = json!({"model": MODEL, "input": ["first document text", "second document text"]});
    let resp = app
        .client
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&key)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["data"].as_array().unwrap().len(), 2);
    // ceil(12 × 2.50) = 30 micros.
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(
        (v["spent"].as_str(), v["held"].as_str()),
        (Some("0.00003"), Some("0.00"))
    );
    let resp = app
        .client
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&key)
        .json(&json!({"model": MODEL}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(body(resp).await["error"]["param"], "input");
}

async fn models_lists_the_priced_models_for_a_valid_key(app: TestApp) {
    let (_owner, _voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let resp = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let b = body(resp).await;
    assert_eq!(b["object"], "list");
    assert_eq!(b["data"][0]["id"], MODEL);
    assert_eq!(b["data"][0]["pricing"]["output_per_million"], "10.00");
    let resp = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth("vk_live_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

async fn responses_inputs_the_proxy_cannot_bound_are_refused(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    for (req, param) in [
        (
            json!({"model": MODEL, "input": "hi", "previous_response_id": "resp_123"}),
            "previous_response_id",
        ),
        (
            json!({"model": MODEL, "input": "hi", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (json!({"model": MODEL}), "input"),
    ] {
        let resp = app
            .client
            .post(app.url("/v1/responses"))
            .bearer_auth(&key)
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{req}");
        assert_eq!(body(resp).await["error"]["param"], param);
    }
    assert!(app.upstream.received().is_empty());
    assert_eq!(app.voucher(&owner, &voucher_id).await["held"], "0.00");
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_cost() {
    let app = spawn_app(voucherd_store::Backend::Sqlite).await;
    let (_owner, _voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has(
            r#"voucherd_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(r#"voucherd_proxy_tokens_total{kind="completion",model="test-model"} 333"#),
        "{text}"
    );
    assert!(has(
        r#"voucherd_proxy_tokens_total{kind="cached",model="test-model"} 200"#
    ));
    assert!(has(
        r#"voucherd_proxy_cost_micros_total{model="test-model"} 5580"#
    ));
    assert!(has("voucherd_proxy_holds_outstanding 0"));
    assert!(text
        .contains(r#"voucherd_http_request_duration_seconds_bucket{route="/v1/chat/completions""#));
}
