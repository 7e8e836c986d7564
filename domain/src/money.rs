//! Money is an `i64` count of micro-units of the programme currency (£1 = 1,000,000). On the
//! wire it is a decimal string in major units with at most six decimals; floats never appear.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

pub const MICROS_PER_UNIT: i64 = 1_000_000;
/// The largest single amount accepted anywhere (£1bn). Keeps every sum of a few amounts far
/// from `i64` overflow and rejects absurd input early.
pub const MAX_AMOUNT_MICROS: i64 = 1_000_000_000 * MICROS_PER_UNIT;
const MAX_DECIMALS: usize = 6;

/// A non-negative amount of money in micro-units, never above [`MAX_AMOUNT_MICROS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a decimal string in major units such as \"12.50\"")]
    Malformed,
    #[error("must not be negative")]
    Negative,
    #[error("must have at most 6 decimal places")]
    TooPrecise,
    #[error("must not exceed 1000000000.00")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn from_micros(amount_micros: i64) -> Result<Money, MoneyError> {
        if amount_micros < 0 {
            Err(MoneyError::Negative)
        } else if amount_micros > MAX_AMOUNT_MICROS {
            Err(MoneyError::TooLarge)
        } else {
            Ok(Money(amount_micros))
        }
    }

    /// Whole major units, for configuration defaults written in pounds.
    pub fn from_major(units: i64) -> Result<Money, MoneyError> {
        units
            .checked_mul(MICROS_PER_UNIT)
            .ok_or(MoneyError::TooLarge)
            .and_then(Money::from_micros)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0
            .checked_add(other.0)
            .and_then(|m| Money::from_micros(m).ok())
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0
            .checked_sub(other.0)
            .and_then(|m| Money::from_micros(m).ok())
    }

    pub fn saturating_sub(self, other: Money) -> Money {
        Money((self.0 - other.0).max(0))
    }

    /// Parses a decimal string in major units: `"12"`, `"12.5"`, `"0.000001"`. Strict: no
    /// sign, separator, currency symbol or whitespace anywhere (`" 12.50"` is as malformed as
    /// `"12,50"`); whoever takes amounts typed by people tidies them before calling this.
    pub fn parse(s: &str) -> Result<Money, MoneyError> {
        if s.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::Malformed);
        }
        if s.contains('.') && frac.is_empty() {
            return Err(MoneyError::Malformed);
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::Malformed);
        }
        if frac.len() > MAX_DECIMALS {
            return Err(MoneyError::TooPrecise);
        }
        // 10 digits of pounds already exceed the maximum; checking the length first keeps the
        // multiplication below free of overflow.
        let whole_digits = whole.trim_start_matches('0');
        if whole_digits.len() > 10 {
            return Err(MoneyError::TooLarge);
        }
        let whole_units: i64 = if whole_digits.is_empty() {
            0
        } else {
            whole_digits.parse().map_err(|_| MoneyError::Malformed)?
        };
        let mut frac_micros: i64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            frac_micros += i64::from(b - b'0') * 10_i64.pow((MAX_DECIMALS - 1 - i) as u32);
        }
        let micros = whole_units
            .checked_mul(MICROS_PER_UNIT)
            .and_then(|w| w.checked_add(frac_micros))
            .ok_or(MoneyError::TooLarge)?;
        Money::from_micros(micros)
    }
}

/// Formats a signed micro-unit amount as a decimal string in major units with at least two
/// decimals and no trailing zeros beyond them: 12_500_000 → "12.50", 1 → "0.000001".
pub fn format_micros(amount_micros: i64) -> String {
    let sign = if amount_micros < 0 { "-" } else { "" };
    let abs = amount_micros.unsigned_abs();
    let units = abs / MICROS_PER_UNIT as u64;
    let frac = abs % MICROS_PER_UNIT as u64;
    let mut frac_str = format!("{frac:06}");
    while frac_str.len() > 2 && frac_str.ends_with('0') {
        frac_str.pop();
    }
    format!("{sign}{units}.{frac_str}")
}

/// Rounds a micro-unit amount to whole pence, half away from zero: (pence, sign).
fn to_pence(amount_micros: i64) -> (u64, &'static str) {
    let sign = if amount_micros < 0 { "-" } else { "" };
    let abs = amount_micros.unsigned_abs();
    let per_penny = (MICROS_PER_UNIT / 100) as u64;
    ((abs + per_penny / 2) / per_penny, sign)
}

/// Formats a micro-unit amount as plain decimal pounds rounded to the penny, for reports' JSON
/// and CSV: 133_820_004_999 → "133820.00", 11_160 → "0.01".
pub fn format_pounds_2dp(amount_micros: i64) -> String {
    let (pence, sign) = to_pence(amount_micros);
    let sign = if pence == 0 { "" } else { sign };
    format!("{sign}{}.{:02}", pence / 100, pence % 100)
}

/// An amount written as a decimal string ("2499.999746", "-1.50", as the API and messages carry
/// money) for reading: "£2,500.00", "-£1.50"; `None` when the text is not an amount. The pages,
/// the emails and the reports all write money through this.
pub fn display_decimal(text: &str) -> Option<String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let m = Money::parse(digits).ok()?;
    Some(format_pounds_display(if negative {
        -m.micros()
    } else {
        m.micros()
    }))
}

/// Formats a micro-unit amount for reading: pounds and pence with a pound sign and thousands
/// separators, 133_820_000_000 → "£133,820.00", -1_500_000 → "-£1.50".
pub fn format_pounds_display(amount_micros: i64) -> String {
    let (pence, sign) = to_pence(amount_micros);
    let sign = if pence == 0 { "" } else { sign };
    let digits = (pence / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}£{grouped}.{:02}", pence % 100)
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_micros(self.0))
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_micros(self.0))
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal string in major units such as \"12.50\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Money, E> {
                Money::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// What every amount on the wire is: a decimal string in major units, never a JSON number.
fn decimal_schema(
    pattern: &str,
    description: &str,
    examples: &[&str],
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::string(description)
        .pattern(Some(pattern))
        .examples(examples.iter().copied())
        .into()
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        decimal_schema(
            r"^\d+(\.\d{1,6})?$",
            &format!(
                "An amount of money in the programme currency (GBP), as a decimal string in \
                 major units with at most {MAX_DECIMALS} decimals. Never a JSON number. At most \
                 {}. Responses always carry at least two decimals.",
                MAX_AMOUNT_MICROS / MICROS_PER_UNIT
            ),
            &["12.50", "0.000150"],
        )
    }
}

impl utoipa::ToSchema for Money {}

/// A signed amount in micro-units as the ledger shows it: a statement line (debits are
/// negative), a running balance. Unlike [`Money`] it is never input, only shown; on the wire
/// it is the same decimal string, with a leading `-` when negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(pub i64);

impl Amount {
    pub fn micros(self) -> i64 {
        self.0
    }

    /// Pounds and pence for reading: "£2,499.99", "-£1.50".
    pub fn pounds(self) -> String {
        format_pounds_display(self.0)
    }
}

impl From<Money> for Amount {
    fn from(m: Money) -> Amount {
        Amount(m.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_micros(self.0))
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_micros(self.0))
    }
}

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        decimal_schema(
            r"^-?\d+(\.\d{1,6})?$",
            "A balance in major units, as Money, that may be negative.",
            &["4987.25"],
        )
    }
}

/// Named as the document has always named it: the signed twin of `Money`.
impl utoipa::ToSchema for Amount {
    fn name() -> std::borrow::Cow<'static, str> {
        "SignedMoney".into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_signed_amount_is_shown_like_money() {
        assert_eq!(
            serde_json::to_string(&Amount(-1_500_000)).unwrap(),
            "\"-1.50\""
        );
        assert_eq!(Amount(2_499_990_000).pounds(), "£2,499.99");
        assert_eq!(Amount(-1_500_000).pounds(), "-£1.50");
    }

    #[test]
    fn report_amounts_are_pounds_and_pence() {
        assert_eq!(format_pounds_2dp(133_820_000_000), "133820.00");
        assert_eq!(format_pounds_2dp(11_160), "0.01");
        assert_eq!(format_pounds_2dp(4_999), "0.00");
        assert_eq!(format_pounds_2dp(5_000), "0.01");
        assert_eq!(format_pounds_2dp(-1_234_567), "-1.23");
        assert_eq!(format_pounds_2dp(-1), "0.00");
        assert_eq!(format_pounds_display(133_820_000_000), "£133,820.00");
        assert_eq!(
            format_pounds_display(1_234_567_890_000_000),
            "£1,234,567,890.00"
        );
        assert_eq!(format_pounds_display(999_994_999), "£999.99");
        assert_eq!(format_pounds_display(0), "£0.00");
        assert_eq!(format_pounds_display(-1_500_000), "-£1.50");
    }

    use super::*;

    #[test]
    fn a_decimal_amount_reads_as_pounds_and_pence() {
        assert_eq!(display_decimal("133820.00").as_deref(), Some("£133,820.00"));
        assert_eq!(display_decimal("2499.999746").as_deref(), Some("£2,500.00"));
        assert_eq!(display_decimal(" -1.50 ").as_deref(), Some("-£1.50"));
        assert_eq!(display_decimal("[c]"), None);
        assert_eq!(display_decimal("£5"), None);
    }
    use proptest::prelude::*;

    #[test]
    fn parses_major_units_into_micros() {
        assert_eq!(Money::parse("12.50").unwrap().micros(), 12_500_000);
        assert_eq!(Money::parse("12").unwrap().micros(), 12_000_000);
        assert_eq!(Money::parse("0.000001").unwrap().micros(), 1);
        assert_eq!(
            Money::parse("1000000000").unwrap().micros(),
            MAX_AMOUNT_MICROS
        );
    }

    #[test]
    fn rejects_bad_amounts_with_the_reason() {
        assert_eq!(Money::parse("-1"), Err(MoneyError::Negative));
        assert_eq!(Money::parse("1.0000001"), Err(MoneyError::TooPrecise));
        assert_eq!(Money::parse("1000000000.01"), Err(MoneyError::TooLarge));
        assert_eq!(
            Money::parse("99999999999999999999"),
            Err(MoneyError::TooLarge)
        );
        for bad in ["", "abc", "1.", ".5", "1,00", "1e3", "£5", "1.2.3", " 1 2"] {
            assert_eq!(Money::parse(bad), Err(MoneyError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn whitespace_anywhere_is_malformed() {
        for bad in [
            " 12.50", "12.50 ", "\t1", "1 000", "12. 50", "12 .50", "1\n", "\u{a0}5", " ",
        ] {
            assert_eq!(Money::parse(bad), Err(MoneyError::Malformed), "{bad:?}");
        }
        // The same message as any other malformed amount, in JSON too.
        let err = serde_json::from_str::<Money>("\" 100.00\"").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("must be a decimal string in major units such as \"12.50\""),
            "{err}"
        );
    }

    #[test]
    fn formats_with_two_to_six_decimals() {
        assert_eq!(format_micros(12_500_000), "12.50");
        assert_eq!(format_micros(0), "0.00");
        assert_eq!(format_micros(1), "0.000001");
        assert_eq!(format_micros(-2_340_000), "-2.34");
    }

    #[test]
    fn json_numbers_are_refused() {
        assert!(serde_json::from_str::<Money>("12.5").is_err());
        assert_eq!(
            serde_json::from_str::<Money>("\"12.5\"").unwrap().micros(),
            12_500_000
        );
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(m in 0..=MAX_AMOUNT_MICROS) {
            let money = Money::from_micros(m).unwrap();
            prop_assert_eq!(Money::parse(&money.to_string()).unwrap(), money);
        }
    }
}
