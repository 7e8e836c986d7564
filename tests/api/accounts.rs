//! Accounts a government service can ship: sign-in throttled per account and per address,
//! server-side sessions ended by signing out (on every instance), a password change, a role
//! change or a disabled account; verified email addresses before applying; single-use password
//! reset links; staff invited by administrators; private metrics.

use crate::helpers::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use voucherd_store::Backend;
use voucherd_worker::ManualClock;

on_both_backends!(
    backend:
    sign_in_is_throttled_per_account_and_per_address_and_works_after_the_window,
    signing_out_ends_the_session_here_and_on_another_instance,
    a_password_change_a_role_change_and_disabling_end_sessions_at_once,
    an_unverified_account_may_not_apply_until_its_code_or_link_comes_back,
    a_reset_link_works_once_expires_and_reveals_nothing,
    administrators_invite_staff_change_roles_and_disable_accounts,
    metrics_need_the_configured_token,
);

async fn problem_with_retry(resp: reqwest::Response) -> u64 {
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let p = body(resp).await;
    assert_eq!(p["code"], "too_many_attempts");
    retry
}

async fn sign_in_is_throttled_per_account_and_per_address_and_works_after_the_window(
    backend: Backend,
) {
    let clock = Arc::new(ManualClock::new(voucherd_store::now()));
    let app = spawn_with_clock(
        backend,
        voucherd::Role::All,
        |c| {
            c.sign_in_attempts_per_account = 3;
            c.sign_in_account_window_secs = 300;
            c.sign_in_attempts_per_address = 8;
            c.sign_in_address_window_secs = 80;
        },
        clock.clone(),
    )
    .await;
    // The helper signs in once: one attempt of the account's three and the address's eight.
    app.user_with_role("staff@programme.gov.uk", "admin").await;
    let email = "staff@programme.gov.uk";
    for _ in 0..2 {
        assert_problem(
            app.login(email, "wrong password").await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    // The fourth is refused before any password is checked, the right one too, for 100 s.
    assert_eq!(
        problem_with_retry(app.login(email, "wrong password").await).await,
        100
    );
    assert_eq!(
        problem_with_retry(app.login(email, PASSWORD).await).await,
        100
    );
    // Unknown emails get the same answers as known ones.
    let unknown = "nobody@programme.gov.uk";
    assert_problem(app.login(unknown, "x").await, 401, "invalid_credentials").await;
    assert_problem(app.login(unknown, "x").await, 401, "invalid_credentials").await;
    // Seven attempts from this address so far, refused ones included: one more, whichever
    // account it names, then the address waits its 10 s.
    assert_problem(
        app.login("third@programme.gov.uk", "x").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        problem_with_retry(app.login("fourth@programme.gov.uk", "x").await).await,
        10
    );

    // After the window the right password works again.
    clock.advance(chrono::Duration::seconds(100));
    let resp = app.login(email, PASSWORD).await;
    assert_eq!(resp.status().as_u16(), 200);

    // The sign-in page says so, with Retry-After, and keeps the email.
    clock.advance(chrono::Duration::seconds(300));
    for _ in 0..3 {
        let (_, resp) = Browser::try_sign_in(&app, email, "wrong password", "").await;
        assert_eq!(resp.status().as_u16(), 422);
    }
    let (_, resp) = Browser::try_sign_in(&app, email, "wrong password", "").await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "100");
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("You have tried to sign in too many times. Wait 2 minutes"),
        "{html}"
    );
}

async fn signing_out_ends_the_session_here_and_on_another_instance(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.applicant("owner@widgets.co.uk").await;
    let other = another_instance(&app, voucherd::Role::Api, |_| {});
    let on_other = |t: String| {
        let url = format!("{}/api/v1/me", other.address);
        let client = app.client.clone();
        async move {
            client
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(app.get("/api/v1/me", &token).await.status().as_u16(), 200);
    assert_eq!(on_other(token.clone()).await, 200);

    let resp = app.post("/api/v1/auth/logout", &token, &json!({})).await;
    assert_eq!(resp.status().as_u16(), 204);
    // Here at once.
    assert_problem(app.get("/api/v1/me", &token).await, 401, "unauthenticated").await;
    // There within its session cache's second: wait for it, up to a generous bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    while on_other(token.clone()).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the other instance still accepts the token"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Signing out again with the ended token is refused; a new sign-in works.
    assert_problem(
        app.post("/api/v1/auth/logout", &token, &json!({})).await,
        401,
        "unauthenticated",
    )
    .await;
    let again = app.token("owner@widgets.co.uk").await;
    assert_eq!(app.get("/api/v1/me", &again).await.status().as_u16(), 200);

    // The pages: after signing out, the old cookie opens nothing.
    let mut browser = Browser::sign_in(&app, "owner@widgets.co.uk").await;
    assert_eq!(browser.get(&app, "/portal").await.status().as_u16(), 200);
    let old_cookies = browser.header();
    let csrf = browser.csrf();
    let resp = browser.post(&app, "/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(resp.status().as_u16(), 303);
    let resp = app
        .client
        .get(app.url("/portal"))
        .header(reqwest::header::COOKIE, old_cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert!(resp.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/sign-in"));
}

async fn a_password_change_a_role_change_and_disabling_end_sessions_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let owner = app.applicant("owner@widgets.co.uk").await;
    let second = app.token("owner@widgets.co.uk").await;

    // A wrong current password changes nothing.
    let resp = app
        .post(
            "/api/v1/me/password",
            &owner,
            &json!({"current_password": "not it", "new_password": "a brand new passphrase"}),
        )
        .await;
    let p = assert_problem(resp, 422, "validation_failed").await;
    assert_eq!(fields(&p), vec!["current_password"]);
    let resp = app
        .post(
            "/api/v1/me/password",
            &owner,
            &json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    let p = assert_problem(resp, 422, "validation_failed").await;
    assert_eq!(fields(&p), vec!["new_password"]);
    assert_eq!(app.get("/api/v1/me", &second).await.status().as_u16(), 200);

    let resp = app
        .post(
            "/api/v1/me/password",
            &owner,
            &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 204);
    for t in [&owner, &second] {
        assert_problem(app.get("/api/v1/me", t).await, 401, "unauthenticated").await;
    }
    assert_problem(
        app.login("owner@widgets.co.uk", PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        app.login("owner@widgets.co.uk", "a brand new passphrase")
            .await
            .status()
            .as_u16(),
        200
    );

    // A role change applies at once: the old token is gone, the new one carries the role.
    let assessor = app.user_with_role("one@assess.gov.uk", "assessor").await;
    let id = body(app.get("/api/v1/me", &assessor).await).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.get("/api/v1/assessments", &assessor)
            .await
            .status()
            .as_u16(),
        200
    );
    let resp = app
        .client
        .put(app.url(&format!("/api/v1/users/{id}/role")))
        .bearer_auth(&admin)
        .json(&json!({"role": "adviser", "reason": "moved to the consulting team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["role"], "adviser");
    assert_problem(
        app.get("/api/v1/assessments", &assessor).await,
        401,
        "unauthenticated",
    )
    .await;
    let adviser = app.token("one@assess.gov.uk").await;
    assert_problem(
        app.get("/api/v1/assessments", &adviser).await,
        403,
        "forbidden",
    )
    .await;

    // Disabled: the session ends and signing in is refused like a wrong password.
    let resp = app
        .post(
            &format!("/api/v1/users/{id}/disablement"),
            &admin,
            &json!({"reason": "left the programme"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["status"], "disabled");
    assert_problem(
        app.get("/api/v1/me", &adviser).await,
        401,
        "unauthenticated",
    )
    .await;
    assert_problem(
        app.login("one@assess.gov.uk", PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    let resp = app
        .post(
            &format!("/api/v1/users/{id}/enablement"),
            &admin,
            &json!({"reason": "rejoined"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        app.login("one@assess.gov.uk", PASSWORD)
            .await
            .status()
            .as_u16(),
        200
    );
}

async fn an_unverified_account_may_not_apply_until_its_code_or_link_comes_back(backend: Backend) {
    let app = spawn_app(backend).await;
    // An address without a real domain is a typo, refused by name.
    let p = assert_problem(app.register("typo@gmial").await, 422, "validation_failed").await;
    assert_eq!(fields(&p), vec!["email"]);
    let email = "new@widgets.co.uk";
    let resp = app.register(email).await;
    assert_eq!(resp.status().as_u16(), 201);
    let user = body(resp).await;
    assert_eq!(user["email_verified"], false);
    let token = app.token(email).await;
    assert_problem(
        app.apply(&token, &valid_application()).await,
        403,
        "email_unverified",
    )
    .await;
    assert_eq!(app.applications_count(&app.admin().await).await, 0);

    // Wrong codes count; a malformed one is a field error.
    let p = assert_problem(
        app.post(
            "/api/v1/me/email-verification",
            &token,
            &json!({"code": "12ab"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), vec!["code"]);
    let code = app.mailed(email, "verify_email").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_problem(
            app.post(
                "/api/v1/me/email-verification",
                &token,
                &json!({"code": wrong}),
            )
            .await,
            400,
            "wrong_code",
        )
        .await;
    }
    // Five wrong: even the right code needs a new one now.
    assert_problem(
        app.post(
            "/api/v1/me/email-verification",
            &token,
            &json!({"code": code}),
        )
        .await,
        409,
        "too_many_attempts",
    )
    .await;
    let resp = app
        .post("/api/v1/me/verification-email", &token, &json!({}))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let mail = app.mailed(email, "verify_email").await;
    let new_code = mail["code"].as_str().unwrap().to_string();
    // The link of the newer email; the first link no longer works once replaced.
    let link = mail["link"].as_str().unwrap().to_string();
    assert!(
        link.starts_with("http://127.0.0.1:8080/verify-email?token="),
        "{link}"
    );
    let resp = app
        .post(
            "/api/v1/me/email-verification",
            &token,
            &json!({"code": new_code}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["email_verified"], true);
    // The same session may apply at once.
    assert_eq!(
        app.apply(&token, &valid_application())
            .await
            .status()
            .as_u16(),
        201
    );
    // The link was used up by the code (one verification); it answers as used.
    let secret = link.rsplit('=').next().unwrap();
    let resp = app
        .client
        .post(app.url("/api/v1/auth/email-verification"))
        .json(&json!({"token": secret}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, "invalid_token").await;

    // By link alone, signed out, on another account.
    let other = "link@widgets.co.uk";
    assert_eq!(app.register(other).await.status().as_u16(), 201);
    let link = app.mailed(other, "verify_email").await["link"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = link.rsplit('=').next().unwrap().to_string();
    let verify = || async {
        app.client
            .post(app.url("/api/v1/auth/email-verification"))
            .json(&json!({"token": secret}))
            .send()
            .await
            .unwrap()
    };
    let resp = verify().await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body(resp).await["email_verified"], true);
    assert_problem(verify().await, 400, "invalid_token").await;
}

async fn reset_request(app: &TestApp, email: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/password-reset-request"))
        .json(&json!({"email": email}))
        .send()
        .await
        .unwrap()
}

async fn reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/password-reset"))
        .json(&json!({"token": token, "password": password}))
        .send()
        .await
        .unwrap()
}

/// The reset link's token from the newest reset email, waiting for the email (it is written
/// after the answer).
async fn reset_token(app: &TestApp, email: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = app.store.outbox(Some(email.into()), 10).await.unwrap();
        if let Some(r) = rows.iter().find(|r| r.template == "password_reset") {
            let data: Value = serde_json::from_str(&r.data).unwrap();
            let link = data["link"].as_str().unwrap();
            return link.rsplit('=').next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no reset email to {email}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_reset_link_works_once_expires_and_reveals_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "owner@widgets.co.uk";
    let old_session = app.applicant(email).await;

    let known = reset_request(&app, email).await;
    assert_eq!(known.status().as_u16(), 202);
    let known = body(known).await;
    let unknown = reset_request(&app, "nobody@widgets.co.uk").await;
    assert_eq!(unknown.status().as_u16(), 202);
    assert_eq!(body(unknown).await, known);

    let token = reset_token(&app, email).await;
    let p = assert_problem(reset(&app, &token, "short").await, 422, "validation_failed").await;
    assert_eq!(fields(&p), vec!["password"]);
    assert_eq!(
        reset(&app, &token, "a brand new passphrase")
            .await
            .status()
            .as_u16(),
        204
    );
    // Used once: the second time is refused, and the password stays the first one set.
    assert_problem(
        reset(&app, &token, "another new passphrase").await,
        400,
        "invalid_token",
    )
    .await;
    assert_problem(
        app.get("/api/v1/me", &old_session).await,
        401,
        "unauthenticated",
    )
    .await;
    assert_eq!(
        app.login(email, "a brand new passphrase")
            .await
            .status()
            .as_u16(),
        200
    );
    assert_problem(app.login(email, PASSWORD).await, 401, "invalid_credentials").await;
    // Nothing was mailed to the unknown address.
    assert!(app
        .store
        .outbox(Some("nobody@widgets.co.uk".into()), 10)
        .await
        .unwrap()
        .is_empty());

    // A link past its time is refused and changes nothing.
    let expiring = spawn_app_with(backend, |c| c.password_reset_valid_minutes = 0).await;
    expiring.applicant(email).await;
    assert_eq!(reset_request(&expiring, email).await.status().as_u16(), 202);
    let token = reset_token(&expiring, email).await;
    assert_problem(
        reset(&expiring, &token, "a brand new passphrase").await,
        400,
        "invalid_token",
    )
    .await;
    assert_eq!(expiring.login(email, PASSWORD).await.status().as_u16(), 200);
}

async fn administrators_invite_staff_change_roles_and_disable_accounts(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let admin_id = body(app.get("/api/v1/me", &admin).await).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let owner = app.applicant("owner@widgets.co.uk").await;

    let invitation =
        json!({"email": "Grace@Assess.gov.uk", "full_name": "Grace Hopper", "role": "assessor"});
    assert_problem(
        app.post("/api/v1/users", &owner, &invitation).await,
        403,
        "forbidden",
    )
    .await;
    let p = assert_problem(
        app.post(
            "/api/v1/users",
            &admin,
            &json!({"email": "x@assess.gov.uk", "full_name": "X", "role": "applicant"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), vec!["role"]);
    let resp = app.post("/api/v1/users", &admin, &invitation).await;
    assert_eq!(resp.status().as_u16(), 201);
    let invited = body(resp).await;
    assert_eq!(invited["status"], "invited");
    assert_eq!(invited["role"], "assessor");
    assert_eq!(invited["email"], "grace@assess.gov.uk");
    let id = invited["id"].as_str().unwrap().to_string();
    // Invited, no password yet: signing in fails like any wrong password.
    assert_problem(
        app.login("grace@assess.gov.uk", "anything at all").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_problem(
        app.post("/api/v1/users", &admin, &invitation).await,
        409,
        "email_taken",
    )
    .await;

    let mail = app
        .mailed("grace@assess.gov.uk", "account_invitation")
        .await;
    assert_eq!(mail["role_name"], "an assessor");
    let secret = mail["link"]
        .as_str()
        .unwrap()
        .rsplit('=')
        .next()
        .unwrap()
        .to_string();
    let accept = |password: &'static str| {
        let secret = secret.clone();
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/auth/invitation-acceptance"))
                .json(&json!({"token": secret, "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    let resp = accept("grace's long passphrase").await;
    assert_eq!(resp.status().as_u16(), 200);
    let accepted = body(resp).await;
    assert_eq!(accepted["status"], "active");
    assert_eq!(accepted["email_verified"], true);
    assert_problem(
        accept("another long passphrase").await,
        400,
        "invalid_token",
    )
    .await;
    let grace = body(
        app.login("grace@assess.gov.uk", "grace's long passphrase")
            .await,
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.get("/api/v1/assessments", &grace)
            .await
            .status()
            .as_u16(),
        200
    );

    // Role changes and disabling need a reason; nobody changes their own account.
    let role = |who: String, body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.client
                .put(app.url(&format!("/api/v1/users/{who}/role")))
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let p = assert_problem(
        role(id.clone(), json!({"role": "admin", "reason": "   "})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), vec!["reason"]);
    assert_problem(
        role(
            admin_id.clone(),
            json!({"role": "assessor", "reason": "testing"}),
        )
        .await,
        409,
        "own_account",
    )
    .await;
    assert_problem(
        app.post(
            &format!("/api/v1/users/{admin_id}/disablement"),
            &admin,
            &json!({"reason": "testing"}),
        )
        .await,
        409,
        "own_account",
    )
    .await;
    let resp = role(
        id.clone(),
        json!({"role": "admin", "reason": "leads assessment"}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);

    // The list, filtered by role, and the audit log of every change.
    let list = body(app.get("/api/v1/users?role=admin", &admin).await).await;
    assert_eq!(list["total"], 2);
    let emails: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        vec!["admin@programme.gov.uk", "grace@assess.gov.uk"]
    );
    let p = assert_problem(
        app.get("/api/v1/users?limit=0", &admin).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), vec!["limit"]);
    let audit = body(app.get("/api/v1/audit", &admin).await).await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject_id"] == id.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["user_role_changed", "invitation_accepted", "user_invited"]
    );

    // The console lists accounts and invites from a form.
    let mut browser = Browser::sign_in(&app, "admin@programme.gov.uk").await;
    let html = browser
        .get(&app, "/console/users")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("grace@assess.gov.uk"), "{html}");
    let csrf = browser.csrf();
    let resp = browser
        .post(
            &app,
            "/console/users",
            &[
                ("csrf", &csrf),
                ("email", "ada@advise.gov.uk"),
                ("full_name", "Ada Adviser"),
                ("role", "adviser"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Ada Adviser is invited: we have emailed a link to ada@advise.gov.uk"));
    let mail = app.mailed("ada@advise.gov.uk", "account_invitation").await;
    assert_eq!(mail["role_name"], "an adviser");
}

async fn metrics_need_the_configured_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let get = |token: Option<&'static str>| {
        let mut r = app.client.get(app.url("/metrics"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap() }
    };
    assert_problem(get(None).await, 404, "not_found").await;
    assert_problem(get(Some("guess")).await, 404, "not_found").await;
    let resp = get(Some(METRICS_TOKEN)).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("voucherd_http_requests_total"));

    // None configured: not served at all.
    let closed = spawn_app_with(backend, |c| c.metrics_token = None).await;
    let resp = closed
        .client
        .get(closed.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;
}
