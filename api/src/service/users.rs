//! Staff accounts: administrators invite advisers, assessors and other administrators by
//! email, change roles and disable accounts. Every change is audited, and a role change or a
//! disabled account ends that person's sessions at once.

use crate::auth::{forget_sessions, AuthUser};
use crate::error::ApiError;
use crate::extract::Reason;
use crate::handlers::Page;
use crate::service::accounts::link_secret;
use crate::state::AppState;
use crate::views::UserView;
use serde::{Deserialize, Serialize};
use validator::Validate;
use voucherd_domain::{Role, UserId};
use voucherd_store::users::{MailedToken, TokenPurpose, UserRow};

/// `?role=` beside the page's `?limit=&offset=` (read apart: serde cannot flatten numbers out
/// of a query string).
#[derive(Debug, Default, Deserialize, Validate)]
pub struct RoleFilter {
    pub role: Option<Role>,
}

/// Everyone with an account, optionally of one role, by email address.
/// One page of accounts, with how many there are in all.
#[derive(Debug, Clone, Serialize)]
pub struct UsersView {
    pub data: Vec<UserView>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

pub async fn list(state: &AppState, filter: RoleFilter, page: Page) -> Result<UsersView, ApiError> {
    let (rows, total) = state
        .store
        .users(filter.role, page.limit(), page.offset())
        .await?;
    Ok(UsersView {
        data: rows.iter().map(UserView::from).collect(),
        total,
        limit: page.limit(),
        offset: page.offset(),
    })
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
    state: &AppState,
    user: &AuthUser,
    body: Invitation,
) -> Result<UserView, ApiError> {
    let full_name = body.full_name.trim().to_string();
    if full_name.is_empty() {
        return Err(ApiError::field("full_name", "must not be blank"));
    }
    let inviter = state.store.user(user.id.clone()).await?;
    let role = Role::from(body.role);
    let row = UserRow {
        id: crate::keys::new_id::<UserId>(),
        email: body.email.trim().to_lowercase(),
        password_hash: String::new(),
        full_name,
        role,
        created_at: voucherd_store::now(),
        email_verified_at: None,
        disabled_at: None,
    };
    let token = invitation(state, &inviter, &row, role);
    let row = state.store.invite_user(user.id.clone(), row, token).await?;
    Ok(UserView::from(&row))
}

/// Sends a new invitation (the earlier link stops working) to someone who has not accepted.
pub async fn reinvite(state: &AppState, user: &AuthUser, id: &str) -> Result<UserView, ApiError> {
    let inviter = state.store.user(user.id.clone()).await?;
    let invited = state.store.user(UserId::new(id)).await?;
    let role = invited.role;
    let token = invitation(state, &inviter, &invited, role);
    let row = state
        .store
        .reinvite_user(user.id.clone(), invited.id, token)
        .await?;
    Ok(UserView::from(&row))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
    pub reason: Reason,
}

/// Changes someone's role; their sessions end, so the new role applies at once.
pub async fn change_role(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    body: RoleChange,
) -> Result<UserView, ApiError> {
    let row = state
        .store
        .change_role(
            user.id.clone(),
            UserId::new(id),
            body.role,
            body.reason.into_inner(),
        )
        .await?;
    forget_sessions(state, &row.id);
    Ok(UserView::from(&row))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct AccountStatus {
    pub reason: Reason,
}

/// Disables an account (it cannot sign in, and its sessions end at once) or enables it again.
pub async fn set_disabled(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    body: AccountStatus,
    disabled: bool,
) -> Result<UserView, ApiError> {
    let row = state
        .store
        .set_user_disabled(
            user.id.clone(),
            UserId::new(id),
            disabled,
            body.reason.into_inner(),
        )
        .await?;
    forget_sessions(state, &row.id);
    Ok(UserView::from(&row))
}

/// Who these accounts are, "Full Name (email)", by id: each read once; an account that no
/// longer exists is `None`. For pages and lists that name staff instead of showing ids.
pub async fn names(
    state: &AppState,
    ids: impl IntoIterator<Item = UserId>,
) -> Result<std::collections::HashMap<UserId, Option<String>>, ApiError> {
    let mut names = std::collections::HashMap::new();
    for id in ids {
        if names.contains_key(&id) {
            continue;
        }
        let name = match state.store.user(id.clone()).await {
            Ok(u) => Some(format!("{} ({})", u.full_name, u.email)),
            Err(voucherd_store::StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        names.insert(id, name);
    }
    Ok(names)
}
