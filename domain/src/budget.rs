//! Budget lines: the programme fund divided by the steering group into lines for a UK
//! financial year (1 April – 31 March), optionally targeted at regions, SIC sections and size
//! bands. An approval draws from the most specific line that matches the organisation.

use crate::{BudgetLineId, Region};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;

/// A UK financial year, written `2026/27`: 1 April 2026 to 31 March 2027.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FinancialYear(i32);

impl FinancialYear {
    pub fn parse(s: &str) -> Result<FinancialYear, String> {
        let bad = || format!("{s:?} is not a financial year such as 2026/27");
        let (a, b) = s.trim().split_once('/').ok_or_else(bad)?;
        let start: i32 = a.parse().map_err(|_| bad())?;
        let end: i32 = b.parse().map_err(|_| bad())?;
        if a.len() != 4
            || b.len() != 2
            || !(2000..=2099).contains(&start)
            || end != (start + 1) % 100
        {
            return Err(bad());
        }
        Ok(FinancialYear(start))
    }

    /// The financial year a date falls in.
    pub fn containing(date: NaiveDate) -> FinancialYear {
        FinancialYear(if date.month() >= 4 {
            date.year()
        } else {
            date.year() - 1
        })
    }

    pub fn starts(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.0, 4, 1).unwrap_or(NaiveDate::MIN)
    }
}

impl fmt::Display for FinancialYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:02}", self.0, (self.0 + 1) % 100)
    }
}

impl Serialize for FinancialYear {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl utoipa::PartialSchema for FinancialYear {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::string(
            "UK financial year (1 April to 31 March), such as `2026/27`; the second part \
             must be the next year.",
        )
        .pattern(Some(r"^\d{4}/\d{2}$"))
        .examples(["2026/27"])
        .into()
    }
}

impl utoipa::ToSchema for FinancialYear {}

impl<'de> Deserialize<'de> for FinancialYear {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FinancialYear::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Size bands by headcount (Companies Act thresholds): micro (fewer than 10 employees), small
/// (10 to 49) or medium (50 or more; the eligibility rules keep SMEs under 250).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SizeBand {
    Micro,
    Small,
    Medium,
}

impl SizeBand {
    pub fn of(employees: u32) -> SizeBand {
        match employees {
            0..=9 => SizeBand::Micro,
            10..=49 => SizeBand::Small,
            _ => SizeBand::Medium,
        }
    }
}

/// A SIC 2007 section letter, A to U.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SicSection(char);

impl SicSection {
    pub fn parse(s: &str) -> Result<SicSection, String> {
        let mut chars = s.trim().chars();
        match (chars.next().map(|c| c.to_ascii_uppercase()), chars.next()) {
            (Some(c @ 'A'..='U'), None) => Ok(SicSection(c)),
            _ => Err(format!("{s:?} is not a SIC 2007 section (A to U)")),
        }
    }

    pub fn letter(self) -> char {
        self.0
    }
}

impl Serialize for SicSection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl utoipa::PartialSchema for SicSection {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::string(
            "A SIC 2007 section letter, A to U. Requests may write it in lower case; \
             responses give it in upper case.",
        )
        .pattern(Some("^[A-Ua-u]$"))
        .into()
    }
}

impl utoipa::ToSchema for SicSection {}

impl<'de> Deserialize<'de> for SicSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SicSection::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Who a budget line funds. An empty list means any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Targeting {
    // Read with defaults (older rows may lack a list), always written: required on the wire.
    #[serde(default)]
    #[schema(required)]
    pub regions: BTreeSet<Region>,
    #[serde(default)]
    #[schema(required)]
    pub sic_sections: BTreeSet<SicSection>,
    #[serde(default)]
    #[schema(required)]
    pub size_bands: BTreeSet<SizeBand>,
}

/// The organisation an approval is for.
#[derive(Debug, Clone, Copy)]
pub struct Organisation {
    pub region: Region,
    pub sic_section: SicSection,
    pub size_band: SizeBand,
}

impl Targeting {
    pub fn matches(&self, o: &Organisation) -> bool {
        (self.regions.is_empty() || self.regions.contains(&o.region))
            && (self.sic_sections.is_empty() || self.sic_sections.contains(&o.sic_section))
            && (self.size_bands.is_empty() || self.size_bands.contains(&o.size_band))
    }

    /// How many dimensions the line targets: the more, the more specific.
    pub fn specificity(&self) -> usize {
        usize::from(!self.regions.is_empty())
            + usize::from(!self.sic_sections.is_empty())
            + usize::from(!self.size_bands.is_empty())
    }
}

/// The line an approval draws from: among `lines` of the year, those matching the
/// organisation, the most specific first (ties to the first listed). Lines are
/// `(id, year, targeting)`.
pub fn choose_line<'a>(
    lines: &'a [(BudgetLineId, FinancialYear, Targeting)],
    year: FinancialYear,
    o: &Organisation,
) -> Option<&'a BudgetLineId> {
    lines
        .iter()
        .filter(|(_, y, t)| *y == year && t.matches(o))
        .max_by(|a, b| {
            a.2.specificity()
                .cmp(&b.2.specificity())
                // max_by keeps the last of equals: reverse the order so the first listed wins.
                .then(std::cmp::Ordering::Greater)
        })
        .map(|(id, _, _)| id)
}

/// A line a bonus could be paid from: its id, year, targeting and what it has available.
#[derive(Debug, Clone)]
pub struct LineBalance {
    pub id: BudgetLineId,
    pub year: FinancialYear,
    pub targeting: Targeting,
    pub available_micros: i64,
}

/// Where a bonus (an incentive's milestone bonus) is paid from, as docs/PROGRAMME.md,
/// "Incentives", states: the first of `preferred` (the rule's own line, then the voucher's)
/// that the organisation matches and that holds the amount; else the most specific line of
/// `year` that matches and holds it; else `None`, the programme fund. A line the organisation
/// does not match is never chosen, whatever it holds.
pub fn choose_bonus_line<'a>(
    lines: &'a [LineBalance],
    preferred: &[&BudgetLineId],
    year: FinancialYear,
    o: &Organisation,
    amount_micros: i64,
) -> Option<&'a BudgetLineId> {
    let usable = |l: &&LineBalance| l.targeting.matches(o) && l.available_micros >= amount_micros;
    for id in preferred {
        if let Some(l) = lines.iter().filter(usable).find(|l| l.id == **id) {
            return Some(&l.id);
        }
    }
    lines
        .iter()
        .filter(usable)
        .filter(|l| l.year == year)
        .max_by(|a, b| {
            a.targeting
                .specificity()
                .cmp(&b.targeting.specificity())
                // max_by keeps the last of equals: reverse the order so the first listed wins.
                .then(std::cmp::Ordering::Greater)
        })
        .map(|l| &l.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn financial_years_run_from_april() {
        let fy = FinancialYear::parse("2026/27").unwrap();
        assert_eq!(fy.to_string(), "2026/27");
        assert_eq!(
            FinancialYear::containing(NaiveDate::from_ymd_opt(2027, 3, 31).unwrap()),
            fy
        );
        assert_eq!(
            FinancialYear::containing(NaiveDate::from_ymd_opt(2027, 4, 1).unwrap()).to_string(),
            "2027/28"
        );
        for bad in ["2026/28", "2026", "26/27", "2026/2027", "x/y"] {
            assert!(FinancialYear::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            FinancialYear::parse("2099/00").unwrap().to_string(),
            "2099/00"
        );
    }

    #[test]
    fn sections_and_bands_parse() {
        assert_eq!(SicSection::parse("j").unwrap().letter(), 'J');
        assert!(SicSection::parse("V").is_err());
        assert!(SicSection::parse("JK").is_err());
        assert_eq!(SizeBand::of(9), SizeBand::Micro);
        assert_eq!(SizeBand::of(10), SizeBand::Small);
        assert_eq!(SizeBand::of(249), SizeBand::Medium);
    }

    #[test]
    fn the_most_specific_matching_line_is_chosen() {
        let fy = FinancialYear::parse("2026/27").unwrap();
        let ne: Region = "north_east".parse().unwrap();
        let general = Targeting::default();
        let north_east = Targeting {
            regions: BTreeSet::from([ne]),
            ..Default::default()
        };
        let ne_micro = Targeting {
            size_bands: BTreeSet::from([SizeBand::Micro]),
            ..north_east.clone()
        };
        let lines = vec![
            (BudgetLineId::new("general"), fy, general),
            (BudgetLineId::new("ne"), fy, north_east),
            (BudgetLineId::new("ne-micro"), fy, ne_micro),
        ];
        let org = |region: &str, band| Organisation {
            region: region.parse().unwrap(),
            sic_section: SicSection::parse("J").unwrap(),
            size_band: band,
        };
        assert_eq!(
            choose_line(&lines, fy, &org("north_east", SizeBand::Micro)).map(BudgetLineId::as_str),
            Some("ne-micro")
        );
        assert_eq!(
            choose_line(&lines, fy, &org("north_east", SizeBand::Small)).map(BudgetLineId::as_str),
            Some("ne")
        );
        assert_eq!(
            choose_line(&lines, fy, &org("london", SizeBand::Small)).map(BudgetLineId::as_str),
            Some("general")
        );
        let next = FinancialYear::parse("2027/28").unwrap();
        assert_eq!(
            choose_line(&lines, next, &org("london", SizeBand::Small)).map(BudgetLineId::as_str),
            None
        );
    }
    #[test]
    fn a_bonus_never_comes_from_a_line_the_organisation_does_not_match() {
        let fy = FinancialYear::parse("2026/27").unwrap();
        let region = |r: &str| Targeting {
            regions: BTreeSet::from([r.parse::<Region>().unwrap()]),
            ..Default::default()
        };
        let line = |id: &str, t: Targeting, available_micros: i64| LineBalance {
            id: BudgetLineId::new(id),
            year: fy,
            targeting: t,
            available_micros,
        };
        let yorkshire = Organisation {
            region: "yorkshire_and_the_humber".parse().unwrap(),
            sic_section: SicSection::parse("J").unwrap(),
            size_band: SizeBand::Small,
        };
        let lines = vec![
            line("ne", region("north_east"), 1_000),
            line("yh", region("yorkshire_and_the_humber"), 100),
            line("general", Targeting::default(), 1_000),
        ];
        // The rule names the North East line: not for a Yorkshire company.
        assert_eq!(
            choose_bonus_line(
                &lines,
                &[&BudgetLineId::new("ne"), &BudgetLineId::new("yh")],
                fy,
                &yorkshire,
                100
            )
            .map(BudgetLineId::as_str),
            Some("yh")
        );
        // The voucher's own line is short: the most specific other matching line.
        assert_eq!(
            choose_bonus_line(
                &lines,
                &[&BudgetLineId::new("ne"), &BudgetLineId::new("yh")],
                fy,
                &yorkshire,
                101
            )
            .map(BudgetLineId::as_str),
            Some("general")
        );
        // Only lines it does not match have money: the fund.
        let only_ne = vec![line("ne", region("north_east"), 1_000)];
        assert_eq!(
            choose_bonus_line(&only_ne, &[&BudgetLineId::new("ne")], fy, &yorkshire, 1)
                .map(BudgetLineId::as_str),
            None
        );
        // Another year's lines are used only when named.
        let next = FinancialYear::parse("2027/28").unwrap();
        assert_eq!(
            choose_bonus_line(&lines, &[], next, &yorkshire, 1).map(BudgetLineId::as_str),
            None
        );
        assert_eq!(
            choose_bonus_line(&lines, &[&BudgetLineId::new("yh")], next, &yorkshire, 1)
                .map(BudgetLineId::as_str),
            Some("yh")
        );
    }
}
