//! The whole journey: register → apply → fund → approve → key → metered call → exact balance.

use crate::helpers::*;
use crate::upstream::UPSTREAM_KEY;
use serde_json::json;

on_both_backends!(
    an_sme_spends_its_voucher_and_pays_exactly_for_the_tokens_it_used,
    an_ineligible_company_is_told_which_rules_failed_and_why,
);

async fn an_sme_spends_its_voucher_and_pays_exactly_for_the_tokens_it_used(app: TestApp) {
    // An SME registers and applies.
    let applicant = app.applicant("owner@widgets.co.uk").await;
    let me = body(app.get("/api/v1/me", &applicant).await).await;
    assert_eq!(me["role"], "applicant");
    let resp = app.apply(&applicant, &valid_application()).await;
    assert_eq!(resp.status().as_u16(), 201);
    let application = body(resp).await;
    assert_eq!(application["status"], "submitted");
    assert_eq!(application["eligibility"]["eligible"], true);
    let checks = application["eligibility"]["checks"].as_array().unwrap();
    let rules: Vec<&str> = checks.iter().map(|c| c["rule"].as_str().unwrap()).collect();
    assert_eq!(
        rules,
        [
            "sme_headcount",
            "sme_financial",
            "subsidy_control_mfa",
            "region",
            "sector",
            "trading",
            "company_type"
        ]
    );
    assert!(checks
        .iter()
        .all(|c| c["passed"] == true && !c["reason"].as_str().unwrap().is_empty()));
    let application_id = application["id"].as_str().unwrap();

    // The administrator funds the programme and approves with the standard voucher.
    let admin = app.admin().await;
    let deposit = app.deposit(&admin, "20000.00").await;
    assert_eq!(deposit.status().as_u16(), 201);
    assert_eq!(body(deposit).await["amount"], "20000.00");
    let resp = app
        .decide(
            &admin,
            application_id,
            &json!({"decision": "approve", "reason": "eligible; strong use case"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let decided = body(resp).await;
    assert_eq!(decided["application"]["status"], "approved");
    assert_eq!(
        decided["application"]["decision"]["reason"],
        "eligible; strong use case"
    );
    let voucher = &decided["voucher"];
    assert_eq!(voucher["granted"], "5000.00");
    assert_eq!(voucher["available"], "5000.00");
    assert_eq!(voucher["status"], "active");
    let voucher_id = voucher["id"].as_str().unwrap();
    let programme = body(app.get("/api/v1/programme", &admin).await).await;
    assert_eq!(programme["fund"]["balance"], "15000.00");
    assert_eq!(programme["fund"]["granted"], "5000.00");

    // The SME mints a key; it is shown once.
    let resp = app.create_key(&applicant, voucher_id).await;
    assert_eq!(resp.status().as_u16(), 201);
    let key = body(resp).await;
    let secret = key["key"].as_str().unwrap();
    assert!(secret.starts_with("vk_live_") && secret.len() == 8 + 64);
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()));
    let listed = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/keys"), &applicant)
            .await,
    )
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(listed["data"][0].get("key").is_none());

    // An integrator calls the proxy with it.
    let resp = app.chat(secret, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("x-request-id").is_some());
    let completion = body(resp).await;
    assert_eq!(completion["usage"]["prompt_tokens"], 1000);
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "Hello from the provider."
    );

    // The upstream saw the programme's key, never the voucher's.
    let received = app.upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].authorization.as_deref(),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert!(!received[0].body.to_string().contains(secret));

    // 800 uncached × £2.50 + 200 cached × £1.25 + 333 output × £10.00 per million
    // = 2,000 + 250 + 3,330 = 5,580 micros = £0.00558.
    let v = app.voucher(&applicant, voucher_id).await;
    assert_eq!(v["spent"], "0.00558");
    assert_eq!(v["held"], "0.00");
    assert_eq!(v["available"], "4999.99442");

    let usage = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), &applicant)
            .await,
    )
    .await;
    let rows = usage["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["cost"], "0.00558");
    assert_eq!(rows[0]["prompt_tokens"], 1000);
    assert_eq!(rows[0]["cached_prompt_tokens"], 200);
    assert_eq!(rows[0]["completion_tokens"], 333);
    assert_eq!(rows[0]["price"]["output_per_million"], "10.00");

    let txs = body(
        app.get(
            &format!("/api/v1/vouchers/{voucher_id}/transactions"),
            &applicant,
        )
        .await,
    )
    .await;
    let kinds: Vec<(String, String, String)> = txs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap().into(),
                t["direction"].as_str().unwrap().into(),
                t["amount"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(kinds.contains(&("single".into(), "credit".into(), "5000.00".into())));
    assert!(kinds.contains(&("post".into(), "debit".into(), "0.00558".into())));
    assert!(kinds.iter().any(|(k, d, _)| k == "pending" && d == "debit"));
    assert_eq!(
        rows[0]["transfer_id"],
        txs["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == "post")
            .unwrap()["id"]
    );

    let programme = body(app.get("/api/v1/programme", &admin).await).await;
    assert_eq!(programme["consumed"], "0.00558");
    assert_eq!(programme["held"], "0.00");
    let keys = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/keys"), &applicant)
            .await,
    )
    .await;
    assert!(keys["data"][0]["last_used_at"].is_string());

    // Σ debits = Σ credits, and every cached total matches its transfers.
    app.store.verify_ledger().await.unwrap();
}

async fn an_ineligible_company_is_told_which_rules_failed_and_why(app: TestApp) {
    let applicant = app.applicant("big@corp.co.uk").await;
    let mut big = valid_application();
    big["employees"] = json!(400);
    big["annual_turnover"] = json!("60000000");
    big["balance_sheet_total"] = json!("30000000");
    let resp = app.apply(&applicant, &big).await;
    assert_eq!(resp.status().as_u16(), 201);
    let a = body(resp).await;
    assert_eq!(a["status"], "ineligible");
    assert_eq!(a["eligibility"]["eligible"], false);
    let failed: Vec<&str> = a["eligibility"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["rule"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["sme_headcount", "sme_financial"]);
    let headcount = &a["eligibility"]["checks"][0]["reason"];
    assert_eq!(headcount, "400 employees: an SME has fewer than 250");

    // The stored rule results are what the applicant and administrators read back.
    let again = body(
        app.get(
            &format!("/api/v1/applications/{}", a["id"].as_str().unwrap()),
            &applicant,
        )
        .await,
    )
    .await;
    assert_eq!(again["eligibility"], a["eligibility"]);

    // An ineligible application can't be approved, and does not block a corrected one.
    let admin = app.admin().await;
    let resp = app
        .decide(
            &admin,
            a["id"].as_str().unwrap(),
            &json!({"decision": "approve", "reason": "meets all criteria"}),
        )
        .await;
    assert_problem(resp, 409, "application_already_decided").await;
    let resp = app.apply(&applicant, &valid_application()).await;
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(body(resp).await["status"], "submitted");
}
