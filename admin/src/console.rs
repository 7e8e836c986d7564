//! The administrators' console: the queue of applications with their rule results, decisions
//! with a confirmation step, the programme fund, the audit log and the job runs.

use crate::api::{self, Answer, Core, Failure};
use crate::forms::{self, posted, Confirmable, Trimmed};
use crate::portal::{
    csrf_refused, date, page, region_name, see_other, tag, tidy_money, unconfirmed, Confirm,
};
use crate::render::{self, FieldError, Shaped, View};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use voucherd_api::service::{
    applications, operations, prices, programme, reports, vouchers, IdempotencyKey,
};
use voucherd_api::views::{ApplicationView, SecondApprovalView};
use voucherd_domain::eligibility::rule_title;
use voucherd_domain::report_period::ReportKind;
use voucherd_domain::{ApplicationId, ApplicationStatus, CompanyNumber, VoucherId, VoucherStatus};

const STATUSES: [&str; 6] = [
    "submitted",
    "ineligible",
    "awaiting_second_approval",
    "approved",
    "rejected",
    "all",
];

/// Applications a queue page shows at once.
const QUEUE_PAGE: i64 = 50;

/// The queue's address: a status to list and a page, each read as text (anything unknown is
/// the default, leaving the other in force).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct QueueQuery {
    status: Option<String>,
    page: Option<String>,
}

/// The queue's status filter and page, from its address (anything unknown is the default).
fn queue_query(req: &HttpRequest) -> (&'static str, i64) {
    let q = forms::query::<QueueQuery>(req);
    let status = STATUSES
        .iter()
        .copied()
        .find(|s| q.status.as_deref() == Some(*s))
        .unwrap_or("submitted");
    let page = q
        .page
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| (1..=20_000).contains(p))
        .unwrap_or(1);
    (status, page)
}

/// The list the queue shows: waiting applications oldest first (who has waited longest is
/// decided first), decided ones newest first.
fn queue_list(status: &str, limit: i64, offset: i64) -> applications::ListQuery {
    let waiting = matches!(status, "submitted" | "awaiting_second_approval");
    applications::ListQuery {
        status: (status != "all").then(|| status.to_string()),
        order: Some(if waiting {
            applications::ListOrder::Oldest
        } else {
            applications::ListOrder::Newest
        }),
        limit: Some(limit),
        offset: Some(offset),
    }
}

/// The eligibility rules an application failed, by name.
fn failed_rules(a: &ApplicationView) -> String {
    let failed: Vec<&str> = a
        .eligibility
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| rule_title(&c.rule))
        .collect();
    if failed.is_empty() {
        "All passed".to_string()
    } else {
        format!("Failed: {}", failed.join(", "))
    }
}

/// A status as words: "awaiting_second_approval" → "awaiting second approval".
fn words(status: &str) -> String {
    status.replace('_', " ")
}

pub async fn queue(req: HttpRequest) -> HttpResponse {
    let (status, page) = queue_query(&req);
    let Core { state, user } = page!(api::core(&req));
    let q = queue_list(status, QUEUE_PAGE, (page - 1) * QUEUE_PAGE);
    let apps = page!(api::must(&req, applications::list(&state, &user, q).await));
    let rows: Vec<Value> = apps
        .data
        .iter()
        .map(|a| {
            json!({
                "id": a.id, "reference": a.reference, "company_name": a.company_name,
                "company_number": a.company_number, "region": region_name(&a.region),
                "tag": tag(a.status.as_str()),
                "rules": failed_rules(a),
                "submitted": date(a.created_at),
            })
        })
        .collect();
    let filters: Vec<Value> = STATUSES
        .iter()
        .map(|s| json!({"value": s, "label": words(s), "selected": *s == status}))
        .collect();
    let link = |at: i64| format!("/console?status={status}&page={}", at / QUEUE_PAGE + 1);
    let mut paging = render::paging(
        apps.offset,
        apps.data.len() as i64,
        QUEUE_PAGE,
        apps.total,
        &link,
    );
    paging["order"] = json!(
        if matches!(status, "submitted" | "awaiting_second_approval") {
            "oldest first"
        } else {
            "newest first"
        }
    );
    paging["csv"] = json!(format!("/console/applications.csv?status={status}"));
    View::new("console_queue", "Applications")
        .with("applications", Value::Array(rows))
        .with("filters", Value::Array(filters))
        .with("status", json!(words(status)))
        .with("status_value", json!(status))
        .with("paging", paging)
        .render(&req)
}

/// Most rows one CSV export holds.
const CSV_ROWS: i64 = 10_000;

/// The queue's applications with the chosen status as CSV, in the queue's order: reference,
/// company, number, region, status, rules, date sent, id.
pub async fn queue_csv(req: HttpRequest) -> HttpResponse {
    let (status, _) = queue_query(&req);
    let Core { state, user } = page!(api::core(&req));
    let mut csv = String::from("reference,company,company_number,region,status,rules,sent,id\r\n");
    let mut offset = 0;
    while offset < CSV_ROWS {
        let q = queue_list(status, 500, offset);
        let apps = page!(api::must(&req, applications::list(&state, &user, q).await));
        for a in &apps.data {
            let cells = [
                a.reference.clone(),
                a.company_name.clone(),
                a.company_number.clone(),
                region_name(&a.region).to_string(),
                words(a.status.as_str()),
                failed_rules(a),
                date(a.created_at),
                a.id.to_string(),
            ];
            let line: Vec<String> = cells.iter().map(|c| crate::format::csv_cell(c)).collect();
            csv.push_str(&line.join(","));
            csv.push_str("\r\n");
        }
        offset += 500;
        if offset >= apps.total {
            break;
        }
    }
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"applications-{status}.csv\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(csv)
}

async fn application_view(
    req: &HttpRequest,
    id: &ApplicationId,
    values: Value,
    errors: Vec<FieldError>,
    banner: Option<&str>,
) -> HttpResponse {
    let Core { state, user } = page!(api::core(req));
    let a = page!(api::must(req, applications::get(&state, &user, id).await));
    // Every form on the page reads its own answers; templates are strict, so each is present.
    let mut all = empty_decision();
    for (k, v) in [empty_second(), empty_ownership(), values]
        .iter()
        .filter_map(Value::as_object)
        .flatten()
    {
        all[k] = v.clone();
    }
    let values = all;
    let checks = crate::portal::rule_results(&a.eligibility.checks);
    let mut view = View::new(
        "console_application",
        format!("Application from {}", a.company_name),
    )
    .with(
        "application",
        json!({
            "id": a.id, "company_name": a.company_name, "company_number": a.company_number,
            "employees": a.employees, "annual_turnover": a.annual_turnover,
            "balance_sheet_total": a.balance_sheet_total,
            "region": region_name(&a.region), "sic_code": a.sic_code,
            "trading_since": a.trading_since, "use_case": a.use_case,
            "tag": tag(a.status.as_str()),
            "pending": a.status == ApplicationStatus::Submitted,
            "awaiting": a.status == ApplicationStatus::AwaitingSecondApproval,
            "eligible": a.eligibility.eligible,
            "decision_reason": a.decision.as_ref().map(|d| &d.reason),
            "reference": a.reference,
            "voucher_reference": a.voucher_reference,
            "submitted": date(a.created_at),
        }),
    )
    .with(
        "second_approval",
        a.second_approval
            .as_ref()
            .map_or(Value::Null, second_approval_view),
    )
    .with("ownership", ownership_view(&a))
    .with("checks", checks)
    .with("declarations", json!(a.subsidy_declarations))
    .with("values", values)
    .back("/console")
    .errors(errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// Whether the applicant was found to own the company, as the page shows it, with what may
/// still be done: ownership settled and the number released only while the application is
/// still to be decided (release: only without a voucher).
fn ownership_view(a: &ApplicationView) -> Value {
    let o = &a.ownership;
    let pending = matches!(
        a.status,
        ApplicationStatus::Submitted | ApplicationStatus::AwaitingSecondApproval
    );
    json!({
        "tag": match o.state {
            "confirmed" => json!({"text": "confirmed", "colour": "green"}),
            "refused" => json!({"text": "refused", "colour": "red"}),
            _ => json!({"text": "not checked", "colour": "yellow"}),
        },
        "text": match o.state {
            "confirmed" => "The applicant owns the company: checked by an administrator.",
            "refused" => "An administrator found that the applicant does not own the company.",
            _ => "Nobody has checked that the applicant owns the company. Until an administrator confirms it, this application does not stop other applications for the company. Approving it records your check.",
        },
        "by": o.by_name.as_ref().or(o.by.as_ref()), "at": o.at.map(date).unwrap_or_default(), "note": o.note,
        "holds_number": a.holds_company_number,
        "can_decide": pending,
        "can_release": pending && a.voucher_id.is_none(),
    })
}

/// The first approval of an application that needs two, as the page shows it.
fn second_approval_view(s: &SecondApprovalView) -> Value {
    json!({
        "requested_by": s.requested_by_name.clone().unwrap_or_else(|| s.requested_by.to_string()),
        "requested_at": date(s.requested_at),
        "reason": s.reason, "amount": s.amount, "total": s.total,
        "valid_days": s.valid_days,
        "outcome": s.outcome,
        "decided_by": s.decided_by_name.clone().or_else(|| s.decided_by.as_ref().map(ToString::to_string)),
    })
}

fn empty_decision() -> Value {
    json!({"decision": "", "amount": "", "valid_days": "", "reason": ""})
}

pub async fn application(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let q = req.query_string();
    let banner = if q.contains("ownership=confirmed") {
        Some("Ownership was confirmed: this application now holds the company's number.")
    } else if q.contains("ownership=refused") {
        Some("Ownership was refused: this application no longer holds the company's number and cannot be approved.")
    } else if q.contains("released=1") {
        Some("The company number was released: the application is rejected and the applicant has been told.")
    } else if q.contains("decided=second") {
        Some("The approval was recorded. Another administrator must confirm it before the voucher is granted.")
    } else if q.contains("decided=1") {
        Some("The decision was recorded and the applicant has been told.")
    } else {
        None
    };
    application_view(
        &req,
        &ApplicationId::new(path.into_inner()),
        empty_decision(),
        Vec::new(),
        banner,
    )
    .await
}

/// An administrator's decision on an application; shown back (as it serializes) with its
/// errors or for confirmation.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct DecisionForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    #[serde(skip_serializing)]
    confirm: Trimmed,
    decision: Trimmed,
    amount: Trimmed,
    valid_days: Trimmed,
    reason: Trimmed,
}

/// A second administrator's decision on an approval awaiting it.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct SecondApprovalForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    #[serde(skip_serializing)]
    confirm: Trimmed,
    second_decision: Trimmed,
    second_reason: Trimmed,
}

/// Whether the applicant owns the company (`yes` or `no`), with what was checked.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct OwnershipForm {
    csrf: Trimmed,
    ownership_confirmed: Trimmed,
    ownership_note: Trimmed,
}

/// Why a held company number is released.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct ReleaseForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    #[serde(skip_serializing)]
    confirm: Trimmed,
    release_reason: Trimmed,
}

posted!(OwnershipForm);
posted!(confirmable: DecisionForm, SecondApprovalForm, ReleaseForm);

/// First the decision is shown back for confirmation; only the confirmed form is sent.
pub async fn decide(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<DecisionForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let id = ApplicationId::new(path.into_inner());
    let decision = form.decision.as_str();
    let values = json!(form);
    let mut errors = Vec::new();
    if !matches!(decision, "approve" | "reject") {
        errors.push(FieldError {
            id: "decision".into(),
            message: "Select approve or reject".into(),
        });
    }
    if form.reason.is_empty() {
        errors.push(FieldError {
            id: "reason".into(),
            message: "Enter the reason for the decision".into(),
        });
    }
    if !errors.is_empty() {
        return application_view(&req, &id, values, errors, None).await;
    }
    if !form.confirmed() {
        return View::new(
            "console_confirm",
            "Check the decision before you confirm it",
        )
        .with("id", json!(id))
        .with("values", values)
        .with("approve", json!(decision == "approve"))
        .back(&format!("/console/applications/{id}"))
        .render(&req);
    }
    let mut body = json!({"decision": decision, "reason": form.reason});
    if decision == "approve" {
        if !form.amount.is_empty() {
            body["amount"] = json!(tidy_money(&form.amount));
        }
        if let Ok(days) = form.valid_days.parse::<u32>() {
            body["valid_days"] = json!(days);
        }
    }
    let Core { state, user } = page!(api::core(&req));
    let done = api::with_input(&body, |b| applications::decide(&state, &user, &id, b)).await;
    let answer = page!(api::answer(&req, done));
    match answer {
        Answer::Ok(a) => {
            let outcome = if a.application.status == ApplicationStatus::AwaitingSecondApproval {
                "second"
            } else {
                "1"
            };
            see_other(&format!("/console/applications/{id}?decided={outcome}"))
        }
        refused => {
            let errors = refused.field_errors(&|p| p.to_string());
            application_view(&req, &id, values, errors, None).await
        }
    }
}

/// Another administrator confirms or rejects an approval awaiting a second, after a check page.
pub async fn second_approval(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<SecondApprovalForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let id = ApplicationId::new(path.into_inner());
    let decision = form.second_decision.as_str();
    let values = json!(form);
    let errors = second_errors(&form);
    if !errors.is_empty() {
        return application_view(&req, &id, values, errors, None).await;
    }
    let confirming = decision == "confirm";
    if let Some(page) = unconfirmed(&req, &form, second_confirm(&form, &id, confirming)) {
        return page;
    }
    let body = json!({"decision": decision, "reason": form.second_reason});
    let Core { state, user } = page!(api::core(&req));
    let done = api::with_input(&body, |b| {
        applications::second_approval(&state, &user, &id, b)
    })
    .await;
    let answer = page!(api::answer(&req, done));
    match answer {
        Answer::Ok(_) => see_other(&format!("/console/applications/{id}?decided=1")),
        refused => {
            let errors = refused.field_errors(&|p| match p {
                "reason" => "second_reason".to_string(),
                "decision" => "second_decision".to_string(),
                other => other.to_string(),
            });
            application_view(&req, &id, values, errors, None).await
        }
    }
}

/// What must be corrected in a second approval's form: a decision and a reason.
fn second_errors(form: &SecondApprovalForm) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !matches!(form.second_decision.as_str(), "confirm" | "reject") {
        errors.push(FieldError {
            id: "second_decision".into(),
            message: "Select confirm or reject".into(),
        });
    }
    if form.second_reason.is_empty() {
        errors.push(FieldError {
            id: "second_reason".into(),
            message: "Enter the reason for your decision".into(),
        });
    }
    errors
}

/// The check page before a second administrator confirms or rejects the approval.
fn second_confirm(
    form: &SecondApprovalForm,
    id: &ApplicationId,
    confirming: bool,
) -> Confirm<'static> {
    Confirm {
        title: if confirming {
            "Check before you confirm the approval"
        } else {
            "Check before you reject the application"
        },
        rows: vec![
            (
                "Decision",
                if confirming {
                    "Confirm the approval"
                } else {
                    "Reject"
                }
                .to_string(),
            ),
            ("Reason", form.second_reason.to_string()),
        ],
        text: if confirming {
            "The voucher is granted at once and the money leaves the budget for good."
        } else {
            "The application is rejected and the applicant is told."
        },
        action: format!("/console/applications/{id}/second-approval"),
        button: if confirming {
            "Confirm the approval"
        } else {
            "Reject the application"
        },
        warning: !confirming,
        cancel: format!("/console/applications/{id}"),
    }
}

fn empty_second() -> Value {
    json!({"second_decision": "", "second_reason": ""})
}

fn empty_ownership() -> Value {
    json!({"ownership_confirmed": "", "ownership_note": "", "release_reason": ""})
}

/// An administrator confirms or refuses that the applicant owns the company, with a note.
pub async fn ownership(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<OwnershipForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let id = ApplicationId::new(path.into_inner());
    let confirmed = form.ownership_confirmed.as_str();
    let mut values = empty_ownership();
    values["ownership_confirmed"] = json!(confirmed);
    values["ownership_note"] = json!(form.ownership_note);
    let mut errors = Vec::new();
    if !matches!(confirmed, "yes" | "no") {
        errors.push(FieldError {
            id: "ownership_confirmed".into(),
            message: "Select whether the applicant owns the company".into(),
        });
    }
    if form.ownership_note.is_empty() {
        errors.push(FieldError {
            id: "ownership_note".into(),
            message: "Enter what you checked".into(),
        });
    }
    if !errors.is_empty() {
        return application_view(&req, &id, values, errors, None).await;
    }
    let body = json!({"confirmed": confirmed == "yes", "note": form.ownership_note});
    let Core { state, user } = page!(api::core(&req));
    let done = api::with_input(&body, |b| applications::ownership(&state, &user, &id, b)).await;
    let answer = page!(api::answer(&req, done));
    match answer {
        Answer::Ok(_) => see_other(&format!(
            "/console/applications/{id}?ownership={}",
            if confirmed == "yes" {
                "confirmed"
            } else {
                "refused"
            }
        )),
        refused => {
            let errors = refused.field_errors(&|p| match p {
                "note" => "ownership_note".to_string(),
                "confirmed" => "ownership_confirmed".to_string(),
                other => other.to_string(),
            });
            application_view(&req, &id, values, errors, None).await
        }
    }
}

/// Releases a squatted company number, after a check page: the application is rejected.
pub async fn release(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<ReleaseForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let id = ApplicationId::new(path.into_inner());
    let mut values = empty_ownership();
    values["release_reason"] = json!(form.release_reason);
    if form.release_reason.is_empty() {
        let errors = vec![FieldError {
            id: "release_reason".into(),
            message: "Enter why the number is released".into(),
        }];
        return application_view(&req, &id, values, errors, None).await;
    }
    if let Some(page) = unconfirmed(
        &req,
        &form,
        Confirm {
            title: "Check before you release the company number",
            rows: vec![("Reason", form.release_reason.to_string())],
            text: "The application is rejected with this reason, which the applicant is told, and its ownership of the company is recorded as refused. The company may then apply.",
            action: format!("/console/applications/{id}/release"),
            button: "Release the number and reject the application",
            warning: true,
            cancel: format!("/console/applications/{id}"),
        },
    ) {
        return page;
    }
    let body = json!({"reason": form.release_reason});
    let Core { state, user } = page!(api::core(&req));
    let done = api::with_input(&body, |b| applications::release(&state, &user, &id, b)).await;
    let answer = page!(api::answer(&req, done));
    match answer {
        Answer::Ok(_) => see_other(&format!("/console/applications/{id}?released=1")),
        refused => {
            let errors = refused.field_errors(&|p| match p {
                "reason" => "release_reason".to_string(),
                other => other.to_string(),
            });
            application_view(&req, &id, values, errors, None).await
        }
    }
}

pub async fn programme(req: HttpRequest) -> HttpResponse {
    programme_view(
        &req,
        json!({"amount": "", "reference": ""}),
        Vec::new(),
        None,
    )
    .await
}

async fn programme_view(
    req: &HttpRequest,
    values: Value,
    errors: Vec<FieldError>,
    banner: Option<&str>,
) -> HttpResponse {
    let Core { state, .. } = page!(api::core(req));
    let p = page!(api::must(req, programme::overview(&state).await));
    let lines = json!(p.budget_lines);
    let mut nonce = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let mut view = View::new("console_programme", "Programme fund")
        .with("nonce", json!(hex::encode(nonce)))
        .with("programme", json!(p))
        .with("lines", lines)
        .with("values", values)
        .errors(errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// A deposit into the programme fund, once per page shown (its `nonce`).
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct DepositForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    #[serde(skip_serializing)]
    confirm: Trimmed,
    nonce: Trimmed,
    amount: Trimmed,
    reference: Trimmed,
}

/// A move of money between budget lines (or a line and `programme_fund`), once per page
/// shown (its `nonce`).
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct MoveForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    #[serde(skip_serializing)]
    confirm: Trimmed,
    nonce: Trimmed,
    from: Trimmed,
    to: Trimmed,
    amount: Trimmed,
    reason: Trimmed,
}

posted!(confirmable: DepositForm, MoveForm);

pub async fn deposit(req: HttpRequest, web::Form(form): web::Form<DepositForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let values = json!({"amount": form.amount, "reference": form.reference});
    let body = json!({
        "amount": tidy_money(&form.amount),
        "reference": form.reference,
    });
    // Checked before it is shown back: "£abc" is the form's error, not a confirmation.
    let input = match api::checked::<programme::DepositRequest>(&body) {
        Ok(input) => input,
        Err(refused) => {
            let errors = refused.field_errors(&|p| p.to_string());
            return programme_view(&req, values, errors, None).await;
        }
    };
    if let Some(page) = unconfirmed(
        &req,
        &form,
        Confirm {
            title: "Check the deposit",
            rows: vec![
                ("Amount", crate::format::pounds(&form.amount)),
                ("Reference", form.reference.to_string()),
            ],
            text: "The money is added to the programme fund and recorded in the ledger for good.",
            action: "/console/programme/deposits".into(),
            button: "Confirm the deposit",
            warning: false,
            cancel: "/console/programme".into(),
        },
    ) {
        return page;
    }
    let Core { state, user } = page!(api::core(&req));
    let key = once_key(&form.nonce, "deposits");
    let done = programme::deposit(&state, &user, key, input).await;
    let answer = page!(api::answer(&req, done));
    match answer {
        Answer::Ok(_) => {
            programme_view(
                &req,
                json!({"amount": "", "reference": ""}),
                Vec::new(),
                Some("The deposit was recorded."),
            )
            .await
        }
        refused => {
            let errors = refused.field_errors(&|p| p.to_string());
            programme_view(&req, values, errors, None).await
        }
    }
}

/// Audit entries a page shows at once.
const AUDIT_PAGE: i64 = 50;

/// The audit log, newest first, 50 a page, with who acted by name.
/// The audit log's filters from a query string: a kind of subject and an action, each kept
/// only when the log holds it (anything else lists every entry).
struct AuditChoice {
    subject: Option<String>,
    action: Option<String>,
    page: i64,
}

/// The audit log's address, each part read as text (see [`AuditChoice`]).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AuditLogQuery {
    subject: Option<String>,
    action: Option<String>,
    page: Option<String>,
}

fn audit_choice(req: &HttpRequest, facets: &programme::AuditFacetsView) -> AuditChoice {
    let q = forms::query::<AuditLogQuery>(req);
    let pick =
        |chosen: Option<String>, known: &[String]| chosen.filter(|v| known.iter().any(|k| k == v));
    AuditChoice {
        subject: pick(q.subject, &facets.subject_types),
        action: pick(q.action, &facets.actions),
        page: q
            .page
            .and_then(|p| p.parse::<i64>().ok())
            .filter(|p| (1..=20_000).contains(p))
            .unwrap_or(1),
    }
}

impl AuditChoice {
    /// The filters as a query string (`subject=voucher&action=voucher.suspend`), for links.
    fn query(&self) -> String {
        let pairs: Vec<(&str, &str)> = [("subject", &self.subject), ("action", &self.action)]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
            .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

pub async fn audit(req: HttpRequest) -> HttpResponse {
    let Core { state, .. } = page!(api::core(&req));
    let facets = page!(api::must(&req, programme::audit_facets(&state).await));
    let choice = audit_choice(&req, &facets);
    let offset = (choice.page - 1) * AUDIT_PAGE;
    let q = programme::AuditQuery {
        subject_type: choice.subject.clone(),
        action: choice.action.clone(),
        limit: Some(AUDIT_PAGE),
        offset: Some(offset),
        ..Default::default()
    };
    let rows = page!(api::must(&req, programme::audit(&state, q).await));
    let total = page!(api::must(
        &req,
        programme::audit_count(&state, choice.subject.clone(), choice.action.clone()).await
    ));
    let filters = choice.query();
    let link = |at: i64| {
        let page = format!("page={}", at / AUDIT_PAGE + 1);
        if filters.is_empty() {
            format!("/console/audit?{page}")
        } else {
            format!("/console/audit?{filters}&{page}")
        }
    };
    let mut paging = render::paging(offset, rows.len() as i64, AUDIT_PAGE, total, &link);
    paging["csv"] = json!(if filters.is_empty() {
        "/console/audit.csv".to_string()
    } else {
        format!("/console/audit.csv?{filters}")
    });
    let options = |known: &[String], chosen: &Option<String>, words: &dyn Fn(&str) -> String| {
        known
            .iter()
            .map(|k| json!({"value": k, "label": words(k), "selected": chosen.as_deref() == Some(k.as_str())}))
            .collect::<Vec<Value>>()
    };
    View::new("console_audit", "Audit log")
        .with("entries", json!(rows))
        .with("paging", paging)
        .with(
            "subjects",
            json!(options(&facets.subject_types, &choice.subject, &|k| k
                .replace('_', " "))),
        )
        .with(
            "actions",
            json!(options(&facets.actions, &choice.action, &|k| k.to_string())),
        )
        .with("filtered", json!(!filters.is_empty()))
        .render(&req)
}

/// The whole audit log as CSV, newest first (up to 10,000 entries): when (UK time), who,
/// what, of which subject, and why.
pub async fn audit_csv(req: HttpRequest) -> HttpResponse {
    let Core { state, .. } = page!(api::core(&req));
    let facets = page!(api::must(&req, programme::audit_facets(&state).await));
    let choice = audit_choice(&req, &facets);
    let mut csv =
        String::from("when,who,action,subject_type,subject_id,subject_reference,reason,id\r\n");
    let mut offset = 0;
    while offset < CSV_ROWS {
        let q = programme::AuditQuery {
            subject_type: choice.subject.clone(),
            action: choice.action.clone(),
            limit: Some(500),
            offset: Some(offset),
            ..Default::default()
        };
        let rows = page!(api::must(&req, programme::audit(&state, q).await));
        for r in &rows {
            let who = match (&r.actor_name, &r.actor_id) {
                (Some(name), _) => name.clone(),
                (None, Some(_)) => "a deleted account".to_string(),
                (None, None) => "the service".to_string(),
            };
            let cells = [
                crate::format::date_time(r.created_at.0),
                who,
                r.action.clone(),
                r.subject_type.clone(),
                r.subject_id.clone(),
                r.subject_reference.clone().unwrap_or_default(),
                r.reason.clone().unwrap_or_default(),
                r.id.clone(),
            ];
            let line: Vec<String> = cells.iter().map(|c| crate::format::csv_cell(c)).collect();
            csv.push_str(&line.join(","));
            csv.push_str("\r\n");
        }
        if (rows.len() as i64) < 500 {
            break;
        }
        offset += 500;
    }
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"audit-log.csv\"",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(csv)
}

/// The job runs' address: the job whose runs to show.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct JobQuery {
    job: Option<String>,
}

/// A job's latest runs as CSV (up to 500, newest first), or every job's when none is named:
/// job, trigger, scheduled and started (UK time), finished, outcome, attempts, worker.
pub async fn jobs_csv(req: HttpRequest) -> HttpResponse {
    let Core { state, .. } = page!(api::core(&req));
    let job = forms::query::<JobQuery>(&req).job.filter(|j| !j.is_empty());
    let q = operations::RunsQuery {
        job: job.clone(),
        limit: Some(500),
    };
    let runs = match api::answer(&req, operations::runs(&state, q).await) {
        Ok(Answer::Ok(runs)) => runs,
        Ok(_) => return render::not_found(&req),
        Err(f) => return f.into_response(),
    };
    let mut csv =
        String::from("job,trigger,scheduled,started,finished,outcome,attempts,worker,id\r\n");
    for r in &runs {
        let cells = [
            r.job.clone(),
            r.trigger.to_string(),
            crate::format::date_time(r.scheduled_at.0),
            crate::format::date_time(r.started_at.0),
            r.finished_at
                .map(|t| crate::format::date_time(t.0))
                .unwrap_or_default(),
            r.outcome.to_string(),
            r.attempts.to_string(),
            r.worker_id.clone(),
            r.id.clone(),
        ];
        let line: Vec<String> = cells.iter().map(|c| crate::format::csv_cell(c)).collect();
        csv.push_str(&line.join(","));
        csv.push_str("\r\n");
    }
    let name = job.as_deref().unwrap_or("all");
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"job-runs-{name}.csv\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(csv)
}

/// The worker's jobs, each once with its runs and latest outcome, and the runs of the job
/// chosen (`?job=`): a job that runs every few seconds no longer buries the rest.
pub async fn jobs(req: HttpRequest) -> HttpResponse {
    let Core { state, .. } = page!(api::core(&req));
    let jobs = page!(api::must(&req, operations::jobs(&state).await));
    let chosen = forms::query::<JobQuery>(&req)
        .job
        .filter(|j| jobs.iter().any(|k| &k.job == j));
    let runs = match &chosen {
        Some(job) => {
            let q = operations::RunsQuery {
                job: Some(job.clone()),
                limit: Some(50),
            };
            page!(api::must(&req, operations::runs(&state, q).await))
        }
        None => Vec::new(),
    };
    let q = operations::LimitQuery { limit: Some(20) };
    let recs = page!(api::must(
        &req,
        operations::reconciliations(&state, q).await
    ));
    let jobs: Vec<Shaped<_, Value>> = jobs
        .iter()
        .map(|j| Shaped {
            view: j,
            added: json!({
                "tag": j.last_outcome.map(|o| tag(o.as_str())),
                "chosen": chosen.as_deref() == Some(j.job.as_str()),
            }),
        })
        .collect();
    let runs: Vec<Shaped<_, Value>> = runs
        .iter()
        .map(|r| Shaped {
            view: r,
            added: json!({ "tag": tag(r.outcome.as_str()) }),
        })
        .collect();
    let recs: Vec<Shaped<_, Value>> = recs
        .iter()
        .map(|r| Shaped {
            view: r,
            added: json!({
                "tag": tag(if r.balanced { "balanced" } else { "not balanced" }),
            }),
        })
        .collect();
    View::new("console_jobs", "Job runs and reconciliations")
        .with("jobs", jobs)
        .with("chosen", json!(chosen))
        .with("runs", runs)
        .with("reconciliations", recs)
        .render(&req)
}

/// The vouchers page's search: a reference, a company number or part of a name.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct VouchersQuery {
    company: Trimmed,
}

pub async fn vouchers(req: HttpRequest) -> HttpResponse {
    let company = forms::query::<VouchersQuery>(&req).company;
    vouchers_view(&req, &company, Vec::new(), None).await
}

async fn vouchers_view(
    req: &HttpRequest,
    company: &str,
    errors: Vec<FieldError>,
    banner: Option<&str>,
) -> HttpResponse {
    let Core { state, user } = page!(api::core(req));
    let mut q = json!({"limit": 200});
    // A reference finds its voucher (an application's, the voucher granted on it), a
    // registration number its company; anything else is a part of a name.
    if voucherd_domain::Reference::parse(company).is_ok() {
        q["reference"] = json!(company);
    } else if CompanyNumber::parse(company).is_ok() {
        q["company_number"] = json!(company);
    } else if !company.is_empty() {
        q["company_name"] = json!(company);
    }
    let listed = api::with_input(&q, |q| vouchers::list(&state, &user, q)).await;
    let (list, mut errors) = match page!(api::answer(req, listed)) {
        Answer::Ok(list) => (list, errors),
        refused => (Vec::new(), refused.field_errors(&|_| "company".to_string())),
    };
    errors.dedup_by(|a, b| a.id == b.id);
    let rows: Vec<Value> = list
        .iter()
        .map(|v| {
            json!({
                "id": v.id, "reference": v.reference, "company_number": v.company_number,
                "company_name": v.company_name, "granted": v.granted,
                "available": v.available, "expires": date(v.expires_at),
                "tag": tag(v.status.as_str()), "suspended": v.status == VoucherStatus::Suspended,
                "expired": v.status == VoucherStatus::Expired,
                "suspension_reason": v.suspension.as_ref().map(|s| &s.reason),
            })
        })
        .collect();
    let mut view = View::new("console_vouchers", "Vouchers")
        .with("vouchers", Value::Array(rows))
        .with("company", json!(company))
        .errors(errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// What the vouchers page's forms may do to a voucher.
#[derive(Clone, Copy, PartialEq, Eq)]
enum VoucherAction {
    Suspend,
    Reinstate,
    Expire,
}

impl VoucherAction {
    fn parse(s: &str) -> VoucherAction {
        match s {
            "suspend" => VoucherAction::Suspend,
            _ => VoucherAction::Reinstate,
        }
    }

    /// (confirmation title, what follows, button, done banner)
    fn words(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            VoucherAction::Suspend => (
                "Suspend this voucher?",
                "Its keys are refused at once, whatever would pay, until it is reinstated.",
                "Suspend the voucher",
                "The voucher is suspended: its keys are refused until it is reinstated.",
            ),
            VoucherAction::Reinstate => (
                "Reinstate this voucher?",
                "Its keys work again at once.",
                "Reinstate the voucher",
                "The voucher is reinstated: its keys work again.",
            ),
            VoucherAction::Expire => (
                "Expire this voucher now?",
                "Its keys stop at once and its remainder is forfeited as soon as no request holds part of it. This cannot be undone.",
                "Expire the voucher now",
                "The voucher has expired: its keys are refused and its remainder is forfeited.",
            ),
        }
    }
}

/// A suspension, reinstatement or expiry of a voucher from the vouchers page, with the search
/// to show again afterwards.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct SuspensionForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    #[serde(skip_serializing)]
    confirm: Trimmed,
    company: Trimmed,
    /// `suspend`, or anything else to reinstate.
    action: Trimmed,
    /// `yes` from the "Expire now" button.
    expire: Trimmed,
    reason: Trimmed,
}

posted!(confirmable: SuspensionForm);

/// Suspends, reinstates or expires a voucher, with the reason the form gives, after a
/// confirmation step.
pub async fn suspension(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<SuspensionForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let id = VoucherId::new(path.into_inner());
    // The "Expire now" button names itself; the hidden `action` says suspend or reinstate.
    let action = if form.expire == "yes" {
        VoucherAction::Expire
    } else {
        VoucherAction::parse(&form.action)
    };
    let (title, text, button, done) = action.words();
    let company = form.company.to_string();
    let body = json!({"reason": form.reason});
    // An empty reason is the form's error before anything is shown back.
    let input = match api::checked::<vouchers::SuspensionRequest>(&body) {
        Ok(input) => input,
        Err(refused) => {
            let errors = refused.field_errors(&|_| format!("reason-{id}"));
            return vouchers_view(&req, &company, errors, None).await;
        }
    };
    let Core { state, user } = page!(api::core(&req));
    let named = page!(api::must(&req, vouchers::get(&state, &user, &id).await));
    if let Some(page) = unconfirmed(
        &req,
        &form,
        Confirm {
            title,
            rows: vec![
                ("Voucher of", named.company_name.clone()),
                ("Reason", form.reason.to_string()),
            ],
            text,
            action: format!("/console/vouchers/{id}/suspension"),
            button,
            warning: action != VoucherAction::Reinstate,
            cancel: "/console/vouchers".into(),
        },
    ) {
        return page;
    }
    let done_to = match action {
        VoucherAction::Suspend => vouchers::set_suspension(&state, &user, &id, input, true).await,
        VoucherAction::Reinstate => {
            vouchers::set_suspension(&state, &user, &id, input, false).await
        }
        VoucherAction::Expire => vouchers::expire_now(&state, &user, &id, input).await,
    };
    let answer = page!(api::answer(&req, done_to));
    match answer {
        Answer::Ok(_) => vouchers_view(&req, &company, Vec::new(), Some(done)).await,
        refused => {
            let errors = refused.field_errors(&|_| format!("reason-{id}"));
            vouchers_view(&req, &company, errors, None).await
        }
    }
}

pub async fn prices(req: HttpRequest) -> HttpResponse {
    prices_view(
        &req,
        json!({"model": "", "input": "", "cached": "", "output": ""}),
        Vec::new(),
        None,
    )
    .await
}

async fn prices_view(
    req: &HttpRequest,
    values: Value,
    errors: Vec<FieldError>,
    banner: Option<&str>,
) -> HttpResponse {
    let Core { state, .. } = page!(api::core(req));
    let current = page!(api::must(req, prices::list(&state).await));
    let rows: Vec<Value> = current
        .iter()
        .map(|p| {
            json!({
                "model": p.model, "input": p.input_per_million,
                "cached": p.cached_input_per_million, "output": p.output_per_million,
                "from": date(p.effective_from), "version": p.version,
            })
        })
        .collect();
    let history = page!(api::must(req, prices::history(&state).await));
    let versions: Vec<Value> = history
        .iter()
        .map(|p| {
            json!({
                "model": p.model, "input": p.input_per_million,
                "cached": p.cached_input_per_million, "output": p.output_per_million,
                "from": p.effective_from, "scheduled": p.scheduled, "version": p.version,
            })
        })
        .collect();
    let mut view = View::new("console_prices", "Prices")
        .with("prices", Value::Array(rows))
        .with("versions", Value::Array(versions))
        .with("values", values)
        .errors(errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// A model's new price, per million tokens of each kind; shown back (as it serializes) with
/// its errors or for confirmation.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct PriceForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    #[serde(skip_serializing)]
    confirm: Trimmed,
    model: Trimmed,
    input: Trimmed,
    cached: Trimmed,
    output: Trimmed,
}

posted!(confirmable: PriceForm);

/// A new price version: now, or from a later date; earlier versions and what they priced stay.
pub async fn set_price(req: HttpRequest, web::Form(form): web::Form<PriceForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let values = json!(form);
    let model = form.model.as_str();
    if !model_name_valid(model) {
        let e = FieldError {
            id: "model".into(),
            message: "Enter the model's name, like gpt-4o-mini".into(),
        };
        return prices_view(&req, values, vec![e], None).await;
    }
    let body = json!({
        "input_per_million": tidy_money(&form.input),
        "cached_input_per_million": tidy_money(&form.cached),
        "output_per_million": tidy_money(&form.output),
    });
    // "£-1" is the form's error before anything is shown back.
    let input = match api::checked::<prices::SetPriceRequest>(&body) {
        Ok(input) => input,
        Err(refused) => {
            let errors = refused.field_errors(&price_field);
            return prices_view(&req, values, errors, None).await;
        }
    };
    let Core { state, user } = page!(api::core(&req));
    // A name no price has used yet makes a new model: said plainly, so a typo
    // (`gpt-4o-mni`) is seen before it is priced and offered to every key.
    let known = page!(api::must(&req, prices::history(&state).await))
        .iter()
        .any(|p| p.model == model);
    let model_row = if known {
        model.to_string()
    } else {
        format!("{model} (a new model: no price has used this name before)")
    };
    if let Some(page) = unconfirmed(&req, &form, price_confirm(&form, model_row, known)) {
        return page;
    }
    let done = prices::set(&state, &user, model, input).await;
    let answer = page!(api::answer(&req, done));
    match answer {
        Answer::Ok(_) => {
            prices_view(
                &req,
                json!({"model": "", "input": "", "cached": "", "output": ""}),
                Vec::new(),
                Some("The new price applies to requests from now on; past usage keeps its price."),
            )
            .await
        }
        refused => {
            let errors = refused.field_errors(&price_field);
            prices_view(&req, values, errors, None).await
        }
    }
}

/// A model's name as prices take it: letters, digits and `-._:`, not empty.
fn model_name_valid(model: &str) -> bool {
    !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
}

/// The price form's field of an API field path.
fn price_field(p: &str) -> String {
    match p {
        "input_per_million" => "input".to_string(),
        "cached_input_per_million" => "cached".to_string(),
        "output_per_million" => "output".to_string(),
        other => other.to_string(),
    }
}

/// The check page before a new price; `known` when a price has used the model's name before.
fn price_confirm(form: &PriceForm, model_row: String, known: bool) -> Confirm<'static> {
    Confirm {
        title: if known {
            "Check the new price"
        } else {
            "Check the new model and its price"
        },
        rows: vec![
            ("Model", model_row),
            (
                "Input, per million tokens",
                crate::format::pounds(&form.input),
            ),
            (
                "Cached input, per million tokens",
                crate::format::pounds(&form.cached),
            ),
            (
                "Output, per million tokens",
                crate::format::pounds(&form.output),
            ),
        ],
        text: "Requests from now on are priced at this; past requests keep their price.",
        action: "/console/prices".into(),
        button: "Confirm the price",
        warning: false,
        cancel: "/console/prices".into(),
    }
}

pub async fn reports(req: HttpRequest) -> HttpResponse {
    reports_view(&req, "", Vec::new(), None).await
}

/// Who made a report, in words: an administrator by name, the schedule, or the command line.
fn made_by(generated_by: &str) -> String {
    if generated_by.starts_with("job:") {
        "the schedule".to_string()
    } else {
        generated_by.to_string()
    }
}

/// A period as people name it: "November 2026", "April to September 2026", "October 2025
/// to March 2026".
fn period_name(from: chrono::NaiveDate, to: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    if (from.year(), from.month()) == (to.year(), to.month()) {
        from.format("%B %Y").to_string()
    } else if from.year() == to.year() {
        format!("{} to {}", from.format("%B"), to.format("%B %Y"))
    } else {
        format!("{} to {}", from.format("%B %Y"), to.format("%B %Y"))
    }
}

/// The name of a report kind on the pages.
fn report_kind_name(kind: ReportKind) -> &'static str {
    match kind {
        ReportKind::Monthly => "Monthly operations report",
        ReportKind::SemiAnnual => "Semi-annual review",
    }
}

async fn reports_view(
    req: &HttpRequest,
    chosen: &str,
    errors: Vec<FieldError>,
    banner: Option<&str>,
) -> HttpResponse {
    let Core { state, .. } = page!(api::core(req));
    let list = page!(api::must(req, reports::list(&state).await));
    let makeable = page!(api::must(req, reports::makeable(&state).await));
    let rows: Vec<Value> = list
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "kind": r.kind.as_str().replace('_', "-"),
                "from": r.period.from, "to": r.period.to, "draft": r.draft,
                "generated": date(r.generated_at), "by": made_by(&r.generated_by),
            })
        })
        .collect();
    let groups: Vec<Value> = [ReportKind::Monthly, ReportKind::SemiAnnual]
        .into_iter()
        .map(|kind| {
            let options: Vec<Value> = makeable
                .iter()
                .filter(|m| m.kind == kind)
                .map(|m| {
                    let value = format!("{}:{}:{}", m.kind, m.from, m.to);
                    let mut label = period_name(m.from, m.to);
                    if m.kept {
                        label.push_str(" (made already)");
                    }
                    json!({"value": value, "label": label, "selected": value == chosen})
                })
                .collect();
            json!({"label": report_kind_name(kind), "options": options})
        })
        .collect();
    let mut view = View::new("console_reports", "Reports")
        .with("reports", Value::Array(rows))
        .with("groups", Value::Array(groups))
        .errors(errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// The period to report on, as `kind:from:to`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ReportForm {
    csrf: Trimmed,
    period: Trimmed,
}

posted!(ReportForm);

/// Makes the chosen period's report now, as the schedule would; the list again, with what
/// happened.
pub async fn make_report(req: HttpRequest, web::Form(form): web::Form<ReportForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let chosen = form.period.to_string();
    let mut parts = chosen.splitn(3, ':');
    let body = json!({
        "kind": parts.next().unwrap_or_default(),
        "from": parts.next().unwrap_or_default(),
        "to": parts.next().unwrap_or_default(),
    });
    let Core { state, user } = page!(api::core(&req));
    let made = api::with_input(&body, |b| reports::make(&state, &user, b)).await;
    match page!(api::answer(&req, made)) {
        Answer::Ok(r) => {
            let done = format!(
                "The {} for {} is made",
                report_kind_name(r.kind).to_lowercase(),
                period_name(r.period.from, r.period.to)
            );
            reports_view(&req, "", Vec::new(), Some(&done)).await
        }
        Answer::Refused { detail, fields } => {
            // Only ended periods are offered: a refusal is a report made meanwhile, or a
            // hand-made form.
            let message = match fields.first() {
                Some(_) if chosen.is_empty() => "Select the period to report on".to_string(),
                Some((_, m)) => format!("Select a period that has ended: {m}"),
                None => api::capitalise(&detail),
            };
            let errors = vec![FieldError {
                id: "period".into(),
                message,
            }];
            reports_view(&req, &chosen, errors, None).await
        }
    }
}

/// The printable report, as the worker rendered it (its own styles; no script at all).
pub async fn report(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let id = path.into_inner();
    let Core { state, .. } = page!(api::core(&req));
    let html = page!(api::must(&req, reports::html(&state, &id).await));
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ))
        .body(html)
}

/// The report's data, as JSON, to download.
pub async fn report_json(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let id = path.into_inner();
    let Core { state, .. } = page!(api::core(&req));
    let content = page!(api::must(&req, reports::content(&state, &id).await));
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"report-{id}.json\""),
        ))
        .body(serde_json::to_string_pretty(&content).unwrap_or_default())
}

/// Moves money between budget lines (or a line and the fund), with its reason.
pub async fn move_money(req: HttpRequest, web::Form(form): web::Form<MoveForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let body = json!({
        "from": form.from, "to": form.to,
        "amount": tidy_money(&form.amount),
        "reason": form.reason,
    });
    let move_field = |p: &str| match p {
        "amount" => "move_amount".to_string(),
        "reason" => "move_reason".to_string(),
        other => other.to_string(),
    };
    let empty = json!({"amount": "", "reference": ""});
    // Checked before it is shown back for confirmation.
    let input = match api::checked::<programme::MoveRequest>(&body) {
        Ok(input) => input,
        Err(refused) => {
            let errors = refused.field_errors(&move_field);
            return programme_view(&req, empty, errors, None).await;
        }
    };
    if let Some(page) = unconfirmed(
        &req,
        &form,
        Confirm {
            title: "Check the move",
            rows: vec![
                (
                    "From",
                    form.from.replace("programme_fund", "the programme fund"),
                ),
                (
                    "To",
                    form.to.replace("programme_fund", "the programme fund"),
                ),
                ("Amount", crate::format::pounds(&form.amount)),
                ("Reason", form.reason.to_string()),
            ],
            text: "The money moves at once and the move is audited with its reason.",
            action: "/console/programme/moves".into(),
            button: "Confirm the move",
            warning: false,
            cancel: "/console/programme".into(),
        },
    ) {
        return page;
    }
    let Core { state, user } = page!(api::core(&req));
    let key = once_key(&form.nonce, "moves");
    let done = programme::move_money(&state, &user, key, input).await;
    let answer = page!(api::answer(&req, done));
    match answer {
        Answer::Ok(_) => {
            programme_view(&req, empty, Vec::new(), Some("The money was moved.")).await
        }
        refused => {
            let errors = refused.field_errors(&move_field);
            programme_view(&req, empty, errors, None).await
        }
    }
}

/// The idempotency key of a money form, from its nonce (one per page shown), so a double
/// click acts once; a form without a nonce gets its own, acting once per submission.
fn once_key(n: &str, what: &str) -> Option<IdempotencyKey> {
    let nonce = if n.len() == 16 && n.bytes().all(|b| b.is_ascii_hexdigit()) {
        n.to_string()
    } else {
        let mut b = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        hex::encode(b)
    };
    IdempotencyKey::parse(&format!("console-{what}-{nonce}")).ok()
}

/// Usage above its hold, per key and model, with a way to reinstate a suspended key.
pub async fn overruns(req: HttpRequest) -> HttpResponse {
    overruns_view(&req, Vec::new(), None).await
}

async fn overruns_view(
    req: &HttpRequest,
    errors: Vec<FieldError>,
    banner: Option<&str>,
) -> HttpResponse {
    let Core { state, .. } = page!(api::core(req));
    let overruns = page!(api::must(req, operations::overruns(&state).await));
    let rows: Vec<Shaped<_, Value>> = overruns
        .data
        .iter()
        .map(|r| Shaped {
            view: r,
            added: json!({
                "last": date(r.last_at),
                "tag": tag(if r.key_suspended { "suspended" } else { "active" }),
            }),
        })
        .collect();
    let mut view = View::new("console_overruns", "Usage above its hold")
        .with("rows", rows)
        .with("total", json!(overruns.total))
        .with("threshold", json!(overruns.suspend_threshold))
        .errors(errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// Why a key suspended for its overrun is reinstated, with the key's name to show.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct ReinstateKeyForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    #[serde(skip_serializing)]
    confirm: Trimmed,
    key: Trimmed,
    reason: Trimmed,
}

posted!(confirmable: ReinstateKeyForm);

/// Reinstates a key the programme suspended for its overrun, after a confirmation step.
pub async fn reinstate_key(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<ReinstateKeyForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let id = path.into_inner();
    let body = json!({"reason": form.reason});
    let input = match api::checked::<vouchers::SuspensionRequest>(&body) {
        Ok(input) => input,
        Err(refused) => {
            let errors = refused.field_errors(&|_| format!("reason-{id}"));
            return overruns_view(&req, errors, None).await;
        }
    };
    if let Some(page) = unconfirmed(
        &req,
        &form,
        Confirm {
            title: "Reinstate this key?",
            rows: vec![
                ("Key", form.key.to_string()),
                ("Reason", form.reason.to_string()),
            ],
            text: "The key works again at once. Its usage above its holds stays on record; the programme suspends it again if more is added.",
            action: format!("/console/keys/{id}/reinstatement"),
            button: "Reinstate the key",
            warning: false,
            cancel: "/console/overruns".into(),
        },
    ) {
        return page;
    }
    let Core { state, user } = page!(api::core(&req));
    let done = operations::reinstate_key(&state, &user, &id, input).await;
    let answer = page!(api::answer(&req, done));
    match answer {
        Answer::Ok(_) => overruns_view(&req, Vec::new(), Some("The key is reinstated.")).await,
        refused => {
            let errors = refused.field_errors(&|_| format!("reason-{id}"));
            overruns_view(&req, errors, None).await
        }
    }
}
