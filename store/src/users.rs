//! Accounts: users, their server-side sessions and the single-use tokens sent to them by email
//! (email verification, password reset, staff invitations). See docs/ARCHITECTURE.md,
//! "Accounts and sessions".

use crate::audit::{self, AuditEntry};
use crate::db::{now, DbConn, Store};
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::outbox::{self, Notification};
use crate::schema::{account_tokens, sessions, users};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::UserId;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: UserId,
    /// Lower-cased by the caller, so the UNIQUE index is case-insensitive in effect.
    pub email: String,
    /// Empty for an invited account that has not chosen a password: nothing verifies against it.
    pub password_hash: String,
    pub full_name: String,
    pub role: voucherd_domain::Role,
    pub created_at: NaiveDateTime,
    pub email_verified_at: Option<NaiveDateTime>,
    pub disabled_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id: String,
    pub user_id: UserId,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub ended_at: Option<NaiveDateTime>,
    pub ended_reason: Option<String>,
}

/// A session that is still open, with what its user is now (not what they were at sign-in).
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub user_id: UserId,
    pub role: voucherd_domain::Role,
    pub email_verified: bool,
    pub expires_at: NaiveDateTime,
}

/// What an account token is for. Stored as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
    Invitation,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::ResetPassword => "reset_password",
            TokenPurpose::Invitation => "invitation",
        }
    }
}

/// A token to store and mail in one transaction: the hashes of what the email carries, and the
/// email itself.
#[derive(Debug, Clone)]
pub struct MailedToken {
    pub secret_hash: String,
    pub code_hash: Option<String>,
    pub purpose: TokenPurpose,
    pub expires_at: NaiveDateTime,
    pub template: &'static str,
    /// The template's data (the link, the code); the outbox keeps it until the mail is sent.
    pub data: serde_json::Value,
}

/// Wrong codes allowed per verification code before a new one must be sent.
pub const MAX_CODE_ATTEMPTS: i32 = 5;

/// Why sessions end, as recorded.
pub mod ended {
    pub const SIGNED_OUT: &str = "signed_out";
    pub const PASSWORD_CHANGED: &str = "password_changed";
    pub const PASSWORD_RESET: &str = "password_reset";
    pub const ROLE_CHANGED: &str = "role_changed";
    pub const DISABLED: &str = "disabled";
}

fn invalid_token() -> StoreError {
    StoreError::Refused(
        voucherd_domain::ErrorCode::InvalidToken,
        "this link or code is not valid: it was used already, has expired or was replaced by a newer one".into(),
    )
}

fn store_token(c: &mut DbConn, user: &UserRow, t: MailedToken) -> StoreResult<()> {
    let at = now();
    // A new token of a purpose replaces any earlier one still open.
    diesel::update(
        account_tokens::table
            .filter(account_tokens::user_id.eq(&user.id))
            .filter(account_tokens::purpose.eq(t.purpose.as_str()))
            .filter(account_tokens::used_at.is_null()),
    )
    .set(account_tokens::used_at.eq(at))
    .execute(c)?;
    diesel::insert_into(account_tokens::table)
        .values((
            account_tokens::id.eq(&t.secret_hash),
            account_tokens::user_id.eq(&user.id),
            account_tokens::purpose.eq(t.purpose.as_str()),
            account_tokens::code_hash.eq(&t.code_hash),
            account_tokens::failed_attempts.eq(0),
            account_tokens::created_at.eq(at),
            account_tokens::expires_at.eq(t.expires_at),
        ))
        .execute(c)?;
    outbox::enqueue(
        c,
        Notification {
            dedupe_key: format!("{}:{}", t.purpose.as_str(), t.secret_hash),
            recipient: &user.email,
            template: t.template,
            data: t.data,
        },
    )?;
    Ok(())
}

/// Ends every open session of a user, inside the caller's transaction.
fn end_sessions(c: &mut DbConn, user_id: &UserId, reason: &str) -> StoreResult<usize> {
    Ok(diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::ended_at.is_null()),
    )
    .set((
        sessions::ended_at.eq(now()),
        sessions::ended_reason.eq(reason),
    ))
    .execute(c)?)
}

fn load_user(c: &mut DbConn, id: &UserId) -> StoreResult<UserRow> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("user"))
}

fn insert_user(c: &mut DbConn, row: &UserRow) -> StoreResult<()> {
    match diesel::insert_into(users::table).values(row).execute(c) {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

/// Marks a token used if it is open, of `purpose` and unexpired; the user it belongs to.
fn redeem(c: &mut DbConn, secret_hash: &str, purpose: TokenPurpose) -> StoreResult<UserRow> {
    let at = now();
    let user_id: UserId = account_tokens::table
        .find(secret_hash)
        .filter(account_tokens::purpose.eq(purpose.as_str()))
        .select(account_tokens::user_id)
        .first(c)
        .optional()?
        .ok_or_else(invalid_token)?;
    // Single use between processes too: only one UPDATE finds the token open.
    let used = diesel::update(
        account_tokens::table
            .find(secret_hash)
            .filter(account_tokens::used_at.is_null())
            .filter(account_tokens::expires_at.gt(at)),
    )
    .set(account_tokens::used_at.eq(at))
    .execute(c)?;
    if used != 1 {
        return Err(invalid_token());
    }
    let user = load_user(c, &user_id)?;
    if user.disabled_at.is_some() {
        return Err(invalid_token());
    }
    Ok(user)
}

impl Store {
    pub async fn create_user(&self, row: UserRow) -> StoreResult<UserRow> {
        self.write(move |c| insert_user(c, &row).map(|_| row)).await
    }

    /// A self-registered account and its verification email, together.
    pub async fn register_user(&self, row: UserRow, token: MailedToken) -> StoreResult<UserRow> {
        self.write(move |c| {
            insert_user(c, &row)?;
            store_token(c, &row, token)?;
            Ok(row)
        })
        .await
    }

    pub async fn user_by_email(&self, email: String) -> StoreResult<Option<UserRow>> {
        self.read(move |c| {
            Ok(users::table
                .filter(users::email.eq(email))
                .select(UserRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    pub async fn user(&self, id: UserId) -> StoreResult<UserRow> {
        self.read(move |c| load_user(c, &id)).await
    }

    pub async fn count_users(&self) -> StoreResult<i64> {
        self.read(|c| Ok(users::table.count().get_result(c)?)).await
    }

    /// Users, optionally of one role, by email; and how many there are in all.
    pub async fn users(
        &self,
        role: Option<voucherd_domain::Role>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<UserRow>, i64)> {
        self.read(move |c| {
            let mut q = users::table.into_boxed();
            let mut n = users::table.into_boxed();
            if let Some(r) = &role {
                q = q.filter(users::role.eq(*r));
                n = n.filter(users::role.eq(*r));
            }
            let rows = q
                .order(users::email.asc())
                .limit(limit)
                .offset(offset)
                .select(UserRow::as_select())
                .load(c)?;
            Ok((rows, n.count().get_result(c)?))
        })
        .await
    }

    /// Opens a session for a user who has just proven who they are.
    pub async fn open_session(&self, row: SessionRow) -> StoreResult<SessionRow> {
        self.write(move |c| {
            diesel::insert_into(sessions::table)
                .values(&row)
                .execute(c)?;
            Ok(row)
        })
        .await
    }

    /// The session if it is open and unexpired and its user is not disabled.
    pub async fn live_session(&self, id: String) -> StoreResult<Option<LiveSession>> {
        self.read(move |c| {
            let row: Option<(
                String,
                voucherd_domain::Role,
                Option<NaiveDateTime>,
                NaiveDateTime,
            )> = sessions::table
                .inner_join(users::table)
                .filter(sessions::id.eq(&id))
                .filter(sessions::ended_at.is_null())
                .filter(sessions::expires_at.gt(now()))
                .filter(users::disabled_at.is_null())
                .select((
                    users::id,
                    users::role,
                    users::email_verified_at,
                    sessions::expires_at,
                ))
                .first(c)
                .optional()?;
            Ok(
                row.map(|(user_id, role, verified, expires_at)| LiveSession {
                    user_id: UserId::new(user_id),
                    role,
                    email_verified: verified.is_some(),
                    expires_at,
                }),
            )
        })
        .await
    }

    /// Ends one session (signing out); ending an ended session changes nothing.
    pub async fn end_session(&self, id: String) -> StoreResult<()> {
        self.write(move |c| {
            diesel::update(
                sessions::table
                    .find(&id)
                    .filter(sessions::ended_at.is_null()),
            )
            .set((
                sessions::ended_at.eq(now()),
                sessions::ended_reason.eq(ended::SIGNED_OUT),
            ))
            .execute(c)?;
            Ok(())
        })
        .await
    }

    /// Sends a new token by email (a new verification code, a password reset), replacing any
    /// earlier one of the same purpose.
    pub async fn mail_token(&self, user_id: UserId, token: MailedToken) -> StoreResult<()> {
        self.write(move |c| {
            let user = load_user(c, &user_id)?;
            store_token(c, &user, token)
        })
        .await
    }

    /// Verifies an email address by the link's token.
    pub async fn verify_email_by_link(&self, secret_hash: String) -> StoreResult<UserRow> {
        self.write(move |c| {
            let user = redeem(c, &secret_hash, TokenPurpose::VerifyEmail)?;
            mark_verified(c, user)
        })
        .await
    }

    /// Verifies a signed-in user's email address by the code typed in. A wrong code counts
    /// against the code; after [`MAX_CODE_ATTEMPTS`] a new one must be sent.
    pub async fn verify_email_by_code(
        &self,
        user_id: UserId,
        code_hash: String,
    ) -> StoreResult<UserRow> {
        // A wrong code is counted in a transaction that commits: the refusal is the result.
        self.write(move |c| -> StoreResult<StoreResult<UserRow>> {
            let open: Option<(String, Option<String>, i32)> = account_tokens::table
                .filter(account_tokens::user_id.eq(&user_id))
                .filter(account_tokens::purpose.eq(TokenPurpose::VerifyEmail.as_str()))
                .filter(account_tokens::used_at.is_null())
                .filter(account_tokens::expires_at.gt(now()))
                .select((
                    account_tokens::id,
                    account_tokens::code_hash,
                    account_tokens::failed_attempts,
                ))
                .first(c)
                .optional()?;
            let Some((id, expected, failed)) = open else {
                return Ok(Err(invalid_token()));
            };
            if failed >= MAX_CODE_ATTEMPTS {
                return Ok(Err(StoreError::Refused(
                    voucherd_domain::ErrorCode::TooManyAttempts,
                    "too many wrong codes: ask for a new one".into(),
                )));
            }
            if expected.as_deref() != Some(code_hash.as_str()) {
                diesel::update(account_tokens::table.find(&id))
                    .set(account_tokens::failed_attempts.eq(failed + 1))
                    .execute(c)?;
                return Ok(Err(StoreError::Refused(
                    voucherd_domain::ErrorCode::WrongCode,
                    "the code is not the one we sent".into(),
                )));
            }
            let user = redeem(c, &id, TokenPurpose::VerifyEmail)?;
            mark_verified(c, user).map(Ok)
        })
        .await?
    }

    /// Sets a new password by a reset link (single use). Proves the mailbox, so the address
    /// counts as verified; every session of the account ends.
    pub async fn reset_password(
        &self,
        secret_hash: String,
        password_hash: String,
    ) -> StoreResult<UserRow> {
        self.write(move |c| {
            let mut user = redeem(c, &secret_hash, TokenPurpose::ResetPassword)?;
            set_password(c, &user.id, &password_hash)?;
            user.password_hash = password_hash;
            end_sessions(c, &user.id, ended::PASSWORD_RESET)?;
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&user.id),
                    action: "password_reset",
                    subject_type: "user",
                    subject_id: user.id.as_str(),
                    reason: None,
                    details: serde_json::json!({}),
                },
            )?;
            mark_verified(c, user)
        })
        .await
    }

    /// Accepts a staff invitation: the invited person chooses a password.
    pub async fn accept_invitation(
        &self,
        secret_hash: String,
        password_hash: String,
    ) -> StoreResult<UserRow> {
        self.write(move |c| {
            let mut user = redeem(c, &secret_hash, TokenPurpose::Invitation)?;
            set_password(c, &user.id, &password_hash)?;
            user.password_hash = password_hash;
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&user.id),
                    action: "invitation_accepted",
                    subject_type: "user",
                    subject_id: user.id.as_str(),
                    reason: None,
                    details: serde_json::json!({"role": user.role}),
                },
            )?;
            mark_verified(c, user)
        })
        .await
    }

    /// A signed-in user's new password; every session of the account ends with it.
    pub async fn change_password(&self, user_id: UserId, password_hash: String) -> StoreResult<()> {
        self.write(move |c| {
            set_password(c, &user_id, &password_hash)?;
            end_sessions(c, &user_id, ended::PASSWORD_CHANGED)?;
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&user_id),
                    action: "password_changed",
                    subject_type: "user",
                    subject_id: user_id.as_str(),
                    reason: None,
                    details: serde_json::json!({}),
                },
            )
        })
        .await
    }

    /// An administrator invites a member of staff: the account, its invitation email and the
    /// audit entry, together.
    pub async fn invite_user(
        &self,
        actor_id: UserId,
        row: UserRow,
        token: MailedToken,
    ) -> StoreResult<UserRow> {
        self.write(move |c| {
            insert_user(c, &row)?;
            store_token(c, &row, token)?;
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: "user_invited",
                    subject_type: "user",
                    subject_id: row.id.as_str(),
                    reason: None,
                    details: serde_json::json!({"email": row.email, "role": row.role}),
                },
            )?;
            Ok(row)
        })
        .await
    }

    /// Sends a new invitation to an invited person who has not yet accepted.
    pub async fn reinvite_user(
        &self,
        actor_id: UserId,
        user_id: UserId,
        token: MailedToken,
    ) -> StoreResult<UserRow> {
        self.write(move |c| {
            let user = load_user(c, &user_id)?;
            if !user.password_hash.is_empty() {
                return Err(StoreError::Refused(
                    voucherd_domain::ErrorCode::InvitationAccepted,
                    "this person has already accepted their invitation".into(),
                ));
            }
            store_token(c, &user, token)?;
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: "user_reinvited",
                    subject_type: "user",
                    subject_id: user.id.as_str(),
                    reason: None,
                    details: serde_json::json!({"email": user.email}),
                },
            )?;
            Ok(user)
        })
        .await
    }

    /// An administrator changes someone's role; their sessions end so the new role applies at
    /// once. Nobody changes their own role, and the last active administrator stays one.
    pub async fn change_role(
        &self,
        actor_id: UserId,
        user_id: UserId,
        role: voucherd_domain::Role,
        reason: String,
    ) -> StoreResult<UserRow> {
        self.write(move |c| {
            let user = load_user(c, &user_id)?;
            refuse_own(&actor_id, &user_id, "change your own role")?;
            if user.role == role {
                return Ok(user);
            }
            if user.role == voucherd_domain::Role::Admin {
                keep_an_admin(c, &user_id)?;
            }
            diesel::update(users::table.find(&user_id))
                .set(users::role.eq(role))
                .execute(c)?;
            end_sessions(c, &user_id, ended::ROLE_CHANGED)?;
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: "user_role_changed",
                    subject_type: "user",
                    subject_id: user_id.as_str(),
                    reason: Some(&reason),
                    details: serde_json::json!({"from": user.role, "to": role}),
                },
            )?;
            load_user(c, &user_id)
        })
        .await
    }

    /// An administrator disables or re-enables an account; disabling ends its sessions.
    pub async fn set_user_disabled(
        &self,
        actor_id: UserId,
        user_id: UserId,
        disabled: bool,
        reason: String,
    ) -> StoreResult<UserRow> {
        self.write(move |c| {
            let user = load_user(c, &user_id)?;
            refuse_own(&actor_id, &user_id, "disable your own account")?;
            if user.disabled_at.is_some() == disabled {
                return Ok(user);
            }
            if disabled && user.role == voucherd_domain::Role::Admin {
                keep_an_admin(c, &user_id)?;
            }
            diesel::update(users::table.find(&user_id))
                .set(users::disabled_at.eq(disabled.then(now)))
                .execute(c)?;
            if disabled {
                end_sessions(c, &user_id, ended::DISABLED)?;
            }
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: if disabled {
                        "user_disabled"
                    } else {
                        "user_enabled"
                    },
                    subject_type: "user",
                    subject_id: user_id.as_str(),
                    reason: Some(&reason),
                    details: serde_json::json!({"email": user.email}),
                },
            )?;
            load_user(c, &user_id)
        })
        .await
    }
}

fn refuse_own(actor_id: &UserId, user_id: &UserId, what: &str) -> StoreResult<()> {
    if actor_id == user_id {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::OwnAccount,
            format!("you cannot {what}: ask another administrator"),
        ));
    }
    Ok(())
}

/// Refuses to take away the last enabled administrator other than `user_id`.
fn keep_an_admin(c: &mut DbConn, user_id: &UserId) -> StoreResult<()> {
    let others: i64 = users::table
        .filter(users::role.eq(voucherd_domain::Role::Admin))
        .filter(users::disabled_at.is_null())
        .filter(users::id.ne(user_id))
        .count()
        .get_result(c)?;
    if others == 0 {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::LastAdministrator,
            "the programme must keep at least one active administrator".into(),
        ));
    }
    Ok(())
}

fn set_password(c: &mut DbConn, user_id: &UserId, password_hash: &str) -> StoreResult<()> {
    diesel::update(users::table.find(user_id))
        .set(users::password_hash.eq(password_hash))
        .execute(c)?;
    Ok(())
}

fn mark_verified(c: &mut DbConn, mut user: UserRow) -> StoreResult<UserRow> {
    if user.email_verified_at.is_none() {
        let at = now();
        diesel::update(users::table.find(&user.id))
            .set(users::email_verified_at.eq(at))
            .execute(c)?;
        user.email_verified_at = Some(at);
    }
    Ok(user)
}
