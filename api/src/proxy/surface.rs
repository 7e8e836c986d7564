//! The OpenAI surfaces the proxy meters, and what each request says about its cost: the
//! model, a bound on its input tokens, the output it may produce and whether it streams.

use super::{invalid, u64_field, ProxyError};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Chat,
    Responses,
    Embeddings,
}

/// What metering needs to know about one request.
#[derive(Debug)]
pub struct Parsed {
    pub model: String,
    pub prompt_bound: u64,
    /// The client's own output limit per choice.
    pub requested_output: Option<u64>,
    /// The request field that limits output, where the proxy writes its cap.
    pub output_field: Option<&'static str>,
    pub choices: u64,
    pub stream: bool,
    /// Chat streams report usage only when asked (`stream_options.include_usage`).
    pub client_wants_usage: bool,
}

/// Byte-level BPE tokenizers never emit more tokens than bytes, so a body's length bounds the
/// tokens of the text in it; each message or input item also costs a few framing tokens.
fn bound(body_len: usize, items: usize) -> u64 {
    body_len as u64 + 8 * items as u64 + 16
}

/// Tokens one image can cost at most. Providers price an image by its tiles or patches; the
/// largest they accept stays well under this, so it bounds any image however it is sent.
pub const IMAGE_TOKEN_BOUND: u64 = 6_000;

/// Walks a prompt for parts whose cost its bytes do not bound: images add their own bound;
/// audio and files are priced in ways this programme does not meter, so they are refused.
fn media_tokens(v: &Value, param: &'static str) -> Result<u64, ProxyError> {
    match v {
        Value::Array(items) => items.iter().try_fold(0u64, |acc, i| {
            Ok(acc.saturating_add(media_tokens(i, param)?))
        }),
        Value::Object(map) => {
            let own = match map.get("type").and_then(Value::as_str) {
                Some("image_url" | "input_image") => IMAGE_TOKEN_BOUND,
                Some(kind @ ("input_audio" | "file" | "input_file")) => {
                    return Err(ProxyError::InvalidRequest {
                        message: format!("`{kind}` content is not supported by this programme."),
                        param: Some(param),
                        code: Some("unsupported_parameter"),
                    })
                }
                _ => 0,
            };
            map.values().try_fold(
                own,
                |acc, i| Ok(acc.saturating_add(media_tokens(i, param)?)),
            )
        }
        _ => Ok(0),
    }
}

fn model(body: &Value) -> Result<String, ProxyError> {
    match body.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => Ok(m.to_string()),
        _ => Err(invalid("You must provide a model parameter.", "model")),
    }
}

fn stream(body: &Value) -> Result<bool, ProxyError> {
    match body.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid("`stream` must be a boolean.", "stream")),
    }
}

/// Items of `input`: a string, or a non-empty array (of strings, token arrays or items).
fn input_items(body: &Value) -> Result<usize, ProxyError> {
    match body.get("input") {
        Some(Value::String(s)) if !s.is_empty() => Ok(1),
        Some(Value::Array(a)) if !a.is_empty() => Ok(a.len()),
        _ => Err(invalid(
            "`input` must be a non-empty string or array.",
            "input",
        )),
    }
}

impl Surface {
    /// The upstream path, after the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Surface::Chat => "chat/completions",
            Surface::Responses => "responses",
            Surface::Embeddings => "embeddings",
        }
    }

    pub fn parse(self, body: &Value, body_len: usize) -> Result<Parsed, ProxyError> {
        if !body.is_object() {
            return Err(invalid("The body must be a JSON object.", "body"));
        }
        let model = model(body)?;
        match self {
            Surface::Chat => {
                let messages = match body.get("messages").and_then(Value::as_array) {
                    Some(m) if !m.is_empty() => m.len(),
                    _ => return Err(invalid("`messages` must be a non-empty array.", "messages")),
                };
                let max_completion = u64_field(body, "max_completion_tokens", 10_000_000)?;
                let max_tokens = u64_field(body, "max_tokens", 10_000_000)?;
                let output_field = if max_completion.is_none() && max_tokens.is_some() {
                    "max_tokens"
                } else {
                    "max_completion_tokens"
                };
                let media = media_tokens(&body["messages"], "messages")?;
                Ok(Parsed {
                    model,
                    prompt_bound: bound(body_len, messages).saturating_add(media),
                    requested_output: max_completion.or(max_tokens),
                    output_field: Some(output_field),
                    choices: u64_field(body, "n", 128)?.unwrap_or(1),
                    stream: stream(body)?,
                    client_wants_usage: body
                        .pointer("/stream_options/include_usage")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
            }
            Surface::Responses => {
                // Input the proxy cannot see cannot be bounded: the conversation must come in
                // the request, and only function tools (priced as tokens) are metered.
                for field in ["previous_response_id", "conversation", "prompt"] {
                    if body.get(field).is_some_and(|v| !v.is_null()) {
                        return Err(ProxyError::InvalidRequest {
                            message: format!("`{field}` is not supported by this programme: send the whole conversation in `input`."),
                            param: Some(match field {
                                "previous_response_id" => "previous_response_id",
                                "conversation" => "conversation",
                                _ => "prompt",
                            }),
                            code: Some("unsupported_parameter"),
                        });
                    }
                }
                let tools_ok = body.get("tools").is_none_or(|t| {
                    t.as_array()
                        .is_some_and(|ts| ts.iter().all(|x| x["type"] == "function"))
                });
                if !tools_ok {
                    return Err(ProxyError::InvalidRequest {
                        message: "Only function tools are supported by this programme.".into(),
                        param: Some("tools"),
                        code: Some("unsupported_parameter"),
                    });
                }
                let media = media_tokens(&body["input"], "input")?;
                Ok(Parsed {
                    model,
                    prompt_bound: bound(body_len, input_items(body)?).saturating_add(media),
                    requested_output: u64_field(body, "max_output_tokens", 10_000_000)?,
                    output_field: Some("max_output_tokens"),
                    choices: 1,
                    stream: stream(body)?,
                    client_wants_usage: true,
                })
            }
            Surface::Embeddings => Ok(Parsed {
                model,
                prompt_bound: bound(body_len, input_items(body)?),
                requested_output: Some(0),
                output_field: None,
                choices: 1,
                stream: false,
                client_wants_usage: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_surface_names_its_bounds() {
        let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7, "n": 2});
        let p = Surface::Chat.parse(&chat, 100).unwrap();
        assert_eq!(
            (
                p.prompt_bound,
                p.requested_output,
                p.output_field,
                p.choices
            ),
            (124, Some(7), Some("max_tokens"), 2)
        );
        let r = json!({"model": "m", "input": "hello", "max_output_tokens": 50});
        let p = Surface::Responses.parse(&r, 60).unwrap();
        assert_eq!(
            (p.prompt_bound, p.requested_output, p.output_field),
            (84, Some(50), Some("max_output_tokens"))
        );
        let e = json!({"model": "m", "input": ["a", "b", "c"]});
        let p = Surface::Embeddings.parse(&e, 40).unwrap();
        assert_eq!((p.prompt_bound, p.requested_output), (80, Some(0)));
    }

    #[test]
    fn inputs_the_proxy_cannot_bound_are_refused() {
        let r = json!({"model": "m", "input": "x", "previous_response_id": "resp_1"});
        assert!(Surface::Responses.parse(&r, 10).is_err());
        let r = json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]});
        assert!(Surface::Responses.parse(&r, 10).is_err());
        let r = json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}]});
        assert!(Surface::Responses.parse(&r, 10).is_ok());
        assert!(Surface::Embeddings
            .parse(&json!({"model": "m", "input": []}), 10)
            .is_err());
    }

    #[test]
    fn images_add_their_own_bound_and_audio_is_refused() {
        let chat = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}]}]});
        let p = Surface::Chat.parse(&chat, 100).unwrap();
        assert_eq!(p.prompt_bound, 124 + IMAGE_TOKEN_BOUND);
        let audio = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]});
        assert!(Surface::Chat.parse(&audio, 100).is_err());
        let r = json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]});
        assert_eq!(
            Surface::Responses.parse(&r, 50).unwrap().prompt_bound,
            74 + IMAGE_TOKEN_BOUND
        );
    }
}
