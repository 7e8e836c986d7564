//! Passwords (argon2id), access tokens (HS256 JWT) and the route guard. Which roles may call a
//! route is declared once, in the route table (`routes.rs`); the guard middleware enforces that
//! declaration for every request before any handler runs.

use crate::error::ApiError;
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
use voucherd_domain::Role;

const ISSUER: &str = "voucherd";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iss: String,
    iat: i64,
    exp: i64,
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

    pub fn issue(&self, user_id: &str, role: Role) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            role,
            iss: ISSUER.into(),
            iat: now,
            exp: now + self.ttl_secs,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(format!("signing a token: {e}")))
    }

    pub fn verify(&self, token: &str) -> Option<AuthUser> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.leeway = 5;
        decode::<Claims>(token, &self.decoding, &v)
            .ok()
            .map(|d| AuthUser {
                id: d.claims.sub,
                role: d.claims.role,
            })
    }
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

/// The caller, as proven by a valid access token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: String,
    pub role: Role,
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

/// Enforces the route table's access declaration for the matched route.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let pattern = req.match_pattern();
    let method = req.method().as_str().to_string();
    let access = pattern.as_deref().and_then(|p| {
        ROUTES
            .iter()
            .find(|r| r.path == p && r.method.eq_ignore_ascii_case(&method))
            .map(|r| r.access)
    });
    if let Some(Access::Roles(roles)) = access {
        let tokens = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.tokens.clone());
        let user = match (tokens, bearer(req.headers())) {
            (Some(t), Some(token)) => t.verify(token),
            _ => None,
        };
        let outcome = match user {
            None => Err(ApiError::Unauthenticated),
            Some(u) if !roles.contains(&u.role) => Err(ApiError::Forbidden),
            Some(u) => Ok(u),
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
