//! Account pages: confirming an email address (code or link), forgotten and reset passwords,
//! accepting a staff invitation, and the console's staff accounts, on the account services
//! (`voucherd_api::service::accounts` and `users`).

use crate::api::{self, Answer, Core, Failure};
use crate::forms::{self, posted, ButtonForm, Trimmed};
use crate::portal::{csrf_refused, home_of, page, see_other, tag};
use crate::render::{self, FieldError, View};
use crate::session::Viewer;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use voucherd_api::service::{accounts, users};
use voucherd_api::views::UserView;
use voucherd_domain::{AccountStatus, Role};

/// The query of an address from an email: a link's token (confirming an email address,
/// resetting a password, accepting an invitation).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The confirmation code typed in.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    csrf: Trimmed,
    code: Trimmed,
}

/// A link's token, sent on with one button.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenForm {
    csrf: Trimmed,
    token: Trimmed,
}

/// The email address of an account whose password was forgotten.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ForgotPasswordForm {
    csrf: Trimmed,
    email: Trimmed,
}

/// A new password with its link's token. The password is read as typed: spaces may be part
/// of it.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    csrf: Trimmed,
    token: Trimmed,
    password: String,
}

/// A new staff account; shown back, with its errors, as posted.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct InviteForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    email: Trimmed,
    full_name: Trimmed,
    role: Trimmed,
}

/// A change to one account from the list: its `action` (`role`, `disable`, `enable`, or
/// anything else for a new invitation), with the new role and the reason.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AccountChangeForm {
    csrf: Trimmed,
    action: Trimmed,
    role: Trimmed,
    reason: Trimmed,
}

posted!(
    CodeForm,
    TokenForm,
    ForgotPasswordForm,
    PasswordForm,
    InviteForm,
    AccountChangeForm
);

/// The API's refusal as errors on the form, a message without a field going on `main`.
fn errors_on<T>(answer: &Answer<T>, main: &str) -> Vec<FieldError> {
    answer
        .field_errors(&|p| p.to_string())
        .into_iter()
        .map(|mut e| {
            if e.id.is_empty() {
                e.id = main.to_string();
            }
            e
        })
        .collect()
}

fn code_form(
    req: &HttpRequest,
    email: &str,
    errors: Vec<FieldError>,
    banner: Option<String>,
) -> HttpResponse {
    let mut v = View::new("verify_email", "Confirm your email address")
        .with("email", json!(email))
        .errors(errors);
    if let Some(text) = banner {
        v = v.banner(text, true);
    }
    v.render(req)
}

/// Confirming an email address: a link's token to confirm with one button (a link opened by
/// an email scanner confirms nothing), or, signed in, the code to type in.
pub async fn verify_form(req: HttpRequest, viewer: Viewer) -> HttpResponse {
    if let Some(token) = forms::query::<TokenQuery>(&req).token {
        return View::new("verify_link", "Confirm your email address")
            .with("token", json!(token))
            .render(&req);
    }
    match viewer.0 {
        None => see_other("/sign-in?next=%2Fverify-email"),
        Some(u) if u.email_verified => see_other(home_of(u.role)),
        Some(_) => {
            let Core { state, user } = page!(api::core(&req));
            let me = page!(api::must(&req, accounts::me(&state, &user).await));
            code_form(&req, &me.email, Vec::new(), None)
        }
    }
}

pub async fn verify_code(req: HttpRequest, web::Form(form): web::Form<CodeForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let body = json!({"code": form.code.replace(' ', "")});
    let Core { state, user } = page!(api::core(&req));
    let verified = api::with_input(&body, |b| accounts::verify_code(&state, &user, b)).await;
    match page!(api::answer(&req, verified)) {
        Answer::Ok(user) => see_other(home_of(user.role)),
        refused => {
            let me = page!(api::must(&req, accounts::me(&state, &user).await));
            code_form(&req, &me.email, errors_on(&refused, "code"), None)
        }
    }
}

pub async fn resend_code(req: HttpRequest, web::Form(form): web::Form<ButtonForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let Core { state, user } = page!(api::core(&req));
    let sent = accounts::resend_verification(&state, &user, api::client(&req)).await;
    let answer = page!(api::answer(&req, sent));
    let me = page!(api::must(&req, accounts::me(&state, &user).await));
    let email = me.email;
    match answer {
        Answer::Ok(_) => code_form(
            &req,
            &email,
            Vec::new(),
            Some(format!("We have sent a new code to {email}")),
        ),
        refused => code_form(&req, &email, errors_on(&refused, "code"), None),
    }
}

pub async fn verify_link(req: HttpRequest, web::Form(form): web::Form<TokenForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let body = json!({"token": form.token});
    let state = page!(api::state(&req));
    let verified = api::with_input(&body, |b| accounts::verify_link(&state, b)).await;
    let answer = page!(api::answer(&req, verified));
    match answer {
        Answer::Ok(_) => render::message(
            &req,
            StatusCode::OK,
            "Your email address is confirmed",
            "You can now sign in and apply for a voucher.",
        ),
        Answer::Refused { .. } => link_refused(&req),
    }
}

fn link_refused(req: &HttpRequest) -> HttpResponse {
    render::message(
        req,
        StatusCode::BAD_REQUEST,
        "This link has expired or was already used",
        "Sign in to ask for a new one, or ask for a new password reset link.",
    )
}

pub async fn forgot_form(req: HttpRequest) -> HttpResponse {
    View::new("forgot_password", "Reset your password")
        .with("values", json!({"email": ""}))
        .render(&req)
}

pub async fn forgot(
    req: HttpRequest,
    web::Form(form): web::Form<ForgotPasswordForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let email = form.email.to_string();
    let body = json!({"email": email});
    let state = page!(api::state(&req));
    let client = api::client(&req);
    let asked = api::with_input(&body, |b| {
        accounts::request_reset(state.into_inner(), client, b)
    })
    .await;
    let answer = page!(api::answer(&req, asked));
    match answer {
        Answer::Ok(_) => render::message(
            &req,
            StatusCode::OK,
            "Check your email",
            &format!(
                "If {email} has an account, we have sent it a link to reset the password. The link works once, for 30 minutes."
            ),
        ),
        refused => View::new("forgot_password", "Reset your password")
            .with("values", json!({"email": email}))
            .errors(errors_on(&refused, "email"))
            .render(&req),
    }
}

/// A form to choose a password with a link's token: a password reset or an invitation.
struct PasswordPage {
    template_title: &'static str,
    action: &'static str,
    /// A reset (else an invitation).
    reset: bool,
    done_title: &'static str,
    done_text: &'static str,
}

const RESET: PasswordPage = PasswordPage {
    template_title: "Choose a new password",
    action: "/reset-password",
    reset: true,
    done_title: "Your password has been changed",
    done_text: "You have been signed out everywhere. Sign in with your new password.",
};

const INVITATION: PasswordPage = PasswordPage {
    template_title: "Accept your invitation",
    action: "/accept-invitation",
    reset: false,
    done_title: "Your account is ready",
    done_text: "Sign in with your email address and the password you chose.",
};

fn password_form(
    req: &HttpRequest,
    p: &PasswordPage,
    token: &str,
    errors: Vec<FieldError>,
) -> HttpResponse {
    View::new("password_form", p.template_title)
        .with("token", json!(token))
        .with("action", json!(p.action))
        .errors(errors)
        .render(req)
}

async fn choose_password(req: HttpRequest, form: PasswordForm, p: &PasswordPage) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let token = form.token.to_string();
    let body = json!({"token": token, "password": form.password});
    let state = page!(api::state(&req));
    let chosen = if p.reset {
        api::with_input(&body, |b| accounts::reset_password(&state, b)).await
    } else {
        api::with_input(&body, |b| accounts::accept_invitation(&state, b))
            .await
            .map(|_| ())
    };
    let answer = page!(api::answer(&req, chosen));
    match answer {
        Answer::Ok(_) => render::message(&req, StatusCode::OK, p.done_title, p.done_text),
        Answer::Refused { ref fields, .. } if fields.iter().any(|(f, _)| f == "password") => {
            password_form(&req, p, &token, errors_on(&answer, "password"))
        }
        Answer::Refused { .. } => link_refused(&req),
    }
}

pub async fn reset_form(req: HttpRequest) -> HttpResponse {
    let token = forms::query::<TokenQuery>(&req).token.unwrap_or_default();
    password_form(&req, &RESET, &token, Vec::new())
}

pub async fn reset(req: HttpRequest, web::Form(form): web::Form<PasswordForm>) -> HttpResponse {
    choose_password(req, form, &RESET).await
}

pub async fn invitation_form(req: HttpRequest) -> HttpResponse {
    let token = forms::query::<TokenQuery>(&req).token.unwrap_or_default();
    password_form(&req, &INVITATION, &token, Vec::new())
}

pub async fn accept_invitation(
    req: HttpRequest,
    web::Form(form): web::Form<PasswordForm>,
) -> HttpResponse {
    choose_password(req, form, &INVITATION).await
}

/// The accounts list's address: a role to list only, and where the page starts. Each is read
/// as text, so one that is no role or number leaves the other in force.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UsersQuery {
    role: Option<String>,
    offset: Option<String>,
}

async fn users_page(
    req: &HttpRequest,
    values: Value,
    errors: Vec<FieldError>,
    banner: Option<String>,
) -> Result<HttpResponse, Failure> {
    let q = forms::query::<UsersQuery>(req);
    let role = q.role.filter(|r| r.parse::<Role>().is_ok());
    let offset: i64 = q.offset.and_then(|o| o.parse().ok()).unwrap_or(0).max(0);
    let filter = role
        .as_ref()
        .map_or(String::new(), |r| format!("&role={r}"));
    let Core { state, .. } = api::core(req)?;
    let page = voucherd_api::handlers::Page {
        limit: Some(50),
        offset: Some(offset),
    };
    let role_filter = users::RoleFilter {
        role: role.as_deref().and_then(|r| r.parse().ok()),
    };
    let list = api::must(req, users::list(&state, role_filter, page).await)?;
    let total = list.total;
    let users: Vec<Value> = list
        .data
        .iter()
        .map(|u| {
            json!({
                "id": u.id, "email": u.email, "full_name": u.full_name,
                "role": u.role,
                "role_name": u.role.with_article(),
                "tag": tag(u.status.as_str()),
                "disabled": u.status == AccountStatus::Disabled,
                "invited": u.status == AccountStatus::Invited,
            })
        })
        .collect();
    let shown = users.len() as i64;
    let mut v = View::new("console_users", "Accounts")
        .with("users", json!(users))
        .with("role", json!(role.unwrap_or_default()))
        .with("values", values)
        .with(
            "paging",
            render::paging(offset, shown, 50, total, &|at| {
                format!("/console/users?offset={at}{filter}")
            }),
        )
        .errors(errors);
    if let Some(text) = banner {
        v = v.banner(text, true);
    }
    Ok(v.render(req))
}

pub async fn users(req: HttpRequest) -> HttpResponse {
    let blank = json!({"email": "", "full_name": "", "role": "assessor"});
    page!(users_page(&req, blank, Vec::new(), None).await)
}

pub async fn invite(req: HttpRequest, web::Form(form): web::Form<InviteForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let body = json!(form);
    let Core { state, user } = page!(api::core(&req));
    let invited = api::with_input(&body, |b| users::invite(&state, &user, b)).await;
    match page!(api::answer(&req, invited)) {
        Answer::Ok(u) => {
            let banner = format!(
                "{} is invited: we have emailed a link to {}",
                u.full_name, u.email
            );
            let blank = json!({"email": "", "full_name": "", "role": "assessor"});
            page!(users_page(&req, blank, Vec::new(), Some(banner)).await)
        }
        refused => page!(users_page(&req, body, errors_on(&refused, "email"), None).await),
    }
}

/// A change to one account from the list: a new role, disabling, enabling, a new invitation.
pub async fn change(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<AccountChangeForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let id = path.into_inner();
    let reason = &form.reason;
    let Core { state, user } = page!(api::core(&req));
    let changed: Result<UserView, _> = match form.action.as_str() {
        "role" => {
            let body = json!({"role": form.role, "reason": reason});
            api::with_input(&body, |b| users::change_role(&state, &user, &id, b)).await
        }
        action @ ("disable" | "enable") => {
            let body = json!({"reason": reason});
            let disable = action == "disable";
            api::with_input(&body, |b| {
                users::set_disabled(&state, &user, &id, b, disable)
            })
            .await
        }
        _ => users::reinvite(&state, &user, &id).await,
    };
    let blank = json!({"email": "", "full_name": "", "role": "assessor"});
    match page!(api::answer(&req, changed)) {
        Answer::Ok(u) => {
            let banner = format!(
                "{} ({}) is now {}",
                u.full_name,
                u.email,
                match u.status {
                    AccountStatus::Disabled => "disabled",
                    AccountStatus::Invited => "invited again",
                    AccountStatus::Active => u.role.with_article(),
                }
            );
            page!(users_page(&req, blank, Vec::new(), Some(banner)).await)
        }
        refused => {
            let errors = errors_on(&refused, &format!("reason-{id}"))
                .into_iter()
                .map(|mut e| {
                    if e.id == "reason" || e.id == "role" {
                        e.id = format!("reason-{id}");
                    }
                    e
                })
                .collect();
            page!(users_page(&req, blank, errors, None).await)
        }
    }
}
