//! Streaming chat completions: passed through as they arrive, billed from the provider's
//! reported usage and settled before the final `[DONE]`. (A client that leaves early:
//! `provider_billing.rs`.)

use crate::helpers::*;
use serde_json::{json, Value};

on_both_backends!(
    a_stream_is_passed_through_and_billed_from_the_usage_the_proxy_asked_for,
    a_client_that_asked_for_usage_receives_it_and_its_request_is_forwarded_unchanged,
);

fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

fn data(event: &str) -> Value {
    let d = event.strip_prefix("data: ").unwrap();
    serde_json::from_str(d).unwrap_or(Value::String(d.to_string()))
}

async fn a_stream_is_passed_through_and_billed_from_the_usage_the_proxy_asked_for(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let mut req = chat_request();
    req["stream"] = json!(true);
    let resp = app.chat(&key, &req).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let evs = events(&text);
    assert_eq!(evs.last().unwrap(), "data: [DONE]");
    // Role chunk, 333 token chunks, finish chunk — and not the usage chunk it did not ask for.
    assert_eq!(evs.len(), 1 + 333 + 1 + 1);
    assert!(evs.iter().all(
        |e| e == "data: [DONE]" || data(e)["choices"].as_array().is_some_and(|c| !c.is_empty())
    ));
    let content: String = evs[..evs.len() - 1]
        .iter()
        .map(|e| {
            data(e)["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(content, "tok ".repeat(333));

    let forwarded = &app.upstream.received()[0].body;
    assert_eq!(forwarded["stream_options"]["include_usage"], true);
    // Settled before [DONE] reached the client: the usage is there already.
    let usage = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), &owner)
            .await,
    )
    .await;
    assert_eq!(usage["data"][0]["cost"], "0.00558");
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(
        (v["spent"].as_str(), v["held"].as_str()),
        (Some("0.00558"), Some("0.00"))
    );
}

async fn a_client_that_asked_for_usage_receives_it_and_its_request_is_forwarded_unchanged(
    app: TestApp,
) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let mut req = chat_request();
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let text = app.chat(&key, &req).await.text().await.unwrap();
    let evs = events(&text);
    let usage_chunk = data(&evs[evs.len() - 2]);
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 333);
    assert_eq!(app.upstream.received()[0].body, req);
    assert_eq!(app.voucher(&owner, &voucher_id).await["spent"], "0.00558");
}
