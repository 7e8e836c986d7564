//! The provider's error answers, rewritten before they reach a client. They speak of the
//! programme's own provider account (its organisation, project and key) and must never leak
//! it: a 401 or 403 from the provider means the programme's credentials failed, not the
//! client's key, so it becomes 502 `upstream_auth_failed` and an alert to administrators;
//! every other error keeps its status and OpenAI shape with the account's identifiers removed.
//! The original is logged here, on the server.

use super::forward::Answer;
use super::ProxyError;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use serde_json::{json, Value};

/// Prefixes of the provider's identifiers for keys, organisations, projects, users and
/// sessions: a word starting with one is removed from anything a client sees.
const ACCOUNT_PREFIXES: &[&str] = &["sk-", "org-", "proj_", "user-", "sess-", "acct_"];
const REDACTED: &str = "[redacted]";
/// How much of an upstream error body the log keeps.
const LOGGED_BYTES_MAX: usize = 2_048;

fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')
}

/// `text` with every provider account identifier replaced by `[redacted]`.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at_word_start = true;
    while let Some(c) = rest.chars().next() {
        if at_word_start && ACCOUNT_PREFIXES.iter().any(|p| rest.starts_with(p)) {
            let end = rest.find(|c: char| !word_char(c)).unwrap_or(rest.len());
            out.push_str(REDACTED);
            rest = &rest[end..];
            at_word_start = false;
            continue;
        }
        out.push(c);
        at_word_start = !word_char(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A stream event that reports an error (a chat chunk with `error`, a Responses `error` or
/// `response.failed` event), with the account's identifiers removed; any other event as it is.
pub fn scrub_event(event: Bytes) -> Bytes {
    let Ok(text) = std::str::from_utf8(&event) else {
        return event;
    };
    if !ACCOUNT_PREFIXES.iter().any(|p| text.contains(p)) {
        return event;
    }
    let is_error = super::sse::data_of(&event)
        .and_then(|d| serde_json::from_str::<Value>(&d).ok())
        .is_some_and(|v| {
            v.get("error").is_some_and(|e| !e.is_null())
                || matches!(v["type"].as_str(), Some("error" | "response.failed"))
        });
    if is_error {
        Bytes::from(scrub(text))
    } else {
        event
    }
}

/// A short machine code from the provider (`type`, `code`, `param`), kept only when it is
/// plainly one: anything longer or with other characters could carry an identifier.
fn code(v: Option<&Value>) -> Value {
    match v.and_then(Value::as_str) {
        Some(s)
            if !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-[]".contains(c))
                && !ACCOUNT_PREFIXES.iter().any(|p| s.starts_with(p)) =>
        {
            Value::from(s)
        }
        _ => Value::Null,
    }
}

/// The client's answer to an upstream error status.
pub async fn answer(
    state: &AppState,
    status: u16,
    bytes: &[u8],
    parsed: Option<&Value>,
) -> Result<Answer, ProxyError> {
    let original = String::from_utf8_lossy(&bytes[..bytes.len().min(LOGGED_BYTES_MAX)]);
    if matches!(status, 401 | 403) {
        tracing::error!(status, body = %original,
            "the provider refused the programme's credentials; answering 502 upstream_auth_failed");
        if let Err(e) = state
            .store
            .alert_upstream_auth(status, voucherd_store::now())
            .await
        {
            tracing::error!(error = %e, "could not alert administrators to the provider's refusal");
        }
        return Err(ProxyError::UpstreamAuthFailed);
    }
    tracing::warn!(status, body = %original, "the provider answered an error");
    let error = parsed
        .and_then(|v| v.get("error"))
        .filter(|e| e.is_object());
    let message = error
        .and_then(|e| e["message"].as_str())
        .filter(|m| !m.is_empty())
        .map(scrub)
        .unwrap_or_else(|| "The upstream returned an error.".into());
    let body = json!({"error": {
        "message": message,
        "type": error.map_or(Value::from("upstream_error"), |e| match code(e.get("type")) {
            Value::Null => Value::from("upstream_error"),
            t => t,
        }),
        "param": error.map_or(Value::Null, |e| code(e.get("param"))),
        "code": error.map_or(Value::Null, |e| code(e.get("code"))),
    }});
    Ok(Answer::Json {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        body: Bytes::from(body.to_string()),
        available: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_identifiers_are_removed_and_the_rest_kept() {
        assert_eq!(
            scrub("Incorrect API key provided: sk-proj-****abcd. You can find your API key at https://platform.example/account/api-keys."),
            "Incorrect API key provided: [redacted]. You can find your API key at https://platform.example/account/api-keys."
        );
        assert_eq!(
            scrub("Rate limit reached for gpt-4o in organization org-AbC123 on tokens per min (TPM): Limit 30000, Used 29000."),
            "Rate limit reached for gpt-4o in organization [redacted] on tokens per min (TPM): Limit 30000, Used 29000."
        );
        assert_eq!(
            scrub("project proj_9xYz (user-42) refused"),
            "project [redacted] ([redacted]) refused"
        );
        // Only at the start of a word: a model or task name is left alone.
        assert_eq!(
            scrub("task-org-chart and disk-space"),
            "task-org-chart and disk-space"
        );
        assert_eq!(scrub("£5 – naïve"), "£5 – naïve");
    }

    #[test]
    fn only_plain_codes_are_kept() {
        assert_eq!(
            code(Some(&json!("context_length_exceeded"))),
            json!("context_length_exceeded")
        );
        assert_eq!(
            code(Some(&json!("messages[0].content"))),
            json!("messages[0].content")
        );
        assert_eq!(code(Some(&json!("org-AbC123"))), Value::Null);
        assert_eq!(code(Some(&json!("has spaces"))), Value::Null);
        assert_eq!(code(Some(&json!(42))), Value::Null);
    }

    #[test]
    fn error_events_are_scrubbed_and_output_is_not() {
        let err =
            Bytes::from("data: {\"error\":{\"message\":\"quota of org-AbC123 exceeded\"}}\n\n");
        assert_eq!(
            scrub_event(err),
            Bytes::from("data: {\"error\":{\"message\":\"quota of [redacted] exceeded\"}}\n\n")
        );
        let out = Bytes::from(
            "data: {\"choices\":[{\"delta\":{\"content\":\"sk-test is a prefix\"}}]}\n\n",
        );
        assert_eq!(scrub_event(out.clone()), out);
    }
}
