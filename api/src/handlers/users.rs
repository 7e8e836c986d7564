//! Staff accounts over HTTP: adapters over [`crate::service::users`].

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::handlers::{query, Page};
use crate::service::users as service;
pub use crate::service::users::{AccountStatus, Invitation, RoleChange, RoleFilter, StaffRole};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

/// Everyone with an account, optionally of one role, by email address.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // `?role=` is read apart from `?limit=&offset=`: serde cannot flatten numbers out of a
    // query string.
    let filter: RoleFilter = query(&req)?;
    let page: Page = query(&req)?;
    Ok(HttpResponse::Ok().json(service::list(&state, filter, page).await?))
}

/// Invites a member of staff: an account with the role and no password, and an email with a
/// single-use link to choose one.
pub async fn invite(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<Invitation>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::invite(&state, &user, body).await?))
}

/// Sends a new invitation (the earlier link stops working) to someone who has not accepted.
pub async fn reinvite(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(service::reinvite(&state, &user, &path).await?))
}

/// Changes someone's role; their sessions end, so the new role applies at once.
pub async fn change_role(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<RoleChange>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::change_role(&state, &user, &path, body).await?))
}

/// Disables an account: it cannot sign in, and its sessions end at once.
pub async fn disable(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<AccountStatus>,
) -> Result<HttpResponse, ApiError> {
    let row = service::set_disabled(&state, &user, &path, body, true).await?;
    Ok(HttpResponse::Ok().json(row))
}

/// Enables a disabled account again.
pub async fn enable(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<AccountStatus>,
) -> Result<HttpResponse, ApiError> {
    let row = service::set_disabled(&state, &user, &path, body, false).await?;
    Ok(HttpResponse::Ok().json(row))
}
