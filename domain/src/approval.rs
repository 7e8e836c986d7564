//! The rules an approval keeps: a decision's reason says something, a voucher stays within
//! the programme's maximum, and a large one needs a second administrator (four eyes).

use crate::Money;

/// The fewest characters a decision's reason may have, surrounding spaces not counted.
pub const REASON_MIN_CHARS: usize = 10;
pub const REASON_MAX_CHARS: usize = 2000;
/// The fewest different letters or digits a reason must use ("xxxxxxxxxx" says nothing).
pub const REASON_MIN_DISTINCT: usize = 4;

/// The OpenAPI schema of a request's reason, which is parsed as a [`Reason`].
pub fn reason_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::string(format!(
        "Why, at least {REASON_MIN_CHARS} characters (surrounding spaces not counted) using at \
         least {REASON_MIN_DISTINCT} different letters or digits."
    ))
    .min_length(Some(REASON_MIN_CHARS))
    .max_length(Some(REASON_MAX_CHARS))
    .into()
}

/// Why an administrator decided as they did: trimmed, 10 to 2000 characters, and more than one
/// repeated character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub fn parse(input: &str) -> Result<Reason, String> {
        let s = input.trim();
        let n = s.chars().count();
        if !(REASON_MIN_CHARS..=REASON_MAX_CHARS).contains(&n) {
            return Err(format!(
                "must be {REASON_MIN_CHARS} to {REASON_MAX_CHARS} characters saying why"
            ));
        }
        let mut distinct: Vec<char> = s
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < REASON_MIN_DISTINCT {
            return Err("must say why in words".into());
        }
        Ok(Reason(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The programme's limits on one voucher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalLimits {
    /// No voucher (base and incentives together) may be worth more.
    pub max_voucher: Money,
    /// A voucher worth more needs a second administrator's confirmation.
    pub second_approval_above: Money,
}

/// What an approval of a voucher worth a given total needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approvals {
    /// One administrator grants it.
    One,
    /// A different administrator must confirm before money moves.
    Two,
}

impl ApprovalLimits {
    /// Refuses a voucher above the maximum (the message names it); otherwise says how many
    /// administrators it needs.
    pub fn check(&self, total: Money) -> Result<Approvals, String> {
        if total > self.max_voucher {
            return Err(format!(
                "the voucher would be worth £{total}, above the programme's maximum of £{}",
                self.max_voucher
            ));
        }
        Ok(if total > self.second_approval_above {
            Approvals::Two
        } else {
            Approvals::One
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap()
    }

    #[test]
    fn a_reason_must_say_something() {
        for bad in [
            "x",
            "ok",
            "   approved  ",
            "xxxxxxxxxxxx",
            "ab ab ab ab ab",
            "",
        ] {
            assert!(Reason::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Reason::parse("  meets all criteria ").unwrap().as_str(),
            "meets all criteria"
        );
        assert!(Reason::parse(&"a".repeat(2001)).is_err());
    }

    #[test]
    fn limits_refuse_above_the_maximum_and_ask_for_four_eyes_above_the_threshold() {
        let l = ApprovalLimits {
            max_voucher: m("25000"),
            second_approval_above: m("10000"),
        };
        assert_eq!(l.check(m("10000")), Ok(Approvals::One));
        assert_eq!(l.check(m("10000.01")), Ok(Approvals::Two));
        assert_eq!(l.check(m("25000")), Ok(Approvals::Two));
        let e = l.check(m("25000.000001")).unwrap_err();
        assert!(e.contains("25000.00"), "{e}");
    }
}
