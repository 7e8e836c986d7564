//! Suspending and reinstating vouchers: the keys stop and start again, only administrators
//! may, every change is audited with its reason, and vouchers are found by company.

use crate::helpers::{assert_problem, body, short_chat_request, TestApp};
use serde_json::json;

async fn a_suspended_voucher_spends_nothing_until_it_is_reinstated(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("suspend@example.com", "10").await;
    let admin = app
        .user_with_role("suspend-admin@example.com", "admin")
        .await;
    let path = format!("/api/v1/vouchers/{voucher_id}/suspension");
    // Only administrators, and only with a reason; nothing changes otherwise.
    assert_eq!(
        app.post(&path, &owner, &json!({"reason": "mine"}))
            .await
            .status()
            .as_u16(),
        403
    );
    let blank = assert_problem(
        app.post(&path, &admin, &json!({"reason": "  "})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(crate::helpers::fields(&blank), ["reason"]);
    assert_eq!(app.voucher(&owner, &voucher_id).await["status"], "active");

    let suspended = app
        .post(
            &path,
            &admin,
            &json!({"reason": "Misuse reported by the provider"}),
        )
        .await;
    assert_eq!(suspended.status().as_u16(), 200);
    let v = body(suspended).await;
    assert_eq!(v["status"], "suspended");
    assert_eq!(v["suspension"]["reason"], "Misuse reported by the provider");
    assert_problem(
        app.post(&path, &admin, &json!({"reason": "again"})).await,
        409,
        "already_suspended",
    )
    .await;
    let refused = app.chat(&key, &short_chat_request(Some(10))).await;
    assert_eq!(refused.status().as_u16(), 429);
    let refused = body(refused).await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("suspended"),
        "{refused}"
    );
    assert_eq!(app.voucher(&owner, &voucher_id).await["spent"], "0.00");

    let back = app
        .post(
            &format!("/api/v1/vouchers/{voucher_id}/reinstatement"),
            &admin,
            &json!({"reason": "Cleared after review"}),
        )
        .await;
    assert_eq!(back.status().as_u16(), 200);
    assert_eq!(body(back).await["suspension"], serde_json::Value::Null);
    assert_eq!(
        app.chat(&key, &short_chat_request(Some(10)))
            .await
            .status()
            .as_u16(),
        200
    );
    let audit = body(
        app.get(
            &format!("/api/v1/audit?subject_type=voucher&subject_id={voucher_id}"),
            &admin,
        )
        .await,
    )
    .await;
    let trail: Vec<(String, String)> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            (
                "voucher.suspend".to_string(),
                "Misuse reported by the provider".to_string()
            ),
            (
                "voucher.reinstate".to_string(),
                "Cleared after review".to_string()
            ),
        ]
    );
    // Found by company (written any way Companies House accepts), and not by another.
    let found = body(
        app.get("/api/v1/vouchers?company_number=1234567", &admin)
            .await,
    )
    .await;
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(found["data"][0]["id"], voucher_id);
    let none = body(
        app.get("/api/v1/vouchers?company_number=SC123456", &admin)
            .await,
    )
    .await;
    assert_eq!(none["data"], json!([]));
    assert_problem(
        app.get("/api/v1/vouchers?company_number=12-34", &admin)
            .await,
        422,
        "validation_failed",
    )
    .await;
    // By a part of the company's name, in any case; `%` is a character, not a wildcard.
    let named = found["data"][0]["company_name"]
        .as_str()
        .unwrap()
        .to_string();
    let part: String = named
        .chars()
        .skip(2)
        .take(5)
        .collect::<String>()
        .to_uppercase();
    let by_name = body(
        app.get(&format!("/api/v1/vouchers?company_name={part}"), &admin)
            .await,
    )
    .await;
    assert_eq!(by_name["data"].as_array().unwrap().len(), 1, "{part}");
    assert_eq!(by_name["data"][0]["id"], voucher_id);
    for other in ["%25", "Nonexistent%20Holdings"] {
        let none = body(
            app.get(&format!("/api/v1/vouchers?company_name={other}"), &admin)
                .await,
        )
        .await;
        assert_eq!(none["data"], json!([]), "{other}");
    }
}

on_both_backends!(a_suspended_voucher_spends_nothing_until_it_is_reinstated);
