use crate::upstream::{FakeUpstream, UPSTREAM_KEY};
use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::{Client, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use voucherd::config::Config;
use voucherd::Application;
use voucherd_domain::pricing::PriceRates;
use voucherd_domain::Money;
use voucherd_store::testing::TestDatabase;
use voucherd_store::users::UserRow;
use voucherd_store::{Backend, Store};

pub const PASSWORD: &str = "correct horse battery staple";
/// The test programme's only model: £2.50 / £1.25 / £10.00 per million input / cached input /
/// output tokens.
pub const MODEL: &str = "test-model";

/// Runs each named `async fn(TestApp)` once on SQLite and once on PostgreSQL, as
/// `…::sqlite::name` and `…::postgres::name`.
macro_rules! on_both_backends {
    // Tests that start their own application (a clock of their own, a changed setting): each
    // `async fn(Backend)` is given the backend.
    (backend: $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(voucherd_store::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(voucherd_store::Backend::Postgres).await
                }
            )*
        }
    };
    (leasing: $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::spawn_leasing(voucherd_store::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::spawn_leasing(voucherd_store::Backend::Postgres).await).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::helpers::spawn_app(voucherd_store::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::helpers::spawn_app(voucherd_store::Backend::Postgres).await).await
                }
            )*
        }
    };
}

pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub store: Store,
    pub upstream: FakeUpstream,
    pub database_url: String,
    _db: TestDatabase,
}

pub fn rates(input: &str, cached: &str, output: &str) -> PriceRates {
    PriceRates {
        input_per_million: Money::parse(input).unwrap(),
        cached_input_per_million: Money::parse(cached).unwrap(),
        output_per_million: Money::parse(output).unwrap(),
    }
}

/// The monitoring token the test servers ask for at `/metrics`.
pub const METRICS_TOKEN: &str = "metrics-token-for-tests";

pub fn test_config(database_url: &str, upstream_url: &str) -> Config {
    Config {
        database_url: database_url.to_string(),
        bind: "127.0.0.1:0".into(),
        jwt_secret: Some("test-secret-0123456789abcdefghijklmnopqrstuvwxyz".into()),
        upstream_url: upstream_url.to_string(),
        upstream_api_key: Some(UPSTREAM_KEY.into()),
        upstream_timeout_ms: 5_000,
        hold_timeout_ms: 60_000,
        workers: 2,
        // Most tests see a hold per request (exact `held` at every moment); leases.rs turns
        // leasing on.
        lease_max_age_ms: 0,
        db_max_connections: 4,
        // Worker tests drive their own schedulers on a clock they control; the crash tests
        // turn this one on.
        scheduler: false,
        mail_dir: std::env::temp_dir()
            .join(format!("voucherd-mail-{}", uuid::Uuid::new_v4().simple()))
            .to_string_lossy()
            .into_owned(),
        standard_voucher: Money::parse("5000").unwrap(),
        metrics_token: Some(METRICS_TOKEN.into()),
        // Tests sign in many times from one address; accounts.rs tests the throttle itself.
        sign_in_attempts_per_account: 1_000,
        sign_in_attempts_per_address: 100_000,
        prices: BTreeMap::from([(MODEL.to_string(), rates("2.50", "1.25", "10.00"))]),
        ..Config::default()
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_role(backend, voucherd::Role::All, adjust).await
}

pub async fn spawn_role(
    backend: Backend,
    role: voucherd::Role,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    spawn_with_clock(
        backend,
        role,
        adjust,
        Arc::new(voucherd_worker::SystemClock),
    )
    .await
}

/// An application whose programme calendar (challenge milestones) reads `clock`.
pub async fn spawn_with_clock(
    backend: Backend,
    role: voucherd::Role,
    adjust: impl FnOnce(&mut Config),
    clock: Arc<dyn voucherd_worker::Clock>,
) -> TestApp {
    let db = TestDatabase::create(backend).expect("test database");
    let upstream = FakeUpstream::start();
    let mut config = test_config(&db.url, &upstream.url);
    adjust(&mut config);
    let (address, store) = start(config, role, clock);
    TestApp {
        address,
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        store,
        upstream,
        database_url: db.url.clone(),
        _db: db,
    }
}

fn start(
    config: Config,
    role: voucherd::Role,
    clock: Arc<dyn voucherd_worker::Clock>,
) -> (String, Store) {
    let app = Application::build_with_clock(config, role, clock).expect("application builds");
    let port = app.port();
    let store = app.store();
    tokio::spawn(app.run_until_stopped());
    (format!("http://127.0.0.1:{port}"), store)
}

/// A second instance of `app`'s service: same database, same upstream.
pub struct Instance {
    pub address: String,
}

impl Instance {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }
}

pub fn another_instance(
    app: &TestApp,
    role: voucherd::Role,
    adjust: impl FnOnce(&mut Config),
) -> Instance {
    let mut config = test_config(&app.database_url, &app.upstream.url);
    adjust(&mut config);
    Instance {
        address: start(config, role, Arc::new(voucherd_worker::SystemClock)).0,
    }
}

pub async fn body(resp: Response) -> Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Asserts a problem+json response with `status` and `code`; returns the body.
pub async fn assert_problem(resp: Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap(),
        "application/problem+json"
    );
    let b = body(resp).await;
    assert_eq!(b["code"], code, "{b}");
    assert_eq!(b["status"], status);
    b
}

/// The field paths a validation problem names.
pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn valid_application() -> Value {
    json!({
        "company_number": "01234567",
        "company_name": "Widget Analytics Ltd",
        "employees": 12,
        "annual_turnover": "900000.00",
        "balance_sheet_total": "300000",
        "region": "north_east",
        "sic_code": "62012",
        "trading_since": "2019-03-01",
        "use_case": "Classify incoming customer emails and draft replies for review.",
        "subsidy_declarations": [
            {"provider": "Innovate UK", "amount": "25000.00", "awarded_on": "2025-06-01"}
        ]
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, token: &str, json: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(json)
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, email: &str) -> Response {
        self.client
            .post(self.url("/api/v1/auth/register"))
            .json(&json!({"email": email, "password": PASSWORD, "full_name": "Ada Lovelace"}))
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self, email: &str) -> String {
        let resp = self.login(email, PASSWORD).await;
        assert_eq!(resp.status().as_u16(), 200);
        body(resp).await["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A registered applicant's access token, with the email address confirmed by the code
    /// from the verification email (as a person would type it in).
    pub async fn applicant(&self, email: &str) -> String {
        assert_eq!(self.register(email).await.status().as_u16(), 201);
        let token = self.token(email).await;
        let code = self.mailed(email, "verify_email").await["code"]
            .as_str()
            .unwrap()
            .to_string();
        let resp = self
            .post(
                "/api/v1/me/email-verification",
                &token,
                &json!({"code": code}),
            )
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        token
    }

    /// The data of the newest email with `template` to `email`, from the outbox.
    pub async fn mailed(&self, email: &str, template: &str) -> Value {
        let rows = self
            .store
            .outbox(Some(email.to_lowercase()), 100)
            .await
            .unwrap();
        let row = rows
            .iter()
            .find(|r| r.template == template)
            .unwrap_or_else(|| panic!("no {template} email to {email}"));
        serde_json::from_str(&row.data).unwrap()
    }

    /// A user with `role`, created as `create-admin` does (roles other than applicant are not
    /// self-service), and signed in.
    pub async fn user_with_role(&self, email: &str, role: &str) -> String {
        self.store
            .create_user(UserRow {
                id: voucherd_domain::UserId::new(uuid::Uuid::now_v7().to_string()),
                email: email.into(),
                password_hash: voucherd_api::auth::hash_password(PASSWORD).unwrap(),
                full_name: "Programme staff".into(),
                role: role.parse().unwrap(),
                created_at: voucherd_store::now(),
                email_verified_at: Some(voucherd_store::now()),
                disabled_at: None,
            })
            .await
            .unwrap();
        self.token(email).await
    }

    pub async fn admin(&self) -> String {
        self.user_with_role("admin@programme.gov.uk", "admin").await
    }

    pub async fn apply(&self, token: &str, application: &Value) -> Response {
        self.post("/api/v1/applications", token, application).await
    }

    pub async fn deposit(&self, admin: &str, amount: &str) -> Response {
        self.post(
            "/api/v1/programme/deposits",
            admin,
            &json!({"amount": amount, "reference": "HM Treasury allocation 2026/27"}),
        )
        .await
    }

    pub async fn decide(&self, admin: &str, application_id: &str, decision: &Value) -> Response {
        self.post(
            &format!("/api/v1/applications/{application_id}/decision"),
            admin,
            decision,
        )
        .await
    }

    pub async fn create_key(&self, token: &str, voucher_id: &str) -> Response {
        self.post(
            &format!("/api/v1/vouchers/{voucher_id}/keys"),
            token,
            &json!({"name": "backend"}),
        )
        .await
    }

    pub async fn chat(&self, key: &str, request: &Value) -> Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(request)
            .send()
            .await
            .unwrap()
    }

    /// An applicant with an approved voucher of `amount` and a key for it:
    /// (applicant token, voucher id, key).
    pub async fn funded_voucher(&self, email: &str, amount: &str) -> (String, String, String) {
        self.funded_voucher_with(email, amount, &valid_application())
            .await
    }

    /// [`TestApp::funded_voucher`] for the application given (another company, say).
    pub async fn funded_voucher_with(
        &self,
        email: &str,
        amount: &str,
        application: &Value,
    ) -> (String, String, String) {
        let applicant = self.applicant(email).await;
        let admin = self
            .user_with_role(&format!("admin-{email}"), "admin")
            .await;
        let app = body(self.apply(&applicant, application).await).await;
        assert_eq!(app["status"], "submitted", "{app}");
        assert_eq!(self.deposit(&admin, "100000").await.status().as_u16(), 201);
        let decided = self
            .decide(
                &admin,
                app["id"].as_str().unwrap(),
                &json!({"decision": "approve", "amount": amount, "reason": "meets all criteria"}),
            )
            .await;
        assert_eq!(decided.status().as_u16(), 200);
        let voucher_id = body(decided).await["voucher"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let key = body(self.create_key(&applicant, &voucher_id).await).await["key"]
            .as_str()
            .unwrap()
            .to_string();
        (applicant, voucher_id, key)
    }

    /// The id of the voucher's first key.
    pub async fn first_key_id(&self, token: &str, voucher_id: &str) -> String {
        let keys = body(
            self.get(&format!("/api/v1/vouchers/{voucher_id}/keys"), token)
                .await,
        )
        .await;
        keys["data"][0]["id"].as_str().unwrap().to_string()
    }

    pub async fn revoke_key(&self, token: &str, key_id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/api/v1/keys/{key_id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Polls the voucher until no money is held (every hold and lease resolved), within a bound.
    pub async fn wait_until_settled(&self, token: &str, voucher_id: &str) -> Value {
        for _ in 0..400 {
            let v = self.voucher(token, voucher_id).await;
            if v["held"] == "0.00" {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the voucher's holds never resolved");
    }

    pub async fn voucher(&self, token: &str, id: &str) -> Value {
        let resp = self.get(&format!("/api/v1/vouchers/{id}"), token).await;
        assert_eq!(resp.status().as_u16(), 200);
        body(resp).await
    }

    pub async fn applications_count(&self, admin: &str) -> usize {
        body(self.get("/api/v1/applications", admin).await).await["data"]
            .as_array()
            .unwrap()
            .len()
    }
}

/// A chat request whose prompt is a document of about 1,000 tokens (4,400 characters), which
/// is what the fake provider reports by default.
pub fn chat_request() -> Value {
    let document =
        "Customers may return unused goods within 30 days for a full refund. ".repeat(65);
    json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You summarise policies in one line."},
            {"role": "user", "content": document}
        ],
        "max_completion_tokens": 400
    })
}

/// A short chat request (a prompt of about a dozen tokens).
pub fn short_chat_request(max_completion_tokens: Option<u64>) -> Value {
    let mut r = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello to the team."}],
    });
    if let Some(m) = max_completion_tokens {
        r["max_completion_tokens"] = json!(m);
    }
    r
}

/// Fires `n` copies of `req` at once, spread over `urls`; returns how many were served. Any
/// answer but 200 or 429 `insufficient_quota` fails the test.
pub async fn fire(app: &TestApp, urls: &[String], key: &str, req: &Value, n: usize) -> i64 {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let url = urls[i % urls.len()].clone();
        let (client, key, req) = (app.client.clone(), key.to_string(), req.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(key)
                .json(&req)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (429, b) => assert_eq!(b["error"]["code"], "insufficient_quota", "{b}"),
            (s, b) => panic!("unexpected {s}: {b}"),
        }
    }
    ok
}

/// For `short_chat_request(Some(100))` answered with 40 prompt and up to 100 output tokens:
/// checks the voucher has exactly `served` usage rows, each costing 40 × 2.50 + its output ×
/// 10.00 micros (late requests are capped to what is left), and returns their total.
pub async fn short_usage_total(app: &TestApp, owner: &str, voucher_id: &str, served: i64) -> i64 {
    let usage = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/usage"), owner)
            .await,
    )
    .await;
    let rows = usage["data"].as_array().unwrap();
    assert_eq!(rows.len() as i64, served);
    let mut total = 0;
    for r in rows {
        let completion = r["completion_tokens"].as_i64().unwrap();
        assert!((1..=100).contains(&completion), "{r}");
        let cost = Money::parse(r["cost"].as_str().unwrap()).unwrap().micros();
        assert_eq!(cost, 100 + 10 * completion);
        total += cost;
    }
    total
}

/// A browser's cookies for one person, kept by hand.
#[derive(Default)]
pub struct Browser {
    cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn keep(&mut self, headers: &HeaderMap) {
        for c in headers.get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
    }

    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn csrf(&self) -> String {
        self.cookies
            .iter()
            .find(|(n, _)| n == "voucherd_csrf")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    pub async fn get(&mut self, app: &TestApp, path: &str) -> Response {
        let resp = app
            .client
            .get(app.url(path))
            .header(COOKIE, self.header())
            .send()
            .await
            .unwrap();
        self.keep(resp.headers());
        resp
    }

    pub async fn post(&mut self, app: &TestApp, path: &str, form: &[(&str, &str)]) -> Response {
        let resp = app
            .client
            .post(app.url(path))
            .header(COOKIE, self.header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(resp.headers());
        resp
    }

    /// A new browser that opens the sign-in form and sends it.
    pub async fn try_sign_in(
        app: &TestApp,
        email: &str,
        password: &str,
        next: &str,
    ) -> (Browser, Response) {
        let mut b = Browser::default();
        b.get(app, "/sign-in").await;
        let csrf = b.csrf();
        let form = [
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
            ("next", next),
        ];
        let resp = b.post(app, "/sign-in", &form).await;
        (b, resp)
    }

    pub async fn sign_in(app: &TestApp, email: &str) -> Browser {
        let (b, resp) = Browser::try_sign_in(app, email, PASSWORD, "").await;
        assert_eq!(resp.status().as_u16(), 303);
        b
    }
}
