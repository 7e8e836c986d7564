//! Sessions and CSRF. The session cookie carries the person's access token (issued by the
//! API's sign-in, checked here as the API checks it: signature and open server-side session): `HttpOnly`, `SameSite=Lax` (a return
//! from Stripe's payment page is a top-level navigation and keeps the session), `Secure`
//! unless the service runs on plain HTTP for development. Every form carries a CSRF token
//! equal to a cookie of its own (`SameSite=Strict`), compared in constant time.

use crate::PagesConfig;
use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use std::future::{ready, Ready};
use voucherd_api::auth::AuthUser;
use voucherd_api::state::AppState;

const SESSION: &str = "voucherd_session";
const CSRF: &str = "voucherd_csrf";

/// The person viewing a page, if signed in (set by the page guard).
#[derive(Debug, Clone)]
pub struct Viewer(pub Option<AuthUser>);

impl FromRequest for Viewer {
    type Error = actix_web::Error;
    type Future = Ready<Result<Viewer, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(Ok(req
            .extensions()
            .get::<Viewer>()
            .cloned()
            .unwrap_or(Viewer(None))))
    }
}

/// The session's access token, as sent.
pub fn token(req: &HttpRequest) -> Option<String> {
    req.cookie(SESSION).map(|c| c.value().to_string())
}

/// The signed-in person: a session cookie whose token the API's keys verify and whose
/// server-side session is still open (so signing out elsewhere, a role change or a disabled
/// account end it here too).
pub async fn user(req: &HttpRequest) -> Option<AuthUser> {
    let state = req.app_data::<web::Data<AppState>>()?;
    let token = token(req)?;
    match voucherd_api::auth::authenticate(state, &token).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "a page could not check its session");
            None
        }
    }
}

fn secure(req: &HttpRequest) -> bool {
    req.app_data::<web::Data<PagesConfig>>()
        .is_none_or(|c| c.cookie_secure)
}

/// Starts a session with `token`, valid as long as the token, with a new CSRF token.
pub fn start(req: &HttpRequest, resp: &mut HttpResponse, token: &str, ttl_secs: i64) {
    let _ = resp.add_cookie(&new_csrf(req));
    let cookie = Cookie::build(SESSION, token.to_string())
        .path("/")
        .http_only(true)
        .secure(secure(req))
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(ttl_secs))
        .finish();
    let _ = resp.add_cookie(&cookie);
}

/// Ends the session, and its CSRF token with it.
pub fn end(req: &HttpRequest, resp: &mut HttpResponse) {
    let _ = resp.add_cookie(&new_csrf(req));
    let mut cookie = Cookie::build(SESSION, "")
        .path("/")
        .http_only(true)
        .secure(secure(req))
        .same_site(SameSite::Lax)
        .finish();
    cookie.make_removal();
    let _ = resp.add_cookie(&cookie);
}

/// The request's CSRF token, and the cookie to set when it is new.
pub fn csrf_token(req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
    if let Some(c) = req.cookie(CSRF).filter(|c| c.value().len() == 64) {
        return (c.value().to_string(), None);
    }
    let cookie = new_csrf(req);
    (cookie.value().to_string(), Some(cookie))
}

fn new_csrf(req: &HttpRequest) -> Cookie<'static> {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    Cookie::build(CSRF, hex::encode(bytes))
        .path("/")
        .http_only(true)
        .secure(secure(req))
        .same_site(SameSite::Strict)
        .finish()
}

/// Whether a submitted form's token matches the request's CSRF cookie.
pub fn csrf_ok(req: &HttpRequest, submitted: &str) -> bool {
    let Some(cookie) = req.cookie(CSRF) else {
        return false;
    };
    let (a, b) = (cookie.value().as_bytes(), submitted.as_bytes());
    // Constant time: the comparison reveals nothing of where a guess goes wrong.
    a.len() == 64 && voucherd_api::auth::same(a, b)
}

/// Sends a stranger to sign in, then back to the page they asked for (a form they sent is
/// not sent again: they start from their home page).
pub fn to_sign_in(req: &HttpRequest) -> HttpResponse {
    let to = if req.method() == actix_web::http::Method::GET {
        let wanted = match req.query_string() {
            "" => req.path().to_string(),
            q => format!("{}?{q}", req.path()),
        };
        format!(
            "/sign-in?{}",
            serde_urlencoded::to_string([("next", wanted)]).unwrap_or_default()
        )
    } else {
        "/sign-in".to_string()
    };
    HttpResponse::SeeOther()
        .insert_header(("Location", to))
        .finish()
}
