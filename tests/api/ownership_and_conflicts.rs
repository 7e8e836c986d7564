//! Conflicts of interest: checked whenever an assessor reads or scores, and a conflict declared
//! after allocation takes the entry off the assessor and reallocates it.

use crate::helpers::*;
use chrono::{Duration, NaiveDateTime};
use serde_json::{json, Value};
use std::sync::Arc;
use voucherd_store::Backend;
use voucherd_worker::{Clock, Job, ManualClock, Worker, WorkerConfig};

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
    };
}

both!(a_conflict_declared_after_allocation_takes_the_entry_off_and_reallocates_it);

async fn user_id(app: &TestApp, token: &str) -> String {
    body(app.get("/api/v1/me", token).await).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The audit entries about one subject: (action, reason, details), oldest first.
async fn audit(app: &TestApp, admin: &str, kind: &str, id: &str) -> Vec<(String, Value, Value)> {
    let a = body(
        app.get(
            &format!("/api/v1/audit?subject_type={kind}&subject_id={id}"),
            admin,
        )
        .await,
    )
    .await;
    let mut rows: Vec<(String, Value, Value, String)> = a["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["reason"].clone(),
                e["details"].clone(),
                e["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Ids are time-ordered.
    rows.sort_by(|a, b| a.3.cmp(&b.3));
    rows.into_iter().map(|(a, r, d, _)| (a, r, d)).collect()
}

fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn challenge(t: NaiveDateTime) -> Value {
    json!({
        "title": "AI for logistics",
        "theme": "Route planning with language models.",
        "eligible": ["sme"],
        "opens_at": rfc3339(t - Duration::minutes(1)),
        "closes_at": rfc3339(t + Duration::hours(1)),
        "assessors_assigned_at": rfc3339(t + Duration::hours(2)),
        "assessment_deadline": rfc3339(t + Duration::hours(3)),
        "decisions_released_at": rfc3339(t + Duration::hours(4)),
        "criteria": [{"name": "fit", "max_score": 12, "weight": 1}],
        "assessors_per_entry": 2,
        "award_pool": "1000",
        "award_amounts": ["600"],
        "pilot_places": 0
    })
}

fn entry(company: &str, name: &str) -> Value {
    json!({
        "company_number": company,
        "organisation_name": name,
        "organisation_kind": "sme",
        "region": "north_east",
        "sic_code": "62012",
        "title": format!("{name}: routes"),
        "summary": "Plans delivery routes and explains each change to the driver."
    })
}

async fn run(w: &Worker) {
    let r = w.run_once(Job::Challenges).await.unwrap();
    assert_eq!(r.outcome, "succeeded", "{}", r.summary);
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

/// The ids of the entries on an assessor's list.
async fn listed(app: &TestApp, assessor: &str) -> Vec<String> {
    let mine = body(app.get("/api/v1/assessments", assessor).await).await;
    let mut ids: Vec<String> = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn score(app: &TestApp, assessor: &str, entry_id: &str, fit: u32) -> reqwest::Response {
    put(
        app,
        &format!("/api/v1/assessments/{entry_id}"),
        assessor,
        &json!({"scores": {"fit": fit}}),
    )
    .await
}

async fn progress(app: &TestApp, admin: &str, challenge_id: &str) -> Value {
    body(
        app.get(&format!("/api/v1/challenges/{challenge_id}"), admin)
            .await,
    )
    .await["progress"]
        .clone()
}

async fn declare(app: &TestApp, assessor: &str, company: &str) -> Value {
    let resp = app
        .post(
            "/api/v1/conflicts",
            assessor,
            &json!({"company_number": company, "reason": "I sit on its advisory board."}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    body(resp).await
}

async fn a_conflict_declared_after_allocation_takes_the_entry_off_and_reallocates_it(
    backend: Backend,
) {
    let clock = Arc::new(ManualClock::new(voucherd_store::now()));
    let t = clock.now();
    let app = spawn_with_clock(backend, voucherd::Role::All, |_| {}, clock.clone()).await;
    let mut config = WorkerConfig::default();
    config.mail.dir =
        std::env::temp_dir().join(format!("voucherd-mail-{}", uuid::Uuid::new_v4().simple()));
    let w = Worker::new(app.store.clone(), config, clock.clone()).unwrap();
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    let [one, two, three] = [
        app.user_with_role("one@assess.gov.uk", "assessor").await,
        app.user_with_role("two@assess.gov.uk", "assessor").await,
        app.user_with_role("three@assess.gov.uk", "assessor").await,
    ];
    let three_id = user_id(&app, &three).await;
    let resp = app.post("/api/v1/challenges", &admin, &challenge(t)).await;
    assert_eq!(resp.status().as_u16(), 201);
    let ch = body(resp).await["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for (email, company, name) in [
        ("a@alpha.co.uk", "01111111", "Alpha"),
        ("b@beta.co.uk", "02222222", "Beta"),
    ] {
        let entrant = app.applicant(email).await;
        let resp = app
            .post(
                &format!("/api/v1/challenges/{ch}/entries"),
                &entrant,
                &entry(company, name),
            )
            .await;
        assert_eq!(resp.status().as_u16(), 201);
        ids.push(body(resp).await["id"].as_str().unwrap().to_string());
    }
    let (alpha, beta) = (ids[0].clone(), ids[1].clone());

    // Opened, closed, allocated: Alpha to one and two, Beta to three and one (least loaded).
    run(&w).await;
    clock.set(t + Duration::hours(1) + Duration::seconds(1));
    run(&w).await;
    clock.set(t + Duration::hours(2) + Duration::seconds(1));
    run(&w).await;
    let mut both = vec![alpha.clone(), beta.clone()];
    both.sort();
    assert_eq!(listed(&app, &one).await, both);
    assert_eq!(listed(&app, &two).await, vec![alpha.clone()]);
    assert_eq!(listed(&app, &three).await, vec![beta.clone()]);
    // Reading one entry: the assessor's own, not another's.
    let read = app.get(&format!("/api/v1/assessments/{alpha}"), &one).await;
    assert_eq!(read.status().as_u16(), 200);
    assert_eq!(body(read).await["my_score"], Value::Null);
    assert_problem(
        app.get(&format!("/api/v1/assessments/{beta}"), &two).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        app.get("/api/v1/assessments/no-such-entry", &two).await,
        404,
        "not_found",
    )
    .await;

    // One scores Alpha (0 of 12), then declares an interest in it.
    assert_eq!(score(&app, &one, &alpha, 0).await.status().as_u16(), 200);
    let declared = declare(&app, &one, "1111111").await;
    assert_eq!(declared["company_number"], "01111111");
    assert_eq!(
        declared["entries_withdrawn"],
        json!([{"entry_id": alpha, "challenge_id": ch, "score_dropped": true, "reallocated": true}])
    );

    // Gone from their list, refused to read and to score; Beta stays theirs.
    assert_eq!(listed(&app, &one).await, vec![beta.clone()]);
    let p = assert_problem(
        app.get(&format!("/api/v1/assessments/{alpha}"), &one).await,
        403,
        "conflict_of_interest",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("01111111"), "{p}");
    assert_problem(
        score(&app, &one, &alpha, 12).await,
        403,
        "conflict_of_interest",
    )
    .await;

    // Three, free of conflicts and not on it, took it over and was told.
    assert_eq!(listed(&app, &three).await, both);
    let read = app
        .get(&format!("/api/v1/assessments/{alpha}"), &three)
        .await;
    assert_eq!(read.status().as_u16(), 200);
    assert_eq!(body(read).await["my_score"], Value::Null);
    let told: Vec<String> = app
        .store
        .outbox(Some("three@assess.gov.uk".into()), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.template)
        .collect();
    assert!(
        told.contains(&"assessment_reallocated".to_string()),
        "{told:?}"
    );
    let p = progress(&app, &admin, &ch).await;
    assert_eq!(p["allocations"], 4);
    assert_eq!(p["scores"], 0, "the dropped score is gone");
    assert_eq!(p["entries_short_of_assessors"], json!([]));
    let (action, reason, details) = audit(&app, &admin, "challenge_entry", &alpha)
        .await
        .pop()
        .unwrap();
    assert_eq!(action, "challenge.allocation_withdrawn");
    assert_eq!(reason, "I sit on its advisory board.");
    assert_eq!(details["reallocated_to"], json!(three_id));
    assert_eq!(details["dropped_score"]["percent_bp"], 0);
    assert_eq!(details["short_of_assessors"], false);

    // Two declares too: nobody is left who is free and not on it, so Alpha is short.
    let declared = declare(&app, &two, "01111111").await;
    assert_eq!(
        declared["entries_withdrawn"],
        json!([{"entry_id": alpha, "challenge_id": ch, "score_dropped": false, "reallocated": false}])
    );
    assert_eq!(listed(&app, &two).await, Vec::<String>::new());
    let p = progress(&app, &admin, &ch).await;
    assert_eq!(p["allocations"], 3);
    assert_eq!(p["entries_short_of_assessors"], json!([alpha]));
    // A conflict with nothing allocated withdraws nothing.
    let declared = declare(&app, &two, "SC999999").await;
    assert_eq!(declared["entries_withdrawn"], json!([]));

    // Scored by those left, Alpha is ranked on three's score alone.
    assert_eq!(score(&app, &three, &alpha, 12).await.status().as_u16(), 200);
    assert_eq!(score(&app, &three, &beta, 6).await.status().as_u16(), 200);
    assert_eq!(score(&app, &one, &beta, 6).await.status().as_u16(), 200);
    clock.set(t + Duration::hours(4) + Duration::seconds(1));
    run(&w).await;
    let results = body(
        app.get(&format!("/api/v1/challenges/{ch}/entries"), &admin)
            .await,
    )
    .await;
    let result = |id: &str| {
        results["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()["result"]
            .clone()
    };
    assert_eq!(result(&alpha)["score_percent"], "100.00");
    assert_eq!(result(&alpha)["assessments_incomplete"], false);
    assert_eq!(result(&alpha)["rank"], 1);
    assert_eq!(result(&beta)["score_percent"], "50.00");
    app.store.verify_ledger().await.unwrap();
}
