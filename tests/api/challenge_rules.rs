//! The rules around a challenge's awards: Minimal Financial Assistance checked on every award
//! (challenge awards and milestone bonuses), organisation kinds evidenced and checked before
//! ranking, incomplete assessments recorded and not ranked, editing before opening,
//! cancellation returning the pool, and the entry-received email.

use crate::helpers::*;
use crate::upstream::Reply;
use chrono::{Duration, NaiveDateTime};
use serde_json::{json, Value};
use std::sync::Arc;
use voucherd_store::Backend;
use voucherd_worker::{Clock, Job, ManualClock, Worker, WorkerConfig};

on_both_backends!(
    backend:
    every_award_is_checked_against_the_mfa_limit_when_it_is_paid,
    kinds_are_evidenced_and_checked_and_incomplete_assessments_are_not_ranked,
    a_challenge_is_edited_before_it_opens_and_cancelled_with_its_pool_returned,
);

fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn challenge(t: NaiveDateTime, pool: &str, awards: &[&str], per_entry: u32) -> Value {
    json!({
        "title": "AI for logistics",
        "theme": "Route planning with language models.",
        "eligible": ["startup", "university_spin_off", "sme"],
        "opens_at": rfc3339(t - Duration::minutes(1)),
        "closes_at": rfc3339(t + Duration::hours(1)),
        "assessors_assigned_at": rfc3339(t + Duration::hours(2)),
        "assessment_deadline": rfc3339(t + Duration::hours(3)),
        "decisions_released_at": rfc3339(t + Duration::hours(4)),
        "criteria": [{"name": "fit", "max_score": 12, "weight": 1}],
        "assessors_per_entry": per_entry,
        "award_pool": pool,
        "award_amounts": awards,
        "pilot_places": 0
    })
}

fn entry(company: &str, name: &str, kind: &str, evidence: Value) -> Value {
    json!({
        "company_number": company,
        "organisation_name": name,
        "organisation_kind": kind,
        "region": "north_east",
        "sic_code": "62012",
        "title": format!("{name}: routes"),
        "summary": "Plans delivery routes and explains each change to the driver.",
        "evidence": evidence
    })
}

fn worker(app: &TestApp, clock: Arc<ManualClock>) -> Worker {
    let mut c = WorkerConfig::default();
    c.mail.dir =
        std::env::temp_dir().join(format!("voucherd-mail-{}", uuid::Uuid::new_v4().simple()));
    Worker::new(app.store.clone(), c, clock).unwrap()
}

async fn run(w: &Worker, job: Job) -> Value {
    let r = w.run_once(job).await.unwrap();
    assert_eq!(r.outcome.as_str(), "succeeded", "{}", r.summary);
    r.summary
}

fn micros(v: &Value) -> i64 {
    voucherd_domain::Money::parse(v.as_str().unwrap())
        .unwrap()
        .micros()
}

async fn put(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Moves a challenge created at `t` to its assessment: closed and allocated.
async fn to_assessment(clock: &ManualClock, w: &Worker, t: NaiveDateTime) {
    run(w, Job::Challenges).await;
    clock.set(t + Duration::hours(1) + Duration::seconds(1));
    run(w, Job::Challenges).await;
    clock.set(t + Duration::hours(2) + Duration::seconds(1));
    run(w, Job::Challenges).await;
}

/// Every entry allocated to each assessor scored `fit` out of 12, except `skip`.
async fn score_all(app: &TestApp, assessors: &[String], fit: u32, skip: Option<&str>) {
    for a in assessors {
        let mine = body(app.get("/api/v1/assessments", a).await).await;
        for e in mine["data"].as_array().unwrap() {
            let id = e["id"].as_str().unwrap();
            // Entries of earlier challenges were scored then.
            if !e["my_score"].is_null() || (skip == Some(id) && a == &assessors[0]) {
                continue;
            }
            let resp = put(
                app,
                &format!("/api/v1/assessments/{id}"),
                a,
                &json!({"scores": {"fit": fit}}),
            )
            .await;
            assert_eq!(resp.status().as_u16(), 200);
        }
    }
}

async fn decide(clock: &ManualClock, w: &Worker, t: NaiveDateTime) -> Value {
    clock.set(t + Duration::hours(4) + Duration::seconds(1));
    let s = run(w, Job::Challenges).await;
    s["milestones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["milestone"] == "decisions_released")
        .map(|m| m["summary"].clone())
        .unwrap_or(Value::Null)
}

async fn every_award_is_checked_against_the_mfa_limit_when_it_is_paid(backend: Backend) {
    let clock = Arc::new(ManualClock::new(voucherd_store::now()));
    let app = spawn_with_clock(backend, voucherd::Role::All, |_| {}, clock.clone()).await;
    let w = worker(&app, clock.clone());
    let admin = app.admin().await;
    let assessor = app.user_with_role("one@assess.gov.uk", "assessor").await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    let resp = app
        .post(
            "/api/v1/incentives",
            &admin,
            &json!({"name": "First request", "condition": {},
                    "effect": {"kind": "milestone_bonus", "amount": "500",
                               "trigger": {"kind": "requests_settled", "count": 1}}}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    // £305,000 declared in the window and a £5,000 voucher: £5,000 of headroom is left.
    let owner = app.applicant("owner@widgets.co.uk").await;
    let mut a = valid_application();
    a["subsidy_declarations"] =
        json!([{"provider": "Innovate UK", "amount": "305000", "awarded_on": "2025-06-01"}]);
    let application = body(app.apply(&owner, &a).await).await;
    let id = application["id"].as_str().unwrap();
    let decided = body(
        app.decide(
            &admin,
            id,
            &json!({"decision": "approve", "amount": "5000", "reason": "eligible on every rule"}),
        )
        .await,
    )
    .await;
    let voucher_id = decided["voucher"]["id"].as_str().unwrap().to_string();
    assert_eq!(decided["voucher"]["granted"], "5000.00");
    let fund = || async {
        micros(&body(app.get("/api/v1/programme", &admin).await).await["fund"]["balance"])
    };
    assert_eq!(fund().await, 95_000_000_000);

    // A £10,000 award would take it to £320,000: refused, not paid, the pool keeps it.
    let t = clock.now();
    let resp = app
        .post(
            "/api/v1/challenges",
            &admin,
            &challenge(t, "10000", &["10000"], 1),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let first = body(resp).await["id"].as_str().unwrap().to_string();
    let resp = app
        .post(
            &format!("/api/v1/challenges/{first}/entries"),
            &owner,
            &entry("01234567", "Widgets", "sme", Value::Null),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    to_assessment(&clock, &w, t).await;
    score_all(&app, std::slice::from_ref(&assessor), 11, None).await;
    let summary = decide(&clock, &w, t).await;
    assert_eq!(summary["refused_micros"], 10_000_000_000_i64, "{summary}");
    assert_eq!(summary["returned_micros"], 0);
    assert_eq!(app.voucher(&owner, &voucher_id).await["granted"], "5000.00");
    let ch = body(
        app.get(&format!("/api/v1/challenges/{first}"), &admin)
            .await,
    )
    .await;
    assert_eq!(ch["progress"]["pool_balance_micros"], 10_000_000_000_i64);
    assert_eq!(fund().await, 85_000_000_000);
    let results = body(
        app.get(&format!("/api/v1/challenges/{first}/entries"), &admin)
            .await,
    )
    .await;
    let r = &results["data"][0]["result"];
    assert_eq!(r["award"], "0.00");
    assert_eq!(r["score_percent"], "91.67", "11 of 12 rounds half up");
    let reason = r["award_refused_reason"].as_str().unwrap();
    assert!(
        reason.contains("£310,000.00 received plus this award £10,000.00 exceeds £315,000.00"),
        "{reason}"
    );

    // A £5,000 award fits exactly: paid, with the statement in its email.
    let t = clock.now();
    let resp = app
        .post(
            "/api/v1/challenges",
            &admin,
            &challenge(t, "5000", &["5000"], 1),
        )
        .await;
    let second = body(resp).await["id"].as_str().unwrap().to_string();
    let resp = app
        .post(
            &format!("/api/v1/challenges/{second}/entries"),
            &owner,
            &entry("01234567", "Widgets", "sme", Value::Null),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    to_assessment(&clock, &w, t).await;
    score_all(&app, std::slice::from_ref(&assessor), 12, None).await;
    let summary = decide(&clock, &w, t).await;
    assert_eq!(summary["awarded_micros"], 5_000_000_000_i64, "{summary}");
    assert_eq!(
        app.voucher(&owner, &voucher_id).await["granted"],
        "10000.00"
    );
    let outbox = body(
        app.get("/api/v1/outbox?recipient=owner@widgets.co.uk", &admin)
            .await,
    )
    .await;
    let results: Vec<&Value> = outbox["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["template"] == "challenge_result")
        .collect();
    assert_eq!(results.len(), 2);
    let mailer = voucherd_worker::mail::Mailer::new(&WorkerConfig::default().mail).unwrap();
    let mut texts: Vec<String> = results
        .iter()
        .map(|m| mailer.render("challenge_result", &m["data"]).unwrap().text)
        .collect();
    texts.sort_by_key(|t| t.contains("cannot be paid"));
    assert!(
        texts[0].contains("minimal financial assistance"),
        "{}",
        texts[0]
    );
    assert!(
        texts[0].contains("worth £5,000.00, awarded on"),
        "{}",
        texts[0]
    );
    assert!(texts[1].contains("cannot be paid"), "{}", texts[1]);
    assert!(!texts[1].contains("worth £10,000.00"), "{}", texts[1]);
    let entered = outbox["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["template"] == "challenge_entry_received")
        .count();
    assert_eq!(entered, 2, "one entry-received email per entry");

    // The milestone bonus (£500) now passes the limit: refused, recorded, not retried.
    let key = body(app.create_key(&owner, &voucher_id).await).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    app.upstream.set_reply(Reply::default());
    assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    let s = run(&w, Job::IncentiveMilestones).await;
    assert_eq!(
        (s["granted"].clone(), s["refused"].clone()),
        (json!(0), json!(1))
    );
    let s = run(&w, Job::IncentiveMilestones).await;
    assert_eq!(
        (s["granted"].clone(), s["refused"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(
        app.voucher(&owner, &voucher_id).await["granted"],
        "10000.00"
    );
    let applied = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/incentives"), &admin)
            .await,
    )
    .await;
    let bonus = applied["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["milestone"] == true)
        .unwrap()
        .clone();
    assert_eq!(bonus["granted_at"], Value::Null);
    assert!(
        bonus["refused_reason"]
            .as_str()
            .unwrap()
            .contains("£315,000.00 received plus this award £500.00 exceeds £315,000.00"),
        "{bonus}"
    );
    // The company is told why, once (the second run refused nothing new).
    let told: Vec<Value> = app
        .store
        .outbox(Some("owner@widgets.co.uk".into()), 100)
        .await
        .unwrap()
        .iter()
        .filter(|m| m.template == "milestone_bonus_refused")
        .map(|m| serde_json::from_str(&m.data).unwrap())
        .collect();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["amount"], "500.00");
    assert!(told[0]["reason"]
        .as_str()
        .unwrap()
        .contains("exceeds £315,000.00"));
    app.store.verify_ledger().await.unwrap();
}

async fn kinds_are_evidenced_and_checked_and_incomplete_assessments_are_not_ranked(
    backend: Backend,
) {
    let clock = Arc::new(ManualClock::new(voucherd_store::now()));
    let app = spawn_with_clock(backend, voucherd::Role::All, |_| {}, clock.clone()).await;
    let w = worker(&app, clock.clone());
    let admin = app.admin().await;
    let assessors = [
        app.user_with_role("one@assess.gov.uk", "assessor").await,
        app.user_with_role("two@assess.gov.uk", "assessor").await,
    ];
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    // A company refused as an SME.
    let refused = app.applicant("big@corp.co.uk").await;
    let mut a = valid_application();
    a["company_number"] = json!("05555555");
    a["employees"] = json!(400);
    let application = body(app.apply(&refused, &a).await).await;
    assert_eq!(application["status"], "ineligible", "{application}");
    let alpha = app.applicant("a@alpha.co.uk").await;
    let beta = app.applicant("b@beta.co.uk").await;

    let t = clock.now();
    let resp = app
        .post(
            "/api/v1/challenges",
            &admin,
            &challenge(t, "3000", &["2000", "1000"], 2),
        )
        .await;
    let id = body(resp).await["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/challenges/{id}/entries");
    // Refused as an SME, it cannot enter as one; as a startup it must give evidence.
    let resp = app
        .post(
            &path,
            &refused,
            &entry("05555555", "Corp", "sme", Value::Null),
        )
        .await;
    assert_problem(resp, 409, "not_an_sme").await;
    let resp = app
        .post(
            &path,
            &refused,
            &entry("05555555", "Corp", "startup", Value::Null),
        )
        .await;
    let p = assert_problem(resp, 422, "validation_failed").await;
    assert_eq!(fields(&p), ["evidence.incorporated_on"]);
    let old = (t - Duration::days(6 * 366)).date().to_string();
    let resp = app
        .post(
            &path,
            &refused,
            &entry(
                "05555555",
                "Corp",
                "startup",
                json!({"incorporated_on": old}),
            ),
        )
        .await;
    assert_problem(resp, 422, "validation_failed").await;
    let recent = (t - Duration::days(400)).date().to_string();
    let mut ids = Vec::new();
    for (token, company, name, kind, evidence) in [
        (
            &refused,
            "05555555",
            "Corp",
            "startup",
            json!({"incorporated_on": recent}),
        ),
        (
            &alpha,
            "01234567",
            "Alpha",
            "university_spin_off",
            json!({"incorporated_on": recent, "university": "Newcastle University"}),
        ),
        (&beta, "02222222", "Beta", "sme", Value::Null),
    ] {
        let resp = app
            .post(&path, token, &entry(company, name, kind, evidence))
            .await;
        assert_eq!(resp.status().as_u16(), 201);
        let e = body(resp).await;
        ids.push(e["id"].as_str().unwrap().to_string());
    }
    let listed = body(app.get(&path, &admin).await).await;
    let corp = &listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == json!(ids[0]))
        .unwrap()
        .clone();
    assert_eq!(corp["kind_check"]["status"], "unchecked");
    assert!(corp["not_ranked_because"]
        .as_str()
        .unwrap()
        .contains("has not been checked"));
    let ch = body(app.get(&format!("/api/v1/challenges/{id}"), &admin).await).await;
    let mut awaiting: Vec<String> = ch["progress"]["entries_awaiting_kind_check"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    awaiting.sort();
    let mut expected = vec![ids[0].clone(), ids[1].clone()];
    expected.sort();
    assert_eq!(awaiting, expected);
    // An SME entry carries nothing to check.
    let resp = app
        .post(
            &format!("{path}/{}/kind-check", ids[2]),
            &admin,
            &json!({"decision": "accept", "reason": "ok"}),
        )
        .await;
    assert_problem(resp, 409, "no_evidence_to_check").await;
    let resp = app
        .post(
            &format!("{path}/{}/kind-check", ids[0]),
            &admin,
            &json!({"decision": "reject", "reason": "Companies House shows incorporation in 1998"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let resp = app
        .post(
            &format!("{path}/{}/kind-check", ids[1]),
            &admin,
            &json!({"decision": "accept", "reason": "university letter seen"}),
        )
        .await;
    assert_eq!(body(resp).await["kind_check"]["status"], "accepted");

    // Beta's entry is left unscored by one of its two assessors: flagged before ranking.
    to_assessment(&clock, &w, t).await;
    score_all(&app, &assessors, 12, Some(&ids[2])).await;
    let ch = body(app.get(&format!("/api/v1/challenges/{id}"), &admin).await).await;
    assert_eq!(ch["progress"]["entries_incomplete"], json!([ids[2]]));
    let summary = decide(&clock, &w, t).await;
    assert_eq!(
        summary["not_ranked"].as_array().unwrap().len(),
        2,
        "{summary}"
    );
    // Only the checked spin-off is ranked and paid; the pool's rest goes back.
    assert_eq!(summary["awarded_micros"], 2_000_000_000_i64);
    assert_eq!(summary["returned_micros"], 1_000_000_000_i64);
    let results = body(app.get(&path, &admin).await).await;
    let by_id = |i: usize| {
        results["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == json!(ids[i]))
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(1)["result"]["rank"], 1);
    assert_eq!(by_id(1)["result"]["award"], "2000.00");
    assert_eq!(by_id(0)["result"]["rank"], Value::Null);
    assert_eq!(by_id(0)["result"]["award"], "0.00");
    assert!(by_id(0)["not_ranked_because"]
        .as_str()
        .unwrap()
        .contains("was rejected: Companies House"));
    assert_eq!(by_id(2)["result"]["assessments_incomplete"], true);
    assert_eq!(by_id(2)["result"]["rank"], Value::Null);
    assert_eq!(by_id(2)["result"]["award"], "0.00");
    let outbox = body(
        app.get("/api/v1/outbox?recipient=big@corp.co.uk", &admin)
            .await,
    )
    .await;
    assert!(outbox["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["template"] == "challenge_entry_checked" && m["data"]["accepted"] == false));
    app.store.verify_ledger().await.unwrap();
}

async fn a_challenge_is_edited_before_it_opens_and_cancelled_with_its_pool_returned(
    backend: Backend,
) {
    let clock = Arc::new(ManualClock::new(voucherd_store::now()));
    let app = spawn_with_clock(backend, voucherd::Role::All, |_| {}, clock.clone()).await;
    let w = worker(&app, clock.clone());
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    let fund = || async {
        micros(&body(app.get("/api/v1/programme", &admin).await).await["fund"]["balance"])
    };
    let t = clock.now();
    let later = t + Duration::days(10);
    let resp = app
        .post(
            "/api/v1/challenges",
            &admin,
            &challenge(later, "3000", &["2000"], 1),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let id = body(resp).await["id"].as_str().unwrap().to_string();
    assert_eq!(fund().await, 97_000_000_000);

    // Edited before it opens, checked as at creation: a bigger pool takes the difference.
    let mut edit = challenge(later, "4500", &["3000", "1500"], 1);
    edit["title"] = json!("AI for logistics, second call");
    let resp = put(&app, &format!("/api/v1/challenges/{id}"), &admin, &edit).await;
    assert_eq!(resp.status().as_u16(), 200);
    let ch = body(resp).await;
    assert_eq!(
        (ch["title"].clone(), ch["award_pool"].clone()),
        (json!("AI for logistics, second call"), json!("4500.00"))
    );
    assert_eq!(fund().await, 95_500_000_000);
    let mut bad = edit.clone();
    bad["award_amounts"] = json!(["5000"]);
    let resp = put(&app, &format!("/api/v1/challenges/{id}"), &admin, &bad).await;
    let p = assert_problem(resp, 422, "validation_failed").await;
    assert_eq!(fields(&p), ["award_amounts"]);
    let applicant = app.applicant("a@alpha.co.uk").await;
    let resp = put(&app, &format!("/api/v1/challenges/{id}"), &applicant, &edit).await;
    assert_eq!(resp.status().as_u16(), 403);

    // Open: no more edits.
    clock.set(later);
    let resp = put(&app, &format!("/api/v1/challenges/{id}"), &admin, &edit).await;
    assert_problem(resp, 409, "challenge_open").await;
    let resp = app
        .post(
            &format!("/api/v1/challenges/{id}/entries"),
            &applicant,
            &entry("01234567", "Alpha", "sme", Value::Null),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);

    // Cancelled: the pool returns exactly, entrants are told, no milestone runs.
    let resp = app
        .post(
            &format!("/api/v1/challenges/{id}/cancellation"),
            &admin,
            &json!({"reason": "the sponsor withdrew"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let ch = body(resp).await;
    assert_eq!(ch["status"], "cancelled");
    assert_eq!(ch["returned_to_fund"], "4500.00");
    assert_eq!(fund().await, 100_000_000_000);
    let resp = app
        .post(
            &format!("/api/v1/challenges/{id}/cancellation"),
            &admin,
            &json!({"reason": "again"}),
        )
        .await;
    assert_problem(resp, 409, "challenge_cancelled").await;
    clock.set(later + Duration::hours(5));
    let s = run(&w, Job::Challenges).await;
    assert_eq!(s["milestones"], json!([]));
    let outbox = body(
        app.get("/api/v1/outbox?recipient=a@alpha.co.uk", &admin)
            .await,
    )
    .await;
    let mut templates: Vec<&str> = outbox["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["template"].as_str().unwrap())
        .filter(|t| t.starts_with("challenge"))
        .collect();
    templates.sort();
    assert_eq!(
        templates,
        ["challenge_cancelled", "challenge_entry_received"]
    );
    app.store.verify_ledger().await.unwrap();
}
