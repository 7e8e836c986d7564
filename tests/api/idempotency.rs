//! Exactly once: a retry with the same `Idempotency-Key` gets the first answer back and is
//! neither forwarded nor billed again.

use crate::helpers::*;
use serde_json::json;

on_both_backends!(
    a_retried_request_is_answered_again_and_billed_once,
    a_retried_stream_is_replayed_and_a_failed_request_may_be_retried,
);

async fn send(app: &TestApp, key: &str, idem: &str, req: &serde_json::Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("idempotency-key", idem)
        .json(req)
        .send()
        .await
        .unwrap()
}

async fn a_retried_request_is_answered_again_and_billed_once(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let first = send(&app, &key, "retry-1", &chat_request()).await;
    assert_eq!(first.status().as_u16(), 200);
    let first = first.text().await.unwrap();
    let again = send(&app, &key, "retry-1", &chat_request()).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first);
    assert_eq!(app.upstream.received().len(), 1, "forwarded once");
    assert_eq!(
        app.voucher(&owner, &voucher_id).await["spent"],
        "0.00558",
        "billed once"
    );

    // The same key with another body is a mistake, not a retry.
    let mut other = chat_request();
    other["max_completion_tokens"] = json!(5);
    let resp = send(&app, &key, "retry-1", &other).await;
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(body(resp).await["error"]["code"], "idempotency_key_reused");
    // A new key is a new request.
    assert_eq!(
        send(&app, &key, "retry-2", &chat_request())
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(app.voucher(&owner, &voucher_id).await["spent"], "0.01116");
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("idempotency-key", "")
        .json(&chat_request())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

async fn a_retried_stream_is_replayed_and_a_failed_request_may_be_retried(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let mut req = chat_request();
    req["stream"] = json!(true);
    let first = send(&app, &key, "stream-1", &req)
        .await
        .text()
        .await
        .unwrap();
    assert!(first.ends_with("data: [DONE]\n\n"));
    let again = send(&app, &key, "stream-1", &req).await;
    assert_eq!(again.headers()["content-type"], "text/event-stream");
    assert_eq!(again.text().await.unwrap(), first);
    assert_eq!(app.voucher(&owner, &voucher_id).await["spent"], "0.00558");

    // An upstream failure is not kept: the retry runs and is billed.
    app.upstream.set_reply(crate::upstream::Reply {
        status: 500,
        ..Default::default()
    });
    assert_eq!(
        send(&app, &key, "flaky-1", &chat_request())
            .await
            .status()
            .as_u16(),
        500
    );
    app.upstream.set_reply(crate::upstream::Reply::default());
    let retry = send(&app, &key, "flaky-1", &chat_request()).await;
    assert_eq!(retry.status().as_u16(), 200);
    assert!(retry.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.voucher(&owner, &voucher_id).await["spent"], "0.01116");
}
