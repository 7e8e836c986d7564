use crate::auth::{hash_password, verify_password, AuthUser};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views::UserView;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use validator::Validate;
use voucherd_domain::Role;
use voucherd_store::users::UserRow;

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[validate(
        email(message = "must be an email address"),
        length(max = 254, message = "must be at most 254 characters")
    )]
    pub email: String,
    #[validate(length(min = 12, max = 128, message = "must be 12 to 128 characters"))]
    pub password: String,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    pub full_name: String,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[validate(length(min = 1, max = 254, message = "must be 1 to 254 characters"))]
    pub email: String,
    #[validate(length(min = 1, max = 128, message = "must be 1 to 128 characters"))]
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

/// Self-registration always creates an applicant; administrators come from `create-admin`.
pub async fn register(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let full_name = body.full_name.trim().to_string();
    if full_name.is_empty() {
        return Err(ApiError::field("full_name", "must not be blank"));
    }
    let password = body.password;
    let password_hash = hashing(&state, move || hash_password(&password)).await??;
    let user = state
        .store
        .create_user(UserRow {
            id: uuid::Uuid::now_v7().to_string(),
            email: body.email.trim().to_lowercase(),
            password_hash,
            full_name,
            role: Role::Applicant.as_str().into(),
            created_at: voucherd_store::now(),
        })
        .await?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
}

/// The hash checked when the email is unknown, so that a wrong email takes as long as a
/// wrong password and response times do not reveal who has an account.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
        .clone()
}

pub async fn login(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .store
        .user_by_email(body.email.trim().to_lowercase())
        .await?;
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => hashing(&state, dummy_hash).await?,
    };
    let password = body.password;
    let ok = hashing(&state, move || verify_password(&password, &hash)).await?;
    let user = match user {
        Some(u) if ok => u,
        _ => return Err(ApiError::InvalidCredentials),
    };
    let role: Role = user
        .role
        .parse()
        .map_err(|e: String| ApiError::Internal(e))?;
    let token = state.tokens.issue(&user.id, role)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": state.tokens.ttl_secs,
    })))
}

pub async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let row = state.store.user(user.id).await?;
    Ok(HttpResponse::Ok().json(UserView::from(&row)))
}
