//! The JSON body extractor: checks the content type and size, deserializes with the path of
//! any bad field, then runs `validator` rules. Every failure is a problem+json naming fields.

use crate::error::{ApiError, FieldError};
use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{http::header, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

/// A validated JSON body.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + Validate + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        let limit = req
            .app_data::<BodyLimit>()
            .map_or(DEFAULT_BODY_LIMIT, |l| l.0);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
            let body = bytes
                .await
                .map_err(|e| match e.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => ApiError::PayloadTooLarge(limit),
                    _ => ApiError::MalformedJson(format!("the body could not be read: {e}")),
                })?;
            let value = parse_json::<T>(&body)?;
            value
                .validate()
                .map_err(|e| ApiError::Validation(flatten(&e)))?;
            Ok(ApiJson(value))
        })
    }
}

/// A service's input from a page's answers, read and checked exactly as the same JSON body
/// sent to the API would be: the same field paths in its errors, the same `validator` rules.
pub fn input<T: DeserializeOwned + Validate>(body: &serde_json::Value) -> Result<T, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let value = parse_json::<T>(&bytes)?;
    value
        .validate()
        .map_err(|e| ApiError::Validation(flatten(&e)))?;
    Ok(value)
}

pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// The REST API's body limit in bytes, kept in app data beside actix's `PayloadConfig`.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Deserializes `body`, reporting a type error at the path where it happened. Request bodies
/// are `deny_unknown_fields`: a field the API does not know (a misspelt `ammount`) is refused
/// by name rather than ignored, so it can never leave a default in its place.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // PostgreSQL cannot store or compare text holding NUL (JSON's `\u0000`), so no input may
    // carry one: refused as invalid at the field that has it. Only a body that spells the
    // escape at all is looked into.
    if body.windows(6).any(|w| w == b"\\u0000") {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
            if let Some(field) = nul_field(&value, String::new()) {
                return Err(ApiError::Validation(vec![FieldError::new(
                    field,
                    NUL_REFUSED.to_string(),
                )]));
            }
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::MalformedJson(inner.to_string());
        }
        let message = inner.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        if let Some(name) = quoted_after(&message, "unknown field `") {
            let accepted = accepted_fields(&message);
            let field = unknown_field_path(body, &segments, &path, name, &accepted, &inner);
            return ApiError::Validation(vec![FieldError::new(field, not_recognised(&accepted))]);
        }
        // serde reports a missing field at its parent's path; name the field itself.
        let field = match quoted_after(&message, "missing field `") {
            Some(name) if path == "." => name.to_string(),
            Some(name) => format!("{path}.{name}"),
            None if path == "." => String::new(),
            None => path,
        };
        ApiError::Validation(vec![FieldError::new(field, message)])
    })?;
    // Anything after the value is as malformed as a missing brace.
    de.end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// Why a value holding the NUL character is refused.
pub const NUL_REFUSED: &str = "must not contain the NUL character (\\u0000)";

/// The path of the first string (or key) in `value` that holds NUL, in the API's field-path
/// form (`a.b[0].c`); `None` when there is none.
fn nul_field(value: &serde_json::Value, path: String) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(path),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_field(v, format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(join(k))
            } else {
                nul_field(v, join(k))
            }
        }),
        _ => None,
    }
}

/// The name in serde's "<prefix>name`…" message.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message
        .strip_prefix(prefix)
        .and_then(|r| r.split('`').next())
}

/// The fields serde listed as expected: "unknown field `x`, expected one of `a`, `b`" (or
/// "expected `a`", or "there are no fields").
fn accepted_fields(message: &str) -> Vec<&str> {
    message
        .split_once(", expected ")
        .map(|(_, rest)| rest.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default()
}

fn not_recognised(accepted: &[&str]) -> String {
    if accepted.is_empty() {
        "is not a recognised field: this object takes no fields".into()
    } else {
        format!(
            "is not a recognised field: the accepted fields are {}",
            accepted.join(", ")
        )
    }
}

/// The full path of an unknown field. serde_path_to_error includes the field when serde
/// refuses the key as it reads it (serde_json then reports the position just after the key).
/// An internally tagged enum (an incentive's `effect`) is buffered before its variant is
/// known, so an unknown field anywhere inside it is reported at the enum's own path: the
/// field is then looked for in the body below that path.
fn unknown_field_path(
    body: &[u8],
    segments: &[Segment],
    path: &str,
    name: &str,
    accepted: &[&str],
    error: &serde_json::Error,
) -> String {
    let key = format!("\"{name}\"");
    let at_key = offset(body, error.line(), error.column())
        .and_then(|end| body.get(..end))
        .is_some_and(|before| before.ends_with(key.as_bytes()));
    let last_is_name = matches!(segments.last(), Some(Segment::Map { key }) if key == name);
    if at_key && last_is_name {
        return path.to_string();
    }
    let below = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|root| {
            let node = segments.iter().try_fold(&root, |node, s| match s {
                Segment::Map { key } => node.get(key.as_str()),
                Segment::Seq { index } => node.get(*index),
                Segment::Enum { .. } | Segment::Unknown => Some(node),
            })?;
            find_object_with(node, name, accepted)
        });
    let join = |suffix: &str| match path {
        "." => suffix.trim_start_matches('.').to_string(),
        p => format!("{p}{suffix}"),
    };
    match below {
        Some(suffix) => join(&suffix),
        None if last_is_name => path.to_string(),
        None => join(&format!(".{name}")),
    }
}

/// serde_json's error position (line from 1, byte column within it) as a byte offset.
fn offset(body: &[u8], line: usize, column: usize) -> Option<usize> {
    let start = match line {
        0 => return None,
        1 => 0,
        n => {
            body.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(n - 2)?
                .0
                + 1
        }
    };
    Some(start + column)
}

/// The path, relative to `node` (such as `.trigger.foo`), of the object holding the key `name`
/// that looks most like the one serde was reading: the most keys among those it accepts, then
/// the shallowest.
fn find_object_with(node: &serde_json::Value, name: &str, accepted: &[&str]) -> Option<String> {
    use serde_json::Value;
    let mut best: Option<(usize, String)> = None;
    let mut queue = std::collections::VecDeque::from([(node, String::new())]);
    while let Some((v, at)) = queue.pop_front() {
        match v {
            Value::Object(map) => {
                if map.contains_key(name) {
                    let score = map
                        .keys()
                        .filter(|k| accepted.contains(&k.as_str()))
                        .count();
                    if best.as_ref().is_none_or(|(s, _)| score > *s) {
                        best = Some((score, format!("{at}.{name}")));
                    }
                }
                for (k, child) in map {
                    queue.push_back((child, format!("{at}.{k}")));
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    queue.push_back((child, format!("{at}[{i}]")));
                }
            }
            _ => {}
        }
    }
    best.map(|(_, p)| p)
}

/// Turns `validator`'s nested errors into field paths.
pub fn flatten(errors: &ValidationErrors) -> Vec<FieldError> {
    let mut out = Vec::new();
    walk("", errors, &mut out);
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

fn walk(prefix: &str, errors: &ValidationErrors, out: &mut Vec<FieldError>) {
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(errs) => {
                for e in errs {
                    let message = e
                        .message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| e.code.to_string());
                    out.push(FieldError::new(path.clone(), message));
                }
            }
            ValidationErrorsKind::Struct(inner) => walk(&path, inner, out),
            ValidationErrorsKind::List(items) => {
                for (i, inner) in items {
                    walk(&format!("{path}[{i}]"), inner, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::handlers::{
        applications, budget, challenges, consulting, incentives, me, payments, prices, programme,
        vouchers,
    };

    fn refused<T: DeserializeOwned>(body: &str) -> FieldError {
        match parse_json::<T>(body.as_bytes()) {
            Err(ApiError::Validation(mut e)) if e.len() == 1 => e.remove(0),
            Err(other) => panic!("{body}: {other:?}"),
            Ok(_) => panic!("{body}: accepted"),
        }
    }

    #[test]
    fn every_request_body_refuses_a_field_it_does_not_declare() {
        let body = r#"{"zz_unknown": 1}"#;
        let refusals = [
            refused::<me::RegisterRequest>(body),
            refused::<me::LoginRequest>(body),
            refused::<applications::ApplicationRequest>(body),
            refused::<applications::SubsidyDeclarationRequest>(body),
            refused::<applications::DecisionRequest>(body),
            refused::<incentives::RuleRequest>(body),
            refused::<programme::DepositRequest>(body),
            refused::<budget::BudgetLineRequest>(body),
            refused::<budget::MoveRequest>(body),
            refused::<vouchers::CreateKeyRequest>(body),
            refused::<vouchers::RotateKeyRequest>(body),
            refused::<vouchers::SuspensionRequest>(body),
            refused::<payments::TopUpRequest>(body),
            refused::<challenges::ChallengeRequest>(body),
            refused::<challenges::EntryRequest>(body),
            refused::<challenges::EntryUpdate>(body),
            refused::<challenges::ConflictRequest>(body),
            refused::<challenges::ScoreRequest>(body),
            refused::<consulting::SlotRequest>(body),
            refused::<consulting::BookingRequest>(body),
            refused::<consulting::OutcomeRequest>(body),
            refused::<prices::SetPriceRequest>(body),
        ];
        for e in refusals {
            assert_eq!(e.field, "zz_unknown");
            assert!(e.message.starts_with("is not a recognised field"), "{e:?}");
        }
    }

    #[test]
    fn an_unknown_field_is_named_with_the_accepted_ones() {
        let e = refused::<programme::DepositRequest>(
            r#"{"ammount": "100.00", "reference": "HM Treasury"}"#,
        );
        assert_eq!(e.field, "ammount");
        assert_eq!(
            e.message,
            "is not a recognised field: the accepted fields are amount, reference"
        );
        // Laid out over lines, with spaces around the colon.
        let e = refused::<programme::DepositRequest>(
            "{\n  \"amount\": \"1\",\n  \"ammount\" : \"2\"\n}",
        );
        assert_eq!(e.field, "ammount");
        let e = refused::<vouchers::RotateKeyRequest>(r#"{"grace": 60}"#);
        assert_eq!(
            e.message,
            "is not a recognised field: the accepted fields are grace_seconds"
        );
    }

    #[test]
    fn a_nested_unknown_field_is_named_by_its_full_path() {
        let cases = [
            (
                refused::<applications::ApplicationRequest>(
                    r#"{"subsidy_declarations": [{"provider": "x", "amount": "1", "foo": 1}]}"#,
                ),
                "subsidy_declarations[0].foo",
            ),
            (
                refused::<challenges::ChallengeRequest>(
                    r#"{"criteria": [{"name": "a", "max_score": 1, "weight": 1}, {"name": "b", "wieght": 2}]}"#,
                ),
                "criteria[1].wieght",
            ),
            (
                refused::<incentives::RuleRequest>(r#"{"condition": {"regionz": []}}"#),
                "condition.regionz",
            ),
            // Internally tagged enums are buffered: the field is found below the enum.
            (
                refused::<incentives::RuleRequest>(
                    r#"{"effect": {"kind": "fixed_bonus", "amount": "1", "amout": "2"}}"#,
                ),
                "effect.amout",
            ),
            (
                refused::<incentives::RuleRequest>(
                    r#"{"effect": {"kind": "fixed_bonus", "amount": "1", "effect": 1}}"#,
                ),
                "effect.effect",
            ),
            (
                refused::<incentives::RuleRequest>(
                    r#"{"effect": {"kind": "consulting_hours", "hours": 2, "trigger": {"kind": "consulting_session_completed"}}}"#,
                ),
                "effect.trigger",
            ),
            (
                refused::<incentives::RuleRequest>(
                    r#"{"effect": {"kind": "milestone_bonus", "amount": "1", "trigger": {"kind": "requests_settled", "count": 1, "amount": "5"}}}"#,
                ),
                "effect.trigger.amount",
            ),
            (
                refused::<incentives::RuleRequest>(
                    r#"{"effect": {"kind": "milestone_bonus", "amount": "1", "trigger": {"kind": "consulting_session_completed", "count": 5}}}"#,
                ),
                "effect.trigger.count",
            ),
        ];
        for (e, path) in cases {
            assert_eq!(e.field, path, "{e:?}");
            assert!(e.message.starts_with("is not a recognised field"), "{e:?}");
        }
    }

    #[test]
    fn other_refusals_keep_their_shape() {
        let e = refused::<programme::DepositRequest>(r#"{"amount": "1"}"#);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("reference", "missing field `reference`")
        );
        let e = refused::<programme::DepositRequest>(r#"{"amount": " 100.00", "reference": "r"}"#);
        assert_eq!(e.field, "amount");
        assert_eq!(
            e.message,
            "must be a decimal string in major units such as \"12.50\""
        );
        assert!(parse_json::<programme::DepositRequest>(
            r#"{"amount": "100.00", "reference": "r"}"#.as_bytes()
        )
        .is_ok());
    }
}

/// Why an administrator did something, as recorded in the audit log: trimmed, not blank, at
/// most 500 characters. Refused by name at its field when it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub const MAX_CHARS: usize = 500;

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl<'de> serde::Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        if t.is_empty() {
            return Err(serde::de::Error::custom("must not be blank"));
        }
        if t.chars().count() > Reason::MAX_CHARS {
            return Err(serde::de::Error::custom("must be at most 500 characters"));
        }
        Ok(Reason(t.to_string()))
    }
}

/// An email address mail can reach: validator's syntax check, and a domain with a dot and a
/// top-level part of letters (`typo@gmial` is a typo, not an address).
pub fn deliverable_email(email: &str) -> Result<(), validator::ValidationError> {
    let refused = || {
        Err(validator::ValidationError::new("email")
            .with_message("must be an email address, like name@example.co.uk".into()))
    };
    if !validator::ValidateEmail::validate_email(&email) {
        return refused();
    }
    let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
    match domain.rsplit_once('.') {
        Some((name, tld))
            if !name.is_empty()
                && tld.len() >= 2
                && tld.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            Ok(())
        }
        _ => refused(),
    }
}

#[cfg(test)]
mod email_tests {
    use super::deliverable_email;

    #[test]
    fn addresses_without_a_real_domain_are_refused() {
        for ok in ["ada@example.com", "a.b+c@mail.example.co.uk"] {
            assert!(deliverable_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "typo@gmial",
            "a@b.c",
            "a@example.123",
            "not an email",
            "a@.com",
        ] {
            assert!(deliverable_email(bad).is_err(), "{bad}");
        }
    }
}
