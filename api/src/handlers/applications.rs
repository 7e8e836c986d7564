//! Applications over HTTP: adapters over [`crate::service::applications`].

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::handlers::query;
use crate::service::applications::{self as service, DecidedView};
pub use crate::service::applications::{
    ApplicationRequest, DecisionKind, DecisionRequest, ListQuery, OwnershipRequest, PreviewQuery,
    ReleaseRequest, SecondApprovalRequest, SecondDecisionKind, SubsidyDeclarationRequest,
};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use voucherd_domain::ApplicationId;

pub async fn submit(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<ApplicationRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::submit(&state, &user, body).await?))
}

/// Applicants see their own applications; administrators see all.
pub async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::list(&state, &user, query(&req)?).await?))
}

pub async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = ApplicationId::new(path.into_inner());
    Ok(HttpResponse::Ok().json(service::get(&state, &user, &id).await?))
}

/// 202 for an approval that waits for a second administrator, 200 for a decision made.
fn decided(d: DecidedView) -> HttpResponse {
    if d.awaiting_second {
        HttpResponse::Accepted().json(d)
    } else {
        HttpResponse::Ok().json(d)
    }
}

/// Approves or rejects a submitted application. An approval worth more than
/// `second_approval_above` is recorded as awaiting a second administrator (202, no money
/// moves); see [`second_approval`].
pub async fn decide(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<DecisionRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = ApplicationId::new(path.into_inner());
    Ok(decided(service::decide(&state, &user, &id, body).await?))
}

/// A second administrator confirms or rejects an approval awaiting one.
pub async fn second_approval(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<SecondApprovalRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = ApplicationId::new(path.into_inner());
    Ok(decided(
        service::second_approval(&state, &user, &id, body).await?,
    ))
}

/// An administrator confirms or refuses that the applicant owns the company, with a note.
pub async fn ownership(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<OwnershipRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = ApplicationId::new(path.into_inner());
    Ok(HttpResponse::Ok().json(service::ownership(&state, &user, &id, body).await?))
}

/// Releases the company number an application without a voucher holds.
pub async fn release(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<ReleaseRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = ApplicationId::new(path.into_inner());
    Ok(HttpResponse::Ok().json(service::release(&state, &user, &id, body).await?))
}

/// What the incentive rules would add to an approval, shown before it is confirmed.
pub async fn preview_incentives(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = ApplicationId::new(path.into_inner());
    let q: PreviewQuery = query(&req)?;
    Ok(HttpResponse::Ok().json(service::preview_incentives(&state, &id, q).await?))
}
