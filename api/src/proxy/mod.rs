//! The metering proxy (docs/ARCHITECTURE.md, "The metering proxy"): an OpenAI-compatible endpoint that authenticates a voucher
//! key, holds the request's maximum cost, forwards to the upstream with the programme's own
//! key, prices the reported usage and settles exactly that. Nothing is forwarded without a
//! hold that covers its worst case, and a response reaches the client only after its usage
//! is committed.

mod allowlist;
pub mod contract;
mod forward;
pub mod keycache;
pub mod lease;
pub mod limits;
mod meter;
mod models;
pub mod prices;
mod sse;
mod surface;
pub mod upstream;
mod upstream_error;
mod usage;

pub use forward::{chat_completions, embeddings, responses};
pub use models::list_models;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use serde_json::Value;
use voucherd_domain::pricing::TokenUsage;
use voucherd_domain::{ProxyErrorCode, ProxyErrorType};
use voucherd_store::StoreError;

/// Errors of the proxy, in the shape OpenAI's clients already understand.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    InvalidKey(&'static str),
    #[error(
        "This API key has been suspended by the programme: {0}. Ask the programme to reinstate it."
    )]
    KeySuspended(String),
    /// The provider refused the programme's own credentials: the client's key is fine.
    #[error("The AI provider refused the programme's connection; your API key is fine. The programme's administrators have been told. Retry later.")]
    UpstreamAuthFailed,
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
        code: Option<ProxyErrorCode>,
    },
    /// A request refused at a path inside it (`messages[1].audio`, `tools[0].type`): outside
    /// the allowlist (`unsupported_parameter`), or malformed there.
    #[error("{message}")]
    InvalidAt {
        message: String,
        param: String,
        code: Option<ProxyErrorCode>,
    },
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("This key may not use the model `{0}`.")]
    ModelNotAllowed(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    InsufficientQuota(String),
    /// The key's monthly spend cap is reached: a quota refusal that says more than any other,
    /// so admission keeps it over the rest (chosen by variant, not by its text).
    #[error("You exceeded your current quota: this key's monthly spend cap is reached.")]
    KeyCapReached,
    #[error("The request body is larger than {0} bytes.")]
    TooLarge(usize),
    #[error("The upstream did not answer in time.")]
    UpstreamTimeout,
    #[error("The upstream could not be reached.")]
    UpstreamUnreachable,
    #[error("A request with this Idempotency-Key is still being served.")]
    IdempotencyInProgress,
    #[error("Metering is unavailable; the request was not forwarded. Retry shortly.")]
    Unavailable,
    #[error("The server had an error while processing your request.")]
    Internal(String),
}

impl ProxyError {
    fn kind_and_code(&self) -> (ProxyErrorType, Option<ProxyErrorCode>) {
        use ProxyErrorCode as C;
        use ProxyErrorType as T;
        match self {
            ProxyError::InvalidKey(_) => (T::InvalidRequestError, Some(C::InvalidApiKey)),
            ProxyError::KeySuspended(_) => (T::InvalidRequestError, Some(C::ApiKeySuspended)),
            ProxyError::UpstreamAuthFailed => (T::UpstreamError, Some(C::UpstreamAuthFailed)),
            ProxyError::InvalidRequest { code, .. } | ProxyError::InvalidAt { code, .. } => {
                (T::InvalidRequestError, *code)
            }
            ProxyError::ModelNotFound(_) => (T::InvalidRequestError, Some(C::ModelNotFound)),
            ProxyError::ModelNotAllowed(_) => (T::InvalidRequestError, Some(C::ModelNotAllowed)),
            ProxyError::RateLimited { .. } => (T::Requests, Some(C::RateLimitExceeded)),
            ProxyError::InsufficientQuota(_) | ProxyError::KeyCapReached => {
                (T::InsufficientQuota, Some(C::InsufficientQuota))
            }
            ProxyError::TooLarge(_) => (T::InvalidRequestError, Some(C::RequestTooLarge)),
            ProxyError::UpstreamTimeout => (T::UpstreamError, Some(C::UpstreamTimeout)),
            ProxyError::UpstreamUnreachable => (T::UpstreamError, Some(C::UpstreamUnreachable)),
            ProxyError::Unavailable => (T::ServerError, Some(C::ServiceUnavailable)),
            ProxyError::IdempotencyInProgress => {
                (T::InvalidRequestError, Some(C::IdempotencyKeyInUse))
            }
            ProxyError::Internal(_) => (T::ServerError, None),
        }
    }
}

impl ResponseError for ProxyError {
    fn status_code(&self) -> StatusCode {
        match self {
            ProxyError::InvalidKey(_) | ProxyError::KeySuspended(_) => StatusCode::UNAUTHORIZED,
            ProxyError::UpstreamAuthFailed => StatusCode::BAD_GATEWAY,
            ProxyError::InvalidRequest { .. } | ProxyError::InvalidAt { .. } => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::InsufficientQuota(_) | ProxyError::KeyCapReached => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ProxyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            ProxyError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::IdempotencyInProgress => StatusCode::CONFLICT,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ProxyError::Internal(cause) = self {
            tracing::error!(%cause, "proxy request failed");
        }
        let (kind, code) = self.kind_and_code();
        let param = match self {
            ProxyError::InvalidRequest { param, .. } => *param,
            ProxyError::InvalidAt { param, .. } => Some(param.as_str()),
            _ => None,
        };
        let mut resp = openai_error(self.status_code(), &self.to_string(), kind, param, code);
        if let ProxyError::RateLimited {
            retry_after_secs, ..
        } = self
        {
            if let Ok(v) =
                actix_web::http::header::HeaderValue::from_str(&retry_after_secs.to_string())
            {
                resp.headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// An error of the metering proxy, in the shape OpenAI's clients understand.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = OpenAIError)]
pub struct OpenAIError<'a> {
    pub error: OpenAIErrorDetail<'a>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OpenAIErrorDetail<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    #[schema(schema_with = error_type)]
    pub kind: ProxyErrorType,
    /// Where in the request the problem is (`messages[1].audio`), when it is in one place.
    #[schema(required)]
    pub param: Option<&'a str>,
    #[schema(required, schema_with = error_code)]
    pub code: Option<ProxyErrorCode>,
}

/// The proxy's own types are listed; an error of the AI provider passes on with its own.
fn error_type() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    voucherd_domain::schema::open_list(
        &["The proxy's own types are these; an error of the AI provider keeps the provider's."],
        ProxyErrorType::DOCUMENTED,
    )
}

/// The proxy's own codes are listed; an error of the AI provider passes on with its own.
fn error_code() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    voucherd_domain::schema::nullable(voucherd_domain::schema::open_list(
        &["The proxy's own codes are these; an error of the AI provider keeps the provider's (null when it has none)."],
        ProxyErrorCode::DOCUMENTED,
    ))
}

pub fn openai_error(
    status: StatusCode,
    message: &str,
    kind: ProxyErrorType,
    param: Option<&str>,
    code: Option<ProxyErrorCode>,
) -> HttpResponse {
    HttpResponse::build(status).json(OpenAIError {
        error: OpenAIErrorDetail {
            message,
            kind,
            param,
            code,
        },
    })
}

impl From<StoreError> for ProxyError {
    fn from(e: StoreError) -> ProxyError {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable: refusing proxied request");
                ProxyError::Unavailable
            }
            StoreError::KeySpendCapReached => {
                ProxyError::KeyCapReached
            }
            // An account never opened (purchased credit never bought) holds nothing.
            StoreError::InsufficientFunds { .. } | StoreError::NotFound("account") => ProxyError::InsufficientQuota(
                "You exceeded your current quota: the voucher's available balance does not cover this request.".into(),
            ),
            other => ProxyError::Internal(other.to_string()),
        }
    }
}

fn invalid(message: impl Into<String>, param: &'static str) -> ProxyError {
    ProxyError::InvalidRequest {
        message: message.into(),
        param: Some(param),
        code: None,
    }
}

/// Any other path under `/v1`.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    openai_error(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({} {})", req.method(), req.path()),
        ProxyErrorType::InvalidRequestError,
        None,
        Some(ProxyErrorCode::UnknownUrl),
    )
}

async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ProxyError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| invalid("The request body could not be read.", "body"))?;
        if body.len() + chunk.len() > limit {
            return Err(ProxyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn u64_field(body: &Value, name: &'static str, max: u64) -> Result<Option<u64>, ProxyError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(invalid(
                format!("`{name}` must be an integer from 1 to {max}."),
                name,
            )),
        },
    }
}

/// Reads an OpenAI `usage` object: chat and embeddings report `prompt_tokens` /
/// `completion_tokens` (embeddings have no completion), the Responses API `input_tokens` /
/// `output_tokens`; cached input is in the matching `*_tokens_details.cached_tokens`.
pub fn usage_of(body: &Value) -> Option<TokenUsage> {
    parse_usage(body.get("usage")?)
}

pub fn parse_usage(u: &Value) -> Option<TokenUsage> {
    let (prompt, completion, cached) = if let Some(p) = u.get("input_tokens") {
        (
            p.as_u64()?,
            u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0),
            u.pointer("/input_tokens_details/cached_tokens"),
        )
    } else {
        (
            u.get("prompt_tokens")?.as_u64()?,
            u.get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            u.pointer("/prompt_tokens_details/cached_tokens"),
        )
    };
    let cached = cached.and_then(Value::as_u64).unwrap_or(0);
    Some(TokenUsage {
        prompt_tokens: prompt,
        cached_prompt_tokens: cached.min(prompt),
        completion_tokens: completion,
    })
}
