//! Templates (handlebars, strict: a value a template names but the page did not give is an
//! error, not a blank) and the parts every page shares: the signed-in person, the navigation
//! their role may use, the CSRF token, errors and banners.

use crate::session::{self, Viewer};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use handlebars::Handlebars;
use serde_json::{json, Map, Value};
use voucherd_domain::Role;

macro_rules! templates {
    ($( $name:literal ),* $(,)?) => {
        const TEMPLATES: &[(&str, &str)] = &[
            $( ($name, include_str!(concat!("../templates/", $name, ".hbs"))), )*
        ];
    };
}

templates!(
    "home",
    "sign_up",
    "sign_in",
    "dashboard",
    "apply",
    "apply_check",
    "application",
    "voucher",
    "key_created",
    "message",
    "confirm",
    "console_queue",
    "console_application",
    "console_confirm",
    "console_programme",
    "console_audit",
    "console_jobs",
    "console_overruns",
    "console_vouchers",
    "console_prices",
    "console_reports",
    "cs_consulting",
    "cs_incentives",
    "cs_advise",
    "cs_console_incentives",
    "cs_console_preview",
    "ch_sme_list",
    "ch_sme_challenge",
    "ch_console_list",
    "ch_console_challenge",
    "ch_console_new",
    "ch_assess",
    "verify_email",
    "verify_link",
    "forgot_password",
    "password_form",
    "console_users",
);

const PARTIALS: &[(&str, &str)] = &[
    ("layout", include_str!("../templates/layout.hbs")),
    (
        "error_summary",
        include_str!("../templates/partials/error_summary.hbs"),
    ),
    ("banner", include_str!("../templates/partials/banner.hbs")),
    ("field", include_str!("../templates/partials/field.hbs")),
    ("csrf", include_str!("../templates/partials/csrf.hbs")),
    ("tag", include_str!("../templates/partials/tag.hbs")),
    (
        "pagination",
        include_str!("../templates/partials/pagination.hbs"),
    ),
    (
        "date_input",
        include_str!("../templates/partials/date_input.hbs"),
    ),
];

/// The compiled templates, built once at start-up (a template that does not parse stops it).
pub struct Pages {
    hb: Handlebars<'static>,
}

impl Pages {
    pub fn new() -> Result<Pages, String> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        // Every helper is in `tests::HELPERS`, which keeps templates from reading a field so named.
        hb.register_helper("field_error", Box::new(FieldErrorHelper));
        hb.register_helper("concat", Box::new(ConcatHelper));
        hb.register_helper("pounds", Box::new(TextHelper(crate::format::pounds)));
        // Named apart from the data the pages give (a booking's `when`, say): a helper's name
        // would shadow a field of the same name.
        hb.register_helper("uk_time", Box::new(TextHelper(crate::format::when)));
        hb.register_helper("uk_date", Box::new(TextHelper(crate::format::day)));
        for (name, text) in PARTIALS {
            hb.register_partial(name, *text)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        for (name, text) in TEMPLATES {
            hb.register_template_string(name, *text)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(Pages { hb })
    }

    fn render_raw(&self, name: &str, data: &Value) -> Result<String, String> {
        self.hb.render(name, data).map_err(|e| e.to_string())
    }
}

/// One form field's error, as GOV.UK's error summary links it: to the field's id.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub id: String,
    pub message: String,
}

/// A status tag for the templates' `tag` partial (GOV.UK's coloured tag).
#[derive(serde::Serialize)]
pub struct Tag {
    pub text: String,
    pub colour: &'static str,
}

impl Tag {
    pub fn new(text: impl Into<String>, colour: &'static str) -> Tag {
        Tag {
            text: text.into(),
            colour,
        }
    }
}

/// A service's view with what a page adds to it for its template, as one object: the view's
/// own fields beside the added ones (a tag, a formatted date).
#[derive(serde::Serialize)]
pub struct Shaped<'a, T, A> {
    #[serde(flatten)]
    pub view: &'a T,
    #[serde(flatten)]
    pub added: A,
}

/// A page about to be rendered.
pub struct View {
    template: &'static str,
    status: StatusCode,
    data: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl View {
    pub fn new(template: &'static str, title: impl Into<String>) -> View {
        let mut data = Map::new();
        data.insert("title".into(), Value::String(title.into()));
        data.insert("banner".into(), Value::Null);
        data.insert("back".into(), Value::Null);
        View {
            template,
            status: StatusCode::OK,
            data,
            errors: Vec::new(),
        }
    }

    /// Puts `value` (a page's typed view) into the template's data under `key`.
    pub fn with(mut self, key: &str, value: impl serde::Serialize) -> View {
        // Only a map with keys that are not text fails to become JSON; no view has one.
        let value = serde_json::to_value(value).unwrap_or_else(|e| {
            tracing::error!(key, error = %e, "a page's view could not be shaped");
            Value::Null
        });
        self.data.insert(key.into(), value);
        self
    }

    pub fn status(mut self, status: StatusCode) -> View {
        self.status = status;
        self
    }

    pub fn back(self, href: &str) -> View {
        self.with("back", Value::String(href.into()))
    }

    pub fn banner(self, text: impl Into<String>, success: bool) -> View {
        self.with("banner", json!({"text": text.into(), "success": success}))
    }

    pub fn errors(mut self, errors: Vec<FieldError>) -> View {
        if !errors.is_empty() && self.status == StatusCode::OK {
            self.status = StatusCode::UNPROCESSABLE_ENTITY;
        }
        self.errors = errors;
        self
    }

    /// Renders the page for the request's viewer; a page that fails to render is a 500 that
    /// shows nothing of why (the log has it).
    pub fn render(self, req: &HttpRequest) -> HttpResponse {
        let Some(pages) = req.app_data::<actix_web::web::Data<Pages>>() else {
            return HttpResponse::InternalServerError().finish();
        };
        let viewer = req.extensions().get::<Viewer>().and_then(|v| v.0.clone());
        let (csrf, set_cookie) = session::csrf_token(req);
        let mut data = self.data;
        let path = req.path().to_string();
        data.insert("csrf".into(), Value::String(csrf));
        data.insert(
            "user".into(),
            match &viewer {
                Some(u) => {
                    json!({"id": u.id, "role": u.role.as_str(), "role_name": u.role.with_article()})
                }
                None => Value::Null,
            },
        );
        data.insert(
            "home".into(),
            Value::String(match viewer.as_ref().map(|u| u.role) {
                Some(Role::Admin) => "/console".into(),
                Some(Role::Applicant) => "/portal".into(),
                Some(Role::Adviser) => "/advise".into(),
                Some(Role::Assessor) => "/assess".into(),
                None => "/".into(),
            }),
        );
        data.insert("nav".into(), nav(viewer.as_ref().map(|u| u.role), &path));
        data.insert("errors".into(), error_summary(&self.errors));
        data.insert("error_count".into(), Value::from(self.errors.len() as u64));
        data.insert("field_errors".into(), field_errors(&self.errors));
        match pages.render_raw(self.template, &Value::Object(data)) {
            Ok(body) => {
                let mut resp = HttpResponse::build(self.status);
                resp.content_type("text/html; charset=utf-8")
                    .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
                if let Some(c) = set_cookie {
                    resp.cookie(c);
                }
                resp.body(body)
            }
            Err(e) => {
                tracing::error!(error = %e, template = self.template, "rendering a page");
                HttpResponse::InternalServerError()
                    .content_type("text/plain; charset=utf-8")
                    .body("Sorry, there is a problem with the service.")
            }
        }
    }
}

/// The error summary at the top of a page: each error linking to its field.
fn error_summary(errors: &[FieldError]) -> Value {
    if errors.is_empty() {
        Value::Null
    } else {
        Value::Array(
            errors
                .iter()
                .map(|e| {
                    // An error of the whole form links nowhere.
                    let href = (!e.id.is_empty()).then(|| format!("#{}", e.id));
                    json!({"href": href, "message": e.message})
                })
                .collect(),
        )
    }
}

/// Each field's own message, for its inline error (the first, when a field has several).
fn field_errors(errors: &[FieldError]) -> Value {
    let mut field_errors = Map::new();
    for e in errors {
        field_errors
            .entry(e.id.clone())
            .or_insert(Value::String(e.message.clone()));
    }
    Value::Object(field_errors)
}

/// The navigation a role may use: only pages it may open.
fn nav(role: Option<Role>, path: &str) -> Value {
    let items: &[(&str, &str)] = match role {
        None => &[("Sign in", "/sign-in"), ("Create an account", "/sign-up")],
        Some(Role::Admin) => &[
            ("Applications", "/console"),
            ("Programme fund", "/console/programme"),
            ("Vouchers", "/console/vouchers"),
            ("Challenges", "/console/challenges"),
            ("Prices", "/console/prices"),
            ("Incentives", "/console/incentives"),
            ("Reports", "/console/reports"),
            ("Overrun", "/console/overruns"),
            ("Accounts", "/console/users"),
            ("Audit log", "/console/audit"),
            ("Jobs", "/console/jobs"),
        ],
        Some(Role::Applicant) => &[
            ("Your applications and vouchers", "/portal"),
            ("Apply", "/portal/apply"),
            ("Challenges", "/portal/challenges"),
        ],
        Some(Role::Adviser) => &[("Consulting sessions", "/advise")],
        Some(Role::Assessor) => &[("Your assessments", "/assess")],
    };
    Value::Array(
        items
            .iter()
            .map(|(label, href)| json!({"label": label, "href": href, "current": *href == path}))
            .collect(),
    )
}

/// Where a paged list stands, for its "Showing 1 to 50 of 52" line and previous and next
/// links: `link(offset)` is the address of the page starting at that offset.
pub fn paging(
    offset: i64,
    shown: i64,
    size: i64,
    total: i64,
    link: &dyn Fn(i64) -> String,
) -> Value {
    json!({
        "from": if shown == 0 { 0 } else { offset + 1 },
        "to": offset + shown,
        "total": total,
        "previous": (offset > 0).then(|| link((offset - size).max(0))),
        "next": (offset + shown < total).then(|| link(offset + size)),
    })
}

/// A page with a heading and a paragraph, such as "Page not found".
pub fn message(req: &HttpRequest, status: StatusCode, title: &str, text: &str) -> HttpResponse {
    View::new("message", title)
        .with("text", Value::String(text.into()))
        .status(status)
        .render(req)
}

/// A page that does not exist, or an id that names nothing.
pub fn not_found(req: &HttpRequest) -> HttpResponse {
    message(
        req,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing here: check the address, or go back to the list you came from.",
    )
}

/// A signed-in person whose role may not open the page.
pub fn forbidden(req: &HttpRequest) -> HttpResponse {
    message(
        req,
        StatusCode::FORBIDDEN,
        "You cannot open this page",
        "Your account does not give you access to this page.",
    )
}

/// `(field_error "name")`: the named field's error message, or null: never missing, so
/// strict mode holds for fields without errors.
struct FieldErrorHelper;

impl handlebars::HelperDef for FieldErrorHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc handlebars::Context,
        _: &mut handlebars::RenderContext<'reg, 'rc>,
    ) -> Result<handlebars::ScopedJson<'rc>, handlebars::RenderError> {
        let name = h.param(0).and_then(|p| p.value().as_str()).unwrap_or("");
        let message = ctx
            .data()
            .get("field_errors")
            .and_then(|m| m.get(name))
            .cloned()
            .unwrap_or(Value::Null);
        Ok(handlebars::ScopedJson::Derived(message))
    }
}

/// `(concat a b …)`: the parameters as one string.
struct ConcatHelper;

impl handlebars::HelperDef for ConcatHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc handlebars::Context,
        _: &mut handlebars::RenderContext<'reg, 'rc>,
    ) -> Result<handlebars::ScopedJson<'rc>, handlebars::RenderError> {
        let joined: String = h
            .params()
            .iter()
            .map(|p| match p.value() {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            })
            .collect();
        Ok(handlebars::ScopedJson::Derived(Value::String(joined)))
    }
}

/// `(pounds x)`, `(uk_time x)`, `(uk_date x)`: a value from the core written for people (see
/// `crate::format`). A missing value is an error, as in strict mode; null writes nothing.
struct TextHelper(fn(&str) -> String);

impl handlebars::HelperDef for TextHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc handlebars::Context,
        _: &mut handlebars::RenderContext<'reg, 'rc>,
    ) -> Result<handlebars::ScopedJson<'rc>, handlebars::RenderError> {
        let param = h
            .param(0)
            .ok_or_else(|| handlebars::RenderErrorReason::ParamNotFoundForIndex("text", 0))?;
        let text = match param.value() {
            Value::Null => return Ok(handlebars::ScopedJson::Derived(Value::Null)),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Ok(handlebars::ScopedJson::Derived(Value::String((self.0)(
            &text,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::{PARTIALS, TEMPLATES};

    /// The helpers' names: a template's `{{name}}` calls the helper, never reads a field.
    const HELPERS: [&str; 5] = ["field_error", "concat", "pounds", "uk_time", "uk_date"];

    /// A field named like a helper (a booking's `when` beside a `when` helper) would be the
    /// helper called with nothing: the page fails to render only when the field is there.
    #[test]
    fn no_template_reads_a_field_named_like_a_helper() {
        for (name, text) in TEMPLATES.iter().chain(PARTIALS) {
            for helper in HELPERS {
                let bare = format!("{{{{{helper}}}}}");
                let param = format!("={helper} ");
                assert!(
                    !text.contains(&bare) && !text.contains(&param),
                    "{name} reads a field named like the helper {helper}"
                );
            }
        }
        assert!(super::Pages::new().is_ok());
    }
}
