//! Forwarding a metered request to the upstream, plain or streaming, for every surface.

use super::meter::{self, Admitted, Ask};
use super::sse::{self, EventSplitter, StreamEvent};
use super::surface::Surface;
use super::{invalid, openai_error, parse_usage, read_body, ProxyError};
use crate::state::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tracing::Instrument;
use voucherd_domain::money::format_micros;
use voucherd_domain::pricing::TokenUsage;
use voucherd_domain::{ProxyErrorCode, ProxyErrorType};
use voucherd_store::idempotency::{Claim, IdempotencySlot, KeptAnswer};

/// The longest single SSE event accepted from the upstream.
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Events buffered between the upstream reader and a slow client.
const STREAM_QUEUE_EVENTS: usize = 64;

pub async fn chat_completions(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ProxyError> {
    proxy(Surface::Chat, state, req, payload).await
}

pub async fn responses(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ProxyError> {
    proxy(Surface::Responses, state, req, payload).await
}

pub async fn embeddings(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ProxyError> {
    proxy(Surface::Embeddings, state, req, payload).await
}

/// The longest answer kept for replaying to a retry with the same `Idempotency-Key`.
const REPLAY_MAX_BYTES: usize = 1024 * 1024;

/// The `Idempotency-Key` this request claimed, if it sent one.
type Idem = Option<IdempotencySlot>;

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ProxyError> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => {
                Ok(Some(k.to_string()))
            }
            _ => Err(invalid(
                "`Idempotency-Key` must be 1 to 255 visible ASCII characters.",
                "Idempotency-Key",
            )),
        },
    }
}

async fn proxy(
    surface: Surface,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ProxyError> {
    let cfg = &state.config;
    // The key first: nobody without one makes the server buffer a body.
    let cached = meter::authenticate(&state, &req).await?;
    let raw = read_body(payload, cfg.proxy_body_limit_bytes).await?;
    let idem: Idem = match idempotency_key(&req)? {
        None => None,
        Some(k) => {
            // A claim older than any request may run belongs to a process that died.
            let stale_ms = cfg.hold_timeout_ms.saturating_add(cfg.stream_max_ms);
            let stale_before = voucherd_store::now()
                - chrono::Duration::milliseconds(i64::try_from(stale_ms).unwrap_or(i64::MAX / 2));
            let hash = crate::keys::hash_bytes(&raw);
            let slot = IdempotencySlot {
                api_key_id: cached.0.id.clone(),
                key: k,
            };
            match state
                .store
                .claim_idempotency(slot.clone(), hash, stale_before)
                .await?
            {
                Claim::New => Some(slot),
                Claim::Replay {
                    status,
                    content_type,
                    body,
                } => {
                    return Ok(replay(status, &content_type, body));
                }
                Claim::InProgress => return Err(ProxyError::IdempotencyInProgress),
                Claim::Mismatch => {
                    return Err(ProxyError::InvalidRequest {
                        message:
                            "This Idempotency-Key was already used with a different request body."
                                .into(),
                        param: None,
                        code: Some(ProxyErrorCode::IdempotencyKeyReused),
                    })
                }
            }
        }
    };
    // Served in a task of its own: a client that goes away drops this handler, but the
    // upstream has started work the provider will bill, so the task still reads its answer and
    // settles it (docs/ARCHITECTURE.md, "Disconnects").
    let task = tokio::spawn(
        async move {
            let result = serve(surface, &state, &cached, raw, idem.clone()).await;
            if let (Some(slot), Err(_)) = (&idem, &result) {
                abandon(&state, slot).await;
            }
            result
        }
        .instrument(tracing::Span::current()),
    );
    match task.await {
        Ok(result) => result.map(Answer::into_response),
        Err(e) => Err(ProxyError::Internal(format!(
            "the request's task failed: {e}"
        ))),
    }
}

/// What a served request answers, built into a response by the handler (a response itself
/// cannot leave the task that serves the request).
pub(super) enum Answer {
    /// A whole JSON answer: the upstream's, or an error of the proxy's own making.
    Json {
        status: StatusCode,
        body: Bytes,
        /// The voucher's available balance after the request's hold, for the client to see.
        available: Option<String>,
    },
    /// Events as they arrive from the task that reads the upstream.
    Stream {
        events: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
        available: String,
        /// Events the client has been given, counted as the body hands them over.
        delivered: std::sync::Arc<std::sync::atomic::AtomicU64>,
    },
}

impl Answer {
    fn into_response(self) -> HttpResponse {
        match self {
            Answer::Json {
                status,
                body,
                available,
            } => {
                let mut r = HttpResponse::build(status);
                r.insert_header((header::CONTENT_TYPE, "application/json"));
                if let Some(a) = available {
                    r.insert_header(("x-voucher-available", a));
                }
                r.body(body)
            }
            Answer::Stream {
                mut events,
                available,
                delivered,
            } => {
                let body = futures_util::stream::poll_fn(move |cx| {
                    let next = events.poll_recv(cx);
                    if let std::task::Poll::Ready(Some(Ok(_))) = &next {
                        delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    next
                });
                HttpResponse::Ok()
                    .insert_header((header::CONTENT_TYPE, "text/event-stream"))
                    .insert_header((header::CACHE_CONTROL, "no-cache"))
                    .insert_header(("x-voucher-available", available))
                    .streaming(body)
            }
        }
    }
}

/// The stored answer of an idempotent request, sent again.
fn replay(status: i32, content_type: &str, body: Option<String>) -> HttpResponse {
    match body {
        Some(body) => HttpResponse::build(
            StatusCode::from_u16(u16::try_from(status).unwrap_or(200)).unwrap_or(StatusCode::OK),
        )
        .insert_header((header::CONTENT_TYPE, content_type.to_string()))
        .insert_header(("idempotent-replayed", "true"))
        .body(body),
        None => openai_error(
            StatusCode::CONFLICT,
            "A request with this Idempotency-Key completed, but its answer was too large to keep for replay.",
            ProxyErrorType::InvalidRequestError,
            None,
            Some(ProxyErrorCode::IdempotencyKeyReused),
        ),
    }
}

async fn abandon(state: &AppState, slot: &IdempotencySlot) {
    if let Err(e) = state.store.abandon_idempotency(slot.clone()).await {
        tracing::warn!(error = %e, "could not release an idempotency claim; it lapses on its own");
    }
}

/// Keeps a served answer for replay; `None`, or one too large to keep, is recorded as served
/// without its answer.
async fn complete(
    state: &AppState,
    idem: &Idem,
    status: u16,
    content_type: &str,
    body: Option<&[u8]>,
) {
    let Some(slot) = idem else { return };
    let kept = body
        .filter(|b| b.len() <= REPLAY_MAX_BYTES)
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_string);
    if let Err(e) = state
        .store
        .complete_idempotency(
            slot.clone(),
            KeptAnswer {
                status: i32::from(status),
                content_type: content_type.to_string(),
                body: kept,
            },
        )
        .await
    {
        tracing::warn!(error = %e, "could not store an idempotent answer; a retry runs again");
    }
}

/// One admitted request from its body to its answer: parse, admit (hold), forward, settle.
async fn serve(
    surface: Surface,
    state: &web::Data<AppState>,
    cached: &super::keycache::CachedKey,
    raw: Bytes,
    idem: Idem,
) -> Result<Answer, ProxyError> {
    let cfg = &state.config;
    let body: Value = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("The body is not valid JSON: {e}"), "body"))?;
    let parsed = surface.parse(&body, raw.len(), cfg.allow_provider_storage)?;
    let admitted = admit(state, cached, &parsed).await?;
    let forward = match forwarded_body(surface, &parsed, &admitted, body, raw) {
        Ok(b) => b,
        Err(e) => {
            admitted.release(state).await;
            return Err(e);
        }
    };
    let response = match send_upstream(state, surface, admitted.test_mode, forward).await {
        Ok(r) => r,
        Err(e) => {
            admitted.release(state).await;
            return Err(e);
        }
    };
    if parsed.stream && (200..300).contains(&response.status) {
        return Ok(stream_response(
            surface,
            state.clone(),
            admitted,
            response,
            parsed.client_wants_usage,
            idem,
        ));
    }
    settle_whole(state, admitted, response, &idem).await
}

/// Holds what the request may cost (a stream's hold lasts as long as a stream may).
async fn admit(
    state: &AppState,
    cached: &super::keycache::CachedKey,
    parsed: &super::surface::Parsed,
) -> Result<Admitted, ProxyError> {
    let cfg = &state.config;
    let hold_ms = if parsed.stream {
        cfg.hold_timeout_ms.saturating_add(cfg.stream_max_ms)
    } else {
        cfg.hold_timeout_ms
    };
    meter::admit(
        state,
        Ask {
            key: &cached.0,
            voucher: &cached.1,
            model: &parsed.model,
            prompt_bound: parsed.prompt_bound,
            requested_output: parsed.requested_output,
            choices: parsed.choices,
            hold_ms,
            streamed: parsed.stream,
            purchased_available: cached.2,
        },
    )
    .await
}

/// The forwarded request: the client's bytes unless the proxy must cap the output to what
/// was held, ask a chat stream for its usage, or write what the allowlist decided.
fn forwarded_body(
    surface: Surface,
    parsed: &super::surface::Parsed,
    admitted: &Admitted,
    mut body: Value,
    raw: Bytes,
) -> Result<Bytes, ProxyError> {
    let cap_field = parsed
        .output_field
        .filter(|_| parsed.requested_output != Some(admitted.output_each));
    let usage_needed = surface == Surface::Chat && parsed.stream && !parsed.client_wants_usage;
    if cap_field.is_none() && !usage_needed && parsed.overrides.is_empty() {
        return Ok(raw);
    }
    for (field, value) in &parsed.overrides {
        body[*field] = value.clone();
    }
    if let Some(field) = cap_field {
        body[field] = Value::from(admitted.output_each);
    }
    if usage_needed {
        body["stream_options"] = serde_json::json!({ "include_usage": true });
    }
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| ProxyError::Internal(e.to_string()))
}

/// Sends the request to the provider (or, for a test key, to the built-in sandbox) and waits
/// for its status line, counting what went wrong.
async fn send_upstream(
    state: &AppState,
    surface: Surface,
    test_mode: bool,
    forward: Bytes,
) -> Result<super::upstream::Answer, ProxyError> {
    let cfg = &state.config;
    let (base, upstream_key) = if test_mode {
        (&cfg.sandbox_url, Some(&cfg.sandbox_key))
    } else {
        (&cfg.upstream_url, cfg.upstream_api_key.as_ref())
    };
    let url = format!("{}/{}", base.trim_end_matches('/'), surface.path());
    let sent = super::upstream::post(&url, upstream_key.map(String::as_str), forward);
    let timeout = Duration::from_millis(cfg.upstream_timeout_ms);
    let errors = &state.metrics.upstream_errors;
    let response = match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "upstream request failed");
            errors.with_label_values(&["unreachable"]).inc();
            return Err(ProxyError::UpstreamUnreachable);
        }
        Err(_) => {
            errors.with_label_values(&["timeout"]).inc();
            return Err(ProxyError::UpstreamTimeout);
        }
    };
    match response.status {
        500.. => errors.with_label_values(&["status_5xx"]).inc(),
        400..=499 => errors.with_label_values(&["status_4xx"]).inc(),
        _ => {}
    }
    Ok(response)
}

/// A whole (non-streamed) answer: read, billed from the provider's usage (or the held bound
/// when a success reports none), kept for replay, and passed on.
async fn settle_whole(
    state: &AppState,
    admitted: Admitted,
    response: super::upstream::Answer,
    idem: &Idem,
) -> Result<Answer, ProxyError> {
    let status = response.status;
    let success = (200..300).contains(&status);
    let timeout = Duration::from_millis(state.config.upstream_timeout_ms);
    let bytes = match tokio::time::timeout(timeout, response.bytes()).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) | Err(_) => {
            admitted.release(state).await;
            return Err(ProxyError::UpstreamTimeout);
        }
    };
    let usage = match (super::usage::usage_in(&bytes), success) {
        (Some(u), _) => Some(u),
        // A successful answer without usage: bill the bound that was held, never nothing.
        (None, true) => {
            tracing::warn!(model = %admitted.model, "upstream answered without usage; billing the held bound");
            Some(admitted.bound_usage())
        }
        (None, false) => None,
    };
    admitted.settle(state, usage, status).await?;
    if !success {
        if let Some(slot) = idem {
            // An upstream error is not an answer to keep: a retry may succeed.
            abandon(state, slot).await;
        }
        // Only an error answer is read whole, to pass on what it says.
        let answer: Option<Value> = serde_json::from_slice(&bytes).ok();
        return super::upstream_error::answer(state, status, &bytes, answer.as_ref()).await;
    }
    complete(state, idem, status, "application/json", Some(&bytes)).await;
    Ok(Answer::Json {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        body: bytes,
        available: Some(format_micros(admitted.available_after_hold.micros())),
    })
}

/// Streams the upstream's events to the client as they arrive. A task reads the upstream and
/// feeds a bounded queue that is the response body; it settles before letting the final event
/// through. When the client goes away it stops forwarding but reads on until the provider's
/// usage arrives, and settles that.
fn stream_response(
    surface: Surface,
    state: web::Data<AppState>,
    admitted: Admitted,
    response: super::upstream::Answer,
    client_wants_usage: bool,
    idem: Idem,
) -> Answer {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_QUEUE_EVENTS);
    let available = format_micros(admitted.available_after_hold.micros());
    let delivered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    tokio::spawn(
        pump(
            Pumped {
                surface,
                state,
                admitted,
                client_wants_usage,
                idem,
                delivered: delivered.clone(),
            },
            response,
            tx,
        )
        .instrument(tracing::Span::current()),
    );
    Answer::Stream {
        events: rx,
        available,
        delivered,
    }
}

/// How long past the stream deadline the final event may wait for a slow client.
const FINAL_GRACE: Duration = Duration::from_secs(5);

/// Sends to the client unless it has gone or `deadline` passes first; whether it was sent.
async fn send_by(
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    item: Result<Bytes, std::io::Error>,
    deadline: tokio::time::Instant,
) -> bool {
    tokio::select! {
        sent = tx.send(item) => sent.is_ok(),
        _ = tokio::time::sleep_until(deadline) => false,
    }
}

/// How a stream ended, for settlement.
struct Outcome {
    usage: Option<TokenUsage>,
    /// The final event, held back until the usage is committed.
    last: Option<Bytes>,
    client_gone: bool,
    /// Bytes read from the upstream after the client went away.
    drained_bytes: usize,
    /// The stream's deadline: the final event may wait a little past it for a slow client.
    deadline: tokio::time::Instant,
}

/// After the client has gone, the most the proxy reads on while waiting for the provider's
/// usage. The output is bounded by the hold's token cap; this bounds the bytes framing it.
const DRAIN_MAX_BYTES: usize = 64 * 1024 * 1024;

/// What the upstream reader needs besides the upstream and the client's queue.
struct Pumped {
    surface: Surface,
    state: web::Data<AppState>,
    admitted: Admitted,
    client_wants_usage: bool,
    idem: Idem,
    delivered: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Reads the upstream's events, forwarding them while the client is there. A client that
/// goes away is not the end: the provider bills what it generates, so the reader goes on
/// (bounded by the stream deadline and [`DRAIN_MAX_BYTES`]) until the usage event arrives,
/// and bills that. Only an upstream that ends or fails without usage is billed the held bound.
async fn read_upstream(
    p: &mut Pumped,
    response: super::upstream::Answer,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    sent: &mut Option<Vec<u8>>,
) -> Outcome {
    let idle = Duration::from_millis(p.state.config.upstream_timeout_ms);
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(p.state.config.stream_max_ms);
    let mut upstream = response.stream();
    let mut splitter = EventSplitter::new(MAX_EVENT_BYTES);
    let mut out = Outcome {
        usage: None,
        last: None,
        client_gone: false,
        drained_bytes: 0,
        deadline,
    };
    'read: while let Some(chunk) = next_chunk(p, &mut upstream, tx, &mut out, idle).await {
        let events = match splitter.push(&chunk) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "upstream stream malformed");
                break;
            }
        };
        for event in events {
            if let Step::Stop = on_event(p, &mut out, event, tx, sent).await {
                break 'read;
            }
        }
    }
    // Dropping the upstream body closes its connection: nothing more is generated or owed.
    drop(upstream);
    let tail = splitter.rest();
    if !tail.is_empty() && !out.client_gone && out.last.is_none() {
        send_by(tx, Ok(tail), deadline).await;
    }
    out
}

/// Whether reading the upstream goes on after an event.
enum Step {
    Go,
    Stop,
}

/// The upstream's next chunk, noticing meanwhile a client that goes away; `None` ends the
/// read: the stream ended, failed, stalled or passed its deadline, or the client is gone and
/// the upstream went on too long.
async fn next_chunk(
    p: &mut Pumped,
    upstream: &mut (impl futures_util::Stream<Item = Result<Bytes, hyper::Error>> + Unpin),
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    out: &mut Outcome,
    idle: Duration,
) -> Option<Bytes> {
    let deadline = out.deadline;
    let next = loop {
        if out.client_gone {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return None,
                n = tokio::time::timeout(idle, upstream.next()) => break n,
            }
        }
        tokio::select! {
            _ = tx.closed() => {
                out.client_gone = true;
                p.admitted.free_slot();
            }
            _ = tokio::time::sleep_until(deadline) => return None,
            n = tokio::time::timeout(idle, upstream.next()) => break n,
        }
    };
    let chunk = match next {
        Ok(Some(Ok(c))) => c,
        Ok(Some(Err(e))) => {
            tracing::warn!(error = %e, "upstream stream failed");
            return None;
        }
        Ok(None) => return None,
        Err(_) => {
            tracing::warn!("upstream stream stalled");
            return None;
        }
    };
    if out.client_gone {
        out.drained_bytes += chunk.len();
        if out.drained_bytes > DRAIN_MAX_BYTES {
            tracing::warn!("upstream went on too long after the client left");
            return None;
        }
    }
    Some(chunk)
}

/// One event of the upstream's: its usage noted, the final one held back, the rest forwarded
/// to a client still there (and kept, up to a limit, for an idempotent retry's replay).
async fn on_event(
    p: &mut Pumped,
    out: &mut Outcome,
    event: Bytes,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    sent: &mut Option<Vec<u8>>,
) -> Step {
    let (forward, event) = match sse::classify(p.surface, &event) {
        StreamEvent::Done => {
            out.last = Some(event);
            return Step::Stop;
        }
        StreamEvent::Final { usage } => {
            out.usage = usage.as_ref().and_then(parse_usage);
            out.last = Some(super::upstream_error::scrub_event(event));
            return Step::Stop;
        }
        StreamEvent::Usage { usage, only_usage } => {
            out.usage = parse_usage(&usage);
            if out.client_gone && out.usage.is_some() {
                return Step::Stop;
            }
            (p.client_wants_usage || !only_usage, event)
        }
        StreamEvent::Output => (true, event),
        StreamEvent::Other => (true, super::upstream_error::scrub_event(event)),
    };
    if forward && !out.client_gone {
        if let Some(buf) = sent.as_mut() {
            if buf.len() + event.len() <= REPLAY_MAX_BYTES {
                buf.extend_from_slice(&event);
            } else {
                *sent = None;
            }
        }
        // A client that stops reading until the deadline is treated as gone; the deadline
        // then ends the read as well.
        if !send_by(tx, Ok(event), out.deadline).await {
            out.client_gone = true;
            p.admitted.free_slot();
        }
    }
    Step::Go
}

async fn pump(
    mut p: Pumped,
    response: super::upstream::Answer,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    // What the client was sent, kept (up to a limit) for replay to an idempotent retry.
    let mut sent: Option<Vec<u8>> = p.idem.as_ref().map(|_| Vec::new());
    let out = read_upstream(&mut p, response, &tx, &mut sent).await;
    let (state, admitted, idem) = (&p.state, &p.admitted, &p.idem);
    let final_by = out.deadline + FINAL_GRACE;
    let usage = match out.usage {
        Some(u) => u,
        None => {
            // Whatever the client saw, the provider may have generated up to the bound.
            tracing::warn!(billing_id = %admitted.billing_id, client_gone = out.client_gone,
                "stream ended without the provider's usage; billing the held bound");
            admitted.bound_usage()
        }
    };
    if out.client_gone {
        let billed = if out.usage.is_some() {
            "provider_usage"
        } else {
            "held_bound"
        };
        state.metrics.disconnects.with_label_values(&[billed]).inc();
        tracing::info!(billing_id = %admitted.billing_id, billed,
            events_delivered = p.delivered.load(std::sync::atomic::Ordering::Relaxed),
            drained_bytes = out.drained_bytes, "the client left mid-stream");
    }
    match admitted.settle(state, Some(usage), 200).await {
        Ok(()) => {
            if let (Some(last), false) = (out.last, out.client_gone) {
                match (idem, sent.as_mut()) {
                    (Some(_), Some(buf)) if buf.len() + last.len() <= REPLAY_MAX_BYTES => {
                        buf.extend_from_slice(&last);
                        complete(state, idem, 200, "text/event-stream", Some(buf)).await;
                    }
                    (Some(_), _) => complete(state, idem, 200, "text/event-stream", None).await,
                    _ => {}
                }
                send_by(&tx, Ok(last), final_by).await;
            } else if let Some(slot) = idem {
                // The client did not get it all: a retry may run (and is billed) again.
                abandon(state, slot).await;
            }
        }
        Err(e) => {
            if let Some(slot) = idem {
                abandon(state, slot).await;
            }
            tracing::error!(error = %e, billing_id = %admitted.billing_id,
                "stream settlement failed; the hold resolves at its timeout");
            let event = format!(
                "data: {}\n\n",
                serde_json::json!({"error": {"message": "Metering failed; the response is incomplete.",
                    "type": "server_error", "param": null, "code": "service_unavailable"}})
            );
            send_by(&tx, Ok(Bytes::from(event)), final_by).await;
        }
    }
}
