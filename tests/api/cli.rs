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
