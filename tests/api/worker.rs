//! The worker: scheduled runs happen once across workers and catch up once after downtime;
//! voucher expiry, low-balance notices, hold timeouts and reconciliation; the outbox written
//! with its events and delivered over real SMTP. Time is a clock the test moves.

use crate::helpers::*;
use crate::smtp::SmtpServer;
use crate::upstream::Reply;
use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use voucherd_domain::Money;
use voucherd_store::outbox::OutboxRow;
use voucherd_worker::{Clock, Job, ManualClock, Worker, WorkerConfig};

on_both_backends!(
    two_workers_run_a_due_job_once_and_catch_up_once_after_downtime,
    a_run_left_by_a_dead_worker_is_taken_over_and_moves_no_money_twice,
    an_expired_voucher_stops_spending_and_forfeits_its_remainder_once,
    low_balance_notices_go_once_per_crossing,
    reconciliation_records_a_clean_ledger_and_alerts_admins_naming_a_damaged_account,
    hold_timeouts_resolve_expired_holds_and_report_how_many,
    the_outbox_is_delivered_over_smtp_and_retried_with_backoff,
    notifications_are_written_with_their_events_and_not_without,
    the_scheduler_stops_at_shutdown_leaving_no_run_unfinished,
);

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_opt(h, mi, s)
        .unwrap()
}

fn config(schedules: &[(&str, &str)], smtp_url: Option<String>) -> WorkerConfig {
    let defaults = WorkerConfig::default();
    WorkerConfig {
        schedules: schedules
            .iter()
            .map(|(j, s)| (j.to_string(), s.to_string()))
            .collect::<BTreeMap<_, _>>(),
        mail: voucherd_worker::mail::MailConfig {
            smtp_url,
            dir: std::env::temp_dir()
                .join(format!("voucherd-mail-{}", uuid::Uuid::new_v4().simple())),
            send_timeout_ms: 5_000,
            ..defaults.mail
        },
        ..defaults
    }
}

fn worker(app: &TestApp, clock: &Arc<ManualClock>, config: WorkerConfig) -> Worker {
    Worker::new(app.store.clone(), config, clock.clone()).unwrap()
}

/// A shutdown signal that never fires.
pub fn running() -> &'static watch::Receiver<bool> {
    static RUNNING: std::sync::LazyLock<(watch::Sender<bool>, watch::Receiver<bool>)> =
        std::sync::LazyLock::new(|| watch::channel(false));
    &RUNNING.1
}

/// A recipient's messages, newest first, but for the email-confirmation code every new
/// applicant is sent (accounts.rs tests that one).
async fn outbox(app: &TestApp, recipient: &str) -> Vec<OutboxRow> {
    let mut rows = app
        .store
        .outbox(Some(recipient.to_string()), 100)
        .await
        .unwrap();
    rows.retain(|r| r.template != "verify_email");
    rows
}

fn templates(rows: &[OutboxRow]) -> Vec<&str> {
    let mut t: Vec<&str> = rows.iter().map(|r| r.template.as_str()).collect();
    t.sort();
    t
}

fn micros(v: &Value) -> i64 {
    Money::parse(v.as_str().unwrap()).unwrap().micros()
}

/// Ticks both workers at once; the reconciliation runs either performed.
async fn reconciliations_run_by_both(a: &Worker, b: &Worker) -> Vec<voucherd_worker::RunReport> {
    let (ra, rb) = tokio::join!(a.tick(running()), b.tick(running()));
    ra.unwrap()
        .into_iter()
        .chain(rb.unwrap())
        .filter(|r| r.job == Job::Reconciliation)
        .collect()
}

async fn two_workers_run_a_due_job_once_and_catch_up_once_after_downtime(app: TestApp) {
    let clock = Arc::new(ManualClock::new(at(2026, 11, 27, 9, 59, 0)));
    let schedules = [("reconciliation", "0 0 * * * *")];
    let a = worker(&app, &clock, config(&schedules, None));
    let b = worker(&app, &clock, config(&schedules, None));
    let (ra, rb) = tokio::join!(a.tick(running()), b.tick(running()));
    assert!(
        ra.unwrap().is_empty() && rb.unwrap().is_empty(),
        "nothing due yet"
    );

    clock.set(at(2026, 11, 27, 10, 0, 1));
    let ran = reconciliations_run_by_both(&a, &b).await;
    assert_eq!(ran.len(), 1, "one of the two workers ran it");
    assert_eq!(ran[0].scheduled_at, at(2026, 11, 27, 10, 0, 0));
    assert_eq!(ran[0].outcome.as_str(), "succeeded");

    // Both workers down for five hours and a bit: one run, for the latest missed hour.
    clock.set(at(2026, 11, 27, 15, 20, 0));
    let ran = reconciliations_run_by_both(&a, &b).await;
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].scheduled_at, at(2026, 11, 27, 15, 0, 0));
    // A new worker (a restart) sees the history and does not run it again.
    let c = worker(&app, &clock, config(&schedules, None));
    assert!(c
        .tick(running())
        .await
        .unwrap()
        .iter()
        .all(|r| r.job != Job::Reconciliation));

    let runs = app
        .store
        .job_runs(Some("reconciliation".into()), 10)
        .await
        .unwrap();
    let mut times: Vec<NaiveDateTime> = runs.iter().map(|r| r.scheduled_at).collect();
    times.sort();
    assert_eq!(
        times,
        [at(2026, 11, 27, 10, 0, 0), at(2026, 11, 27, 15, 0, 0)]
    );
    for r in &runs {
        assert_eq!(r.outcome.as_str(), "succeeded");
        assert_eq!(r.attempts, 1);
        assert!(r.finished_at.is_some());
        let summary: Value = serde_json::from_str(&r.summary).unwrap();
        assert_eq!(summary["balanced"], true, "{summary}");
    }
    // What --list shows: every job, with its next run after now.
    let listed = a.list();
    assert_eq!(listed.len(), Job::ALL.len());
    let (_, expr, next) = listed
        .iter()
        .find(|(j, _, _)| *j == Job::Reconciliation)
        .unwrap();
    assert_eq!(expr, "0 0 * * * *");
    assert_eq!(*next, Some(at(2026, 11, 27, 16, 0, 0)));
}

async fn a_run_left_by_a_dead_worker_is_taken_over_and_moves_no_money_twice(app: TestApp) {
    let (owner, voucher_id, _key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let v = app.voucher(&owner, &voucher_id).await;
    let expires: NaiveDateTime =
        NaiveDateTime::parse_from_str(v["expires_at"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S%.fZ")
            .unwrap();
    // The hourly run after expiry, claimed by a worker that died before finishing it (its
    // row stays `running`).
    let hourly = "0 0 * * * *";
    let schedules = [("voucher-expiry", hourly)];
    let scheduled =
        voucherd_worker::latest_fire(&hourly.parse().unwrap(), expires + Duration::hours(1))
            .unwrap();
    let clock = Arc::new(ManualClock::new(scheduled + Duration::seconds(1)));
    let claimed = app
        .store
        .claim_job_run(
            voucherd_store::jobs::RunClaim {
                job: "voucher-expiry".into(),
                scheduled_at: scheduled,
                manual: false,
                worker_id: "worker-that-died".into(),
                at: scheduled + Duration::seconds(1),
                stale_before: scheduled - Duration::hours(1),
            },
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.outcome.as_str(), "running");
    clock.set(scheduled + Duration::seconds(5));

    // While its heartbeat is fresh, nobody else takes it.
    let w = worker(&app, &clock, config(&schedules, None));
    let ran = w.tick(running()).await.unwrap();
    assert!(ran.iter().all(|r| r.job != Job::VoucherExpiry), "{ran:?}");

    // Once stale (ten minutes by default), another worker takes it over and completes it.
    clock.set(scheduled + Duration::minutes(11));
    let w = worker(&app, &clock, config(&schedules, None));
    let ran = w.tick(running()).await.unwrap();
    let expiry: Vec<_> = ran.iter().filter(|r| r.job == Job::VoucherExpiry).collect();
    assert_eq!(expiry.len(), 1, "{ran:?}");
    assert_eq!(expiry[0].summary["forfeited_micros"], 100_000_000);
    let runs = app
        .store
        .job_runs(Some("voucher-expiry".into()), 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].attempts, 2);
    assert_eq!(runs[0].worker_id, w.id());
    assert_eq!(runs[0].outcome.as_str(), "succeeded");

    // Run again by hand: nothing more moves.
    let again = w.run_once(Job::VoucherExpiry).await.unwrap();
    assert_eq!(again.summary["forfeited_micros"], 0);
    let txs = body(
        app.get(
            &format!("/api/v1/vouchers/{voucher_id}/transactions"),
            &owner,
        )
        .await,
    )
    .await;
    let forfeits: Vec<&Value> = txs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["code"] == "expiry")
        .collect();
    assert_eq!(forfeits.len(), 1);
    assert_eq!(forfeits[0]["amount"], "100.00");
    app.store.verify_ledger().await.unwrap();
}

async fn an_expired_voucher_stops_spending_and_forfeits_its_remainder_once(app: TestApp) {
    let email = "owner@widgets.co.uk";
    let (owner, voucher_id, key) = app.funded_voucher(email, "100").await;
    assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(micros(&v["spent"]), 5_580);
    let expires: NaiveDateTime =
        NaiveDateTime::parse_from_str(v["expires_at"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S%.fZ")
            .unwrap();

    let clock = Arc::new(ManualClock::new(expires - Duration::days(40)));
    let w = worker(&app, &clock, config(&[], None));
    let r = w.run_once(Job::VoucherExpiry).await.unwrap();
    assert_eq!(r.summary["reminders"], 0, "not yet");

    clock.set(expires - Duration::days(29));
    assert_eq!(
        w.run_once(Job::VoucherExpiry).await.unwrap().summary["reminders"],
        1
    );
    clock.advance(Duration::hours(1));
    assert_eq!(
        w.run_once(Job::VoucherExpiry).await.unwrap().summary["reminders"],
        0,
        "once"
    );
    clock.set(expires - Duration::days(6));
    assert_eq!(
        w.run_once(Job::VoucherExpiry).await.unwrap().summary["reminders"],
        1,
        "the 7-day reminder"
    );
    let reminders: Vec<Value> = outbox(&app, email)
        .await
        .iter()
        .filter(|m| m.template == "expiry_reminder")
        .map(|m| serde_json::from_str(&m.data).unwrap())
        .collect();
    let mut days: Vec<i64> = reminders
        .iter()
        .map(|d| d["days"].as_i64().unwrap())
        .collect();
    days.sort();
    assert_eq!(days, [7, 30]);

    // At expiry: it stops spending, and the remainder moves to the forfeited account.
    clock.set(expires + Duration::minutes(1));
    let r = w.run_once(Job::VoucherExpiry).await.unwrap();
    assert_eq!(r.outcome.as_str(), "succeeded");
    assert_eq!(r.summary["expired"], 1);
    assert_eq!(r.summary["forfeited"], 1);
    assert_eq!(r.summary["forfeited_micros"], 100_000_000 - 5_580);
    let resp = app.chat(&key, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(body(resp).await["error"]["code"], "insufficient_quota");
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(v["status"], "expired");
    assert_eq!(v["available"], "0.00");
    // What was spent and what was forfeited are shown apart.
    assert_eq!(micros(&v["spent"]), 5_580);
    assert_eq!(micros(&v["forfeited"]), 100_000_000 - 5_580);
    let programme = body(
        app.get("/api/v1/programme", &admin_token(&app, email).await)
            .await,
    )
    .await;
    assert_eq!(programme["forfeited"], "99.99442", "{programme}");

    // Again: nothing more moves, no second notice.
    clock.advance(Duration::hours(1));
    let r = w.run_once(Job::VoucherExpiry).await.unwrap();
    assert_eq!(
        (&r.summary["expired"], &r.summary["forfeited"]),
        (&json!(0), &json!(0))
    );
    let expired: Vec<OutboxRow> = outbox(&app, email)
        .await
        .into_iter()
        .filter(|m| m.template == "voucher_expired")
        .collect();
    assert_eq!(expired.len(), 1);
    let data: Value = serde_json::from_str(&expired[0].data).unwrap();
    assert_eq!(data["forfeited"], "99.99442");
    app.store.verify_ledger().await.unwrap();

    // The company may apply again.
    let again = app.apply(&owner, &valid_application()).await;
    assert_eq!(again.status().as_u16(), 201);
}

async fn admin_token(app: &TestApp, email: &str) -> String {
    app.token(&format!("admin-{email}")).await
}

async fn low_balance_notices_go_once_per_crossing(app: TestApp) {
    let email = "owner@widgets.co.uk";
    // 0.1 = 100,000 micros; each request below costs 40 × 2.50 + 100 × 10.00 = 1,100.
    let (owner, voucher_id, key) = app.funded_voucher(email, "0.1").await;
    app.upstream.set_reply(Reply {
        prompt_tokens: 40,
        cached_tokens: 0,
        completion_tokens: 100,
        ..Reply::default()
    });
    let clock = Arc::new(ManualClock::new(at(2026, 11, 27, 12, 0, 0)));
    let w = worker(&app, &clock, config(&[], None));
    let notices = |app: &TestApp| {
        let app_store = app.store.clone();
        async move {
            let mut n: Vec<i64> = app_store
                .outbox(Some(email.to_string()), 100)
                .await
                .unwrap()
                .iter()
                .filter(|m| m.template == "low_balance")
                .map(|m| {
                    serde_json::from_str::<Value>(&m.data).unwrap()["percent_used"]
                        .as_i64()
                        .unwrap()
                })
                .collect();
            n.sort();
            n
        }
    };
    for _ in 0..72 {
        let resp = app.chat(&key, &short_chat_request(Some(100))).await;
        assert_eq!(resp.status().as_u16(), 200);
    }
    let r = w.run_once(Job::LowBalance).await.unwrap();
    assert_eq!(r.summary["notified_80"], 0, "79,200 of 100,000 is 79.2%");
    assert!(notices(&app).await.is_empty());

    assert_eq!(
        app.chat(&key, &short_chat_request(Some(100)))
            .await
            .status()
            .as_u16(),
        200
    );
    let r = w.run_once(Job::LowBalance).await.unwrap();
    assert_eq!(r.summary["notified_80"], 1, "80,300 of 100,000 is 80.3%");
    clock.advance(Duration::minutes(15));
    let r = w.run_once(Job::LowBalance).await.unwrap();
    assert_eq!(r.summary["notified_80"], 0, "once per crossing");
    assert_eq!(notices(&app).await, [80]);

    // Used up: the last request is capped to what is left (leaving crumbs no request can
    // use), then requests are refused.
    let mut refused = false;
    for _ in 0..30 {
        let resp = app.chat(&key, &short_chat_request(Some(100))).await;
        if resp.status().as_u16() == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused);
    let v = app.voucher(&owner, &voucher_id).await;
    assert!(micros(&v["available"]) < 1_000, "under 1% left: {v}");
    let r = w.run_once(Job::LowBalance).await.unwrap();
    assert_eq!(
        (&r.summary["notified_80"], &r.summary["notified_100"]),
        (&json!(0), &json!(1))
    );
    w.run_once(Job::LowBalance).await.unwrap();
    assert_eq!(notices(&app).await, [80, 100]);
}

async fn reconciliation_records_a_clean_ledger_and_alerts_admins_naming_a_damaged_account(
    app: TestApp,
) {
    let email = "owner@widgets.co.uk";
    let (_owner, voucher_id, key) = app.funded_voucher(email, "100").await;
    assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);
    let clock = Arc::new(ManualClock::new(at(2026, 11, 28, 2, 30, 0)));
    let w = worker(&app, &clock, config(&[], None));
    let r = w.run_once(Job::Reconciliation).await.unwrap();
    assert_eq!(r.summary["balanced"], true, "{}", r.summary);
    assert!(r.summary["transfers_checked"].as_i64().unwrap() >= 4);
    let admin = format!("admin-{email}");
    assert!(outbox(&app, &admin)
        .await
        .iter()
        .all(|m| m.template != "reconciliation_alert"));

    // Damage: a cached total no transfer explains.
    let account = format!("voucher-{voucher_id}");
    app.store
        .corrupt_account_for_tests(&account, 1)
        .await
        .unwrap();
    clock.advance(Duration::days(1));
    let r = w.run_once(Job::Reconciliation).await.unwrap();
    assert_eq!(
        r.outcome.as_str(),
        "succeeded",
        "the job ran; it found a difference"
    );
    assert_eq!(r.summary["balanced"], false);
    let named: Vec<&str> = r.summary["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["account_id"].as_str().unwrap_or("(ledger)"))
        .collect();
    assert!(named.contains(&account.as_str()), "{named:?}");
    let recorded = app.store.reconciliations(10).await.unwrap();
    assert_eq!(
        recorded.iter().map(|r| r.balanced).collect::<Vec<_>>(),
        [false, true]
    );
    let alerts: Vec<OutboxRow> = outbox(&app, &admin)
        .await
        .into_iter()
        .filter(|m| m.template == "reconciliation_alert")
        .collect();
    assert_eq!(alerts.len(), 1);
    let data: Value = serde_json::from_str(&alerts[0].data).unwrap();
    assert!(data["accounts"]
        .as_array()
        .unwrap()
        .contains(&json!(account)));
    // The applicant is no administrator: no alert for them.
    assert!(outbox(&app, email)
        .await
        .iter()
        .all(|m| m.template != "reconciliation_alert"));

    // Administrators read the same record through the API.
    let token = admin_token(&app, email).await;
    let listed = body(app.get("/api/v1/reconciliations", &token).await).await;
    let balanced: Vec<&Value> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["balanced"])
        .collect();
    assert_eq!(balanced, [&json!(false), &json!(true)]);
    assert_eq!(
        listed["data"][0]["differences"][0]["account_id"],
        json!(account)
    );
    let runs = body(
        app.get("/api/v1/jobs/runs?job=reconciliation", &token)
            .await,
    )
    .await;
    let runs = runs["data"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (&runs[0]["trigger"], &runs[0]["outcome"]),
        (&json!("manual"), &json!("succeeded"))
    );
    assert_eq!(runs[0]["summary"]["balanced"], false);
    // The console lists each job once, with its count and latest outcome, and a job's own
    // runs on its page.
    let mut browser = Browser::sign_in(&app, &admin).await;
    let page = browser
        .get(&app, "/console/jobs")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"href="/console/jobs?job=reconciliation""#),
        "{page}"
    );
    assert_eq!(page.matches(">reconciliation<span").count(), 1, "{page}");
    assert!(page.contains("Choose a job to see its latest runs"));
    let one = browser
        .get(&app, "/console/jobs?job=reconciliation")
        .await
        .text()
        .await
        .unwrap();
    assert!(one.contains("The latest runs of reconciliation"), "{one}");
    let csv = browser
        .get(&app, "/console/jobs.csv?job=reconciliation")
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "a header and the two runs: {csv}");
    assert!(
        lines[1].starts_with(r#""reconciliation","manual","#),
        "{csv}"
    );
    assert!(one.matches("govuk-tag--green").count() >= 2, "{one}");
    let sent = body(
        app.get(&format!("/api/v1/outbox?recipient={admin}"), &token)
            .await,
    )
    .await;
    assert!(sent["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["template"] == "reconciliation_alert" && m["status"] == "pending"));
    let bad = app.get("/api/v1/jobs/runs?limit=0", &token).await;
    assert_eq!(bad.status().as_u16(), 422);
    assert_eq!(body(bad).await["errors"][0]["field"], "limit");
    let bad = app.get("/api/v1/outbox?recipient=nobody", &token).await;
    assert_eq!(bad.status().as_u16(), 422);
    let applicant = app.token(email).await;
    assert_eq!(
        app.get("/api/v1/reconciliations", &applicant)
            .await
            .status()
            .as_u16(),
        403
    );
}

async fn hold_timeouts_resolve_expired_holds_and_report_how_many(app: TestApp) {
    let (owner, voucher_id, _key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let account = format!("voucher-{voucher_id}");
    let now = voucherd_store::now();
    for (i, minutes) in [1, 2, 120].into_iter().enumerate() {
        app.store
            .open_hold(
                format!("req-{i}"),
                account.clone(),
                Money::parse("10").unwrap(),
                now + Duration::minutes(minutes),
                None,
                "instance-1".into(),
            )
            .await
            .unwrap();
    }
    assert_eq!(app.voucher(&owner, &voucher_id).await["held"], "30.00");
    let clock = Arc::new(ManualClock::new(now + Duration::minutes(30)));
    let w = worker(&app, &clock, config(&[], None));
    let r = w.run_once(Job::HoldTimeouts).await.unwrap();
    assert_eq!(r.summary["holds_resolved"], 2);
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(
        (v["held"].as_str(), v["spent"].as_str()),
        (Some("10.00"), Some("0.00"))
    );
    let r = w.run_once(Job::HoldTimeouts).await.unwrap();
    assert_eq!(r.summary["holds_resolved"], 0);
    app.store.verify_ledger().await.unwrap();
}

async fn the_outbox_is_delivered_over_smtp_and_retried_with_backoff(app: TestApp) {
    let email = "owner@widgets.co.uk";
    let smtp = SmtpServer::start().await;
    let token = app.applicant(email).await;
    let clock = Arc::new(ManualClock::new(voucherd_store::now()));
    // The account's confirmation code went out before this test's story starts.
    let folder = config(&[], None);
    let r = worker(&app, &clock, folder)
        .run_once(Job::Outbox)
        .await
        .unwrap();
    assert_eq!(r.summary["sent"], 1);
    assert_eq!(
        app.apply(&token, &valid_application())
            .await
            .status()
            .as_u16(),
        201
    );
    let clock = Arc::new(ManualClock::new(
        voucherd_store::now() + Duration::seconds(1),
    ));
    let w = worker(&app, &clock, config(&[], Some(smtp.url.clone())));

    // The server is in trouble: a temporary failure, retried after 30 s, then 60 s.
    smtp.refuse(true);
    let r = w.run_once(Job::Outbox).await.unwrap();
    assert_eq!(r.summary, json!({"sent": 0, "retrying": 1, "failed": 0}));
    let m = &outbox(&app, email).await[0];
    assert_eq!((m.status.as_str(), m.attempts), ("pending", 1));
    assert_eq!(m.next_attempt_at, clock.now() + Duration::seconds(30));
    assert!(m.last_error.as_deref().unwrap().contains("451"), "{m:?}");
    clock.advance(Duration::seconds(10));
    let r = w.run_once(Job::Outbox).await.unwrap();
    assert_eq!(r.summary["retrying"], 0, "not due yet");

    smtp.refuse(false);
    clock.advance(Duration::seconds(21));
    let r = w.run_once(Job::Outbox).await.unwrap();
    assert_eq!(r.summary, json!({"sent": 1, "retrying": 0, "failed": 0}));
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, [email]);
    assert_eq!(got[0].from, "noreply@voucherd.invalid");
    assert!(
        got[0]
            .data
            .contains("Subject: We have received your application for Widget Analytics Ltd"),
        "{}",
        got[0].data
    );
    assert!(got[0].data.contains("text/plain") && got[0].data.contains("text/html"));
    let m = &outbox(&app, email).await[0];
    assert_eq!((m.status.as_str(), m.attempts), ("sent", 2));
    assert!(m.sent_at.is_some());
    // Sent once: nothing left to send.
    clock.advance(Duration::minutes(5));
    let r = w.run_once(Job::Outbox).await.unwrap();
    assert_eq!(r.summary["sent"], 0);
    assert_eq!(smtp.received().len(), 1);

    // With no SMTP configured, the message goes to the mail folder instead.
    let other = "second@gadgets.co.uk";
    let token = app.applicant(other).await;
    let mut application = valid_application();
    application["company_number"] = json!("SC123456");
    application["company_name"] = json!("Gadgets Ltd");
    assert_eq!(app.apply(&token, &application).await.status().as_u16(), 201);
    let folder = config(&[], None);
    let dir = folder.mail.dir.clone();
    let w = worker(&app, &clock, folder);
    let r = w.run_once(Job::Outbox).await.unwrap();
    // The new account's confirmation code and the application's receipt.
    assert_eq!(r.summary["sent"], 2);
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    assert_eq!(files.len(), 2);
    let eml = files.iter().find(|f| f.contains("Gadgets Ltd")).unwrap();
    assert!(eml.contains("To: second@gadgets.co.uk"), "{eml}");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn notifications_are_written_with_their_events_and_not_without(app: TestApp) {
    let email = "owner@widgets.co.uk";
    let token = app.applicant(email).await;
    let admin = app.user_with_role("admin@programme.gov.uk", "admin").await;
    let application = body(app.apply(&token, &valid_application()).await).await;
    let id = application["id"].as_str().unwrap();
    assert_eq!(
        templates(&outbox(&app, email).await),
        ["application_received"]
    );

    // An approval the fund cannot cover fails whole: no voucher and no notification.
    let resp = app
        .decide(
            &admin,
            id,
            &json!({"decision": "approve", "amount": "100", "reason": "meets all criteria"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 409);
    assert_eq!(
        templates(&outbox(&app, email).await),
        ["application_received"]
    );

    assert_eq!(app.deposit(&admin, "1000").await.status().as_u16(), 201);
    let decided = body(
        app.decide(
            &admin,
            id,
            &json!({"decision": "approve", "amount": "100", "reason": "meets all criteria"}),
        )
        .await,
    )
    .await;
    let voucher_id = decided["voucher"]["id"].as_str().unwrap();
    let rows = outbox(&app, email).await;
    assert_eq!(
        templates(&rows),
        ["application_approved", "application_received"]
    );
    let approved = rows
        .iter()
        .find(|m| m.template == "application_approved")
        .unwrap();
    let data: Value = serde_json::from_str(&approved.data).unwrap();
    assert_eq!(data["amount"], "100.00");
    assert_eq!(data["voucher_id"], voucher_id);
    // Rendered, it is the MFA statement: value, date and the words.
    let mailer = voucherd_worker::mail::Mailer::new(&config(&[], None).mail).unwrap();
    let text = mailer.render("application_approved", &data).unwrap().text;
    assert!(text.contains("is minimal financial assistance"), "{text}");
    assert!(text.contains("worth £100.00, awarded on "), "{text}");

    assert_eq!(
        app.create_key(&token, voucher_id).await.status().as_u16(),
        201
    );
    let rows = outbox(&app, email).await;
    assert_eq!(
        templates(&rows),
        [
            "application_approved",
            "application_received",
            "key_created"
        ]
    );

    // A rejection carries its reason.
    let other = "second@gadgets.co.uk";
    let token = app.applicant(other).await;
    let mut application = valid_application();
    application["company_number"] = json!("SC123456");
    let id = body(app.apply(&token, &application).await).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = app
        .decide(
            &admin,
            &id,
            &json!({"decision": "reject", "reason": "the use case is not AI adoption"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let rejected: Vec<OutboxRow> = outbox(&app, other)
        .await
        .into_iter()
        .filter(|m| m.template == "application_rejected")
        .collect();
    assert_eq!(rejected.len(), 1);
    let data: Value = serde_json::from_str(&rejected[0].data).unwrap();
    assert_eq!(data["reason"], "the use case is not AI adoption");
}

async fn the_scheduler_stops_at_shutdown_leaving_no_run_unfinished(app: TestApp) {
    let clock = Arc::new(ManualClock::new(at(2026, 11, 27, 10, 0, 0)));
    let mut c = config(&[("reconciliation", "* * * * * *")], None);
    c.poll_ms = 50;
    let w = worker(&app, &clock, c);
    let (stop, stopping) = watch::channel(false);
    let task = tokio::spawn(w.run(stopping));
    clock.advance(Duration::seconds(2));
    let mut runs = Vec::new();
    for _ in 0..200 {
        runs = app
            .store
            .job_runs(Some("reconciliation".into()), 10)
            .await
            .unwrap();
        if !runs.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(runs.len(), 1, "the due run happened");
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(20), task)
        .await
        .expect("the scheduler stops")
        .unwrap();
    let runs = app.store.job_runs(None, 100).await.unwrap();
    assert!(!runs.is_empty());
    assert!(
        runs.iter().all(|r| r.outcome.as_str() == "succeeded"),
        "{:?}",
        runs.iter().map(|r| &r.outcome).collect::<Vec<_>>()
    );
}
