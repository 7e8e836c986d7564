//! Real `voucherd proxy` child processes: one killed with SIGKILL under load (its holds void at
//! their timeout, the ledger still balances, a restarted process serves again), and two spending
//! one voucher at once (no overspend, exactly one usage row per answer, a revocation honoured by
//! both).

use crate::helpers::*;
use crate::upstream::Reply;
use futures_util::StreamExt;
use serde_json::json;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use voucherd_store::Backend;

const BIN: &str = env!("CARGO_BIN_EXE_voucherd");

/// Starts `voucherd proxy` on `app`'s database and upstream, with short timeouts; returns it
/// and its address.
fn start_proxy(app: &TestApp, dir: &std::path::Path) -> (Child, String) {
    start_proxy_with(
        app,
        dir,
        "upstream_timeout_ms = 500\nhold_timeout_ms = 2000\nstream_max_ms = 1000\nlease_max_age_ms = 1000\n",
    )
}

/// Starts `voucherd proxy` with `settings` as its configuration file.
fn start_proxy_with(app: &TestApp, dir: &std::path::Path, settings: &str) -> (Child, String) {
    let config = dir.join("voucherd.toml");
    std::fs::write(&config, settings).unwrap();
    let mut child = Command::new(BIN)
        .arg("proxy")
        .env("VOUCHERD_CONFIG", &config)
        .env("DATABASE_URL", &app.database_url)
        .env("VOUCHERD_BIND", "127.0.0.1:0")
        .env("VOUCHERD_UPSTREAM_URL", &app.upstream.url)
        .env("VOUCHERD_UPSTREAM_API_KEY", crate::upstream::UPSTREAM_KEY)
        .env("VOUCHERD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let port = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the proxy starts");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["fields"]["message"] == "voucherd listening" {
            break v["fields"]["port"].as_u64().unwrap();
        }
    };
    (child, format!("http://127.0.0.1:{port}"))
}

/// The scheduler on, resolving timed-out holds every second.
fn sweeping_holds_every_second(c: &mut voucherd::config::Config) {
    c.scheduler = true;
    c.jobs.insert("hold-timeouts".into(), "* * * * * *".into());
}

#[tokio::test]
async fn a_killed_proxys_holds_void_at_their_timeout_and_a_restarted_one_serves() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = spawn_app_with(backend, sweeping_holds_every_second).await;
        let dir =
            std::env::temp_dir().join(format!("voucherd-crash-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
        let (mut proxy, base) = start_proxy(&app, &dir);

        // Three requests served (their usage recorded under the proxy's lease), then five in
        // flight: the provider stalls mid-stream.
        for _ in 0..3 {
            let resp = app
                .client
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&chat_request())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
        }
        app.upstream.set_reply(Reply {
            stall_after: Some(2),
            ..Reply::default()
        });
        let mut req = chat_request();
        req["stream"] = json!(true);
        let mut streams = Vec::new();
        for _ in 0..5 {
            let resp = app
                .client
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&req)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            let mut s = resp.bytes_stream();
            s.next().await.unwrap().unwrap();
            streams.push(s);
        }
        let held = app.voucher(&owner, &voucher_id).await["held"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(held, "0.00", "money is held for the requests in flight");

        proxy.kill().unwrap();
        proxy.wait().unwrap();
        drop(streams);

        // The lease times out (hold, stream and lease allowances: 4 s); the sweeper posts the
        // usage recorded under it — three requests — and releases the rest.
        let mut v = serde_json::Value::Null;
        for _ in 0..300 {
            v = app.voucher(&owner, &voucher_id).await;
            if v["held"] == "0.00" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            (
                v["held"].as_str(),
                v["spent"].as_str(),
                v["available"].as_str()
            ),
            (Some("0.00"), Some("0.01674"), Some("99.98326"))
        );
        app.store.verify_ledger().await.unwrap();

        let (mut again, base) = start_proxy(&app, &dir);
        app.upstream.set_reply(Reply::default());
        let resp = app
            .client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_request())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        // Once the restarted proxy's lease closes: one more request.
        let mut spent = serde_json::Value::Null;
        for _ in 0..200 {
            let v = app.voucher(&owner, &voucher_id).await;
            spent = v["spent"].clone();
            if v["held"] == "0.00" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(spent, "0.02232");
        again.kill().unwrap();
        again.wait().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// With every timeout at its default (holds 5 minutes, streams 10 minutes), a proxy killed
/// with SIGKILL mid-stream leaves its leases for no longer than its heartbeat's staleness and
/// the hold-timeouts job's period: the voucher's `held` is back to 0 within 30 s, the three
/// answers its clients received in full are billed once each, and the ledger balances.
#[tokio::test]
async fn a_killed_proxys_leases_are_settled_within_seconds_of_its_last_heartbeat() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = spawn_app_with(backend, |c| c.scheduler = true).await;
        let dir =
            std::env::temp_dir().join(format!("voucherd-beat-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
        let (mut proxy, base) = start_proxy_with(&app, &dir, "");
        for _ in 0..3 {
            let resp = app
                .client
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&chat_request())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            resp.bytes().await.unwrap();
        }
        app.upstream.set_reply(Reply {
            stall_after: Some(2),
            ..Reply::default()
        });
        let mut req = chat_request();
        req["stream"] = json!(true);
        let mut streams = Vec::new();
        for _ in 0..3 {
            let resp = app
                .client
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&req)
                .send()
                .await
                .unwrap();
            let mut s = resp.bytes_stream();
            s.next().await.unwrap().unwrap();
            streams.push(s);
        }
        assert_ne!(app.voucher(&owner, &voucher_id).await["held"], "0.00");

        proxy.kill().unwrap();
        proxy.wait().unwrap();
        let killed = std::time::Instant::now();
        drop(streams);
        let mut v = serde_json::Value::Null;
        while killed.elapsed() < std::time::Duration::from_secs(30) {
            v = app.voucher(&owner, &voucher_id).await;
            if v["held"] == "0.00" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(
            (v["held"].as_str(), v["spent"].as_str()),
            (Some("0.00"), Some("0.01674")),
            "{backend:?}: held back to 0 within 30 s of the kill, three answers billed"
        );
        app.store.verify_ledger().await.unwrap();

        // A new process is a new instance: it opens leases of its own and serves.
        let (mut again, base) = start_proxy_with(&app, &dir, "");
        app.upstream.set_reply(Reply::default());
        let resp = app
            .client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_request())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        again.kill().unwrap();
        again.wait().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test]
async fn two_proxy_processes_spending_one_voucher_never_overspend_and_both_honour_a_revocation() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = spawn_app_with(backend, sweeping_holds_every_second).await;
        let dir =
            std::env::temp_dir().join(format!("voucherd-pair-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        // Worth 0.005: a few dozen of the requests below at most.
        let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "0.005").await;
        app.upstream.set_reply(Reply {
            prompt_tokens: 40,
            cached_tokens: 0,
            completion_tokens: 100,
            ..Reply::default()
        });
        let (mut first, first_url) = start_proxy(&app, &dir);
        let (mut second, second_url) = start_proxy(&app, &dir);
        let urls = [
            format!("{first_url}/v1/chat/completions"),
            format!("{second_url}/v1/chat/completions"),
        ];
        let ok = fire(&app, &urls, &key, &short_chat_request(Some(100)), 500).await;
        assert!(ok >= 1, "{backend:?}: some requests were served");

        let v = app.wait_until_settled(&owner, &voucher_id).await;
        let total = short_usage_total(&app, &owner, &voucher_id, ok).await;
        let spent = voucherd_domain::Money::parse(v["spent"].as_str().unwrap())
            .unwrap()
            .micros();
        let available = voucherd_domain::Money::parse(v["available"].as_str().unwrap())
            .unwrap()
            .micros();
        assert_eq!(spent, total, "{backend:?}: one posted cost per usage row");
        assert!(total <= 5_000, "{backend:?}: spent {total} of 5,000");
        assert_eq!(available, 5_000 - total);
        app.store.verify_ledger().await.unwrap();

        // Revoked through the API: both processes refuse the key once their cache lapses.
        let key_id = app.first_key_id(&owner, &voucher_id).await;
        let resp = app.revoke_key(&owner, &key_id).await;
        assert_eq!(resp.status().as_u16(), 204);
        for url in &urls {
            let mut answer = (0, serde_json::Value::Null);
            for _ in 0..100 {
                let resp = app
                    .client
                    .post(url)
                    .bearer_auth(&key)
                    .json(&short_chat_request(Some(100)))
                    .send()
                    .await
                    .unwrap();
                answer = (resp.status().as_u16(), body(resp).await);
                if answer.0 == 401 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert_eq!(answer.0, 401, "{backend:?} {url}: {}", answer.1);
            assert_eq!(answer.1["error"]["code"], "invalid_api_key");
        }

        for child in [&mut first, &mut second] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
