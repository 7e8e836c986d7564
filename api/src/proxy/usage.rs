//! The provider's token counts read straight from an answer's bytes: only `usage` is decoded
//! (serde skips every other field without building it), instead of parsing the whole answer
//! into a `serde_json::Value` tree to read four numbers from it (docs/ARCHITECTURE.md, "The
//! proxy's hot path"). It reads exactly what [`super::parse_usage`] reads; an answer whose
//! shape it does not expect falls back to that reader, so the two never disagree.

use serde::de::{Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;
use voucherd_domain::pricing::TokenUsage;

/// A field that was present (with the count it holds, if it is one) or absent: `null` and a
/// non-count are present, as `Value::get` sees them.
#[derive(Default)]
enum Count {
    #[default]
    Absent,
    Present(Option<u64>),
}

impl Count {
    fn present(&self) -> bool {
        matches!(self, Count::Present(_))
    }

    /// The count, as `Value::as_u64` reads it: a non-negative integer, or nothing.
    fn value(&self) -> Option<u64> {
        match self {
            Count::Present(n) => *n,
            Count::Absent => None,
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<u64>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E>(self, n: u64) -> Result<Option<u64>, E> {
                Ok(Some(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Option<u64>, E> {
                Ok(u64::try_from(n).ok())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_str<E>(self, _: &str) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<Option<u64>, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(None)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Option<u64>, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(None)
            }
        }
        d.deserialize_any(V).map(Count::Present)
    }
}

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    cached_tokens: Count,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Count,
    #[serde(default)]
    completion_tokens: Count,
    #[serde(default)]
    input_tokens: Count,
    #[serde(default)]
    output_tokens: Count,
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
    #[serde(default)]
    input_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct Answer {
    usage: Option<Usage>,
}

/// The usage an answer reports, read from its bytes; `None` when it reports none that can be
/// read (as [`super::usage_of`] on the parsed answer).
pub fn usage_in(bytes: &[u8]) -> Option<TokenUsage> {
    match serde_json::from_slice::<Answer>(bytes) {
        Ok(a) => from_typed(a.usage?),
        // Not an object, a `usage` or a details field of another shape: the general reader.
        Err(_) => serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .as_ref()
            .and_then(super::usage_of),
    }
}

fn from_typed(u: Usage) -> Option<TokenUsage> {
    let (prompt, completion, cached) = if u.input_tokens.present() {
        (
            u.input_tokens.value()?,
            u.output_tokens.value().unwrap_or(0),
            u.input_tokens_details.unwrap_or_default().cached_tokens,
        )
    } else {
        if !u.prompt_tokens.present() {
            return None;
        }
        (
            u.prompt_tokens.value()?,
            u.completion_tokens.value().unwrap_or(0),
            u.prompt_tokens_details.unwrap_or_default().cached_tokens,
        )
    };
    let cached = cached.value().unwrap_or(0);
    Some(TokenUsage {
        prompt_tokens: prompt,
        cached_prompt_tokens: cached.min(prompt),
        completion_tokens: completion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both readers agree on every shape, the odd ones included.
    #[test]
    fn reads_what_the_general_reader_reads() {
        let bodies = [
            r#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":40,"completion_tokens":30,"total_tokens":70,"prompt_tokens_details":{"cached_tokens":8,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":5}}}"#,
            r#"{"output":[],"usage":{"input_tokens":12,"output_tokens":7,"input_tokens_details":{"cached_tokens":20}}}"#,
            r#"{"data":[],"usage":{"prompt_tokens":9,"total_tokens":9}}"#,
            r#"{"usage":{"prompt_tokens":-1,"completion_tokens":3}}"#,
            r#"{"usage":{"prompt_tokens":1.5,"completion_tokens":3}}"#,
            r#"{"usage":{"input_tokens":null,"prompt_tokens":4}}"#,
            r#"{"usage":{"prompt_tokens":4,"completion_tokens":"many"}}"#,
            r#"{"usage":{"prompt_tokens":4,"prompt_tokens_details":null}}"#,
            r#"{"usage":{"prompt_tokens":4,"prompt_tokens_details":7}}"#,
            r#"{"usage":{"prompt_tokens":4,"prompt_tokens_details":{"cached_tokens":[1]}}}"#,
            r#"{"usage":{"completion_tokens":4}}"#,
            r#"{"usage":null}"#,
            r#"{"usage":"none"}"#,
            r#"{"choices":[]}"#,
            r#"[1,2]"#,
            r#"not json"#,
        ];
        for body in bodies {
            let general = serde_json::from_slice::<serde_json::Value>(body.as_bytes())
                .ok()
                .as_ref()
                .and_then(crate::proxy::usage_of);
            assert_eq!(usage_in(body.as_bytes()), general, "{body}");
        }
        assert_eq!(
            usage_in(bodies[0].as_bytes()),
            Some(TokenUsage {
                prompt_tokens: 40,
                cached_prompt_tokens: 8,
                completion_tokens: 30
            })
        );
    }
}
