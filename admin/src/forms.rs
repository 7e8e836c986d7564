//! What the pages read from a request, typed: each posted form is a `#[derive(Deserialize)]`
//! struct of its own beside its page, its fields named as the form's inputs, and each address
//! that takes a query string reads it into a struct the same way. Answers are [`Trimmed`]: the
//! spaces around them go once, here, and an answer the form did not send is empty (each form
//! is `#[serde(default)]`). Every form carries its CSRF token, read through [`Posted`].

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::ops::Deref;

/// A form's answer without the spaces around it: people paste " 01234567 " as readily as
/// "01234567", and those spaces mean nothing in any answer the pages read as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Trimmed(String);

impl Trimmed {
    pub fn new(text: impl Into<String>) -> Trimmed {
        let text = text.into();
        match text.trim() {
            trimmed if trimmed.len() == text.len() => Trimmed(text),
            trimmed => Trimmed(trimmed.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Trimmed {
    fn deserialize<D: Deserializer<'de>>(answer: D) -> Result<Trimmed, D::Error> {
        String::deserialize(answer).map(Trimmed::new)
    }
}

impl Deref for Trimmed {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Trimmed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Trimmed {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Trimmed {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A form a page posts: each carries the CSRF token its page was given, checked
/// ([`crate::portal::csrf_refused`]) before any other answer is read.
pub trait Posted {
    fn csrf(&self) -> &str;
}

/// A form shown back for checking before it takes effect ([`crate::portal::unconfirmed`]).
/// Its answers go back as hidden inputs, so it serializes them and nothing else (its `csrf`
/// and `confirm` are `#[serde(skip_serializing)]`); `confirm=yes` says they were checked.
pub trait Confirmable: Posted + Serialize {
    fn confirmed(&self) -> bool;
}

/// Each form named keeps its CSRF token in its `csrf` field (and, after `confirmable:`, its
/// confirmation in `confirm`).
macro_rules! posted {
    (confirmable: $($form:ty),+ $(,)?) => {$(
        $crate::forms::posted!($form);
        impl $crate::forms::Confirmable for $form {
            fn confirmed(&self) -> bool {
                self.confirm == "yes"
            }
        }
    )+};
    ($($form:ty),+ $(,)?) => {$(
        impl $crate::forms::Posted for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    )+};
}
pub(crate) use posted;

/// A form that is a button and nothing else (sign out, send a new code, pay): only its token.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ButtonForm {
    csrf: Trimmed,
}

/// A button's form on a voucher's page, naming the voucher to show again afterwards.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct VoucherForm {
    csrf: Trimmed,
    pub voucher_id: Trimmed,
}

posted!(ButtonForm, VoucherForm);

/// A form's answers as hidden inputs (`name` and `value`), to send them again from a page that
/// shows them back; what the form does not serialize (its token, its confirmation) stays out.
pub fn hidden_inputs(form: &impl Serialize) -> Vec<serde_json::Value> {
    match serde_json::to_value(form) {
        Ok(serde_json::Value::Object(answers)) => answers
            .into_iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect(),
        // Not reached: every form is a struct of text answers, an object.
        _ => Vec::new(),
    }
}

/// A query string's answers as `T`; one that cannot be read is taken as none at all, as an
/// address a person mistyped shows the page unfiltered rather than an error.
pub fn query<T: serde::de::DeserializeOwned + Default>(req: &actix_web::HttpRequest) -> T {
    actix_web::web::Query::<T>::from_query(req.query_string())
        .map(actix_web::web::Query::into_inner)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Example {
        name: Trimmed,
        note: Trimmed,
    }

    #[test]
    fn answers_are_trimmed_and_absent_ones_empty() {
        let read: Example = serde_urlencoded::from_str("name=+Ada+Owner%0A").unwrap();
        assert_eq!(read.name, "Ada Owner");
        assert_eq!(read.note, "");
    }
}
