//! The pages' way into the typed core (`voucherd_api::service`): [`core`] gives a page the
//! service state and its signed-in viewer, and [`answer`] and [`must`] turn what a service
//! returned into a view or the page to answer with. Which roles may open a page is the route
//! table's, enforced by the page guard (`crate::guard`) before the page runs; what a viewer
//! may see is the service's.

use crate::render::{self, not_found, FieldError};
use crate::session;
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
        other => Ok(refusal(other)),
    }
}

/// A refusal the page explains: the fields' errors, or the whole request's words.
fn refusal<T>(e: ApiError) -> Answer<T> {
    match e {
        ApiError::Validation(fields) => Answer::Refused {
            detail: "the request has invalid fields".into(),
            fields: fields.into_iter().map(|f| (f.field, f.message)).collect(),
        },
        other => Answer::Refused {
            detail: other.to_string(),
            fields: Vec::new(),
        },
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

/// A service's input read from a page's answers before they are shown back for confirmation,
/// as the service will read them: a refusal is the form's errors now, not after "Confirm".
pub fn checked<T>(body: &Value) -> Result<T, Answer<()>>
where
    T: serde::de::DeserializeOwned + validator::Validate,
{
    voucherd_api::extract::input::<T>(body).map_err(refusal)
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
pub enum Answer<T> {
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

/// A sentence with its first letter in capitals.
pub(crate) fn capitalise(s: &str) -> String {
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

fn unavailable(req: &HttpRequest) -> HttpResponse {
    render::message(
        req,
        StatusCode::SERVICE_UNAVAILABLE,
        "Sorry, there is a problem with the service",
        "Try again later. Nothing you entered has been saved.",
    )
}
