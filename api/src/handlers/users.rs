//! Staff accounts: administrators invite advisers, assessors and other administrators by
//! email, change roles and disable accounts. Every change is audited, and a role change or a
//! disabled account ends that person's sessions at once.

use crate::auth::{forget_sessions, AuthUser};
use crate::error::ApiError;
use crate::extract::{ApiJson, Reason};
use crate::handlers::me::link_secret;
use crate::handlers::{query, Page};
use crate::state::AppState;
use crate::views::UserView;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use validator::Validate;
use voucherd_domain::Role;
use voucherd_store::users::{MailedToken, TokenPurpose, UserRow};

/// `?role=` beside the page's `?limit=&offset=` (read apart: serde cannot flatten numbers out
/// of a query string).
#[derive(Debug, Deserialize, Validate)]
pub struct RoleFilter {
    pub role: Option<Role>,
}

/// Everyone with an account, optionally of one role, by email address.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let filter: RoleFilter = query(&req)?;
    let page: Page = query(&req)?;
    let (rows, total) = state
        .store
        .users(filter.role, page.limit(), page.offset())
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "data": rows.iter().map(UserView::from).collect::<Vec<_>>(),
        "total": total,
        "limit": page.limit(),
        "offset": page.offset(),
    })))
}

/// A role staff may be invited to: applicants create their own accounts.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Admin,
    Adviser,
    Assessor,
}

impl From<StaffRole> for Role {
    fn from(r: StaffRole) -> Role {
        match r {
            StaffRole::Admin => Role::Admin,
            StaffRole::Adviser => Role::Adviser,
            StaffRole::Assessor => Role::Assessor,
        }
    }
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    #[validate(
        custom(function = "crate::extract::deliverable_email"),
        length(max = 254, message = "must be at most 254 characters")
    )]
    pub email: String,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    pub full_name: String,
    pub role: StaffRole,
}

fn invitation(state: &AppState, inviter: &UserRow, user: &UserRow, role: Role) -> MailedToken {
    let a = &state.config.accounts;
    let (secret, secret_hash) = link_secret();
    MailedToken {
        secret_hash,
        code_hash: None,
        purpose: TokenPurpose::Invitation,
        expires_at: voucherd_store::now()
            + chrono::Duration::days(i64::from(a.invitation_valid_days)),
        template: "account_invitation",
        data: serde_json::json!({
            "full_name": user.full_name,
            "invited_by": inviter.full_name,
            "role_name": role.with_article(),
            "link": format!("{}/accept-invitation?token={secret}", a.public_url),
            "valid_days": a.invitation_valid_days,
        }),
    }
}

/// Invites a member of staff: an account with the role and no password, and an email with a
/// single-use link to choose one.
pub async fn invite(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<Invitation>,
) -> Result<HttpResponse, ApiError> {
    let full_name = body.full_name.trim().to_string();
    if full_name.is_empty() {
        return Err(ApiError::field("full_name", "must not be blank"));
    }
    let inviter = state.store.user(user.id.clone()).await?;
    let role = Role::from(body.role);
    let row = UserRow {
        id: uuid::Uuid::now_v7().to_string(),
        email: body.email.trim().to_lowercase(),
        password_hash: String::new(),
        full_name,
        role,
        created_at: voucherd_store::now(),
        email_verified_at: None,
        disabled_at: None,
    };
    let token = invitation(&state, &inviter, &row, role);
    let row = state.store.invite_user(user.id, row, token).await?;
    Ok(HttpResponse::Created().json(UserView::from(&row)))
}

/// Sends a new invitation (the earlier link stops working) to someone who has not accepted.
pub async fn reinvite(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let inviter = state.store.user(user.id.clone()).await?;
    let invited = state.store.user(path.into_inner()).await?;
    let role = invited.role;
    let token = invitation(&state, &inviter, &invited, role);
    let row = state
        .store
        .reinvite_user(user.id, invited.id, token)
        .await?;
    Ok(HttpResponse::Accepted().json(UserView::from(&row)))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
    pub reason: Reason,
}

/// Changes someone's role; their sessions end, so the new role applies at once.
pub async fn change_role(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<RoleChange>,
) -> Result<HttpResponse, ApiError> {
    let row = state
        .store
        .change_role(
            user.id,
            path.into_inner(),
            body.role,
            body.reason.into_inner(),
        )
        .await?;
    forget_sessions(&state, &row.id);
    Ok(HttpResponse::Ok().json(UserView::from(&row)))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct AccountStatus {
    pub reason: Reason,
}

/// Disables an account: it cannot sign in, and its sessions end at once.
pub async fn disable(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<AccountStatus>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(state, user, path.into_inner(), body, true).await
}

/// Enables a disabled account again.
pub async fn enable(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<AccountStatus>,
) -> Result<HttpResponse, ApiError> {
    set_disabled(state, user, path.into_inner(), body, false).await
}

async fn set_disabled(
    state: web::Data<AppState>,
    user: AuthUser,
    id: String,
    body: AccountStatus,
    disabled: bool,
) -> Result<HttpResponse, ApiError> {
    let row = state
        .store
        .set_user_disabled(user.id, id, disabled, body.reason.into_inner())
        .await?;
    forget_sessions(&state, &row.id);
    Ok(HttpResponse::Ok().json(UserView::from(&row)))
}
