//! UK SIC 2007 codes: the five-digit subclasses of the Companies House condensed list, shipped
//! as `domain/data/sic2007.csv` (source in `domain/data/README.md`). A `SicCode` is always one
//! of them.

use serde::{Deserialize, Deserializer, Serialize};

/// `code,description` lines, sorted by code, after a header line.
const SIC2007_CSV: &str = include_str!("../data/sic2007.csv");

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SicCode(String);

impl utoipa::PartialSchema for SicCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let count = SIC2007_CSV.lines().skip(1).count();
        crate::schema::string(format!(
            "UK SIC 2007 code: one of the {count} five-digit codes of Companies House's \
             condensed SIC 2007 list (shipped as `domain/data/sic2007.csv`). Any other code \
             is refused with 422, naming the field, \"not a UK SIC 2007 code\"."
        ))
        .pattern(Some("^[0-9]{5}$"))
        .examples(["62012", "62020"])
        .into()
    }
}

impl utoipa::ToSchema for SicCode {}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a UK SIC 2007 code: enter the 5-digit code of the company's main activity from the Companies House list (e.g. 62012)")]
pub struct SicCodeError;

/// The description of `code` in the list, if it is there.
fn lookup(code: &str) -> Option<&'static str> {
    if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    SIC2007_CSV.lines().skip(1).find_map(|line| {
        let (c, description) = line.split_once(',')?;
        (c == code).then(|| {
            description
                .strip_prefix('"')
                .and_then(|d| d.strip_suffix('"'))
                .unwrap_or(description)
        })
    })
}

impl SicCode {
    pub fn parse(input: &str) -> Result<SicCode, SicCodeError> {
        let s = input.trim();
        lookup(s).ok_or(SicCodeError)?;
        Ok(SicCode(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the code means, as the list words it.
    pub fn description(&self) -> &'static str {
        lookup(&self.0).unwrap_or("")
    }

    pub fn division(&self) -> u8 {
        let b = self.0.as_bytes();
        (b[0] - b'0') * 10 + (b[1] - b'0')
    }

    /// The SIC section letter (A–U) the division belongs to.
    pub fn section(&self) -> char {
        match self.division() {
            1..=3 => 'A',
            5..=9 => 'B',
            10..=33 => 'C',
            35 => 'D',
            36..=39 => 'E',
            41..=43 => 'F',
            45..=47 => 'G',
            49..=53 => 'H',
            55..=56 => 'I',
            58..=63 => 'J',
            64..=66 => 'K',
            68 => 'L',
            69..=75 => 'M',
            77..=82 => 'N',
            84 => 'O',
            85 => 'P',
            86..=88 => 'Q',
            90..=93 => 'R',
            94..=96 => 'S',
            97..=98 => 'T',
            _ => 'U',
        }
    }
}

impl<'de> Deserialize<'de> for SicCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SicCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_codes_and_names_their_section_and_description() {
        let software = SicCode::parse("62012").unwrap();
        assert_eq!(software.section(), 'J');
        assert_eq!(
            software.description(),
            "Business and domestic software development"
        );
        assert_eq!(
            SicCode::parse("62020").unwrap().description(),
            "Information technology consultancy activities"
        );
        let cereals = SicCode::parse("01110").unwrap();
        assert_eq!(cereals.section(), 'A');
        assert_eq!(
            cereals.description(),
            "Growing of cereals (except rice), leguminous crops and oil seeds"
        );
        assert_eq!(SicCode::parse("99000").unwrap().section(), 'U');
        assert_eq!(SicCode::parse(" 62012 ").unwrap().as_str(), "62012");
    }

    #[test]
    fn rejects_codes_not_in_the_list() {
        for bad in [
            "6201", "620123", "6201a", "04000", "00000", "89100", "62013", "62000", "",
        ] {
            assert_eq!(SicCode::parse(bad), Err(SicCodeError), "{bad:?}");
        }
        assert!(SicCodeError
            .to_string()
            .starts_with("not a UK SIC 2007 code"));
    }

    #[test]
    fn the_list_holds_731_sorted_five_digit_codes_in_real_divisions() {
        let mut lines = SIC2007_CSV.lines();
        assert_eq!(lines.next(), Some("code,description"));
        let codes: Vec<&str> = lines.map(|l| l.split_once(',').unwrap().0).collect();
        assert_eq!(codes.len(), 731);
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        for code in codes {
            let parsed = SicCode::parse(code).unwrap();
            assert!(!parsed.description().is_empty(), "{code}");
            assert!(
                ![0, 4, 34, 40, 44, 48, 54, 57, 67, 76, 83, 89].contains(&parsed.division()),
                "{code}"
            );
        }
    }
}
