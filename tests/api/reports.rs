//! Reports on a programme built with known data: every figure checked exactly, the public
//! summary under disclosure control (nothing suppressed shows in its HTML, JSON or CSV), and a
//! scheduled report made once with two workers.

use crate::helpers::*;
use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};
use std::sync::Arc;
use voucherd_worker::{Job, ManualClock, Worker, WorkerConfig};

on_both_backends!(
    a_monthly_report_counts_the_programme_exactly_and_its_public_summary_hides_small_cells,
    a_report_of_an_unfinished_period_is_a_draft_and_the_final_one_is_what_is_published,
    one_organisation_making_up_most_of_a_cells_spend_is_not_published,
    an_administrator_makes_the_report_of_an_ended_period_once
);

fn worker(app: &TestApp, clock: &Arc<ManualClock>) -> Worker {
    let mut c = WorkerConfig::default();
    c.mail.dir =
        std::env::temp_dir().join(format!("voucherd-mail-{}", uuid::Uuid::new_v4().simple()));
    Worker::new(app.store.clone(), c, clock.clone()).unwrap()
}

async fn text(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

async fn a_monthly_report_counts_the_programme_exactly_and_its_public_summary_hides_small_cells(
    app: TestApp,
) {
    // One approved voucher that spends twice, one ineligible application, one rejected.
    let (_owner, _voucher_id, key) = app.funded_voucher("a@widgets.co.uk", "100").await;
    for _ in 0..2 {
        assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    }
    let admin = app.token("admin-a@widgets.co.uk").await;
    let big = app.applicant("b@big.co.uk").await;
    let mut a = valid_application();
    a["company_number"] = json!("02222222");
    a["employees"] = json!(300);
    assert_eq!(
        body(app.apply(&big, &a).await).await["status"],
        "ineligible"
    );
    let other = app.applicant("c@other.co.uk").await;
    a["company_number"] = json!("SC123456");
    a["employees"] = json!(12);
    let id = body(app.apply(&other, &a).await).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = app
        .decide(
            &admin,
            &id,
            &json!({"decision": "reject", "reason": "not AI adoption"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);

    // The first of next month: the month just ended is this one. Two workers, one report.
    let today = voucherd_store::now().date();
    let next = if today.month() == 12 {
        NaiveDate::from_ymd_opt(today.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(today.year(), today.month() + 1, 1)
    }
    .unwrap();
    let clock = Arc::new(ManualClock::new(next.and_hms_opt(5, 59, 0).unwrap()));
    let (one, two) = (worker(&app, &clock), worker(&app, &clock));
    clock.set(next.and_hms_opt(6, 0, 5).unwrap());
    let (a, b) = tokio::join!(
        one.tick(crate::worker::running()),
        two.tick(crate::worker::running())
    );
    let made: Vec<_> = a
        .unwrap()
        .into_iter()
        .chain(b.unwrap())
        .filter(|r| r.job == Job::ReportMonthly)
        .collect();
    assert_eq!(made.len(), 1, "one run of the schedule");
    let again = one.run_once(Job::ReportMonthly).await.unwrap();
    assert_eq!(
        again.summary["already_existed"], true,
        "one report per period"
    );

    let listed = body(app.get("/api/v1/reports", &admin).await).await;
    let listed = listed["data"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    let from = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap();
    let to = next - chrono::Duration::days(1);
    assert_eq!(
        listed[0]["period"],
        json!({"from": from.to_string(), "to": to.to_string()})
    );
    assert_eq!(listed[0]["generated_by"], "job:report-monthly");
    assert_eq!(listed[0]["content_hash"].as_str().unwrap().len(), 64);
    let id = listed[0]["id"].as_str().unwrap().to_string();

    let report = body(app.get(&format!("/api/v1/reports/{id}"), &admin).await).await;
    assert_eq!(report["schema_version"], 2);
    let c = &report["current"];
    // Both decisions came within a minute of their applications.
    assert_eq!(
        c["applications"],
        json!({
            "received": 3, "eligible": 2, "approved": 1, "rejected": 1,
            "ineligible_by_rule": {"sme_headcount": 1},
            "decision_hours": {"median": "0.00", "p90": "0.00"},
        })
    );
    assert_eq!(
        c["vouchers"],
        json!({"issued": 1, "active": 1, "exhausted": 0, "expired": 0})
    );
    assert_eq!(
        (
            c["credit"]["granted"].as_str(),
            c["credit"]["consumed"].as_str(),
            c["credit"]["forfeited"].as_str(),
            c["credit"]["utilisation_percent"].as_str()
        ),
        (Some("100.00"), Some("0.01"), Some("0.00"), Some("0.01"))
    );
    assert_eq!(c["usage"]["requests"], 2);
    assert_eq!(c["usage"]["cost"], "0.01");
    for (table, key) in [
        ("by_model", MODEL),
        ("by_region", "north_east"),
        ("by_sector", "J"),
        ("by_size_band", "small"),
    ] {
        let rows = c["usage"][table].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{table}");
        assert_eq!(
            (
                rows[0]["key"].as_str(),
                rows[0]["requests"].as_i64(),
                rows[0]["cost"].as_str()
            ),
            (Some(key), Some(2), Some("0.01")),
            "{table}"
        );
    }
    assert_eq!(
        c["usage"]["by_month"][0]["key"],
        from.format("%Y-%m").to_string()
    );
    assert_eq!(c["organisations_active"], 1);
    assert_eq!(
        (&c["credit"]["held"], &c["credit"]["incentive_bonuses"]),
        (&json!("0.00"), &json!("0.00"))
    );
    assert_eq!(
        c["challenges"],
        json!({"entries": 0, "assessed": 0, "awarded": 0, "pilot_places": 0, "award_credit": "0.00"})
    );
    assert_eq!(c["mfa_awards_over_100000"], json!([]));
    assert_eq!(c["top_ups_and_co_funding"], Value::Null);
    // The month before had nothing.
    let p = &report["previous"];
    assert_eq!(
        (
            &p["applications"]["received"],
            &p["vouchers"]["issued"],
            &p["usage"]["requests"],
            &p["credit"]["granted"]
        ),
        (&json!(0), &json!(0), &json!(0), &json!("0.00"))
    );

    let (status, csv) = text(
        app.get(&format!("/api/v1/reports/{id}/csv?table=by_model"), &admin)
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        csv,
        format!(
            "cost,key,requests,tokens\n0.01,{MODEL},2,{}\n",
            c["usage"]["by_model"][0]["tokens"]
        )
    );
    let (status, html) = text(app.get(&format!("/api/v1/reports/{id}/html"), &admin).await).await;
    assert_eq!(status, 200);
    assert!(html.contains("<svg") && html.contains("Spend per month"));
    assert_eq!(
        app.get(&format!("/api/v1/reports/{id}/csv?table=secrets"), &admin)
            .await
            .status()
            .as_u16(),
        422
    );

    // Public summaries are of the semi-annual review: the half-year now running, made on the
    // first day of the next.
    let half_start = match today.month() {
        4..=9 => NaiveDate::from_ymd_opt(today.year(), 10, 1),
        10..=12 => NaiveDate::from_ymd_opt(today.year() + 1, 4, 1),
        _ => NaiveDate::from_ymd_opt(today.year(), 4, 1),
    }
    .unwrap();
    clock.set(half_start.and_hms_opt(6, 0, 5).unwrap());
    let semi = one.run_once(Job::ReportSemiAnnual).await.unwrap();
    assert_eq!(semi.summary["already_existed"], false, "{}", semi.summary);
    let (from, to) = (
        semi.summary["period"]["from"].as_str().unwrap().to_string(),
        semi.summary["period"]["to"].as_str().unwrap().to_string(),
    );

    // One organisation is a small cell everywhere it appears; nothing identifying.
    let public_json = body(
        app.client
            .get(app.url("/public/reports/latest?format=json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let summary = &public_json["summary"];
    assert_eq!(
        summary["applications_received"], "[c]",
        "3 organisations, fewer than 5"
    );
    assert_eq!(summary["applications_approved"], "[c]");
    let ne: &Value = summary["spend_by_region_and_size"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "north_east")
        .unwrap();
    assert_eq!(
        (ne["small"].as_str(), ne["total"].as_str()),
        (Some("[c]"), Some("[c]"))
    );
    assert_eq!(ne["micro"], "0.00");
    let (_, public_html) = text(
        app.client
            .get(app.url("/public/reports/latest"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (_, public_csv) = text(
        app.client
            .get(app.url("/public/reports/latest?format=csv&table=spend_by_region_and_size"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    for page in [
        public_json.to_string(),
        public_html.clone(),
        public_csv.clone(),
    ] {
        for secret in ["0.01116", "Widget Analytics", "01234567", "SC123456"] {
            assert!(!page.contains(secret), "{secret} shows in {page}");
        }
    }
    assert!(public_html.contains("fewer than 5 organisations"));
    assert!(public_csv.starts_with("medium,micro,region,small,total\n"));
    let by_period = app
        .client
        .get(app.url(&format!("/public/reports/{from}/{to}")))
        .send()
        .await
        .unwrap();
    assert_eq!(by_period.status().as_u16(), 200);
    let missing = app
        .client
        .get(app.url("/public/reports/2020-04-01/2020-09-30"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let bad = app
        .client
        .get(app.url("/public/reports/latest?format=pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 422);
    assert_eq!(
        app.get("/api/v1/reports", &other).await.status().as_u16(),
        403
    );
}

/// An approved voucher for its own company, with a key: (owner, voucher id, key).
async fn company_voucher(
    app: &TestApp,
    admin: &str,
    email: &str,
    company: &str,
    region: &str,
    amount: &str,
    incentives_total: Option<&str>,
) -> (String, String, String) {
    let owner = app.applicant(email).await;
    let mut a = valid_application();
    a["company_number"] = json!(company);
    a["region"] = json!(region);
    let applied = body(app.apply(&owner, &a).await).await;
    assert_eq!(applied["status"], "submitted", "{applied}");
    let mut decision =
        json!({"decision": "approve", "amount": amount, "reason": "meets all criteria"});
    if let Some(t) = incentives_total {
        decision["incentives_total"] = json!(t);
    }
    let decided = app
        .decide(admin, applied["id"].as_str().unwrap(), &decision)
        .await;
    assert_eq!(decided.status().as_u16(), 200);
    let voucher_id = body(decided).await["voucher"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = body(app.create_key(&owner, &voucher_id).await).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    (owner, voucher_id, key)
}

async fn public_status(app: &TestApp, path: &str) -> u16 {
    app.client
        .get(app.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn a_report_of_an_unfinished_period_is_a_draft_and_the_final_one_is_what_is_published(
    app: TestApp,
) {
    use voucherd_domain::report_period::{Period, ReportKind};
    use voucherd_worker::report;
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "300000").await.status().as_u16(), 201);
    let now = voucherd_store::now();
    let today = now.date();
    let year = voucherd_domain::budget::FinancialYear::containing(today).to_string();
    let line = app
        .post(
            "/api/v1/budget-lines",
            &admin,
            &json!({"name": "General", "financial_year": year, "amount": "250000"}),
        )
        .await;
    assert_eq!(line.status().as_u16(), 201);
    let rule = app
        .post(
            "/api/v1/incentives",
            &admin,
            &json!({"name": "North West bonus", "condition": {"regions": ["north_west"]},
                   "effect": {"kind": "fixed_bonus", "amount": "500"}}),
        )
        .await;
    assert_eq!(rule.status().as_u16(), 201);
    // A spends; B expires now, inside the period; C expires after the period ends.
    let (owner_a, voucher_a, key_a) = company_voucher(
        &app,
        &admin,
        "a@north.co.uk",
        "01111111",
        "north_west",
        "2500",
        Some("3000"),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            app.chat(&key_a, &chat_request()).await.status().as_u16(),
            200
        );
    }
    let (_, voucher_b, _) = company_voucher(
        &app,
        &admin,
        "b@east.co.uk",
        "02222222",
        "north_east",
        "100",
        None,
    )
    .await;
    let (_, voucher_c, _) = company_voucher(
        &app,
        &admin,
        "c@east.co.uk",
        "03333333",
        "north_east",
        "100",
        None,
    )
    .await;
    let month = Period::containing(ReportKind::Monthly, today);
    let after_month = (month.to() + chrono::Duration::days(1))
        .and_hms_opt(6, 0, 5)
        .unwrap();
    app.store.expire_voucher_for_tests(voucher_b).await;
    app.store
        .set_voucher_expiry_for_tests(voucher_c, after_month + chrono::Duration::days(10))
        .await;
    // A 90-minute consulting session booked for A.
    let adviser = app.user_with_role("adviser@advice.gov.uk", "adviser").await;
    let starts = now + chrono::Duration::days(2);
    let slot = app
        .post(
            "/api/v1/consulting/slots",
            &adviser,
            &json!({"starts_at": starts.and_utc().to_rfc3339(),
                   "ends_at": (starts + chrono::Duration::minutes(90)).and_utc().to_rfc3339()}),
        )
        .await;
    assert_eq!(slot.status().as_u16(), 201);
    let slot_id = body(slot).await["id"].as_str().unwrap().to_string();
    let booked = app
        .post(
            "/api/v1/consulting/bookings",
            &owner_a,
            &json!({"slot_id": slot_id, "voucher_id": voucher_a}),
        )
        .await;
    assert_eq!(booked.status().as_u16(), 201);

    // Any other period for a scheduled kind is refused, and a one-day one is never public.
    let one_day = format!("/public/reports/{today}/{today}");
    assert_eq!(public_status(&app, &one_day).await, 422);
    assert!(Period::fixed(ReportKind::SemiAnnual, today, today).is_err());

    // The half-year now running, on demand: a draft, kept and listed, never public.
    let rules = voucherd_domain::disclosure::Rules::default();
    // Made after B's expiry was moved to a second ago.
    let now = voucherd_store::now();
    let half = Period::containing(ReportKind::SemiAnnual, today);
    let draft = report::generate(&app.store, half, "command line", now, &rules, &|_| {})
        .await
        .unwrap()
        .expect("a draft is always kept");
    assert!(draft.draft);
    let again = report::generate(&app.store, half, "command line", now, &rules, &|_| {})
        .await
        .unwrap();
    assert!(again.is_some_and(|r| r.draft), "drafts never conflict");
    assert_eq!(public_status(&app, "/public/reports/latest").await, 404);
    let half_path = format!("/public/reports/{}/{}", half.from(), half.to());
    assert_eq!(public_status(&app, &half_path).await, 404);
    let draft_json = body(
        app.get(&format!("/api/v1/reports/{}", draft.id), &admin)
            .await,
    )
    .await;
    assert_eq!(draft_json["draft"], true);
    assert!(draft_json["title"].as_str().unwrap().starts_with("DRAFT"));
    // Made now, only B has expired: C expires after now.
    assert_eq!(draft_json["current"]["vouchers"]["expired"], 1);
    let (_, draft_html) = text(
        app.get(&format!("/api/v1/reports/{}/html", draft.id), &admin)
            .await,
    )
    .await;
    assert!(draft_html.contains("DRAFT: the period had not ended"));

    // The month, made once it has ended: final, and every count the period's own.
    let monthly = report::generate(
        &app.store,
        month,
        "job:report-monthly",
        after_month,
        &rules,
        &|_| {},
    )
    .await
    .unwrap()
    .expect("the final report");
    assert!(!monthly.draft);
    let r = body(
        app.get(&format!("/api/v1/reports/{}", monthly.id), &admin)
            .await,
    )
    .await;
    assert_eq!(
        (r["schema_version"].as_i64(), &r["draft"]),
        (Some(2), &json!(false))
    );
    let c = &r["current"];
    assert_eq!(
        c["vouchers"],
        json!({"issued": 3, "active": 2, "exhausted": 0, "expired": 1}),
        "only B expired within the month"
    );
    assert_eq!(
        (
            &c["applications"]["received"],
            &c["applications"]["approved"]
        ),
        (&json!(3), &json!(3))
    );
    assert_eq!(
        c["decision_days"],
        json!({"decisions": 3, "median": "0.00", "p75": "0.00", "p90": "0.00", "max": "0.00"})
    );
    assert_eq!(
        (
            &c["credit"]["granted"],
            &c["credit"]["consumed"],
            &c["usage"]["cost"]
        ),
        (&json!("3200.00"), &json!("0.01"), &json!("0.01"))
    );
    assert_eq!(
        c["budget_lines"],
        json!([{"name": "General", "financial_year": year, "allocated": "250000.00",
                "spent": "0.01", "remaining": "246800.00", "spent_in_period": "0.01"}])
    );
    assert_eq!(
        c["incentives_by_rule"][0]["count"], 1,
        "{}",
        c["incentives_by_rule"]
    );
    assert_eq!(
        (
            c["incentives_by_rule"][0]["name"].as_str(),
            c["incentives_by_rule"][0]["value"].as_str()
        ),
        (Some("North West bonus"), Some("500.00"))
    );
    assert_eq!(
        c["consulting"],
        json!({"sessions_booked": 1, "hours_booked": "1.50", "sessions_delivered": 0, "hours_delivered": "0.00"})
    );
    assert_eq!(c["challenge_outcomes"], json!([]));
    // Pounds and pence with separators on the page.
    let (_, html) = text(
        app.get(&format!("/api/v1/reports/{}/html", monthly.id), &admin)
            .await,
    )
    .await;
    for shown in ["£3,200.00", "£250,000.00", "£246,800.00", "£500.00"] {
        assert!(html.contains(shown), "{shown} in the page");
    }
    assert!(!html.contains("0.01116"));
    // Every table listed downloads as CSV.
    let tables = r["tables"].as_object().unwrap();
    assert_eq!(tables.len(), report::TABLES.len());
    for name in tables.keys() {
        let (status, csv) = text(
            app.get(
                &format!("/api/v1/reports/{}/csv?table={name}", monthly.id),
                &admin,
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{name}");
        // A table with rows has a header; an empty list (no challenges here) has no rows.
        let empty = r.pointer(tables[name].as_str().unwrap()) == Some(&json!([]));
        assert_eq!(csv.is_empty(), empty, "{name}: {csv}");
    }
    let (_, csv) = text(
        app.get(
            &format!("/api/v1/reports/{}/csv?table=budget_lines", monthly.id),
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(
        csv,
        format!("allocated,financial_year,name,remaining,spent,spent_in_period\n250000.00,{year},General,246800.00,0.01,0.01\n")
    );
    let (_, csv) = text(
        app.get(
            &format!("/api/v1/reports/{}/csv?table=vouchers", monthly.id),
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(
        csv,
        "measure,value\nactive,2\nexhausted,0\nexpired,1\nissued,3\n"
    );
    let (_, csv) = text(
        app.get(
            &format!("/api/v1/reports/{}/csv?table=applications", monthly.id),
            &admin,
        )
        .await,
    )
    .await;
    assert!(csv.starts_with("measure,value\napproved,3\n"), "{csv}");

    // The scheduled job on the half's real end makes the final report despite the drafts.
    let half_end = (half.to() + chrono::Duration::days(1))
        .and_hms_opt(6, 0, 5)
        .unwrap();
    let clock = Arc::new(ManualClock::new(half_end));
    let w = worker(&app, &clock);
    let made = w.run_once(Job::ReportSemiAnnual).await.unwrap();
    assert_eq!(made.summary["already_existed"], false, "{}", made.summary);
    assert_eq!(
        made.summary["period"],
        json!({"from": half.from().to_string(), "to": half.to().to_string()})
    );
    let latest = body(
        app.client
            .get(app.url("/public/reports/latest?format=json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (&latest["draft"], &latest["period"]["from"]),
        (&json!(false), &json!(half.from().to_string()))
    );
    assert_eq!(public_status(&app, &half_path).await, 200);
    let listed = body(app.get("/api/v1/reports", &admin).await).await;
    let drafts = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["draft"] == true)
        .count();
    assert_eq!((listed["data"].as_array().unwrap().len(), drafts), (4, 2));
}

async fn one_organisation_making_up_most_of_a_cells_spend_is_not_published(app: TestApp) {
    use voucherd_domain::disclosure::Rules;
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    // Five small North East companies: the first makes 6 of the 10 requests (60 %).
    for i in 0..5 {
        let (_, _, key) = company_voucher(
            &app,
            &admin,
            &format!("o{i}@east.co.uk"),
            &format!("2{i}12345{i}"),
            "north_east",
            "100",
            None,
        )
        .await;
        for _ in 0..(if i == 0 { 6 } else { 1 }) {
            assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
        }
    }
    let today = voucherd_store::now().date();
    let inputs = app.store.report_inputs(today, today).await.unwrap();
    let ne = |summary: &Value, table: &str| -> Value {
        summary[table]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["region"] == "north_east")
            .unwrap()
            .clone()
    };
    // Five organisations pass the threshold rule, but one has 60 % of the spend.
    let summary =
        serde_json::to_value(voucherd_worker::report::public(&inputs, &Rules::default())).unwrap();
    let spend = ne(&summary, "spend_by_region_and_size");
    assert_eq!(
        (&spend["small"], &spend["total"]),
        (&json!("[c]"), &json!("[c]"))
    );
    assert_eq!(
        ne(&summary, "organisations_by_region_and_size")["small"],
        "[c]"
    );
    assert!(!summary.to_string().contains("0.06"));
    // With a dominance share above 60 % the same cell is published: 10 × £0.00558 = £0.06.
    let summary = serde_json::to_value(voucherd_worker::report::public(
        &inputs,
        &Rules::parse(5, 5, 70).unwrap(),
    ))
    .unwrap();
    let spend = ne(&summary, "spend_by_region_and_size");
    assert_eq!(
        (&spend["small"], &spend["total"]),
        (&json!("0.06"), &json!("0.06"))
    );
    assert_eq!(ne(&summary, "organisations_by_region_and_size")["small"], 5);
}

/// The report of an ended period made on request (API and console) as the schedule would make
/// it, named as the administrator's; a period still running, a part of one, or one reported
/// already is refused and keeps nothing.
async fn an_administrator_makes_the_report_of_an_ended_period_once(app: TestApp) {
    use voucherd_worker::report::{Kind, Period};
    let admin = app
        .user_with_role("reports-admin@example.com", "admin")
        .await;
    let applicant = app.applicant("reports-sme@example.com").await;
    let today = chrono::Utc::now().date_naive();
    let last = Period::last_before(Kind::Monthly, today);
    let running = Period::containing(Kind::Monthly, today);
    let month = |p: &Period| json!({"kind": "monthly", "from": p.from(), "to": p.to()});
    let kept = |app: &TestApp| {
        let client = app.client.clone();
        let url = app.url("/api/v1/reports");
        let admin = admin.clone();
        async move {
            let resp = client.get(url).bearer_auth(admin).send().await.unwrap();
            body(resp).await["data"].as_array().unwrap().len()
        }
    };

    assert_eq!(
        app.post("/api/v1/reports", &applicant, &month(&last))
            .await
            .status()
            .as_u16(),
        403
    );
    let refused = [
        (month(&running), "to"),
        (
            json!({"kind": "monthly", "from": last.from().succ_opt().unwrap(), "to": last.to()}),
            "to",
        ),
        (
            json!({"kind": "weekly", "from": last.from(), "to": last.to()}),
            "kind",
        ),
        (json!({"kind": "monthly", "from": last.from()}), "to"),
    ];
    for (request, field) in refused {
        let p = assert_problem(
            app.post("/api/v1/reports", &admin, &request).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(fields(&p), [field], "{request}");
    }
    assert_eq!(kept(&app).await, 0);

    let made = body(app.post("/api/v1/reports", &admin, &month(&last)).await).await;
    assert_eq!(made["kind"], "monthly", "{made}");
    assert_eq!(made["period"]["from"], json!(last.from()));
    assert_eq!(made["period"]["to"], json!(last.to()));
    assert_eq!(made["draft"], false);
    assert_eq!(
        made["generated_by"],
        "Programme staff (reports-admin@example.com)"
    );
    let content = body(
        app.get(
            &format!("/api/v1/reports/{}", made["id"].as_str().unwrap()),
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(content["period"]["from"], json!(last.from().to_string()));
    assert_problem(
        app.post("/api/v1/reports", &admin, &month(&last)).await,
        409,
        "report_exists",
    )
    .await;
    assert_eq!(kept(&app).await, 1);

    // The console offers ended periods only, marks the one made, and makes another.
    let mut console = Browser::sign_in(&app, "reports-admin@example.com").await;
    let page = console
        .get(&app, "/console/reports")
        .await
        .text()
        .await
        .unwrap();
    let value = |p: &Period| format!("{}:{}:{}", p.kind(), p.from(), p.to());
    assert!(
        page.contains(&format!(
            "value=\"{}\">{} (made already)",
            value(&last),
            last.from().format("%B %Y")
        )),
        "{page}"
    );
    assert!(!page.contains(&value(&running)));
    let earlier = last.previous();
    let csrf = console.csrf();
    let resp = console
        .post(
            &app,
            "/console/reports",
            &[
                ("csrf", csrf.as_str()),
                ("period", value(&earlier).as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains(&format!(
            "The monthly operations report for {} is made",
            earlier.from().format("%B %Y")
        )),
        "{page}"
    );
    assert_eq!(kept(&app).await, 2);
    for (period, message) in [
        (value(&earlier), "kept already"),
        (value(&running), "Select a period that has ended"),
        (String::new(), "Select the period to report on"),
    ] {
        let csrf = console.csrf();
        let resp = console
            .post(
                &app,
                "/console/reports",
                &[("csrf", csrf.as_str()), ("period", period.as_str())],
            )
            .await;
        assert_eq!(resp.status().as_u16(), 422, "{period}");
        let page = resp.text().await.unwrap();
        assert!(page.contains(message), "{period}: {page}");
    }
    assert_eq!(kept(&app).await, 2);
}
