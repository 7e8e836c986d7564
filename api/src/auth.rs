//! Passwords (argon2id), access tokens (HS256 JWT) and the route guard. Which roles may call a
//! route is declared once, in the route table (`routes.rs`); the guard middleware enforces that
//! declaration for every request before any handler runs.

use crate::error::ApiError;
use crate::proxy::keycache::TtlCache;
use crate::routes::{Access, ROUTES};
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{http::header, web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::future::{ready, Ready};
use std::sync::Arc;
use voucherd_domain::{Role, UserId};
use voucherd_store::users::{LiveSession, SessionRow};

const ISSUER: &str = "voucherd";

/// What an access token says: who, and which server-side session. The role is not in the
/// token: it is read with the session, so a role change applies at once.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    iss: String,
    iat: i64,
    exp: i64,
}

/// A token whose signature and expiry check out; its session may still have ended.
#[derive(Debug, Clone)]
pub struct Signed {
    pub user_id: String,
    pub session_id: String,
}

/// Signing and verifying keys for access tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub ttl_secs: i64,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl_secs: i64) -> Tokens {
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl_secs,
        }
    }

    fn issue(&self, user_id: &str, session_id: &str, now: i64) -> Result<String, ApiError> {
        let claims = Claims {
            sub: user_id.to_string(),
            sid: session_id.to_string(),
            iss: ISSUER.into(),
            iat: now,
            exp: now + self.ttl_secs,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(format!("signing a token: {e}")))
    }

    pub fn verify(&self, token: &str) -> Option<Signed> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.leeway = 5;
        decode::<Claims>(token, &self.decoding, &v)
            .ok()
            .map(|d| Signed {
                user_id: d.claims.sub,
                session_id: d.claims.sid,
            })
    }
}

/// Sessions recently found open, by id.
pub type SessionCache = TtlCache<Arc<LiveSession>>;

/// Opens a server-side session for `user_id` and signs its access token.
pub async fn start_session(state: &AppState, user_id: &UserId) -> Result<String, ApiError> {
    let now = voucherd_store::now();
    let session = state
        .store
        .open_session(SessionRow {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.clone(),
            created_at: now,
            expires_at: now + chrono::Duration::seconds(state.tokens.ttl_secs),
            ended_at: None,
            ended_reason: None,
        })
        .await?;
    state
        .tokens
        .issue(user_id.as_str(), &session.id, now.and_utc().timestamp())
}

/// The person a token proves, if its session is still open: read from the database at most
/// once per cache lifetime (1 s by default), so a session ended on another instance stops
/// working there within that time.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Option<AuthUser>, ApiError> {
    let Some(signed) = state.tokens.verify(token) else {
        return Ok(None);
    };
    let live = match state.sessions.get(&signed.session_id) {
        Some(s) => s,
        None => match state.store.live_session(signed.session_id.clone()).await? {
            Some(s) => {
                let s = Arc::new(s);
                state.sessions.put(signed.session_id.clone(), s.clone());
                s
            }
            None => return Ok(None),
        },
    };
    if live.user_id.as_str() != signed.user_id {
        return Ok(None);
    }
    let role = live.role;
    Ok(Some(AuthUser {
        id: UserId::new(signed.user_id),
        role,
        session_id: signed.session_id,
        email_verified: live.email_verified,
    }))
}

/// Forgets this instance's cached sessions of a user whose sessions were just ended, so the
/// change applies here at once (other instances within the cache lifetime).
pub fn forget_sessions(state: &AppState, user_id: &UserId) {
    state.sessions.forget_where(|s| s.user_id == *user_id);
}

/// Hashes a password with argon2id (the crate's defaults: OWASP's 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The caller, as proven by a valid access token whose session is open.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: UserId,
    pub role: Role,
    pub session_id: String,
    /// Whether the account's email address is verified (an unverified one may not apply).
    pub email_verified: bool,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<AuthUser, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<AuthUser>()
                .cloned()
                .ok_or(ApiError::Unauthenticated),
        )
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(headers: &header::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether a path belongs to the metering proxy (`/v1/…`), whose routes need no user guard.
pub fn is_proxy_path(path: &str) -> bool {
    path.starts_with("/v1/")
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Enforces the route table's access declaration for the matched route.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // The proxy's routes check their own keys: nothing to do here, and they are the hot path.
    if is_proxy_path(req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let pattern = req.match_pattern();
    let method = req.method().as_str().to_string();
    let access = pattern.as_deref().and_then(|p| {
        ROUTES
            .iter()
            .find(|r| r.path == p && r.method.eq_ignore_ascii_case(&method))
            .map(|r| r.access)
    });
    if let Some(Access::Metrics) = access {
        let allowed = req
            .app_data::<web::Data<AppState>>()
            .and_then(|s| s.config.metrics_token.clone())
            .is_some_and(|expected| {
                bearer(req.headers()).is_some_and(|t| same(t.as_bytes(), expected.as_bytes()))
            });
        if !allowed {
            // Without the configured token the metrics do not exist for the caller.
            let (http_req, _) = req.into_parts();
            let e = ApiError::NotFound("page");
            return Ok(ServiceResponse::new(http_req, e.error_response()));
        }
    }
    if let Some(Access::Roles(roles)) = access {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let user = match (state, bearer(req.headers())) {
            (Some(s), Some(token)) => authenticate(&s, token).await,
            _ => Ok(None),
        };
        let outcome = match user {
            Err(e) => Err(e),
            Ok(None) => Err(ApiError::Unauthenticated),
            Ok(Some(u)) if !roles.contains(&u.role) => Err(ApiError::Forbidden),
            Ok(Some(u)) => Ok(u),
        };
        match outcome {
            Ok(u) => {
                req.extensions_mut().insert(u);
            }
            Err(e) => {
                let (http_req, _) = req.into_parts();
                return Ok(ServiceResponse::new(http_req, e.error_response()));
            }
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}
