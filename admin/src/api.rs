//! The pages' way into the typed core (`voucherd_api::service`): [`core`] gives a page the
//! service state and its signed-in viewer, and [`answer`] and [`must`] turn what a service
//! returned into a view or the page to answer with. Which roles may open a page is the route
//! table's, enforced by the page guard (`crate::guard`) before the page runs; what a viewer
//! may see is the service's.
//!
//! Pages not yet moved onto the core reach the API the old way, over loopback with the
//! viewer's own access token ([`call`], [`get`]); their paths are checked by [`plausible`].

use crate::render::{self, not_found, FieldError};
use crate::session;
use crate::PagesConfig;
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde_json::Value;
use voucherd_api::auth::AuthUser;
use voucherd_api::error::ApiError;
use voucherd_api::state::AppState;

/// The typed core as a page reaches it: the services' state and the signed-in viewer.
pub struct Core {
    pub state: web::Data<AppState>,
    pub user: AuthUser,
}

/// The services' state, for a page anyone may open (signing in, a link from an email).
pub fn state(req: &HttpRequest) -> Result<web::Data<AppState>, Failure> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| Failure(Box::new(HttpResponse::InternalServerError().finish())))
}

/// The address the request came from, as the sign-in and reset throttles count it.
pub fn client(req: &HttpRequest) -> std::net::IpAddr {
    voucherd_api::handlers::me::client_address(req)
}

/// The core for a page that needs a signed-in viewer (every page built on a route with
/// roles: the page guard has already checked the viewer's role).
pub fn core(req: &HttpRequest) -> Result<Core, Failure> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(Failure(Box::new(
            HttpResponse::InternalServerError().finish(),
        )));
    };
    let user = req
        .extensions()
        .get::<session::Viewer>()
        .and_then(|v| v.0.clone());
    match user {
        Some(user) => Ok(Core { state, user }),
        None => Err(Failure(Box::new(session::to_sign_in(req)))),
    }
}

/// What a service returned, for a page: its view, a refusal the page explains (a field's
/// error, a conflict of state), or the page to answer with instead: sign in, forbidden, not
/// found, or "there is a problem with the service" (the cause is logged, never shown).
pub fn answer<T>(req: &HttpRequest, result: Result<T, ApiError>) -> Result<Answer<T>, Failure> {
    let e = match result {
        Ok(v) => return Ok(Answer::Ok(v)),
        Err(e) => e,
    };
    match e {
        ApiError::Unauthenticated => Err(Failure(Box::new(session::to_sign_in(req)))),
        ApiError::Forbidden | ApiError::Denied { .. } => {
            Err(Failure(Box::new(render::forbidden(req))))
        }
        ApiError::NotFound(_) => Err(Failure(Box::new(not_found(req)))),
        ApiError::Internal(cause) => {
            tracing::error!(%cause, "a page's request failed");
            Err(Failure(Box::new(unavailable(req))))
        }
        ApiError::Unavailable | ApiError::Disabled { .. } | ApiError::BadGateway(_) => {
            tracing::warn!(error = %e, "a page's request could not be served");
            Err(Failure(Box::new(unavailable(req))))
        }
        ApiError::Validation(fields) => Ok(Answer::Refused {
            detail: "the request has invalid fields".into(),
            fields: fields.into_iter().map(|f| (f.field, f.message)).collect(),
        }),
        other => Ok(Answer::Refused {
            detail: other.to_string(),
            fields: Vec::new(),
        }),
    }
}

/// Runs a service on input read from a page's answers (`body`, the JSON the API would take)
/// exactly as the API reads it: the same field paths in its errors, the same rules.
pub async fn with_input<T, R, F, Fut>(body: &Value, service: F) -> Result<R, ApiError>
where
    T: serde::de::DeserializeOwned + validator::Validate,
    F: FnOnce(T) -> Fut,
    Fut: std::future::Future<Output = Result<R, ApiError>>,
{
    service(voucherd_api::extract::input::<T>(body)?).await
}

/// A service's view, insisting on success: any refusal becomes a problem page.
pub fn must<T>(req: &HttpRequest, result: Result<T, ApiError>) -> Result<T, Failure> {
    match answer(req, result)? {
        Answer::Ok(v) => Ok(v),
        Answer::Refused { detail, .. } => Err(Failure(Box::new(render::message(
            req,
            StatusCode::BAD_REQUEST,
            "There is a problem",
            &capitalise(&detail),
        )))),
    }
}

/// What the API or a service answered.
pub enum Answer<T = Value> {
    Ok(T),
    /// A refusal the page can explain: its code, detail and field errors (path → message).
    Refused {
        detail: String,
        fields: Vec<(String, String)>,
    },
}

impl<T> Answer<T> {
    /// Field errors mapped to form field ids by `id_of` (API path → field id).
    pub fn field_errors(&self, id_of: &dyn Fn(&str) -> String) -> Vec<FieldError> {
        match self {
            Answer::Ok(_) => Vec::new(),
            Answer::Refused { fields, detail, .. } if fields.is_empty() => vec![FieldError {
                id: String::new(),
                message: capitalise(detail),
            }],
            Answer::Refused { fields, .. } => fields
                .iter()
                .map(|(path, message)| FieldError {
                    id: id_of(path),
                    message: format!("{} {message}", label_of(path)),
                })
                .collect(),
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// A field path as words: `subsidy_declarations[0].amount` → "Subsidy declarations 1 amount".
fn label_of(path: &str) -> String {
    let words = path
        .replace(['_', '.'], " ")
        .replace('[', " ")
        .replace(']', "");
    capitalise(words.trim())
}

/// Why a page could not be made: answered with a GOV.UK "there is a problem" page.
pub struct Failure(Box<HttpResponse>);

impl Failure {
    pub fn into_response(self) -> HttpResponse {
        *self.0
    }
}

/// Bytes an id may hold as it is; everything else in a value put into an API path is
/// percent-encoded by [`seg`], and [`plausible`] then refuses the path.
const NOT_ID: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b':');

/// A value for one segment of an API path. Actix has already percent-decoded the page's own
/// path, so an id such as `V%2Freinstatement%3F` arrives as `V/reinstatement?`: placed into a
/// path as it is, it would turn `/vouchers/{id}/suspension` into another route. Encoded, its
/// `%` makes [`plausible`] refuse the call, and the viewer gets "page not found".
pub fn seg(value: &str) -> String {
    let encoded = percent_encoding::utf8_percent_encode(value, NOT_ID).to_string();
    if encoded == "." || encoded == ".." || encoded.is_empty() {
        // A segment that would name the parent, the same route, or nothing.
        return "%2E".into();
    }
    encoded
}

/// Whether a path the pages are about to call is one they meant: ids are made of letters,
/// digits and `- _ . :` only, no segment is `..`, and the query (which the pages build,
/// encoding what they put in it) holds no fragment or whitespace. A value from the address bar
/// or a form that would turn the call into another route (`..%2F`, `%3F`, `#`) fails here.
fn plausible(path: &str) -> bool {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    route.starts_with("/api/v1/")
        && route
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.:".contains(&b))
        && !route.split('/').any(|seg| seg == ".." || seg == ".")
        && !query
            .bytes()
            .any(|b| b == b'#' || b.is_ascii_whitespace() || b.is_ascii_control())
}

/// Calls the API as the viewer. `Err` is a page to answer with (the API unreachable, the
/// viewer's session gone, something not found).
pub async fn call(
    req: &HttpRequest,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Answer, Failure> {
    call_with(req, method, path, body, &[]).await
}

pub async fn call_with(
    req: &HttpRequest,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Result<Answer, Failure> {
    let resp = send(req, method, path, body, headers).await?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if (200..300).contains(&status) {
        return Ok(Answer::Ok(json));
    }
    match status {
        401 => Err(Failure(Box::new(session::to_sign_in(req)))),
        403 => Err(Failure(Box::new(render::forbidden(req)))),
        404 => Err(Failure(Box::new(not_found(req)))),
        500.. => Err(Failure(Box::new(unavailable(req)))),
        _ => Ok(Answer::Refused {
            detail: json["detail"].as_str().unwrap_or("").to_string(),
            fields: json["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            (
                                e["field"].as_str().unwrap_or("").to_string(),
                                e["message"].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }),
    }
}

/// The one way the pages reach the API: a plausible path, over loopback, as the viewer.
async fn send(
    req: &HttpRequest,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Result<reqwest::Response, Failure> {
    let Some(cfg) = req.app_data::<web::Data<PagesConfig>>() else {
        return Err(Failure(Box::new(
            HttpResponse::InternalServerError().finish(),
        )));
    };
    if !plausible(path) {
        return Err(Failure(Box::new(not_found(req))));
    }
    let mut r = cfg
        .client
        .request(method, format!("{}{path}", cfg.api_base));
    if let Some(t) = session::token(req) {
        r = r.bearer_auth(t);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    r.send().await.map_err(|e| {
        tracing::error!(error = %e, %path, "the pages could not reach the API");
        Failure(Box::new(unavailable(req)))
    })
}

/// Calls the API and insists on success: any refusal becomes a problem page.
pub async fn get(req: &HttpRequest, path: &str) -> Result<Value, Failure> {
    match call(req, reqwest::Method::GET, path, None).await? {
        Answer::Ok(v) => Ok(v),
        Answer::Refused { detail, .. } => Err(Failure(Box::new(render::message(
            req,
            StatusCode::BAD_REQUEST,
            "There is a problem",
            &capitalise(&detail),
        )))),
    }
}

fn unavailable(req: &HttpRequest) -> HttpResponse {
    render::message(
        req,
        StatusCode::SERVICE_UNAVAILABLE,
        "Sorry, there is a problem with the service",
        "Try again later. Nothing you entered has been saved.",
    )
}
