//! The metering proxy (DESIGN §3): an OpenAI-compatible endpoint that authenticates a voucher
//! key, holds the request's maximum cost, forwards to the upstream with the programme's own
//! key, prices the reported usage and settles exactly that. Nothing is forwarded without a
//! hold that covers its worst case, and a response reaches the client only after its usage
//! is committed.

use crate::keys;
use crate::state::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use serde_json::Value;
use voucherd_domain::money::format_micros;
use voucherd_domain::pricing::TokenUsage;
use voucherd_domain::Money;
use voucherd_store::usage::UsageRow;
use voucherd_store::StoreError;

/// Errors of the proxy, in the shape OpenAI's clients already understand.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    InvalidKey(&'static str),
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
        code: Option<&'static str>,
    },
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("{0}")]
    InsufficientQuota(String),
    #[error("The request body is larger than {0} bytes.")]
    TooLarge(usize),
    #[error("The upstream did not answer in time.")]
    UpstreamTimeout,
    #[error("The upstream could not be reached.")]
    UpstreamUnreachable,
    #[error("Metering is unavailable; the request was not forwarded. Retry shortly.")]
    Unavailable,
    #[error("The server had an error while processing your request.")]
    Internal(String),
}

impl ProxyError {
    fn kind_and_code(&self) -> (&'static str, Option<&'static str>) {
        match self {
            ProxyError::InvalidKey(_) => ("invalid_request_error", Some("invalid_api_key")),
            ProxyError::InvalidRequest { code, .. } => ("invalid_request_error", *code),
            ProxyError::ModelNotFound(_) => ("invalid_request_error", Some("model_not_found")),
            ProxyError::InsufficientQuota(_) => ("insufficient_quota", Some("insufficient_quota")),
            ProxyError::TooLarge(_) => ("invalid_request_error", Some("request_too_large")),
            ProxyError::UpstreamTimeout => ("upstream_error", Some("upstream_timeout")),
            ProxyError::UpstreamUnreachable => ("upstream_error", Some("upstream_unreachable")),
            ProxyError::Unavailable => ("server_error", Some("service_unavailable")),
            ProxyError::Internal(_) => ("server_error", None),
        }
    }
}

impl ResponseError for ProxyError {
    fn status_code(&self) -> StatusCode {
        match self {
            ProxyError::InvalidKey(_) => StatusCode::UNAUTHORIZED,
            ProxyError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ProxyError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::InsufficientQuota(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            ProxyError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
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
            _ => None,
        };
        openai_error(self.status_code(), &self.to_string(), kind, param, code)
    }
}

pub fn openai_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({
        "error": { "message": message, "type": kind, "param": param, "code": code }
    }))
}

impl From<StoreError> for ProxyError {
    fn from(e: StoreError) -> ProxyError {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable: refusing proxied request");
                ProxyError::Unavailable
            }
            StoreError::InsufficientFunds { .. } => ProxyError::InsufficientQuota(
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
        "invalid_request_error",
        None,
        Some("unknown_url"),
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

/// Reads `usage` from an OpenAI chat completion.
pub fn usage_of(body: &Value) -> Option<TokenUsage> {
    let u = body.get("usage")?;
    let prompt = u.get("prompt_tokens")?.as_u64()?;
    let completion = u.get("completion_tokens")?.as_u64()?;
    let cached = u
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(TokenUsage {
        prompt_tokens: prompt,
        cached_prompt_tokens: cached.min(prompt),
        completion_tokens: completion,
    })
}

/// Tokens a chat request's prompt can be at most. Byte-level BPE tokenizers never emit more
/// tokens than bytes, so the body's length bounds the text; each message also costs a few
/// framing tokens, counted generously.
fn prompt_token_bound(body_len: usize, messages: usize) -> u64 {
    body_len as u64 + 8 * messages as u64 + 16
}

pub async fn chat_completions(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ProxyError> {
    let cfg = &state.config;
    let raw = read_body(payload, cfg.proxy_body_limit_bytes).await?;

    let secret = crate::auth::bearer(req.headers()).ok_or(ProxyError::InvalidKey(
        "You didn't provide an API key. Send it as `Authorization: Bearer vk_live_…`.",
    ))?;
    if !keys::looks_like_key(secret) {
        return Err(ProxyError::InvalidKey("Incorrect API key provided."));
    }
    let (key, voucher) = state
        .store
        .key_by_hash(keys::hash(secret))
        .await?
        .ok_or(ProxyError::InvalidKey("Incorrect API key provided."))?;
    if key.revoked_at.is_some() {
        return Err(ProxyError::InvalidKey("This API key has been revoked."));
    }
    let now = voucherd_store::now();
    if voucher.status != "active" || voucher.expires_at <= now {
        return Err(ProxyError::InsufficientQuota(format!(
            "You exceeded your current quota: the voucher expired on {}.",
            crate::views::time(voucher.expires_at)
        )));
    }

    let mut body: Value = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("The body is not valid JSON: {e}"), "body"))?;
    if !body.is_object() {
        return Err(invalid("The body must be a JSON object.", "body"));
    }
    let model = match body.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => return Err(invalid("You must provide a model parameter.", "model")),
    };
    let messages = match body.get("messages").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m.len(),
        _ => return Err(invalid("`messages` must be a non-empty array.", "messages")),
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(ProxyError::InvalidRequest {
            message: "Streaming is not enabled on this deployment yet; send `stream: false`."
                .into(),
            param: Some("stream"),
            code: Some("unsupported_parameter"),
        });
    }
    let n = u64_field(&body, "n", 128)?.unwrap_or(1);
    let max_completion = u64_field(&body, "max_completion_tokens", 10_000_000)?;
    let max_tokens = u64_field(&body, "max_tokens", 10_000_000)?;

    let price = state
        .store
        .current_price(model.clone(), now)
        .await?
        .ok_or_else(|| ProxyError::ModelNotFound(model.clone()))?;
    let rates = price.rates()?;

    // The hold: the prompt's bound plus every output token the request may produce, capped
    // to what the voucher affords. The cap is written into the forwarded request so the
    // upstream cannot exceed what was held.
    let (_, account) = state.store.voucher(voucher.id.clone()).await?;
    let available = Money::from_micros(account.totals().available().max(0))
        .map_err(|e| ProxyError::Internal(e.to_string()))?;
    let prompt_bound = prompt_token_bound(raw.len(), messages);
    let affordable_each = rates.affordable_output_tokens(available, prompt_bound) / n;
    if affordable_each == 0 {
        return Err(ProxyError::InsufficientQuota(
            "You exceeded your current quota: the voucher's available balance does not cover this request.".into(),
        ));
    }
    let requested = max_completion.or(max_tokens);
    let output_each = requested.map_or(affordable_each, |r| r.min(affordable_each));
    let forward_body = if requested == Some(output_each) {
        raw.clone()
    } else {
        let field = if max_completion.is_none() && max_tokens.is_some() {
            "max_tokens"
        } else {
            "max_completion_tokens"
        };
        body[field] = Value::from(output_each);
        web::Bytes::from(
            serde_json::to_vec(&body).map_err(|e| ProxyError::Internal(e.to_string()))?,
        )
    };
    let hold_amount = rates.max_cost(prompt_bound, output_each.saturating_mul(n));
    let hold_amount = if hold_amount.is_zero() {
        Money::from_micros(1).map_err(|e| ProxyError::Internal(e.to_string()))?
    } else {
        hold_amount
    };

    let billing_id = uuid::Uuid::now_v7().to_string();
    let timeout_at = now + chrono::Duration::milliseconds(cfg.hold_timeout_ms as i64);
    let hold_id = state
        .store
        .open_hold(
            billing_id.clone(),
            voucher.account_id.clone(),
            hold_amount,
            timeout_at,
        )
        .await?;
    let available_after_hold = available.saturating_sub(hold_amount);

    let mut upstream = state
        .upstream
        .post(format!(
            "{}/chat/completions",
            cfg.upstream_url.trim_end_matches('/')
        ))
        .header(header::CONTENT_TYPE.as_str(), "application/json")
        .timeout(std::time::Duration::from_millis(cfg.upstream_timeout_ms))
        .body(forward_body);
    if let Some(k) = &cfg.upstream_api_key {
        upstream = upstream.bearer_auth(k);
    }
    let sent = async {
        let resp = upstream.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok::<_, reqwest::Error>((status, bytes))
    }
    .await;
    let (status, bytes) = match sent {
        Ok(r) => r,
        Err(e) => {
            if let Err(release) = state.store.release_hold(hold_id.clone()).await {
                tracing::warn!(%release, %hold_id, "could not release hold; it voids at its timeout");
            }
            tracing::warn!(error = %e, "upstream request failed");
            return Err(if e.is_timeout() {
                ProxyError::UpstreamTimeout
            } else {
                ProxyError::UpstreamUnreachable
            });
        }
    };

    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let reported = parsed.as_ref().and_then(usage_of);
    let success = (200..300).contains(&status);
    let usage = match (reported, success) {
        (Some(u), _) => Some(u),
        // A successful answer without usage: bill the bound that was held, never nothing.
        (None, true) => {
            tracing::warn!(%model, "upstream answered without usage; billing the held bound");
            Some(TokenUsage {
                prompt_tokens: prompt_bound,
                cached_prompt_tokens: 0,
                completion_tokens: output_each.saturating_mul(n),
            })
        }
        (None, false) => None,
    };
    match usage {
        Some(u) => {
            let cost = rates.cost(u);
            let tokens = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            state
                .store
                .settle_usage(UsageRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    request_id: billing_id,
                    voucher_id: voucher.id.clone(),
                    api_key_id: key.id.clone(),
                    model: model.clone(),
                    price_id: price.id.clone(),
                    input_per_million: price.input_per_million,
                    cached_input_per_million: price.cached_input_per_million,
                    output_per_million: price.output_per_million,
                    prompt_tokens: tokens(u.prompt_tokens),
                    cached_prompt_tokens: tokens(u.cached_prompt_tokens),
                    completion_tokens: tokens(u.completion_tokens),
                    cost: cost.micros(),
                    hold_id: hold_id.clone(),
                    post_id: String::new(),
                    upstream_status: i32::from(status),
                    created_at: voucherd_store::now(),
                })
                .await?;
        }
        None => state.store.release_hold(hold_id).await?,
    }

    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    if !success && parsed.as_ref().and_then(|v| v.get("error")).is_none() {
        return Ok(openai_error(
            status,
            "The upstream returned an error.",
            "upstream_error",
            None,
            None,
        ));
    }
    Ok(HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((
            "x-voucher-available",
            format_micros(available_after_hold.micros()),
        ))
        .body(bytes))
}
