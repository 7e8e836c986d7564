//! The built-in sandbox: answers the OpenAI surfaces the proxy meters like the provider would
//! (deterministic text, realistic token counts, real SSE framing), without spending anything.
//! Test-mode keys are forwarded here, and `serve --demo` sends live traffic here too. It is
//! reached through the proxy with the process's own sandbox key, never directly by clients.
//!
//! Error models for integrators' tests: `"metadata": {"sandbox_error": "429"}` (or `"500"`)
//! makes it answer that error as the provider does.

use crate::proxy::openai_error;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use voucherd_domain::{ProxyErrorCode, ProxyErrorType};

/// It says what the sandbox knows: no provider answered. Who pays is the proxy's business (a
/// test key's free allowance, or, with `serve --demo`, a live key's voucher), so it claims
/// nothing about credit.
const REPLY: &str = "This is a sandbox reply from the AI voucher programme. No AI provider was called; the request was metered like any other.";

/// How the sandbox reads its bodies: up to the proxy's body limit (the proxy forwards no more),
/// and a body that cannot be read is refused as the provider refuses it, with an OpenAI-style
/// error rather than actix's plain text.
pub fn json_config(limit_bytes: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit_bytes)
        .error_handler(|err, _req| {
            let status = match &err {
                actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
                | actix_web::error::JsonPayloadError::Overflow { .. } => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                actix_web::error::JsonPayloadError::ContentType => {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                }
                _ => StatusCode::BAD_REQUEST,
            };
            let message = format!("The body could not be read as JSON: {err}");
            let response = openai_error(
                status,
                &message,
                ProxyErrorType::InvalidRequestError,
                None,
                None,
            );
            actix_web::error::InternalError::from_response(err, response).into()
        })
}

fn authorised(state: &AppState, req: &HttpRequest) -> bool {
    crate::auth::bearer(req.headers()) == Some(state.config.sandbox_key.as_str())
}

/// Tokens of a text, as the provider's tokenizers count English: about four bytes each.
fn tokens_of(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// All strings in a prompt value, counted as tokens, plus a few per message for framing.
fn prompt_tokens(v: &Value) -> u64 {
    match v {
        Value::String(s) => tokens_of(s),
        Value::Array(items) => items.iter().map(|i| prompt_tokens(i) + 3).sum(),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| *k != "role" && *k != "type")
            .map(|(_, v)| prompt_tokens(v))
            .sum(),
        _ => 0,
    }
}

/// The reply's words, cut to the output limit: one word is one token here.
fn reply_words(limit: Option<u64>) -> Vec<&'static str> {
    let words: Vec<&str> = REPLY.split_inclusive(' ').collect();
    let n = limit.map_or(words.len(), |l| (l as usize).min(words.len()));
    words[..n].to_vec()
}

fn error_model(body: &Value) -> Option<HttpResponse> {
    match body
        .pointer("/metadata/sandbox_error")
        .and_then(Value::as_str)
    {
        Some("429") => Some(openai_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached (sandbox error model).",
            ProxyErrorType::Requests,
            None,
            Some(ProxyErrorCode::RateLimitExceeded),
        )),
        Some("500") => Some(openai_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request (sandbox error model).",
            ProxyErrorType::ServerError,
            None,
            None,
        )),
        _ => None,
    }
}

fn sse(events: Vec<String>) -> HttpResponse {
    let body = futures_util::stream::iter(
        events
            .into_iter()
            .map(|e| Ok::<_, actix_web::Error>(Bytes::from(e))),
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

fn refuse(state: &AppState, req: &HttpRequest, body: &Value) -> Option<HttpResponse> {
    if !authorised(state, req) {
        return Some(openai_error(
            StatusCode::UNAUTHORIZED,
            "The sandbox is reached through the proxy with a test-mode key.",
            ProxyErrorType::InvalidRequestError,
            None,
            Some(ProxyErrorCode::InvalidApiKey),
        ));
    }
    error_model(body)
}

pub async fn chat(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if let Some(r) = refuse(&state, &req, &body) {
        return r;
    }
    let model = body.get("model").cloned().unwrap_or(Value::Null);
    let n = body
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 128);
    let limit = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64);
    let words = reply_words(limit);
    let finish = if words.len() < REPLY.split_inclusive(' ').count() {
        "length"
    } else {
        "stop"
    };
    let prompt = prompt_tokens(&body["messages"]);
    let completion = words.len() as u64 * n;
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}});
    let id = format!("chatcmpl-sandbox-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let choices: Vec<Value> = (0..n)
            .map(|i| json!({"index": i, "message": {"role": "assistant", "content": words.concat(), "refusal": null},
                "logprobs": null, "finish_reason": finish}))
            .collect();
        return HttpResponse::Ok().json(
            json!({"id": id, "object": "chat.completion", "created": created,
            "model": model, "choices": choices, "usage": usage, "system_fingerprint": "sandbox"}),
        );
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let head = json!({"id": id, "object": "chat.completion.chunk", "created": created,
        "model": model, "system_fingerprint": "sandbox"});
    let mut events = chat_chunks(&head, n, &words, finish, include_usage);
    if include_usage {
        events.push(format!(
            "data: {}\n\n",
            json!({"id": id, "object": "chat.completion.chunk", "created": created,
            "model": model, "choices": [], "usage": usage})
        ));
    }
    events.push("data: [DONE]\n\n".into());
    sse(events)
}

/// A streamed chat answer's events for `n` choices of `words`, each chunk `head` (its id,
/// model and time) with its choices; `usage: null` in each when the client asked for usage.
fn chat_chunks(
    head: &Value,
    n: u64,
    words: &[&str],
    finish: &str,
    include_usage: bool,
) -> Vec<String> {
    let chunk = |choices: Value| {
        let mut c = head.clone();
        c["choices"] = choices;
        if include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut events = Vec::new();
    for i in 0..n {
        events.push(chunk(json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])));
        for w in words {
            events.push(chunk(
                json!([{"index": i, "delta": {"content": w}, "finish_reason": null}]),
            ));
        }
        events.push(chunk(
            json!([{"index": i, "delta": {}, "finish_reason": finish}]),
        ));
    }
    events
}

pub async fn responses(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if let Some(r) = refuse(&state, &req, &body) {
        return r;
    }
    let words = reply_words(body.get("max_output_tokens").and_then(Value::as_u64));
    let input = prompt_tokens(&body["input"]) + body.get("instructions").map_or(0, prompt_tokens);
    let output = words.len() as u64;
    let id = format!("resp_sandbox_{}", uuid::Uuid::new_v4().simple());
    let response = json!({"id": id, "object": "response", "created_at": chrono::Utc::now().timestamp(),
        "status": "completed", "model": body.get("model").cloned().unwrap_or(Value::Null),
        "output": [{"type": "message", "id": format!("msg_{id}"), "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": words.concat(), "annotations": []}]}],
        "usage": {"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input + output}});
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return HttpResponse::Ok().json(response);
    }
    let ev = |kind: &str, v: Value| format!("event: {kind}\ndata: {v}\n\n");
    let mut events = vec![ev(
        "response.created",
        json!({"type": "response.created", "sequence_number": 0,
        "response": {"id": id, "object": "response", "status": "in_progress"}}),
    )];
    for (i, w) in words.iter().enumerate() {
        events.push(ev("response.output_text.delta", json!({"type": "response.output_text.delta",
            "sequence_number": i + 1, "item_id": format!("msg_{id}"), "output_index": 0, "content_index": 0, "delta": w})));
    }
    events.push(ev(
        "response.completed",
        json!({"type": "response.completed",
        "sequence_number": words.len() + 1, "response": response}),
    ));
    sse(events)
}

pub async fn embeddings(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if let Some(r) = refuse(&state, &req, &body) {
        return r;
    }
    let inputs: Vec<Value> = match body.get("input") {
        Some(Value::Array(a)) => a.clone(),
        Some(other) => vec![other.clone()],
        None => vec![],
    };
    let prompt: u64 = inputs.iter().map(prompt_tokens).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            // Deterministic: the same input always embeds to the same unit vector.
            let seed = input.to_string().bytes().fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            let v: Vec<f64> = (0..8).map(|k| (((seed >> (k * 8)) & 0xff) as f64 - 127.5) / 127.5).collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::EPSILON);
            json!({"object": "embedding", "index": i, "embedding": v.iter().map(|x| x / norm).collect::<Vec<_>>()})
        })
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data,
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}))
}
