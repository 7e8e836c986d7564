//! Programme fund deposits.

use crate::helpers::*;
use serde_json::json;

on_both_backends!(a_retried_deposit_counts_once_and_bad_amounts_write_nothing);

async fn a_retried_deposit_counts_once_and_bad_amounts_write_nothing(app: TestApp) {
    let admin = app.admin().await;
    let send = |key: &'static str, amount: &'static str| {
        app.client
            .post(app.url("/api/v1/programme/deposits"))
            .bearer_auth(&admin)
            .header("idempotency-key", key)
            .json(&json!({"amount": amount, "reference": "grant letter 42"}))
            .send()
    };
    let first = body(send("alloc-2026-q1", "1000.50").await.unwrap()).await;
    let again = send("alloc-2026-q1", "1000.50").await.unwrap();
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(body(again).await["id"], first["id"]);
    assert_problem(
        send("alloc-2026-q1", "999").await.unwrap(),
        409,
        "idempotency_key_reused",
    )
    .await;
    for (amount, _why) in [
        ("0", "zero"),
        ("-3", "negative"),
        ("1.0000001", "7 decimals"),
        ("2000000000", "absurd"),
    ] {
        let p = assert_problem(
            send("other-key", amount).await.unwrap(),
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(fields(&p), ["amount"], "{amount}");
    }
    let p = assert_problem(
        send("bad key!", "1").await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["Idempotency-Key"]);
    let audit_url = format!(
        "/api/v1/audit?subject_type=transfer&subject_id={}",
        first["id"].as_str().unwrap()
    );
    let audit = body(app.get(&audit_url, &admin).await).await;
    assert_eq!(
        audit["data"].as_array().unwrap().len(),
        1,
        "a replay is not a second deposit"
    );
    let programme = body(app.get("/api/v1/programme", &admin).await).await;
    assert_eq!(programme["fund"]["balance"], "1000.50");
    assert_eq!(programme["fund"]["deposited"], "1000.50");
    app.store.verify_ledger().await.unwrap();
}
