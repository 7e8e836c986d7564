//! UK SIC 2007 codes: five digits whose first two are one of the 88 divisions.

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SicCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be a 5-digit UK SIC 2007 code whose first two digits are a SIC division (e.g. 62012)"
)]
pub struct SicCodeError;

/// Divisions that do not exist in SIC 2007 (gaps in the 01–99 numbering).
const MISSING_DIVISIONS: [u8; 12] = [0, 4, 34, 40, 44, 48, 54, 57, 67, 76, 83, 89];

impl SicCode {
    pub fn parse(input: &str) -> Result<SicCode, SicCodeError> {
        let s = input.trim();
        if s.len() != 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SicCodeError);
        }
        let code = SicCode(s.to_string());
        if MISSING_DIVISIONS.contains(&code.division()) {
            return Err(SicCodeError);
        }
        Ok(code)
    }

    pub fn as_str(&self) -> &str {
        &self.0
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
    fn accepts_real_codes_and_names_their_section() {
        assert_eq!(SicCode::parse("62012").unwrap().section(), 'J');
        assert_eq!(SicCode::parse("01110").unwrap().section(), 'A');
        assert_eq!(SicCode::parse("99000").unwrap().section(), 'U');
    }

    #[test]
    fn rejects_wrong_length_letters_and_missing_divisions() {
        for bad in ["6201", "620123", "6201a", "04000", "00000", "89100"] {
            assert!(SicCode::parse(bad).is_err(), "{bad:?}");
        }
    }
}
