//! Vouchers spend to the last penny: a request is refused for want of money only when the
//! whole balance — what this instance's own lease holds included — cannot pay for it; the 100 %
//! notice then fires; `spent` is what was spent and `forfeited` is shown apart; the statement
//! has one line per request with a running balance, in full; an administrator can expire a
//! voucher now.

use crate::helpers::*;
use crate::leases::spawn_leasing;
use crate::upstream::Reply;
use serde_json::{json, Value};
use voucherd_domain::money::format_micros;
use voucherd_domain::Money;
use voucherd_store::Backend;

fn micros(v: &Value) -> i64 {
    Money::parse(v.as_str().unwrap()).unwrap().micros()
}

/// Back-to-back requests on a leased voucher of £0.20 until one is refused: by then nothing
/// the voucher has left (its lease given back) pays for even one output token, and the
/// organisation is told all of its credit is used.
#[tokio::test]
async fn back_to_back_requests_spend_a_leased_voucher_to_its_last_penny() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = spawn_leasing(backend).await;
        let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "0.2").await;
        // Each costs 40 × 2.50 + 1,000 × 10.00 = 10,100 micros, the last ones capped.
        app.upstream.set_reply(Reply {
            prompt_tokens: 40,
            cached_tokens: 0,
            completion_tokens: 1_000,
            ..Reply::default()
        });
        let req = short_chat_request(Some(1_000));
        let mut served = 0;
        let refusal = loop {
            let resp = app.chat(&key, &req).await;
            match resp.status().as_u16() {
                200 => served += 1,
                429 => break body(resp).await,
                s => panic!("{backend:?}: unexpected {s}"),
            }
            assert!(
                served < 100,
                "{backend:?}: a £0.01 voucher cannot serve 100"
            );
        };
        assert_eq!(refusal["error"]["code"], "insufficient_quota");
        let v = app.wait_until_settled(&owner, &voucher_id).await;
        // The cheapest request possible: its prompt bound and one output token.
        let prompt_bound = serde_json::to_vec(&req).unwrap().len() as u64 + 8 + 16;
        let cheapest = rates("2.50", "1.25", "10.00")
            .max_cost(prompt_bound, 1)
            .micros();
        let available = micros(&v["available"]);
        assert!(
            available < cheapest,
            "{backend:?}: refused with {available} micros left, enough for a request of {cheapest}"
        );
        let spent = micros(&v["spent"]);
        assert_eq!(spent + available, 200_000, "{backend:?}");
        let usage = body(
            app.get(
                &format!("/api/v1/vouchers/{voucher_id}/usage?limit=500"),
                &owner,
            )
            .await,
        )
        .await;
        let rows = usage["data"].as_array().unwrap();
        assert_eq!(rows.len(), served, "{backend:?}");
        assert_eq!(rows.iter().map(|r| micros(&r["cost"])).sum::<i64>(), spent);

        // The organisation hears that its credit is used up.
        let report = app.store.run_low_balance().await.unwrap();
        assert_eq!(report.notified_100, 1, "{backend:?}");
        app.store.verify_ledger().await.unwrap();
    }
}

on_both_backends!(
    an_administrator_expires_a_voucher_now_and_its_remainder_is_forfeited_not_spent,
    the_statement_has_one_line_per_request_with_a_running_balance_in_full,
);

async fn an_administrator_expires_a_voucher_now_and_its_remainder_is_forfeited_not_spent(
    app: TestApp,
) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    // Three requests of 5,580 micros each.
    for _ in 0..3 {
        assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    }
    let admin = app.admin().await;
    // Only administrators, and only with a reason.
    let by_owner = app
        .post(
            &format!("/api/v1/vouchers/{voucher_id}/expiry"),
            &owner,
            &json!({"reason": "done with it"}),
        )
        .await;
    assert_eq!(by_owner.status().as_u16(), 403);
    let blank = app
        .post(
            &format!("/api/v1/vouchers/{voucher_id}/expiry"),
            &admin,
            &json!({"reason": " "}),
        )
        .await;
    assert_problem(blank, 422, "validation_failed").await;
    assert_eq!(app.voucher(&owner, &voucher_id).await["status"], "active");

    let expired = app
        .post(
            &format!("/api/v1/vouchers/{voucher_id}/expiry"),
            &admin,
            &json!({"reason": "testing expiry by hand"}),
        )
        .await;
    assert_eq!(expired.status().as_u16(), 200);
    let v = body(expired).await;
    assert_eq!(
        (
            v["status"].as_str(),
            v["spent"].as_str(),
            v["forfeited"].as_str(),
            v["available"].as_str(),
            v["held"].as_str()
        ),
        (
            Some("expired"),
            Some("0.01674"),
            Some("99.98326"),
            Some("0.00"),
            Some("0.00")
        )
    );
    // Its keys stop at once; expiring twice is refused.
    let refused = app.chat(&key, &chat_request()).await;
    assert_eq!(refused.status().as_u16(), 429);
    let again = app
        .post(
            &format!("/api/v1/vouchers/{voucher_id}/expiry"),
            &admin,
            &json!({"reason": "again"}),
        )
        .await;
    assert_problem(again, 409, "already_expired").await;
    let audit = body(
        app.get(
            &format!("/api/v1/audit?subject_type=voucher&subject_id={voucher_id}"),
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(audit["data"][0]["action"], "voucher_expired_now");
    assert_eq!(audit["data"][0]["reason"], "testing expiry by hand");
    app.store.verify_ledger().await.unwrap();
}

async fn the_statement_has_one_line_per_request_with_a_running_balance_in_full(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    for _ in 0..5 {
        assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    }
    // Read in pages of two: the grant, then five requests of 5,580 micros.
    let mut lines: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    let mut opening = Vec::new();
    loop {
        let path = match &after {
            None => format!("/api/v1/vouchers/{voucher_id}/statement?limit=2"),
            Some(c) => format!("/api/v1/vouchers/{voucher_id}/statement?limit=2&after={c}"),
        };
        let page = body(app.get(&path, &owner).await).await;
        opening.push(page["opening_balance"].clone());
        lines.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(
        opening,
        [json!("0.00"), json!("99.99442"), json!("99.98326")]
    );
    let summary: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_string(),
                l["amount"].as_str().unwrap().to_string(),
                l["balance"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected = vec![(
        "voucher_grant".to_string(),
        "100.00".to_string(),
        "100.00".to_string(),
    )];
    for i in 1..=5 {
        expected.push((
            "usage".into(),
            "-0.00558".into(),
            format_micros(100_000_000 - i * 5_580),
        ));
    }
    assert_eq!(summary, expected);
    assert!(lines[1]["detail"]
        .as_str()
        .unwrap()
        .contains("1000 input and 333 output tokens"));
    // A cursor that is not one is refused by field.
    let bad = app
        .get(
            &format!("/api/v1/vouchers/{voucher_id}/statement?after=yesterday"),
            &owner,
        )
        .await;
    assert_problem(bad, 422, "validation_failed").await;
    // Another organisation cannot read it.
    let other = app.applicant("other@elsewhere.co.uk").await;
    let hidden = app
        .get(&format!("/api/v1/vouchers/{voucher_id}/statement"), &other)
        .await;
    assert_eq!(hidden.status().as_u16(), 404);
}
