//! `POST /v1/chat/completions`, plain and streaming.

use super::meter::{self, Admitted, Ask};
use super::sse::{self, ChatEvent, EventSplitter};
use super::{invalid, openai_error, read_body, u64_field, usage_of, ProxyError};
use crate::state::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use voucherd_domain::money::format_micros;
use voucherd_domain::pricing::TokenUsage;

/// Tokens a chat request's prompt can be at most. Byte-level BPE tokenizers never emit more
/// tokens than bytes, so the body's length bounds the text; each message also costs a few
/// framing tokens, counted generously.
fn prompt_token_bound(body_len: usize, messages: usize) -> u64 {
    body_len as u64 + 8 * messages as u64 + 16
}

/// The longest single SSE event accepted from the upstream.
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Events buffered between the upstream reader and a slow client.
const STREAM_QUEUE_EVENTS: usize = 64;

pub async fn chat_completions(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ProxyError> {
    let cfg = &state.config;
    let raw = read_body(payload, cfg.proxy_body_limit_bytes).await?;
    let (key, voucher) = meter::authenticate(&state, &req).await?;

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
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("`stream` must be a boolean.", "stream")),
    };
    let client_wants_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let n = u64_field(&body, "n", 128)?.unwrap_or(1);
    let max_completion = u64_field(&body, "max_completion_tokens", 10_000_000)?;
    let max_tokens = u64_field(&body, "max_tokens", 10_000_000)?;
    let requested = max_completion.or(max_tokens);

    let hold_ms = if stream {
        cfg.hold_timeout_ms.saturating_add(cfg.stream_max_ms)
    } else {
        cfg.hold_timeout_ms
    };
    let admitted = meter::admit(
        &state,
        Ask {
            key: &key,
            voucher: &voucher,
            model: &model,
            prompt_bound: prompt_token_bound(raw.len(), messages),
            requested_output: requested,
            choices: n,
            hold_ms,
        },
    )
    .await?;

    // The forwarded request: the client's bytes unless the proxy must cap the output to what
    // was held, or ask a stream for its usage.
    let cap_needed = requested != Some(admitted.output_each);
    let usage_needed = stream && !client_wants_usage;
    let forward = if cap_needed || usage_needed {
        if cap_needed {
            let field = if max_completion.is_none() && max_tokens.is_some() {
                "max_tokens"
            } else {
                "max_completion_tokens"
            };
            body[field] = Value::from(admitted.output_each);
        }
        if usage_needed {
            body["stream_options"] = serde_json::json!({ "include_usage": true });
        }
        match serde_json::to_vec(&body) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                admitted.release(&state).await;
                return Err(ProxyError::Internal(e.to_string()));
            }
        }
    } else {
        raw.clone()
    };

    let mut upstream = state
        .upstream
        .post(format!(
            "{}/chat/completions",
            cfg.upstream_url.trim_end_matches('/')
        ))
        .header(header::CONTENT_TYPE.as_str(), "application/json")
        .body(forward);
    if let Some(k) = &cfg.upstream_api_key {
        upstream = upstream.bearer_auth(k);
    }
    let timeout = Duration::from_millis(cfg.upstream_timeout_ms);
    let response = match tokio::time::timeout(timeout, upstream.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            admitted.release(&state).await;
            tracing::warn!(error = %e, "upstream request failed");
            return Err(if e.is_timeout() {
                ProxyError::UpstreamTimeout
            } else {
                ProxyError::UpstreamUnreachable
            });
        }
        Err(_) => {
            admitted.release(&state).await;
            return Err(ProxyError::UpstreamTimeout);
        }
    };
    let status = response.status().as_u16();
    if stream && (200..300).contains(&status) {
        return Ok(stream_response(
            state.clone(),
            admitted,
            response,
            client_wants_usage,
        ));
    }

    let bytes = match tokio::time::timeout(timeout, response.bytes()).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) | Err(_) => {
            admitted.release(&state).await;
            return Err(ProxyError::UpstreamTimeout);
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let success = (200..300).contains(&status);
    let usage = match (parsed.as_ref().and_then(usage_of), success) {
        (Some(u), _) => Some(u),
        // A successful answer without usage: bill the bound that was held, never nothing.
        (None, true) => {
            tracing::warn!(model = %admitted.model, "upstream answered without usage; billing the held bound");
            Some(admitted.bound_usage())
        }
        (None, false) => None,
    };
    admitted.settle(&state, usage, status).await?;

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
            format_micros(admitted.available_after_hold.micros()),
        ))
        .body(bytes))
}

/// Streams the upstream's events to the client as they arrive. A task reads the upstream and
/// feeds a bounded queue that is the response body; it settles before letting the final
/// `[DONE]` through, and settles on its own when the client goes away (closing the upstream).
fn stream_response(
    state: web::Data<AppState>,
    admitted: Admitted,
    response: reqwest::Response,
    client_wants_usage: bool,
) -> HttpResponse {
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_QUEUE_EVENTS);
    let available = format_micros(admitted.available_after_hold.micros());
    tokio::spawn(pump(state, admitted, response, tx, client_wants_usage));
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-voucher-available", available))
        .streaming(body)
}

/// How a stream ended, for settlement.
struct Outcome {
    usage: Option<TokenUsage>,
    output_events: u64,
    done: Option<Bytes>,
    client_gone: bool,
}

async fn pump(
    state: web::Data<AppState>,
    admitted: Admitted,
    response: reqwest::Response,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    client_wants_usage: bool,
) {
    let idle = Duration::from_millis(state.config.upstream_timeout_ms);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(state.config.stream_max_ms);
    let mut upstream = response.bytes_stream();
    let mut splitter = EventSplitter::new(MAX_EVENT_BYTES);
    let mut out = Outcome {
        usage: None,
        output_events: 0,
        done: None,
        client_gone: false,
    };
    'read: loop {
        let next = tokio::select! {
            _ = tx.closed() => { out.client_gone = true; break 'read; }
            _ = tokio::time::sleep_until(deadline) => break 'read,
            n = tokio::time::timeout(idle, upstream.next()) => n,
        };
        let chunk = match next {
            Ok(Some(Ok(c))) => c,
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "upstream stream failed");
                break;
            }
            Ok(None) => break,
            Err(_) => {
                tracing::warn!("upstream stream stalled");
                break;
            }
        };
        let events = match splitter.push(&chunk) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "upstream stream malformed");
                break;
            }
        };
        for event in events {
            let forward = match sse::classify(&event) {
                ChatEvent::Done => {
                    out.done = Some(event);
                    break 'read;
                }
                ChatEvent::Usage { usage, only_usage } => {
                    out.usage = usage_of(&serde_json::json!({ "usage": usage }));
                    client_wants_usage || !only_usage
                }
                ChatEvent::Output => {
                    out.output_events += 1;
                    true
                }
                ChatEvent::Other => true,
            };
            if forward && tx.send(Ok(event)).await.is_err() {
                out.client_gone = true;
                break 'read;
            }
        }
    }
    // Dropping the upstream body closes its connection: nothing more is generated or owed.
    drop(upstream);
    let tail = splitter.rest();
    if !tail.is_empty() && !out.client_gone && out.done.is_none() {
        let _ = tx.send(Ok(tail)).await;
    }
    let usage = out
        .usage
        .unwrap_or_else(|| estimate(&admitted, out.output_events));
    if out.usage.is_none() {
        tracing::warn!(billing_id = %admitted.billing_id, client_gone = out.client_gone,
            "stream ended without usage; billing what was streamed");
    }
    match admitted.settle(&state, Some(usage), 200).await {
        Ok(()) => {
            if let (Some(done), false) = (out.done, out.client_gone) {
                let _ = tx.send(Ok(done)).await;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, billing_id = %admitted.billing_id, "stream settlement failed; hold voids at its timeout");
            let event = format!(
                "data: {}\n\n",
                serde_json::json!({"error": {"message": "Metering failed; the response is incomplete.", "type": "server_error", "param": null, "code": "service_unavailable"}})
            );
            let _ = tx.send(Ok(Bytes::from(event))).await;
        }
    }
}

/// Usage for a stream that ended without the upstream's report: each output event is one
/// token (how the provider streams), and the prompt at four bytes a token; never above what
/// was held.
fn estimate(admitted: &Admitted, output_events: u64) -> TokenUsage {
    let prompt_bytes = admitted.prompt_bound;
    TokenUsage {
        prompt_tokens: prompt_bytes.div_ceil(4),
        cached_prompt_tokens: 0,
        completion_tokens: output_events.min(admitted.output_each.saturating_mul(admitted.choices)),
    }
}
