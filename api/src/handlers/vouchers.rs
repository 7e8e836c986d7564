//! Vouchers and keys over HTTP: adapters over [`crate::service::vouchers`].

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::handlers::{query, Page};
use crate::service::vouchers as service;
pub use crate::service::vouchers::{
    CreateKeyRequest, RotateKeyRequest, StatementQuery, SuspensionRequest, VoucherQuery,
};
use crate::state::AppState;
use crate::views::List;
use actix_web::{web, HttpRequest, HttpResponse};
use voucherd_domain::VoucherId;

pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let data = service::list(&state, &user, query(&req)?).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

pub async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = VoucherId::new(path.into_inner());
    Ok(HttpResponse::Ok().json(service::get(&state, &user, &id).await?))
}

/// The voucher's ledger entries, newest first.
pub async fn transactions(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = VoucherId::new(path.into_inner());
    let page: Page = query(&req)?;
    let data = service::transactions(&state, &user, &id, page).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// The voucher's statement, oldest first, paged by cursor.
pub async fn statement(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = VoucherId::new(path.into_inner());
    let q: StatementQuery = query(&req)?;
    Ok(HttpResponse::Ok().json(service::statement(&state, &user, &id, q).await?))
}

/// Metered requests against the voucher, newest first, each with its price snapshot.
pub async fn usage(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = VoucherId::new(path.into_inner());
    let page: Page = query(&req)?;
    let data = service::usage(&state, &user, &id, page).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// Mints a key for the caller's own active voucher. The key is in this response only.
pub async fn create_key(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = VoucherId::new(path.into_inner());
    Ok(HttpResponse::Created().json(service::create_key(&state, &user, &id, body).await?))
}

/// Issues a replacement with the same settings; the old key stops after the grace period.
pub async fn rotate_key(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<RotateKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::rotate_key(&state, &user, &path, body).await?))
}

pub async fn list_keys(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = VoucherId::new(path.into_inner());
    let data = service::list_keys(&state, &user, &id).await?;
    Ok(HttpResponse::Ok().json(List { data }))
}

/// Revokes a key. Repeating it is harmless (204 again) and records nothing new.
pub async fn revoke_key(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service::revoke_key(&state, &user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Suspends a voucher until it is reinstated. Audited with the reason.
pub async fn suspend(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<SuspensionRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = VoucherId::new(path.into_inner());
    let v = service::set_suspension(&state, &user, &id, body, true).await?;
    Ok(HttpResponse::Ok().json(v))
}

/// Reinstates a suspended voucher, with the reason.
pub async fn reinstate(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<SuspensionRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = VoucherId::new(path.into_inner());
    let v = service::set_suspension(&state, &user, &id, body, false).await?;
    Ok(HttpResponse::Ok().json(v))
}

/// Expires a voucher now, audited with the reason.
pub async fn expire_now(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<SuspensionRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = VoucherId::new(path.into_inner());
    Ok(HttpResponse::Ok().json(service::expire_now(&state, &user, &id, body).await?))
}
