//! Server-rendered pages on the GOV.UK Design System: the SME portal (`/portal`) and the
//! administrators' and assessors' console (`/console`).
//!
//! The pages call the same typed services as the REST API (`voucherd_api::service`), in
//! process, as the signed-in person. So there is one authorization source (the API's route
//! table: a page's access is the access of the API route it is built on, checked by [`guard`]
//! before the page runs; what a person may see is the services'), one set of rules, and the
//! services' field-path errors become the pages' inline errors. Pages work without
//! JavaScript; charts are SVG drawn on the server.

mod accounts;
mod api;
mod assets;
mod challenges;
mod console;
mod consult;
mod format;
mod forms;
mod portal;
mod render;
mod session;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use voucherd_api::routes::{Access, ROUTES};

pub use render::Pages;

/// What the pages need to know of the process they run in.
#[derive(Debug, Clone)]
pub struct PagesConfig {
    /// Whether cookies carry `Secure` (off only for plain-HTTP development).
    pub cookie_secure: bool,
}

/// The largest form body a page reads.
pub const FORM_LIMIT_BYTES: usize = 64 * 1024;

/// Form bodies up to 64 KiB (the longest answers, in any script, fit). A larger one is answered
/// with a page saying so, not a bare error; so is any other body that is not the page's form
/// (an answer sent twice, another media type), which only a form made by hand sends.
pub fn form_config() -> web::FormConfig {
    web::FormConfig::default()
        .limit(FORM_LIMIT_BYTES)
        .error_handler(|err, req| {
            let resp = match &err {
                actix_web::error::UrlencodedError::Overflow { .. } => render::message(
                    req,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Your answers could not be read",
                    "They may be too long. Shorten them and try again.",
                ),
                _ => render::message(
                    req,
                    StatusCode::BAD_REQUEST,
                    "Your answers could not be read",
                    "Go back, reload the page and try again.",
                ),
            };
            actix_web::error::InternalError::from_response(err, resp).into()
        })
}

/// A page: its method and path, and the API route whose access it takes (`None`: public).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub method: &'static str,
    pub path: &'static str,
    pub api: Option<(&'static str, &'static str)>,
}

impl Page {
    /// Who may see the page: exactly who may call the API route it is built on.
    pub fn access(&self) -> Access {
        match self.api {
            None => Access::Public,
            Some((method, path)) => ROUTES
                .iter()
                .find(|r| r.method == method && r.path == path)
                .map_or(Access::Roles(&[]), |r| r.access),
        }
    }
}

macro_rules! pages {
    ($( $method:ident $path:literal => $handler:path, $api:expr; )*) => {
        /// Every page, declared once: registered from here and guarded from here.
        pub static PAGES: &[Page] = &[
            $( Page { method: stringify!($method), path: $path, api: $api }, )*
        ];

        fn register(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::$method().to($handler)); )*
        }
    };
}

const fn on(method: &'static str, path: &'static str) -> Option<(&'static str, &'static str)> {
    Some((method, path))
}

pages! {
    get "/" => portal::home, None;
    get "/sign-up" => portal::sign_up_form, None;
    post "/sign-up" => portal::sign_up, None;
    get "/sign-in" => portal::sign_in_form, None;
    post "/sign-in" => portal::sign_in, None;
    post "/sign-out" => portal::sign_out, None;
    get "/verify-email" => accounts::verify_form, None;
    post "/verify-email" => accounts::verify_code, on("post", "/api/v1/me/email-verification");
    post "/verify-email/resend" => accounts::resend_code, on("post", "/api/v1/me/verification-email");
    post "/verify-email/link" => accounts::verify_link, None;
    get "/forgot-password" => accounts::forgot_form, None;
    post "/forgot-password" => accounts::forgot, None;
    get "/reset-password" => accounts::reset_form, None;
    post "/reset-password" => accounts::reset, None;
    get "/accept-invitation" => accounts::invitation_form, None;
    post "/accept-invitation" => accounts::accept_invitation, None;
    get "/console/users" => accounts::users, on("get", "/api/v1/users");
    post "/console/users" => accounts::invite, on("post", "/api/v1/users");
    post "/console/users/{id}" => accounts::change, on("put", "/api/v1/users/{id}/role");
    get "/portal" => portal::dashboard, on("post", "/api/v1/applications");
    get "/portal/apply" => portal::apply_form, on("post", "/api/v1/applications");
    post "/portal/apply" => portal::apply_check, on("post", "/api/v1/applications");
    post "/portal/apply/submit" => portal::apply_submit, on("post", "/api/v1/applications");
    get "/portal/applications/{id}" => portal::application, on("get", "/api/v1/applications/{id}");
    get "/portal/vouchers/{id}" => portal::voucher, on("post", "/api/v1/vouchers/{id}/keys");
    get "/portal/vouchers/{id}/statement.csv" => portal::statement_csv, on("get", "/api/v1/vouchers/{id}/statement");
    post "/portal/vouchers/{id}/keys" => portal::create_key, on("post", "/api/v1/vouchers/{id}/keys");
    post "/portal/keys/{id}/revoke" => portal::revoke_key, on("delete", "/api/v1/keys/{id}");
    post "/portal/keys/{id}/rotate" => portal::rotate_key, on("post", "/api/v1/keys/{id}/rotate");
    post "/portal/topups" => portal::top_up, on("post", "/api/v1/topups");
    post "/portal/vouchers/{id}/contribution" => portal::pay_contribution, on("post", "/api/v1/vouchers/{id}/contribution");
    get "/console" => console::queue, on("get", "/api/v1/programme");
    get "/console/applications.csv" => console::queue_csv, on("get", "/api/v1/programme");
    get "/console/applications/{id}" => console::application, on("post", "/api/v1/applications/{id}/decision");
    post "/console/applications/{id}/decision" => console::decide, on("post", "/api/v1/applications/{id}/decision");
    post "/console/applications/{id}/second-approval" => console::second_approval, on("post", "/api/v1/applications/{id}/second-approval");
    post "/console/applications/{id}/ownership" => console::ownership, on("post", "/api/v1/applications/{id}/ownership");
    post "/console/applications/{id}/release" => console::release, on("post", "/api/v1/applications/{id}/release");
    get "/console/programme" => console::programme, on("get", "/api/v1/programme");
    post "/console/programme/deposits" => console::deposit, on("post", "/api/v1/programme/deposits");
    post "/console/programme/moves" => console::move_money, on("post", "/api/v1/budget-lines/moves");
    get "/console/audit" => console::audit, on("get", "/api/v1/audit");
    get "/console/audit.csv" => console::audit_csv, on("get", "/api/v1/audit");
    get "/console/jobs" => console::jobs, on("get", "/api/v1/jobs/runs");
    get "/console/jobs.csv" => console::jobs_csv, on("get", "/api/v1/jobs/runs");
    get "/console/overruns" => console::overruns, on("get", "/api/v1/overruns");
    post "/console/keys/{id}/reinstatement" => console::reinstate_key, on("post", "/api/v1/keys/{id}/reinstatement");
    get "/portal/vouchers/{id}/consulting" => consult::consulting, on("post", "/api/v1/consulting/bookings");
    post "/portal/consulting/bookings" => consult::book, on("post", "/api/v1/consulting/bookings");
    post "/portal/consulting/bookings/{id}/cancel" => consult::cancel, on("delete", "/api/v1/consulting/bookings/{id}");
    get "/portal/vouchers/{id}/incentives" => consult::voucher_incentives, on("get", "/api/v1/vouchers/{id}/incentives");
    get "/advise" => consult::advise, on("post", "/api/v1/consulting/slots");
    post "/advise/slots" => consult::create_slot, on("post", "/api/v1/consulting/slots");
    post "/advise/bookings/{id}/outcome" => consult::record_outcome, on("put", "/api/v1/consulting/bookings/{id}/outcome");
    get "/console/incentives" => consult::incentives, on("get", "/api/v1/incentives");
    post "/console/incentives" => consult::create_rule, on("post", "/api/v1/incentives");
    post "/console/incentives/{key}" => consult::new_version, on("put", "/api/v1/incentives/{key}");
    get "/console/applications/{id}/incentives" => consult::application_incentives, on("get", "/api/v1/applications/{id}/incentives");
    get "/portal/challenges" => challenges::sme_list, on("post", "/api/v1/challenges/{id}/entries");
    get "/portal/challenges/{id}" => challenges::sme_challenge, on("post", "/api/v1/challenges/{id}/entries");
    post "/portal/challenges/{id}/entries" => challenges::sme_submit, on("post", "/api/v1/challenges/{id}/entries");
    post "/portal/challenges/{id}/entries/{entry_id}" => challenges::sme_update, on("put", "/api/v1/challenges/{id}/entries/{entry_id}");
    get "/console/challenges" => challenges::console_list, on("post", "/api/v1/challenges");
    get "/console/challenges/new" => challenges::console_new, on("post", "/api/v1/challenges");
    post "/console/challenges" => challenges::console_create, on("post", "/api/v1/challenges");
    get "/console/challenges/{id}" => challenges::console_challenge, on("post", "/api/v1/challenges");
    get "/assess" => challenges::assess, on("get", "/api/v1/assessments");
    post "/assess/conflicts" => challenges::declare_conflict, on("post", "/api/v1/conflicts");
    post "/assess/{entry_id}" => challenges::score, on("put", "/api/v1/assessments/{entry_id}");
    get "/console/vouchers" => console::vouchers, on("post", "/api/v1/vouchers/{id}/suspension");
    post "/console/vouchers/{id}/suspension" => console::suspension, on("post", "/api/v1/vouchers/{id}/suspension");
    get "/console/prices" => console::prices, on("put", "/api/v1/prices/{model}");
    post "/console/prices" => console::set_price, on("put", "/api/v1/prices/{model}");
    get "/console/reports" => console::reports, on("get", "/api/v1/reports");
    post "/console/reports" => console::make_report, on("post", "/api/v1/reports");
    get "/console/reports/{id}" => console::report, on("get", "/api/v1/reports/{id}/html");
    get "/console/reports/{id}/json" => console::report_json, on("get", "/api/v1/reports/{id}");
}

/// Paths programs call: an unknown one is answered as the API answers (problem+json, or the
/// proxy's OpenAI-style error), never with a page.
const API_PATHS: [&str; 7] = [
    "/api/",
    "/v1/",
    "/sandbox/",
    "/webhooks/",
    "/metrics",
    "/healthz",
    "/readyz",
];

/// Whether the client reads pages (a browser asks for `text/html`).
fn wants_html(req: &actix_web::HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Any path nothing serves: for a browser, the GOV.UK "Page not found" page (with its title and
/// language); for a program, or under the API's paths, the API's problem+json.
pub async fn not_found(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    if API_PATHS.iter().any(|p| req.path().starts_with(p)) || !wants_html(&req) {
        return voucherd_api::not_found(req).await;
    }
    let mut resp = render::not_found(&req);
    secure(resp.headers_mut());
    resp
}

/// The public summary's refusal, for a browser: a GOV.UK page saying why, not problem+json.
fn public_refusal(req: &actix_web::HttpRequest, status: StatusCode) -> actix_web::HttpResponse {
    if status == StatusCode::NOT_FOUND {
        render::message(
            req,
            status,
            "There is no public summary yet",
            "A public summary is published once the semi-annual review of a finished half-year \
             (April to September, or October to March) has been made. Come back after the next one.",
        )
    } else {
        render::message(
            req,
            status,
            "There is a problem",
            "This address does not name a public summary: check it, or start from the latest summary.",
        )
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    register(cfg);
    assets::register(cfg);
}

/// Content Security Policy of every page: no inline script or style, nothing framed, forms
/// only to this service and to Stripe's payment pages (a payment form redirects there).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self' https://checkout.stripe.com; frame-ancestors 'none'";

/// Security headers on every page and asset, and each page's access, enforced from [`PAGES`]
/// before its handler runs: a stranger is sent to sign in, a wrong role is refused.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // No page lives under the proxy's `/v1`: its hot path skips the page lookup.
    if voucherd_api::auth::is_proxy_path(req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let pattern = req.match_pattern();
    let method = req.method().as_str().to_ascii_lowercase();
    let page = pattern
        .as_deref()
        .and_then(|p| PAGES.iter().find(|pg| pg.path == p && pg.method == method));
    let is_page = page.is_some() || req.path().starts_with("/assets/");
    // An id in a page's path holds only an id's characters: one holding anything else once
    // decoded (`V%2Freinstatement%3F`) names nothing the programme made, so such a page does
    // not exist (and no service is asked for it).
    let ids_plausible = pattern.as_deref().is_none_or(|p| {
        // Routing has not run yet here: read the ids from the path as sent, still encoded
        // (an id never needs `%`).
        p.split('/')
            .zip(req.path().split('/'))
            .all(|(part, value)| !part.starts_with('{') || plausible_id(value))
    });
    if page.is_some() && !ids_plausible {
        let (http_req, _) = req.into_parts();
        let mut resp = ServiceResponse::new(http_req.clone(), render::not_found(&http_req));
        secure(resp.headers_mut());
        return Ok(resp);
    }
    if let Some(page) = page {
        let user = session::user(req.request()).await;
        req.extensions_mut().insert(session::Viewer(user.clone()));
        if let Access::Roles(roles) = page.access() {
            let refusal = match &user {
                None => Some(session::to_sign_in(req.request())),
                Some(u) if !roles.contains(&u.role) => Some(render::forbidden(req.request())),
                Some(_) => None,
            };
            if let Some(resp) = refusal {
                let (http_req, _) = req.into_parts();
                let mut resp = ServiceResponse::new(http_req, resp);
                secure(resp.headers_mut());
                return Ok(resp);
            }
        }
    }
    let public = req.path().starts_with("/public/") && wants_html(req.request());
    let mut resp = next.call(req).await?.map_into_boxed_body();
    let status = resp.status();
    let refused = public && status.is_client_error();
    if refused {
        // Linked from the console and read by people: a refusal is a page too. (The summary
        // itself is the worker's own document, with its own styles: it keeps its headers.)
        let http_req = resp.request().clone();
        resp = ServiceResponse::new(http_req.clone(), public_refusal(&http_req, status));
    }
    if is_page || refused {
        secure(resp.headers_mut());
    }
    Ok(resp)
}

/// An id as the programme makes them (UUIDs, model names, incentive keys): letters, digits
/// and `- _ . :`, not `.` or `..`, at most 200 characters.
fn plausible_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 200
        && v != "."
        && v != ".."
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn secure(h: &mut header::HeaderMap) {
    // A page with a policy of its own (a report's printable view) keeps it.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
}
