//! Strict input: a money string with whitespace is refused like any other malformed amount,
//! and a field a request body does not declare is refused by its full path, so a misspelt
//! field never leaves a default in its place. Nothing is written on such a request.

use crate::helpers::*;
use serde_json::{json, Value};

on_both_backends!(
    a_padded_amount_is_refused_and_the_fund_is_unchanged,
    a_misspelt_field_is_refused_by_name_and_nothing_is_written,
    a_nested_unknown_field_is_refused_by_its_path,
    a_misspelt_decision_field_does_not_grant_the_standard_voucher,
    text_holding_nul_is_refused_by_field_not_failed_by_the_database,
);

/// PostgreSQL cannot hold NUL in text: a value carrying one, in a body or a query, is refused
/// as invalid by its field (it was a 500 from the database on PostgreSQL), and nothing is
/// written. The same on SQLite.
async fn text_holding_nul_is_refused_by_field_not_failed_by_the_database(app: TestApp) {
    let admin = app.admin().await;
    let resp = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(
            &json!({"email": "nul@widgets.co.uk", "password": "a long enough password",
            "full_name": "Ann\u{0}Smith"}),
        )
        .send()
        .await
        .unwrap();
    let message = refused_naming(resp, "full_name").await;
    assert!(message.contains("NUL"), "{message}");
    let login = app
        .login("nul@widgets.co.uk", "a long enough password")
        .await;
    assert_eq!(login.status().as_u16(), 401, "no account was made");
    let resp = app.get("/api/v1/jobs/runs?limit=5&job=a%00b", &admin).await;
    refused_naming(resp, "job").await;
    let before = balance(&app, &admin).await;
    let resp = app
        .post(
            "/api/v1/programme/deposits",
            &admin,
            &json!({"amount": "10.00", "reference": "nul \u{0}"}),
        )
        .await;
    refused_naming(resp, "reference").await;
    assert_eq!(balance(&app, &admin).await, before, "the fund is unchanged");
}

const REFERENCE: &str = "HM Treasury allocation 2026/27";

async fn balance(app: &TestApp, admin: &str) -> Value {
    body(app.get("/api/v1/programme", admin).await).await["fund"].clone()
}

/// A 422 validation problem naming exactly `field`; returns its message.
async fn refused_naming(resp: reqwest::Response, field: &str) -> String {
    let problem = assert_problem(resp, 422, "validation_failed").await;
    assert_eq!(fields(&problem), [field], "{problem}");
    problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn a_padded_amount_is_refused_and_the_fund_is_unchanged(app: TestApp) {
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "500.00").await.status().as_u16(), 201);
    let before = balance(&app, &admin).await;
    assert_eq!(before["balance"], "500.00");
    for padded in [" 100.00", "100.00 ", "\t100", "1 000", "100.00\n"] {
        let message = refused_naming(app.deposit(&admin, padded).await, "amount").await;
        assert_eq!(
            message, "must be a decimal string in major units such as \"12.50\"",
            "{padded:?}"
        );
    }
    // Nothing moved: not the amount, not a trimmed one.
    assert_eq!(balance(&app, &admin).await, before);
    // The same amount, as the API takes it, is accepted to the micro-unit.
    let resp = app.deposit(&admin, "100.00").await;
    assert_eq!(resp.status().as_u16(), 201);
    let deposit = body(resp).await;
    assert_eq!(deposit["amount"], "100.00");
    assert_eq!(deposit["reference"], REFERENCE);
    let after = balance(&app, &admin).await;
    assert_eq!(after["balance"], "600.00");
    assert_eq!(after["deposited"], "600.00");
}

async fn a_misspelt_field_is_refused_by_name_and_nothing_is_written(app: TestApp) {
    let admin = app.admin().await;
    let before = balance(&app, &admin).await;
    let deposit = |body: Value| {
        let (app, admin) = (&app, &admin);
        async move {
            app.client
                .post(app.url("/api/v1/programme/deposits"))
                .bearer_auth(admin)
                .header("Idempotency-Key", "strict-input-1")
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let misspelt = deposit(json!({"ammount": "100.00", "reference": REFERENCE})).await;
    let message = refused_naming(misspelt, "ammount").await;
    assert_eq!(
        message,
        "is not a recognised field: the accepted fields are amount, reference"
    );
    // Beside the right fields, an extra one is refused too.
    let extra = deposit(json!({"amount": "100.00", "reference": REFERENCE, "note": "x"})).await;
    refused_naming(extra, "note").await;
    assert_eq!(balance(&app, &admin).await, before);
    let audit = body(app.get("/api/v1/audit", &admin).await).await;
    let deposits = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "programme.deposit")
        .count();
    assert_eq!(deposits, 0, "{audit}");
    // Nothing was kept under the idempotency key either: the right request with the same key
    // is the first to use it.
    let resp = deposit(json!({"amount": "100.00", "reference": REFERENCE})).await;
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(body(resp).await["amount"], "100.00");
    assert_eq!(balance(&app, &admin).await["balance"], "100.00");
}

async fn a_nested_unknown_field_is_refused_by_its_path(app: TestApp) {
    let admin = app.admin().await;
    let applicant = app.applicant("strict@example.com").await;

    // An application's subsidy declaration, in a list.
    let mut application = valid_application();
    application["subsidy_declarations"][0]["amout"] = json!("25000.00");
    let resp = app.apply(&applicant, &application).await;
    let message = refused_naming(resp, "subsidy_declarations[0].amout").await;
    assert_eq!(
        message,
        "is not a recognised field: the accepted fields are provider, amount, awarded_on"
    );
    assert_eq!(app.applications_count(&admin).await, 0);

    // An incentive rule's milestone trigger, inside its effect (tagged by `kind`).
    let rule = json!({
        "name": "First requests",
        "condition": {"first_time_applicant": true},
        "effect": {"kind": "milestone_bonus", "amount": "50.00",
                   "trigger": {"kind": "requests_settled", "count": 2, "amount": "60.00"}},
    });
    let resp = app.post("/api/v1/incentives", &admin, &rule).await;
    refused_naming(resp, "effect.trigger.amount").await;
    let rules = body(app.get("/api/v1/incentives", &admin).await).await;
    assert_eq!(rules["data"], json!([]), "{rules}");

    // The same requests without the unknown fields are accepted, amounts exact.
    let mut application = valid_application();
    application["subsidy_declarations"][0]["amount"] = json!("25000.50");
    let resp = app.apply(&applicant, &application).await;
    assert_eq!(resp.status().as_u16(), 201);
    let a = body(resp).await;
    assert_eq!(a["subsidy_declarations"][0]["amount"], "25000.50");
    assert_eq!(a["annual_turnover"], "900000.00");
    let mut rule = rule;
    rule["effect"]["trigger"] = json!({"kind": "requests_settled", "count": 2});
    let resp = app.post("/api/v1/incentives", &admin, &rule).await;
    assert_eq!(resp.status().as_u16(), 201);
    let r = body(resp).await;
    assert_eq!(r["effect"]["amount"], "50.00");
    assert_eq!(
        r["effect"]["trigger"],
        json!({"kind": "requests_settled", "count": 2})
    );
}

async fn a_misspelt_decision_field_does_not_grant_the_standard_voucher(app: TestApp) {
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    let applicant = app.applicant("decided@example.com").await;
    let a = body(app.apply(&applicant, &valid_application()).await).await;
    let id = a["id"].as_str().unwrap();
    let before = balance(&app, &admin).await;

    // Read leniently, `amout` would be dropped and the standard £5,000 granted.
    let misspelt = json!({"decision": "approve", "amout": "100.00", "reason": "a small pilot"});
    let resp = app.decide(&admin, id, &misspelt).await;
    let message = refused_naming(resp, "amout").await;
    assert!(message.contains("amount"), "{message}");
    let still = body(app.get(&format!("/api/v1/applications/{id}"), &admin).await).await;
    assert_eq!(still["status"], "submitted", "{still}");
    assert!(still["voucher_id"].is_null(), "{still}");
    let vouchers = body(app.get("/api/v1/vouchers", &admin).await).await;
    assert_eq!(vouchers["data"], json!([]));
    assert_eq!(balance(&app, &admin).await, before);

    // Spelt right, the amount asked for is granted, not the default.
    let decision = json!({"decision": "approve", "amount": "100.00", "reason": "a small pilot"});
    let resp = app.decide(&admin, id, &decision).await;
    assert_eq!(resp.status().as_u16(), 200);
    let decided = body(resp).await;
    assert_eq!(decided["voucher"]["granted"], "100.00", "{decided}");
    assert_eq!(balance(&app, &admin).await["balance"], "99900.00");
}
