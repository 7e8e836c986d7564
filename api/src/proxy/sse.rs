//! Server-sent events, read incrementally. Events are kept as their exact bytes so the proxy
//! passes them through unchanged; only their `data:` is looked at.

use super::surface::Surface;
use actix_web::web::{Bytes, BytesMut};
use serde_json::Value;

/// Splits a byte stream into events, each ending in a blank line.
pub struct EventSplitter {
    buf: BytesMut,
    max_event_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("an event is longer than {0} bytes")]
pub struct EventTooLarge(pub usize);

impl EventSplitter {
    pub fn new(max_event_bytes: usize) -> EventSplitter {
        EventSplitter {
            buf: BytesMut::new(),
            max_event_bytes,
        }
    }

    /// Adds bytes; returns the events they complete, terminators included.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buf) {
            events.push(self.buf.split_to(end).freeze());
        }
        if self.buf.len() > self.max_event_bytes {
            return Err(EventTooLarge(self.max_event_bytes));
        }
        Ok(events)
    }

    /// Bytes of an unfinished event at the end of the stream.
    pub fn rest(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

/// Index just past the first blank line (`\n\n` or `\r\n\r\n`).
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The event's data: its `data:` lines joined by newlines.
pub fn data_of(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let mut data: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_string()),
            }
        }
    }
    data
}

/// What a stream event means to metering.
#[derive(Debug, PartialEq)]
pub enum StreamEvent {
    /// The last event of a chat stream (`data: [DONE]`): held back until settlement.
    Done,
    /// The last event of a Responses stream, carrying the usage: held back until settlement.
    Final {
        usage: Option<Value>,
    },
    /// Carries `usage`; `only_usage` when it has no choices (the chunk that
    /// `stream_options.include_usage` adds to a chat stream).
    Usage {
        usage: Value,
        only_usage: bool,
    },
    /// Produces output: content, a refusal, reasoning or tool-call arguments.
    Output,
    Other,
}

pub fn classify(surface: Surface, event: &[u8]) -> StreamEvent {
    let Some(data) = data_of(event) else {
        return StreamEvent::Other;
    };
    if data.trim() == "[DONE]" {
        return StreamEvent::Done;
    }
    let Ok(v) = serde_json::from_str::<Value>(&data) else {
        return StreamEvent::Other;
    };
    match surface {
        Surface::Responses => classify_response_event(&v),
        Surface::Chat | Surface::Embeddings => classify_chat_chunk(&v),
    }
}

fn classify_chat_chunk(v: &Value) -> StreamEvent {
    let choices = v.get("choices").and_then(Value::as_array);
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        return StreamEvent::Usage {
            usage: u.clone(),
            only_usage: choices.is_none_or(|c| c.is_empty()),
        };
    }
    let produces = choices.is_some_and(|cs| {
        cs.iter().any(|c| {
            let d = &c["delta"];
            ["content", "refusal", "reasoning_content", "reasoning"]
                .iter()
                .any(|f| d[f].as_str().is_some_and(|s| !s.is_empty()))
                || d["tool_calls"].as_array().is_some_and(|t| !t.is_empty())
        })
    });
    if produces {
        StreamEvent::Output
    } else {
        StreamEvent::Other
    }
}

fn classify_response_event(v: &Value) -> StreamEvent {
    let kind = v["type"].as_str().unwrap_or("");
    match kind {
        "response.completed" | "response.incomplete" | "response.failed" => StreamEvent::Final {
            usage: v
                .pointer("/response/usage")
                .filter(|u| u.is_object())
                .cloned(),
        },
        k if k.ends_with(".delta") => StreamEvent::Output,
        _ => StreamEvent::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole_and_unchanged() {
        let mut s = EventSplitter::new(1024);
        assert!(s.push(b"data: {\"a\"").unwrap().is_empty());
        let out = s.push(b":1}\n\ndata: [DONE]\r\n\r\ndata: x").unwrap();
        assert_eq!(
            out,
            vec![
                Bytes::from_static(b"data: {\"a\":1}\n\n"),
                Bytes::from_static(b"data: [DONE]\r\n\r\n")
            ]
        );
        assert_eq!(s.rest(), Bytes::from_static(b"data: x"));
        assert!(s.push(&[b'x'; 2000]).is_err());
    }

    #[test]
    fn classifies_chat_chunks() {
        let chat = |e: &[u8]| classify(Surface::Chat, e);
        assert_eq!(chat(b"data: [DONE]\n\n"), StreamEvent::Done);
        assert_eq!(
            chat(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n"),
            StreamEvent::Output
        );
        assert_eq!(
            chat(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"),
            StreamEvent::Other
        );
        assert!(matches!(
            chat(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n"),
            StreamEvent::Usage {
                only_usage: true,
                ..
            }
        ));
        assert_eq!(chat(b": keep-alive\n\n"), StreamEvent::Other);
    }

    #[test]
    fn classifies_responses_events() {
        let r = |e: &[u8]| classify(Surface::Responses, e);
        assert_eq!(
            r(b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n"),
            StreamEvent::Output
        );
        assert_eq!(
            r(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":1}}}\n\n"),
            StreamEvent::Final { usage: Some(serde_json::json!({"input_tokens": 1})) }
        );
        assert_eq!(
            r(b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n"),
            StreamEvent::Other
        );
    }
}
