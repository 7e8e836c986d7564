//! Companies House registration numbers: eight characters, either eight digits or a
//! two-letter prefix (SC, NI, OC, …) and six digits. Users type them with spaces, lower case,
//! or without the leading zeros, so parsing normalises before it checks.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CompanyNumber(String);

impl utoipa::PartialSchema for CompanyNumber {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::string(
            "Companies House registration number: 8 digits, or 2 letters and 6 digits, as \
             responses give it. Requests take `CompanyNumberInput`. On an application, a \
             prefix the programme excludes (by default the overseas registrations FC, SF, \
             NF and OE) fails the `company_type` rule.",
        )
        .min_length(Some(8))
        .max_length(Some(8))
        .pattern(Some("^([0-9]{2}|[A-Z]{2})[0-9]{6}$"))
        .examples(["01234567", "SC123456"])
        .into()
    }
}

impl utoipa::ToSchema for CompanyNumber {}

/// What a request may give for a [`CompanyNumber`]: any spelling that normalises to one
/// (spaces, lower case and missing leading zeros are allowed). A type for the OpenAPI document
/// only, named in a request's `#[schema(value_type = CompanyNumberInput)]`.
pub struct CompanyNumberInput;

impl utoipa::PartialSchema for CompanyNumberInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::string(
            "A Companies House registration number as typed: normalised (spaces removed, \
             upper-cased, missing leading zeros added) to a `CompanyNumber`, so `sc 123456` \
             and `1234567` are accepted. Anything that does not normalise to 8 digits, or \
             2 letters and 6 digits, is refused with 422 naming the field.",
        )
        .min_length(Some(1))
        .examples(["01234567", "SC123456", "sc 123456"])
        .into()
    }
}

impl utoipa::ToSchema for CompanyNumberInput {}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a Companies House number: 8 digits, or 2 letters and 6 digits (e.g. 01234567, SC123456)")]
pub struct CompanyNumberError;

impl CompanyNumber {
    pub fn parse(input: &str) -> Result<CompanyNumber, CompanyNumberError> {
        let s: String = input
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        let s = if !s.is_empty() && s.len() < 8 && s.bytes().all(|b| b.is_ascii_digit()) {
            format!("{s:0>8}")
        } else {
            s
        };
        let b = s.as_bytes();
        let prefix_ok = b.len() == 8
            && ((b[0].is_ascii_digit() && b[1].is_ascii_digit())
                || (b[0].is_ascii_uppercase() && b[1].is_ascii_uppercase()));
        if prefix_ok && b[2..].iter().all(u8::is_ascii_digit) && b[2..] != *b"000000" {
            Ok(CompanyNumber(s))
        } else {
            Err(CompanyNumberError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The two-letter prefix that marks the kind of registration (`SC`, `FC`, …); `None` for
    /// an England and Wales company's eight digits.
    pub fn prefix(&self) -> Option<CompanyPrefix> {
        CompanyPrefix::parse(self.0.get(..2)?).ok()
    }
}

/// A Companies House number prefix: two upper-case letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CompanyPrefix([u8; 2]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a Companies House number prefix: 2 upper-case letters (e.g. FC)")]
pub struct CompanyPrefixError;

impl CompanyPrefix {
    pub fn parse(input: &str) -> Result<CompanyPrefix, CompanyPrefixError> {
        match input.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => {
                Ok(CompanyPrefix([*a, *b]))
            }
            _ => Err(CompanyPrefixError),
        }
    }

    pub fn as_str(&self) -> &str {
        // Two ASCII letters, checked by `parse`.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for CompanyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CompanyPrefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CompanyPrefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CompanyPrefix::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for CompanyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CompanyNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CompanyNumber::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_spaces_and_missing_zeros() {
        assert_eq!(
            CompanyNumber::parse("sc 123456").unwrap().as_str(),
            "SC123456"
        );
        assert_eq!(
            CompanyNumber::parse("1234567").unwrap().as_str(),
            "01234567"
        );
        assert_eq!(
            CompanyNumber::parse("OC301234").unwrap().as_str(),
            "OC301234"
        );
    }

    #[test]
    fn the_prefix_is_the_two_letters_if_any() {
        let prefix = |n: &str| CompanyNumber::parse(n).unwrap().prefix();
        assert_eq!(
            prefix("FC123456"),
            Some(CompanyPrefix::parse("FC").unwrap())
        );
        assert_eq!(prefix("sc123456").unwrap().as_str(), "SC");
        assert_eq!(prefix("01234567"), None);
        for bad in ["F", "fc", "F1", "FCX", ""] {
            assert!(CompanyPrefix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejects_malformed_numbers() {
        for bad in [
            "",
            "123456789",
            "S1234567",
            "SC12345X",
            "ABC12345",
            "00000000",
            "SC000000",
        ] {
            assert!(CompanyNumber::parse(bad).is_err(), "{bad:?}");
        }
    }
}
