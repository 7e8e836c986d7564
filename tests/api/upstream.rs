//! A fake of the AI provider's OpenAI-compatible API, behaving like the real one for what the
//! proxy relies on: it authenticates with its own key, answers `/chat/completions` with a
//! chat completion and its `usage`, never produces more output tokens than `max_tokens` /
//! `max_completion_tokens` allow, and can be told to fail. It records what it received.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub const UPSTREAM_KEY: &str = "sk-upstream-programme-key";

#[derive(Debug, Clone)]
pub struct Reply {
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    /// Output tokens per choice before the request's own limit applies.
    pub completion_tokens: u64,
    /// Non-200 makes it answer with OpenAI's error shape and no usage.
    pub status: u16,
    pub include_usage: bool,
    /// Streams stop after this many content chunks and then hang, as a stuck provider does.
    pub stall_after: Option<u64>,
    /// Of the output tokens, how many are a reasoning model's hidden reasoning: billed in the
    /// usage, never streamed as chunks.
    pub reasoning_tokens: u64,
    /// The answer waits for this (a stream after its visible chunks, a plain answer before
    /// it is sent), as a provider does while it reasons.
    pub pause: Option<Arc<tokio::sync::Notify>>,
    /// With a non-200 `status`, the provider's own error body (else a generic server error).
    pub error_body: Option<Value>,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            prompt_tokens: 1_000,
            cached_tokens: 200,
            completion_tokens: 333,
            status: 200,
            include_usage: true,
            stall_after: None,
            reasoning_tokens: 0,
            pause: None,
            error_body: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
pub struct Shared {
    pub reply: Mutex<Reply>,
    pub received: Mutex<Vec<Received>>,
    /// Streams whose connection was closed before they finished.
    pub streams_cut: std::sync::atomic::AtomicUsize,
}

pub struct FakeUpstream {
    pub url: String,
    pub shared: Arc<Shared>,
}

impl FakeUpstream {
    pub fn start() -> FakeUpstream {
        let shared = Arc::new(Shared::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v1/chat/completions", web::post().to(chat))
                .route("/v1/responses", web::post().to(responses))
                .route("/v1/embeddings", web::post().to(embeddings))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        FakeUpstream {
            url: format!("http://127.0.0.1:{port}/v1"),
            shared,
        }
    }

    pub fn set_reply(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn streams_cut(&self) -> usize {
        self.shared
            .streams_cut
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Counts a stream as cut when it is dropped before its end.
struct CutGuard {
    shared: web::Data<Shared>,
    finished: bool,
}

impl Drop for CutGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.shared
                .streams_cut
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

fn event(v: &Value) -> web::Bytes {
    web::Bytes::from(format!("data: {v}\n\n"))
}

/// A chat completion as the provider streams it: a role chunk, one chunk per output token
/// per choice, a finish chunk per choice, the usage chunk when asked for, then `[DONE]`.
fn stream(
    shared: web::Data<Shared>,
    body: &Value,
    reply: Reply,
    per_choice: u64,
    n: u64,
) -> HttpResponse {
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let model = body.get("model").cloned().unwrap_or(Value::Null);
    let chunk = |choices: Value| {
        let mut c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_764_000_000,
                           "model": model, "choices": choices});
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut events = vec![event(&chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
    ))];
    let mut content = 0;
    let visible = per_choice.saturating_sub(reply.reasoning_tokens);
    'tokens: for _ in 0..visible {
        for i in 0..n {
            if reply.stall_after == Some(content) {
                break 'tokens;
            }
            events.push(event(&chunk(
                json!([{"index": i, "delta": {"content": "tok "}, "finish_reason": null}]),
            )));
            content += 1;
        }
    }
    let stalls = reply.stall_after.is_some();
    let pause_at = events.len();
    if !stalls {
        for i in 0..n {
            events.push(event(&chunk(
                json!([{"index": i, "delta": {}, "finish_reason": "stop"}]),
            )));
        }
        if include_usage && reply.include_usage {
            events.push(event(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_764_000_000,
                "model": model, "choices": [], "usage": {
                    "prompt_tokens": reply.prompt_tokens, "completion_tokens": per_choice * n,
                    "total_tokens": reply.prompt_tokens + per_choice * n,
                    "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
                    "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens}}})));
        }
        events.push(web::Bytes::from_static(b"data: [DONE]\n\n"));
    }
    let guard = CutGuard {
        shared,
        finished: false,
    };
    let pause = reply.pause.clone();
    let body = futures_util::stream::unfold(
        (events.into_iter().enumerate(), guard, stalls, pause),
        move |(mut it, mut guard, stalls, mut pause)| async move {
            match it.next() {
                Some((i, e)) => {
                    if i == pause_at {
                        if let Some(p) = pause.take() {
                            p.notified().await;
                        }
                    }
                    Some((Ok::<_, actix_web::Error>(e), (it, guard, stalls, pause)))
                }
                None if stalls => {
                    // Stuck: only keep-alive comments from now on, until the reader goes away
                    // (the failed write ends this stream, and the guard records the cut).
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    Some((
                        Ok(web::Bytes::from_static(b": keep-alive\n\n")),
                        (it, guard, stalls, pause),
                    ))
                }
                None => {
                    guard.finished = true;
                    drop(guard);
                    None
                }
            }
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

async fn chat(shared: web::Data<Shared>, req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    shared.received.lock().unwrap().push(Received {
        authorization: authorization.clone(),
        body: body.0.clone(),
    });
    if authorization.as_deref() != Some(&format!("Bearer {UPSTREAM_KEY}")) {
        return HttpResponse::Unauthorized().json(json!({"error": {
            "message": "Incorrect API key provided.", "type": "invalid_request_error",
            "param": null, "code": "invalid_api_key"}}));
    }
    let reply = shared.reply.lock().unwrap().clone();
    if reply.status != 200 {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap())
            // The provider names the programme's own account in its headers and errors.
            .insert_header(("openai-organization", "org-ProgrammeAcct42"))
            .insert_header(("openai-project", "proj_ProgrammeProj7"))
            .json(reply.error_body.clone().unwrap_or_else(|| json!({"error": {"message": "The server had an error while processing your request.",
                "type": "server_error", "param": null, "code": null}})));
    }
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    let limit = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let per_choice = reply.completion_tokens.min(limit);
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return stream(shared.clone(), &body.0, reply, per_choice, n);
    }
    if let Some(p) = &reply.pause {
        p.notified().await;
    }
    let choices: Vec<Value> = (0..n)
        .map(|i| json!({"index": i, "message": {"role": "assistant", "content": "Hello from the provider."},
                        "logprobs": null, "finish_reason": if per_choice < reply.completion_tokens { "length" } else { "stop" }}))
        .collect();
    let mut out = json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_764_000_000,
        "model": body.get("model").cloned().unwrap_or(Value::Null), "choices": choices,
    });
    if reply.include_usage {
        out["usage"] = json!({
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": per_choice * n,
            "total_tokens": reply.prompt_tokens + per_choice * n,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        });
    }
    HttpResponse::Ok().json(out)
}

fn record(shared: &Shared, req: &HttpRequest, body: &Value) -> Option<HttpResponse> {
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    shared.received.lock().unwrap().push(Received {
        authorization: authorization.clone(),
        body: body.clone(),
    });
    if authorization.as_deref() != Some(&format!("Bearer {UPSTREAM_KEY}")) {
        return Some(HttpResponse::Unauthorized().json(json!({"error": {
            "message": "Incorrect API key provided.", "type": "invalid_request_error",
            "param": null, "code": "invalid_api_key"}})));
    }
    None
}

/// The Responses API: `usage` in `input_tokens` / `output_tokens`; streams end with a
/// `response.completed` event carrying it, and have no `[DONE]`.
async fn responses(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if let Some(refused) = record(&shared, &req, &body) {
        return refused;
    }
    let reply = shared.reply.lock().unwrap().clone();
    let limit = body
        .get("max_output_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let output = reply.completion_tokens.min(limit);
    let usage = json!({"input_tokens": reply.prompt_tokens, "input_tokens_details": {"cached_tokens": reply.cached_tokens},
        "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.prompt_tokens + output});
    let response = json!({"id": "resp_fake", "object": "response", "status": "completed",
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "output": [{"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "tok ".repeat(output as usize), "annotations": []}]}],
        "usage": usage});
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return HttpResponse::Ok().json(response);
    }
    let ev = |kind: &str, v: Value| web::Bytes::from(format!("event: {kind}\ndata: {v}\n\n"));
    let mut events = vec![ev(
        "response.created",
        json!({"type": "response.created", "sequence_number": 0}),
    )];
    for i in 0..output {
        events.push(ev(
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "sequence_number": i + 1,
            "item_id": "msg_fake", "output_index": 0, "content_index": 0, "delta": "tok "}),
        ));
    }
    events.push(ev(
        "response.completed",
        json!({"type": "response.completed", "sequence_number": output + 1, "response": response}),
    ));
    let body = futures_util::stream::iter(events.into_iter().map(Ok::<_, actix_web::Error>));
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

async fn embeddings(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if let Some(refused) = record(&shared, &req, &body) {
        return refused;
    }
    let reply = shared.reply.lock().unwrap().clone();
    let inputs = match body.get("input") {
        Some(Value::Array(a)) => a.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.25, -0.5, 0.125]}))
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data,
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "usage": {"prompt_tokens": reply.prompt_tokens, "total_tokens": reply.prompt_tokens}}))
}
