//! Tailored incentives: versioned rules, evaluated and shown before an approval, applied
//! within the cap and the Minimal Financial Assistance limit, stored with the voucher, and
//! milestone bonuses granted by the worker once.

use crate::helpers::*;
use crate::upstream::Reply;
use serde_json::{json, Value};
use std::sync::Arc;
use voucherd_worker::{Job, ManualClock, Worker, WorkerConfig};

on_both_backends!(
    an_approval_applies_the_matching_rule_versions_and_a_milestone_bonus_is_granted_once,
    an_organisation_near_the_mfa_limit_gets_no_more_than_its_headroom,
    bad_rules_are_refused_by_field_and_change_nothing,
);

async fn rule(app: &TestApp, admin: &str, body: Value) -> Value {
    let resp = app.post("/api/v1/incentives", admin, &body).await;
    assert_eq!(resp.status().as_u16(), 201);
    body_of(resp).await
}

async fn body_of(resp: reqwest::Response) -> Value {
    body(resp).await
}

fn worker(app: &TestApp) -> Worker {
    let mut c = WorkerConfig::default();
    c.mail.dir =
        std::env::temp_dir().join(format!("voucherd-mail-{}", uuid::Uuid::new_v4().simple()));
    Worker::new(
        app.store.clone(),
        c,
        Arc::new(ManualClock::new(voucherd_store::now())),
    )
    .unwrap()
}

fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

async fn an_approval_applies_the_matching_rule_versions_and_a_milestone_bonus_is_granted_once(
    app: TestApp,
) {
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    let uplift = rule(
        &app,
        &admin,
        json!({"name": "North East uplift", "condition": {"regions": ["north_east"]},
               "effect": {"kind": "uplift_percent", "percent": 20}}),
    )
    .await;
    rule(
        &app,
        &admin,
        json!({"name": "Young firms", "condition": {"founded_within_years": 10},
               "effect": {"kind": "fixed_bonus", "amount": "500"}}),
    )
    .await;
    rule(
        &app,
        &admin,
        json!({"name": "Spin-offs", "condition": {"university_spin_off": true},
               "effect": {"kind": "fixed_bonus", "amount": "900"}}),
    )
    .await;
    rule(
        &app,
        &admin,
        json!({"name": "First two requests", "condition": {"first_time_applicant": true},
               "effect": {"kind": "milestone_bonus", "amount": "50", "trigger": {"kind": "requests_settled", "count": 2}}}),
    )
    .await;
    rule(
        &app,
        &admin,
        json!({"name": "Low co-funding", "condition": {"size_bands": ["small"]},
               "effect": {"kind": "co_funding_cap", "percent": 10}}),
    )
    .await;
    rule(
        &app,
        &admin,
        json!({"name": "Extra consulting", "condition": {"sic_sections": ["J"]},
               "effect": {"kind": "consulting_hours", "hours": 1}}),
    )
    .await;
    // The uplift changes: a second version; the first stays on record.
    let key = uplift["key"].as_str().unwrap();
    let resp = app
        .client
        .put(app.url(&format!("/api/v1/incentives/{key}")))
        .bearer_auth(&admin)
        .json(
            &json!({"name": "North East uplift", "condition": {"regions": ["north_east"]},
                      "effect": {"kind": "uplift_percent", "percent": 10}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["version"], 2);
    let listed = body(app.get("/api/v1/incentives", &admin).await).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 6);

    let owner = app.applicant("owner@widgets.co.uk").await;
    let application = body(app.apply(&owner, &valid_application()).await).await;
    let id = application["id"].as_str().unwrap();

    // Shown before confirming: which matched, why, and the amount.
    let preview = body(
        app.get(
            &format!("/api/v1/applications/{id}/incentives?amount=5000"),
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(
        names(&preview["applied"]),
        [
            "Extra consulting",
            "First two requests",
            "Low co-funding",
            "North East uplift",
            "Young firms"
        ]
    );
    assert_eq!(preview["not_matched"][0]["name"], "Spin-offs");
    assert_eq!(
        preview["not_matched"][0]["why"][0],
        "not a university spin-off"
    );
    let ne = preview["applied"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "North East uplift")
        .unwrap();
    assert_eq!(
        (ne["version"].as_i64(), ne["now"].as_str()),
        (Some(2), Some("500.00"))
    );
    assert_eq!(ne["why"][0], "in north_east");
    assert_eq!(
        (
            preview["extra"].as_str(),
            preview["total"].as_str(),
            preview["milestone_bonuses"].as_str(),
            preview["co_funding_cap_percent"].as_i64()
        ),
        (Some("1000.00"), Some("6000.00"), Some("50.00"), Some(10))
    );

    // Confirming with a total other than the rules give is refused: nothing unseen is granted.
    let resp = app
        .decide(
            &admin,
            id,
            &json!({"decision": "approve", "amount": "5000", "reason": "meets all criteria", "incentives_total": "5500"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 409);
    assert_eq!(body(resp).await["code"], "incentives_changed");
    let decided = body(
        app.decide(
            &admin,
            id,
            &json!({"decision": "approve", "amount": "5000", "reason": "meets all criteria", "incentives_total": "6000"}),
        )
        .await,
    )
    .await;
    assert_eq!(decided["voucher"]["granted"], "6000.00");
    assert_eq!(decided["incentives"]["total"], "6000.00");
    let voucher_id = decided["voucher"]["id"].as_str().unwrap().to_string();
    let applied = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/incentives"), &owner)
            .await,
    )
    .await;
    let applied = applied["data"].as_array().unwrap().clone();
    assert_eq!(applied.len(), 5);
    // The pages describe the rules from their typed effects and conditions.
    let mut sme = crate::helpers::Browser::sign_in(&app, "owner@widgets.co.uk").await;
    let page = sme
        .get(&app, &format!("/portal/vouchers/{voucher_id}/incentives"))
        .await;
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("10% of the standard voucher on top"),
        "{html}"
    );
    let mut console = crate::helpers::Browser::sign_in(&app, "admin@programme.gov.uk").await;
    let page = console.get(&app, "/console/incentives").await;
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("North East uplift") && html.contains("Based in North East"),
        "{html}"
    );
    // The programme's own limits, from its configuration.
    assert!(
        html.contains("incentives add at most 50% of the standard voucher of £5,000.00"),
        "{html}"
    );
    // Two standard hours, one more from the incentive, in minutes.
    let hours = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/consulting"), &owner)
            .await,
    )
    .await;
    assert_eq!(hours["granted"], 180);
    let versions: Vec<(String, i64)> = applied
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["version"].as_i64().unwrap(),
            )
        })
        .filter(|(n, _)| n == "North East uplift")
        .collect();
    assert_eq!(versions, [("North East uplift".to_string(), 2)]);

    // The milestone: two settled requests, then the worker grants £50, once.
    let w = worker(&app);
    assert_eq!(
        w.run_once(Job::IncentiveMilestones).await.unwrap().summary["granted"],
        0
    );
    let key = body(app.create_key(&owner, &voucher_id).await).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    app.upstream.set_reply(Reply::default());
    for _ in 0..2 {
        assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    }
    assert_eq!(
        w.run_once(Job::IncentiveMilestones).await.unwrap().summary["granted"],
        1
    );
    assert_eq!(
        w.run_once(Job::IncentiveMilestones).await.unwrap().summary["granted"],
        0
    );
    assert_eq!(app.voucher(&owner, &voucher_id).await["granted"], "6050.00");
    let txs = body(
        app.get(
            &format!("/api/v1/vouchers/{voucher_id}/transactions"),
            &owner,
        )
        .await,
    )
    .await;
    let bonuses = txs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["code"] == "incentive_milestone")
        .count();
    assert_eq!(bonuses, 1);
    app.store.verify_ledger().await.unwrap();
}

async fn an_organisation_near_the_mfa_limit_gets_no_more_than_its_headroom(app: TestApp) {
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    rule(
        &app,
        &admin,
        json!({"name": "Bonus", "condition": {}, "effect": {"kind": "fixed_bonus", "amount": "1000"}}),
    )
    .await;
    rule(
        &app,
        &admin,
        json!({"name": "Later", "condition": {},
               "effect": {"kind": "milestone_bonus", "amount": "500", "trigger": {"kind": "consulting_session_completed"}}}),
    )
    .await;
    // £309,500 declared in the window: £5,500 of the £315,000 limit is left.
    let owner = app.applicant("owner@widgets.co.uk").await;
    let mut a = valid_application();
    a["subsidy_declarations"] =
        json!([{"provider": "Innovate UK", "amount": "309500", "awarded_on": "2025-06-01"}]);
    let application = body(app.apply(&owner, &a).await).await;
    assert_eq!(application["status"], "submitted", "{application}");
    let id = application["id"].as_str().unwrap();
    let preview = body(
        app.get(&format!("/api/v1/applications/{id}/incentives"), &admin)
            .await,
    )
    .await;
    assert_eq!(
        (
            preview["base"].as_str(),
            preview["extra"].as_str(),
            preview["total"].as_str(),
            preview["milestone_bonuses"].as_str()
        ),
        (
            Some("5000.00"),
            Some("500.00"),
            Some("5500.00"),
            Some("0.00")
        )
    );
    assert!(preview["limited_by"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().contains("Minimal Financial Assistance")));
    let decided = body(
        app.decide(
            &admin,
            id,
            &json!({"decision": "approve", "reason": "eligible for the programme"}),
        )
        .await,
    )
    .await;
    assert_eq!(decided["voucher"]["granted"], "5500.00");
    // £5,600 asked for would pass the limit: refused, as before incentives.
    let other = app.applicant("second@gadgets.co.uk").await;
    a["company_number"] = json!("SC123456");
    let id = body(app.apply(&other, &a).await).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = app
        .decide(
            &admin,
            &id,
            &json!({"decision": "approve", "amount": "5600", "reason": "eligible for the programme"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 409);
    assert_eq!(body(resp).await["code"], "mfa_limit_exceeded");
}

async fn bad_rules_are_refused_by_field_and_change_nothing(app: TestApp) {
    let admin = app.admin().await;
    for (req, field) in [
        (
            json!({"name": "x", "condition": {"regions": ["atlantis"]}, "effect": {"kind": "fixed_bonus", "amount": "1"}}),
            "condition.regions[0]",
        ),
        (
            json!({"name": "x", "condition": {"sic_sections": ["Z"]}, "effect": {"kind": "fixed_bonus", "amount": "1"}}),
            "condition.sic_sections[0]",
        ),
        (
            json!({"name": "x", "condition": {"founded_within_years": 0}, "effect": {"kind": "fixed_bonus", "amount": "1"}}),
            "condition.founded_within_years",
        ),
        (
            json!({"name": "x", "condition": {}, "effect": {"kind": "uplift_percent", "percent": 0}}),
            "effect.percent",
        ),
        (
            json!({"name": "x", "condition": {}, "effect": {"kind": "fixed_bonus", "amount": "0"}}),
            "effect.amount",
        ),
        (
            json!({"name": "x", "condition": {}, "effect": {"kind": "free_lunch"}}),
            "effect.kind",
        ),
        (
            json!({"name": " ", "condition": {}, "effect": {"kind": "fixed_bonus", "amount": "1"}}),
            "name",
        ),
    ] {
        let resp = app.post("/api/v1/incentives", &admin, &req).await;
        assert_eq!(resp.status().as_u16(), 422, "{field}");
        let p = body(resp).await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    let resp = app
        .post(
            "/api/v1/incentives",
            &admin,
            &json!({"name": "x", "condition": {}, "effect": {"kind": "fixed_bonus", "amount": "1"}, "budget_line_id": "no-such-line"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 404);
    let resp = app
        .client
        .put(app.url("/api/v1/incentives/no-such-rule"))
        .bearer_auth(&admin)
        .json(&json!({"name": "x", "condition": {}, "effect": {"kind": "fixed_bonus", "amount": "1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(
        body(app.get("/api/v1/incentives", &admin).await).await["data"],
        json!([])
    );
}
