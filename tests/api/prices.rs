//! The versioned price table.

use crate::helpers::*;
use serde_json::json;

on_both_backends!(
    a_new_price_applies_to_new_usage_and_never_to_past_usage,
    price_changes_are_admin_only_and_validated,
    every_price_version_is_listed_with_the_scheduled_ones_marked
);

async fn a_new_price_applies_to_new_usage_and_never_to_past_usage(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let listed = body(
        app.client
            .get(app.url("/api/v1/prices"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["data"][0]["model"], MODEL);
    assert_eq!(listed["data"][0]["output_per_million"], "10.00");
    assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);

    let admin = app.admin().await;
    let resp = app.client.put(app.url(&format!("/api/v1/prices/{MODEL}"))).bearer_auth(&admin)
        .json(&json!({"input_per_million": "5.00", "cached_input_per_million": "2.50", "output_per_million": "20.00"}))
        .send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let listed = body(
        app.client
            .get(app.url("/api/v1/prices"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["output_per_million"], "20.00");

    assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    let usage = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), &owner)
            .await,
    )
    .await;
    let rows = usage["data"].as_array().unwrap();
    // Newest first: 800 × 5 + 200 × 2.5 + 333 × 20 = 11,160 micros; the first stays 5,580.
    assert_eq!(rows[0]["cost"], "0.01116");
    assert_eq!(rows[0]["price"]["output_per_million"], "20.00");
    assert_eq!(rows[1]["cost"], "0.00558");
    assert_eq!(rows[1]["price"]["output_per_million"], "10.00");
    assert_eq!(app.voucher(&owner, &voucher_id).await["spent"], "0.01674");
    let audit = body(
        app.get(
            &format!("/api/v1/audit?subject_type=price&subject_id={MODEL}"),
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(audit["data"][0]["action"], "price.set");
}

async fn price_changes_are_admin_only_and_validated(app: TestApp) {
    let applicant = app.applicant("owner@widgets.co.uk").await;
    let admin = app.admin().await;
    let good = json!({"input_per_million": "1", "cached_input_per_million": "0.5", "output_per_million": "4"});
    let put = |token: String, model: &str, body: serde_json::Value| {
        app.client
            .put(app.url(&format!("/api/v1/prices/{model}")))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    assert_problem(
        put(applicant.clone(), "new-model", good.clone())
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    let p = assert_problem(put(admin.clone(), "new-model", json!({"input_per_million": "-1", "cached_input_per_million": "0", "output_per_million": "1"})).await.unwrap(), 422, "validation_failed").await;
    assert_eq!(fields(&p), ["input_per_million"]);
    let p = assert_problem(
        put(admin.clone(), "bad%20model", good.clone())
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["model"]);
    let p = assert_problem(put(admin.clone(), "new-model", json!({"input_per_million": "1", "cached_input_per_million": "1", "output_per_million": "1", "effective_from": "2001-01-01T00:00:00Z"})).await.unwrap(), 422, "validation_failed").await;
    assert_eq!(fields(&p), ["effective_from"]);
    let listed = body(
        app.client
            .get(app.url("/api/v1/prices"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "nothing was written"
    );
    assert_eq!(
        put(admin.clone(), "new-model", good)
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let scheduled = json!({"input_per_million": "2", "cached_input_per_million": "1",
        "output_per_million": "8", "effective_from": "2028-01-01T00:00:00Z"});
    assert_eq!(
        put(admin.clone(), "new-model", scheduled.clone())
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_problem(
        put(admin, "new-model", scheduled).await.unwrap(),
        409,
        "price_version_exists",
    )
    .await;
}

async fn every_price_version_is_listed_with_the_scheduled_ones_marked(app: TestApp) {
    let admin = app.admin().await;
    let applicant = app.applicant("prices-reader@example.com").await;
    for (rates, from) in [
        (("1.00", "0.50", "4.00"), None),
        (("2.00", "1.00", "8.00"), Some("2028-01-01T00:00:00Z")),
    ] {
        let mut body = json!({"input_per_million": rates.0, "cached_input_per_million": rates.1,
            "output_per_million": rates.2});
        if let Some(f) = from {
            body["effective_from"] = json!(f);
        }
        let resp = app
            .client
            .put(app.url("/api/v1/prices/versioned-model"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    assert_eq!(
        app.get("/api/v1/price-versions", &applicant)
            .await
            .status()
            .as_u16(),
        403
    );
    let versions = body(app.get("/api/v1/price-versions", &admin).await).await;
    let mine: Vec<(String, String, bool)> = versions["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["model"] == "versioned-model")
        .map(|v| {
            (
                v["input_per_million"].as_str().unwrap().to_string(),
                v["output_per_million"].as_str().unwrap().to_string(),
                v["scheduled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mine,
        [
            ("2.00".to_string(), "8.00".to_string(), true),
            ("1.00".to_string(), "4.00".to_string(), false),
        ]
    );
}
