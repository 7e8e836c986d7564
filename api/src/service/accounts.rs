//! Accounts: registering, signing in and out, confirming an email address, resetting and
//! changing a password, accepting an invitation. Sign-in and reset requests are throttled per
//! account and per client address (the caller passes the address it saw).

use crate::auth::{forget_sessions, hash_password, start_session, verify_password, AuthUser};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::UserView;
use actix_web::web;
use serde::Deserialize;
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;
use validator::Validate;
use voucherd_domain::ErrorCode;
use voucherd_domain::{Role, UserId};
use voucherd_store::users::{MailedToken, TokenPurpose, UserRow};

// Each limit is stated twice, side by side: `validate` enforces it, `schema` publishes it.

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[validate(
        custom(function = "crate::extract::deliverable_email"),
        length(max = 254, message = "must be at most 254 characters")
    )]
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[validate(length(min = 12, max = 128, message = "must be 12 to 128 characters"))]
    #[schema(format = Password, min_length = 12, max_length = 128)]
    pub password: String,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    #[schema(min_length = 1, max_length = 200)]
    pub full_name: String,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[validate(length(min = 1, max = 254, message = "must be 1 to 254 characters"))]
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    #[validate(length(min = 1, max = 128, message = "must be 1 to 128 characters"))]
    #[schema(format = Password, min_length = 1, max_length = 128)]
    pub password: String,
}

/// How long a request waits for its turn to hash a password before the API answers 503.
const HASH_WAIT_MS: u64 = 5_000;

/// Argon2 is deliberately slow: it runs on the blocking pool, not an async worker, and only a
/// few at a time.
async fn hashing<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = tokio::time::timeout(
        std::time::Duration::from_millis(HASH_WAIT_MS),
        state.password_hashing.acquire(),
    )
    .await
    .map_err(|_| ApiError::Unavailable)?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    web::block(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// A random secret for a link (32 bytes, hex) and its stored hash.
pub(crate) fn link_secret() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let secret = hex::encode(bytes);
    let hash = crate::keys::hash(&secret);
    (secret, hash)
}

/// A six-digit code and its stored hash (bound to the user, so equal codes hash apart).
fn six_digit_code(user_id: &UserId) -> (String, String) {
    let n = rand::Rng::gen_range(&mut rand::rngs::OsRng, 0..1_000_000u32);
    let code = format!("{n:06}");
    let hash = code_hash(user_id, &code);
    (code, hash)
}

fn code_hash(user_id: &UserId, code: &str) -> String {
    crate::keys::hash(&format!("{user_id}:{code}"))
}

/// The verification email for `user`: a code to type in and a link, both single-use.
fn verification(state: &AppState, user_id: &UserId, full_name: &str) -> MailedToken {
    let a = &state.config.accounts;
    let (secret, secret_hash) = link_secret();
    let (code, code_hash) = six_digit_code(user_id);
    MailedToken {
        secret_hash,
        code_hash: Some(code_hash),
        purpose: TokenPurpose::VerifyEmail,
        expires_at: voucherd_store::now()
            + chrono::Duration::hours(i64::from(a.verification_valid_hours)),
        template: "verify_email",
        data: serde_json::json!({
            "full_name": full_name,
            "code": code,
            "link": format!("{}/verify-email?token={secret}", a.public_url),
            "valid_hours": a.verification_valid_hours,
        }),
    }
}

fn throttled(state: &AppState, account: &str, client: IpAddr) -> Result<(), ApiError> {
    state
        .throttle
        .attempt(account, client)
        .map_err(|wait| ApiError::TooManyRequests {
            retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        })
}

/// Self-registration always creates an applicant, unverified until the emailed code or link
/// comes back; staff accounts come by invitation (or `create-admin`).
pub async fn register(state: &AppState, body: RegisterRequest) -> Result<UserView, ApiError> {
    let full_name = body.full_name.trim().to_string();
    if full_name.is_empty() {
        return Err(ApiError::field("full_name", "must not be blank"));
    }
    let password_hash = new_password_hash(state, body.password).await?;
    let id = crate::keys::new_id::<UserId>();
    let token = verification(state, &id, &full_name);
    let user = state
        .store
        .register_user(
            UserRow {
                id,
                email: body.email.trim().to_lowercase(),
                password_hash,
                full_name,
                role: Role::Applicant,
                created_at: voucherd_store::now(),
                email_verified_at: None,
                disabled_at: None,
            },
            token,
        )
        .await?;
    Ok(UserView::from(&user))
}

/// A new password's argon2 hash, computed on the bounded hashing pool.
async fn new_password_hash(state: &AppState, password: String) -> Result<String, ApiError> {
    hashing(state, move || hash_password(&password)).await?
}

/// The hash checked when the email is unknown, so that a wrong email takes as long as a
/// wrong password and response times do not reveal who has an account.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
        .clone()
}

/// Checks an email and password (throttled per account and per address, in equal time for
/// known and unknown emails); the account when they match and it is not disabled.
async fn check_password(
    state: &AppState,
    client: IpAddr,
    email: &str,
    password: String,
) -> Result<UserRow, ApiError> {
    throttled(state, email, client)?;
    let user = state.store.user_by_email(email.to_string()).await?;
    let hash = match &user {
        // An invited account without a password yet checks the dummy: equal time, no match.
        Some(u) if !u.password_hash.is_empty() => u.password_hash.clone(),
        _ => hashing(state, dummy_hash).await?,
    };
    let ok = hashing(state, move || verify_password(&password, &hash)).await?;
    match user {
        Some(u) if ok && u.disabled_at.is_none() && !u.password_hash.is_empty() => Ok(u),
        _ => Err(ApiError::InvalidCredentials),
    }
}

/// An access token, as OAuth 2.0 writes one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TokenResponse)]
pub struct TokenView {
    /// An HS256 JWT.
    pub access_token: String,
    #[schema(examples("Bearer"))]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

/// Signs in: a new session and its access token.
pub async fn login(
    state: &AppState,
    client: IpAddr,
    body: LoginRequest,
) -> Result<TokenView, ApiError> {
    let email = body.email.trim().to_lowercase();
    let user = check_password(state, client, &email, body.password).await?;
    let token = start_session(state, &user.id).await?;
    Ok(TokenView {
        access_token: token,
        token_type: "Bearer",
        expires_in: state.tokens.ttl_secs,
    })
}

/// Signs out: the token's session ends, on this instance at once and on every other within
/// the session cache's lifetime.
pub async fn logout(state: &AppState, user: &AuthUser) -> Result<(), ApiError> {
    state.store.end_session(user.session_id.clone()).await?;
    state.sessions.remove(&user.session_id);
    Ok(())
}

/// The signed-in person's own account.
pub async fn me(state: &AppState, user: &AuthUser) -> Result<UserView, ApiError> {
    let row = state.store.user(user.id.clone()).await?;
    Ok(UserView::from(&row))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    #[validate(custom(function = "six_digits"))]
    pub code: String,
}

fn six_digits(code: &str) -> Result<(), validator::ValidationError> {
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(validator::ValidationError::new("code")
            .with_message("must be the 6 digits we sent".into()))
    }
}

/// Verifies the signed-in person's email address with the code they were sent.
pub async fn verify_code(
    state: &AppState,
    user: &AuthUser,
    body: CodeRequest,
) -> Result<UserView, ApiError> {
    let hash = code_hash(&user.id, body.code.trim());
    let row = state
        .store
        .verify_email_by_code(user.id.clone(), hash)
        .await?;
    forget_sessions(state, &row.id);
    Ok(UserView::from(&row))
}

/// Where a new code and link went.
#[derive(Debug, Clone, Serialize)]
pub struct SentView {
    pub sent_to: String,
}

/// Sends a new verification code and link (the earlier ones stop working).
pub async fn resend_verification(
    state: &AppState,
    user: &AuthUser,
    client: IpAddr,
) -> Result<SentView, ApiError> {
    let row = state.store.user(user.id.clone()).await?;
    if row.email_verified_at.is_some() {
        return Err(ApiError::conflict(
            ErrorCode::AlreadyVerified,
            "this email address is already confirmed",
        ));
    }
    throttled(state, &format!("verify:{}", row.id), client)?;
    let token = verification(state, &row.id, &row.full_name);
    state.store.mail_token(row.id.clone(), token).await?;
    Ok(SentView { sent_to: row.email })
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    #[validate(length(
        min = 64,
        max = 64,
        message = "must be the token from the link we sent"
    ))]
    pub token: String,
}

/// Verifies an email address by the link's token (no sign-in needed: the link may be opened
/// on another device).
pub async fn verify_link(state: &AppState, body: LinkRequest) -> Result<UserView, ApiError> {
    let row = state
        .store
        .verify_email_by_link(crate::keys::hash(&body.token))
        .await?;
    forget_sessions(state, &row.id);
    Ok(UserView::from(&row))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    #[validate(length(min = 1, max = 254, message = "must be 1 to 254 characters"))]
    pub email: String,
}

/// Asks for a password reset link. The answer is the same whether or not the email has an
/// account, and the email is written after the answer, so its time tells nothing either.
pub async fn request_reset(
    state: Arc<AppState>,
    client: IpAddr,
    body: ResetRequest,
) -> Result<DetailView, ApiError> {
    let email = body.email.trim().to_lowercase();
    throttled(&state, &format!("reset:{email}"), client)?;
    let a = state.config.accounts.clone();
    tokio::spawn(async move {
        let user = match state.store.user_by_email(email).await {
            Ok(Some(u)) if u.disabled_at.is_none() && !u.password_hash.is_empty() => u,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "a password reset could not be sent");
                return;
            }
        };
        let (secret, secret_hash) = link_secret();
        let token = MailedToken {
            secret_hash,
            code_hash: None,
            purpose: TokenPurpose::ResetPassword,
            expires_at: voucherd_store::now()
                + chrono::Duration::minutes(i64::from(a.password_reset_valid_minutes)),
            template: "password_reset",
            data: serde_json::json!({
                "full_name": user.full_name,
                "link": format!("{}/reset-password?token={secret}", a.public_url),
                "valid_minutes": a.password_reset_valid_minutes,
            }),
        };
        if let Err(e) = state.store.mail_token(user.id, token).await {
            tracing::warn!(error = %e, "a password reset could not be sent");
        }
    });
    Ok(DetailView {
        detail: "if an account uses this email address, a link to reset its password is on its way",
    })
}

/// An answer that is only words.
#[derive(Debug, Clone, Serialize)]
pub struct DetailView {
    pub detail: &'static str,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct NewPasswordRequest {
    #[validate(length(
        min = 64,
        max = 64,
        message = "must be the token from the link we sent"
    ))]
    pub token: String,
    #[validate(length(min = 12, max = 128, message = "must be 12 to 128 characters"))]
    pub password: String,
}

/// Sets a new password with a reset link's token; every session of the account ends.
pub async fn reset_password(state: &AppState, body: NewPasswordRequest) -> Result<(), ApiError> {
    let hash = new_password_hash(state, body.password).await?;
    let row = state
        .store
        .reset_password(crate::keys::hash(&body.token), hash)
        .await?;
    forget_sessions(state, &row.id);
    Ok(())
}

/// Accepts a staff invitation by choosing a password.
pub async fn accept_invitation(
    state: &AppState,
    body: NewPasswordRequest,
) -> Result<UserView, ApiError> {
    let hash = new_password_hash(state, body.password).await?;
    let row = state
        .store
        .accept_invitation(crate::keys::hash(&body.token), hash)
        .await?;
    Ok(UserView::from(&row))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[validate(length(min = 1, max = 128, message = "must be 1 to 128 characters"))]
    pub current_password: String,
    #[validate(length(min = 12, max = 128, message = "must be 12 to 128 characters"))]
    pub new_password: String,
}

/// Changes the signed-in person's password; every session of the account ends with it, this
/// one included.
pub async fn change_password(
    state: &AppState,
    user: &AuthUser,
    client: IpAddr,
    body: PasswordChange,
) -> Result<(), ApiError> {
    let row = state.store.user(user.id.clone()).await?;
    match check_password(state, client, &row.email, body.current_password).await {
        Ok(_) => {}
        Err(ApiError::InvalidCredentials) => {
            return Err(ApiError::field(
                "current_password",
                "is not your current password",
            ))
        }
        Err(e) => return Err(e),
    }
    let hash = new_password_hash(state, body.new_password).await?;
    state.store.change_password(row.id.clone(), hash).await?;
    forget_sessions(state, &row.id);
    Ok(())
}
