//! Technical consulting: advisers' slots, bookings held against a voucher's consulting minutes
//! (a ledger unit of its own), cancellation until a day before, the adviser's record, reminders,
//! and a slot that many SMEs race for booked once.

use crate::helpers::*;
use chrono::{Duration, NaiveDateTime};
use serde_json::{json, Value};
use std::sync::Arc;
use voucherd_store::Backend;
use voucherd_worker::{Clock, Job, ManualClock, Worker, WorkerConfig};

mod sqlite {
    #[tokio::test]
    async fn an_sme_books_cancels_and_is_recorded_against_its_consulting_hours() {
        super::book_cancel_record(super::Backend::Sqlite).await
    }
    #[tokio::test]
    async fn a_slot_many_smes_race_for_is_booked_once() {
        super::race(super::Backend::Sqlite).await
    }
}

mod postgres {
    #[tokio::test]
    async fn an_sme_books_cancels_and_is_recorded_against_its_consulting_hours() {
        super::book_cancel_record(super::Backend::Postgres).await
    }
    #[tokio::test]
    async fn a_slot_many_smes_race_for_is_booked_once() {
        super::race(super::Backend::Postgres).await
    }
}

fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn slot(
    app: &TestApp,
    adviser: &str,
    starts: NaiveDateTime,
    minutes: i64,
) -> reqwest::Response {
    app.post(
        "/api/v1/consulting/slots",
        adviser,
        &json!({"starts_at": rfc3339(starts), "ends_at": rfc3339(starts + Duration::minutes(minutes))}),
    )
    .await
}

async fn slot_id(app: &TestApp, adviser: &str, starts: NaiveDateTime, minutes: i64) -> String {
    let resp = slot(app, adviser, starts, minutes).await;
    assert_eq!(resp.status().as_u16(), 201);
    body(resp).await["id"].as_str().unwrap().to_string()
}

async fn book(app: &TestApp, token: &str, slot: &str, voucher: &str) -> reqwest::Response {
    app.post(
        "/api/v1/consulting/bookings",
        token,
        &json!({"slot_id": slot, "voucher_id": voucher}),
    )
    .await
}

async fn allowance(app: &TestApp, token: &str, voucher: &str) -> (i64, i64, i64, i64) {
    let a = body(
        app.get(&format!("/api/v1/vouchers/{voucher}/consulting"), token)
            .await,
    )
    .await;
    let n = |k: &str| a[k].as_i64().unwrap();
    (n("granted"), n("used"), n("held"), n("remaining"))
}

async fn code(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let b = body(resp).await;
    (status, b["code"].clone())
}

async fn book_cancel_record(backend: Backend) {
    let clock = Arc::new(ManualClock::new(voucherd_store::now()));
    let t = clock.now();
    let app = spawn_with_clock(backend, voucherd::Role::All, |_| {}, clock.clone()).await;
    let adviser = app.user_with_role("adviser@advice.gov.uk", "adviser").await;
    let (owner, voucher, _key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    // Two hours come with every voucher (the default), counted in minutes.
    assert_eq!(allowance(&app, &owner, &voucher).await, (120, 0, 0, 120));

    let first = slot_id(&app, &adviser, t + Duration::days(2), 60).await;
    let second = slot_id(&app, &adviser, t + Duration::days(3), 90).await;
    assert_eq!(
        code(
            slot(
                &app,
                &adviser,
                t + Duration::days(2) + Duration::minutes(30),
                60
            )
            .await
        )
        .await,
        (409, json!("slot_overlaps"))
    );
    for (starts, minutes, field) in [
        (t - Duration::hours(1), 60, "starts_at"),
        (t + Duration::days(5), 5, "ends_at"),
    ] {
        let resp = slot(&app, &adviser, starts, minutes).await;
        assert_eq!(resp.status().as_u16(), 422);
        assert_eq!(body(resp).await["errors"][0]["field"], field);
    }
    let free = body(app.get("/api/v1/consulting/slots", &owner).await).await;
    assert_eq!(free["data"].as_array().unwrap().len(), 2);

    // Book the first: its hour is held. One upcoming session at a time.
    let resp = book(&app, &owner, &first, &voucher).await;
    assert_eq!(resp.status().as_u16(), 201);
    let booking = body(resp).await["id"].as_str().unwrap().to_string();
    // Both sides' pages show the booked session, at its UK time.
    let on_page = (t + Duration::days(2))
        .and_utc()
        .with_timezone(&chrono_tz::Europe::London)
        .format("%A %-d %B %Y")
        .to_string();
    let mut sme = crate::helpers::Browser::sign_in(&app, "owner@widgets.co.uk").await;
    let page = sme
        .get(&app, &format!("/portal/vouchers/{voucher}/consulting"))
        .await;
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(&on_page) && html.contains("1 hour"), "{html}");
    let mut advising = crate::helpers::Browser::sign_in(&app, "adviser@advice.gov.uk").await;
    let page = advising.get(&app, "/advise").await;
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains(&on_page));
    assert_eq!(allowance(&app, &owner, &voucher).await, (120, 0, 60, 60));
    assert_eq!(
        code(book(&app, &owner, &second, &voucher).await).await,
        (409, json!("booking_in_progress"))
    );
    let free = body(app.get("/api/v1/consulting/slots", &owner).await).await;
    assert_eq!(
        free["data"].as_array().unwrap().len(),
        1,
        "a booked slot is no longer offered"
    );

    // Cancelled two days ahead: the hour returns. Not twice.
    let cancel = |id: String| {
        let (app, owner) = (&app, owner.clone());
        async move {
            app.client
                .delete(app.url(&format!("/api/v1/consulting/bookings/{id}")))
                .bearer_auth(owner)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(cancel(booking.clone()).await.status().as_u16(), 204);
    assert_eq!(allowance(&app, &owner, &voucher).await, (120, 0, 0, 120));
    assert_eq!(
        code(cancel(booking.clone()).await).await,
        (409, json!("booking_closed"))
    );

    // The second (90 minutes): too late to cancel within a day of it.
    let resp = book(&app, &owner, &second, &voucher).await;
    assert_eq!(resp.status().as_u16(), 201);
    let booking = body(resp).await["id"].as_str().unwrap().to_string();
    clock.set(t + Duration::days(3) - Duration::hours(23));
    assert_eq!(
        code(cancel(booking.clone()).await).await,
        (409, json!("too_late_to_cancel"))
    );

    // A day ahead, the worker reminds the SME, once.
    let mut config = WorkerConfig::default();
    config.mail.dir =
        std::env::temp_dir().join(format!("voucherd-mail-{}", uuid::Uuid::new_v4().simple()));
    let worker = Worker::new(app.store.clone(), config, clock.clone()).unwrap();
    assert_eq!(
        worker
            .run_once(Job::ConsultingReminders)
            .await
            .unwrap()
            .summary["reminders"],
        1
    );
    assert_eq!(
        worker
            .run_once(Job::ConsultingReminders)
            .await
            .unwrap()
            .summary["reminders"],
        0
    );

    // The adviser records it once it has started: the 90 minutes are used.
    let outcome = json!({"outcome": "attended", "notes": "Strong team; weak data.", "next_steps": "Label 500 emails before fine-tuning."});
    let record = |body: Value| {
        let (app, adviser, id) = (&app, adviser.clone(), booking.clone());
        async move {
            app.client
                .put(app.url(&format!("/api/v1/consulting/bookings/{id}/outcome")))
                .bearer_auth(adviser)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        code(record(outcome.clone()).await).await,
        (409, json!("session_not_started"))
    );
    clock.set(t + Duration::days(3) + Duration::minutes(5));
    let bad = record(json!({"outcome": "late"})).await;
    assert_eq!(bad.status().as_u16(), 422);
    assert_eq!(body(bad).await["errors"][0]["field"], "outcome");
    let resp = record(outcome.clone()).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["status"], "attended");
    assert_eq!(
        code(record(outcome).await).await,
        (409, json!("booking_closed"))
    );
    assert_eq!(allowance(&app, &owner, &voucher).await, (120, 90, 0, 30));

    // The booking's email gives the session's start in UK time, as the pages do.
    let mailed = app.mailed("owner@widgets.co.uk", "consulting_booked").await;
    let said = mailed["starts_at"].as_str().unwrap();
    assert!(
        said.contains(" at ")
            && (said.ends_with("am")
                || said.ends_with("pm")
                || said.ends_with("midday")
                || said.ends_with("midnight")),
        "{said}"
    );
    assert!(!said.contains("UTC"), "{said}");
    // The SME sees the next steps, not the programme's notes; the adviser sees both.
    let mine = body(app.get("/api/v1/consulting/bookings", &owner).await).await;
    let recorded = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == json!(booking))
        .unwrap()
        .clone();
    assert_eq!(
        recorded["next_steps"],
        "Label 500 emails before fine-tuning."
    );
    assert!(recorded.get("notes").is_none(), "{recorded}");
    let theirs = body(app.get("/api/v1/consulting/bookings", &adviser).await).await;
    assert!(theirs["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["notes"] == "Strong team; weak data."));

    // Thirty minutes left: an hour's slot cannot be booked.
    let third = slot_id(&app, &adviser, clock.now() + Duration::days(2), 60).await;
    let (status, c) = code(book(&app, &owner, &third, &voucher).await).await;
    assert_eq!((status, c), (409, json!("consulting_hours_short")));
    assert_eq!(
        allowance(&app, &owner, &voucher).await,
        (120, 90, 0, 30),
        "nothing held"
    );

    let sent: Vec<String> = app
        .store
        .outbox(Some("owner@widgets.co.uk".into()), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.template.starts_with("consulting"))
        .map(|m| m.template)
        .collect();
    let mut sent = sent;
    sent.sort();
    assert_eq!(
        sent,
        [
            "consulting_booked",
            "consulting_booked",
            "consulting_outcome",
            "consulting_reminder"
        ]
    );
    // A session nobody records lapses a month after it ends: the minutes come back and the
    // voucher may book again.
    let short = slot_id(&app, &adviser, clock.now() + Duration::days(4), 30).await;
    let resp = book(&app, &owner, &short, &voucher).await;
    assert_eq!(resp.status().as_u16(), 201);
    let unrecorded = body(resp).await["id"].as_str().unwrap().to_string();
    assert_eq!(allowance(&app, &owner, &voucher).await, (120, 90, 30, 0));
    clock.advance(Duration::days(35));
    let r = worker.run_once(Job::ConsultingReminders).await.unwrap();
    assert_eq!(r.summary["lapsed"], 1);
    assert_eq!(allowance(&app, &owner, &voucher).await, (120, 90, 0, 30));
    let mine = body(app.get("/api/v1/consulting/bookings", &owner).await).await;
    let lapsed = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == json!(unrecorded))
        .unwrap()
        .clone();
    assert_eq!(lapsed["status"], "cancelled");
    assert_eq!(
        worker
            .run_once(Job::ConsultingReminders)
            .await
            .unwrap()
            .summary["lapsed"],
        0
    );
    // Minutes never meet money: the ledger balances per unit.
    app.store.verify_ledger().await.unwrap();
}

async fn race(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    assert_eq!(app.deposit(&admin, "1000").await.status().as_u16(), 201);
    let adviser = app.user_with_role("adviser@advice.gov.uk", "adviser").await;
    let the_slot = slot_id(
        &app,
        &adviser,
        voucherd_store::now() + Duration::days(2),
        60,
    )
    .await;
    let mut smes = Vec::new();
    for i in 0..12 {
        let email = format!("owner{i}@firm{i}.co.uk");
        let token = app.applicant(&email).await;
        let mut a = valid_application();
        a["company_number"] = json!(format!("SC{:06}", 100_000 + i));
        let id = body(app.apply(&token, &a).await).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let decided = body(
            app.decide(
                &admin,
                &id,
                &json!({"decision": "approve", "amount": "10", "reason": "eligible for the programme"}),
            )
            .await,
        )
        .await;
        smes.push((
            token,
            decided["voucher"]["id"].as_str().unwrap().to_string(),
        ));
    }
    let mut tasks = Vec::new();
    for (token, voucher) in smes.clone() {
        let (client, url, slot) = (
            app.client.clone(),
            app.url("/api/v1/consulting/bookings"),
            the_slot.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"slot_id": slot, "voucher_id": voucher}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }));
    }
    let mut booked = 0;
    for t in tasks {
        match t.await.unwrap() {
            (201, _) => booked += 1,
            (409, b) => assert_eq!(b["code"], "slot_taken", "{b}"),
            (s, b) => panic!("unexpected {s}: {b}"),
        }
    }
    assert_eq!(booked, 1);
    let all = body(app.get("/api/v1/consulting/bookings", &admin).await).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 1);
    let mut held = 0;
    for (token, voucher) in &smes {
        held += allowance(&app, token, voucher).await.2;
    }
    assert_eq!(held, 60, "only the winner's hour is held");
    app.store.verify_ledger().await.unwrap();
}
