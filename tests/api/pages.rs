//! The pages over HTTP: who may open what, forged forms, security headers, and a form's errors
//! and answers reaching the API exactly. (The browser walk, in `browser.rs`, covers the rest.)

use crate::helpers::{body, valid_application, Browser, TestApp, PASSWORD};
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::Response;
use serde_json::json;

/// Owned form pairs as the borrowed pairs `Browser::post` sends.
fn pairs(form: &[(String, String)]) -> Vec<(&str, &str)> {
    form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn location(resp: &Response) -> String {
    resp.headers()[LOCATION].to_str().unwrap().to_string()
}

async fn pages_admit_only_whom_the_api_admits_and_refuse_forged_forms(app: TestApp) {
    let mut stranger = Browser::default();
    let resp = stranger.get(&app, "/portal").await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(location(&resp), "/sign-in?next=%2Fportal");
    // Security headers on every page.
    let resp = stranger.get(&app, "/sign-in").await;
    let h = resp.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");

    app.applicant("pages@example.com").await;
    app.user_with_role("pages-admin@example.com", "admin").await;
    // A wrong password is the form's error, not a redirect.
    let (_, resp) = Browser::try_sign_in(&app, "pages@example.com", "not the password", "").await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Enter a correct email address and password"));
    let (_, resp) = Browser::try_sign_in(&app, "pages@example.com", PASSWORD, "").await;
    let cookie = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .find(|c| c.starts_with("voucherd_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }

    // Each page takes its API route's access: an applicant may not open the console, an
    // administrator may not apply.
    let mut applicant = Browser::sign_in(&app, "pages@example.com").await;
    let resp = applicant.get(&app, "/console").await;
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("You cannot open this page"));
    // The form explains the rules with the programme's own thresholds.
    let form = applicant
        .get(&app, "/portal/apply")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        form.contains("Rule: the business must have fewer than 250 employees"),
        "{form}"
    );
    assert!(
        form.contains("may not pass £315,000.00 over this financial year"),
        "{form}"
    );
    let mut admin = Browser::sign_in(&app, "pages-admin@example.com").await;
    assert_eq!(
        admin.get(&app, "/portal/apply").await.status().as_u16(),
        403
    );
    assert_eq!(admin.get(&app, "/console").await.status().as_u16(), 200);

    // A form without its CSRF token, or with another's, changes nothing.
    let answers: Vec<(String, String)> = [
        ("company_number", "01234567"),
        ("company_name", "Widget Analytics Ltd"),
        ("employees", "12"),
        ("annual_turnover", "900,000"),
        ("balance_sheet_total", "300000"),
        ("region", "north_east"),
        ("sic_code", "62012"),
        ("trading_since", "2019-03-01"),
        (
            "use_case",
            "Classify incoming customer emails and draft replies for review.",
        ),
        ("university_spin_off", "no"),
        ("subsidy_provider", "Innovate UK"),
        ("subsidy_amount", "25000.00"),
        ("subsidy_awarded_on", "2025-06-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let with = |csrf: &str| {
        let mut f = answers.clone();
        f.push(("csrf".to_string(), csrf.to_string()));
        f
    };
    let admin_token = app.token("pages-admin@example.com").await;
    for csrf in ["", &"0".repeat(64)] {
        let form = with(csrf);
        let resp = applicant
            .post(&app, "/portal/apply/submit", &pairs(&form))
            .await;
        assert_eq!(resp.status().as_u16(), 400);
    }
    assert_eq!(app.applications_count(&admin_token).await, 0);

    // A wrong answer is shown beside its field, linked from the error summary; nothing is sent.
    let csrf = applicant.csrf();
    let mut bad = with(&csrf);
    bad[0].1 = "12-34".into();
    let resp = applicant.post(&app, "/portal/apply", &pairs(&bad)).await;
    assert_eq!(resp.status().as_u16(), 422);
    let html = resp.text().await.unwrap();
    assert!(html.contains("govuk-error-summary"), "{html}");
    assert!(html.contains(r##"href="#company_number""##));
    assert!(html.contains(r#"id="company_number-error""#));
    assert!(html.contains("<title>Error: "));
    assert_eq!(app.applications_count(&admin_token).await, 0);

    // A form no page makes (an answer sent twice) and answers over the pages' 64 KiB limit are
    // each a page saying so; nothing is sent.
    let mut twice = with(&csrf);
    twice.push(("company_number".into(), "07654321".into()));
    let mut long = with(&csrf);
    long[8].1 = "Draft replies. ".repeat(4_500);
    for (form, status, says) in [
        (twice, 400, "Go back, reload the page and try again"),
        (long, 413, "They may be too long"),
    ] {
        let resp = applicant
            .post(&app, "/portal/apply/submit", &pairs(&form))
            .await;
        assert_eq!(resp.status().as_u16(), status);
        let html = resp.text().await.unwrap();
        assert!(html.contains("Your answers could not be read"), "{html}");
        assert!(html.contains(says), "{html}");
    }
    assert_eq!(app.applications_count(&admin_token).await, 0);

    // The right answers: checked, then sent, reaching the API exactly.
    let good = with(&csrf);
    let good = pairs(&good);
    let check = applicant.post(&app, "/portal/apply", &good).await;
    assert_eq!(check.status().as_u16(), 200);
    assert!(check
        .text()
        .await
        .unwrap()
        .contains("Check your answers before sending your application"));
    let sent = applicant.post(&app, "/portal/apply/submit", &good).await;
    assert_eq!(sent.status().as_u16(), 303);
    assert!(location(&sent).starts_with("/portal/applications/"));
    let token = app.token("pages@example.com").await;
    let apps = body(app.get("/api/v1/applications", &token).await).await;
    let a = &apps["data"][0];
    let expected = valid_application();
    for field in [
        "company_number",
        "company_name",
        "employees",
        "region",
        "sic_code",
        "trading_since",
        "use_case",
    ] {
        assert_eq!(a[field], expected[field], "{field}");
    }
    assert_eq!(a["annual_turnover"], "900000.00");
    assert_eq!(a["subsidy_declarations"][0]["amount"], "25000.00");
    let page = applicant.get(&app, &location(&sent)).await;
    let html = page.text().await.unwrap();
    assert!(html.contains("Application sent"));
    assert!(html.contains("Eligibility checks"));

    // An id from the address bar cannot turn a page's API call into another route's.
    let app_id = a["id"].as_str().unwrap().to_string();
    for sneaky in [
        format!("/portal/vouchers/..%2Fapplications%2F{app_id}%23"),
        "/portal/vouchers/x%3Flimit=1".to_string(),
        format!("/portal/applications/{app_id}%2F..%2F..%2Fme"),
    ] {
        let resp = applicant.get(&app, &sneaky).await;
        assert_eq!(resp.status().as_u16(), 404, "{sneaky}");
        assert!(
            !resp.text().await.unwrap().contains("Widget Analytics"),
            "{sneaky}"
        );
    }
    let resp = admin
        .get(
            &app,
            &format!("/console/reports/..%2Fapplications%2F{app_id}%23"),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 404);
    // Only a plain path of this service is returned to after signing in.
    for (next, to) in [
        ("/portal/apply", "/portal/apply"),
        ("/\t/evil.example", "/portal"),
        ("//evil.example", "/portal"),
        ("https://evil.example/", "/portal"),
    ] {
        let (_, resp) = Browser::try_sign_in(&app, "pages@example.com", PASSWORD, next).await;
        assert_eq!(location(&resp), to, "{next}");
    }

    // Signing out needs the form's token too.
    assert_eq!(
        applicant
            .post(&app, "/sign-out", &[])
            .await
            .status()
            .as_u16(),
        400
    );
    assert_eq!(applicant.get(&app, "/portal").await.status().as_u16(), 200);
    let csrf = applicant.csrf();
    let out = applicant.post(&app, "/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status().as_u16(), 303);
    assert_eq!(applicant.get(&app, "/portal").await.status().as_u16(), 303);
}

async fn assets_are_served_from_the_binary(app: TestApp) {
    for (path, kind) in [
        ("/assets/govuk-frontend.min.css", "text/css"),
        ("/assets/govuk-frontend.min.js", "text/javascript"),
        ("/assets/fonts/bold-b542beb274-v2.woff2", "font/woff2"),
        ("/assets/init.js", "text/javascript"),
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    }
    let missing = app
        .client
        .get(app.url("/assets/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}

/// An id in a page's path that decodes to more than an id (`V%2Freinstatement%3F`) names
/// nothing the programme made: such pages do not exist, and no service is asked for them (when
/// the pages reached the API over loopback, such an id could have reached another route).
async fn an_id_that_would_change_the_api_route_is_not_a_page(app: TestApp) {
    let owner = app.applicant("owner@widgets.co.uk").await;
    let application = body(app.apply(&owner, &valid_application()).await).await;
    let id = application["id"].as_str().unwrap().to_string();
    app.user_with_role("pages-admin@example.com", "admin").await;
    let mut admin = Browser::sign_in(&app, "pages-admin@example.com").await;
    let resp = admin
        .get(&app, &format!("/console/applications/{id}"))
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    for crafted in [
        format!("{id}%2Fincentives%3F"),
        format!("{id}%3Fx%3D1"),
        format!("{id}%2F..%2F..%2Faudit"),
    ] {
        let resp = admin
            .get(&app, &format!("/console/applications/{crafted}"))
            .await;
        assert_eq!(resp.status().as_u16(), 404, "{crafted}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("Page not found"), "{crafted}: {html}");
    }
    // A form posted to a crafted path changes nothing either.
    let csrf = admin.csrf();
    let resp = admin
        .post(
            &app,
            &format!("/console/applications/{id}%2Fdecision%3F/decision"),
            &[
                ("csrf", &csrf),
                ("decision", "reject"),
                ("reason", "a crafted path here"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 404);
    let after = body(app.get(&format!("/api/v1/applications/{id}"), &owner).await).await;
    assert_eq!(after["status"], "submitted");

    // The voucher-suspension form with an id that decodes to `V/reinstatement?`: were it
    // placed into the API path as it is, suspending would call the reinstatement route.
    let (holder, voucher, _key) = app.funded_voucher("crafted@example.com", "10").await;
    let api_admin = app.admin().await;
    let suspend = format!("/api/v1/vouchers/{voucher}/suspension");
    let suspended = app
        .post(&suspend, &api_admin, &json!({"reason": "Misuse reported"}))
        .await;
    assert_eq!(suspended.status().as_u16(), 200);
    for crafted in [
        format!("{voucher}%2Freinstatement%3F"),
        format!("{voucher}%2Freinstatement%23"),
        format!("{voucher}%2Freinstatement%3Fx%3D"),
    ] {
        let resp = admin
            .post(
                &app,
                &format!("/console/vouchers/{crafted}/suspension"),
                &[
                    ("csrf", &csrf),
                    ("action", "suspend"),
                    ("reason", "a crafted path here"),
                    ("confirm", "yes"),
                ],
            )
            .await;
        assert_eq!(resp.status().as_u16(), 404, "{crafted}");
        assert_eq!(
            app.voucher(&holder, &voucher).await["status"],
            "suspended",
            "{crafted}"
        );
    }
    // The same form with the voucher's own id does reach the API, so the 404s above are
    // the crafted ids' doing.
    let resp = admin
        .post(
            &app,
            &format!("/console/vouchers/{voucher}/suspension"),
            &[
                ("csrf", &csrf),
                ("action", "reinstate"),
                ("reason", "Provider withdrew the report"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(app.voucher(&holder, &voucher).await["status"], "active");
}

/// People get GOV.UK pages, with a title and a language, for an address that names nothing and
/// for a public summary that does not exist yet; programs keep getting problem+json.
async fn unknown_pages_and_a_missing_public_summary_are_pages_for_people(app: TestApp) {
    let get = |path: &str, accept: &str| {
        app.client
            .get(app.url(path))
            .header("accept", accept)
            .send()
    };
    let html = "text/html,application/xhtml+xml,*/*;q=0.8";
    let content_type = |r: &Response| r.headers()["content-type"].to_str().unwrap().to_string();

    let page = get("/no-such-page", html).await.unwrap();
    assert_eq!(page.status().as_u16(), 404);
    assert!(content_type(&page).starts_with("text/html"));
    assert!(page.headers().contains_key("content-security-policy"));
    let text = page.text().await.unwrap();
    assert!(text.contains(r#"<html lang="en""#), "{text}");
    assert!(text.contains("<title>Page not found"), "{text}");

    // A program asking for an unknown path, or any client under the API's paths: problem+json.
    for (path, accept) in [
        ("/no-such-page", "application/json"),
        ("/api/v1/no-such-route", html),
    ] {
        let resp = get(path, accept).await.unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{path}");
        assert_eq!(content_type(&resp), "application/problem+json", "{path}");
        assert_eq!(body(resp).await["code"], "not_found", "{path}");
    }

    // No semi-annual review has been made: the console's link explains that, as a page.
    let summary = get("/public/reports/latest", html).await.unwrap();
    assert_eq!(summary.status().as_u16(), 404);
    assert!(content_type(&summary).starts_with("text/html"));
    let text = summary.text().await.unwrap();
    assert!(text.contains(r#"<html lang="en""#), "{text}");
    assert!(text.contains("There is no public summary yet"), "{text}");
    let json = get("/public/reports/latest", "application/json")
        .await
        .unwrap();
    assert_eq!(json.status().as_u16(), 404);
    assert_eq!(content_type(&json), "application/problem+json");
}

/// The application page says what happened: an ineligible application is not thanked as if it
/// will be decided, an approved one does not say it waits for an administrator, and the rules
/// have plain-English names.
async fn an_application_page_says_what_happened_in_plain_english(app: TestApp) {
    let owner = app.applicant("outcomes@widgets.co.uk").await;
    let mut too_big = valid_application();
    too_big["employees"] = json!(400);
    let ineligible = body(app.apply(&owner, &too_big).await).await;
    assert_eq!(ineligible["status"], "ineligible");
    let mut browser = Browser::sign_in(&app, "outcomes@widgets.co.uk").await;
    let id = ineligible["id"].as_str().unwrap();
    let page = browser
        .get(&app, &format!("/portal/applications/{id}?sent=1"))
        .await;
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("did not meet every rule, so it cannot be approved"),
        "{html}"
    );
    assert!(!html.contains("We will email you when it has been decided"));
    assert!(html.contains("Size: number of employees"), "{html}");
    assert!(!html.contains("sme headcount") && !html.contains("sme_headcount"));

    // An eligible one, approved by an administrator: the page says so.
    let eligible = body(app.apply(&owner, &valid_application()).await).await;
    let id = eligible["id"].as_str().unwrap();
    let waiting = browser
        .get(&app, &format!("/portal/applications/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(waiting.contains("An administrator will decide the application"));
    let admin = app
        .user_with_role("outcomes-admin@example.com", "admin")
        .await;
    assert_eq!(app.deposit(&admin, "100000").await.status().as_u16(), 201);
    let decided = app
        .decide(
            &admin,
            id,
            &json!({"decision": "approve", "amount": "2500", "reason": "meets all criteria"}),
        )
        .await;
    assert_eq!(decided.status().as_u16(), 200);
    let approved = browser
        .get(&app, &format!("/portal/applications/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        approved.contains("the application was approved: your voucher is ready"),
        "{approved}"
    );
    assert!(!approved.contains("An administrator will decide"));
}

/// Money and irreversible forms are checked before their confirmation page: bad input is the
/// form's own error, and a price for a model nobody has priced says it makes a new model.
async fn console_forms_are_checked_before_the_confirmation_page(app: TestApp) {
    app.user_with_role("forms-admin@example.com", "admin").await;
    let mut admin = Browser::sign_in(&app, "forms-admin@example.com").await;
    let csrf = admin.csrf();
    let confirmation = |html: &str| html.contains("Confirm the") || html.contains("Check the");

    let deposit = admin
        .post(
            &app,
            "/console/programme/deposits",
            &[("csrf", &csrf), ("amount", "£abc"), ("reference", "GL-1")],
        )
        .await;
    assert_eq!(deposit.status().as_u16(), 422);
    let html = deposit.text().await.unwrap();
    assert!(!confirmation(&html), "{html}");
    assert!(html.contains("Amount must be a decimal string"), "{html}");
    // A good one reaches its confirmation, in pounds with separators.
    let deposit = admin
        .post(
            &app,
            "/console/programme/deposits",
            &[
                ("csrf", &csrf),
                ("amount", "900,000"),
                ("reference", "GL-1"),
            ],
        )
        .await;
    assert_eq!(deposit.status().as_u16(), 200);
    let html = deposit.text().await.unwrap();
    assert!(
        html.contains("Confirm the deposit") && html.contains("£900,000.00"),
        "{html}"
    );

    let price = admin
        .post(
            &app,
            "/console/prices",
            &[
                ("csrf", &csrf),
                ("model", "test-model"),
                ("input", "£-1"),
                ("cached", "1"),
                ("output", "1"),
            ],
        )
        .await;
    assert_eq!(price.status().as_u16(), 422);
    let html = price.text().await.unwrap();
    assert!(
        !confirmation(&html) && html.contains("must not be negative"),
        "{html}"
    );
    for (model, new) in [("test-model", false), ("gpt-4o-mni", true)] {
        let price = admin
            .post(
                &app,
                "/console/prices",
                &[
                    ("csrf", &csrf),
                    ("model", model),
                    ("input", "1"),
                    ("cached", "0.5"),
                    ("output", "2"),
                ],
            )
            .await;
        assert_eq!(price.status().as_u16(), 200, "{model}");
        let html = price.text().await.unwrap();
        assert_eq!(html.contains("a new model"), new, "{model}: {html}");
    }

    let (_, voucher, _) = app.funded_voucher("forms@widgets.co.uk", "100").await;
    let suspension = admin
        .post(
            &app,
            &format!("/console/vouchers/{voucher}/suspension"),
            &[("csrf", &csrf), ("action", "suspend"), ("reason", "   ")],
        )
        .await;
    assert_eq!(suspension.status().as_u16(), 422);
    let html = suspension.text().await.unwrap();
    assert!(
        !confirmation(&html) && html.contains("must not be blank"),
        "{html}"
    );
}

/// The decision queue is oldest first, 50 a page with the count of all, and downloads as CSV.
async fn the_queue_pages_oldest_first_and_downloads_as_csv(app: TestApp) {
    let owner = app.applicant("queue@widgets.co.uk").await;
    let mut ids = Vec::new();
    let mut references = Vec::new();
    for n in 0..52 {
        let mut a = valid_application();
        a["company_number"] = json!(format!("{:08}", 10_000_001 + n));
        a["company_name"] = json!(format!("Queue Company {n:02} Ltd"));
        let sent = body(app.apply(&owner, &a).await).await;
        assert_eq!(sent["status"], "submitted", "{sent}");
        ids.push(sent["id"].as_str().unwrap().to_string());
        references.push(sent["reference"].as_str().unwrap().to_string());
    }
    app.user_with_role("queue-admin@example.com", "admin").await;
    let mut admin = Browser::sign_in(&app, "queue-admin@example.com").await;
    let first = admin.get(&app, "/console").await.text().await.unwrap();
    assert!(
        first.contains("Showing 1 to 50 of 52 applications, oldest first"),
        "{first}"
    );
    // The first sent is first; the last two are on the next page.
    let at = |html: &str, name: &str| html.find(name);
    assert!(at(&first, "Queue Company 00 Ltd") < at(&first, "Queue Company 01 Ltd"));
    assert!(at(&first, "Queue Company 51 Ltd").is_none());
    // Attributes as a browser reads them (handlebars writes `=` as `&#x3D;`).
    let decoded = first.replace("&#x3D;", "=").replace("&amp;", "&");
    assert!(
        decoded.contains(r#"href="/console?status=submitted&page=2" rel="next""#),
        "{first}"
    );
    let second = admin
        .get(&app, "/console?status=submitted&page=2")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        second.contains("Showing 51 to 52 of 52 applications"),
        "{second}"
    );
    assert!(second.contains("Queue Company 51 Ltd"));

    let csv = admin
        .get(&app, "/console/applications.csv?status=submitted")
        .await;
    assert_eq!(csv.status().as_u16(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 53, "a header and 52 applications");
    // Named by its short reference first; the id, for systems, last.
    assert!(
        lines[1].starts_with(&format!("\"{}\",\"Queue Company 00 Ltd\"", references[0])),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(&format!(",\"{}\"", ids[0])),
        "{}",
        lines[1]
    );
    // An applicant may not download the console's CSV.
    let mut applicant = Browser::sign_in(&app, "queue@widgets.co.uk").await;
    let refused = applicant.get(&app, "/console/applications.csv").await;
    assert_eq!(refused.status().as_u16(), 403);
}

/// The application form says what is wrong before the answers are confirmed: a company whose
/// number a live voucher holds, an employee count in words, money with a pound sign and commas.
async fn the_application_form_catches_a_held_company_and_explains_each_answer(app: TestApp) {
    app.funded_voucher("held@widgets.co.uk", "100").await;
    let mut browser = Browser::sign_in(&app, "held@widgets.co.uk").await;
    let csrf = browser.csrf();
    let answers = |number: &'static str, employees: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("company_number", number.to_string()),
            ("company_name", "Widget Analytics Ltd".to_string()),
            ("employees", employees.to_string()),
            ("annual_turnover", "£900,000".to_string()),
            ("balance_sheet_total", "£300,000.00".to_string()),
            ("region", "north_east".to_string()),
            ("sic_code", "62012".to_string()),
            ("trading_since", "2019-03-01".to_string()),
            (
                "use_case",
                "Classify incoming customer emails and draft replies.".to_string(),
            ),
            ("university_spin_off", "no".to_string()),
        ]
    };
    let held = answers("01234567", "12");
    let held: Vec<(&str, &str)> = held.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = browser.post(&app, "/portal/apply", &held).await;
    assert_eq!(resp.status().as_u16(), 422);
    let html = resp.text().await.unwrap();
    assert!(html.contains("already holds a voucher"), "{html}");
    assert!(!html.contains("Check your answers before sending"));

    let words = answers("07654321", "twelve");
    let words: Vec<(&str, &str)> = words.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let html = browser
        .post(&app, "/portal/apply", &words)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Enter the number of employees in digits, like 12"),
        "{html}"
    );

    // Another company, with money written as people write it: the answers are shown back.
    let good = answers("07654321", "12");
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = browser.post(&app, "/portal/apply", &good).await;
    assert_eq!(resp.status().as_u16(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Check your answers before sending"), "{html}");
    // Shown back for people (pounds, a UK date), each answer with its own Change.
    assert!(
        html.contains("£900,000.00") && html.contains("1 March 2019"),
        "{html}"
    );
    assert!(
        html.contains(r#"<input type="hidden" name="change" value="company_name">"#),
        "{html}"
    );
    assert!(html.contains(r#"Change<span class="govuk-visually-hidden"> company name</span>"#));
    // A GOV.UK date input's day, month and year make the date; one that is no date is refused.
    let mut parts: Vec<(&str, &str)> = good
        .iter()
        .copied()
        .filter(|(k, _)| *k != "trading_since")
        .collect();
    parts.extend([
        ("trading_since_day", "1"),
        ("trading_since_month", "3"),
        ("trading_since_year", "2019"),
    ]);
    let html = browser
        .post(&app, "/portal/apply", &parts)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("1 March 2019"), "{html}");
    for (k, v) in parts.iter_mut() {
        if *k == "trading_since_month" {
            *v = "13";
        }
    }
    let resp = browser.post(&app, "/portal/apply", &parts).await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("as a day, month and year, like 1 3 2019"));
    // Changing one answer goes back to the form with every answer kept.
    let mut change = good.clone();
    change.push(("change", "employees"));
    let resp = browser.post(&app, "/portal/apply", &change).await;
    assert_eq!(resp.status().as_u16(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Apply for an AI voucher"), "{html}");
    assert!(html.contains(r#"value="Widget Analytics Ltd""#), "{html}");
}

on_both_backends!(
    the_application_form_catches_a_held_company_and_explains_each_answer,
    the_queue_pages_oldest_first_and_downloads_as_csv,
    console_forms_are_checked_before_the_confirmation_page,
    an_application_page_says_what_happened_in_plain_english,
    unknown_pages_and_a_missing_public_summary_are_pages_for_people,
    pages_admit_only_whom_the_api_admits_and_refuse_forged_forms,
    assets_are_served_from_the_binary,
    an_id_that_would_change_the_api_route_is_not_a_page,
);
