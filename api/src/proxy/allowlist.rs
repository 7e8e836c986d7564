//! What the proxy forwards. For each surface, the request fields, input items, message fields,
//! content parts, tools, tool choices and `include` values whose cost the voucher's hold
//! covers: tokens bounded by the request's bytes (and images by `IMAGE_TOKEN_BOUND` each) plus
//! the output it may produce. Anything else — a field that raises the provider's price, runs a
//! hosted tool, reads state stored at the provider, or is simply unknown — is refused with 400
//! `unsupported_parameter` naming where it is, before anything is held or forwarded.
//!
//! These tables are the only place the allowlist is written down; docs/ARCHITECTURE.md, "What
//! the proxy forwards", gives each rule and why, README's "What the proxy forwards" lists every
//! top-level field, and a test below keeps README and the tables in step.

use super::surface::Surface;
use super::ProxyError;
use serde_json::Value;

/// Tokens one image can cost at most. Providers price an image by its tiles or patches; the
/// largest they accept at `auto`, `low` or `high` detail stays well under this, so it bounds
/// any image however it is sent.
pub const IMAGE_TOKEN_BOUND: u64 = 6_000;

/// How the proxy treats one value of a request. A `null` value is treated as absent.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Forwarded as sent: its cost is tokens the hold bounds, or nothing.
    Any,
    /// Only one of these strings.
    OneOf(&'static [&'static str]),
    /// Only `false`.
    False,
    /// An object with only these fields.
    Fields(&'static [Field]),
    /// An object whose `type` is one of these kinds.
    Kind(&'static Kinds),
    /// An array whose every element follows the rule.
    Each(&'static Rule),
    /// A string, or an array whose every element follows the rule.
    TextOr(&'static Rule),
    /// One of these strings, or an object whose `type` is one of these kinds.
    OneOfOr(&'static [&'static str], &'static Kinds),
    /// A boolean.
    Boolean,
    /// Checked by its own function (price tiers and storage); the document shows it as the
    /// rule given with it.
    Check(Check, &'static Rule),
    /// Refused whatever its value, for this reason.
    Refuse(&'static str),
}

/// A checking function: the value, where it is, and the walk that collects what it decides.
pub type Check = fn(&Value, &str, &mut Walk) -> Result<(), ProxyError>;

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub rule: Rule,
}

/// The kinds an object may be, told apart by its `type`.
#[derive(Debug)]
pub struct Kinds {
    /// What these objects are, for messages ("content part", "tool").
    pub what: &'static str,
    pub kinds: &'static [Kind],
    /// Why any other kind is refused.
    pub otherwise: &'static str,
    /// The kind an object without `type` is taken as when it has a `role` (Responses API
    /// messages); without a role it is a reference to a stored item, refused.
    pub untyped: Option<&'static str>,
}

#[derive(Debug)]
pub struct Kind {
    pub name: &'static str,
    pub shape: Shape,
    /// A field it must carry, and why.
    pub requires: Option<(&'static str, &'static str)>,
    /// Tokens it may cost beyond its bytes.
    pub tokens: u64,
}

#[derive(Debug)]
pub enum Shape {
    /// Allowed, with these fields besides `type`.
    Fields(&'static [Field]),
    /// Refused, for this reason.
    Refused(&'static str),
}

const fn f(name: &'static str, rule: Rule) -> Field {
    Field { name, rule }
}

const fn any(name: &'static str) -> Field {
    Field {
        name,
        rule: Rule::Any,
    }
}

const fn kind(name: &'static str, fields: &'static [Field]) -> Kind {
    Kind {
        name,
        shape: Shape::Fields(fields),
        requires: None,
        tokens: 0,
    }
}

/// An image part: its bytes do not bound its tokens, `IMAGE_TOKEN_BOUND` does.
const fn image(name: &'static str, fields: &'static [Field]) -> Kind {
    Kind {
        name,
        shape: Shape::Fields(fields),
        requires: None,
        tokens: IMAGE_TOKEN_BOUND,
    }
}

const fn refused(name: &'static str, why: &'static str) -> Kind {
    Kind {
        name,
        shape: Shape::Refused(why),
        requires: None,
        tokens: 0,
    }
}

// Why things are refused.
const STORED: &str = "it makes the provider read state stored under the programme's account, which the hold never bounded; send the whole conversation in the request.";
const HOSTED: &str = "hosted tools are priced per call or per session on top of tokens, which the hold does not cover; use function or custom tools.";
const AUDIO_OUT: &str =
    "audio output is priced above text, which the hold does not cover; only text output is metered.";
const PREDICTION: &str =
    "rejected prediction tokens are billed beyond the output limit the hold covers.";
const CACHE_WRITES: &str = "explicit prompt-cache writes are priced above the input rate the hold covers; implicit caching still applies.";
const MODERATION: &str =
    "moderation runs another model on the request and its output, which the hold does not cover.";
const BACKGROUND: &str =
    "background responses outlive the request's hold and are stored at the provider.";
const UNBOUNDED: &str = "its cost is not bounded by the request, so the hold cannot cover it.";
const MEDIA: &str = "audio and file inputs are priced in ways this programme does not meter.";
const FILE_ID: &str = "it makes the provider read an uploaded file, which the hold never bounded; send the image itself as a URL or data URL.";
const REASONING_BY_ID: &str = "a reasoning item is accepted only with its `encrypted_content` (request it with `include: [\"reasoning.encrypted_content\"]`); by id alone the provider reads a stored item.";

/// Image detail levels whose cost `IMAGE_TOKEN_BOUND` covers (`original` can cost more).
const DETAILS: &[&str] = &["auto", "low", "high"];
/// The service tiers a request may name; `auto` is forwarded as `default` (`service_tier`).
const SERVICE_TIER: Rule = Rule::Check(service_tier, &Rule::OneOf(&["auto", "default"]));

// ---- Chat Completions ----------------------------------------------------------------------

pub const CHAT: &[Field] = &[
    any("model"),
    f("messages", Rule::Each(&Rule::Fields(CHAT_MESSAGE))),
    any("stream"),
    f(
        "stream_options",
        Rule::Fields(&[any("include_usage"), any("include_obfuscation")]),
    ),
    any("max_completion_tokens"),
    any("max_tokens"),
    any("n"),
    any("temperature"),
    any("top_p"),
    any("frequency_penalty"),
    any("presence_penalty"),
    any("seed"),
    any("stop"),
    any("logit_bias"),
    any("logprobs"),
    any("top_logprobs"),
    any("response_format"),
    any("reasoning_effort"),
    any("verbosity"),
    f("tools", Rule::Each(&Rule::Kind(&CHAT_TOOLS))),
    f(
        "tool_choice",
        Rule::OneOfOr(&["none", "auto", "required"], &CHAT_TOOL_CHOICE),
    ),
    any("parallel_tool_calls"),
    any("functions"),
    any("function_call"),
    any("metadata"),
    any("user"),
    any("safety_identifier"),
    any("prompt_cache_key"),
    any("prompt_cache_retention"),
    f("service_tier", SERVICE_TIER),
    f("store", Rule::Check(chat_store, &Rule::Boolean)),
    f("modalities", Rule::Each(&Rule::OneOf(&["text"]))),
    f("audio", Rule::Refuse(AUDIO_OUT)),
    f("prediction", Rule::Refuse(PREDICTION)),
    f("web_search_options", Rule::Refuse(HOSTED)),
    f("moderation", Rule::Refuse(MODERATION)),
    f("prompt_cache_options", Rule::Refuse(CACHE_WRITES)),
];

const CHAT_MESSAGE: &[Field] = &[
    f(
        "role",
        Rule::OneOf(&[
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
        ]),
    ),
    f("content", Rule::TextOr(&Rule::Kind(&CHAT_PARTS))),
    any("name"),
    any("tool_call_id"),
    f("tool_calls", Rule::Each(&Rule::Kind(&CHAT_TOOL_CALLS))),
    any("function_call"),
    any("refusal"),
    f(
        "audio",
        Rule::Refuse("an assistant message's `audio` refers to an audio response stored at the provider, which the hold never bounded."),
    ),
];

const CHAT_PARTS: Kinds = Kinds {
    what: "content part",
    kinds: &[
        kind(
            "text",
            &[
                any("text"),
                f("prompt_cache_breakpoint", Rule::Refuse(CACHE_WRITES)),
            ],
        ),
        image(
            "image_url",
            &[
                f(
                    "image_url",
                    Rule::Fields(&[any("url"), f("detail", Rule::OneOf(DETAILS))]),
                ),
                f("prompt_cache_breakpoint", Rule::Refuse(CACHE_WRITES)),
            ],
        ),
        kind("refusal", &[any("refusal")]),
        refused("input_audio", MEDIA),
        refused("file", MEDIA),
    ],
    otherwise: "only text, image and refusal parts are metered.",
    untyped: None,
};

const CHAT_TOOL_CALLS: Kinds = Kinds {
    what: "tool call",
    kinds: &[
        kind(
            "function",
            &[
                any("id"),
                f("function", Rule::Fields(&[any("name"), any("arguments")])),
            ],
        ),
        kind(
            "custom",
            &[
                any("id"),
                f("custom", Rule::Fields(&[any("name"), any("input")])),
            ],
        ),
    ],
    otherwise: HOSTED,
    untyped: None,
};

const CHAT_TOOLS: Kinds = Kinds {
    what: "tool",
    kinds: &[
        kind(
            "function",
            &[f(
                "function",
                Rule::Fields(&[
                    any("name"),
                    any("description"),
                    any("parameters"),
                    any("strict"),
                ]),
            )],
        ),
        kind(
            "custom",
            &[f(
                "custom",
                Rule::Fields(&[any("name"), any("description"), any("format")]),
            )],
        ),
    ],
    otherwise: HOSTED,
    untyped: None,
};

const CHAT_TOOL_CHOICE: Kinds = Kinds {
    what: "tool choice",
    kinds: &[
        kind("function", &[f("function", Rule::Fields(&[any("name")]))]),
        kind("custom", &[f("custom", Rule::Fields(&[any("name")]))]),
        kind(
            "allowed_tools",
            &[f(
                "allowed_tools",
                Rule::Fields(&[
                    f("mode", Rule::OneOf(&["auto", "required"])),
                    f("tools", Rule::Each(&Rule::Kind(&CHAT_TOOL_REFS))),
                ]),
            )],
        ),
    ],
    otherwise: HOSTED,
    untyped: None,
};

const CHAT_TOOL_REFS: Kinds = Kinds {
    what: "allowed tool",
    kinds: &[
        kind("function", &[f("function", Rule::Fields(&[any("name")]))]),
        kind("custom", &[f("custom", Rule::Fields(&[any("name")]))]),
    ],
    otherwise: HOSTED,
    untyped: None,
};

// ---- Responses -----------------------------------------------------------------------------

pub const RESPONSES: &[Field] = &[
    any("model"),
    f("input", Rule::TextOr(&Rule::Kind(&RESPONSES_ITEMS))),
    any("instructions"),
    any("stream"),
    f("stream_options", Rule::Fields(&[any("include_obfuscation")])),
    any("max_output_tokens"),
    any("temperature"),
    any("top_p"),
    any("top_logprobs"),
    f(
        "text",
        Rule::Fields(&[any("format"), any("verbosity")]),
    ),
    f(
        "reasoning",
        Rule::Fields(&[
            any("effort"),
            any("summary"),
            any("generate_summary"),
            any("context"),
            f("mode", Rule::OneOf(&["standard"])),
        ]),
    ),
    f("tools", Rule::Each(&Rule::Kind(&RESPONSES_TOOLS))),
    f(
        "tool_choice",
        Rule::OneOfOr(&["none", "auto", "required"], &RESPONSES_TOOL_CHOICE),
    ),
    any("parallel_tool_calls"),
    any("max_tool_calls"),
    any("truncation"),
    f(
        "include",
        Rule::Each(&Rule::OneOf(&[
            "message.output_text.logprobs",
            "message.input_image.image_url",
            "reasoning.encrypted_content",
        ])),
    ),
    any("metadata"),
    any("user"),
    any("safety_identifier"),
    any("prompt_cache_key"),
    any("prompt_cache_retention"),
    f("service_tier", SERVICE_TIER),
    f("store", Rule::Boolean),
    f("previous_response_id", Rule::Refuse(STORED)),
    f("conversation", Rule::Refuse(STORED)),
    f(
        "prompt",
        Rule::Refuse("a stored prompt template is read at the provider, which the hold never bounded; send the instructions and input in the request."),
    ),
    f("background", Rule::Refuse(BACKGROUND)),
    f("background_options", Rule::Refuse(BACKGROUND)),
    f(
        "context_management",
        Rule::Refuse("server-side compaction runs the model again on the conversation, which the hold does not cover."),
    ),
    f("moderation", Rule::Refuse(MODERATION)),
    f("prompt_cache_options", Rule::Refuse(CACHE_WRITES)),
    f("image", Rule::Refuse(UNBOUNDED)),
    f("access_programs", Rule::Refuse(UNBOUNDED)),
];

/// Who may call a tool: only the model directly (programmatic calls run hosted code).
const CALLERS: Rule = Rule::Each(&Rule::OneOf(&["direct"]));
const CALLER: Rule = Rule::Fields(&[f("type", Rule::OneOf(&["direct"]))]);
const RESPONSES_CONTENT: Rule = Rule::TextOr(&Rule::Kind(&RESPONSES_PARTS));

const RESPONSES_ITEMS: Kinds = Kinds {
    what: "input item",
    kinds: &[
        kind(
            "message",
            &[
                f(
                    "role",
                    Rule::OneOf(&["user", "assistant", "system", "developer"]),
                ),
                f("content", RESPONSES_CONTENT),
                any("id"),
                any("status"),
                any("phase"),
            ],
        ),
        kind(
            "function_call",
            &[
                any("id"),
                any("call_id"),
                any("name"),
                any("arguments"),
                any("status"),
                any("namespace"),
                f("caller", CALLER),
            ],
        ),
        kind(
            "function_call_output",
            &[
                any("id"),
                any("call_id"),
                f("output", RESPONSES_CONTENT),
                any("status"),
                f("caller", CALLER),
            ],
        ),
        kind(
            "custom_tool_call",
            &[
                any("id"),
                any("call_id"),
                any("name"),
                any("input"),
                any("status"),
                any("namespace"),
                f("caller", CALLER),
            ],
        ),
        kind(
            "custom_tool_call_output",
            &[
                any("id"),
                any("call_id"),
                f("output", RESPONSES_CONTENT),
                any("status"),
                f("caller", CALLER),
            ],
        ),
        Kind {
            name: "reasoning",
            shape: Shape::Fields(&[
                any("id"),
                any("summary"),
                any("content"),
                any("encrypted_content"),
                any("status"),
            ]),
            requires: Some(("encrypted_content", REASONING_BY_ID)),
            tokens: 0,
        },
        refused("item_reference", STORED),
    ],
    otherwise: "only messages, function and custom tool calls and their outputs, and reasoning items are metered; other items belong to hosted tools or stored state.",
    untyped: Some("message"),
};

const RESPONSES_PARTS: Kinds = Kinds {
    what: "content part",
    kinds: &[
        kind(
            "input_text",
            &[
                any("text"),
                f("prompt_cache_breakpoint", Rule::Refuse(CACHE_WRITES)),
            ],
        ),
        image(
            "input_image",
            &[
                any("image_url"),
                f("detail", Rule::OneOf(DETAILS)),
                f("file_id", Rule::Refuse(FILE_ID)),
                f("prompt_cache_breakpoint", Rule::Refuse(CACHE_WRITES)),
            ],
        ),
        kind(
            "output_text",
            &[any("text"), any("annotations"), any("logprobs")],
        ),
        kind("refusal", &[any("refusal")]),
        refused("input_file", MEDIA),
        refused("input_audio", MEDIA),
    ],
    otherwise: "only text, image and refusal parts are metered.",
    untyped: None,
};

const RESPONSES_TOOLS: Kinds = Kinds {
    what: "tool",
    kinds: &[
        kind(
            "function",
            &[
                any("name"),
                any("description"),
                any("parameters"),
                any("strict"),
                any("output_schema"),
                f("allowed_callers", CALLERS),
                f("defer_loading", Rule::False),
            ],
        ),
        kind(
            "custom",
            &[
                any("name"),
                any("description"),
                any("format"),
                f("allowed_callers", CALLERS),
                f("defer_loading", Rule::False),
            ],
        ),
    ],
    otherwise: HOSTED,
    untyped: None,
};

const RESPONSES_TOOL_CHOICE: Kinds = Kinds {
    what: "tool choice",
    kinds: &[
        kind("function", &[any("name")]),
        kind("custom", &[any("name")]),
        kind(
            "allowed_tools",
            &[
                f("mode", Rule::OneOf(&["auto", "required"])),
                f("tools", Rule::Each(&Rule::Kind(&RESPONSES_TOOL_REFS))),
            ],
        ),
    ],
    otherwise: HOSTED,
    untyped: None,
};

const RESPONSES_TOOL_REFS: Kinds = Kinds {
    what: "allowed tool",
    kinds: &[
        kind("function", &[any("name")]),
        kind("custom", &[any("name")]),
    ],
    otherwise: HOSTED,
    untyped: None,
};

// ---- Embeddings ----------------------------------------------------------------------------

pub const EMBEDDINGS: &[Field] = &[
    any("model"),
    any("input"),
    any("dimensions"),
    f("encoding_format", Rule::OneOf(&["float", "base64"])),
    any("user"),
];

// ---- Checking ------------------------------------------------------------------------------

/// The allowlist of a surface's top-level fields.
pub fn fields(surface: Surface) -> &'static [Field] {
    match surface {
        Surface::Chat => CHAT,
        Surface::Responses => RESPONSES,
        Surface::Embeddings => EMBEDDINGS,
    }
}

/// What checking a request decided, besides that it may be forwarded.
#[derive(Debug, Default)]
pub struct Checked {
    /// Top-level fields the proxy writes into the forwarded body.
    pub overrides: Vec<(&'static str, Value)>,
    /// Tokens the request's images may cost beyond its bytes.
    pub media_tokens: u64,
}

/// The state of one request's check.
pub struct Walk {
    allow_storage: bool,
    checked: Checked,
}

/// Checks a request body (a JSON object) against its surface's allowlist.
pub fn check(surface: Surface, body: &Value, allow_storage: bool) -> Result<Checked, ProxyError> {
    let mut walk = Walk {
        allow_storage,
        checked: Checked::default(),
    };
    walk.fields(body, "", fields(surface))?;
    // The Responses API stores every response unless told not to: the programme's account
    // keeps nothing unless its configuration allows it.
    if surface == Surface::Responses
        && !allow_storage
        && body.get("store") != Some(&Value::Bool(false))
    {
        walk.checked.overrides.push(("store", Value::Bool(false)));
    }
    Ok(walk.checked)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn refuse(param: String, message: String) -> ProxyError {
    ProxyError::InvalidAt {
        message,
        param,
        code: Some(voucherd_domain::ProxyErrorCode::UnsupportedParameter),
    }
}

fn malformed(param: String, what: &str) -> ProxyError {
    ProxyError::InvalidAt {
        message: format!("`{param}` must be {what}."),
        param,
        code: None,
    }
}

fn listed(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Walk {
    fn fields(&mut self, v: &Value, path: &str, allowed: &[Field]) -> Result<(), ProxyError> {
        let Some(map) = v.as_object() else {
            return Err(malformed(
                if path.is_empty() {
                    "body".into()
                } else {
                    path.into()
                },
                "an object",
            ));
        };
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            let here = join(path, key);
            match allowed.iter().find(|a| a.name == key) {
                Some(field) => self.rule(value, &here, &field.rule)?,
                None => {
                    return Err(refuse(
                        here.clone(),
                        format!("`{here}` is not supported by this programme: the proxy forwards only what the voucher's hold covers."),
                    ))
                }
            }
        }
        Ok(())
    }

    fn rule(&mut self, v: &Value, path: &str, rule: &Rule) -> Result<(), ProxyError> {
        if v.is_null() {
            return Ok(());
        }
        match *rule {
            Rule::Any => Ok(()),
            Rule::OneOf(values) => match v.as_str() {
                Some(s) if values.contains(&s) => Ok(()),
                _ => Err(refuse(
                    path.into(),
                    format!("`{path}` may only be {} with this programme: the proxy forwards only what the voucher's hold covers.", listed(values)),
                )),
            },
            Rule::False => match v {
                Value::Bool(false) => Ok(()),
                _ => Err(refuse(
                    path.into(),
                    format!("`{path}` may only be `false` with this programme: {UNBOUNDED}"),
                )),
            },
            Rule::Fields(fields) => self.fields(v, path, fields),
            Rule::Kind(kinds) => self.kind(v, path, kinds),
            Rule::Each(inner) => match v.as_array() {
                Some(items) => items
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, item)| self.rule(item, &format!("{path}[{i}]"), inner)),
                None => Err(malformed(path.into(), "an array")),
            },
            Rule::TextOr(inner) => match v {
                Value::String(_) => Ok(()),
                _ => self.rule(v, path, &Rule::Each(inner)),
            },
            Rule::OneOfOr(values, kinds) => match v {
                Value::String(_) => self.rule(v, path, &Rule::OneOf(values)),
                _ => self.kind(v, path, kinds),
            },
            Rule::Boolean => match v {
                Value::Bool(_) => Ok(()),
                _ => Err(malformed(path.into(), "a boolean")),
            },
            Rule::Check(check, _) => check(v, path, self),
            Rule::Refuse(why) => Err(refuse(
                path.into(),
                format!("`{path}` is not supported by this programme: {why}"),
            )),
        }
    }

    fn kind(&mut self, v: &Value, path: &str, kinds: &Kinds) -> Result<(), ProxyError> {
        let Some(map) = v.as_object() else {
            return Err(malformed(path.into(), "an object"));
        };
        let type_path = join(path, "type");
        let name = match map.get("type") {
            Some(Value::String(t)) => t.as_str(),
            None | Some(Value::Null) => match kinds.untyped {
                Some(untyped) if map.get("role").is_some_and(|r| !r.is_null()) => untyped,
                Some(_) => return Err(refuse(
                    type_path,
                    format!("An {} without `type` or `role` is a reference to a stored item, which is not supported by this programme: {STORED}", kinds.what),
                )),
                None => return Err(malformed(type_path, "a string")),
            },
            Some(_) => return Err(malformed(type_path, "a string")),
        };
        let Some(kind) = kinds.kinds.iter().find(|k| k.name == name) else {
            return Err(refuse(
                type_path,
                format!(
                    "`{name}` {} is not supported by this programme: {}",
                    kinds.what, kinds.otherwise
                ),
            ));
        };
        let fields = match kind.shape {
            Shape::Fields(fields) => fields,
            Shape::Refused(why) => {
                return Err(refuse(
                    type_path,
                    format!(
                        "`{name}` {} is not supported by this programme: {why}",
                        kinds.what
                    ),
                ))
            }
        };
        if let Some((required, why)) = kind.requires {
            if map.get(required).is_none_or(Value::is_null) {
                let here = join(path, required);
                return Err(refuse(
                    here.clone(),
                    format!("`{here}` is required by this programme: {why}"),
                ));
            }
        }
        for (key, value) in map {
            if key == "type" || value.is_null() {
                continue;
            }
            let here = join(path, key);
            match fields.iter().find(|a| a.name == key) {
                Some(field) => self.rule(value, &here, &field.rule)?,
                None => {
                    return Err(refuse(
                        here.clone(),
                        format!("`{here}` is not supported by this programme in a `{name}` {}: the proxy forwards only what the voucher's hold covers.", kinds.what),
                    ))
                }
            }
        }
        self.checked.media_tokens = self.checked.media_tokens.saturating_add(kind.tokens);
        Ok(())
    }
}

/// `service_tier`: only the standard tier, which the programme's prices are. `auto` would let
/// the provider project's own default tier apply, so it is forwarded as `default`.
fn service_tier(v: &Value, path: &str, walk: &mut Walk) -> Result<(), ProxyError> {
    match v.as_str() {
        Some("default") => Ok(()),
        Some("auto") => {
            walk.checked
                .overrides
                .push(("service_tier", Value::from("default")));
            Ok(())
        }
        _ => Err(refuse(
            path.into(),
            format!("`{path}` may only be `auto` or `default` with this programme: other tiers are priced differently from the standard rate the voucher is billed at."),
        )),
    }
}

/// Chat's `store: true` keeps the completion under the programme's provider account.
fn chat_store(v: &Value, path: &str, walk: &mut Walk) -> Result<(), ProxyError> {
    match v {
        Value::Bool(true) if !walk.allow_storage => Err(refuse(
            path.into(),
            format!("`{path}: true` is not supported by this programme: it keeps completions under the programme's provider account."),
        )),
        Value::Bool(_) => Ok(()),
        _ => Err(malformed(path.into(), "a boolean")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused_at(surface: Surface, body: Value) -> String {
        match check(surface, &body, false) {
            Err(ProxyError::InvalidAt {
                param,
                code: Some(voucherd_domain::ProxyErrorCode::UnsupportedParameter),
                ..
            }) => param,
            other => panic!("{body} was not refused as unsupported: {other:?}"),
        }
    }

    fn chat(extra: Value) -> Value {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    }

    fn responses(extra: Value) -> Value {
        let mut body = json!({"model": "m", "input": "hi"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    }

    #[test]
    fn chat_fields_that_raise_the_bill_are_refused_where_they_are() {
        for (extra, param) in [
            (json!({"service_tier": "priority"}), "service_tier"),
            (json!({"service_tier": "scale"}), "service_tier"),
            (json!({"service_tier": "flex"}), "service_tier"),
            (
                json!({"prediction": {"type": "content", "content": "x"}}),
                "prediction",
            ),
            (
                json!({"audio": {"voice": "alloy", "format": "wav"}}),
                "audio",
            ),
            (json!({"modalities": ["text", "audio"]}), "modalities[1]"),
            (json!({"web_search_options": {}}), "web_search_options"),
            (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f"}}, {"type": "file_search"}]}),
                "tools[1].type",
            ),
            (
                json!({"tool_choice": {"type": "web_search"}}),
                "tool_choice.type",
            ),
            (json!({"tool_choice": "sometimes"}), "tool_choice"),
            (json!({"store": true}), "store"),
            (
                json!({"moderation": {"model": "omni-moderation-latest"}}),
                "moderation",
            ),
            (
                json!({"prompt_cache_options": {"ttl": "30m"}}),
                "prompt_cache_options",
            ),
            (json!({"brand_new_feature": 1}), "brand_new_feature"),
        ] {
            assert_eq!(
                refused_at(Surface::Chat, chat(extra.clone())),
                param,
                "{extra}"
            );
        }
    }

    #[test]
    fn chat_messages_and_parts_are_checked_to_their_paths() {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "audio": {"id": "audio_1"}}]});
        assert_eq!(refused_at(Surface::Chat, body), "messages[1].audio");
        let body = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x"},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]});
        assert_eq!(
            refused_at(Surface::Chat, body),
            "messages[0].content[1].type"
        );
        let body = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "file-1"}}]}]});
        assert_eq!(
            refused_at(Surface::Chat, body),
            "messages[0].content[0].type"
        );
        let body = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "original"}}]}]});
        assert_eq!(
            refused_at(Surface::Chat, body),
            "messages[0].content[0].image_url.detail"
        );
        let body = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x", "prompt_cache_breakpoint": {"mode": "explicit"}}]}]});
        assert_eq!(
            refused_at(Surface::Chat, body),
            "messages[0].content[0].prompt_cache_breakpoint"
        );
        let body = json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]});
        assert_eq!(refused_at(Surface::Chat, body), "messages[0].role");
    }

    #[test]
    fn chat_requests_within_the_hold_pass_and_name_their_overrides() {
        let body = chat(json!({
            "stream": true, "stream_options": {"include_usage": true},
            "max_completion_tokens": 10, "n": 2, "temperature": 0.2, "top_p": 1, "seed": 7,
            "stop": ["\n"], "logit_bias": {"50256": -100}, "logprobs": true, "top_logprobs": 2,
            "frequency_penalty": 0.1, "presence_penalty": 0.1,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
            "reasoning_effort": "low", "verbosity": "low",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}, "strict": true}},
                      {"type": "custom", "custom": {"name": "g", "format": {"type": "text"}}}],
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto",
                "tools": [{"type": "function", "function": {"name": "f"}}]}},
            "parallel_tool_calls": false, "metadata": {"a": "b"}, "user": "u",
            "safety_identifier": "s", "prompt_cache_key": "k", "prompt_cache_retention": "24h",
            "modalities": ["text"], "store": false, "service_tier": "auto", "audio": null,
        }));
        let checked = check(Surface::Chat, &body, false).unwrap();
        assert_eq!(
            checked.overrides,
            vec![("service_tier", Value::from("default"))]
        );
        let body = json!({"model": "m", "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
            {"role": "user", "name": "a", "content": [{"type": "text", "text": "x"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}],
            "tool_choice": "required", "service_tier": "default"});
        let checked = check(Surface::Chat, &body, false).unwrap();
        assert_eq!(
            (checked.overrides.len(), checked.media_tokens),
            (0, IMAGE_TOKEN_BOUND)
        );
        // Storage the programme allows: `store: true` passes.
        assert!(check(Surface::Chat, &chat(json!({"store": true})), true).is_ok());
    }

    #[test]
    fn responses_items_that_read_stored_state_are_refused() {
        for (input, param) in [
            (
                json!([{"type": "item_reference", "id": "msg_123"}]),
                "input[0].type",
            ),
            (
                json!([{"role": "user", "content": "hi"}, {"id": "msg_123"}]),
                "input[1].type",
            ),
            (
                json!([{"type": "reasoning", "id": "rs_1", "summary": []}]),
                "input[0].encrypted_content",
            ),
            (
                json!([{"type": "file_search_call", "id": "fs_1", "queries": [], "status": "completed"}]),
                "input[0].type",
            ),
            (
                json!([{"role": "user", "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}]}]),
                "input[0].content[0].file_id",
            ),
            (
                json!([{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]),
                "input[0].content[0].type",
            ),
            (
                json!([{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_file", "file_data": "x"}]}]),
                "input[0].output[0].type",
            ),
        ] {
            let body = json!({"model": "m", "input": input});
            assert_eq!(refused_at(Surface::Responses, body), param, "{input}");
        }
    }

    #[test]
    fn responses_fields_tools_and_includes_are_refused_where_they_are() {
        for (extra, param) in [
            (
                json!({"previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (json!({"conversation": "conv_1"}), "conversation"),
            (json!({"prompt": {"id": "pmpt_1"}}), "prompt"),
            (json!({"background": true}), "background"),
            (
                json!({"tool_choice": {"type": "file_search"}}),
                "tool_choice.type",
            ),
            (
                json!({"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp", "server_label": "x"}]}}),
                "tool_choice.tools[0].type",
            ),
            (
                json!({"include": ["file_search_call.results"]}),
                "include[0]",
            ),
            (
                json!({"include": ["reasoning.encrypted_content", "web_search_call.action.sources"]}),
                "include[1]",
            ),
            (
                json!({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}),
                "tools[0].type",
            ),
            (
                json!({"tools": [{"type": "image_generation"}]}),
                "tools[0].type",
            ),
            (
                json!({"tools": [{"type": "computer_use_preview"}]}),
                "tools[0].type",
            ),
            (
                json!({"tools": [{"type": "function", "name": "f", "allowed_callers": ["programmatic"]}]}),
                "tools[0].allowed_callers[0]",
            ),
            (
                json!({"tools": [{"type": "function", "name": "f", "defer_loading": true}]}),
                "tools[0].defer_loading",
            ),
            (json!({"service_tier": "priority"}), "service_tier"),
            (
                json!({"reasoning": {"effort": "high", "mode": "pro"}}),
                "reasoning.mode",
            ),
            (
                json!({"context_management": [{"type": "compaction"}]}),
                "context_management",
            ),
            (json!({"unknown": true}), "unknown"),
        ] {
            assert_eq!(
                refused_at(Surface::Responses, responses(extra.clone())),
                param,
                "{extra}"
            );
        }
    }

    #[test]
    fn responses_within_the_hold_pass_and_storage_is_turned_off() {
        let body = json!({"model": "m", "instructions": "be brief", "input": [
            {"role": "developer", "content": "rules"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"},
                {"type": "input_image", "image_url": "https://x/a.png", "detail": "auto"}]},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "y", "annotations": []}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
            {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "42"},
            {"type": "custom_tool_call", "call_id": "d", "name": "g", "input": "x"},
            {"type": "custom_tool_call_output", "call_id": "d", "output": [{"type": "input_text", "text": "ok"}]}],
            "tools": [{"type": "function", "name": "f", "parameters": {}, "strict": true},
                      {"type": "custom", "name": "g"}],
            "tool_choice": {"type": "function", "name": "f"},
            "include": ["reasoning.encrypted_content", "message.output_text.logprobs"],
            "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "text"}, "verbosity": "low"},
            "max_output_tokens": 100, "truncation": "auto", "metadata": {"a": "b"},
            "store": true, "service_tier": "auto", "stream": false});
        let checked = check(Surface::Responses, &body, false).unwrap();
        assert_eq!(checked.media_tokens, IMAGE_TOKEN_BOUND);
        assert_eq!(
            checked.overrides,
            vec![
                ("service_tier", Value::from("default")),
                ("store", Value::Bool(false))
            ]
        );
        // Omitted, `store` defaults to true at the provider: it is written as false too.
        let plain = responses(json!({}));
        assert_eq!(
            check(Surface::Responses, &plain, false).unwrap().overrides,
            vec![("store", Value::Bool(false))]
        );
        let unstored = responses(json!({"store": false}));
        assert!(check(Surface::Responses, &unstored, false)
            .unwrap()
            .overrides
            .is_empty());
        // Storage the programme allows: the client's choice stands.
        assert!(check(Surface::Responses, &body, true)
            .unwrap()
            .overrides
            .iter()
            .all(|(k, _)| *k != "store"));
    }

    #[test]
    fn embeddings_take_only_their_own_fields() {
        let ok = json!({"model": "m", "input": ["a"], "encoding_format": "base64", "dimensions": 256, "user": "u"});
        assert!(check(Surface::Embeddings, &ok, false).is_ok());
        let bad = json!({"model": "m", "input": "a", "encoding_format": "int8"});
        assert_eq!(refused_at(Surface::Embeddings, bad), "encoding_format");
        let bad = json!({"model": "m", "input": "a", "stream": true});
        assert_eq!(refused_at(Surface::Embeddings, bad), "stream");
    }

    /// README's "What the proxy forwards" names every top-level field of every surface.
    #[test]
    fn the_readme_describes_every_field_of_the_allowlist() {
        const README: &str = include_str!("../../../README.md");
        let start = README
            .find("## What the proxy forwards")
            .expect("README has a section \"What the proxy forwards\"");
        let rest = &README[start + 3..];
        let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
        for (surface, heading) in [
            (Surface::Chat, "/v1/chat/completions"),
            (Surface::Responses, "/v1/responses"),
            (Surface::Embeddings, "/v1/embeddings"),
        ] {
            let from = section
                .find(&format!("### `POST {heading}`"))
                .unwrap_or_else(|| panic!("README describes {heading}"));
            let part = &section[from + 4..];
            let part = &part[..part.find("\n### ").unwrap_or(part.len())];
            for field in fields(surface) {
                assert!(
                    part.contains(&format!("`{}`", field.name)),
                    "README's {heading} table does not mention `{}`",
                    field.name
                );
            }
        }
        assert!(section.contains("unsupported_parameter"));
    }
}
