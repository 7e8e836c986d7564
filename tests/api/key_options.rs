//! Per-key options: allowed models, rate and concurrency limits, a monthly spend cap, expiry,
//! rotation, and revocation reaching every instance.

use crate::helpers::*;
use crate::upstream::Reply;
use futures_util::StreamExt;
use serde_json::{json, Value};

on_both_backends!(
    a_key_may_use_only_its_allowed_models,
    requests_per_minute_are_limited_with_retry_after,
    concurrent_requests_are_capped_per_key,
    a_monthly_spend_cap_stops_a_key_but_not_the_voucher,
    a_rotated_key_works_until_its_grace_ends_and_bad_options_are_refused,
    a_key_revoked_on_one_instance_stops_on_another,
);

async fn key_with(app: &TestApp, owner: &str, voucher_id: &str, options: Value) -> String {
    let mut body = json!({"name": "limited"});
    body.as_object_mut()
        .unwrap()
        .extend(options.as_object().unwrap().clone());
    let resp = app
        .post(&format!("/api/v1/vouchers/{voucher_id}/keys"), owner, &body)
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    body_of(resp).await["key"].as_str().unwrap().to_string()
}

async fn body_of(resp: reqwest::Response) -> Value {
    body(resp).await
}

async fn a_key_may_use_only_its_allowed_models(app: TestApp) {
    let (owner, voucher_id, _) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let other = key_with(
        &app,
        &owner,
        &voucher_id,
        json!({"allowed_models": ["some-other-model"]}),
    )
    .await;
    let resp = app.chat(&other, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(body(resp).await["error"]["code"], "model_not_allowed");
    let models = body(
        app.client
            .get(app.url("/v1/models"))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(models["data"], json!([]));
    let allowed = key_with(
        &app,
        &owner,
        &voucher_id,
        json!({"allowed_models": [MODEL]}),
    )
    .await;
    assert_eq!(
        app.chat(&allowed, &chat_request()).await.status().as_u16(),
        200
    );
    assert_eq!(app.upstream.received().len(), 1);
}

async fn requests_per_minute_are_limited_with_retry_after(app: TestApp) {
    let (owner, voucher_id, _) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let key = key_with(&app, &owner, &voucher_id, json!({"rpm": 2})).await;
    for _ in 0..2 {
        assert_eq!(
            app.chat(&key, &short_chat_request(Some(10)))
                .await
                .status()
                .as_u16(),
            200
        );
    }
    let resp = app.chat(&key, &short_chat_request(Some(10))).await;
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(body(resp).await["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        app.upstream.received().len(),
        2,
        "the limited request was not forwarded"
    );
    assert_eq!(app.voucher(&owner, &voucher_id).await["held"], "0.00");
}

async fn concurrent_requests_are_capped_per_key(app: TestApp) {
    let (owner, voucher_id, _) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let key = key_with(&app, &owner, &voucher_id, json!({"max_concurrent": 1})).await;
    app.upstream.set_reply(Reply {
        stall_after: Some(2),
        ..Reply::default()
    });
    let mut req = chat_request();
    req["stream"] = json!(true);
    let first = app.chat(&key, &req).await;
    assert_eq!(first.status().as_u16(), 200);
    let mut first = first.bytes_stream();
    first.next().await.unwrap().unwrap();
    let second = app.chat(&key, &short_chat_request(Some(10))).await;
    assert_eq!(second.status().as_u16(), 429);
    assert_eq!(body(second).await["error"]["code"], "rate_limit_exceeded");
    drop(first);
    // Once the first is settled its slot is free again (bounded wait).
    app.upstream.set_reply(Reply::default());
    let mut status = 0;
    for _ in 0..250 {
        status = app
            .chat(&key, &short_chat_request(Some(10)))
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
}

async fn a_monthly_spend_cap_stops_a_key_but_not_the_voucher(app: TestApp) {
    let (owner, voucher_id, unlimited) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    // Each call costs 40 × 2.50 + 100 × 10.00 = 1,100 micros; the cap is 4,000.
    app.upstream.set_reply(Reply {
        prompt_tokens: 40,
        cached_tokens: 0,
        completion_tokens: 100,
        ..Reply::default()
    });
    let capped = key_with(
        &app,
        &owner,
        &voucher_id,
        json!({"monthly_spend_cap": "0.004"}),
    )
    .await;
    let mut served = 0;
    let refusal = loop {
        let resp = app.chat(&capped, &short_chat_request(Some(100))).await;
        if resp.status().as_u16() != 200 {
            break resp;
        }
        served += 1;
        assert!(served <= 4, "the cap did not stop the key");
    };
    assert_eq!(refusal.status().as_u16(), 429);
    let e = body(refusal).await;
    assert_eq!(e["error"]["code"], "insufficient_quota");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("monthly spend cap"));
    // Three fit: after 3,300 spent, a fourth request's hold (≈ 1,250) would pass 4,000.
    assert_eq!(served, 3);
    assert_eq!(app.voucher(&owner, &voucher_id).await["spent"], "0.0033");
    // The voucher itself still pays for the key without a cap.
    assert_eq!(
        app.chat(&unlimited, &short_chat_request(Some(100)))
            .await
            .status()
            .as_u16(),
        200
    );
    app.store.verify_ledger().await.unwrap();
}

async fn a_rotated_key_works_until_its_grace_ends_and_bad_options_are_refused(app: TestApp) {
    let (owner, voucher_id, old) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let keys = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/keys"), &owner)
            .await,
    )
    .await;
    let old_id = keys["data"][0]["id"].as_str().unwrap().to_string();
    let resp = app
        .post(
            &format!("/api/v1/keys/{old_id}/rotate"),
            &owner,
            &json!({"grace_seconds": 600}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let new = body(resp).await;
    let new_key = new["key"].as_str().unwrap().to_string();
    assert_ne!(new_key, old);
    // Within the grace period both work, on the one voucher.
    assert_eq!(app.chat(&old, &chat_request()).await.status().as_u16(), 200);
    assert_eq!(
        app.chat(&new_key, &chat_request()).await.status().as_u16(),
        200
    );
    assert_eq!(app.voucher(&owner, &voucher_id).await["spent"], "0.01116");
    let again = app
        .post(&format!("/api/v1/keys/{old_id}/rotate"), &owner, &json!({}))
        .await;
    assert_problem(again, 409, "key_not_rotatable").await;

    // With no grace the old key stops at once.
    let new_id = new["id"].as_str().unwrap();
    let resp = app
        .post(
            &format!("/api/v1/keys/{new_id}/rotate"),
            &owner,
            &json!({"grace_seconds": 0}),
        )
        .await;
    let newest = body(resp).await["key"].as_str().unwrap().to_string();
    let resp = app.chat(&new_key, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        body(resp).await["error"]["message"],
        "This API key has expired."
    );
    assert_eq!(
        app.chat(&newest, &chat_request()).await.status().as_u16(),
        200
    );

    for (options, field) in [
        (json!({"expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        (json!({"rpm": 0}), "rpm"),
        (json!({"allowed_models": ["bad model"]}), "allowed_models"),
        (json!({"monthly_spend_cap": "0"}), "monthly_spend_cap"),
        (json!({"mode": "prod"}), "mode"),
    ] {
        let mut b = json!({"name": "x"});
        b.as_object_mut()
            .unwrap()
            .extend(options.as_object().unwrap().clone());
        let p = assert_problem(
            app.post(&format!("/api/v1/vouchers/{voucher_id}/keys"), &owner, &b)
                .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(fields(&p), [field], "{b}");
    }
}

async fn a_key_revoked_on_one_instance_stops_on_another(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let other = another_instance(&app, voucherd::Role::Proxy, |c| c.key_cache_ttl_ms = 200);
    let call = || {
        app.client
            .post(other.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_request())
            .send()
    };
    assert_eq!(
        call().await.unwrap().status().as_u16(),
        200,
        "the other instance now caches the key"
    );
    let key_id = app.first_key_id(&owner, &voucher_id).await;
    let resp = app.revoke_key(&owner, &key_id).await;
    assert_eq!(resp.status().as_u16(), 204);
    // On this instance at once; on the other once its cache entry lapses (bounded wait).
    assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 401);
    let mut status = 0;
    for _ in 0..100 {
        status = call().await.unwrap().status().as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 401);
}
