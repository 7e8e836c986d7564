//! Reports on a programme built with known data: every figure checked exactly, the public
//! summary under disclosure control (nothing suppressed shows in its HTML, JSON or CSV), and a
//! scheduled report made once with two workers.

use crate::helpers::*;
use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};
use std::sync::Arc;
use voucherd_worker::{Job, ManualClock, Worker, WorkerConfig};

on_both_backends!(
    a_monthly_report_counts_the_programme_exactly_and_its_public_summary_hides_small_cells
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
    assert_eq!(report["schema_version"], 1);
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
        (Some("100.00"), Some("0.01116"), Some("0.00"), Some("0.01"))
    );
    assert_eq!(c["usage"]["requests"], 2);
    assert_eq!(c["usage"]["cost"], "0.01116");
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
            (Some(key), Some(2), Some("0.01116")),
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
            "cost,key,requests,tokens\n0.01116,{MODEL},2,{}\n",
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
