//! Innovation challenges, after Innovate UK's Innovation Funding Service: milestones that
//! order themselves, a status derived from them (never a stored flag), criteria with maxima and
//! weights, allocation of entries to assessors round-robin by load without conflicts, scores
//! as percentages in basis points (integers, never floats), ranking and the line drawn by
//! places.

use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

crate::text_enum! {
    /// Who may enter a challenge.
    pub enum OrganisationKind {
        /// A company incorporated within the programme's start-up age limit.
        Startup = "startup",
        /// A company spun off from a university, which it names.
        UniversitySpinOff = "university_spin_off",
        /// A small or medium-sized enterprise.
        Sme = "sme",
    }
}

impl OrganisationKind {
    /// How people call it: "University spin-off".
    pub fn label(self) -> &'static str {
        match self {
            OrganisationKind::Startup => "Start-up",
            OrganisationKind::UniversitySpinOff => "University spin-off",
            OrganisationKind::Sme => "Small or medium-sized enterprise (SME)",
        }
    }
}

crate::text_enum! {
    /// How an administrator found the evidence of an entry's kind (a startup's age, a
    /// spin-off's university); an entry with evidence is ranked only once it is accepted.
    pub enum KindCheck {
        /// Not yet checked.
        Unchecked = "unchecked",
        /// Accepted: the entry may be ranked.
        Accepted = "accepted",
        /// Rejected, with a reason: the entry is not ranked.
        Rejected = "rejected",
    }
}

/// What an entry as a startup or university spin-off shows of its kind; an administrator
/// checks it before the entry can be ranked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindEvidence {
    pub incorporated_on: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub university: Option<String>,
}

impl KindEvidence {
    /// The evidence an entry as `kind` must carry, checked on `today`: a startup was
    /// incorporated within the last `startup_max_age_years`, a spin-off names its university;
    /// an SME carries none (its size is its application's). Refusals name the field.
    pub fn parse(
        kind: OrganisationKind,
        incorporated_on: Option<NaiveDate>,
        university: Option<&str>,
        today: NaiveDate,
        startup_max_age_years: u32,
    ) -> Result<Option<KindEvidence>, (&'static str, String)> {
        if kind == OrganisationKind::Sme {
            return Ok(None);
        }
        let incorporated_on = incorporated_on.ok_or((
            "evidence.incorporated_on",
            format!(
                "an entry as {} must give its incorporation date",
                kind.as_str()
            ),
        ))?;
        if incorporated_on > today {
            return Err((
                "evidence.incorporated_on",
                "must not be in the future".into(),
            ));
        }
        let university = university.map(str::trim).filter(|u| !u.is_empty());
        match kind {
            OrganisationKind::Startup => {
                let earliest = today
                    .checked_sub_months(chrono::Months::new(
                        startup_max_age_years.saturating_mul(12),
                    ))
                    .unwrap_or(NaiveDate::MIN);
                if incorporated_on < earliest {
                    return Err((
                        "evidence.incorporated_on",
                        format!(
                            "a startup was incorporated within the last {startup_max_age_years} years (on or after {earliest})"
                        ),
                    ));
                }
            }
            OrganisationKind::UniversitySpinOff => match university {
                Some(u) if u.chars().count() <= 200 => {}
                Some(_) => {
                    return Err((
                        "evidence.university",
                        "must be at most 200 characters".into(),
                    ))
                }
                None => {
                    return Err((
                        "evidence.university",
                        "a university spin-off must name its university".into(),
                    ))
                }
            },
            OrganisationKind::Sme => {}
        }
        Ok(Some(KindEvidence {
            incorporated_on,
            university: (kind == OrganisationKind::UniversitySpinOff)
                .then(|| university.map(str::to_string))
                .flatten(),
        }))
    }
}

/// The five dates of a challenge cycle, strictly in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Milestones {
    opens_at: NaiveDateTime,
    closes_at: NaiveDateTime,
    assessors_assigned_at: NaiveDateTime,
    assessment_deadline: NaiveDateTime,
    decisions_released_at: NaiveDateTime,
}

crate::text_enum! {
    /// A milestone of a challenge cycle, whose side effects the worker performs once.
    pub enum Milestone {
        /// Entries are first accepted.
        Opens = "opens",
        /// Entries lock.
        Closes = "closes",
        /// Entries are allocated to assessors.
        AssessorsAssigned = "assessors_assigned",
        /// Scores are no longer accepted.
        AssessmentDeadline = "assessment_deadline",
        /// Results are published and awards paid.
        DecisionsReleased = "decisions_released",
    }
}

crate::text_enum! {
    /// Where a challenge stands, derived from its milestones and the time.
    pub enum Status {
        /// Announced; entries not yet accepted.
        Upcoming = "upcoming",
        /// Entries may be submitted and edited.
        Open = "open",
        /// Entries are locked; assessors not yet assigned.
        Closed = "closed",
        /// Assessors score their allocated entries.
        InAssessment = "in_assessment",
        /// Scores are in; the panel meets before decisions are released.
        Panel = "panel",
        /// Results are out.
        Decided = "decided",
    }
}

/// Where a challenge stands as the API and the pages show it: the [`Status`] its milestones
/// give, or cancelled (which no milestone undoes). On the wire, the status's spelling or
/// `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Live(Status),
    Cancelled,
}

impl Standing {
    pub const fn as_str(self) -> &'static str {
        match self {
            Standing::Live(s) => s.as_str(),
            Standing::Cancelled => "cancelled",
        }
    }

    /// The milestones' status, unless the challenge was cancelled.
    pub fn status(self) -> Option<Status> {
        match self {
            Standing::Live(s) => Some(s),
            Standing::Cancelled => None,
        }
    }
}

/// The status's values and `cancelled`, each with its meaning.
impl utoipa::PartialSchema for Standing {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut values = Status::DOCUMENTED.to_vec();
        values.push(("cancelled", &["Cancelled before decisions were released."]));
        crate::schema::one_of(
            &["Where a challenge stands: the status its milestone dates give at the time, or `cancelled`."],
            &values,
        )
    }
}

impl utoipa::ToSchema for Standing {
    fn name() -> std::borrow::Cow<'static, str> {
        "ChallengeStatus".into()
    }
}

impl From<Status> for Standing {
    fn from(s: Status) -> Standing {
        Standing::Live(s)
    }
}

impl Serialize for Standing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Milestones {
    /// Refuses dates out of order, naming the first field that is.
    pub fn parse(
        opens_at: NaiveDateTime,
        closes_at: NaiveDateTime,
        assessors_assigned_at: NaiveDateTime,
        assessment_deadline: NaiveDateTime,
        decisions_released_at: NaiveDateTime,
    ) -> Result<Milestones, (&'static str, String)> {
        let order = [
            ("opens_at", opens_at),
            ("closes_at", closes_at),
            ("assessors_assigned_at", assessors_assigned_at),
            ("assessment_deadline", assessment_deadline),
            ("decisions_released_at", decisions_released_at),
        ];
        for pair in order.windows(2) {
            if pair[1].1 <= pair[0].1 {
                return Err((pair[1].0, format!("must be after {}", pair[0].0)));
            }
        }
        Ok(Milestones {
            opens_at,
            closes_at,
            assessors_assigned_at,
            assessment_deadline,
            decisions_released_at,
        })
    }

    pub fn at(&self, m: Milestone) -> NaiveDateTime {
        match m {
            Milestone::Opens => self.opens_at,
            Milestone::Closes => self.closes_at,
            Milestone::AssessorsAssigned => self.assessors_assigned_at,
            Milestone::AssessmentDeadline => self.assessment_deadline,
            Milestone::DecisionsReleased => self.decisions_released_at,
        }
    }

    pub fn status(&self, now: NaiveDateTime) -> Status {
        if now < self.opens_at {
            Status::Upcoming
        } else if now < self.closes_at {
            Status::Open
        } else if now < self.assessors_assigned_at {
            Status::Closed
        } else if now < self.assessment_deadline {
            Status::InAssessment
        } else if now < self.decisions_released_at {
            Status::Panel
        } else {
            Status::Decided
        }
    }

    /// The same cycle moved so that it opens at `opens_at` (a recurring challenge's next one).
    pub fn shifted_to(&self, opens_at: NaiveDateTime) -> Milestones {
        let d = opens_at - self.opens_at;
        Milestones {
            opens_at,
            closes_at: self.closes_at + d,
            assessors_assigned_at: self.assessors_assigned_at + d,
            assessment_deadline: self.assessment_deadline + d,
            decisions_released_at: self.decisions_released_at + d,
        }
    }
}

/// A recurring challenge's schedule: a cron expression (seconds minutes hours day-of-month
/// month day-of-week, UTC) giving when each next cycle opens.
pub fn parse_recurrence(expression: &str) -> Result<String, String> {
    use std::str::FromStr;
    let trimmed = expression.trim();
    cron::Schedule::from_str(trimmed)
        .map(|_| trimmed.to_string())
        .map_err(|e| format!("is not a cron expression (sec min hour day month weekday): {e}"))
}

/// One scoring criterion. Names are distinct within a challenge (ignoring case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// The highest score an assessor may give (the lowest is 0).
    #[schema(minimum = 1, maximum = 100)]
    pub max_score: u32,
    /// Relative weight of the criterion in the percentage score.
    #[schema(minimum = 1, maximum = 100)]
    pub weight: u32,
}

/// Criteria, checked: 1 to 20 of them, distinct names, maxima 1–100, weights 1–100.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Criteria(Vec<Criterion>);

impl Criteria {
    pub fn parse(list: Vec<Criterion>) -> Result<Criteria, String> {
        if list.is_empty() || list.len() > 20 {
            return Err("must list 1 to 20 criteria".into());
        }
        let mut names = BTreeSet::new();
        for c in &list {
            let name = c.name.trim();
            if name.is_empty() || name.len() > 100 {
                return Err("each criterion needs a name of 1 to 100 characters".into());
            }
            if !names.insert(name.to_lowercase()) {
                return Err(format!("criterion {name:?} is listed twice"));
            }
            if !(1..=100).contains(&c.max_score) || !(1..=100).contains(&c.weight) {
                return Err(format!(
                    "criterion {name:?}: max_score and weight must be 1 to 100"
                ));
            }
        }
        Ok(Criteria(list))
    }

    pub fn list(&self) -> &[Criterion] {
        &self.0
    }

    /// An assessor's scores as a weighted percentage in basis points (0–10,000): Σ weight ×
    /// score / max, over Σ weight. Refuses a missing, unknown or out-of-range score, naming it.
    pub fn percent_bp(&self, scores: &BTreeMap<String, u32>) -> Result<i64, (String, String)> {
        if let Some(unknown) = scores
            .keys()
            .find(|k| !self.0.iter().any(|c| &c.name == *k))
        {
            return Err((
                unknown.clone(),
                "is not a criterion of this challenge".into(),
            ));
        }
        let mut terms: Vec<(i128, i128)> = Vec::with_capacity(self.0.len());
        let mut weights = 0_i128;
        for c in &self.0 {
            let s = *scores
                .get(&c.name)
                .ok_or_else(|| (c.name.clone(), "is missing".to_string()))?;
            if s > c.max_score {
                return Err((
                    c.name.clone(),
                    format!("must be between 0 and {}", c.max_score),
                ));
            }
            terms.push((
                i128::from(c.weight) * i128::from(s),
                i128::from(c.max_score),
            ));
            weights += i128::from(c.weight);
        }
        // Exactly: Σ (weight × score / max) over Σ weight, on the maxima's common multiple
        // (at most 20 maxima of 1–100, so it fits an i128 for any realistic set; should it
        // not, on a scale of 10^12, far below the half basis point that rounding decides).
        let common = terms
            .iter()
            .try_fold(1_i128, |l, (_, max)| lcm(l, *max))
            .unwrap_or(1_000_000_000_000);
        let num: i128 = terms.iter().map(|(ws, max)| ws * (common / max)).sum();
        let bp = div_round_half_up(num * 10_000, common * weights);
        Ok(i64::try_from(bp).unwrap_or(i64::MAX))
    }
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: i128, b: i128) -> Option<i128> {
    (a / gcd(a, b)).checked_mul(b)
}

/// `numerator / denominator` rounded half up, in integers (both non-negative; a zero
/// denominator gives 0).
pub fn div_round_half_up(numerator: i128, denominator: i128) -> i128 {
    if denominator <= 0 {
        return 0;
    }
    (2 * numerator + denominator) / (2 * denominator)
}

/// The mean of assessors' percentages, in basis points (rounded half up); `None` with none.
pub fn mean_bp(scores: &[i64]) -> Option<i64> {
    (!scores.is_empty()).then(|| {
        let sum: i128 = scores.iter().map(|s| i128::from(*s)).sum();
        i64::try_from(div_round_half_up(sum, scores.len() as i128)).unwrap_or(i64::MAX)
    })
}

/// A percentage in basis points, as shown: 9,167 → "91.67".
pub fn format_percent_bp(bp: i64) -> String {
    format!("{}.{:02}", bp / 100, (bp % 100).abs())
}

/// Whether a recurring challenge's cycle opening at `opens_at` may be created at `now`: only
/// once the financial year it opens in has begun, so its pool is set aside from that year's
/// fund and not months ahead.
pub fn cycle_due(opens_at: NaiveDateTime, now: NaiveDateTime, fy_start_month: u32) -> bool {
    let year_starts = crate::eligibility::financial_year_start(opens_at.date(), fy_start_month);
    now.date() >= year_starts
}

/// The title of a recurring challenge's next cycle, for the year it opens: each year of the
/// previous cycle standing on its own in the title becomes the new one; a title naming no
/// year gets the new year added.
pub fn cycle_title(previous_title: &str, previous_year: i32, year: i32) -> String {
    let old = previous_year.to_string();
    let chars: Vec<char> = previous_title.chars().collect();
    let mut out = String::with_capacity(previous_title.len() + 5);
    let mut replaced = false;
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let run: String = chars[start..i].iter().collect();
            if run == old {
                out.push_str(&year.to_string());
                replaced = true;
            } else {
                out.push_str(&run);
            }
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    if replaced {
        out
    } else {
        format!("{} {year}", previous_title.trim_end())
    }
}

/// Allocates each entry to `per_entry` assessors: the least loaded first (ties in the order
/// given), never one with a conflict of interest with the entry's organisation. Returns
/// entry → assessors, and the entries that got fewer than `per_entry` (too few free of
/// conflict).
pub fn allocate(
    entries: &[(String, String)],
    assessors: &[String],
    per_entry: usize,
    conflicts: &BTreeSet<(String, String)>,
) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut load: BTreeMap<&str, usize> = assessors.iter().map(|a| (a.as_str(), 0)).collect();
    let mut out = BTreeMap::new();
    let mut short = Vec::new();
    for (entry, organisation) in entries {
        let mut free: Vec<(usize, usize, &str)> = assessors
            .iter()
            .enumerate()
            .filter(|(_, a)| !conflicts.contains(&((*a).clone(), organisation.clone())))
            .map(|(i, a)| (load[a.as_str()], i, a.as_str()))
            .collect();
        free.sort();
        let chosen: Vec<String> = free
            .into_iter()
            .take(per_entry)
            .map(|(_, _, a)| a.to_string())
            .collect();
        for a in &chosen {
            if let Some(l) = load.get_mut(a.as_str()) {
                *l += 1;
            }
        }
        if chosen.len() < per_entry {
            short.push(entry.clone());
        }
        out.insert(entry.clone(), chosen);
    }
    (out, short)
}

/// The assessor who takes over an entry from one who declared a conflict of interest with it:
/// the least loaded of `assessors` (ties in the order given) who is neither already on the
/// entry nor in conflict with its organisation. `None` when nobody is free, and the entry is
/// left short of assessors, as [`allocate`] leaves one.
pub fn replacement<'a>(
    assessors: &'a [String],
    load: &BTreeMap<String, usize>,
    on_entry: &BTreeSet<String>,
    conflicted: &BTreeSet<String>,
) -> Option<&'a str> {
    assessors
        .iter()
        .enumerate()
        .filter(|(_, a)| !on_entry.contains(*a) && !conflicted.contains(*a))
        .min_by_key(|(i, a)| (load.get(*a).copied().unwrap_or(0), *i))
        .map(|(_, a)| a.as_str())
}

/// An entry's standing after scoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked {
    pub entry_id: crate::EntryId,
    pub score_bp: Option<i64>,
    pub rank: usize,
    /// Award in micros; 0 below the line.
    pub award_micros: i64,
    pub pilot: bool,
}

/// Ranks entries by score (highest first; unscored last; ties to the earlier submission) and
/// draws the line: the first `awards.len()` receive those awards in order, the first
/// `pilot_places` are invited to a pilot. Entries are `(id, score, submitted_at)`.
pub fn rank(
    entries: &[(crate::EntryId, Option<i64>, NaiveDateTime)],
    awards: &[i64],
    pilot_places: usize,
) -> Vec<Ranked> {
    let mut sorted: Vec<&(crate::EntryId, Option<i64>, NaiveDateTime)> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        b.1.is_some()
            .cmp(&a.1.is_some())
            .then(b.1.cmp(&a.1))
            .then(a.2.cmp(&b.2))
            .then(a.0.cmp(&b.0))
    });
    sorted
        .into_iter()
        .enumerate()
        .map(|(i, (id, score, _))| {
            // Only a scored entry can win.
            let eligible = score.is_some();
            Ranked {
                entry_id: id.clone(),
                score_bp: *score,
                rank: i + 1,
                award_micros: if eligible {
                    awards.get(i).copied().unwrap_or(0)
                } else {
                    0
                },
                pilot: eligible && i < pilot_places,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn t(d: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2027, 3, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
    }

    fn milestones() -> Milestones {
        Milestones::parse(t(1, 9), t(10, 17), t(11, 9), t(20, 17), t(25, 9)).unwrap()
    }

    #[test]
    fn a_replacement_is_the_least_loaded_assessor_free_of_the_entry_and_of_conflict() {
        let names = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let set = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
        let assessors = names(&["ann", "bob", "cat", "dan"]);
        let load: BTreeMap<String, usize> = [("ann", 0), ("bob", 3), ("cat", 1), ("dan", 1)]
            .into_iter()
            .map(|(a, n)| (a.to_string(), n))
            .collect();
        // Ann declared the conflict; Cat and Dan tie on load and Cat comes first.
        assert_eq!(
            replacement(&assessors, &load, &set(&["bob"]), &set(&["ann"])),
            Some("cat")
        );
        // Cat is already on the entry.
        assert_eq!(
            replacement(&assessors, &load, &set(&["cat"]), &set(&["ann"])),
            Some("dan")
        );
        // Nobody is free: the entry stays short.
        assert_eq!(
            replacement(
                &assessors,
                &load,
                &set(&["bob", "cat"]),
                &set(&["ann", "dan"])
            ),
            None
        );
    }

    #[test]
    fn status_follows_the_dates() {
        let m = milestones();
        assert_eq!(m.status(t(1, 8)), Status::Upcoming);
        assert_eq!(m.status(t(1, 9)), Status::Open);
        assert_eq!(m.status(t(10, 17)), Status::Closed);
        assert_eq!(m.status(t(15, 0)), Status::InAssessment);
        assert_eq!(m.status(t(21, 0)), Status::Panel);
        assert_eq!(m.status(t(25, 9)), Status::Decided);
        let next = m.shifted_to(t(1, 9) + chrono::Duration::days(365));
        assert_eq!(
            next.at(Milestone::DecisionsReleased),
            t(25, 9) + chrono::Duration::days(365)
        );
    }

    #[test]
    fn a_recurrence_must_be_a_cron_expression() {
        assert_eq!(parse_recurrence(" 0 0 9 1 4 * ").unwrap(), "0 0 9 1 4 *");
        assert!(parse_recurrence("every april").is_err());
    }

    #[test]
    fn milestones_out_of_order_are_refused_by_name() {
        let e = Milestones::parse(t(1, 9), t(10, 17), t(10, 17), t(20, 17), t(25, 9)).unwrap_err();
        assert_eq!(e.0, "assessors_assigned_at");
    }

    fn criteria() -> Criteria {
        Criteria::parse(vec![
            Criterion {
                name: "innovation".into(),
                max_score: 10,
                weight: 3,
            },
            Criterion {
                name: "impact".into(),
                max_score: 5,
                weight: 1,
            },
        ])
        .unwrap()
    }

    #[test]
    fn a_score_is_a_weighted_percentage_in_basis_points() {
        let s = |i, m| BTreeMap::from([("innovation".to_string(), i), ("impact".to_string(), m)]);
        assert_eq!(criteria().percent_bp(&s(10, 5)), Ok(10_000));
        // (3 × 7/10 + 1 × 2/5) / 4 = (2.1 + 0.4) / 4 = 62.5%.
        assert_eq!(criteria().percent_bp(&s(7, 2)), Ok(6_250));
        assert_eq!(
            criteria().percent_bp(&s(11, 2)).unwrap_err().0,
            "innovation"
        );
        let missing = BTreeMap::from([("innovation".to_string(), 3)]);
        assert_eq!(criteria().percent_bp(&missing).unwrap_err().0, "impact");
        let mut extra = s(1, 1);
        extra.insert("charm".into(), 1);
        assert_eq!(criteria().percent_bp(&extra).unwrap_err().0, "charm");
        // 19,583 / 3 = 6,527.67: rounded half up.
        assert_eq!(mean_bp(&[6_250, 10_000, 3_333]), Some(6_528));
        assert_eq!(mean_bp(&[]), None);
    }

    #[test]
    fn percentages_round_half_up_to_two_places() {
        // 91.665 → 91.67, 91.664 → 91.66: basis points from thousandths of a percent.
        assert_eq!(div_round_half_up(91_665, 10), 9_167);
        assert_eq!(div_round_half_up(91_664, 10), 9_166);
        assert_eq!(div_round_half_up(91_660, 10), 9_166);
        assert_eq!(format_percent_bp(9_167), "91.67");
        assert_eq!(format_percent_bp(905), "9.05");
        // Three assessors: 91.67, 91.66, 91.67 → 91.6666… → 91.67, not 91.66.
        assert_eq!(mean_bp(&[9_167, 9_166, 9_167]), Some(9_167));
        // A tie between two: 91.66 and 91.67 → 91.665 → 91.67.
        assert_eq!(mean_bp(&[9_166, 9_167]), Some(9_167));
        // One criterion, 11 of 12: 91.666…% → 91.67.
        let one = Criteria::parse(vec![Criterion {
            name: "fit".into(),
            max_score: 12,
            weight: 1,
        }])
        .unwrap();
        let s = BTreeMap::from([("fit".to_string(), 11)]);
        assert_eq!(one.percent_bp(&s), Ok(9_167));
        // Weighted: (2 × 1/3 + 1 × 2/3) / 3 = 4/9 = 44.444…% → 44.44.
        let two = Criteria::parse(vec![
            Criterion {
                name: "a".into(),
                max_score: 3,
                weight: 2,
            },
            Criterion {
                name: "b".into(),
                max_score: 3,
                weight: 1,
            },
        ])
        .unwrap();
        let s = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 2)]);
        assert_eq!(two.percent_bp(&s), Ok(4_444));
    }

    #[test]
    fn a_cycle_is_created_when_its_financial_year_begins_and_titled_for_its_year() {
        let at = |y, m, d| {
            NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(9, 0, 0)
                .unwrap()
        };
        let opens = at(2027, 4, 1);
        assert!(!cycle_due(opens, at(2026, 12, 6), 4));
        assert!(!cycle_due(opens, at(2027, 3, 31), 4));
        assert!(cycle_due(
            opens,
            at(2027, 4, 1) - chrono::Duration::hours(9),
            4
        ));
        assert_eq!(
            cycle_title("AI for manufacturing 2026", 2026, 2027),
            "AI for manufacturing 2027"
        );
        assert_eq!(
            cycle_title("Round 12026 of 2026", 2026, 2027),
            "Round 12026 of 2027"
        );
        assert_eq!(
            cycle_title("AI for retail", 2026, 2027),
            "AI for retail 2027"
        );
    }

    #[test]
    fn startups_and_spin_offs_carry_evidence_of_their_kind() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        let today = d(2026, 12, 6);
        let p = |k, i, u| KindEvidence::parse(k, i, u, today, 5);
        assert_eq!(p(OrganisationKind::Sme, None, None), Ok(None));
        assert_eq!(
            p(OrganisationKind::Startup, None, None).unwrap_err().0,
            "evidence.incorporated_on"
        );
        assert!(p(OrganisationKind::Startup, Some(d(2021, 12, 6)), None).is_ok());
        assert_eq!(
            p(OrganisationKind::Startup, Some(d(2021, 12, 5)), None)
                .unwrap_err()
                .0,
            "evidence.incorporated_on"
        );
        assert!(p(OrganisationKind::Startup, Some(d(2026, 12, 7)), None).is_err());
        assert_eq!(
            p(
                OrganisationKind::UniversitySpinOff,
                Some(d(2010, 1, 1)),
                Some(" ")
            )
            .unwrap_err()
            .0,
            "evidence.university"
        );
        let ok = p(
            OrganisationKind::UniversitySpinOff,
            Some(d(2010, 1, 1)),
            Some(" Newcastle University "),
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.university.as_deref(), Some("Newcastle University"));
    }

    #[test]
    fn bad_criteria_are_refused() {
        assert!(Criteria::parse(vec![]).is_err());
        let c = |n: &str, m, w| Criterion {
            name: n.into(),
            max_score: m,
            weight: w,
        };
        assert!(Criteria::parse(vec![c("a", 0, 1)]).is_err());
        assert!(Criteria::parse(vec![c("a", 5, 101)]).is_err());
        assert!(Criteria::parse(vec![c("a", 5, 1), c("A", 5, 1)]).is_err());
    }

    #[test]
    fn allocation_balances_load_and_avoids_conflicts() {
        let entries: Vec<(String, String)> = (1..=4)
            .map(|i| (format!("e{i}"), format!("ORG{i}")))
            .collect();
        let assessors: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let conflicts = BTreeSet::from([("a".to_string(), "ORG1".to_string())]);
        let (out, short) = allocate(&entries, &assessors, 2, &conflicts);
        assert!(short.is_empty());
        assert_eq!(out["e1"], ["b", "c"]);
        assert_eq!(out["e2"], ["a", "b"]);
        assert_eq!(out["e3"], ["a", "c"]);
        assert_eq!(out["e4"], ["a", "b"]);
        // Loads end 3, 3, 2: never more than one apart.
        let all = BTreeSet::from([
            ("a".to_string(), "ORG1".to_string()),
            ("b".to_string(), "ORG1".to_string()),
        ]);
        let (out, short) = allocate(&entries[..1], &assessors, 2, &all);
        assert_eq!(out["e1"], ["c"]);
        assert_eq!(short, ["e1"]);
    }

    #[test]
    fn ranking_draws_the_line_by_places() {
        let e = |id: &str, s: Option<i64>, d| (crate::EntryId::new(id), s, t(d, 9));
        let ranked = rank(
            &[
                e("x", Some(5_000), 3),
                e("y", Some(8_000), 4),
                e("z", Some(8_000), 2),
                e("w", None, 1),
            ],
            &[3_000_000, 1_000_000],
            3,
        );
        let order: Vec<(&str, i64, bool)> = ranked
            .iter()
            .map(|r| (r.entry_id.as_str(), r.award_micros, r.pilot))
            .collect();
        assert_eq!(
            order,
            [
                ("z", 3_000_000, true),
                ("y", 1_000_000, true),
                ("x", 0, true),
                ("w", 0, false)
            ]
        );
    }
}
