//! Short references people can read out and type: `APP-7K2M9Q` for an application,
//! `VCH-7K2M9Q` for the voucher granted on it (the same code, so one leads to the other).
//!
//! Six characters of Crockford's base 32: digits and capitals without I, L, O and U, so a
//! code read over the phone or copied from a letter cannot be mistaken. Typing is forgiven
//! as Crockford intends: any case, spaces or a missing dash, O for 0, I and L for 1.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code: 32⁶, about a billion codes, so a fresh one almost never collides
/// (the store still checks, and the column is unique).
pub const CODE_LEN: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferenceKind {
    Application,
    Voucher,
}

impl ReferenceKind {
    pub fn prefix(self) -> &'static str {
        match self {
            ReferenceKind::Application => "APP",
            ReferenceKind::Voucher => "VCH",
        }
    }
}

/// A reference: its kind and a code of `CODE_LEN` characters from the alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    kind: ReferenceKind,
    code: [u8; CODE_LEN],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a reference like APP-7K2M9Q or VCH-7K2M9Q")]
pub struct ReferenceError;

impl Reference {
    /// A code drawn from `random` bytes (each picks one of 32 characters: 256 is a multiple
    /// of 32, so every character is equally likely).
    pub fn from_random(kind: ReferenceKind, random: [u8; CODE_LEN]) -> Reference {
        Reference {
            kind,
            code: random.map(|b| ALPHABET[usize::from(b % 32)]),
        }
    }

    /// The same code under another kind: the voucher granted on an application.
    pub fn as_kind(&self, kind: ReferenceKind) -> Reference {
        Reference {
            kind,
            code: self.code,
        }
    }

    pub fn kind(&self) -> ReferenceKind {
        self.kind
    }

    /// Reads a typed or stored reference: `vch 7k2m9q`, `VCH-7K2M9Q`, `VCH7K2M9Q`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let s: Vec<u8> = input
            .bytes()
            .filter(|b| !b.is_ascii_whitespace() && *b != b'-')
            .map(|b| b.to_ascii_uppercase())
            .collect();
        if s.len() != 3 + CODE_LEN {
            return Err(ReferenceError);
        }
        let kind = match &s[..3] {
            b"APP" => ReferenceKind::Application,
            b"VCH" => ReferenceKind::Voucher,
            _ => return Err(ReferenceError),
        };
        let mut code = [0u8; CODE_LEN];
        for (slot, b) in code.iter_mut().zip(&s[3..]) {
            let b = match b {
                b'O' => b'0',
                b'I' | b'L' => b'1',
                other => *other,
            };
            if !ALPHABET.contains(&b) {
                return Err(ReferenceError);
            }
            *slot = b;
        }
        Ok(Reference { kind, code })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The code is ASCII from the alphabet by construction.
        let code: String = self.code.iter().map(|b| char::from(*b)).collect();
        write!(f, "{}-{code}", self.kind.prefix())
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_reads_back_however_it_is_typed() {
        let r = Reference::from_random(ReferenceKind::Voucher, [7, 20, 2, 20, 9, 23]);
        assert_eq!(r.to_string(), "VCH-7M2M9Q");
        for typed in ["VCH-7M2M9Q", "vch-7m2m9q", " vch 7m2m9q ", "VCH7M2M9Q"] {
            assert_eq!(Reference::parse(typed), Ok(r.clone()), "{typed}");
        }
        assert_eq!(
            Reference::parse("APP-0I1L0O").map(|r| r.to_string()),
            Ok("APP-011100".to_string())
        );
    }

    #[test]
    fn not_a_reference_is_refused() {
        for typed in [
            "",
            "VCH-",
            "VCH-7K2M9",
            "VCH-7K2M9QQ",
            "XYZ-7K2M9Q",
            "VCH-7K2M9U",
            "VCH-7K2M9!",
        ] {
            assert_eq!(Reference::parse(typed), Err(ReferenceError), "{typed}");
        }
    }

    #[test]
    fn an_application_and_its_voucher_share_the_code() {
        let app = Reference::from_random(ReferenceKind::Application, [255, 0, 31, 32, 100, 200]);
        assert_eq!(app.to_string(), "APP-Z0Z048");
        assert_eq!(
            app.as_kind(ReferenceKind::Voucher).to_string(),
            "VCH-Z0Z048"
        );
    }
}
