//! Streaming chat completions: passed through as they arrive, billed from the provider's
//! reported usage, settled before the final `[DONE]`, and billed for what was streamed when
//! the client leaves early.

use crate::helpers::*;
use crate::upstream::Reply;
use futures_util::StreamExt;
use serde_json::{json, Value};
use voucherd_domain::money::format_micros;
use voucherd_domain::pricing::TokenUsage;

on_both_backends!(
    a_stream_is_passed_through_and_billed_from_the_usage_the_proxy_asked_for,
    a_client_that_asked_for_usage_receives_it_and_its_request_is_forwarded_unchanged,
    a_client_that_disconnects_mid_stream_is_billed_for_what_was_streamed,
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

async fn a_client_that_disconnects_mid_stream_is_billed_for_what_was_streamed(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    app.upstream.set_reply(Reply {
        stall_after: Some(5),
        ..Reply::default()
    });
    let mut req = chat_request();
    req["stream"] = json!(true);
    let resp = app.chat(&key, &req).await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut body_stream = resp.bytes_stream();
    let mut seen = String::new();
    while seen.matches("tok ").count() < 5 {
        let chunk = body_stream.next().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    drop(body_stream);

    // Wait (bounded) for the proxy to notice, close the upstream and settle.
    let mut settled = None;
    for _ in 0..500 {
        let v = app.voucher(&owner, &voucher_id).await;
        if app.upstream.streams_cut() == 1 && v["held"] == "0.00" {
            settled = Some(v);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let v = settled.expect("the stream was cut and settled");
    // Five output tokens were streamed; the prompt is counted at four bytes a token.
    let prompt_bound = serde_json::to_vec(&req).unwrap().len() as u64 + 8 * 2 + 16;
    let expected = rates("2.50", "1.25", "10.00").cost(TokenUsage {
        prompt_tokens: prompt_bound.div_ceil(4),
        cached_prompt_tokens: 0,
        completion_tokens: 5,
    });
    assert_eq!(v["spent"], format_micros(expected.micros()));
    let usage = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), &owner)
            .await,
    )
    .await;
    assert_eq!(usage["data"][0]["completion_tokens"], 5);
    app.store.verify_ledger().await.unwrap();
}
