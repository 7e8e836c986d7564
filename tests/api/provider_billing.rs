//! The proxy bills what the provider bills and leaks nothing of the programme's account: a
//! client that leaves mid-stream (or mid-answer) is billed the provider's own count, an
//! upstream that fails without usage the held bound; the provider's errors reach clients
//! without its organisation, project or key, and a refusal of the programme's credentials is a
//! 502 and an alert, not an invalid key; usage above a hold is shown, told and, past the
//! threshold, suspends the key.

use crate::helpers::*;
use crate::upstream::Reply;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use voucherd_domain::money::format_micros;
use voucherd_domain::pricing::TokenUsage;
use voucherd_store::Backend;

on_both_backends!(
    a_client_that_leaves_a_reasoning_stream_is_billed_the_providers_count,
    a_client_that_gives_up_on_a_plain_answer_is_billed_the_providers_count,
    a_refusal_of_the_programmes_credentials_is_a_502_and_one_alert_naming_no_account,
    the_providers_other_errors_keep_their_status_without_the_programmes_account,
    usage_above_its_hold_is_shown_told_once_a_day_and_suspends_the_key_past_the_threshold,
);

fn programme_rates() -> voucherd_domain::pricing::PriceRates {
    rates("2.50", "1.25", "10.00")
}

/// The tokens the proxy bounds a chat request's prompt by: its bytes, plus framing.
fn prompt_bound(req: &Value) -> u64 {
    let messages = req["messages"].as_array().unwrap().len() as u64;
    serde_json::to_vec(req).unwrap().len() as u64 + 8 * messages + 16
}

/// Polls (bounded) until nothing of the voucher is held; returns the voucher.
async fn settled(app: &TestApp, owner: &str, voucher_id: &str) -> Value {
    for _ in 0..500 {
        let v = app.voucher(owner, voucher_id).await;
        if v["held"] == "0.00" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the voucher's hold was never settled");
}

async fn outbox(app: &TestApp, admin: &str, template: &str) -> Vec<Value> {
    let all = body(app.get("/api/v1/outbox?limit=500", admin).await).await;
    all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["template"] == template)
        .cloned()
        .collect()
}

/// A reasoning model's stream: 2,010 prompt tokens, 4,000 output tokens of which 3,990 are
/// hidden reasoning, so only ten visible chunks. The client reads them and leaves before the
/// provider has finished; the proxy reads on until the usage arrives and bills exactly it.
async fn a_client_that_leaves_a_reasoning_stream_is_billed_the_providers_count(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let finish = Arc::new(tokio::sync::Notify::new());
    app.upstream.set_reply(Reply {
        prompt_tokens: 2_010,
        cached_tokens: 0,
        completion_tokens: 4_000,
        reasoning_tokens: 3_990,
        pause: Some(finish.clone()),
        ..Reply::default()
    });
    // A prompt of 2,010 tokens is about 8 KB: its bytes bound it.
    let req = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Plan the quarter's work. ".repeat(330)}],
        "max_completion_tokens": 5_000,
        "stream": true,
    });
    assert!(prompt_bound(&req) >= 2_010);
    let resp = app.chat(&key, &req).await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while seen.matches("tok ").count() < 10 {
        seen.push_str(std::str::from_utf8(&stream.next().await.unwrap().unwrap()).unwrap());
    }
    drop(stream);
    // The provider finishes reasoning after the client has gone.
    tokio::time::sleep(Duration::from_millis(100)).await;
    finish.notify_one();

    let v = settled(&app, &owner, &voucher_id).await;
    let provider = programme_rates().cost(TokenUsage {
        prompt_tokens: 2_010,
        cached_prompt_tokens: 0,
        completion_tokens: 4_000,
    });
    assert_eq!(provider.micros(), 45_025);
    assert_eq!(v["spent"], "0.045025");
    let usage = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), &owner)
            .await,
    )
    .await;
    assert_eq!(usage["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            usage["data"][0]["prompt_tokens"].as_u64(),
            usage["data"][0]["completion_tokens"].as_u64()
        ),
        (Some(2_010), Some(4_000))
    );
    // The proxy read the provider's stream to its usage: it did not cut it.
    assert_eq!(app.upstream.streams_cut(), 0);
    app.store.verify_ledger().await.unwrap();
}

/// A non-streamed request whose client gives up while the provider is still working: the
/// provider still bills it, so the proxy still reads the answer and bills its usage.
async fn a_client_that_gives_up_on_a_plain_answer_is_billed_the_providers_count(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let answer = Arc::new(tokio::sync::Notify::new());
    app.upstream.set_reply(Reply {
        pause: Some(answer.clone()),
        ..Reply::default()
    });
    let gave_up = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_request())
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.unwrap_err().is_timeout());
    answer.notify_one();

    let v = settled(&app, &owner, &voucher_id).await;
    let provider = programme_rates().cost(TokenUsage {
        prompt_tokens: 1_000,
        cached_prompt_tokens: 200,
        completion_tokens: 333,
    });
    assert_eq!(v["spent"], format_micros(provider.micros()));
    app.store.verify_ledger().await.unwrap();
}

/// The provider answers 401 with its own body, naming the programme's key, organisation and
/// project. The client's voucher key is fine: it gets a 502 that names none of them, nothing
/// is billed, and administrators are alerted once.
async fn a_refusal_of_the_programmes_credentials_is_a_502_and_one_alert_naming_no_account(
    app: TestApp,
) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    app.upstream.set_reply(Reply {
        status: 401,
        error_body: Some(json!({"error": {
            "message": "Incorrect API key provided: sk-proj-****Ab12. You can find your API key at https://platform.openai.com/account/api-keys. (organization org-ProgrammeAcct42, project proj_ProgrammeProj7)",
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})),
        ..Reply::default()
    });
    for _ in 0..2 {
        let resp = app.chat(&key, &chat_request()).await;
        assert_eq!(resp.status().as_u16(), 502);
        let headers = format!("{:?}", resp.headers());
        let text = resp.text().await.unwrap();
        for secret in ["sk-proj", "org-Programme", "proj_Programme"] {
            assert!(!text.contains(secret), "{text}");
            assert!(!headers.contains(secret), "{headers}");
        }
        let err: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err["error"]["code"], "upstream_auth_failed");
        assert_eq!(err["error"]["type"], "upstream_error");
    }
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(
        (v["spent"].as_str(), v["held"].as_str()),
        (Some("0.00"), Some("0.00"))
    );
    // One alert for both refusals (the hour's), to the programme's administrator.
    let admin = app.admin().await;
    let alerts = outbox(&app, &admin, "upstream_auth_failed").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["recipient"], "admin-owner@widgets.co.uk");
    assert_eq!(alerts[0]["data"]["status"], 401);
}

/// A provider rate limit mentioning the programme's organisation: the client gets the status
/// and code it can act on, with the organisation removed.
async fn the_providers_other_errors_keep_their_status_without_the_programmes_account(app: TestApp) {
    let (_owner, _voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    app.upstream.set_reply(Reply {
        status: 429,
        error_body: Some(json!({"error": {
            "message": "Rate limit reached for test-model in organization org-ProgrammeAcct42 on tokens per min (TPM): Limit 30000, Used 29500, Requested 900.",
            "type": "tokens", "param": null, "code": "rate_limit_exceeded"}})),
        ..Reply::default()
    });
    let resp = app.chat(&key, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        body(resp).await,
        json!({"error": {
            "message": "Rate limit reached for test-model in organization [redacted] on tokens per min (TPM): Limit 30000, Used 29500, Requested 900.",
            "type": "tokens", "param": null, "code": "rate_limit_exceeded"}})
    );
    // An error body that is not OpenAI's shape becomes a plain one.
    app.upstream.set_reply(Reply {
        status: 503,
        error_body: Some(json!(
            "upstream connect error for project proj_ProgrammeProj7"
        )),
        ..Reply::default()
    });
    let resp = app.chat(&key, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        body(resp).await,
        json!({"error": {"message": "The upstream returned an error.",
            "type": "upstream_error", "param": null, "code": null}})
    );
}

/// The provider reports far more prompt than the request's bytes can hold (170,000 tokens):
/// each request's usage is above its hold. The voucher pays only what was held; the rest is
/// overrun, listed per key and model, counted in /metrics, told to administrators once that
/// day, and the third request takes the key past the £1.00 threshold: it is suspended,
/// audited, refused, and works again once an administrator reinstates it.
async fn usage_above_its_hold_is_shown_told_once_a_day_and_suspends_the_key_past_the_threshold(
    app: TestApp,
) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let key_id = app.first_key_id(&owner, &voucher_id).await;
    app.upstream.set_reply(Reply {
        prompt_tokens: 170_000,
        cached_tokens: 0,
        ..Reply::default()
    });
    let req = chat_request();
    let held = programme_rates().max_cost(prompt_bound(&req), 400).micros();
    let cost = programme_rates()
        .cost(TokenUsage {
            prompt_tokens: 170_000,
            cached_prompt_tokens: 0,
            completion_tokens: 333,
        })
        .micros();
    let overrun = cost - held;
    assert!(2 * overrun <= 1_000_000 && 3 * overrun > 1_000_000);
    for _ in 0..3 {
        assert_eq!(app.chat(&key, &req).await.status().as_u16(), 200);
    }
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(v["spent"], format_micros(3 * held));

    let admin = app.admin().await;
    let listed = body(app.get("/api/v1/overruns", &admin).await).await;
    assert_eq!(
        listed["data"],
        json!([{
            "api_key_id": key_id, "key_name": listed["data"][0]["key_name"],
            "key_prefix": &key[..12], "key_suspended": true, "voucher_id": voucher_id,
            "company_number": valid_application()["company_number"], "model": MODEL,
            "requests": 3, "overrun": format_micros(3 * overrun),
            "last_at": listed["data"][0]["last_at"],
        }])
    );
    assert_eq!(listed["total"], format_micros(3 * overrun));
    assert_eq!(listed["suspend_threshold"], "1.00");
    // The console's page lists the same row, with the key's state and its last overrun's day.
    let mut browser = Browser::sign_in(&app, "admin@programme.gov.uk").await;
    let page = browser.get(&app, "/console/overruns").await;
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains(&format!("{}… · company ", &key[..12])),
        "{page}"
    );
    assert!(page.contains(">suspended</strong>"), "{page}");
    assert!(
        page.contains(&format!("/console/keys/{key_id}/reinstatement")),
        "{page}"
    );
    let last = chrono::DateTime::parse_from_rfc3339(listed["data"][0]["last_at"].as_str().unwrap())
        .unwrap()
        .naive_utc();
    assert!(
        page.contains(&format!(">{}</td>", voucherd_domain::uk_time::date(last))),
        "{page}"
    );
    // Only administrators see it.
    assert_eq!(
        app.get("/api/v1/overruns", &owner).await.status().as_u16(),
        403
    );

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains(&format!(
        "voucherd_proxy_overrun_requests_total{{model=\"{MODEL}\"}} 3"
    )));
    assert!(metrics.contains(&format!(
        "voucherd_proxy_overrun_micros_total{{model=\"{MODEL}\"}} {}",
        3 * overrun
    )));

    // Told once per administrator, not once per request.
    let told = outbox(&app, &admin, "usage_overrun").await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["recipient"], "admin-owner@widgets.co.uk");
    assert_eq!(told[0]["data"]["model"], MODEL);
    assert_eq!(told[0]["data"]["amount"], format_micros(overrun));

    // Suspended, with the reason audited, and refused at once.
    let refused = app.chat(&key, &req).await;
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(body(refused).await["error"]["code"], "api_key_suspended");
    let audit = body(
        app.get(
            &format!("/api/v1/audit?subject_type=api_key&subject_id={key_id}"),
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(audit["data"][0]["action"], "api_key_suspended");
    assert_eq!(
        audit["data"][0]["reason"],
        format!(
            "usage above its holds reached £{} (the programme suspends a key above £1.00)",
            format_micros(3 * overrun)
        )
    );

    // A blank reason is refused and changes nothing; a reason reinstates it.
    let blank = app
        .post(
            &format!("/api/v1/keys/{key_id}/reinstatement"),
            &admin,
            &json!({"reason": "  "}),
        )
        .await;
    assert_problem(blank, 422, "validation_failed").await;
    app.upstream.set_reply(Reply::default());
    let back = app
        .post(
            &format!("/api/v1/keys/{key_id}/reinstatement"),
            &admin,
            &json!({"reason": "provider's count explained; bound fixed"}),
        )
        .await;
    assert_eq!(back.status().as_u16(), 200);
    assert_eq!(body(back).await["status"], "active");
    assert_eq!(app.chat(&key, &req).await.status().as_u16(), 200);
    let again = app
        .post(
            &format!("/api/v1/keys/{key_id}/reinstatement"),
            &admin,
            &json!({"reason": "twice"}),
        )
        .await;
    assert_problem(again, 409, "key_not_suspended").await;
    app.store.verify_ledger().await.unwrap();
}

/// The upstream stalls after five chunks (keep-alives only) and the client leaves: no usage
/// will come, so at the stream deadline the held bound is billed, never an estimate below it.
#[tokio::test]
async fn a_stream_that_ends_without_usage_is_billed_the_held_bound() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = spawn_app_with(backend, |c| c.stream_max_ms = 1_000).await;
        let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
        app.upstream.set_reply(Reply {
            stall_after: Some(5),
            ..Reply::default()
        });
        let mut req = chat_request();
        req["stream"] = json!(true);
        let resp = app.chat(&key, &req).await;
        assert_eq!(resp.status().as_u16(), 200);
        let mut stream = resp.bytes_stream();
        let mut seen = String::new();
        while seen.matches("tok ").count() < 5 {
            seen.push_str(std::str::from_utf8(&stream.next().await.unwrap().unwrap()).unwrap());
        }
        drop(stream);
        let v = settled(&app, &owner, &voucher_id).await;
        let bound = programme_rates().max_cost(prompt_bound(&req), 400);
        assert_eq!(v["spent"], format_micros(bound.micros()));
        app.store.verify_ledger().await.unwrap();
    }
}
