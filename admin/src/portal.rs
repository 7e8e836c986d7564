//! The SME portal: accounts, the application with its check-answers step, the application's
//! rule results, and the voucher (balance, spend charts, statement, keys, payments).

use crate::api::{self, Answer, Core, Failure};
use crate::forms::{self, posted, ButtonForm, Confirmable, Posted, Trimmed, VoucherForm};
use crate::render::{self, FieldError, Tag, View};
use crate::session::{self, Viewer};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use voucherd_api::auth::AuthUser;
use voucherd_api::error::ApiError;
use voucherd_api::handlers::Page;
use voucherd_api::service::payments::{self, Started};
use voucherd_api::service::{accounts, applications, vouchers, IdempotencyKey};
use voucherd_api::state::AppState;
use voucherd_api::views::{time, ApplicationView, KeyView, NewKeyView, Timestamp, UsageView};
use voucherd_domain::eligibility::{rule_title, RuleResult};
use voucherd_domain::{
    ApplicationId, ApplicationStatus, CompanyNumber, KeyMode, Money, Region, Role, SicCode,
    VoucherId, VoucherStatus,
};

/// An amount as a person typed it, tidied for the API: without the pound sign, thousands
/// separators (commas or spaces) or any other whitespace, so "£ 1,000.50 " is "1000.50". The
/// API refuses all of these in a money string; people type them, so the pages remove them.
pub(crate) fn tidy_money(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| *c != '£' && *c != ',' && !c.is_whitespace())
        .collect()
}

pub(crate) fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_string()))
        .finish()
}

/// What a confirmation page shows and sends on.
pub struct Confirm<'a> {
    pub title: &'a str,
    pub rows: Vec<(&'a str, String)>,
    pub text: &'a str,
    pub action: String,
    pub button: &'a str,
    pub warning: bool,
    pub cancel: String,
}

/// For money and changes that cannot be undone: the form is shown back for checking before it
/// takes effect (WCAG 3.3.4). `None` once the person has confirmed.
pub fn unconfirmed(
    req: &HttpRequest,
    form: &impl Confirmable,
    c: Confirm<'_>,
) -> Option<HttpResponse> {
    if form.confirmed() {
        return None;
    }
    Some(
        View::new("confirm", c.title)
            .with(
                "rows",
                Value::Array(
                    c.rows
                        .into_iter()
                        .map(|(k, v)| json!({"key": k, "value": v}))
                        .collect(),
                ),
            )
            .with("text", json!(c.text))
            .with("action", json!(c.action))
            .with("button", json!(c.button))
            .with("warning", json!(c.warning))
            .with("cancel", json!(c.cancel))
            .with("fields", forms::hidden_inputs(form))
            .back(&c.cancel)
            .render(req),
    )
}

/// A form whose CSRF token does not match is refused before anything is read.
pub fn csrf_refused(req: &HttpRequest, form: &impl Posted) -> Option<HttpResponse> {
    (!session::csrf_ok(req, form.csrf())).then(|| {
        render::message(
            req,
            StatusCode::BAD_REQUEST,
            "Your form has expired",
            "Go back, reload the page and try again.",
        )
    })
}

macro_rules! page {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(f) => return Failure::into_response(f),
        }
    };
}
pub(crate) use page;

/// A region's human name from its code or name ("TLM", "scotland" → "Scotland").
pub fn region_name(r: &str) -> &'static str {
    Region::parse(r).map_or("Unknown region", Region::name)
}

/// A status's tag, coloured after the GOV.UK tag guidance.
pub fn tag(status: &str) -> Tag {
    let colour = match status {
        "approved" | "active" | "paid" | "succeeded" | "passed" | "balanced" => "green",
        "rejected" | "failed" | "revoked" | "expired" | "exhausted" | "not balanced" => "red",
        "submitted" | "open" | "processing" | "running" => "blue",
        "awaiting_contribution" | "awaiting_second_approval" | "due" => "yellow",
        _ => "grey",
    };
    Tag::new(status.replace('_', " "), colour)
}

/// What Stripe's payment page sends back (to the home page, then the dashboard): the
/// payment's outcome, to show.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct PaymentReturn {
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment: Option<String>,
}

pub async fn home(req: HttpRequest, viewer: Viewer) -> HttpResponse {
    match viewer.0.map(|u| u.role) {
        Some(Role::Admin) => see_other("/console"),
        // Back from Stripe's payment page, the outcome goes along to be shown.
        Some(Role::Applicant) => match req.query_string() {
            "" => see_other("/portal"),
            _ => see_other(&format!(
                "/portal?{}",
                serde_urlencoded::to_string(forms::query::<PaymentReturn>(&req))
                    .unwrap_or_default()
            )),
        },
        Some(Role::Adviser) => see_other("/advise"),
        Some(Role::Assessor) => see_other("/assess"),
        None => View::new("home", "Get an AI voucher for your business").render(&req),
    }
}

pub async fn sign_up_form(req: HttpRequest) -> HttpResponse {
    View::new("sign_up", "Create an account")
        .with("values", json!({"full_name": "", "email": ""}))
        .render(&req)
}

/// The sign-up form. The password is read as typed: spaces may be part of it.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignUpForm {
    csrf: Trimmed,
    full_name: Trimmed,
    email: Trimmed,
    password: String,
}

/// The sign-in form. The password is read as typed: spaces may be part of it.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInForm {
    csrf: Trimmed,
    /// The page to go back to, from the sign-in address.
    next: Trimmed,
    email: Trimmed,
    password: String,
}

posted!(SignUpForm, SignInForm);

pub async fn sign_up(req: HttpRequest, web::Form(form): web::Form<SignUpForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let body = json!({
        "full_name": form.full_name,
        "email": form.email,
        "password": form.password,
    });
    let state = page!(api::state(&req));
    let registered = api::with_input(&body, |b| accounts::register(&state, b)).await;
    let answer = page!(api::answer(&req, registered));
    if let Answer::Refused { .. } = answer {
        return View::new("sign_up", "Create an account")
            .with(
                "values",
                json!({"full_name": body["full_name"], "email": body["email"]}),
            )
            .errors(answer.field_errors(&|p| p.to_string()))
            .render(&req);
    }
    sign_in_as(&req, &body["email"], &body["password"], "/portal").await
}

/// The sign-in address's query: the page to go back to.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInQuery {
    next: String,
}

pub async fn sign_in_form(req: HttpRequest) -> HttpResponse {
    let next = forms::query::<SignInQuery>(&req).next;
    View::new("sign_in", "Sign in")
        .with("values", json!({"email": "", "next": next}))
        .render(&req)
}

/// Only a path of this service may be returned to after signing in.
fn safe_next(next: &str) -> Option<&str> {
    // A path and query of plain characters: no `//`, backslash, whitespace or control
    // character a browser might read as another site.
    let plain = next
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.?=&%".contains(&b));
    (plain && next.starts_with('/') && !next.starts_with("//")).then_some(next)
}

pub async fn sign_in(req: HttpRequest, web::Form(form): web::Form<SignInForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let next = safe_next(&form.next).unwrap_or("").to_string();
    sign_in_as(&req, &json!(form.email), &json!(form.password), &next).await
}

async fn sign_in_as(
    req: &HttpRequest,
    email: &Value,
    password: &Value,
    next: &str,
) -> HttpResponse {
    let body = json!({"email": email, "password": password});
    let form_error = |status: StatusCode, message: String| {
        View::new("sign_in", "Sign in")
            .with("values", json!({"email": email, "next": next}))
            .errors(vec![FieldError {
                id: "email".into(),
                message,
            }])
            .status(status)
            .render(req)
    };
    let state = page!(api::state(req));
    let client = api::client(req);
    let token = match api::with_input(&body, |b| accounts::login(&state, client, b)).await {
        Ok(t) => t,
        Err(ApiError::InvalidCredentials | ApiError::Validation(_)) => {
            return form_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Enter a correct email address and password".into(),
            )
        }
        Err(ApiError::TooManyRequests { retry_after_secs }) => {
            let mut resp = form_error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "You have tried to sign in too many times. Wait {} and try again, or reset your password",
                    minutes(retry_after_secs)
                ),
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_secs),
            );
            return resp;
        }
        Err(e) => {
            return match api::answer(req, Err::<(), _>(e)) {
                Err(f) => f.into_response(),
                Ok(_) => form_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Enter a correct email address and password".into(),
                ),
            }
        }
    };
    let (access, ttl) = (token.access_token.as_str(), token.expires_in);
    let signed_in = voucherd_api::auth::authenticate(&state, access)
        .await
        .ok()
        .flatten();
    let to = match (next, signed_in) {
        (_, Some(u)) if u.role == Role::Applicant && !u.email_verified => "/verify-email".into(),
        (n, _) if !n.is_empty() => n.to_string(),
        (_, Some(u)) => home_of(u.role).into(),
        (_, None) => "/".into(),
    };
    let mut resp = see_other(&to);
    session::start(req, &mut resp, access, ttl);
    resp
}

/// Where a role starts after signing in.
pub(crate) fn home_of(role: Role) -> &'static str {
    match role {
        Role::Admin => "/console",
        Role::Applicant => "/portal",
        Role::Adviser => "/advise",
        Role::Assessor => "/assess",
    }
}

/// A wait in words: "1 minute", "3 minutes".
fn minutes(secs: u64) -> String {
    match secs.div_ceil(60).max(1) {
        1 => "1 minute".into(),
        n => format!("{n} minutes"),
    }
}

/// Signs out: the session ends on the server (every instance), then the cookie goes.
pub async fn sign_out(req: HttpRequest, web::Form(form): web::Form<ButtonForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    if let Ok(Core { state, user }) = api::core(&req) {
        // Already ended or expired: the cookie goes all the same.
        if let Err(e) = accounts::logout(&state, &user).await {
            tracing::warn!(error = %e, "a session could not be ended on signing out");
        }
    }
    let mut resp = see_other("/");
    session::end(&req, &mut resp);
    resp
}

/// An applicant who has not confirmed their email address is sent to do so first: they may
/// not apply until they have.
fn unverified(viewer: &Viewer) -> Option<HttpResponse> {
    viewer
        .0
        .as_ref()
        .filter(|u| !u.email_verified)
        .map(|_| see_other("/verify-email"))
}

pub async fn dashboard(req: HttpRequest, viewer: Viewer) -> HttpResponse {
    if let Some(r) = unverified(&viewer) {
        return r;
    }
    let Core { state, user } = page!(api::core(&req));
    let me = page!(api::must(&req, accounts::me(&state, &user).await));
    let q = vouchers::VoucherQuery {
        limit: Some(50),
        ..Default::default()
    };
    let vouchers = page!(api::must(&req, vouchers::list(&state, &user, q).await));
    let q = applications::ListQuery {
        limit: Some(50),
        ..Default::default()
    };
    let apps = page!(api::must(&req, applications::list(&state, &user, q).await));
    let apps: Vec<Value> = apps
        .data
        .iter()
        .map(|a| {
            json!({
                "id": a.id, "reference": a.reference, "company_name": a.company_name,
                "company_number": a.company_number,
                "tag": tag(a.status.as_str()), "submitted": date(a.created_at),
            })
        })
        .collect();
    let vouchers: Vec<Value> = vouchers
        .iter()
        .map(|v| {
            json!({
                "id": v.id, "reference": v.reference, "company_number": v.company_number,
                "company_name": v.company_name, "available": v.available,
                "granted": v.granted, "expires": date(v.expires_at),
                "tag": tag(v.status.as_str()),
            })
        })
        .collect();
    let outcome = forms::query::<PaymentReturn>(&req).result;
    let mut view = View::new("dashboard", "Your applications and vouchers");
    match outcome.as_deref() {
        Some("success") => {
            view = view.banner(
                "Thank you: your payment was taken. It appears here once Stripe confirms it, usually within a minute.",
                true,
            )
        }
        Some("cancelled") => view = view.banner("The payment was cancelled: nothing was taken.", false),
        _ => {}
    }
    view.with("name", json!(me.full_name))
        .with("applications", Value::Array(apps))
        .with("vouchers", Value::Array(vouchers))
        .render(&req)
}

/// An application's eligibility rule results, as rows: rule, tag, reason.
pub fn rule_results(checks: &[RuleResult]) -> Value {
    checks
        .iter()
        .map(|c| {
            json!({
                "rule": rule_title(&c.rule),
                "tag": tag(if c.passed { "passed" } else { "failed" }),
                "reason": c.reason,
            })
        })
        .collect()
}

/// Checks a form's `region` and `sic_code` answers as the API will.
pub fn check_region_and_sic(region: &str, sic_code: &str, who: &str, errors: &mut Vec<FieldError>) {
    if Region::parse(region).is_err() {
        errors.push(err(
            "region",
            format!("Select the region where {who} is based"),
        ));
    }
    if SicCode::parse(sic_code).is_err() {
        errors.push(err(
            "sic_code",
            "Enter a UK SIC 2007 code from the Companies House list, like 62012",
        ));
    }
}

/// A time from the core as the UK day it falls on: "27 November 2026".
pub fn date(t: Timestamp) -> String {
    crate::format::date(t.0)
}

/// A time from the core as UK time: "10 March 2027, 5:00pm".
pub fn date_time(t: Timestamp) -> String {
    crate::format::date_time(t.0)
}

/// The application form, as posted from the form or from its check-answers page, which
/// sends every answer back with each date both whole and in its parts. It serializes as the
/// form's answers, to show back or to send on.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct ApplicationForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    /// Sent (naming the answer) when the applicant asked to change an answer.
    #[serde(skip_serializing)]
    change: Option<String>,
    company_number: Trimmed,
    company_name: Trimmed,
    employees: Trimmed,
    annual_turnover: Trimmed,
    balance_sheet_total: Trimmed,
    region: Trimmed,
    sic_code: Trimmed,
    trading_since: Trimmed,
    trading_since_day: Trimmed,
    trading_since_month: Trimmed,
    trading_since_year: Trimmed,
    use_case: Trimmed,
    university_spin_off: Trimmed,
    subsidy_provider: Trimmed,
    subsidy_amount: Trimmed,
    subsidy_awarded_on: Trimmed,
    subsidy_awarded_on_day: Trimmed,
    subsidy_awarded_on_month: Trimmed,
    subsidy_awarded_on_year: Trimmed,
}

posted!(ApplicationForm);

impl ApplicationForm {
    /// The answers in the form's order, each with its input's name and its label (for the
    /// check-answers page).
    fn labelled(&self) -> [(&'static str, &'static str, &str); 13] {
        [
            (
                "company_number",
                "Company registration number",
                &self.company_number,
            ),
            ("company_name", "Company name", &self.company_name),
            ("employees", "Number of employees", &self.employees),
            (
                "annual_turnover",
                "Annual turnover (£)",
                &self.annual_turnover,
            ),
            (
                "balance_sheet_total",
                "Balance sheet total (£)",
                &self.balance_sheet_total,
            ),
            ("region", "Region", &self.region),
            ("sic_code", "SIC code", &self.sic_code),
            ("trading_since", "Trading since", &self.trading_since),
            ("use_case", "What you will use AI for", &self.use_case),
            (
                "university_spin_off",
                "University spin-off",
                &self.university_spin_off,
            ),
            (
                "subsidy_provider",
                "Other public funding: provider",
                &self.subsidy_provider,
            ),
            (
                "subsidy_amount",
                "Other public funding: amount (£)",
                &self.subsidy_amount,
            ),
            (
                "subsidy_awarded_on",
                "Other public funding: date awarded",
                &self.subsidy_awarded_on,
            ),
        ]
    }

    /// The form with each GOV.UK date input's day, month and year put together as the service
    /// takes a date (`2019-03-01`), or, when only the date came (shown back from the check
    /// page), split into its parts for the form.
    fn with_dates(mut self) -> ApplicationForm {
        join_date(
            &mut self.trading_since,
            [
                &mut self.trading_since_day,
                &mut self.trading_since_month,
                &mut self.trading_since_year,
            ],
        );
        join_date(
            &mut self.subsidy_awarded_on,
            [
                &mut self.subsidy_awarded_on_day,
                &mut self.subsidy_awarded_on_month,
                &mut self.subsidy_awarded_on_year,
            ],
        );
        self
    }
}

/// A date input's `date` from its day, month and year when any was given (a date that is not
/// one stays as typed, and is refused), else its parts from the whole `date`.
fn join_date(date: &mut Trimmed, [day, month, year]: [&mut Trimmed; 3]) {
    if [&day, &month, &year].iter().any(|p| !p.is_empty()) {
        let joined = match (
            day.parse::<u32>(),
            month.parse::<u32>(),
            year.parse::<i32>(),
        ) {
            (Ok(d), Ok(m), Ok(y)) if year.len() == 4 => format!("{y:04}-{m:02}-{d:02}"),
            _ => format!("{year}-{month}-{day}"),
        };
        *date = Trimmed::new(joined);
    } else if let Ok(d) = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") {
        *day = Trimmed::new(d.format("%-d").to_string());
        *month = Trimmed::new(d.format("%-m").to_string());
        *year = Trimmed::new(d.format("%Y").to_string());
    }
}

/// The eligibility rules, explained with the programme's own thresholds.
fn rules(req: &HttpRequest) -> Option<applications::EligibilityLimits> {
    api::state(req)
        .ok()
        .map(|s| applications::eligibility_limits(&s))
}

/// A region among the form's options.
#[derive(serde::Serialize)]
pub(crate) struct RegionChoice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// Every region as the forms offer them, `selected` chosen.
pub(crate) fn regions(selected: &str) -> Vec<RegionChoice> {
    Region::ALL
        .iter()
        .map(|r| RegionChoice {
            value: r.as_str(),
            label: r.name(),
            selected: r.as_str() == selected,
        })
        .collect()
}

fn apply_view(req: &HttpRequest, form: &ApplicationForm, errors: Vec<FieldError>) -> HttpResponse {
    let spin = form.university_spin_off == "yes";
    View::new("apply", "Apply for an AI voucher")
        .with("values", form)
        .with("regions", regions(&form.region))
        .with("spin_off", Value::Bool(spin))
        .with("rules", rules(req))
        .back("/portal")
        .errors(errors)
        .render(req)
}

pub async fn apply_form(req: HttpRequest, viewer: Viewer) -> HttpResponse {
    if let Some(r) = unverified(&viewer) {
        return r;
    }
    apply_view(&req, &ApplicationForm::default(), Vec::new())
}

/// An error of the form's field `id`.
pub(crate) fn err(id: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        id: id.into(),
        message: message.into(),
    }
}

/// Checks each answer as the API will, so mistakes show beside their field before the
/// check-answers step; the API checks everything again when the application is sent.
fn check_answers(form: &ApplicationForm) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if CompanyNumber::parse(&form.company_number).is_err() {
        errors.push(err(
            "company_number",
            "Enter a company registration number, like 01234567 or SC123456",
        ));
    }
    if form.company_name.is_empty() {
        errors.push(err("company_name", "Enter the company name"));
    }
    match form.employees.as_str() {
        "" => errors.push(err("employees", "Enter the number of employees")),
        n if n.parse::<u32>().is_err() => errors.push(err(
            "employees",
            "Enter the number of employees in digits, like 12",
        )),
        _ => {}
    }
    for (name, what, typed) in [
        ("annual_turnover", "annual turnover", &form.annual_turnover),
        (
            "balance_sheet_total",
            "balance sheet total",
            &form.balance_sheet_total,
        ),
    ] {
        if Money::parse(&tidy_money(typed)).is_err() {
            errors.push(err(
                name,
                format!("Enter the {what} in pounds, like 900000"),
            ));
        }
    }
    check_region_and_sic(&form.region, &form.sic_code, "the company", &mut errors);
    if chrono::NaiveDate::parse_from_str(&form.trading_since, "%Y-%m-%d").is_err() {
        errors.push(err(
            "trading_since",
            "Enter the date the company started trading as a day, month and year, like 1 3 2019",
        ));
    }
    let use_case = form.use_case.chars().count();
    if !(20..=4000).contains(&use_case) {
        errors.push(err(
            "use_case",
            "Describe what you will use AI for in 20 to 4000 characters",
        ));
    }
    if !matches!(form.university_spin_off.as_str(), "yes" | "no") {
        errors.push(err(
            "university_spin_off",
            "Select yes if the company is a university spin-off",
        ));
    }
    check_subsidy(form, &mut errors);
    errors
}

/// Checks the other public funding declared, when any of its three answers is given.
fn check_subsidy(form: &ApplicationForm, errors: &mut Vec<FieldError>) {
    let any_subsidy = [
        &form.subsidy_provider,
        &form.subsidy_amount,
        &form.subsidy_awarded_on,
    ]
    .iter()
    .any(|f| !f.is_empty());
    if any_subsidy {
        if form.subsidy_provider.is_empty() {
            errors.push(err(
                "subsidy_provider",
                "Enter who gave the other public funding",
            ));
        }
        if Money::parse(&tidy_money(&form.subsidy_amount)).is_err() {
            errors.push(err(
                "subsidy_amount",
                "Enter the amount of other public funding in pounds",
            ));
        }
        if chrono::NaiveDate::parse_from_str(&form.subsidy_awarded_on, "%Y-%m-%d").is_err() {
            errors.push(err(
                "subsidy_awarded_on",
                "Enter the date it was awarded as a day, month and year, like 1 6 2025",
            ));
        }
    }
}

/// Posted from the form: answers checked, then shown back for checking (or the form again,
/// with its errors, or when the applicant asked to change an answer).
pub async fn apply_check(
    req: HttpRequest,
    web::Form(form): web::Form<ApplicationForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let form = form.with_dates();
    if form.change.is_some() {
        return apply_view(&req, &form, Vec::new());
    }
    let mut errors = check_answers(&form);
    // A company whose number is held is told so here, not after it has confirmed its answers.
    if let Ok(number) = CompanyNumber::parse(&form.company_number) {
        let state = page!(api::state(&req));
        let taken = applications::company_number_taken(&state, &number).await;
        if page!(api::must(&req, taken)) {
            errors.push(err(
                "company_number",
                "This company already holds a voucher or an approved application, so it cannot apply again until that voucher ends",
            ));
        }
    }
    if !errors.is_empty() {
        return apply_view(&req, &form, errors);
    }
    // Each answer's "Change" posts every answer back to the form, at that field.
    let hidden = forms::hidden_inputs(&form);
    let rows: Vec<Value> = form
        .labelled()
        .into_iter()
        .filter(|(_, _, value)| !value.is_empty())
        .map(|(name, label, value)| {
            let shown = match name {
                "region" => region_name(value).to_string(),
                "university_spin_off" => if value == "yes" { "Yes" } else { "No" }.to_string(),
                "annual_turnover" | "balance_sheet_total" | "subsidy_amount" => {
                    crate::format::pounds(value)
                }
                "trading_since" | "subsidy_awarded_on" => crate::format::when(value),
                _ => value.to_string(),
            };
            json!({
                "key": label, "value": shown, "field": name,
                "lower_key": label.to_lowercase(), "hidden": hidden,
            })
        })
        .collect();
    View::new(
        "apply_check",
        "Check your answers before sending your application",
    )
    .with("rows", Value::Array(rows))
    .with("values", &form)
    .render(&req)
}

fn application_body(form: &ApplicationForm) -> Value {
    let declarations = if form.subsidy_provider.is_empty() {
        json!([])
    } else {
        json!([{
            "provider": form.subsidy_provider,
            "amount": tidy_money(&form.subsidy_amount),
            "awarded_on": form.subsidy_awarded_on,
        }])
    };
    json!({
        "company_number": form.company_number,
        "company_name": form.company_name,
        "employees": form.employees.parse::<u32>().unwrap_or(0),
        "annual_turnover": tidy_money(&form.annual_turnover),
        "balance_sheet_total": tidy_money(&form.balance_sheet_total),
        "region": form.region,
        "sic_code": form.sic_code,
        "trading_since": form.trading_since,
        "use_case": form.use_case,
        "university_spin_off": form.university_spin_off == "yes",
        "subsidy_declarations": declarations,
    })
}

/// An API field path, as the form's field id.
fn form_field(path: &str) -> String {
    match path {
        p if p.starts_with("subsidy_declarations") => match p.rsplit('.').next() {
            Some("amount") => "subsidy_amount".into(),
            Some("awarded_on") => "subsidy_awarded_on".into(),
            _ => "subsidy_provider".into(),
        },
        p => p.to_string(),
    }
}

pub async fn apply_submit(
    req: HttpRequest,
    web::Form(form): web::Form<ApplicationForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let form = form.with_dates();
    let Core { state, user } = page!(api::core(&req));
    let body = application_body(&form);
    let sent = api::with_input(&body, |b| applications::submit(&state, &user, b)).await;
    match page!(api::answer(&req, sent)) {
        Answer::Ok(app) => see_other(&format!("/portal/applications/{}?sent=1", app.id)),
        refused => {
            let errors = refused.field_errors(&form_field);
            apply_view(&req, &form, errors)
        }
    }
}

/// What has happened to an application, in words, beside its rule results.
fn outcome(a: &ApplicationView) -> &'static str {
    match a.status {
        ApplicationStatus::Ineligible => "Your business did not meet every rule, so the application cannot be approved. The reasons are below: if one is wrong, correct it and apply again.",
        ApplicationStatus::Submitted => "Your business met every rule. An administrator will decide the application, and we will email you when they have.",
        ApplicationStatus::AwaitingSecondApproval => "Your business met every rule and an administrator approved the application. A second administrator confirms approvals of this size before the voucher is granted.",
        ApplicationStatus::Approved => "Your business met every rule and the application was approved: your voucher is ready.",
        ApplicationStatus::Rejected => "Your business met every rule, but an administrator rejected the application. Their reason is above.",
    }
}

pub async fn application(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let id = ApplicationId::new(path.into_inner());
    let Core { state, user } = page!(api::core(&req));
    let a = page!(api::must(&req, applications::get(&state, &user, &id).await));
    let checks = rule_results(&a.eligibility.checks);
    let sent = req.query_string().contains("sent=1");
    let mut view = View::new("application", format!("Application for {}", a.company_name))
        .with(
            "application",
            json!({
                "id": a.id, "reference": a.reference, "company_name": a.company_name,
                "company_number": a.company_number, "region": region_name(&a.region),
                "tag": tag(a.status.as_str()),
                "eligible": a.eligibility.eligible,
                "submitted": date(a.created_at),
                "decision_reason": a.decision.as_ref().map(|d| &d.reason),
                "voucher_id": a.voucher_id,
                "outcome": outcome(&a),
            }),
        )
        .with("checks", checks)
        .back("/portal");
    if sent {
        view = match a.status {
            ApplicationStatus::Ineligible => view.banner(
                "Application sent. Your business did not meet every rule, so it cannot be approved: the reasons are below.",
                false,
            ),
            _ => view.banner(
                "Application sent. We will email you when it has been decided.",
                true,
            ),
        };
    }
    view.render(&req)
}

/// A chart of bars, drawn as SVG on the server: each bar with its label above it and its
/// value beside it. Drawn 288 units wide, the content width of the narrowest phone it must
/// reflow on (320 CSS pixels less the page's margins), so its 14-unit text stays 14 pixels.
fn bar_chart(title: &str, bars: &[(String, i64)]) -> Value {
    const WIDTH: i64 = 288;
    const BAR_MAX: i64 = 190;
    const ROW: i64 = 44;
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let height = (bars.len() as i64 * ROW + 6).max(40);
    let mut svg = format!(
        r#"<svg class="voucherd-chart" role="img" aria-labelledby="{id}-title" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title id="{id}-title">{title}</title>"#,
        id = title.to_lowercase().replace(' ', "-"),
        title = escape(title),
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = i as i64 * ROW;
        let width = (BAR_MAX * value / max).max(1);
        svg.push_str(&format!(
            r##"<text x="0" y="{ty}">{label}</text><rect x="0" y="{by}" width="{width}" height="16" fill="#1d70b8"/><text x="{tx}" y="{vy}">{money}</text>"##,
            ty = y + 15,
            by = y + 22,
            vy = y + 35,
            label = escape(label),
            tx = width + 6,
            money = escape(&voucherd_domain::money::format_pounds_display(*value)),
        ));
    }
    svg.push_str("</svg>");
    Value::String(svg)
}

/// A chart and, for those who cannot see it, the same figures as table rows.
fn chart(title: &str, bars: Vec<(String, i64)>) -> Value {
    if bars.is_empty() {
        Value::Null
    } else {
        json!({
            "svg": bar_chart(title, &bars),
            "title": title,
            "rows": bars
                .iter()
                .map(|(label, v)| json!({"label": label, "amount": voucherd_domain::money::format_micros(*v)}))
                .collect::<Vec<_>>(),
        })
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub async fn voucher(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    voucher_view(&req, &VoucherId::new(path.into_inner()), Vec::new(), None).await
}

async fn voucher_view(
    req: &HttpRequest,
    id: &VoucherId,
    errors: Vec<FieldError>,
    banner: Option<(String, bool)>,
) -> HttpResponse {
    let Core { state, user } = page!(api::core(req));
    let v = page!(api::must(req, vouchers::get(&state, &user, id).await));
    let keys = page!(api::must(req, vouchers::list_keys(&state, &user, id).await));
    let usage = Page {
        limit: Some(500),
        offset: None,
    };
    let usage = page!(api::must(
        req,
        vouchers::usage(&state, &user, id, usage).await
    ));
    let settings = payments::settings(&state);
    // What the organisation bought, and its latest top-ups, beside the form to buy more.
    let purchased = if settings.enabled {
        page!(purchased_view(req, &state, &user).await)
    } else {
        Value::Null
    };
    let (usage_rows, charts) = usage_view(&usage, &keys);
    let keys = key_rows(&keys);
    let mut nonce = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let mut view = View::new("voucher", format!("Voucher for {}", v.company_name))
        .with("nonce", json!(hex::encode(nonce)))
        .with("usage", Value::Array(usage_rows))
        .with(
            "voucher",
            json!({
                "id": v.id, "reference": v.reference,
                "granted": v.granted, "spent": v.spent, "held": v.held,
                "available": v.available, "expires": date(v.expires_at),
                "tag": tag(v.status.as_str()),
                "awaiting_contribution": v.status == VoucherStatus::AwaitingContribution,
                "contribution": v.contribution.as_ref().map(|c| c.amount),
            }),
        )
        .with("keys", Value::Array(keys))
        .with("charts", charts)
        .with("payments", json!(settings))
        .with("purchased", purchased)
        .back("/portal")
        .errors(errors);
    if let Some((text, success)) = banner {
        view = view.banner(text, success);
    }
    view.render(req)
}

/// What the organisation bought and its latest ten top-ups, for the voucher page.
async fn purchased_view(
    req: &HttpRequest,
    state: &AppState,
    user: &AuthUser,
) -> Result<Value, Failure> {
    let recent = Page {
        limit: Some(10),
        offset: None,
    };
    let t = api::must(req, payments::list_top_ups(state, user, recent).await)?;
    let rows: Vec<Value> = t
        .data
        .iter()
        .map(|p| json!({"amount": p.amount, "tag": tag(p.status.as_str()), "at": p.created_at}))
        .collect();
    Ok(json!({"credit": t.purchased_credit, "top_ups": rows}))
}

/// The voucher's usage as a table per key and model, and its charts of spend per day and per
/// model.
fn usage_view(usage: &[UsageView], keys: &[KeyView]) -> (Vec<Value>, Value) {
    let mut by_day: BTreeMap<chrono::NaiveDate, i64> = BTreeMap::new();
    let mut by_model: BTreeMap<&str, i64> = BTreeMap::new();
    // (key, model) → (requests, tokens in, tokens out, cost)
    let mut by_key: BTreeMap<(&str, &str), (i64, i64, i64, i64)> = BTreeMap::new();
    for u in usage {
        let cost = u.cost.micros();
        *by_day.entry(u.created_at.0.date()).or_default() += cost;
        *by_model.entry(&u.model).or_default() += cost;
        let row = by_key.entry((u.key_id.as_str(), &u.model)).or_default();
        row.0 += 1;
        row.1 += u.prompt_tokens;
        row.2 += u.completion_tokens;
        row.3 += cost;
    }
    let names: HashMap<&str, &str> = keys
        .iter()
        .map(|k| (k.id.as_str(), k.name.as_str()))
        .collect();
    let usage_rows: Vec<Value> = by_key
        .into_iter()
        .map(|((key, model), (n, input, output, cost))| {
            json!({
                "key": names.get(key).copied().unwrap_or(key), "model": model, "requests": n,
                "input": input, "output": output,
                "cost": voucherd_domain::money::format_micros(cost),
            })
        })
        .collect();
    let charts = Value::Array(
        [
            chart(
                "Spend per day",
                by_day
                    .into_iter()
                    .map(|(d, v)| (d.format("%-d %B %Y").to_string(), v))
                    .collect(),
            ),
            chart(
                "Spend per model",
                by_model
                    .into_iter()
                    .map(|(m, v)| (m.to_string(), v))
                    .collect(),
            ),
        ]
        .into_iter()
        .filter(|c| !c.is_null())
        .collect(),
    );
    (usage_rows, charts)
}

/// The voucher's keys, for its page.
fn key_rows(keys: &[KeyView]) -> Vec<Value> {
    keys.iter()
        .map(|k| {
            json!({
                "id": k.id, "name": k.name, "prefix": k.prefix, "mode": k.mode,
                "tag": tag(k.status.as_str()),
                "active": k.usable(),
                "last_used": k.last_used_at.map(date).unwrap_or_default(),
                "created": date(k.created_at),
            })
        })
        .collect()
}

/// The whole statement as CSV, read page by page: one line per request, grant, bonus,
/// top-up, refund and forfeit, with the running balance.
pub async fn statement_csv(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let Core { state, user } = page!(api::core(&req));
    let id = VoucherId::new(path.into_inner());
    let mut csv = String::from("date,description,detail,paid_from,amount_gbp,balance_gbp,id\r\n");
    let cell = crate::format::csv_cell;
    let mut after: Option<String> = None;
    loop {
        let q = vouchers::StatementQuery {
            limit: Some(1000),
            after: after.take(),
        };
        let page = page!(api::must(
            &req,
            vouchers::statement(&state, &user, &id, q).await
        ));
        for l in &page.data {
            csv.push_str(
                &[
                    cell(&time(l.at.0)),
                    cell(l.description),
                    cell(&l.detail),
                    cell(l.source),
                    cell(&l.amount.to_string()),
                    cell(&l.balance.to_string()),
                    cell(&l.id),
                ]
                .join(","),
            );
            csv.push_str("\r\n");
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"voucher-{id}-statement.csv\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(csv)
}

fn key_created(req: &HttpRequest, voucher_id: &VoucherId, key: &NewKeyView) -> HttpResponse {
    View::new("key_created", "Your new API key")
        .with(
            "key",
            json!({"secret": key.key, "name": key.view.name, "prefix": key.view.prefix}),
        )
        .with("voucher_id", json!(voucher_id))
        .render(req)
}

/// The form for a new key on a voucher.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct KeyForm {
    csrf: Trimmed,
    name: Trimmed,
    mode: Trimmed,
}

/// The check before a key is revoked: the voucher to go back to and the key's name to show.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct RevokeKeyForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    #[serde(skip_serializing)]
    confirm: Trimmed,
    voucher_id: Trimmed,
    key_name: Trimmed,
}

/// A top-up of credit from the voucher's page, once per page shown (its `nonce`).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TopUpForm {
    csrf: Trimmed,
    voucher_id: Trimmed,
    nonce: Trimmed,
    amount: Trimmed,
}

posted!(KeyForm, TopUpForm);
posted!(confirmable: RevokeKeyForm);

pub async fn create_key(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<KeyForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let Core { state, user } = page!(api::core(&req));
    let id = VoucherId::new(path.into_inner());
    // The form's radios say `test` or `live`; anything else is the default, a live key.
    let mode = form.mode.parse::<KeyMode>().unwrap_or_default();
    let body = json!({"name": form.name, "mode": mode});
    let made = api::with_input(&body, |b| vouchers::create_key(&state, &user, &id, b)).await;
    match page!(api::answer(&req, made)) {
        Answer::Ok(key) => key_created(&req, &id, &key),
        refused => {
            let errors = refused.field_errors(&|p| format!("key_{p}"));
            voucher_view(&req, &id, errors, None).await
        }
    }
}

pub async fn revoke_key(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<RevokeKeyForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let voucher = VoucherId::new(form.voucher_id.to_string());
    let key_id = path.into_inner();
    if let Some(page) = unconfirmed(
        &req,
        &form,
        Confirm {
            title: "Revoke this key?",
            rows: vec![("Key", form.key_name.to_string())],
            text: "Programs using it stop working at once. This cannot be undone.",
            action: format!("/portal/keys/{key_id}/revoke"),
            button: "Revoke the key",
            warning: true,
            cancel: format!("/portal/vouchers/{voucher}"),
        },
    ) {
        return page;
    }
    let Core { state, user } = page!(api::core(&req));
    let revoked = vouchers::revoke_key(&state, &user, &key_id).await;
    match page!(api::answer(&req, revoked)) {
        Answer::Ok(()) => {
            let done = "The key was revoked: it no longer works.";
            voucher_view(&req, &voucher, Vec::new(), Some((done.into(), true))).await
        }
        refused => {
            let errors = refused.field_errors(&|p| p.to_string());
            voucher_view(&req, &voucher, errors, None).await
        }
    }
}

pub async fn rotate_key(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<VoucherForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let Core { state, user } = page!(api::core(&req));
    let voucher = VoucherId::new(form.voucher_id.to_string());
    let rotated = vouchers::rotate_key(&state, &user, &path, Default::default()).await;
    match page!(api::answer(&req, rotated)) {
        Answer::Ok(key) => key_created(&req, &voucher, &key),
        refused => {
            voucher_view(
                &req,
                &voucher,
                refused.field_errors(&|p| p.to_string()),
                None,
            )
            .await
        }
    }
}

/// Where Stripe's payment pages live: the only place the pages send anyone outside the service
/// (and the only one the CSP lets a form lead to).
const CHECKOUT: &str = "https://checkout.stripe.com/";

/// Sends the SME to Stripe's payment page, or back to the voucher with the error.
async fn to_checkout(
    req: &HttpRequest,
    voucher: &VoucherId,
    answer: Answer<Started>,
) -> HttpResponse {
    match answer {
        Answer::Ok(started) => match started.payment.checkout_url.as_deref() {
            Some(url) if url.starts_with(CHECKOUT) => see_other(url),
            Some(url) => {
                tracing::error!(%url, "a checkout address outside Stripe's was refused");
                render::message(
                    req,
                    StatusCode::BAD_GATEWAY,
                    "Sorry, there is a problem with the service",
                    "The payment could not be started. Nothing was taken.",
                )
            }
            None => {
                let text = "This payment is already being processed: it appears here once Stripe confirms it.";
                voucher_view(req, voucher, Vec::new(), Some((text.into(), false))).await
            }
        },
        refused => {
            let errors = refused.field_errors(&|p| format!("top_up_{p}"));
            voucher_view(req, voucher, errors, None).await
        }
    }
}

pub async fn top_up(req: HttpRequest, web::Form(form): web::Form<TopUpForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let Core { state, user } = page!(api::core(&req));
    let voucher = VoucherId::new(form.voucher_id.to_string());
    let body = json!({"amount": tidy_money(&form.amount)});
    // One payment per page shown: a double click does not start two.
    let started = match (
        IdempotencyKey::parse(&format!("page-{}", form.nonce)),
        voucherd_api::extract::input::<payments::TopUpRequest>(&body),
    ) {
        (Ok(key), Ok(body)) => payments::create_top_up(&state, &user, Some(key), body).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let answer = page!(api::answer(&req, started));
    to_checkout(&req, &voucher, answer).await
}

pub async fn pay_contribution(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<ButtonForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let Core { state, user } = page!(api::core(&req));
    let id = VoucherId::new(path.into_inner());
    let started = payments::pay_contribution(&state, &user, &id).await;
    let answer = page!(api::answer(&req, started));
    to_checkout(&req, &id, answer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_joined_from_their_parts_or_split_into_them() {
        let typed: ApplicationForm = serde_urlencoded::from_str(
            "trading_since_day=1&trading_since_month=+3&trading_since_year=2019&subsidy_awarded_on=2025-06-01",
        )
        .unwrap();
        let form = typed.with_dates();
        assert_eq!(form.trading_since, "2019-03-01");
        assert_eq!(
            [
                form.subsidy_awarded_on_day.as_str(),
                &form.subsidy_awarded_on_month,
                &form.subsidy_awarded_on_year
            ],
            ["1", "6", "2025"]
        );
        assert!(form.change.is_none());
    }

    #[test]
    fn only_the_payment_s_outcome_goes_on_from_the_home_page() {
        let back: PaymentReturn =
            serde_urlencoded::from_str("result=success&next=%2F%2Fevil&payment=p1").unwrap();
        assert_eq!(
            serde_urlencoded::to_string(back).unwrap(),
            "result=success&payment=p1"
        );
    }
}
