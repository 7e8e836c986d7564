//! The binary's own commands, run as a real child process.

use crate::helpers::*;
use std::io::Write;
use std::process::{Command, Stdio};
use voucherd_store::testing::TestDatabase;
use voucherd_store::Backend;

const BIN: &str = env!("CARGO_BIN_EXE_voucherd");

#[tokio::test]
async fn create_admin_reads_the_password_from_stdin_and_the_admin_can_sign_in() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = spawn_app(backend).await;
        let mut child = Command::new(BIN)
            .args(["create-admin", "--email", "Chief@Programme.gov.uk"])
            .env("DATABASE_URL", &app.database_url)
            .env_remove("VOUCHERD_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = app.token("chief@programme.gov.uk").await;
        assert_eq!(
            body(app.get("/api/v1/me", &token).await).await["role"],
            "admin"
        );
        assert_eq!(
            app.get("/api/v1/programme", &token).await.status().as_u16(),
            200
        );
    }
}

#[test]
fn a_short_admin_password_is_refused() {
    let db = TestDatabase::create(Backend::Sqlite).unwrap();
    let mut child = Command::new(BIN)
        .args(["create-admin", "--email", "a@b.gov.uk"])
        .env("DATABASE_URL", &db.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));
}

#[test]
fn serve_refuses_to_start_without_a_strong_secret_outside_dev_mode() {
    let db = TestDatabase::create(Backend::Sqlite).unwrap();
    for secret in [None, Some("password123")] {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("VOUCHERD_BIND", "127.0.0.1:0")
            .env_remove("VOUCHERD_DEV")
            .env_remove("VOUCHERD_JWT_SECRET");
        if let Some(s) = secret {
            cmd.env("VOUCHERD_JWT_SECRET", s);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("VOUCHERD_JWT_SECRET"),
            "{secret:?}"
        );
    }
}

#[test]
fn help_explains_each_command() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "migrate", "create-admin"] {
        assert!(text.contains(cmd), "{text}");
    }
}

/// Reads the child's stderr lines on a thread, so the test can wait for a line with a bound.
fn lines_of(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(
    rx: &std::sync::mpsc::Receiver<String>,
    what: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the expected log line");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if what(&v) {
                return v;
            }
        } else {
            panic!("not a JSON log line: {line}");
        }
    }
}

#[tokio::test]
async fn json_logs_name_the_request_id_of_every_request() {
    let db = TestDatabase::create(Backend::Sqlite).unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("VOUCHERD_BIND", "127.0.0.1:0")
        .env(
            "VOUCHERD_JWT_SECRET",
            "log-test-secret-0123456789abcdefghijklmnop",
        )
        .env("VOUCHERD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(child.stderr.take().unwrap());
    let listening = wait_for(&rx, |v| v["fields"]["message"] == "voucherd listening");
    let port = listening["fields"]["port"].as_u64().unwrap();
    let resp = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .header("x-request-id", "log-check-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let finished = wait_for(&rx, |v| v["fields"]["message"] == "request finished");
    assert_eq!(finished["span"]["request_id"], "log-check-1");
    assert_eq!(finished["fields"]["status"], 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn serve_demo_seeds_a_programme_whose_printed_key_works_against_the_sandbox() {
    let db = TestDatabase::create(Backend::Sqlite).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--demo"])
        .env("DATABASE_URL", &db.url)
        .env("VOUCHERD_BIND", "127.0.0.1:0")
        .env("VOUCHERD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("VOUCHERD_JWT_SECRET")
        .env_remove("VOUCHERD_UPSTREAM_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(child.stderr.take().unwrap());
    let seeded = wait_for(&rx, |v| {
        v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("demo programme seeded"))
    });
    let f = &seeded["fields"];
    let base = f["url"].as_str().unwrap().to_string();
    let key = f["api_key"].as_str().unwrap().to_string();
    let (email, password) = f["applicant"].as_str().unwrap().split_once(" / ").unwrap();
    let c = reqwest::Client::new();
    let resp = c
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert!(answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("This is a sandbox reply"));
    let login: serde_json::Value = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap();
    let voucher: serde_json::Value = c
        .get(format!(
            "{base}/api/v1/vouchers/{}",
            f["voucher_id"].as_str().unwrap()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(voucher["granted"], "5000.00");
    assert_ne!(voucher["spent"], "0.00", "the demo call was metered");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The official `openai` Python SDK against a real `voucherd serve --demo` (tests/sdk).
#[test]
fn the_official_openai_python_sdk_works_unmodified() {
    let root = env!("CARGO_MANIFEST_DIR");
    let probe = Command::new("python3")
        .args(["-c", "import openai, pytest"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "python3 with the openai and pytest packages is needed: pip install -r tests/sdk/requirements.txt"
    );
    let out = Command::new("python3")
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            &format!("{root}/tests/sdk"),
        ])
        .env("VOUCHERD_BIN", BIN)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("5 passed"), "{text}");
}

/// A configuration file with `text`, in a folder of its own.
fn config_file(text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("voucherd-cfg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("voucherd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn worker_list_shows_each_job_its_schedule_and_next_run() {
    let db = TestDatabase::create(Backend::Sqlite).unwrap();
    let config = config_file("[jobs]\nreconciliation = \"0 0 4 * * *\"\n");
    let out = Command::new(BIN)
        .args(["worker", "--list"])
        .env("DATABASE_URL", &db.url)
        .env("VOUCHERD_CONFIG", &config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for job in voucherd_worker::Job::ALL {
        assert!(
            stdout.contains(job.name()),
            "{job:?} missing from\n{stdout}"
        );
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("reconciliation"))
        .unwrap();
    assert!(line.contains("0 0 4 * * *"), "{line}");
    assert!(
        line.contains(" 04:00:00"),
        "the next run at 04:00 UTC: {line}"
    );
}

#[test]
fn worker_run_once_runs_a_job_now_and_records_it() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDatabase::create(backend).unwrap();
        let config = config_file("");
        let out = Command::new(BIN)
            .args(["worker", "--run-once", "reconciliation"])
            .env("DATABASE_URL", &db.url)
            .env("VOUCHERD_CONFIG", &config)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with("reconciliation succeeded: ")
                && stdout.contains("\"balanced\":true"),
            "{stdout}"
        );
        let out = Command::new(BIN)
            .args(["worker", "--run-once", "make-coffee"])
            .env("DATABASE_URL", &db.url)
            .env("VOUCHERD_CONFIG", &config)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("unknown job \"make-coffee\""));
    }
}

#[test]
fn a_bad_cron_expression_stops_start_up_naming_the_job() {
    let db = TestDatabase::create(Backend::Sqlite).unwrap();
    let config = config_file("[jobs]\nvoucher-expiry = \"every night at two\"\n");
    for args in [&["worker"][..], &["serve", "--dev"][..]] {
        let out = Command::new(BIN)
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("VOUCHERD_CONFIG", &config)
            .env("VOUCHERD_BIND", "127.0.0.1:0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("job voucher-expiry: bad cron expression \"every night at two\""),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn report_makes_a_report_on_demand_showing_progress_and_once_per_period() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDatabase::create(backend).unwrap();
        let config = config_file("");
        let run = || {
            Command::new(BIN)
                .args([
                    "report",
                    "--kind",
                    "semi-annual",
                    "--from",
                    "2026-04-01",
                    "--to",
                    "2026-09-30",
                ])
                .env("DATABASE_URL", &db.url)
                .env("VOUCHERD_CONFIG", &config)
                .output()
                .unwrap()
        };
        let out = run();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stderr}");
        for step in [
            "reading this period",
            "computing figures",
            "rendering",
            "saving",
            "done in",
        ] {
            assert!(stderr.contains(step), "{step} missing from {stderr}");
        }
        assert!(
            stdout.starts_with("report ")
                && stdout.contains("(semi_annual 2026-04-01 to 2026-09-30), sha256 "),
            "{stdout}"
        );
        let again = run();
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
        let bad = Command::new(BIN)
            .args([
                "report",
                "--kind",
                "weekly",
                "--from",
                "2026-04-01",
                "--to",
                "2026-09-30",
            ])
            .env("DATABASE_URL", &db.url)
            .env("VOUCHERD_CONFIG", &config)
            .output()
            .unwrap();
        assert!(!bad.status.success());
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("--kind must be monthly or semi-annual")
        );
    }
}
