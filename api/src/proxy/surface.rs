//! The OpenAI surfaces the proxy meters, and what each request says about its cost: the
//! model, a bound on its input tokens, the output it may produce and whether it streams.
//! What a request may contain at all is the allowlist's (`allowlist.rs`).

use super::allowlist;
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
    /// Top-level fields the proxy writes into the forwarded body (`store`, `service_tier`).
    pub overrides: Vec<(&'static str, serde_json::Value)>,
}

/// The most output tokens a request may ask for (`max_tokens`, `max_completion_tokens`,
/// `max_output_tokens`).
pub const MAX_OUTPUT_TOKENS: u64 = 10_000_000;
/// The most choices a chat request may ask for (`n`).
pub const MAX_CHOICES: u64 = 128;

/// What [`Surface::parse`] requires of a field it reads itself, beyond what the allowlist
/// says: the OpenAPI document states these (`contract.rs`), and a test holds `parse` to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A non-empty string: the model, which must have a price.
    Model,
    /// A non-empty array (`messages`), or for `input` a non-empty string or array.
    NonEmpty,
    /// A boolean.
    Flag,
    /// A whole number from 1 to this.
    Count(u64),
}

/// Byte-level BPE tokenizers never emit more tokens than bytes, so a body's length bounds the
/// tokens of the text in it; each message or input item also costs a few framing tokens.
fn bound(body_len: usize, items: usize) -> u64 {
    body_len as u64 + 8 * items as u64 + 16
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
    /// The fields [`Surface::parse`] reads, what it requires of each, and whether a request
    /// must carry it.
    pub fn reads(self) -> &'static [(&'static str, Read, bool)] {
        match self {
            Surface::Chat => &[
                ("model", Read::Model, true),
                ("messages", Read::NonEmpty, true),
                (
                    "max_completion_tokens",
                    Read::Count(MAX_OUTPUT_TOKENS),
                    false,
                ),
                ("max_tokens", Read::Count(MAX_OUTPUT_TOKENS), false),
                ("n", Read::Count(MAX_CHOICES), false),
                ("stream", Read::Flag, false),
            ],
            Surface::Responses => &[
                ("model", Read::Model, true),
                ("input", Read::NonEmpty, true),
                ("max_output_tokens", Read::Count(MAX_OUTPUT_TOKENS), false),
                ("stream", Read::Flag, false),
            ],
            Surface::Embeddings => &[
                ("model", Read::Model, true),
                ("input", Read::NonEmpty, true),
            ],
        }
    }

    /// The upstream path, after the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Surface::Chat => "chat/completions",
            Surface::Responses => "responses",
            Surface::Embeddings => "embeddings",
        }
    }

    /// Reads what metering needs from a request, after checking it against the allowlist;
    /// `allow_storage` is the programme's `allow_provider_storage`.
    pub fn parse(
        self,
        body: &Value,
        body_len: usize,
        allow_storage: bool,
    ) -> Result<Parsed, ProxyError> {
        if !body.is_object() {
            return Err(invalid("The body must be a JSON object.", "body"));
        }
        let model = model(body)?;
        let allowlist::Checked {
            overrides,
            media_tokens: media,
        } = allowlist::check(self, body, allow_storage)?;
        match self {
            Surface::Chat => {
                let messages = match body.get("messages").and_then(Value::as_array) {
                    Some(m) if !m.is_empty() => m.len(),
                    _ => return Err(invalid("`messages` must be a non-empty array.", "messages")),
                };
                let max_completion = u64_field(body, "max_completion_tokens", MAX_OUTPUT_TOKENS)?;
                let max_tokens = u64_field(body, "max_tokens", MAX_OUTPUT_TOKENS)?;
                let output_field = if max_completion.is_none() && max_tokens.is_some() {
                    "max_tokens"
                } else {
                    "max_completion_tokens"
                };
                Ok(Parsed {
                    model,
                    prompt_bound: bound(body_len, messages).saturating_add(media),
                    requested_output: max_completion.or(max_tokens),
                    output_field: Some(output_field),
                    choices: u64_field(body, "n", MAX_CHOICES)?.unwrap_or(1),
                    stream: stream(body)?,
                    client_wants_usage: body
                        .pointer("/stream_options/include_usage")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    overrides,
                })
            }
            Surface::Responses => Ok(Parsed {
                model,
                prompt_bound: bound(body_len, input_items(body)?).saturating_add(media),
                requested_output: u64_field(body, "max_output_tokens", MAX_OUTPUT_TOKENS)?,
                output_field: Some("max_output_tokens"),
                choices: 1,
                stream: stream(body)?,
                client_wants_usage: true,
                overrides,
            }),
            Surface::Embeddings => Ok(Parsed {
                model,
                prompt_bound: bound(body_len, input_items(body)?),
                requested_output: Some(0),
                output_field: None,
                choices: 1,
                stream: false,
                client_wants_usage: false,
                overrides,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::allowlist::IMAGE_TOKEN_BOUND;
    use serde_json::json;

    /// The document's request schemas state `reads()` (`contract.rs`): each bound and type
    /// there is the one `parse` enforces, at its edge, and each required field is required.
    #[test]
    fn parse_holds_to_what_the_document_states() {
        let refused_at = |s: Surface, body: &Value| match s.parse(body, 100, false) {
            Err(ProxyError::InvalidRequest { param, .. }) => param.map(str::to_string),
            Err(ProxyError::InvalidAt { param, .. }) => Some(param),
            other => panic!("{body} was not refused: {other:?}"),
        };
        for surface in [Surface::Chat, Surface::Responses, Surface::Embeddings] {
            let valid = match surface {
                Surface::Chat => {
                    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
                }
                _ => json!({"model": "m", "input": "hi"}),
            };
            assert!(surface.parse(&valid, 100, false).is_ok(), "{valid}");
            let with = |name: &str, v: Value| {
                let mut body = valid.clone();
                body[name] = v;
                body
            };
            for (name, read, required) in surface.reads() {
                let here = Some(name.to_string());
                if *required {
                    let mut body = valid.clone();
                    body.as_object_mut().unwrap().remove(*name);
                    assert_eq!(refused_at(surface, &body), here, "{body}");
                }
                let (accepted, refused) = match read {
                    Read::Model => (vec![json!("m")], vec![json!(""), json!(7)]),
                    Read::NonEmpty => (vec![valid[*name].clone()], vec![json!([]), json!(7)]),
                    Read::Flag => (vec![json!(true), json!(false)], vec![json!("yes")]),
                    Read::Count(max) => (
                        vec![json!(1), json!(max)],
                        vec![json!(0), json!(max + 1), json!(-1), json!("1")],
                    ),
                };
                for v in accepted {
                    let body = with(name, v);
                    assert!(surface.parse(&body, 100, false).is_ok(), "{body}");
                }
                for v in refused {
                    let body = with(name, v);
                    assert_eq!(refused_at(surface, &body), here, "{body}");
                }
            }
        }
    }

    #[test]
    fn each_surface_names_its_bounds() {
        let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7, "n": 2});
        let p = Surface::Chat.parse(&chat, 100, false).unwrap();
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
        let p = Surface::Responses.parse(&r, 60, false).unwrap();
        assert_eq!(
            (p.prompt_bound, p.requested_output, p.output_field),
            (84, Some(50), Some("max_output_tokens"))
        );
        let e = json!({"model": "m", "input": ["a", "b", "c"]});
        let p = Surface::Embeddings.parse(&e, 40, false).unwrap();
        assert_eq!((p.prompt_bound, p.requested_output), (80, Some(0)));
    }

    #[test]
    fn inputs_the_proxy_cannot_bound_are_refused() {
        let r = json!({"model": "m", "input": "x", "previous_response_id": "resp_1"});
        assert!(Surface::Responses.parse(&r, 10, false).is_err());
        let r = json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]});
        assert!(Surface::Responses.parse(&r, 10, false).is_err());
        let r = json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}]});
        assert!(Surface::Responses.parse(&r, 10, false).is_ok());
        assert!(Surface::Embeddings
            .parse(&json!({"model": "m", "input": []}), 10, false)
            .is_err());
    }

    #[test]
    fn refusals_name_where_they_are_and_overrides_reach_the_parse() {
        let refused = |s: Surface, body: Value| match s.parse(&body, 100, false) {
            Err(ProxyError::InvalidAt { param, code, .. }) => (param, code.map(|c| c.as_str())),
            other => panic!("{body}: {other:?}"),
        };
        let r = json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_123"}]});
        assert_eq!(
            refused(Surface::Responses, r),
            ("input[0].type".to_string(), Some("unsupported_parameter"))
        );
        let c = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "service_tier": "priority"});
        assert_eq!(
            refused(Surface::Chat, c),
            ("service_tier".to_string(), Some("unsupported_parameter"))
        );
        let r = json!({"model": "m", "input": "x", "store": true, "service_tier": "auto"});
        let p = Surface::Responses.parse(&r, 60, false).unwrap();
        assert_eq!(
            p.overrides,
            vec![
                ("service_tier", Value::from("default")),
                ("store", Value::from(false))
            ]
        );
        let p = Surface::Responses.parse(&r, 60, true).unwrap();
        assert_eq!(p.overrides, vec![("service_tier", Value::from("default"))]);
        let c =
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "store": true});
        assert!(Surface::Chat.parse(&c, 60, false).is_err());
        assert!(Surface::Chat
            .parse(&c, 60, true)
            .unwrap()
            .overrides
            .is_empty());
    }

    #[test]
    fn images_add_their_own_bound_and_audio_is_refused() {
        let chat = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}]}]});
        let p = Surface::Chat.parse(&chat, 100, false).unwrap();
        assert_eq!(p.prompt_bound, 124 + IMAGE_TOKEN_BOUND);
        let audio = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]});
        assert!(Surface::Chat.parse(&audio, 100, false).is_err());
        let file = json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_file", "file_data": "data:application/pdf;base64,AAAA"}]}]});
        assert!(Surface::Responses.parse(&file, 100, false).is_err());
        let r = json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]});
        assert_eq!(
            Surface::Responses
                .parse(&r, 50, false)
                .unwrap()
                .prompt_bound,
            74 + IMAGE_TOKEN_BOUND
        );
    }
}
