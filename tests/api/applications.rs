//! Applications: bad input, one live application per company, decisions and their audit.

use crate::helpers::*;
use serde_json::json;

on_both_backends!(
    malformed_fields_are_named_and_nothing_is_written,
    malformed_bodies_wrong_types_and_oversized_requests_are_refused,
    a_company_with_a_live_application_cannot_apply_again,
    decisions_happen_once_and_are_audited,
    approval_is_refused_when_the_fund_is_short,
    applicants_see_only_their_own_applications,
    an_approval_above_the_mfa_limit_is_refused,
    a_company_whose_voucher_expired_may_apply_again,
    the_maximum_voucher_and_a_meaningful_reason_are_required,
    the_preview_refuses_what_the_approval_refuses,
    an_approval_above_the_threshold_needs_a_second_administrator,
);

async fn malformed_fields_are_named_and_nothing_is_written(app: TestApp) {
    let applicant = app.applicant("owner@widgets.co.uk").await;
    let admin = app.admin().await;
    let cases = [
        ("company_number", json!("12-34"), "company_number"),
        ("annual_turnover", json!("-5"), "annual_turnover"),
        ("annual_turnover", json!("1.1234567"), "annual_turnover"),
        ("annual_turnover", json!(12.5), "annual_turnover"),
        (
            "balance_sheet_total",
            json!("5000000000"),
            "balance_sheet_total",
        ),
        ("region", json!("atlantis"), "region"),
        ("sic_code", json!("6201"), "sic_code"),
        ("employees", json!(-1), "employees"),
        ("trading_since", json!("yesterday"), "trading_since"),
        ("use_case", json!("short"), "use_case"),
        (
            "subsidy_declarations",
            json!([{"provider": "x", "amount": "1.0000001", "awarded_on": "2025-01-01"}]),
            "subsidy_declarations[0].amount",
        ),
        (
            "subsidy_declarations",
            json!([{"provider": "", "amount": "1", "awarded_on": "2025-01-01"}]),
            "subsidy_declarations[0].provider",
        ),
        (
            "subsidy_declarations",
            json!([{"provider": "x", "amount": "1", "awarded_on": "2099-01-01"}]),
            "subsidy_declarations[0].awarded_on",
        ),
    ];
    for (field, value, path) in cases {
        let mut a = valid_application();
        a[field] = value.clone();
        let problem =
            assert_problem(app.apply(&applicant, &a).await, 422, "validation_failed").await;
        assert_eq!(fields(&problem), [path], "{field} = {value}: {problem}");
    }
    let mut blank = valid_application();
    blank["company_name"] = json!("    ");
    blank["use_case"] = json!(" ".repeat(30));
    let problem = assert_problem(
        app.apply(&applicant, &blank).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&problem), ["company_name", "use_case"]);
    let mut ancient = valid_application();
    ancient["trading_since"] = json!("1066-10-14");
    let problem = assert_problem(
        app.apply(&applicant, &ancient).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&problem), ["trading_since"]);
    let mut missing = valid_application();
    missing.as_object_mut().unwrap().remove("region");
    let problem = assert_problem(
        app.apply(&applicant, &missing).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&problem), ["region"]);
    assert_eq!(app.applications_count(&admin).await, 0);
}

async fn malformed_bodies_wrong_types_and_oversized_requests_are_refused(app: TestApp) {
    let applicant = app.applicant("owner@widgets.co.uk").await;
    let admin = app.admin().await;
    let url = app.url("/api/v1/applications");
    let resp = app
        .client
        .post(&url)
        .bearer_auth(&applicant)
        .header("content-type", "application/json")
        .body("{\"company_number\": ")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, "malformed_json").await;
    let resp = app
        .client
        .post(&url)
        .bearer_auth(&applicant)
        .header("content-type", "application/json")
        .body(format!("{} trailing", valid_application()))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, "malformed_json").await;
    let resp = app
        .client
        .post(&url)
        .bearer_auth(&applicant)
        .header("content-type", "text/plain")
        .body(valid_application().to_string())
        .send()
        .await
        .unwrap();
    assert_problem(resp, 415, "unsupported_media_type").await;
    let mut huge = valid_application();
    huge["use_case"] = json!("x".repeat(70 * 1024));
    let resp = app.apply(&applicant, &huge).await;
    assert_problem(resp, 413, "payload_too_large").await;
    let resp = app
        .client
        .post(&url)
        .bearer_auth(&applicant)
        .json(&json!([1, 2]))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "validation_failed").await;
    assert_eq!(app.applications_count(&admin).await, 0);
}

async fn a_company_with_a_live_application_cannot_apply_again(app: TestApp) {
    let first = app.applicant("first@widgets.co.uk").await;
    let second = app.applicant("second@widgets.co.uk").await;
    let admin = app.admin().await;
    let resp = app.apply(&first, &valid_application()).await;
    assert_eq!(resp.status().as_u16(), 201);
    let id = body(resp).await["id"].as_str().unwrap().to_string();
    // Live once an administrator confirms the applicant owns the company (see
    // ownership_and_conflicts.rs for unconfirmed applications side by side).
    let resp = app
        .post(
            &format!("/api/v1/applications/{id}/ownership"),
            &admin,
            &json!({"confirmed": true, "note": "director on the register"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    // The same company written differently is the same company.
    let mut same = valid_application();
    same["company_number"] = json!("1234567");
    let problem =
        assert_problem(app.apply(&second, &same).await, 409, "company_already_live").await;
    assert!(problem["detail"].as_str().unwrap().contains("01234567"));
    assert_eq!(app.applications_count(&admin).await, 1);

    // Once rejected, the company may apply again.
    let resp = app
        .decide(
            &admin,
            &id,
            &json!({"decision": "reject", "reason": "use case is out of scope"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(app.apply(&second, &same).await.status().as_u16(), 201);
}

async fn decisions_happen_once_and_are_audited(app: TestApp) {
    let applicant = app.applicant("owner@widgets.co.uk").await;
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "10000").await.status().as_u16(), 201);
    let a = body(app.apply(&applicant, &valid_application()).await).await;
    let id = a["id"].as_str().unwrap();

    // An applicant may not decide.
    let resp = app
        .decide(
            &applicant,
            id,
            &json!({"decision": "approve", "reason": "my own application"}),
        )
        .await;
    assert_problem(resp, 403, "forbidden").await;
    // A decision needs a reason, and a rejection takes no amount.
    let p = assert_problem(
        app.decide(&admin, id, &json!({"decision": "reject", "reason": " "}))
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["reason"]);
    let p = assert_problem(
        app.decide(&admin, id, &json!({"decision": "maybe", "reason": "x"}))
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["decision"]);

    let resp = app
        .decide(
            &admin,
            id,
            &json!({"decision": "reject", "reason": "insufficient detail in use case"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let decided = body(resp).await;
    assert_eq!(decided["application"]["status"], "rejected");
    assert!(decided["voucher"].is_null());

    // Twice, or approving the rejected one: refused, nothing changes.
    for d in [
        json!({"decision": "reject", "reason": "rejected once more"}),
        json!({"decision": "approve", "reason": "changed my mind"}),
    ] {
        assert_problem(
            app.decide(&admin, id, &d).await,
            409,
            "application_already_decided",
        )
        .await;
    }
    let programme = body(app.get("/api/v1/programme", &admin).await).await;
    assert_eq!(programme["fund"]["balance"], "10000.00");
    assert_eq!(programme["vouchers_issued"], 0);
    // The deposit that funded it is listed, newest first, with its amount.
    let deposits = programme["recent_deposits"].as_array().unwrap();
    assert_eq!(deposits.len(), 1);
    assert_eq!(deposits[0]["amount"], "10000.00");

    let audit = body(
        app.get(
            &format!("/api/v1/audit?subject_type=application&subject_id={id}"),
            &admin,
        )
        .await,
    )
    .await;
    let entries = audit["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["action"], "application.reject");
    assert_eq!(entries[0]["reason"], "insufficient detail in use case");
    assert!(entries[0]["actor_id"].is_string());
    // The console's CSV of the log has the entry, with who by name.
    let mut browser = crate::helpers::Browser::sign_in(&app, "admin@programme.gov.uk").await;
    let csv = browser.get(&app, "/console/audit.csv").await;
    assert_eq!(csv.status().as_u16(), 200);
    let text = csv.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("application.reject"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("insufficient detail in use case"), "{line}");
    assert!(line.contains("(admin@programme.gov.uk)"), "{line}");
    // Who, by name and address, as the account reads now.
    let me = body(app.get("/api/v1/me", &admin).await).await;
    assert_eq!(
        entries[0]["actor_name"],
        format!(
            "{} ({})",
            me["full_name"].as_str().unwrap(),
            me["email"].as_str().unwrap()
        )
    );
}

async fn approval_is_refused_when_the_fund_is_short(app: TestApp) {
    let applicant = app.applicant("owner@widgets.co.uk").await;
    let admin = app.admin().await;
    assert_eq!(
        app.deposit(&admin, "4999.999999").await.status().as_u16(),
        201
    );
    let a = body(app.apply(&applicant, &valid_application()).await).await;
    let id = a["id"].as_str().unwrap();
    let resp = app
        .decide(
            &admin,
            id,
            &json!({"decision": "approve", "reason": "meets all criteria"}),
        )
        .await;
    assert_problem(resp, 409, "fund_insufficient").await;
    let still = body(app.get(&format!("/api/v1/applications/{id}"), &admin).await).await;
    assert_eq!(still["status"], "submitted");
    assert!(
        body(app.get("/api/v1/vouchers", &admin).await).await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // An amount and validity of the administrator's choosing, within the fund.
    let resp = app
        .decide(&admin, id, &json!({"decision": "approve", "amount": "2500.50", "valid_days": 30, "reason": "reduced award"}))
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let v = body(resp).await["voucher"].clone();
    assert_eq!(v["granted"], "2500.50");
    let expires = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!((29 * 24..=30 * 24).contains(&days), "{days}");
    let programme = body(app.get("/api/v1/programme", &admin).await).await;
    assert_eq!(programme["fund"]["balance"], "2499.499999");
    app.store.verify_ledger().await.unwrap();
}

async fn applicants_see_only_their_own_applications(app: TestApp) {
    let alice = app.applicant("alice@widgets.co.uk").await;
    let bob = app.applicant("bob@gadgets.co.uk").await;
    let a = body(app.apply(&alice, &valid_application()).await).await;
    let mut other = valid_application();
    other["company_number"] = json!("SC123456");
    assert_eq!(app.apply(&bob, &other).await.status().as_u16(), 201);
    let mine = body(app.get("/api/v1/applications", &alice).await).await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 1);
    let resp = app
        .get(
            &format!("/api/v1/applications/{}", a["id"].as_str().unwrap()),
            &bob,
        )
        .await;
    assert_problem(resp, 404, "not_found").await;
    let p = assert_problem(
        app.get("/api/v1/applications?status=pending", &alice).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["status"]);
}

async fn an_approval_above_the_mfa_limit_is_refused(app: TestApp) {
    let applicant = app.applicant("owner@widgets.co.uk").await;
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "500000").await.status().as_u16(), 201);
    let mut a = valid_application();
    a["subsidy_declarations"] =
        json!([{"provider": "Innovate UK", "amount": "300000", "awarded_on": "2025-06-01"}]);
    let a = body(app.apply(&applicant, &a).await).await;
    assert_eq!(
        a["status"], "submitted",
        "£300k + £5k standard voucher is within £315k"
    );
    let id = a["id"].as_str().unwrap();
    let p = assert_problem(
        app.decide(
            &admin,
            id,
            &json!({"decision": "approve", "amount": "15000.01", "reason": "meets all criteria"}),
        )
        .await,
        409,
        "mfa_limit_exceeded",
    )
    .await;
    assert!(p["detail"]
        .as_str()
        .unwrap()
        .contains("exceeds £315,000.00"));
    // £15,000 is within the limit, and above the amount one administrator may grant.
    let resp = app
        .decide(
            &admin,
            id,
            &json!({"decision": "approve", "amount": "15000", "reason": "meets all criteria"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let second = app.user_with_role("second@programme.gov.uk", "admin").await;
    let resp = app
        .post(
            &format!("/api/v1/applications/{id}/second-approval"),
            &second,
            &json!({"decision": "confirm", "reason": "checked and agreed"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["voucher"]["granted"], "15000.00");
}

/// The id of an application submitted by a new applicant for `company`.
async fn submitted(app: &TestApp, email: &str, company: &str) -> String {
    let applicant = app.applicant(email).await;
    let mut a = valid_application();
    a["company_number"] = json!(company);
    let a = body(app.apply(&applicant, &a).await).await;
    a["id"].as_str().unwrap().to_string()
}

async fn programme(app: &TestApp, admin: &str) -> serde_json::Value {
    body(app.get("/api/v1/programme", admin).await).await
}

async fn the_maximum_voucher_and_a_meaningful_reason_are_required(app: TestApp) {
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    let id = submitted(&app, "owner@widgets.co.uk", "01234567").await;
    // The £40,000 three-year voucher approved alone with the reason "x": refused on both.
    let p = assert_problem(
        app.decide(
            &admin,
            &id,
            &json!({"decision": "approve", "amount": "40000", "valid_days": 1095, "reason": "x"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["reason"]);
    for reason in ["ok", "xxxxxxxxxxxxxxx", "          a  "] {
        let p = assert_problem(
            app.decide(
                &admin,
                &id,
                &json!({"decision": "reject", "reason": reason}),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(fields(&p), ["reason"], "{reason:?}");
    }
    let p = assert_problem(
        app.decide(
            &admin,
            &id,
            &json!({"decision": "approve", "amount": "25000.01", "reason": "meets all criteria"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["amount"]);
    assert!(p.to_string().contains("25000.00"), "{p}");
    let still = body(app.get(&format!("/api/v1/applications/{id}"), &admin).await).await;
    assert_eq!(still["status"], "submitted");
    assert_eq!(
        programme(&app, &admin).await["fund"]["balance"],
        "100000.00"
    );
}

async fn the_preview_refuses_what_the_approval_refuses(app: TestApp) {
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "15000").await.status().as_u16(), 201);
    let id = submitted(&app, "owner@widgets.co.uk", "01234567").await;
    let preview = |amount: &str| {
        let path = format!("/api/v1/applications/{id}/incentives?amount={amount}");
        let app = &app;
        let admin = admin.clone();
        async move { app.get(&path, &admin).await }
    };
    // Each amount: the preview and the approval answer the same status, code and fields.
    for amount in ["20000", "25000.01", "0", "9000.50"] {
        let seen = preview(amount).await;
        let seen_status = seen.status().as_u16();
        let seen = body(seen).await;
        let decided = app
            .decide(
                &admin,
                &id,
                &json!({"decision": "approve", "amount": amount, "reason": "meets all criteria"}),
            )
            .await;
        let decided_status = decided.status().as_u16();
        let decided = body(decided).await;
        if amount == "9000.50" {
            // Within every limit: previewed, then granted.
            assert_eq!((seen_status, decided_status), (200, 200));
            assert_eq!(seen["total"], "9000.50");
            assert_eq!(seen["needs_second_approval"], false);
            assert_eq!(decided["voucher"]["granted"], "9000.50");
            continue;
        }
        assert_eq!(seen_status, decided_status, "{amount}");
        assert!(seen_status >= 400, "{amount}: {seen}");
        assert_eq!(seen["code"], decided["code"], "{amount}");
        assert_eq!(fields(&seen), fields(&decided), "{amount}");
        if amount == "20000" {
            // The fund holds £15,000: both refuse, naming the fund.
            assert_eq!(seen["code"], "fund_insufficient");
        }
    }
    // Decided: the preview now refuses as the approval does.
    let seen = preview("100").await;
    assert_eq!(seen.status().as_u16(), 409);
    assert_eq!(body(seen).await["code"], "application_already_decided");
}

async fn an_approval_above_the_threshold_needs_a_second_administrator(app: TestApp) {
    let first = app.admin().await;
    let second = app.user_with_role("second@programme.gov.uk", "admin").await;
    assert_eq!(app.deposit(&first, "50000").await.status().as_u16(), 201);
    let id = submitted(&app, "owner@widgets.co.uk", "01234567").await;
    let preview = body(
        app.get(
            &format!("/api/v1/applications/{id}/incentives?amount=12000"),
            &first,
        )
        .await,
    )
    .await;
    assert_eq!(preview["needs_second_approval"], true);

    // The first approval is recorded and audited; no money moves, no voucher.
    let resp = app
        .decide(
            &first,
            &id,
            &json!({"decision": "approve", "amount": "12000", "reason": "strong use case, regional priority"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let pending = body(resp).await;
    assert_eq!(pending["application"]["status"], "awaiting_second_approval");
    assert!(pending["voucher"].is_null());
    assert_eq!(
        pending["application"]["second_approval"]["total"],
        "12000.00"
    );
    let p = programme(&app, &first).await;
    assert_eq!(p["fund"]["balance"], "50000.00");
    assert_eq!(p["granted"]["total"], "0.00");
    assert_eq!(p["vouchers_issued"], 0);

    // The first approver cannot confirm; a reason must say why; a new decision is refused.
    let path = format!("/api/v1/applications/{id}/second-approval");
    assert_problem(
        app.post(
            &path,
            &first,
            &json!({"decision": "confirm", "reason": "I checked it again"}),
        )
        .await,
        409,
        "same_approver",
    )
    .await;
    let p = assert_problem(
        app.post(
            &path,
            &second,
            &json!({"decision": "confirm", "reason": "x"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["reason"]);
    assert_problem(
        app.decide(
            &second,
            &id,
            &json!({"decision": "approve", "reason": "meets all criteria"}),
        )
        .await,
        409,
        "application_already_decided",
    )
    .await;
    assert_eq!(programme(&app, &first).await["fund"]["balance"], "50000.00");

    // A second administrator confirms: exactly £12,000 moves.
    let resp = app
        .post(
            &path,
            &second,
            &json!({"decision": "confirm", "reason": "agreed with the first review"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let done = body(resp).await;
    assert_eq!(done["application"]["status"], "approved");
    assert_eq!(done["voucher"]["granted"], "12000.00");
    assert_eq!(
        done["application"]["second_approval"]["outcome"],
        "confirmed"
    );
    let p = programme(&app, &first).await;
    assert_eq!(p["fund"]["balance"], "38000.00");
    assert_eq!(p["fund"]["granted"], "12000.00");
    assert_eq!(p["granted"]["vouchers"], "12000.00");
    // Confirmed once: again is refused.
    assert_problem(
        app.post(
            &path,
            &second,
            &json!({"decision": "confirm", "reason": "agreed with the first review"}),
        )
        .await,
        409,
        "no_second_approval_pending",
    )
    .await;
    let audit = body(
        app.get(
            &format!("/api/v1/audit?subject_type=application&subject_id={id}"),
            &first,
        )
        .await,
    )
    .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["application.approval_requested", "application.approve"]
    );

    // A second application: the second administrator rejects; nothing moves.
    let other = submitted(&app, "other@gadgets.co.uk", "SC123456").await;
    assert_eq!(
        app.decide(
            &first,
            &other,
            &json!({"decision": "approve", "amount": "11000", "reason": "strong use case, regional priority"}),
        )
        .await
        .status()
        .as_u16(),
        202
    );
    let resp = app
        .post(
            &format!("/api/v1/applications/{other}/second-approval"),
            &second,
            &json!({"decision": "reject", "reason": "the use case is not AI adoption"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["application"]["status"], "rejected");
    assert_eq!(programme(&app, &first).await["fund"]["balance"], "38000.00");
    app.store.verify_ledger().await.unwrap();
}

async fn a_company_whose_voucher_expired_may_apply_again(app: TestApp) {
    use diesel::connection::SimpleConnection;
    let (owner, _voucher_id, _key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let p = assert_problem(
        app.apply(&owner, &valid_application()).await,
        409,
        "company_already_live",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("01234567"));
    app.store
        .write_blocking(|c| {
            Ok(c.batch_execute("UPDATE vouchers SET expires_at = '2020-01-01 00:00:00'")?)
        })
        .unwrap();
    let resp = app.apply(&owner, &valid_application()).await;
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(body(resp).await["status"], "submitted");
}
