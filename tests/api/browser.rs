//! The pages in a real browser: Debian's Chromium, driven by tests/browser/walk.py
//! (Playwright), with axe-core checking every page of the walk for WCAG 2.2 A and AA. The
//! screenshots are left in `target/browser-screenshots/` for people to look at.

use crate::helpers::{spawn_app_with, PASSWORD};
use crate::stripe::{FakeStripe, SECRET_KEY, WEBHOOK_SECRET};
use crate::upstream::Reply;
use std::process::Command;

#[tokio::test]
async fn an_applicant_applies_an_admin_approves_and_a_metered_call_lowers_the_balance() {
    let root = env!("CARGO_MANIFEST_DIR");
    let axe = format!("{root}/tests/browser/node_modules/axe-core/axe.min.js");
    let missing = [
        (
            "/usr/bin/chromium",
            "apt-get install chromium chromium-driver",
        ),
        (axe.as_str(), "npm ci --prefix tests/browser"),
    ]
    .into_iter()
    .find(|(path, _)| !std::path::Path::new(path).exists());
    assert!(
        missing.is_none(),
        "the browser walk needs {missing:?} (scripts/test installs it)"
    );
    let mail_dir = std::env::temp_dir()
        .join(format!(
            "voucherd-walk-mail-{}",
            uuid::Uuid::new_v4().simple()
        ))
        .to_string_lossy()
        .into_owned();
    let walk_mail = mail_dir.clone();
    // Stripe sends the payer back to the service's own address, so the walk's server listens
    // on a port chosen now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stripe = FakeStripe::start();
    let stripe_url = stripe.url.clone();
    let app = spawn_app_with(voucherd_store::Backend::Sqlite, |c| {
        c.bind = format!("127.0.0.1:{port}");
        c.public_url = format!("http://127.0.0.1:{port}");
        c.payments_return_url = format!("http://127.0.0.1:{port}/");
        c.stripe_secret_key = Some(SECRET_KEY.into());
        c.stripe_webhook_secret = Some(WEBHOOK_SECRET.into());
        c.stripe_api_base = Some(stripe_url);
        // The walk reaches the service over plain HTTP on loopback.
        c.cookie_secure = false;
        // The walk reads its confirmation code and reset link from the mail folder: the
        // worker delivers the outbox there every second.
        c.mail_dir = walk_mail;
        c.scheduler = true;
        c.jobs.insert("outbox".into(), "* * * * * *".into());
    })
    .await;
    stripe.deliver_webhooks_to(&app.url("/webhooks/stripe"));
    app.upstream.set_reply(Reply {
        prompt_tokens: 40,
        cached_tokens: 0,
        completion_tokens: 30,
        ..Reply::default()
    });
    app.user_with_role("walk-admin@example.com", "admin").await;
    app.user_with_role("walk-adviser@example.com", "adviser")
        .await;
    app.user_with_role("walk-assessor@example.com", "assessor")
        .await;
    let shots = format!("{root}/target/browser-screenshots");
    let base = app.address.clone();
    let stripe_base = stripe.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(format!("{root}/tests/browser/walk.py"))
            .args([
                &base,
                "walk-admin@example.com",
                PASSWORD,
                &shots,
                "walk-adviser@example.com",
                "walk-assessor@example.com",
                &mail_dir,
                &stripe_base,
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser walk failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("0 accessibility violations"), "{stdout}");
}
