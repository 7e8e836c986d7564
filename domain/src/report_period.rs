//! The periods scheduled reports cover: calendar months, and the two halves of the financial
//! year (April–September, October–March). A report of a scheduled kind is only ever for one of
//! these; a period that has not ended yet can only be reported as a draft.

use chrono::{Datelike, NaiveDate};
use std::fmt;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "sql",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "sql", diesel(sql_type = diesel::sql_types::Text))]
pub enum ReportKind {
    Monthly,
    SemiAnnual,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Monthly => "monthly",
            ReportKind::SemiAnnual => "semi_annual",
        }
    }

    /// `monthly`, `semi_annual` or `semi-annual`.
    pub fn parse(s: &str) -> Option<ReportKind> {
        match s.replace('-', "_").as_str() {
            "monthly" => Some(ReportKind::Monthly),
            "semi_annual" => Some(ReportKind::SemiAnnual),
            _ => None,
        }
    }
}

impl serde::Serialize for ReportKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ReportKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ReportKind::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("must be monthly or semi_annual"))
    }
}

crate::text_sql!(ReportKind, |text: String| {
    ReportKind::parse(&text).ok_or_else(|| format!("unknown ReportKind {text:?}").into())
});

/// Its two spellings, each with its period.
impl utoipa::PartialSchema for ReportKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::one_of(
            &[" Which report. Requests may also spell `semi_annual` as `semi-annual`."],
            &[
                ("monthly", &[" A calendar month."]),
                (
                    "semi_annual",
                    &[" Half of the financial year: April to September, or October to March."],
                ),
            ],
        )
    }
}

impl utoipa::ToSchema for ReportKind {}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fixed period of a kind, first and last day inclusive. Only made by [`Period::fixed`],
/// [`Period::containing`] and [`Period::last_before`], so it is always a whole month or half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    kind: ReportKind,
    from: NaiveDate,
    to: NaiveDate,
}

fn first_of(y: i32, m: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MIN)
}

fn day_before(d: NaiveDate) -> NaiveDate {
    d.pred_opt().unwrap_or(NaiveDate::MIN)
}

impl Period {
    /// The period of `kind` that `day` falls in.
    pub fn containing(kind: ReportKind, day: NaiveDate) -> Period {
        let (y, m) = (day.year(), day.month());
        let (from, next) = match kind {
            ReportKind::Monthly => {
                let next = if m == 12 {
                    first_of(y + 1, 1)
                } else {
                    first_of(y, m + 1)
                };
                (first_of(y, m), next)
            }
            ReportKind::SemiAnnual => match m {
                4..=9 => (first_of(y, 4), first_of(y, 10)),
                10..=12 => (first_of(y, 10), first_of(y + 1, 4)),
                _ => (first_of(y - 1, 10), first_of(y, 4)),
            },
        };
        Period {
            kind,
            from,
            to: day_before(next),
        }
    }

    /// The last whole period before `day`: the previous calendar month, or the previous half
    /// of the financial year.
    pub fn last_before(kind: ReportKind, day: NaiveDate) -> Period {
        Period::containing(kind, day).previous()
    }

    /// The period before this one.
    pub fn previous(&self) -> Period {
        Period::containing(self.kind, day_before(self.from))
    }

    /// `[from, to]` as a period of `kind`, or why it is not one.
    pub fn fixed(kind: ReportKind, from: NaiveDate, to: NaiveDate) -> Result<Period, String> {
        let p = Period::containing(kind, from);
        if p.from == from && p.to == to {
            return Ok(p);
        }
        Err(match kind {
            ReportKind::Monthly => format!(
                "a monthly report covers one calendar month, first to last day (for {from}: {} to {})",
                p.from, p.to
            ),
            ReportKind::SemiAnnual => format!(
                "a semi-annual report covers April to September or October to March, first to last day (for {from}: {} to {})",
                p.from, p.to
            ),
        })
    }

    pub fn kind(&self) -> ReportKind {
        self.kind
    }

    pub fn from(&self) -> NaiveDate {
        self.from
    }

    pub fn to(&self) -> NaiveDate {
        self.to
    }

    /// Whether the period is over on `today` (its last day has passed): only then can its
    /// final report be made.
    pub fn has_ended(&self, today: NaiveDate) -> bool {
        today > self.to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn span(p: Period) -> (NaiveDate, NaiveDate) {
        (p.from(), p.to())
    }

    #[test]
    fn the_last_whole_period_is_the_previous_month_or_half_year() {
        use ReportKind::*;
        assert_eq!(
            span(Period::last_before(Monthly, d(2026, 11, 27))),
            (d(2026, 10, 1), d(2026, 10, 31))
        );
        assert_eq!(
            span(Period::last_before(Monthly, d(2027, 1, 1))),
            (d(2026, 12, 1), d(2026, 12, 31))
        );
        assert_eq!(
            span(Period::last_before(Monthly, d(2027, 3, 1))),
            (d(2027, 2, 1), d(2027, 2, 28))
        );
        assert_eq!(
            span(Period::last_before(SemiAnnual, d(2026, 11, 27))),
            (d(2026, 4, 1), d(2026, 9, 30))
        );
        assert_eq!(
            span(Period::last_before(SemiAnnual, d(2027, 5, 2))),
            (d(2026, 10, 1), d(2027, 3, 31))
        );
        assert_eq!(
            span(Period::last_before(SemiAnnual, d(2027, 2, 2))),
            (d(2026, 4, 1), d(2026, 9, 30))
        );
    }

    #[test]
    fn only_whole_months_and_halves_are_fixed_periods() {
        use ReportKind::*;
        assert!(Period::fixed(SemiAnnual, d(2026, 10, 1), d(2027, 3, 31)).is_ok());
        assert!(Period::fixed(SemiAnnual, d(2026, 4, 1), d(2026, 9, 30)).is_ok());
        assert!(Period::fixed(Monthly, d(2028, 2, 1), d(2028, 2, 29)).is_ok());
        for (kind, from, to) in [
            (SemiAnnual, d(2026, 12, 6), d(2026, 12, 6)),
            (SemiAnnual, d(2026, 1, 1), d(2026, 6, 30)),
            (SemiAnnual, d(2026, 4, 1), d(2026, 9, 29)),
            (Monthly, d(2026, 12, 1), d(2026, 12, 30)),
            (Monthly, d(2026, 11, 2), d(2026, 12, 1)),
        ] {
            let e = Period::fixed(kind, from, to).unwrap_err();
            assert!(e.contains("covers"), "{e}");
        }
    }

    #[test]
    fn a_period_has_ended_after_its_last_day() {
        let p = Period::fixed(ReportKind::Monthly, d(2026, 12, 1), d(2026, 12, 31)).unwrap();
        assert!(!p.has_ended(d(2026, 12, 31)));
        assert!(p.has_ended(d(2027, 1, 1)));
        assert_eq!(span(p.previous()), (d(2026, 11, 1), d(2026, 11, 30)));
    }
}
