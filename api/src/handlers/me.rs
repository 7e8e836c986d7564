//! Accounts over HTTP: adapters over [`crate::service::accounts`].

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::service::accounts as service;
pub use crate::service::accounts::{
    CodeRequest, LinkRequest, LoginRequest, NewPasswordRequest, PasswordChange, RegisterRequest,
    ResetRequest,
};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use std::net::IpAddr;

/// The address a request comes from, as the throttles count it.
pub fn client_address(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip())
}

/// Self-registration always creates an applicant, unverified until the emailed code or link
/// comes back; staff accounts come by invitation (or `create-admin`).
pub async fn register(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::register(&state, body).await?))
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = service::login(&state, client_address(&req), body).await?;
    Ok(HttpResponse::Ok().json(token))
}

/// Signs out: the token's session ends, on this instance at once and on every other within
/// the session cache's lifetime.
pub async fn logout(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    service::logout(&state, &user).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::me(&state, &user).await?))
}

/// Verifies the signed-in person's email address with the code they were sent.
pub async fn verify_code(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::verify_code(&state, &user, body).await?))
}

/// Sends a new verification code and link (the earlier ones stop working).
pub async fn resend_verification(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let sent = service::resend_verification(&state, &user, client_address(&req)).await?;
    Ok(HttpResponse::Accepted().json(sent))
}

/// Verifies an email address by the link's token (no sign-in needed).
pub async fn verify_link(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<LinkRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::verify_link(&state, body).await?))
}

/// Asks for a password reset link; the same answer whether or not the email has an account.
pub async fn request_reset(
    req: HttpRequest,
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = client_address(&req);
    let answer = service::request_reset(state.into_inner(), client, body).await?;
    Ok(HttpResponse::Accepted().json(answer))
}

/// Sets a new password with a reset link's token; every session of the account ends.
pub async fn reset_password(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<NewPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    service::reset_password(&state, body).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Accepts a staff invitation by choosing a password.
pub async fn accept_invitation(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<NewPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::accept_invitation(&state, body).await?))
}

/// Changes the signed-in person's password; every session of the account ends with it.
pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    service::change_password(&state, &user, client_address(&req), body).await?;
    Ok(HttpResponse::NoContent().finish())
}
