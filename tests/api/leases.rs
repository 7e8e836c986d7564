//! Leasing: requests reserve from a lease held in memory, usage is recorded in batches
//! before each response ends, and a lease posts exactly the usage recorded under it.

use crate::helpers::*;
use crate::upstream::Reply;
use serde_json::Value;
use std::collections::BTreeSet;

on_both_backends!(
    leasing: requests_share_a_lease_and_its_post_is_exactly_their_usage,
    a_small_voucher_is_never_overspent_through_leases,
    a_batch_that_fails_to_commit_fails_exactly_its_requests,
);

fn micros(v: &Value) -> i64 {
    voucherd_domain::Money::parse(v.as_str().unwrap())
        .unwrap()
        .micros()
}

async fn requests_share_a_lease_and_its_post_is_exactly_their_usage(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    for _ in 0..20 {
        let resp = app.chat(&key, &chat_request()).await;
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.headers().get("x-voucher-available").is_some());
    }
    // Spent is exact at once, before any lease closes: 20 × 5,580 micros.
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(micros(&v["spent"]), 20 * 5_580);
    let usage = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), &owner)
            .await,
    )
    .await;
    let rows = usage["data"].as_array().unwrap();
    assert_eq!(rows.len(), 20);
    let holds: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["hold_id"].as_str().unwrap())
        .collect();
    assert!(
        holds.len() < 20,
        "requests shared leases: {} holds for 20 requests",
        holds.len()
    );

    let v = app.wait_until_settled(&owner, &voucher_id).await;
    assert_eq!(micros(&v["spent"]), 20 * 5_580);
    // The day's rollup counts exactly what the usage rows do.
    let today = voucherd_store::now().date();
    let rolled = app
        .store
        .usage_daily(Some(voucher_id.clone()), today, today)
        .await
        .unwrap();
    assert_eq!(rolled.len(), 1);
    assert_eq!(
        (rolled[0].requests, rolled[0].cost, rolled[0].model.as_str()),
        (20, 20 * 5_580, MODEL)
    );
    assert_eq!(micros(&v["available"]), 100_000_000 - 20 * 5_580);
    let txs = body(
        app.get(
            &format!("/api/v1/vouchers/{voucher_id}/transactions"),
            &owner,
        )
        .await,
    )
    .await;
    let posts: Vec<&Value> = txs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "post")
        .collect();
    assert_eq!(posts.len(), holds.len(), "one post per lease");
    assert_eq!(
        posts.iter().map(|t| micros(&t["amount"])).sum::<i64>(),
        20 * 5_580
    );
    // The key's last use, written by the first batch that carried it, is its first request's.
    let keys = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/keys"), &owner)
            .await,
    )
    .await;
    let first = rows
        .iter()
        .map(|r| r["created_at"].as_str().unwrap())
        .min()
        .unwrap();
    assert_eq!(keys["data"][0]["last_used_at"].as_str(), Some(first));
    app.store.verify_ledger().await.unwrap();
}

async fn a_small_voucher_is_never_overspent_through_leases(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "0.005").await;
    app.upstream.set_reply(Reply {
        prompt_tokens: 40,
        cached_tokens: 0,
        completion_tokens: 100,
        ..Reply::default()
    });
    let other = another_instance(&app, voucherd::Role::Proxy, |c| c.lease_max_age_ms = 200);
    let req = short_chat_request(Some(100));
    let ok = fire(
        &app,
        &[
            app.url("/v1/chat/completions"),
            other.url("/v1/chat/completions"),
        ],
        &key,
        &req,
        500,
    )
    .await;
    assert!(ok >= 1);
    let v = app.wait_until_settled(&owner, &voucher_id).await;
    // Late requests are capped to what is left.
    let total = short_usage_total(&app, &owner, &voucher_id, ok).await;
    assert_eq!(micros(&v["spent"]), total);
    assert!(total <= 5_000, "{total}");
    app.store.verify_ledger().await.unwrap();
}

/// A funded voucher, its key and the current price, for tests that record usage rows straight
/// through the store.
struct Stored {
    owner: String,
    voucher_id: String,
    voucher: voucherd_store::vouchers::VoucherRow,
    account: voucherd_store::ledger::AccountRow,
    key_id: String,
    price: voucherd_store::prices::PriceRow,
}

impl Stored {
    async fn new(app: &TestApp) -> Stored {
        let (owner, voucher_id, _key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
        let keys = body(
            app.get(&format!("/api/v1/vouchers/{voucher_id}/keys"), &owner)
                .await,
        )
        .await;
        let key_id = keys["data"][0]["id"].as_str().unwrap().to_string();
        let (voucher, account) = app.store.voucher(voucher_id.clone()).await.unwrap();
        let price = app
            .store
            .current_prices(voucherd_store::now())
            .await
            .unwrap()
            .remove(0);
        Stored {
            owner,
            voucher_id,
            voucher,
            account,
            key_id,
            price,
        }
    }

    /// Opens lease `id` of `micros` on the voucher's account for an hour, as `instance-1`:
    /// its hold's id and the amount leased.
    async fn lease(&self, app: &TestApp, id: &str, micros: i64) -> (String, i64) {
        let far = voucherd_store::now() + chrono::Duration::hours(1);
        let (open, amount, _) = app
            .store
            .open_lease(
                id.into(),
                self.account.id.clone(),
                micros,
                micros,
                far,
                "instance-1".into(),
            )
            .await
            .unwrap();
        (open, amount)
    }

    /// The `n`th request's usage under `hold`, costing `cost` micros.
    fn row(&self, hold: &str, n: u32, cost: i64) -> voucherd_store::usage::UsageRow {
        voucherd_store::usage::UsageRow {
            id: uuid::Uuid::now_v7().to_string(),
            request_id: format!("{hold}-{n}"),
            voucher_id: self.voucher.id.clone(),
            api_key_id: self.key_id.clone().into(),
            model: self.price.model.clone(),
            price_id: self.price.id.clone(),
            input_per_million: self.price.input_per_million,
            cached_input_per_million: self.price.cached_input_per_million,
            output_per_million: self.price.output_per_million,
            prompt_tokens: 1,
            cached_prompt_tokens: 0,
            completion_tokens: 1,
            cost,
            hold_id: hold.to_string(),
            post_id: None,
            upstream_status: 200,
            created_at: voucherd_store::now(),
            overrun_micros: 0,
        }
    }
}

pub async fn spawn_leasing(backend: voucherd_store::Backend) -> TestApp {
    spawn_app_with(backend, |c| c.lease_max_age_ms = 200).await
}

#[tokio::test]
async fn usage_never_joins_a_closed_lease_and_a_lease_posts_exactly_its_usage() {
    for backend in [
        voucherd_store::Backend::Sqlite,
        voucherd_store::Backend::Postgres,
    ] {
        let app = spawn_app(backend).await;
        let stored = Stored::new(&app).await;
        let (owner, voucher_id) = (stored.owner.clone(), stored.voucher_id.clone());
        let account = &stored.account;
        let row = |hold: &str, n: u32, cost: i64| stored.row(hold, n, cost);
        // A lease of 1,000 micros: two requests' usage recorded, then closed.
        let (open, amount) = stored.lease(&app, "l1", 1_000).await;
        assert_eq!(amount, 1_000);
        app.store
            .record_usage(vec![row(&open, 1, 120), row(&open, 2, 300)], vec![], vec![])
            .await
            .unwrap();
        assert_eq!(
            app.store.unposted_usage(account.id.clone()).await.unwrap(),
            420
        );
        app.store.close_lease(open.clone()).await.unwrap();
        app.store.close_lease(open.clone()).await.unwrap(); // twice changes nothing
        let v = app.voucher(&owner, &voucher_id).await;
        assert_eq!(
            (v["spent"].as_str(), v["held"].as_str()),
            (Some("0.00042"), Some("0.00"))
        );
        // Nothing more joins the closed lease.
        let late = app
            .store
            .record_usage(vec![row(&open, 3, 50)], vec![], vec![])
            .await;
        assert!(
            matches!(late, Err(voucherd_store::StoreError::HoldResolved(_))),
            "{late:?}"
        );
        assert_eq!(app.voucher(&owner, &voucher_id).await["spent"], "0.00042");
        app.store.verify_ledger().await.unwrap();
    }
}

/// The durability rule under failure: the database refuses every usage row of one voucher, so
/// each group commit holding such a row fails whole. No request is answered whose usage was
/// not committed, and every request answered has its row: the other voucher's successes match
/// its rows one for one, the refused voucher has neither, and the money agrees.
async fn a_batch_that_fails_to_commit_fails_exactly_its_requests(app: TestApp) {
    let (owner_a, voucher_a, key_a) = app.funded_voucher("refused@widgets.co.uk", "100").await;
    let mut other_company = valid_application();
    other_company["company_number"] = serde_json::json!("07654321");
    let (owner_b, voucher_b, key_b) = app
        .funded_voucher_with("accepted@widgets.co.uk", "100", &other_company)
        .await;
    app.store
        .refuse_usage_for_tests(&voucher_a, true)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let key = if i % 2 == 0 { &key_a } else { &key_b }.clone();
        let (client, url) = (app.client.clone(), app.url("/v1/chat/completions"));
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(&key)
                .json(&chat_request())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (i % 2 == 0, status, body)
        }));
    }
    let (mut served_a, mut served_b, mut failed) = (0, 0, 0);
    for t in tasks {
        let (is_a, status, body) = t.await.unwrap();
        match status {
            200 if is_a => served_a += 1,
            200 => served_b += 1,
            _ => {
                // Failed as an unavailable service, OpenAI-shaped, with nothing billed.
                assert_eq!(status, 503, "{body}");
                assert_eq!(body["error"]["type"], "server_error", "{body}");
                failed += 1;
            }
        }
    }
    assert_eq!(served_a, 0, "no answer for usage that was never committed");
    assert_eq!(served_a + served_b + failed, 40);
    let rows = |token: String, id: String| {
        let app = &app;
        async move {
            let usage = body(
                app.get(&format!("/api/v1/vouchers/{id}/usage"), &token)
                    .await,
            )
            .await;
            usage["data"].as_array().unwrap().len()
        }
    };
    assert_eq!(rows(owner_a.clone(), voucher_a.clone()).await, 0);
    assert_eq!(rows(owner_b.clone(), voucher_b.clone()).await, served_b);
    let a = app.wait_until_settled(&owner_a, &voucher_a).await;
    let b = app.wait_until_settled(&owner_b, &voucher_b).await;
    assert_eq!(micros(&a["spent"]), 0);
    assert_eq!(micros(&b["spent"]), served_b as i64 * 5_580);

    // Once the database accepts the rows again, the refused voucher is served and billed.
    app.store
        .refuse_usage_for_tests(&voucher_a, false)
        .await
        .unwrap();
    let resp = app.chat(&key_a, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(rows(owner_a.clone(), voucher_a.clone()).await, 1);
    let a = app.wait_until_settled(&owner_a, &voucher_a).await;
    assert_eq!(micros(&a["spent"]), 5_580);
    app.store.verify_ledger().await.unwrap();
}

/// A batch of more rows than one SQLite INSERT can bind (1,700 rows of 20 values; SQLite takes
/// 32,766) is recorded whole: the lease's running total and the voucher's spent hold every
/// row, and a batch that cannot be recorded leaves none of its rows.
#[tokio::test]
async fn a_batch_larger_than_one_insert_is_recorded_whole() {
    use voucherd_store::usage::UsageRow;
    for backend in [
        voucherd_store::Backend::Sqlite,
        voucherd_store::Backend::Postgres,
    ] {
        let app = spawn_app(backend).await;
        let stored = Stored::new(&app).await;
        let (owner, voucher_id) = (stored.owner.clone(), stored.voucher_id.clone());
        let account = &stored.account;
        let row = |hold: &str, n: u32, cost: i64| stored.row(hold, n, cost);
        let (open, _) = stored.lease(&app, "big", 10_000).await;
        let rows: Vec<UsageRow> = (0..1_700).map(|n| row(&open, n, 3)).collect();
        app.store.record_usage(rows, vec![], vec![]).await.unwrap();
        assert_eq!(
            app.store.unposted_usage(account.id.clone()).await.unwrap(),
            5_100
        );
        // 1,050 new rows and, past the first INSERT's 1,024, one already recorded: refused
        // whole, so none of the new rows is kept.
        let mut again: Vec<UsageRow> = (2_000..3_050).map(|n| row(&open, n, 3)).collect();
        again.push(row(&open, 7, 3));
        assert!(app.store.record_usage(again, vec![], vec![]).await.is_err());
        assert_eq!(
            app.store.unposted_usage(account.id.clone()).await.unwrap(),
            5_100
        );
        app.store.close_lease(open.clone()).await.unwrap();
        let v = app.voucher(&owner, &voucher_id).await;
        assert_eq!(micros(&v["spent"]), 5_100);
        app.store.verify_ledger().await.unwrap();
    }
}
