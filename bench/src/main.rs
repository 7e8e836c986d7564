//! Tools for `bench/run.sh`: a fake provider fast enough not to be the bottleneck, set-up of
//! many vouchers and keys through the real API, and a client that opens many streams and
//! measures the delay between the chunks it receives.

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "voucherd-bench")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A fake OpenAI-compatible provider: instant JSON answers, or SSE streams of `chunks`
    /// chunks `chunk_delay_ms` apart.
    Upstream {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 20)]
        chunk_delay_ms: u64,
        #[arg(long, default_value_t = 50)]
        chunks: u32,
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// The project's stack with nothing of the product: actix-web receiving, the proxy's own
    /// upstream client forwarding to `upstream`, the answer relayed. What any proxy on this
    /// stack costs, measured beside nginx and voucherd in the same run.
    Passthrough {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        upstream: String,
        /// With `reqwest`: one client shared by every server worker (connections then cross
        /// threads), instead of one per worker.
        #[arg(long)]
        shared_client: bool,
        /// With `reqwest`: answers with a known length are relayed as a chunked stream
        /// instead of one write.
        #[arg(long)]
        chunked: bool,
        /// The upstream client: `voucherd` (the proxy's own: hyper, a pool per worker) or
        /// `reqwest` (the client the proxy used before, for comparison).
        #[arg(long, default_value = "voucherd")]
        client: String,
    },
    /// Creates `vouchers` applicants with approved vouchers and a key each; prints the keys.
    Setup {
        #[arg(long)]
        api: String,
        #[arg(long)]
        admin_email: String,
        #[arg(long)]
        admin_password: String,
        #[arg(long)]
        vouchers: u32,
        #[arg(long, default_value = "5000")]
        amount: String,
        /// The service's mail folder, where each applicant's confirmation code arrives.
        #[arg(long)]
        mail_dir: std::path::PathBuf,
    },
    /// The backend's own commit latency at one client: `n` one-row writes, each its own
    /// transaction, through the store (a pooled connection, as the proxy's writes); prints
    /// p50 and p99 in milliseconds.
    Commit {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 2000)]
        n: usize,
    },
    /// Opens `n` concurrent streaming requests and prints the p50 and p99 delay between
    /// received chunks, in milliseconds.
    Streams {
        #[arg(long)]
        url: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        n: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::Upstream {
            port,
            chunk_delay_ms,
            chunks,
            workers,
        } => rt.block_on(upstream(port, chunk_delay_ms, chunks, workers)),
        Cmd::Setup {
            api,
            admin_email,
            admin_password,
            vouchers,
            amount,
            mail_dir,
        } => rt.block_on(setup(
            &api,
            &admin_email,
            &admin_password,
            vouchers,
            &amount,
            &mail_dir,
        )),
        Cmd::Commit { database_url, n } => rt.block_on(commit(&database_url, n)),
        Cmd::Streams { url, key, n } => rt.block_on(streams(&url, &key, n)),
        Cmd::Passthrough {
            port,
            upstream,
            shared_client,
            chunked,
            client,
        } => match client.as_str() {
            "reqwest" => rt.block_on(passthrough(port, upstream, shared_client, chunked)),
            _ => rt.block_on(passthrough_voucherd(port, upstream)),
        },
    }
}

const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1764000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;

async fn upstream(
    port: u16,
    chunk_delay_ms: u64,
    chunks: u32,
    workers: usize,
) -> anyhow::Result<()> {
    HttpServer::new(move || {
        App::new().route(
            "/v1/chat/completions",
            web::post().to(move |body: web::Bytes| async move {
                let streaming = body.windows(13).any(|w| w == b"\"stream\":true");
                if !streaming {
                    return HttpResponse::Ok().content_type("application/json").body(ANSWER);
                }
                let chunk = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}"#;
                let events = futures_util::stream::unfold(0u32, move |i| async move {
                    if i > chunks + 1 {
                        return None;
                    }
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(chunk_delay_ms)).await;
                    }
                    let e = if i < chunks {
                        format!("{chunk}\n\n")
                    } else if i == chunks {
                        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":50,\"total_tokens\":62}}\n\ndata: [DONE]\n\n".to_string()
                    } else {
                        return None;
                    };
                    Some((Ok::<_, actix_web::Error>(web::Bytes::from(e)), i + 1))
                });
                HttpResponse::Ok().content_type("text/event-stream").streaming(events)
            }),
        )
    })
    .workers(workers)
    .backlog(4096)
    .max_connections(100_000)
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    Ok(())
}

async fn passthrough(
    port: u16,
    upstream: String,
    shared_client: bool,
    chunked: bool,
) -> anyhow::Result<()> {
    let client = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
    };
    let shared = client()?;
    HttpServer::new(move || {
        // A client per worker keeps each upstream connection on the thread that uses it.
        let client = if shared_client {
            shared.clone()
        } else {
            client().unwrap_or_else(|_| shared.clone())
        };
        let upstream = upstream.clone();
        App::new().default_service(web::to(
            move |req: actix_web::HttpRequest, body: web::Bytes| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let url = format!("{upstream}{}", req.path());
                    let sent = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let Ok(resp) = sent else {
                        return HttpResponse::BadGateway().finish();
                    };
                    let status = actix_web::http::StatusCode::from_u16(resp.status().as_u16())
                        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
                    let content_type = resp
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("application/json")
                        .to_string();
                    let mut answer = HttpResponse::build(status);
                    answer.content_type(content_type);
                    if resp.content_length().is_some() && !chunked {
                        match resp.bytes().await {
                            Ok(b) => answer.body(b),
                            Err(_) => HttpResponse::BadGateway().finish(),
                        }
                    } else {
                        answer.streaming(resp.bytes_stream())
                    }
                }
            },
        ))
    })
    .backlog(4096)
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    Ok(())
}

/// The proxy's own upstream client (hyper, one pool per worker), answers relayed whole.
async fn passthrough_voucherd(port: u16, upstream: String) -> anyhow::Result<()> {
    HttpServer::new(move || {
        let upstream = upstream.clone();
        App::new().default_service(web::to(
            move |req: actix_web::HttpRequest, body: web::Bytes| {
                let url = format!("{upstream}{}", req.path());
                async move {
                    let Ok(answer) = voucherd_api::proxy::upstream::post(&url, None, body).await
                    else {
                        return HttpResponse::BadGateway().finish();
                    };
                    let status = actix_web::http::StatusCode::from_u16(answer.status)
                        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
                    match answer.bytes().await {
                        Ok(b) => HttpResponse::build(status)
                            .content_type("application/json")
                            .body(b),
                        Err(_) => HttpResponse::BadGateway().finish(),
                    }
                }
            },
        ))
    })
    .backlog(4096)
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    Ok(())
}

async fn commit(database_url: &str, n: usize) -> anyhow::Result<()> {
    let store = voucherd_store::Store::connect(&voucherd_store::db::StoreConfig {
        database_url: database_url.to_string(),
        max_connections: 2,
        acquire_timeout_ms: 5_000,
    })?;
    let mut took = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let started = Instant::now();
        store
            .heartbeat("bench-commit-probe".into(), voucherd_store::now())
            .await?;
        took.push(started.elapsed());
    }
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    println!("{:.3} {:.3}", at(0.5), at(0.99));
    Ok(())
}

async fn post(
    c: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut r = c.post(&url).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: {status}: {v}");
    }
    Ok(v)
}

async fn setup(
    api: &str,
    admin_email: &str,
    admin_password: &str,
    vouchers: u32,
    amount: &str,
    mail_dir: &std::path::Path,
) -> anyhow::Result<()> {
    // Pooled connections are dropped before the server's keep-alive (5 s) closes them: set-up
    // waits seconds for mail, and a request sent on a connection the server is closing fails.
    let c = reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(1))
        .build()?;
    let login = |email: String, password: String| {
        let c = c.clone();
        let url = format!("{api}/api/v1/auth/login");
        async move {
            let v = post(&c, url, None, json!({"email": email, "password": password})).await?;
            v["access_token"]
                .as_str()
                .map(str::to_string)
                .context("no token")
        }
    };
    let admin = login(admin_email.into(), admin_password.into()).await?;
    post(
        &c,
        format!("{api}/api/v1/programme/deposits"),
        Some(&admin),
        json!({"amount": "900000000", "reference": "benchmark"}),
    )
    .await?;
    let password = "benchmark password".to_string();
    register(&c, api, vouchers, &password).await?;
    for i in 0..vouchers {
        let email = format!("sme{i}@bench.test");
        let code = mailed_code(mail_dir, &email).await?;
        let token = login(email, password.clone()).await?;
        post(
            &c,
            format!("{api}/api/v1/me/email-verification"),
            Some(&token),
            json!({"code": code}),
        )
        .await?;
        let app = post(&c, format!("{api}/api/v1/applications"), Some(&token), json!({
            "company_number": format!("{:08}", 10_000_001 + i), "company_name": "Bench Ltd", "employees": 5,
            "annual_turnover": "100000", "balance_sheet_total": "50000", "region": "london", "sic_code": "62012",
            "trading_since": "2020-01-01", "use_case": "Benchmarking the metering proxy.", "subsidy_declarations": []})).await?;
        let id = app["id"].as_str().context("no application id")?;
        let d = post(
            &c,
            format!("{api}/api/v1/applications/{id}/decision"),
            Some(&admin),
            json!({"decision": "approve", "amount": amount, "reason": "benchmark voucher"}),
        )
        .await?;
        let voucher = d["voucher"]["id"].as_str().context("no voucher")?;
        let key = post(
            &c,
            format!("{api}/api/v1/vouchers/{voucher}/keys"),
            Some(&token),
            json!({"name": "bench"}),
        )
        .await?;
        println!("{}", key["key"].as_str().context("no key")?);
    }
    Ok(())
}

/// Signs up `vouchers` applicants, `sme{i}@bench.test`, all with `password`.
async fn register(
    c: &reqwest::Client,
    api: &str,
    vouchers: u32,
    password: &str,
) -> anyhow::Result<()> {
    for i in 0..vouchers {
        post(
            c,
            format!("{api}/api/v1/auth/register"),
            None,
            json!({"email": format!("sme{i}@bench.test"), "password": password, "full_name": "Bench SME"}),
        )
        .await?;
    }
    Ok(())
}

/// The confirmation code mailed to `email`, from the mail folder the worker delivers to.
async fn mailed_code(dir: &std::path::Path, email: &str) -> anyhow::Result<String> {
    let to = format!("To: {email}");
    for _ in 0..600 {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                if !text.lines().any(|l| l == to) {
                    continue;
                }
                let code = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Subject: Your confirmation code is "));
                if let Some(code) = code {
                    return Ok(code.trim().to_string());
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("no confirmation code for {email} in {}", dir.display())
}

async fn streams(url: &str, key: &str, n: usize) -> anyhow::Result<()> {
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .build()?;
    let body = json!({"model": "bench-model", "stream": true, "max_completion_tokens": 64,
        "messages": [{"role": "user", "content": "Stream to me."}]});
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (c, url, key, body) = (c.clone(), url.to_string(), key.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let resp = c.post(url).bearer_auth(key).json(&body).send().await?;
            if !resp.status().is_success() {
                bail!("status {}", resp.status());
            }
            let mut s = resp.bytes_stream();
            let mut gaps = Vec::new();
            let mut last: Option<Instant> = None;
            while let Some(chunk) = s.next().await {
                chunk?;
                let now = Instant::now();
                if let Some(l) = last {
                    gaps.push(now.duration_since(l).as_secs_f64() * 1000.0);
                }
                last = Some(now);
            }
            Ok::<_, anyhow::Error>(gaps)
        }));
    }
    let mut all = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await? {
            Ok(g) => all.extend(g),
            Err(_) => failed += 1,
        }
    }
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!("{:.2} {:.2} {failed}", pct(0.5), pct(0.99));
    Ok(())
}
