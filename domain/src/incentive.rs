//! Tailored incentives: rules with a condition on the organisation and an effect on its
//! voucher. Evaluated at approval: which rules matched and why, the resulting amount, never
//! more than the configured cap on top of the standard voucher, and never past the Minimal
//! Financial Assistance headroom (milestone bonuses included, as they will be granted later).

use crate::budget::{SicSection, SizeBand};
use crate::{Money, Region};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Whom a rule is for. Every property is optional; every condition given must hold, and an
/// empty condition matches every organisation.
// The limits published by `#[schema]` are enforced by `Condition::check` and the types.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IncentiveCondition)]
pub struct Condition {
    /// Empty or absent means any region.
    #[serde(default)]
    #[schema(max_items = 12)]
    pub regions: BTreeSet<Region>,
    /// SIC 2007 section letters. Empty or absent means any section.
    #[serde(default)]
    #[schema(max_items = 21)]
    pub sic_sections: BTreeSet<SicSection>,
    /// Empty or absent means any size.
    #[serde(default)]
    #[schema(max_items = 3)]
    pub size_bands: BTreeSet<SizeBand>,
    /// Trading for at most this many years. Null or absent means any.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 50)]
    pub founded_within_years: Option<u32>,
    /// When true, only university spin-offs.
    #[serde(default)]
    #[schema(default = false)]
    pub university_spin_off: bool,
    /// When true, only companies with no earlier application.
    #[serde(default)]
    #[schema(default = false)]
    pub first_time_applicant: bool,
}

/// What triggers a milestone bonus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = IncentiveTrigger)]
pub enum Trigger {
    /// The voucher's first `count` metered requests have settled.
    RequestsSettled {
        #[schema(minimum = 1, maximum = 10_000_000)]
        count: u32,
    },
    /// A consulting session on the voucher was attended.
    // A struct variant, not a unit one: serde ignores extra fields beside the tag of a unit
    // variant, `deny_unknown_fields` or not. Written the same way:
    // `{"kind": "consulting_session_completed"}`.
    ConsultingSessionCompleted {},
}

/// What a rule does, by `kind`.
// The limits published by `#[schema]` are enforced by `Effect::check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = IncentiveEffect)]
pub enum Effect {
    /// This percentage of the standard voucher on top.
    UpliftPercent {
        #[schema(minimum = 1, maximum = 200)]
        percent: u32,
    },
    /// A fixed amount on top.
    FixedBonus {
        /// More than 0.
        amount: Money,
    },
    /// The organisation's co-funding share may be at most this percentage.
    CoFundingCap {
        #[schema(minimum = 0, maximum = 100)]
        percent: u32,
    },
    /// `amount` more, granted by the worker when `trigger` happens, from the rule's budget
    /// line or, when it has none, the programme fund.
    MilestoneBonus {
        /// More than 0.
        amount: Money,
        trigger: Trigger,
    },
    /// More technical consulting hours with the voucher, on top of the standard allowance.
    ConsultingHours {
        #[schema(minimum = 1, maximum = 100)]
        hours: u32,
    },
}

impl Condition {
    pub fn check(&self) -> Result<(), (String, String)> {
        if let Some(y) = self.founded_within_years {
            if !(1..=50).contains(&y) {
                return Err((
                    "condition.founded_within_years".into(),
                    "must be 1 to 50".into(),
                ));
            }
        }
        Ok(())
    }
}

impl Effect {
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: &str| Err((format!("effect.{f}"), m.to_string()));
        match *self {
            Effect::UpliftPercent { percent } if !(1..=200).contains(&percent) => {
                bad("percent", "must be 1 to 200")
            }
            Effect::CoFundingCap { percent } if percent > 100 => bad("percent", "must be 0 to 100"),
            Effect::ConsultingHours { hours } if !(1..=100).contains(&hours) => {
                bad("hours", "must be 1 to 100")
            }
            Effect::FixedBonus { amount } | Effect::MilestoneBonus { amount, .. }
                if amount.is_zero() =>
            {
                bad("amount", "must be more than 0")
            }
            Effect::MilestoneBonus {
                trigger: Trigger::RequestsSettled { count },
                ..
            } if !(1..=10_000_000).contains(&count) => {
                bad("trigger.count", "must be 1 to 10000000")
            }
            _ => Ok(()),
        }
    }
}

/// What is known of the organisation at approval.
#[derive(Debug, Clone, Copy)]
pub struct Organisation {
    pub region: Region,
    pub sic_section: SicSection,
    pub size_band: SizeBand,
    pub trading_since: NaiveDate,
    pub university_spin_off: bool,
    pub first_time_applicant: bool,
}

/// A rule as evaluated: its stored version.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub key: String,
    pub version: i32,
    pub name: String,
    pub condition: Condition,
    pub effect: Effect,
}

impl Condition {
    /// Whether it holds, and why, in words for the administrator.
    pub fn explain(&self, o: &Organisation, today: NaiveDate) -> (bool, Vec<String>) {
        let mut why = Vec::new();
        let mut ok = true;
        let mut test = |holds: bool, text: String| {
            ok &= holds;
            why.push(format!("{}{text}", if holds { "" } else { "not " }));
        };
        if !self.regions.is_empty() {
            test(
                self.regions.contains(&o.region),
                format!("in {}", o.region.as_str()),
            );
        }
        if !self.sic_sections.is_empty() {
            test(
                self.sic_sections.contains(&o.sic_section),
                format!("in SIC section {}", o.sic_section.letter()),
            );
        }
        if !self.size_bands.is_empty() {
            test(
                self.size_bands.contains(&o.size_band),
                format!("{:?} size band", o.size_band).to_lowercase(),
            );
        }
        if let Some(years) = self.founded_within_years {
            let limit = today
                .checked_sub_months(chrono::Months::new(years.saturating_mul(12)))
                .unwrap_or(NaiveDate::MIN);
            test(
                o.trading_since >= limit,
                format!("trading since {} (within {years} years)", o.trading_since),
            );
        }
        if self.university_spin_off {
            test(o.university_spin_off, "a university spin-off".into());
        }
        if self.first_time_applicant {
            test(o.first_time_applicant, "a first-time applicant".into());
        }
        if why.is_empty() {
            why.push("applies to every organisation".into());
        }
        (ok, why)
    }
}

/// One matched rule and what it adds.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub rule_id: String,
    pub key: String,
    pub version: i32,
    pub name: String,
    pub why: Vec<String>,
    pub effect: Effect,
    /// Added to the voucher now (after the cap), in micros.
    pub now_micros: i64,
    /// Granted later by the worker (milestone bonuses), in micros.
    pub later_micros: i64,
}

/// The evaluation shown before an approval and stored with the voucher.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub base_micros: i64,
    pub applied: Vec<Applied>,
    pub not_matched: Vec<(String, Vec<String>)>,
    pub extra_micros: i64,
    pub total_micros: i64,
    pub milestones_micros: i64,
    pub co_funding_cap_percent: Option<u32>,
    /// Consulting hours added to the standard allowance.
    pub consulting_hours: u32,
    /// Why less was added than the rules asked for, if it was.
    pub limited_by: Vec<String>,
}

/// Evaluates every rule for an approval of `base` (the standard voucher is `standard`): the
/// immediate extra is capped at `cap_percent` of the standard voucher, and the whole — base,
/// extra and milestone bonuses — at the organisation's MFA `headroom_micros`.
pub fn evaluate(
    rules: &[Rule],
    o: &Organisation,
    today: NaiveDate,
    base: Money,
    standard: Money,
    cap_percent: u32,
    headroom_micros: i64,
) -> Evaluation {
    let mut applied = Vec::new();
    let mut not_matched = Vec::new();
    let mut co_funding_cap_percent: Option<u32> = None;
    let mut consulting_hours = 0_u32;
    for r in rules {
        let (ok, why) = r.condition.explain(o, today);
        if !ok {
            not_matched.push((r.name.clone(), why));
            continue;
        }
        let (now_micros, later_micros) = match r.effect {
            Effect::UpliftPercent { percent } => (i64::from(percent) * standard.micros() / 100, 0),
            Effect::FixedBonus { amount } => (amount.micros(), 0),
            Effect::CoFundingCap { percent } => {
                co_funding_cap_percent =
                    Some(co_funding_cap_percent.map_or(percent, |p| p.min(percent)));
                (0, 0)
            }
            Effect::MilestoneBonus { amount, .. } => (0, amount.micros()),
            Effect::ConsultingHours { hours } => {
                consulting_hours = consulting_hours.saturating_add(hours).min(1_000);
                (0, 0)
            }
        };
        applied.push(Applied {
            rule_id: r.id.clone(),
            key: r.key.clone(),
            version: r.version,
            name: r.name.clone(),
            why,
            effect: r.effect,
            now_micros,
            later_micros,
        });
    }
    let (room_now, mut room_later, limited_by) =
        room(&applied, base, standard, cap_percent, headroom_micros);
    // Spread the allowed amounts over the rules in order.
    let mut left_now = room_now;
    for a in &mut applied {
        let take = a.now_micros.min(left_now);
        a.now_micros = take;
        left_now -= take;
        let later = a.later_micros.min(room_later);
        a.later_micros = later;
        room_later -= later;
    }
    let extra_micros: i64 = applied.iter().map(|a| a.now_micros).sum();
    Evaluation {
        base_micros: base.micros(),
        milestones_micros: applied.iter().map(|a| a.later_micros).sum(),
        applied,
        not_matched,
        extra_micros,
        total_micros: base.micros() + extra_micros,
        co_funding_cap_percent,
        consulting_hours,
        limited_by,
    }
}

/// What the applied rules may add, now and later in micros, within the cap and the MFA
/// headroom, and why less than asked, if it is.
fn room(
    applied: &[Applied],
    base: Money,
    standard: Money,
    cap_percent: u32,
    headroom_micros: i64,
) -> (i64, i64, Vec<String>) {
    let mut limited_by = Vec::new();
    let asked_now: i64 = applied.iter().map(|a| a.now_micros).sum();
    let asked_later: i64 = applied.iter().map(|a| a.later_micros).sum();
    // The cap bounds everything the rules add, now and later together; now comes first.
    let cap = i64::from(cap_percent) * standard.micros() / 100;
    let mut room_now = asked_now.min(cap);
    let capped_later = asked_later.min((cap - room_now).max(0));
    if room_now + capped_later < asked_now + asked_later {
        limited_by.push(format!(
            "incentives add at most {cap_percent}% of the standard voucher (£{})",
            crate::money::format_micros(cap)
        ));
    }
    // MFA: base first, then immediate extras, then milestone bonuses.
    let mfa = "Minimal Financial Assistance limit".to_string();
    let headroom_after_base = (headroom_micros - base.micros()).max(0);
    if room_now > headroom_after_base {
        room_now = headroom_after_base;
        limited_by.push(mfa.clone());
    }
    let room_later = capped_later.min(headroom_after_base - room_now);
    if room_later < capped_later && !limited_by.contains(&mfa) {
        limited_by.push(mfa);
    }
    (room_now, room_later, limited_by)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pounds(p: i64) -> Money {
        Money::from_micros(p * 1_000_000).unwrap()
    }

    fn org() -> Organisation {
        Organisation {
            region: "north_east".parse().unwrap(),
            sic_section: SicSection::parse("J").unwrap(),
            size_band: SizeBand::Small,
            trading_since: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
            university_spin_off: false,
            first_time_applicant: true,
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()
    }

    fn rule(name: &str, condition: Condition, effect: Effect) -> Rule {
        Rule {
            id: format!("{name}-v1"),
            key: name.into(),
            version: 1,
            name: name.into(),
            condition,
            effect,
        }
    }

    #[test]
    fn matching_rules_add_up_within_the_cap() {
        let rules = vec![
            rule(
                "north east",
                Condition {
                    regions: BTreeSet::from(["north_east".parse().unwrap()]),
                    ..Default::default()
                },
                Effect::UpliftPercent { percent: 20 },
            ),
            rule(
                "young",
                Condition {
                    founded_within_years: Some(3),
                    ..Default::default()
                },
                Effect::FixedBonus {
                    amount: pounds(500),
                },
            ),
            rule(
                "spin-off",
                Condition {
                    university_spin_off: true,
                    ..Default::default()
                },
                Effect::FixedBonus {
                    amount: pounds(900),
                },
            ),
            rule(
                "first 1000",
                Condition::default(),
                Effect::MilestoneBonus {
                    amount: pounds(500),
                    trigger: Trigger::RequestsSettled { count: 1000 },
                },
            ),
        ];
        let e = evaluate(
            &rules,
            &org(),
            today(),
            pounds(5000),
            pounds(5000),
            50,
            pounds(300_000).micros(),
        );
        assert_eq!(e.applied.len(), 3);
        assert_eq!(e.not_matched[0].0, "spin-off");
        assert_eq!(e.extra_micros, pounds(1500).micros());
        assert_eq!(e.total_micros, pounds(6500).micros());
        assert_eq!(e.milestones_micros, pounds(500).micros());
        assert!(e.limited_by.is_empty());
        // A 10% cap: at most £500 extra.
        let e = evaluate(
            &rules,
            &org(),
            today(),
            pounds(5000),
            pounds(5000),
            10,
            pounds(300_000).micros(),
        );
        assert_eq!(e.extra_micros, pounds(500).micros());
        assert_eq!(e.limited_by.len(), 1);
    }

    #[test]
    fn the_total_stays_within_the_mfa_headroom() {
        let rules = vec![
            rule(
                "bonus",
                Condition::default(),
                Effect::FixedBonus {
                    amount: pounds(1000),
                },
            ),
            rule(
                "later",
                Condition::default(),
                Effect::MilestoneBonus {
                    amount: pounds(500),
                    trigger: Trigger::ConsultingSessionCompleted {},
                },
            ),
        ];
        // £5,600 of headroom: the base (5,000) fits, £600 of the £1,000 bonus, no milestone.
        let e = evaluate(
            &rules,
            &org(),
            today(),
            pounds(5000),
            pounds(5000),
            50,
            pounds(5600).micros(),
        );
        assert_eq!(e.total_micros, pounds(5600).micros());
        assert_eq!(e.milestones_micros, 0);
        assert!(e
            .limited_by
            .iter()
            .any(|l| l.contains("Minimal Financial Assistance")));
    }

    #[test]
    fn bad_effects_are_named() {
        assert_eq!(
            Effect::UpliftPercent { percent: 0 }.check().unwrap_err().0,
            "effect.percent"
        );
        assert_eq!(
            Effect::FixedBonus {
                amount: Money::ZERO
            }
            .check()
            .unwrap_err()
            .0,
            "effect.amount"
        );
        assert!(Effect::CoFundingCap { percent: 30 }.check().is_ok());
        assert_eq!(
            Effect::ConsultingHours { hours: 0 }.check().unwrap_err().0,
            "effect.hours"
        );
        assert_eq!(
            Condition {
                founded_within_years: Some(0),
                ..Default::default()
            }
            .check()
            .unwrap_err()
            .0,
            "condition.founded_within_years"
        );
    }

    #[test]
    fn rules_refuse_fields_they_do_not_take() {
        let session = r#"{"kind":"milestone_bonus","amount":"10.00","trigger":{"kind":"consulting_session_completed"}}"#;
        let e: Effect = serde_json::from_str(session).unwrap();
        assert_eq!(serde_json::to_string(&e).unwrap(), session);
        for bad in [
            r#"{"kind":"fixed_bonus","amount":"10.00","amout":"20.00"}"#,
            r#"{"kind":"milestone_bonus","amount":"1","trigger":{"kind":"consulting_session_completed","count":5}}"#,
            r#"{"kind":"milestone_bonus","amount":"1","trigger":{"kind":"requests_settled","count":5,"x":1}}"#,
        ] {
            let err = serde_json::from_str::<Effect>(bad).unwrap_err().to_string();
            assert!(err.starts_with("unknown field"), "{bad}: {err}");
        }
        assert!(serde_json::from_str::<Condition>(r#"{"region":["london"]}"#).is_err());
    }
}
