//! Budget lines: funded from the programme fund, approvals drawn from the most specific line
//! that matches the organisation and refused naming a line too short, money moved between
//! lines with an audited reason, and bad input refused with nothing written.

use crate::helpers::*;
use crate::upstream::Reply;
use chrono::Duration;
use serde_json::{json, Value};
use std::sync::Arc;
use voucherd_domain::budget::FinancialYear;
use voucherd_worker::{Clock, Job, ManualClock, Worker, WorkerConfig};

on_both_backends!(
    approvals_draw_from_the_most_specific_matching_line_and_a_short_line_is_named,
    a_year_with_lines_but_none_matching_refuses_the_approval,
    bad_budget_input_is_refused_and_changes_nothing,
    a_bonus_is_paid_from_a_line_the_company_matches_or_else_the_fund,
);

mod sqlite_figures {
    #[tokio::test]
    async fn programme_figures_keep_deposits_returns_transfers_and_grants_apart() {
        super::programme_figures(voucherd_store::Backend::Sqlite).await
    }
}

mod postgres_figures {
    #[tokio::test]
    async fn programme_figures_keep_deposits_returns_transfers_and_grants_apart() {
        super::programme_figures(voucherd_store::Backend::Postgres).await
    }
}

fn this_year() -> String {
    FinancialYear::containing(chrono::Utc::now().date_naive()).to_string()
}

async fn create_line(app: &TestApp, admin: &str, body: Value) -> reqwest::Response {
    app.post("/api/v1/budget-lines", admin, &body).await
}

async fn lines(app: &TestApp, admin: &str) -> Vec<Value> {
    body(app.get("/api/v1/budget-lines", admin).await).await["data"]
        .as_array()
        .unwrap()
        .clone()
}

fn named<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines.iter().find(|l| l["name"] == name).unwrap()
}

/// An applicant's submitted application for `company` in `region`; returns its id.
async fn application(app: &TestApp, email: &str, company: &str, region: &str) -> String {
    let token = app.applicant(email).await;
    let mut a = valid_application();
    a["company_number"] = json!(company);
    a["region"] = json!(region);
    let resp = app.apply(&token, &a).await;
    assert_eq!(resp.status().as_u16(), 201);
    body(resp).await["id"].as_str().unwrap().to_string()
}

async fn approve(app: &TestApp, admin: &str, id: &str, amount: &str) -> reqwest::Response {
    app.decide(
        admin,
        id,
        &json!({"decision": "approve", "amount": amount, "reason": "meets all criteria"}),
    )
    .await
}

async fn approvals_draw_from_the_most_specific_matching_line_and_a_short_line_is_named(
    app: TestApp,
) {
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    let year = this_year();
    for (name, amount, targeting) in [
        ("General", "10000", json!({})),
        ("North East", "5000", json!({"regions": ["north_east"]})),
        (
            "North East small digital",
            "150",
            json!({"regions": ["north_east"], "size_bands": ["small"], "sic_sections": ["j"]}),
        ),
    ] {
        let mut req = json!({"name": name, "financial_year": year, "amount": amount});
        for (k, v) in targeting.as_object().unwrap() {
            req[k] = v.clone();
        }
        let resp = create_line(&app, &admin, req).await;
        assert_eq!(resp.status().as_u16(), 201);
        let line = body(resp).await;
        assert_eq!(
            (line["approved"].as_str(), line["remaining"].as_str()),
            (
                Some(amount_2dp(amount).as_str()),
                Some(amount_2dp(amount).as_str())
            )
        );
    }
    let fund = body(app.get("/api/v1/programme", &admin).await).await;
    assert_eq!(fund["fund"]["balance"], "84850.00");

    // valid_application: North East, 12 employees (small), SIC 62012 (section J).
    let first = application(&app, "a@one.co.uk", "01234567", "north_east").await;
    let decided = body(approve(&app, &admin, &first, "100").await).await;
    assert_eq!(decided["voucher"]["granted"], "100.00");
    let london = application(&app, "b@two.co.uk", "SC123456", "london").await;
    assert_eq!(
        approve(&app, &admin, &london, "100")
            .await
            .status()
            .as_u16(),
        200
    );
    let all = lines(&app, &admin).await;
    let specific = named(&all, "North East small digital");
    assert_eq!(
        (
            specific["committed"].as_str(),
            specific["remaining"].as_str(),
            specific["approved"].as_str()
        ),
        (Some("100.00"), Some("50.00"), Some("150.00"))
    );
    assert_eq!(named(&all, "General")["committed"], "100.00");
    assert_eq!(named(&all, "North East")["committed"], "0.00");

    // The specific line now holds 50: a third approval of 100 is refused, naming it.
    let third = application(&app, "c@three.co.uk", "NI123456", "north_east").await;
    let resp = approve(&app, &admin, &third, "100").await;
    assert_eq!(resp.status().as_u16(), 409);
    let p = body(resp).await;
    assert_eq!(p["code"], "budget_insufficient");
    assert_eq!(
        p["detail"],
        "budget line \"North East small digital\" holds only 50.00"
    );
    let still = body(
        app.get(&format!("/api/v1/applications/{third}"), &admin)
            .await,
    )
    .await;
    assert_eq!(still["status"], "submitted", "nothing was written");

    // Topped up from the general line, with a reason, audited; then the approval goes through.
    let specific_id = specific["id"].as_str().unwrap().to_string();
    let general_id = named(&all, "General")["id"].as_str().unwrap().to_string();
    let resp = app
        .post(
            "/api/v1/budget-lines/moves",
            &admin,
            &json!({"from": general_id, "to": specific_id, "amount": "100", "reason": "North East demand is high"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let moved = body(resp).await;
    let audit = body(
        app.get(
            &format!(
                "/api/v1/audit?subject_type=transfer&subject_id={}",
                moved["id"].as_str().unwrap()
            ),
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(audit["data"][0]["action"], "budget_line.move");
    assert_eq!(audit["data"][0]["reason"], "North East demand is high");
    let decided = body(approve(&app, &admin, &third, "100").await).await;
    let voucher_id = decided["voucher"]["id"].as_str().unwrap().to_string();

    // Spending through the line's voucher shows as the line's spend.
    let token = app.token("c@three.co.uk").await;
    let key = body(app.create_key(&token, &voucher_id).await).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    let all = lines(&app, &admin).await;
    let specific = named(&all, "North East small digital");
    assert_eq!(
        (
            specific["approved"].as_str(),
            specific["committed"].as_str(),
            specific["spent"].as_str(),
            specific["remaining"].as_str()
        ),
        (
            Some("250.00"),
            Some("200.00"),
            Some("0.00558"),
            Some("50.00")
        )
    );
    let general = named(&all, "General");
    assert_eq!(
        (general["approved"].as_str(), general["remaining"].as_str()),
        (Some("9900.00"), Some("9800.00"))
    );
    let programme = body(app.get("/api/v1/programme", &admin).await).await;
    assert_eq!(programme["budget_lines"].as_array().unwrap().len(), 3);
    app.store.verify_ledger().await.unwrap();
}

fn amount_2dp(a: &str) -> String {
    format!("{a}.00")
}

async fn a_year_with_lines_but_none_matching_refuses_the_approval(app: TestApp) {
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "1000").await.status().as_u16(), 201);
    let resp = create_line(
        &app,
        &admin,
        json!({"name": "London only", "financial_year": this_year(), "amount": "500", "regions": ["london"]}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 201);
    let id = application(&app, "a@one.co.uk", "01234567", "north_east").await;
    let resp = approve(&app, &admin, &id, "100").await;
    assert_eq!(resp.status().as_u16(), 409);
    let p = body(resp).await;
    assert_eq!(p["code"], "no_budget_line");
    assert!(p["detail"].as_str().unwrap().contains(&this_year()), "{p}");
    // A line for another year does not count: next year's general line changes nothing.
    let next = FinancialYear::parse(&this_year()).unwrap();
    let next = FinancialYear::containing(next.starts() + chrono::Duration::days(400));
    let resp = create_line(
        &app,
        &admin,
        json!({"name": "Next year", "financial_year": next.to_string(), "amount": "100"}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(
        approve(&app, &admin, &id, "100").await.status().as_u16(),
        409
    );
}

async fn bad_budget_input_is_refused_and_changes_nothing(app: TestApp) {
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "1000").await.status().as_u16(), 201);
    let year = this_year();
    for (req, field) in [
        (
            json!({"name": "X", "financial_year": "2026/28", "amount": "1"}),
            "financial_year",
        ),
        (
            json!({"name": "X", "financial_year": year, "amount": "1", "regions": ["atlantis"]}),
            "regions[0]",
        ),
        (
            json!({"name": "X", "financial_year": year, "amount": "1", "sic_sections": ["Z"]}),
            "sic_sections[0]",
        ),
        (
            json!({"name": "X", "financial_year": year, "amount": "1", "size_bands": ["huge"]}),
            "size_bands[0]",
        ),
        (
            json!({"name": " ", "financial_year": year, "amount": "1"}),
            "name",
        ),
        (
            json!({"name": "X", "financial_year": year, "amount": "-1"}),
            "amount",
        ),
    ] {
        let resp = create_line(&app, &admin, req).await;
        assert_eq!(resp.status().as_u16(), 422, "{field}");
        assert_eq!(body(resp).await["errors"][0]["field"], field);
    }
    // More than the fund holds.
    let resp = create_line(
        &app,
        &admin,
        json!({"name": "Big", "financial_year": year, "amount": "5000"}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 409);
    let p = body(resp).await;
    assert_eq!(p["code"], "budget_insufficient");
    assert_eq!(p["detail"], "the programme fund holds only 1000.00");
    assert!(lines(&app, &admin).await.is_empty(), "nothing was written");

    let line = body(
        create_line(
            &app,
            &admin,
            json!({"name": "Small", "financial_year": year, "amount": "100"}),
        )
        .await,
    )
    .await;
    let id = line["id"].as_str().unwrap();
    let dup = create_line(
        &app,
        &admin,
        json!({"name": "Small", "financial_year": year, "amount": "1"}),
    )
    .await;
    assert_eq!(dup.status().as_u16(), 409);
    assert_eq!(body(dup).await["code"], "budget_line_exists");

    let mv = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move { app.post("/api/v1/budget-lines/moves", &admin, &body).await }
    };
    let resp =
        mv(json!({"from": id, "to": "programme_fund", "amount": "100.01", "reason": "return"}))
            .await;
    assert_eq!(resp.status().as_u16(), 409);
    assert_eq!(
        body(resp).await["detail"],
        "budget line \"Small\" holds only 100.00"
    );
    let resp = mv(json!({"from": id, "to": "no-such-line", "amount": "1", "reason": "r"})).await;
    assert_eq!(resp.status().as_u16(), 404);
    let resp = mv(json!({"from": id, "to": id, "amount": "1", "reason": "r"})).await;
    assert_eq!(resp.status().as_u16(), 422);
    let resp = mv(json!({"from": id, "to": "programme_fund", "amount": "0", "reason": "r"})).await;
    assert_eq!(resp.status().as_u16(), 422);
    let resp = mv(json!({"from": id, "to": "programme_fund", "amount": "1", "reason": "  "})).await;
    assert_eq!(resp.status().as_u16(), 422);
    let all = lines(&app, &admin).await;
    assert_eq!(all[0]["remaining"], "100.00", "nothing moved");
    // Back to the fund, retried with the same key: moved once.
    for _ in 0..2 {
        let resp = app
            .client
            .post(app.url("/api/v1/budget-lines/moves"))
            .bearer_auth(&admin)
            .header("idempotency-key", "return-small-2026")
            .json(
                &json!({"from": id, "to": "programme_fund", "amount": "40", "reason": "underused"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
    }
    assert_eq!(lines(&app, &admin).await[0]["remaining"], "60.00");
    let applicant = app.applicant("a@one.co.uk").await;
    assert_eq!(
        app.get("/api/v1/budget-lines", &applicant)
            .await
            .status()
            .as_u16(),
        403
    );
    app.store.verify_ledger().await.unwrap();
}

fn worker(app: &TestApp, clock: Arc<ManualClock>) -> Worker {
    let mut c = WorkerConfig::default();
    c.mail.dir =
        std::env::temp_dir().join(format!("voucherd-mail-{}", uuid::Uuid::new_v4().simple()));
    Worker::new(app.store.clone(), c, clock).unwrap()
}

/// Approves `id` for `amount`, mints a key for its owner and settles one request: the
/// milestone "one request settled" is reached. Returns the voucher id.
async fn approve_and_use(
    app: &TestApp,
    admin: &str,
    owner_email: &str,
    id: &str,
    amount: &str,
) -> String {
    let resp = approve(app, admin, id, amount).await;
    assert_eq!(resp.status().as_u16(), 200);
    let voucher_id = body(resp).await["voucher"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let owner = app.token(owner_email).await;
    let key = body(app.create_key(&owner, &voucher_id).await).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    app.upstream.set_reply(Reply::default());
    assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    voucher_id
}

fn figures(line: &Value) -> (String, String) {
    (
        line["committed"].as_str().unwrap().to_string(),
        line["remaining"].as_str().unwrap().to_string(),
    )
}

async fn a_bonus_is_paid_from_a_line_the_company_matches_or_else_the_fund(app: TestApp) {
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "10000").await.status().as_u16(), 201);
    let year = this_year();
    let ne = body(
        create_line(
            &app,
            &admin,
            json!({"name": "North East 2026/27", "financial_year": year, "amount": "1000",
                   "regions": ["north_east"]}),
        )
        .await,
    )
    .await;
    let resp = create_line(
        &app,
        &admin,
        json!({"name": "Yorkshire", "financial_year": year, "amount": "200",
               "regions": ["yorkshire_and_the_humber"]}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 201);
    // The rule names the North East line; every first-time applicant gets £50 after a request.
    let resp = app
        .post(
            "/api/v1/incentives",
            &admin,
            &json!({"name": "First request", "condition": {"first_time_applicant": true},
                    "effect": {"kind": "milestone_bonus", "amount": "50",
                               "trigger": {"kind": "requests_settled", "count": 1}},
                    "budget_line_id": ne["id"]}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let clock = Arc::new(ManualClock::new(voucherd_store::now()));
    let w = worker(&app, clock);

    // A Yorkshire company's voucher of £100 from the Yorkshire line (£100 left): its bonus
    // comes from the Yorkshire line too, never the North East one the rule names.
    let first = application(&app, "a@york.co.uk", "01234567", "yorkshire_and_the_humber").await;
    let first_voucher = approve_and_use(&app, &admin, "a@york.co.uk", &first, "100").await;
    assert_eq!(
        w.run_once(Job::IncentiveMilestones).await.unwrap().summary["granted"],
        1
    );
    assert_eq!(
        app.voucher(&app.token("a@york.co.uk").await, &first_voucher)
            .await["granted"],
        "150.00"
    );
    let all = lines(&app, &admin).await;
    assert_eq!(
        figures(named(&all, "North East 2026/27")),
        ("0.00".into(), "1000.00".into())
    );
    assert_eq!(
        figures(named(&all, "Yorkshire")),
        ("150.00".into(), "50.00".into())
    );

    // A second one takes the Yorkshire line's last £50: its bonus comes from the fund.
    let second = application(
        &app,
        "b@leeds.co.uk",
        "SC123456",
        "yorkshire_and_the_humber",
    )
    .await;
    let second_voucher = approve_and_use(&app, &admin, "b@leeds.co.uk", &second, "50").await;
    assert_eq!(
        w.run_once(Job::IncentiveMilestones).await.unwrap().summary["granted"],
        1
    );
    assert_eq!(
        app.voucher(&app.token("b@leeds.co.uk").await, &second_voucher)
            .await["granted"],
        "100.00"
    );
    let all = lines(&app, &admin).await;
    assert_eq!(
        figures(named(&all, "North East 2026/27")),
        ("0.00".into(), "1000.00".into())
    );
    assert_eq!(
        figures(named(&all, "Yorkshire")),
        ("200.00".into(), "0.00".into())
    );
    let p = body(app.get("/api/v1/programme", &admin).await).await;
    assert_eq!(p["fund"]["granted"], "50.00");
    assert_eq!(p["fund"]["balance"], "8750.00");
    assert_eq!(p["granted"]["milestone_bonuses"], "100.00");
    assert_eq!(p["granted"]["vouchers"], "150.00");
    app.store.verify_ledger().await.unwrap();
}

/// Deposits, moves to a line and back, a challenge pool set aside and returned unawarded, and
/// a grant: each figure of `GET /api/v1/programme` counts only its own kind of money.
async fn programme_figures(backend: voucherd_store::Backend) {
    let clock = Arc::new(ManualClock::new(voucherd_store::now()));
    let t = clock.now();
    let app = spawn_with_clock(backend, voucherd::Role::All, |_| {}, clock.clone()).await;
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "10000").await.status().as_u16(), 201);
    let line = body(
        create_line(
            &app,
            &admin,
            json!({"name": "General", "financial_year": this_year(), "amount": "1000"}),
        )
        .await,
    )
    .await;
    let resp = app
        .post(
            "/api/v1/budget-lines/moves",
            &admin,
            &json!({"from": line["id"], "to": "programme_fund", "amount": "200",
                    "reason": "underused line"}),
        )
        .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let at = |h: i64| {
        (t + Duration::hours(h))
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let resp = app
        .post(
            "/api/v1/challenges",
            &admin,
            &json!({
                "title": "AI for Yorkshire logistics",
                "theme": "Routing and forecasting with language models.",
                "eligible": ["sme"],
                "opens_at": (t - Duration::minutes(1)).and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "closes_at": at(1),
                "assessors_assigned_at": at(2),
                "assessment_deadline": at(3),
                "decisions_released_at": at(4),
                "criteria": [{"name": "innovation", "max_score": 10, "weight": 1}],
                "assessors_per_entry": 1,
                "award_pool": "300",
                "award_amounts": ["300"],
                "pilot_places": 0
            }),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let id = application(&app, "a@one.co.uk", "01234567", "north_east").await;
    assert_eq!(
        approve(&app, &admin, &id, "100").await.status().as_u16(),
        200
    );

    let p = body(app.get("/api/v1/programme", &admin).await).await;
    let fund = |p: &Value, k: &str| p["fund"][k].as_str().unwrap().to_string();
    assert_eq!(fund(&p, "deposited"), "10000.00");
    assert_eq!(fund(&p, "returned"), "200.00");
    assert_eq!(fund(&p, "transferred_to_lines"), "1000.00");
    assert_eq!(fund(&p, "transferred_to_pools"), "300.00");
    assert_eq!(fund(&p, "granted"), "0.00");
    assert_eq!(fund(&p, "balance"), "8900.00");
    assert_eq!(p["granted"]["total"], "100.00");
    assert_eq!(p["granted"]["vouchers"], "100.00");

    // No entries: at "decisions released" the whole pool returns to the fund.
    let w = worker(&app, clock.clone());
    for h in 1..=4 {
        clock.set(t + Duration::hours(h) + Duration::seconds(1));
        w.run_once(Job::Challenges).await.unwrap();
    }
    let p = body(app.get("/api/v1/programme", &admin).await).await;
    assert_eq!(fund(&p, "deposited"), "10000.00");
    assert_eq!(fund(&p, "returned"), "500.00");
    assert_eq!(fund(&p, "transferred_to_lines"), "1000.00");
    assert_eq!(fund(&p, "transferred_to_pools"), "300.00");
    assert_eq!(fund(&p, "granted"), "0.00");
    assert_eq!(fund(&p, "balance"), "9200.00");
    assert_eq!(p["granted"]["total"], "100.00");
    assert_eq!(p["granted"]["challenge_awards"], "0.00");
    app.store.verify_ledger().await.unwrap();
}
