//! A whole innovation challenge, driven on a clock the test moves: created, opened, entered,
//! closed, allocated around a conflict of interest, scored, decided and awarded — with two
//! workers performing every milestone at once, each side effect happening exactly once.

use crate::helpers::*;
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use serde_json::{json, Value};
use std::sync::Arc;
use voucherd_store::Backend;
use voucherd_worker::{Clock, Job, ManualClock, Worker, WorkerConfig};

mod sqlite {
    #[tokio::test]
    async fn a_whole_challenge_runs_once_from_creation_to_awards_with_two_workers() {
        super::whole_challenge(super::Backend::Sqlite).await
    }
}

mod postgres {
    #[tokio::test]
    async fn a_whole_challenge_runs_once_from_creation_to_awards_with_two_workers() {
        super::whole_challenge(super::Backend::Postgres).await
    }
}

fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn challenge_request(t: NaiveDateTime) -> Value {
    json!({
        "title": format!("AI for North East manufacturing {}", t.year()),
        "theme": "Computer vision and language models on the factory floor.",
        "eligible": ["startup", "university_spin_off", "sme"],
        "opens_at": rfc3339(t - Duration::minutes(1)),
        "closes_at": rfc3339(t + Duration::hours(1)),
        "assessors_assigned_at": rfc3339(t + Duration::hours(2)),
        "assessment_deadline": rfc3339(t + Duration::hours(3)),
        "decisions_released_at": rfc3339(t + Duration::hours(4)),
        "criteria": [
            {"name": "innovation", "max_score": 10, "weight": 3},
            {"name": "impact", "max_score": 5, "weight": 1}
        ],
        "assessors_per_entry": 2,
        "award_pool": "1000",
        "award_amounts": ["600", "300"],
        "pilot_places": 1,
        "recurrence": "0 0 9 1 4 *"
    })
}

fn entry(company: &str, name: &str, kind: &str) -> Value {
    // Startups and spin-offs show their kind; an administrator checks it before ranking.
    let incorporated = (chrono::Utc::now() - Duration::days(400))
        .date_naive()
        .to_string();
    let evidence = match kind {
        "startup" => json!({"incorporated_on": incorporated}),
        "university_spin_off" => {
            json!({"incorporated_on": incorporated, "university": "Durham University"})
        }
        _ => Value::Null,
    };
    json!({
        "evidence": evidence,
        "company_number": company,
        "organisation_name": name,
        "organisation_kind": kind,
        "region": "north_east",
        "sic_code": "62012",
        "title": format!("{name}: defect detection"),
        "summary": "Cameras on the line flag defects; a model explains each one to the operator."
    })
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

/// Both workers run the challenges job at once; the milestones either performed, in order.
async fn both_run(one: &Worker, two: &Worker) -> (Vec<String>, Vec<Value>) {
    let (a, b) = tokio::join!(one.run_once(Job::Challenges), two.run_once(Job::Challenges));
    let mut milestones = Vec::new();
    let mut cycles = Vec::new();
    for r in [a.unwrap(), b.unwrap()] {
        assert_eq!(r.outcome.as_str(), "succeeded", "{}", r.summary);
        for m in r.summary["milestones"].as_array().unwrap() {
            milestones.push(m["milestone"].as_str().unwrap().to_string());
        }
        cycles.extend(
            r.summary["cycles_created"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
    }
    milestones.sort();
    (milestones, cycles)
}

fn micros(v: &Value) -> i64 {
    voucherd_domain::Money::parse(v.as_str().unwrap())
        .unwrap()
        .micros()
}

async fn whole_challenge(backend: Backend) {
    let clock = Arc::new(ManualClock::new(voucherd_store::now()));
    let t = clock.now();
    let app = spawn_with_clock(backend, voucherd::Role::All, |_| {}, clock.clone()).await;
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    // Alpha already holds a voucher (company 01234567); Beta and Gamma hold none.
    let (alpha, alpha_voucher, _key) = app.funded_voucher("a@alpha.co.uk", "100").await;
    let beta = app.applicant("b@beta.co.uk").await;
    let gamma = app.applicant("c@gamma.ac.uk").await;
    let assessors = [
        app.user_with_role("one@assess.gov.uk", "assessor").await,
        app.user_with_role("two@assess.gov.uk", "assessor").await,
        app.user_with_role("three@assess.gov.uk", "assessor").await,
    ];

    // The first assessor has an interest in Alpha.
    let resp = app
        .post(
            "/api/v1/conflicts",
            &assessors[0],
            &json!({"company_number": "1234567", "reason": "I advise Alpha's board."}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let declared = body(resp).await;
    assert_eq!(declared["company_number"], "01234567");
    assert_eq!(declared["current"], true);
    let bad = app
        .post(
            "/api/v1/conflicts",
            &assessors[0],
            &json!({"company_number": "not a number", "reason": "x"}),
        )
        .await;
    assert_eq!(bad.status().as_u16(), 422);

    // Bad challenges are refused, naming the field; nothing is written.
    for (field, change) in [
        (
            "closes_at",
            json!({"closes_at": rfc3339(t - Duration::minutes(5))}),
        ),
        ("award_amounts", json!({"award_amounts": ["900", "300"]})),
        ("recurrence", json!({"recurrence": "every April"})),
        ("criteria", json!({"criteria": []})),
    ] {
        let mut req = challenge_request(t);
        for (k, v) in change.as_object().unwrap() {
            req[k] = v.clone();
        }
        let resp = app.post("/api/v1/challenges", &admin, &req).await;
        assert_eq!(resp.status().as_u16(), 422, "{field}");
        let p = body(resp).await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    let resp = app
        .post("/api/v1/challenges", &admin, &challenge_request(t))
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let ch = body(resp).await;
    let id = ch["id"].as_str().unwrap().to_string();
    assert_eq!(ch["status"], "open");
    let fund = || async {
        micros(&body(app.get("/api/v1/programme", &admin).await).await["fund"]["balance"])
    };
    // 200,000 deposited, 100 granted to Alpha, 1,000 set aside for the pool.
    assert_eq!(fund().await, 198_900_000_000);

    // A challenge that has not opened yet, for startups only, refuses entries clearly.
    let mut later = challenge_request(t + Duration::days(30));
    later["eligible"] = json!(["startup"]);
    later["recurrence"] = Value::Null;
    let resp = app.post("/api/v1/challenges", &admin, &later).await;
    assert_eq!(resp.status().as_u16(), 201);
    let later_id = body(resp).await["id"].as_str().unwrap().to_string();
    let later_path = format!("/api/v1/challenges/{later_id}/entries");
    let resp = app
        .post(&later_path, &beta, &entry("02222222", "Beta", "sme"))
        .await;
    assert_eq!(resp.status().as_u16(), 409);
    let p = body(resp).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("opens for entries at"),
        "{p}"
    );
    clock.set(t + Duration::days(30));
    let resp = app
        .post(&later_path, &beta, &entry("02222222", "Beta", "sme"))
        .await;
    assert_eq!(resp.status().as_u16(), 409);
    let p = body(resp).await;
    assert_eq!(p["detail"], "this challenge is open to startup only", "{p}");
    clock.set(t);
    // Its pool was set aside too.
    assert_eq!(fund().await, 197_900_000_000);

    // Entries while open; one per organisation.
    let entries_path = format!("/api/v1/challenges/{id}/entries");
    let mut ids = Vec::new();
    for (token, company, name, kind) in [
        (&alpha, "01234567", "Alpha", "startup"),
        (&beta, "02222222", "Beta", "sme"),
        (&gamma, "SC333333", "Gamma", "university_spin_off"),
    ] {
        let resp = app
            .post(&entries_path, token, &entry(company, name, kind))
            .await;
        assert_eq!(resp.status().as_u16(), 201);
        ids.push(body(resp).await["id"].as_str().unwrap().to_string());
    }
    let again = app
        .post(
            &entries_path,
            &alpha,
            &entry("01234567", "Alpha", "startup"),
        )
        .await;
    assert_eq!(again.status().as_u16(), 409);
    assert_eq!(body(again).await["code"], "entry_exists");
    let mut short = entry("04444444", "Delta", "sme");
    short["summary"] = json!("too short");
    let delta = app.applicant("d@delta.co.uk").await;
    let resp = app.post(&entries_path, &delta, &short).await;
    assert_eq!(resp.status().as_u16(), 422);
    assert_eq!(body(resp).await["errors"][0]["field"], "summary");
    let edit = json!({"title": "Alpha: defect detection, v2", "summary": "Cameras on the line flag defects; a model explains each one."});
    let resp = put(&app, &format!("{entries_path}/{}", ids[0]), &alpha, &edit).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["title"], "Alpha: defect detection, v2");
    let resp = put(&app, &format!("{entries_path}/{}", ids[0]), &beta, &edit).await;
    assert_eq!(resp.status().as_u16(), 404, "not Beta's entry");
    let all = body(app.get(&entries_path, &admin).await).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
    let own = body(app.get(&entries_path, &alpha).await).await;
    assert_eq!(own["data"].as_array().unwrap().len(), 1);

    // Two workers on the same clock.
    let config = || {
        let mut c = WorkerConfig::default();
        c.mail.dir =
            std::env::temp_dir().join(format!("voucherd-mail-{}", uuid::Uuid::new_v4().simple()));
        c
    };
    let one = Worker::new(app.store.clone(), config(), clock.clone()).unwrap();
    let two = Worker::new(app.store.clone(), config(), clock.clone()).unwrap();
    let (performed, _) = both_run(&one, &two).await;
    assert_eq!(performed, ["opens"]);

    // Closed: entries lock, and neither edits nor new entries are taken.
    clock.set(t + Duration::hours(1) + Duration::seconds(1));
    let (performed, _) = both_run(&one, &two).await;
    assert_eq!(performed, ["closes"], "once, by one of the two");
    let resp = put(&app, &format!("{entries_path}/{}", ids[0]), &alpha, &edit).await;
    assert_eq!(resp.status().as_u16(), 409);
    assert_eq!(body(resp).await["code"], "challenge_not_accepting");
    let resp = app
        .post(&entries_path, &delta, &entry("04444444", "Delta", "sme"))
        .await;
    assert_eq!(resp.status().as_u16(), 409);
    let p = body(resp).await;
    assert!(
        p["detail"].as_str().unwrap().contains("closed for entries"),
        "{p}"
    );

    // Assessors assigned: two per entry, never the conflicted one for Alpha.
    clock.set(t + Duration::hours(2) + Duration::seconds(1));
    let (performed, _) = both_run(&one, &two).await;
    assert_eq!(performed, ["assessors_assigned"]);
    let mut per_entry: std::collections::BTreeMap<String, usize> = Default::default();
    let mut allocated = Vec::new();
    for a in &assessors {
        let mine = body(app.get("/api/v1/assessments", a).await).await;
        let mine: Vec<String> = mine["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        for e in &mine {
            *per_entry.entry(e.clone()).or_default() += 1;
        }
        allocated.push(mine);
    }
    assert!(
        !allocated[0].contains(&ids[0]),
        "the conflicted assessor never sees Alpha"
    );
    assert_eq!(per_entry.len(), 3);
    assert!(per_entry.values().all(|n| *n == 2), "{per_entry:?}");
    let progress = body(app.get(&format!("/api/v1/challenges/{id}"), &admin).await).await;
    assert_eq!(progress["status"], "in_assessment");
    assert_eq!(
        (
            &progress["progress"]["entries_allocated"],
            &progress["progress"]["allocations"]
        ),
        (&json!(3), &json!(6))
    );

    // Scores: bounded, only for allocated entries.
    let scores = [
        json!({"innovation": 9, "impact": 5}),
        json!({"innovation": 6, "impact": 3}),
        json!({"innovation": 4, "impact": 2}),
    ];
    let resp = put(
        &app,
        &format!("/api/v1/assessments/{}", ids[0]),
        &assessors[0],
        &json!({"scores": scores[0]}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 403, "not allocated to them");
    let assessor_of_alpha = &assessors[1];
    for (scores, field) in [
        (json!({"innovation": 11, "impact": 5}), "scores.innovation"),
        (json!({"innovation": 5}), "scores.impact"),
        (
            json!({"innovation": 5, "impact": 1, "charm": 3}),
            "scores.charm",
        ),
    ] {
        let resp = put(
            &app,
            &format!("/api/v1/assessments/{}", ids[0]),
            assessor_of_alpha,
            &json!({"scores": scores}),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 422);
        assert_eq!(body(resp).await["errors"][0]["field"], field);
    }
    for (a, mine) in assessors.iter().zip(&allocated) {
        for e in mine {
            let i = ids.iter().position(|x| x == e).unwrap();
            let resp = put(
                &app,
                &format!("/api/v1/assessments/{e}"),
                a,
                &json!({"scores": scores[i], "comment": "clear plan"}),
            )
            .await;
            assert_eq!(resp.status().as_u16(), 200);
        }
    }
    let progress = body(app.get(&format!("/api/v1/challenges/{id}"), &admin).await).await;
    assert_eq!(progress["progress"]["scores"], 6);

    // After the deadline, scores are refused.
    clock.set(t + Duration::hours(3) + Duration::seconds(1));
    let (performed, _) = both_run(&one, &two).await;
    assert_eq!(performed, ["assessment_deadline"]);
    let resp = put(
        &app,
        &format!("/api/v1/assessments/{}", ids[0]),
        assessor_of_alpha,
        &json!({"scores": scores[0]}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 409);

    // The startup's and the spin-off's evidence is checked before the panel.
    for i in [0, 2] {
        let resp = app
            .post(
                &format!("{entries_path}/{}/kind-check", ids[i]),
                &admin,
                &json!({"decision": "accept", "reason": "Companies House record seen"}),
            )
            .await;
        assert_eq!(resp.status().as_u16(), 200);
    }

    // Decisions: ranked by mean weighted percentage; 600 to Alpha's voucher, 300 to a new
    // voucher for Beta, the remaining 100 back to the fund; a pilot for Alpha. The next cycle
    // waits for the financial year it opens in.
    clock.set(t + Duration::hours(4) + Duration::seconds(1));
    let (performed, cycles) = both_run(&one, &two).await;
    assert_eq!(performed, ["decisions_released"]);
    assert!(cycles.is_empty(), "not months ahead: {cycles:?}");
    let results = body(app.get(&entries_path, &admin).await).await;
    let standings: Vec<(String, Value, Value, Value)> = results["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["organisation_name"].as_str().unwrap().to_string(),
                e["result"]["score_percent"].clone(),
                e["result"]["award"].clone(),
                e["result"]["pilot_invited"].clone(),
            )
        })
        .collect();
    assert_eq!(
        standings,
        [
            ("Alpha".into(), json!("92.50"), json!("600.00"), json!(true)),
            ("Beta".into(), json!("60.00"), json!("300.00"), json!(false)),
            ("Gamma".into(), json!("40.00"), json!("0.00"), json!(false)),
        ]
    );
    let v = app.voucher(&alpha, &alpha_voucher).await;
    assert_eq!(v["granted"], "700.00");
    let beta_vouchers = body(app.get("/api/v1/vouchers", &beta).await).await;
    let beta_vouchers = beta_vouchers["data"].as_array().unwrap();
    assert_eq!(beta_vouchers.len(), 1);
    assert_eq!(beta_vouchers[0]["granted"], "300.00");
    assert_eq!(
        body(app.get("/api/v1/vouchers", &gamma).await).await["data"],
        json!([])
    );
    // The unawarded 100 came back; no next cycle has set a pool aside yet.
    assert_eq!(fund().await, 197_900_000_000 + 100_000_000);

    // Run again: nothing happens twice.
    clock.advance(Duration::minutes(5));
    let (performed, cycles) = both_run(&one, &two).await;
    assert!(performed.is_empty() && cycles.is_empty());
    let txs = body(
        app.get(
            &format!("/api/v1/vouchers/{alpha_voucher}/transactions"),
            &alpha,
        )
        .await,
    )
    .await;
    let awards = txs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["code"] == "challenge_award")
        .count();
    assert_eq!(awards, 1);
    app.store.verify_ledger().await.unwrap();

    // Everyone was told.
    let sent = |who: &'static str| {
        let store = app.store.clone();
        async move {
            let mut t: Vec<String> = store
                .outbox(Some(who.to_string()), 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|m| {
                    m.template.starts_with("challenge") || m.template == "assessments_allocated"
                })
                .map(|m| m.template)
                .collect();
            t.sort();
            t
        }
    };
    let told = [
        "challenge_closed",
        "challenge_entry_checked",
        "challenge_entry_received",
        "challenge_result",
    ];
    assert_eq!(sent("a@alpha.co.uk").await, told);
    assert_eq!(sent("c@gamma.ac.uk").await, told);
    assert_eq!(
        sent("b@beta.co.uk").await,
        [
            "challenge_closed",
            "challenge_entry_received",
            "challenge_result"
        ]
    );

    // The next cycle (1 April, 09:00 UTC) is created once the financial year it opens in
    // begins, titled for its year, its pool set aside then.
    let year = if t.month() >= 4 {
        t.year() + 1
    } else {
        t.year()
    };
    let april = NaiveDate::from_ymd_opt(year, 4, 1).unwrap();
    clock.set(april.and_hms_opt(0, 0, 30).unwrap() - Duration::days(1));
    let (_, cycles) = both_run(&one, &two).await;
    assert!(cycles.is_empty(), "not before its financial year");
    clock.set(april.and_hms_opt(0, 0, 30).unwrap());
    let (_, cycles) = both_run(&one, &two).await;
    assert_eq!(cycles.len(), 1, "the next cycle, once");
    // The later challenge (no entries) was decided meanwhile and returned its 1,000; the next
    // cycle set its own 1,000 aside.
    assert_eq!(
        fund().await,
        197_900_000_000 + 100_000_000 + 1_000_000_000 - 1_000_000_000
    );
    assert_eq!(sent("two@assess.gov.uk").await, ["assessments_allocated"]);

    // The next cycle opens on the recurrence (1 April, 09:00 UTC) with the same spacing.
    let list = body(app.get("/api/v1/challenges", &admin).await).await;
    let next = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["previous_id"] == json!(id))
        .unwrap()
        .clone();
    assert!(
        next["opens_at"]
            .as_str()
            .unwrap()
            .ends_with("-04-01T09:00:00.000000Z"),
        "{next}"
    );
    assert_eq!(next["status"], "upcoming");
    assert_eq!(
        next["title"],
        json!(format!("AI for North East manufacturing {year}"))
    );
    assert_eq!(next["award_pool"], "1000.00");
}
