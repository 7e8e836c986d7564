//! Company ownership: an application holds its company's number only once ownership is
//! confirmed (by an administrator, or by the approval itself), and an administrator releases a
//! squatted number. Conflicts of interest: checked whenever an assessor reads or scores, and a
//! conflict declared after allocation takes the entry off the assessor and reallocates it.

use crate::helpers::*;
use chrono::{Duration, NaiveDateTime};
use serde_json::{json, Value};
use std::sync::Arc;
use voucherd_store::Backend;
use voucherd_worker::{Clock, Job, ManualClock, Worker, WorkerConfig};

on_both_backends!(
    backend:
    unconfirmed_applications_coexist_and_a_squatted_number_is_released,
    an_approval_records_the_check_and_a_refused_ownership_stops_it,
    the_console_shows_ownership_and_confirms_and_releases_with_its_forms,
    a_conflict_declared_after_allocation_takes_the_entry_off_and_reallocates_it,
);

async fn ownership(app: &TestApp, token: &str, id: &str, decision: &Value) -> reqwest::Response {
    app.post(
        &format!("/api/v1/applications/{id}/ownership"),
        token,
        decision,
    )
    .await
}

async fn release(app: &TestApp, token: &str, id: &str, reason: &str) -> reqwest::Response {
    app.post(
        &format!("/api/v1/applications/{id}/release"),
        token,
        &json!({ "reason": reason }),
    )
    .await
}

async fn application(app: &TestApp, admin: &str, id: &str) -> Value {
    let resp = app.get(&format!("/api/v1/applications/{id}"), admin).await;
    assert_eq!(resp.status().as_u16(), 200);
    body(resp).await
}

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

async fn unconfirmed_applications_coexist_and_a_squatted_number_is_released(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let admin_id = user_id(&app, &admin).await;
    let squatter = app.applicant("squatter@example.org").await;
    let owner = app.applicant("director@widgets.co.uk").await;
    let latecomer = app.applicant("someone@elsewhere.org").await;

    // Anyone may name any company: two unconfirmed applications for one number, both accepted,
    // neither holding it.
    let resp = app.apply(&squatter, &valid_application()).await;
    assert_eq!(resp.status().as_u16(), 201);
    let squatted = body(resp).await;
    assert_eq!(squatted["status"], "submitted");
    assert_eq!(
        squatted["ownership"],
        json!({"state": "unconfirmed", "method": null, "by": null, "at": null, "note": null})
    );
    assert_eq!(squatted["holds_company_number"], false);
    let squatted = squatted["id"].as_str().unwrap().to_string();
    let mut same = valid_application();
    same["company_number"] = json!("1234567");
    let resp = app.apply(&owner, &same).await;
    assert_eq!(resp.status().as_u16(), 201);
    let real = body(resp).await;
    assert_eq!(real["ownership"]["state"], "unconfirmed");
    assert_eq!(real["holds_company_number"], false);
    let real = real["id"].as_str().unwrap().to_string();

    // Only administrators settle ownership, with a note that says something.
    let confirm = json!({"confirmed": true, "note": "Director on the Companies House register"});
    assert_problem(
        ownership(&app, &owner, &real, &confirm).await,
        403,
        "forbidden",
    )
    .await;
    for (bad, path) in [
        (json!({"confirmed": true, "note": "   "}), "note"),
        (json!({"confirmed": true, "note": ""}), "note"),
        (json!({"note": "checked"}), "confirmed"),
        (json!({"confirmed": "yes", "note": "checked"}), "confirmed"),
        (
            json!({"confirmed": true, "note": "checked", "method": "email_domain"}),
            "method",
        ),
    ] {
        let p = assert_problem(
            ownership(&app, &admin, &real, &bad).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(fields(&p), [path], "{bad}: {p}");
    }
    assert_problem(
        ownership(&app, &admin, "no-such-application", &confirm).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        application(&app, &admin, &real).await["ownership"]["state"],
        "unconfirmed",
        "nothing was written"
    );

    // Confirmed (by mistake, here, for the squatter): it now holds the number.
    let resp = ownership(&app, &admin, &squatted, &confirm).await;
    assert_eq!(resp.status().as_u16(), 200);
    let a = body(resp).await;
    assert_eq!(a["ownership"]["state"], "confirmed");
    assert_eq!(a["ownership"]["method"], "admin_check");
    assert_eq!(a["ownership"]["by"], json!(admin_id));
    assert_eq!(
        a["ownership"]["note"],
        "Director on the Companies House register"
    );
    assert!(a["ownership"]["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(a["holds_company_number"], true);
    // No one else may apply for the company, or be confirmed for it, or approved.
    let p = assert_problem(
        app.apply(&latecomer, &valid_application()).await,
        409,
        "company_already_live",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("01234567"), "{p}");
    assert_problem(
        ownership(&app, &admin, &real, &confirm).await,
        409,
        "company_already_live",
    )
    .await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    assert_problem(
        app.decide(
            &admin,
            &real,
            &json!({"decision": "approve", "reason": "meets every rule"}),
        )
        .await,
        409,
        "company_already_live",
    )
    .await;
    let r = application(&app, &admin, &real).await;
    assert_eq!(
        (
            r["status"].clone(),
            r["ownership"]["state"].clone(),
            r["holds_company_number"].clone()
        ),
        (json!("submitted"), json!("unconfirmed"), json!(false))
    );

    // Releasing takes a reason and an administrator.
    assert_problem(
        release(&app, &squatter, &squatted, "not my company after all").await,
        403,
        "forbidden",
    )
    .await;
    let p = assert_problem(
        release(&app, &admin, &squatted, "  ").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["reason"]);
    let resp = release(
        &app,
        &admin,
        &squatted,
        "The applicant is not an officer of this company",
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let a = body(resp).await;
    assert_eq!(a["status"], "rejected");
    assert_eq!(a["holds_company_number"], false);
    assert_eq!(a["ownership"]["state"], "refused");
    assert_eq!(a["ownership"]["method"], "admin_check");
    assert_eq!(a["ownership"]["by"], json!(admin_id));
    assert_eq!(
        a["ownership"]["note"],
        "The applicant is not an officer of this company"
    );
    assert_eq!(
        a["decision"]["reason"],
        "The applicant is not an officer of this company"
    );
    assert_problem(
        release(&app, &admin, &squatted, "The applicant is not an officer").await,
        409,
        "application_already_decided",
    )
    .await;
    assert_problem(
        ownership(&app, &admin, &squatted, &confirm).await,
        409,
        "application_already_decided",
    )
    .await;

    // The number is free: the real owner is confirmed and holds it.
    let resp = ownership(&app, &admin, &real, &confirm).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["holds_company_number"], true);
    assert_problem(
        app.apply(&latecomer, &valid_application()).await,
        409,
        "company_already_live",
    )
    .await;

    // Audited, and the squatter was told why.
    let actions: Vec<String> = audit(&app, &admin, "application", &squatted)
        .await
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    assert_eq!(
        actions,
        ["application.ownership_confirm", "application.release"]
    );
    let (_, reason, details) = audit(&app, &admin, "application", &real)
        .await
        .pop()
        .unwrap();
    assert_eq!(reason, "Director on the Companies House register");
    assert_eq!(details["previous"], "unconfirmed");
    let told: Vec<String> = app
        .store
        .outbox(Some("squatter@example.org".into()), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.template)
        .collect();
    assert!(
        told.contains(&"application_rejected".to_string()),
        "{told:?}"
    );
}

async fn an_approval_records_the_check_and_a_refused_ownership_stops_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let admin_id = user_id(&app, &admin).await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);

    // Nobody checked: the approving administrator's decision is the check, recorded then.
    let owner = app.applicant("director@widgets.co.uk").await;
    let id = body(app.apply(&owner, &valid_application()).await).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = app
        .decide(
            &admin,
            &id,
            &json!({"decision": "approve", "reason": "meets every rule"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let decided = body(resp).await;
    let a = &decided["application"];
    assert_eq!(a["status"], "approved");
    assert_eq!(a["ownership"]["state"], "confirmed");
    assert_eq!(a["ownership"]["method"], "admin_check");
    assert_eq!(a["ownership"]["by"], json!(admin_id));
    assert_eq!(
        a["ownership"]["note"],
        "confirmed by the approval: meets every rule"
    );
    assert_eq!(a["holds_company_number"], true);
    let (action, _, details) = audit(&app, &admin, "application", &id).await.pop().unwrap();
    assert_eq!(action, "application.approve");
    assert_eq!(details["ownership_confirmed_by_approval"], true);
    // The applicant sees it too.
    let mine = body(app.get(&format!("/api/v1/applications/{id}"), &owner).await).await;
    assert_eq!(mine["ownership"]["state"], "confirmed");
    // An application with a voucher is not released, nor its ownership changed.
    assert_problem(
        release(&app, &admin, &id, "The applicant is not an officer").await,
        409,
        "has_voucher",
    )
    .await;
    assert_problem(
        ownership(
            &app,
            &admin,
            &id,
            &json!({"confirmed": false, "note": "changed my mind"}),
        )
        .await,
        409,
        "application_already_decided",
    )
    .await;

    // Ownership refused: the application lets go of nothing it held, and is not approved, nor
    // previewed as approvable, until ownership is confirmed.
    let other = app.applicant("someone@gadgets.co.uk").await;
    let mut gadgets = valid_application();
    gadgets["company_number"] = json!("SC123456");
    let id = body(app.apply(&other, &gadgets).await).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = ownership(
        &app,
        &admin,
        &id,
        &json!({"confirmed": false, "note": "Not among the company's officers"}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let a = body(resp).await;
    assert_eq!(a["ownership"]["state"], "refused");
    assert_eq!(a["holds_company_number"], false);
    assert_eq!(a["status"], "submitted");
    let approve = json!({"decision": "approve", "reason": "meets every rule"});
    let p = assert_problem(
        app.decide(&admin, &id, &approve).await,
        409,
        "ownership_refused",
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("Not among the company's officers"),
        "{p}"
    );
    assert_problem(
        app.get(&format!("/api/v1/applications/{id}/incentives"), &admin)
            .await,
        409,
        "ownership_refused",
    )
    .await;
    let resp = ownership(
        &app,
        &admin,
        &id,
        &json!({"confirmed": true, "note": "Appointed director last week"}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let resp = app.decide(&admin, &id, &approve).await;
    assert_eq!(resp.status().as_u16(), 200);
    let a = &body(resp).await["application"];
    // Already confirmed: the approval keeps that check as it was.
    assert_eq!(a["ownership"]["note"], "Appointed director last week");
    let (_, _, details) = audit(&app, &admin, "application", &id).await.pop().unwrap();
    assert_eq!(details["ownership_confirmed_by_approval"], false);
    app.store.verify_ledger().await.unwrap();
}

/// An administrator's browser: the session and CSRF cookies kept by hand.
struct Console {
    cookies: Vec<(String, String)>,
}

impl Console {
    fn keep(&mut self, resp: &reqwest::Response) {
        for c in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
    }

    fn cookie(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn csrf(&self) -> String {
        self.cookies
            .iter()
            .find(|(n, _)| n == "voucherd_csrf")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    async fn get(&mut self, app: &TestApp, path: &str) -> reqwest::Response {
        let resp = app
            .client
            .get(app.url(path))
            .header(reqwest::header::COOKIE, self.cookie())
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        resp
    }

    async fn post(
        &mut self,
        app: &TestApp,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let resp = app
            .client
            .post(app.url(path))
            .header(reqwest::header::COOKIE, self.cookie())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        resp
    }

    async fn sign_in(app: &TestApp, email: &str) -> Console {
        let mut c = Console {
            cookies: Vec::new(),
        };
        c.get(app, "/sign-in").await;
        let csrf = c.csrf();
        let resp = c
            .post(
                app,
                "/sign-in",
                &[
                    ("csrf", &csrf),
                    ("email", email),
                    ("password", PASSWORD),
                    ("next", ""),
                ],
            )
            .await;
        assert_eq!(resp.status().as_u16(), 303);
        c
    }
}

async fn the_console_shows_ownership_and_confirms_and_releases_with_its_forms(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app
        .user_with_role("console@programme.gov.uk", "admin")
        .await;
    let squatter = app.applicant("squatter@example.org").await;
    let id = body(app.apply(&squatter, &valid_application()).await).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let page_path = format!("/console/applications/{id}");
    let mut console = Console::sign_in(&app, "console@programme.gov.uk").await;
    let page = console.get(&app, &page_path).await;
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Ownership of the company"), "{html}");
    assert!(html.contains("not checked"), "{html}");
    assert!(html.contains(&format!(r#"action="/console/applications/{id}/ownership""#)));
    assert!(html.contains(&format!(r#"action="/console/applications/{id}/release""#)));
    let csrf = console.csrf();

    // A forged form does nothing; a blank note is the form's own error.
    let ownership_path = format!("/console/applications/{id}/ownership");
    let resp = console
        .post(
            &app,
            &ownership_path,
            &[
                ("csrf", "forged"),
                ("ownership_confirmed", "yes"),
                ("ownership_note", "checked"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    let resp = console
        .post(
            &app,
            &ownership_path,
            &[
                ("csrf", &csrf),
                ("ownership_confirmed", "yes"),
                ("ownership_note", " "),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Enter what you checked"));
    assert_eq!(
        application(&app, &admin, &id).await["ownership"]["state"],
        "unconfirmed"
    );

    // Confirmed from the page: the API recorded it, the page says so.
    let resp = console
        .post(
            &app,
            &ownership_path,
            &[
                ("csrf", &csrf),
                ("ownership_confirmed", "yes"),
                ("ownership_note", "Director on the register"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        resp.headers()["location"],
        format!("/console/applications/{id}?ownership=confirmed").as_str()
    );
    let a = application(&app, &admin, &id).await;
    assert_eq!(a["ownership"]["state"], "confirmed");
    assert_eq!(a["ownership"]["note"], "Director on the register");
    let html = console.get(&app, &page_path).await.text().await.unwrap();
    assert!(html.contains("Director on the register"), "{html}");

    // Released after the check page.
    let release_path = format!("/console/applications/{id}/release");
    let reason = "The applicant is not an officer of this company";
    let resp = console
        .post(
            &app,
            &release_path,
            &[("csrf", &csrf), ("release_reason", reason)],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Check before you release the company number"));
    assert_eq!(application(&app, &admin, &id).await["status"], "submitted");
    let resp = console
        .post(
            &app,
            &release_path,
            &[
                ("csrf", &csrf),
                ("release_reason", reason),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 303);
    let a = application(&app, &admin, &id).await;
    assert_eq!(
        (
            a["status"].clone(),
            a["ownership"]["state"].clone(),
            a["holds_company_number"].clone()
        ),
        (json!("rejected"), json!("refused"), json!(false))
    );
    // Decided: the page offers neither form any more.
    let html = console.get(&app, &page_path).await.text().await.unwrap();
    assert!(!html.contains(&format!(r#"action="/console/applications/{id}/release""#)));
    assert!(!html.contains(&format!(r#"action="/console/applications/{id}/ownership""#)));
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
    assert_eq!(r.outcome.as_str(), "succeeded", "{}", r.summary);
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
