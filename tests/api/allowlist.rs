//! What the proxy forwards: fields, items and tools whose cost the hold does not cover are
//! refused before anything is held or forwarded; `store` and `service_tier` are rewritten.

use crate::helpers::*;
use serde_json::{json, Value};
use voucherd_store::Backend;

on_both_backends!(
    what_the_hold_does_not_cover_is_refused_and_nothing_is_forwarded_or_billed,
    a_responses_request_asking_to_be_stored_is_forwarded_with_store_false,
    service_tier_auto_is_forwarded_as_default,
    a_request_with_function_tools_is_served_and_billed_as_before,
);

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

async fn what_the_hold_does_not_cover_is_refused_and_nothing_is_forwarded_or_billed(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let cases = [
        (
            "/v1/responses",
            json!({"model": MODEL, "input": [{"type": "item_reference", "id": "msg_123"}]}),
            "input[0].type",
        ),
        (
            "/v1/responses",
            json!({"model": MODEL, "input": [{"role": "user", "content": "hi"}, {"id": "msg_123"}]}),
            "input[1].type",
        ),
        (
            "/v1/responses",
            json!({"model": MODEL, "input": "hi", "tool_choice": {"type": "file_search"}}),
            "tool_choice.type",
        ),
        (
            "/v1/responses",
            json!({"model": MODEL, "input": "hi", "include": ["file_search_call.results"]}),
            "include[0]",
        ),
        (
            "/v1/responses",
            json!({"model": MODEL, "input": "hi", "previous_response_id": "resp_123"}),
            "previous_response_id",
        ),
        (
            "/v1/responses",
            json!({"model": MODEL, "input": "hi", "service_tier": "flex"}),
            "service_tier",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": user("hi"), "service_tier": "priority"}),
            "service_tier",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": user("hi"), "service_tier": "scale"}),
            "service_tier",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": user("hi"),
                   "prediction": {"type": "content", "content": "a long predicted answer"}}),
            "prediction",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": user("hi"), "audio": {"voice": "alloy", "format": "wav"},
                   "modalities": ["text", "audio"]}),
            "audio",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": user("hi"), "modalities": ["audio"]}),
            "modalities[0]",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": user("hi"), "web_search_options": {}}),
            "web_search_options",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": user("hi"), "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"},
                   {"role": "assistant", "audio": {"id": "audio_123"}}]}),
            "messages[1].audio",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": user("hi"), "store": true}),
            "store",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": user("hi"), "a_field_from_next_year": true}),
            "a_field_from_next_year",
        ),
        (
            "/v1/embeddings",
            json!({"model": MODEL, "input": "hi", "encoding_format": "int8"}),
            "encoding_format",
        ),
    ];
    for (path, req, param) in cases {
        let resp = app
            .client
            .post(app.url(path))
            .bearer_auth(&key)
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{path} {req}");
        let e = body(resp).await;
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert_eq!(e["error"]["code"], "unsupported_parameter", "{e}");
        assert_eq!(e["error"]["param"], param, "{path} {req}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("not supported") || m.contains("may only be")),
            "{e}"
        );
    }
    assert!(app.upstream.received().is_empty(), "nothing forwarded");
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(
        (v["held"].as_str(), v["spent"].as_str()),
        (Some("0.00"), Some("0.00"))
    );
}

async fn a_responses_request_asking_to_be_stored_is_forwarded_with_store_false(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let req = json!({"model": MODEL, "input": "Customers may return goods within 30 days. ".repeat(100),
                     "store": true, "max_output_tokens": 400});
    let resp = app
        .client
        .post(app.url("/v1/responses"))
        .bearer_auth(&key)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut expected = req.clone();
    expected["store"] = json!(false);
    assert_eq!(app.upstream.received()[0].body, expected);
    // Billed as any request: 800 × 2.50 + 200 × 1.25 + 333 × 10.00 = 5,580 micros.
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(
        (v["spent"].as_str(), v["held"].as_str()),
        (Some("0.00558"), Some("0.00"))
    );
}

async fn service_tier_auto_is_forwarded_as_default(app: TestApp) {
    let (_owner, _voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let mut req = chat_request();
    req["service_tier"] = json!("auto");
    assert_eq!(app.chat(&key, &req).await.status().as_u16(), 200);
    let mut expected = req.clone();
    expected["service_tier"] = json!("default");
    assert_eq!(app.upstream.received()[0].body, expected);
    let req = json!({"model": MODEL, "input": "hi", "max_output_tokens": 20, "store": false,
                     "service_tier": "auto"});
    let resp = app
        .client
        .post(app.url("/v1/responses"))
        .bearer_auth(&key)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut expected = req.clone();
    expected["service_tier"] = json!("default");
    assert_eq!(app.upstream.received()[1].body, expected);
}

async fn a_request_with_function_tools_is_served_and_billed_as_before(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let mut req = chat_request();
    req["tools"] = json!([{"type": "function", "function": {"name": "lookup_policy",
        "description": "Finds a policy by name.",
        "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}]);
    req["tool_choice"] = json!("auto");
    req["temperature"] = json!(0.2);
    req["service_tier"] = json!("default");
    req["metadata"] = json!({"team": "support"});
    let resp = app.chat(&key, &req).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["usage"]["completion_tokens"], 333);
    assert_eq!(app.upstream.received()[0].body, req, "forwarded unchanged");
    // 800 × 2.50 + 200 × 1.25 + 333 × 10.00 = 5,580 micros, as without tools.
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(
        (v["spent"].as_str(), v["held"].as_str()),
        (Some("0.00558"), Some("0.00"))
    );
}

/// With `allow_provider_storage` on, the client's `store` stands on both surfaces.
#[tokio::test]
async fn storage_the_programme_allows_is_the_clients_choice() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = spawn_app_with(backend, |c| c.allow_provider_storage = true).await;
        let (_owner, _voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
        let mut chat = chat_request();
        chat["store"] = json!(true);
        assert_eq!(app.chat(&key, &chat).await.status().as_u16(), 200);
        assert_eq!(app.upstream.received()[0].body, chat);
        let req = json!({"model": MODEL, "input": "hi", "max_output_tokens": 20, "store": true});
        let resp = app
            .client
            .post(app.url("/v1/responses"))
            .bearer_auth(&key)
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(app.upstream.received()[1].body, req);
    }
}
