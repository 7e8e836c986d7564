//! The published contract against the running server: schemathesis (tests/schema) generates
//! at least 50 requests for every operation of `openapi.yaml`, valid and invalid, signed in as
//! an administrator, and checks each answer: no server error, a documented status, a documented
//! content type, and a body that matches its documented schema. Run on both backends.

use crate::helpers::{spawn_app_with, TestApp};
use crate::stripe::{FakeStripe, SECRET_KEY, WEBHOOK_SECRET};
use std::process::Command;
use voucherd_store::Backend;

/// Operations left out: they end the session the run signs in with, so every later request
/// would only be refused (signing out, ending sessions, changing the password).
const LEFT_OUT: &str = "^/api/v1/(auth/logout|me/sessions|me/password)";

#[tokio::test]
async fn every_operation_answers_as_documented_on_sqlite() {
    every_operation_answers_as_documented(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_operation_answers_as_documented_on_postgres() {
    every_operation_answers_as_documented(Backend::Postgres).await;
}

async fn every_operation_answers_as_documented(backend: Backend) {
    // Payments configured (against the fake Stripe), so the webhook answers as in production
    // rather than "payments are not enabled".
    let stripe = FakeStripe::start();
    let app: TestApp = spawn_app_with(backend, |c| {
        c.stripe_secret_key = Some(SECRET_KEY.into());
        c.stripe_webhook_secret = Some(WEBHOOK_SECRET.into());
        c.stripe_api_base = Some(stripe.url.clone());
    })
    .await;
    let admin = app.admin().await;
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let base = app.address.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("st")
            // Its own working files (a `.schemathesis` folder) stay out of the checkout.
            .current_dir(std::env::temp_dir())
            .args([
                "run",
                spec,
                "--url",
                &base,
                "--header",
                &format!("Authorization: Bearer {admin}"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                "50",
                "--seed",
                "1",
                "--exclude-path-regex",
                LEFT_OUT,
                "--no-color",
                // Nothing kept between runs: each run is the same for the same seed.
                "--generation-database",
                "none",
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("schemathesis's `st` is needed: pip install -r tests/schema/requirements.txt");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" passed"), "{text}");
}
