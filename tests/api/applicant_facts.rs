//! The facts an applicant declares about its company: ITL1 region codes, SIC 2007 codes from
//! the published list, company number prefixes outside the programme, and trading dates.

use crate::helpers::*;
use serde_json::{json, Value};

on_both_backends!(
    an_itl1_code_is_accepted_and_shown_as_its_region,
    an_unknown_sic_code_is_refused_and_nothing_is_written,
    an_overseas_company_fails_the_company_type_rule,
    a_trading_date_in_the_future_says_so,
);

fn check<'a>(application: &'a Value, rule: &str) -> &'a Value {
    application["eligibility"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == rule)
        .unwrap_or_else(|| panic!("no {rule} rule in {application}"))
}

async fn an_itl1_code_is_accepted_and_shown_as_its_region(app: TestApp) {
    let applicant = app.applicant("owner@highland.co.uk").await;
    let mut a = valid_application();
    a["region"] = json!("TLM");
    a["company_number"] = json!("SC123456");
    let resp = app.apply(&applicant, &a).await;
    assert_eq!(resp.status().as_u16(), 201);
    let created = body(resp).await;
    assert_eq!(created["status"], "submitted", "{created}");
    // Responses keep the one canonical form, the region's name.
    assert_eq!(created["region"], "scotland");
    let region = check(&created, "region");
    assert_eq!(region["passed"], true);
    assert_eq!(region["reason"], "Scotland (TLM) is a participating region");
    assert_eq!(check(&created, "company_type")["passed"], true);

    let id = created["id"].as_str().unwrap();
    let again = body(
        app.get(&format!("/api/v1/applications/{id}"), &applicant)
            .await,
    )
    .await;
    assert_eq!(again["region"], "scotland");
    assert_eq!(check(&again, "region")["reason"], region["reason"]);

    // The names are still accepted.
    let other = app.applicant("owner@valleys.co.uk").await;
    let mut b = valid_application();
    b["company_number"] = json!("07654321");
    b["region"] = json!("wales");
    let resp = app.apply(&other, &b).await;
    assert_eq!(resp.status().as_u16(), 201);
    let created = body(resp).await;
    assert_eq!(created["region"], "wales");
    assert_eq!(
        check(&created, "region")["reason"],
        "Wales (TLL) is a participating region"
    );
}

async fn an_unknown_sic_code_is_refused_and_nothing_is_written(app: TestApp) {
    let applicant = app.applicant("owner@widgets.co.uk").await;
    let admin = app.admin().await;
    let mut a = valid_application();
    a["sic_code"] = json!("62013");
    let problem = assert_problem(app.apply(&applicant, &a).await, 422, "validation_failed").await;
    assert_eq!(fields(&problem), ["sic_code"]);
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("not a UK SIC 2007 code"), "{message}");
    assert_eq!(app.applications_count(&admin).await, 0);

    // A listed code is described in the sector rule.
    a["sic_code"] = json!("62020");
    let resp = app.apply(&applicant, &a).await;
    assert_eq!(resp.status().as_u16(), 201);
    let created = body(resp).await;
    assert_eq!(
        check(&created, "sector")["reason"],
        "SIC 62020 (Information technology consultancy activities) is in division 62, which the programme funds"
    );
}

async fn an_overseas_company_fails_the_company_type_rule(app: TestApp) {
    let applicant = app.applicant("owner@overseas.example").await;
    let mut a = valid_application();
    a["company_number"] = json!("fc 123456");
    let resp = app.apply(&applicant, &a).await;
    assert_eq!(resp.status().as_u16(), 201);
    let created = body(resp).await;
    assert_eq!(created["status"], "ineligible");
    assert_eq!(created["eligibility"]["eligible"], false);
    let failed: Vec<&str> = created["eligibility"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["rule"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["company_type"]);
    assert_eq!(
        check(&created, "company_type")["reason"],
        "company number FC123456 is an overseas company (prefix FC), which the programme does not fund"
    );
}

async fn a_trading_date_in_the_future_says_so(app: TestApp) {
    let applicant = app.applicant("owner@tomorrow.co.uk").await;
    let tomorrow = chrono::Utc::now().date_naive() + chrono::Duration::days(1);
    let mut a = valid_application();
    a["trading_since"] = json!(tomorrow.to_string());
    let resp = app.apply(&applicant, &a).await;
    assert_eq!(resp.status().as_u16(), 201);
    let created = body(resp).await;
    assert_eq!(created["status"], "ineligible");
    let trading = check(&created, "trading");
    assert_eq!(trading["passed"], false);
    assert_eq!(
        trading["reason"],
        format!("trading since {tomorrow} is in the future: the company must already be trading")
    );
}
