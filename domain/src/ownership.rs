//! Whether the applicant owns the company an application names. Anyone can type a company
//! number, so a number alone proves nothing: only an application whose ownership has been
//! confirmed may hold the number against other applications (one live voucher per company).
//! Until then several applications may name the same company, and none blocks the others.

use chrono::NaiveDateTime;

pub const NOTE_MAX_CHARS: usize = 2000;

/// The OpenAPI schema of a request's note, which is parsed as a [`Note`].
pub fn note_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::string("What was checked; not blank (surrounding spaces not counted).")
        .min_length(Some(1))
        .max_length(Some(NOTE_MAX_CHARS))
        .into()
}

/// What an administrator wrote about an ownership check: trimmed, not blank, at most 2000
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note(String);

impl Note {
    pub fn parse(input: &str) -> Result<Note, String> {
        let s = input.trim();
        if s.is_empty() {
            return Err("must not be blank".into());
        }
        if s.chars().count() > NOTE_MAX_CHARS {
            return Err(format!("must be at most {NOTE_MAX_CHARS} characters"));
        }
        Ok(Note(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// How ownership was settled. An administrator's check is the only way today: confirmation by
/// the company's registered email domain needs verified email addresses first, or anyone could
/// sign up with an address at the company's domain and be confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    AdminCheck,
}

impl Method {
    /// Every method, in declaration order.
    pub const ALL: [Method; 1] = [Method::AdminCheck];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::AdminCheck => "admin_check",
        }
    }

    pub fn parse(s: &str) -> Result<Method, String> {
        match s {
            "admin_check" => Ok(Method::AdminCheck),
            other => Err(format!("unknown ownership method {other:?}")),
        }
    }
}

/// Who settled ownership, how, when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub method: Method,
    /// The user id of the administrator.
    pub by: String,
    pub at: NaiveDateTime,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Nobody has checked: the application does not hold the company number.
    Unconfirmed,
    /// The applicant owns the company: the application holds the number while it is live.
    Confirmed(Check),
    /// An administrator found the applicant does not own the company: the application does
    /// not hold the number and cannot be approved unless ownership is confirmed later.
    Refused(Check),
}

/// Why an approval cannot settle ownership itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedOwnership {
    pub note: String,
}

impl Ownership {
    /// From the stored columns; a state whose details are missing (or present when there
    /// should be none) is an error, never guessed at.
    pub fn parse(
        state: &str,
        method: Option<&str>,
        by: Option<&str>,
        at: Option<NaiveDateTime>,
        note: Option<&str>,
    ) -> Result<Ownership, String> {
        let check = || -> Result<Check, String> {
            match (method, by, at, note) {
                (Some(m), Some(by), Some(at), Some(note)) => Ok(Check {
                    method: Method::parse(m)?,
                    by: by.to_string(),
                    at,
                    note: note.to_string(),
                }),
                _ => Err(format!(
                    "ownership {state} without its method, author, time or note"
                )),
            }
        };
        match state {
            "unconfirmed" if method.is_none() && by.is_none() && at.is_none() && note.is_none() => {
                Ok(Ownership::Unconfirmed)
            }
            "unconfirmed" => Err("unconfirmed ownership with a check recorded".into()),
            "confirmed" => Ok(Ownership::Confirmed(check()?)),
            "refused" => Ok(Ownership::Refused(check()?)),
            other => Err(format!("unknown ownership state {other:?}")),
        }
    }

    /// Every spelling [`Ownership::state`] gives.
    pub const STATES: [&'static str; 3] = ["unconfirmed", "confirmed", "refused"];

    pub fn state(&self) -> &'static str {
        match self {
            Ownership::Unconfirmed => "unconfirmed",
            Ownership::Confirmed(_) => "confirmed",
            Ownership::Refused(_) => "refused",
        }
    }

    pub fn check(&self) -> Option<&Check> {
        match self {
            Ownership::Unconfirmed => None,
            Ownership::Confirmed(c) | Ownership::Refused(c) => Some(c),
        }
    }

    /// Whether the application may hold its company number against other applications.
    pub fn holds_number(&self) -> bool {
        matches!(self, Ownership::Confirmed(_))
    }

    /// What an approval by `approver` makes of it: approving is an administrator's decision
    /// that the applicant may have the voucher, so an unchecked ownership is recorded as
    /// checked by them then. One an administrator refused stays refused: the approval must not
    /// overrule that silently, so it is refused until ownership is confirmed.
    pub fn at_approval(
        self,
        approver: &str,
        at: NaiveDateTime,
        reason: &str,
    ) -> Result<Ownership, RefusedOwnership> {
        match self {
            Ownership::Unconfirmed => Ok(Ownership::Confirmed(Check {
                method: Method::AdminCheck,
                by: approver.to_string(),
                at,
                note: format!("confirmed by the approval: {reason}"),
            })),
            confirmed @ Ownership::Confirmed(_) => Ok(confirmed),
            Ownership::Refused(c) => Err(RefusedOwnership { note: c.note }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2027, 1, 4)
            .unwrap()
            .and_hms_opt(9, 30, 0)
            .unwrap()
    }

    #[test]
    fn a_note_is_trimmed_and_never_blank_or_overlong() {
        assert_eq!(
            Note::parse("  Checked the register.  ").unwrap().as_str(),
            "Checked the register."
        );
        assert!(Note::parse("   ").is_err());
        assert!(Note::parse("").is_err());
        assert!(Note::parse(&"x".repeat(NOTE_MAX_CHARS)).is_ok());
        assert!(Note::parse(&"x".repeat(NOTE_MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn stored_columns_parse_only_when_consistent() {
        assert_eq!(
            Ownership::parse("unconfirmed", None, None, None, None).unwrap(),
            Ownership::Unconfirmed
        );
        let confirmed = Ownership::parse(
            "confirmed",
            Some("admin_check"),
            Some("admin-1"),
            Some(at()),
            Some("director's ID seen"),
        )
        .unwrap();
        assert!(confirmed.holds_number());
        assert_eq!(confirmed.state(), "confirmed");
        assert_eq!(confirmed.check().unwrap().method, Method::AdminCheck);
        let refused = Ownership::parse(
            "refused",
            Some("admin_check"),
            Some("admin-1"),
            Some(at()),
            Some("not a director"),
        )
        .unwrap();
        assert!(!refused.holds_number());
        assert!(Ownership::parse("confirmed", None, Some("a"), Some(at()), Some("n")).is_err());
        assert!(
            Ownership::parse("confirmed", Some("guess"), Some("a"), Some(at()), Some("n")).is_err()
        );
        assert!(Ownership::parse("unconfirmed", Some("admin_check"), None, None, None).is_err());
        assert!(Ownership::parse("maybe", None, None, None, None).is_err());
    }

    #[test]
    fn an_approval_confirms_an_unchecked_ownership_but_not_a_refused_one() {
        let confirmed = Ownership::Unconfirmed
            .at_approval("admin-1", at(), "meets every rule")
            .unwrap();
        let check = confirmed.check().unwrap();
        assert_eq!(
            (check.method, check.by.as_str(), check.at),
            (Method::AdminCheck, "admin-1", at())
        );
        assert!(check.note.contains("meets every rule"));
        // Already confirmed: kept as it was, by whoever confirmed it.
        assert_eq!(
            confirmed.clone().at_approval("admin-2", at(), "again"),
            Ok(confirmed)
        );
        let refused = Ownership::Refused(Check {
            method: Method::AdminCheck,
            by: "admin-1".into(),
            at: at(),
            note: "not a director".into(),
        });
        assert_eq!(
            refused.at_approval("admin-2", at(), "approve"),
            Err(RefusedOwnership {
                note: "not a director".into()
            })
        );
    }
}
