//! Incentive and impact reports: the internal report (JSON with a schema version, HTML with SVG
//! charts) and its public summary, in which every table passes disclosure control and no name
//! or free text appears. Reports read rollups and per-voucher facts, never raw usage rows.

pub mod charts;
pub mod document;

use chrono::NaiveDateTime;
use document::{
    ApplicationFigures, BreakdownRow, BudgetLineFigures, ChallengeCounts, ChallengeOutcome,
    ConsultingFigures, CreditFigures, DecisionDays, DecisionHours, Figures, IncentiveFigures,
    MfaAward, PeriodView, Pounds, PublicAmount, PublicAmountRow, PublicCount, PublicCountRow,
    PublicReport, PublicSummary, Report, UsageFigures, VoucherCounts,
};
use handlebars::Handlebars;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use voucherd_domain::budget::{SicSection, SizeBand};
use voucherd_domain::disclosure::{self, Cell, Published, Rules};
use voucherd_domain::money::format_pounds_display;
use voucherd_domain::{stats, ApplicationStatus, Region, SicCode};
use voucherd_store::reports::{Inputs, ReportRow, VoucherFact};
use voucherd_store::{Store, StoreError};

/// 2: drafts, money in pounds and pence, the steering-group sections and `tables`.
pub const SCHEMA_VERSION: i32 = 2;

pub use voucherd_domain::report_period::{Period, ReportKind as Kind};

/// `n / per` with two decimals, rounded half up: minutes as hours (per 60) or days (per 1,440).
fn hundredths(n: i64, per: i64) -> String {
    let h = (i128::from(n) * 100 + i128::from(per) / 2).div_euclid(i128::from(per));
    format!("{}.{:02}", h / 100, h % 100)
}

fn pct_bp(part: i64, whole: i64) -> Option<String> {
    (whole > 0).then(|| {
        let bp = i128::from(part) * 10_000 / i128::from(whole);
        format!("{}.{:02}", bp / 100, bp % 100)
    })
}

struct Facets {
    region: String,
    sector: String,
    size: String,
    company: String,
}

fn facets(v: &VoucherFact) -> Facets {
    let sector = SicCode::parse(&v.sic_code)
        .ok()
        .and_then(|s| SicSection::parse(&s.section().to_string()).ok())
        .map_or("?".to_string(), |s| s.letter().to_string());
    let size = format!(
        "{:?}",
        SizeBand::of(u32::try_from(v.employees).unwrap_or(0))
    )
    .to_lowercase();
    Facets {
        region: v.region.clone(),
        sector,
        size,
        company: v.company_number.clone(),
    }
}

/// Sums rollups by a key, as a table of `{key, requests, tokens, cost}` sorted by key.
/// Rollups summed by a key: `(key, requests, tokens, cost micros)`, sorted by key.
fn totals_by(
    inputs: &Inputs,
    key: impl Fn(&voucherd_store::rollup::DailyRow) -> String,
) -> Vec<(String, i64, i64, i64)> {
    let mut m: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for r in &inputs.rollups {
        let e = m.entry(key(r)).or_default();
        e.0 += r.requests;
        e.1 += r.prompt_tokens + r.completion_tokens;
        e.2 += r.cost;
    }
    m.into_iter().map(|(k, (n, t, c))| (k, n, t, c)).collect()
}

fn breakdown(rows: &[(String, i64, i64, i64)]) -> Vec<BreakdownRow> {
    rows.iter()
        .map(|(k, requests, tokens, cost)| BreakdownRow {
            key: k.clone(),
            requests: *requests,
            tokens: *tokens,
            cost: Pounds::of(*cost),
        })
        .collect()
}

/// Spend series the internal report charts: `(label, cost micros)`.
#[derive(Debug, Default)]
pub struct Series {
    pub by_month: Vec<(String, i64)>,
    pub by_region: Vec<(String, i64)>,
    pub by_model: Vec<(String, i64)>,
}

fn spend(rows: &[(String, i64, i64, i64)]) -> Vec<(String, i64)> {
    rows.iter().map(|(k, _, _, c)| (k.clone(), *c)).collect()
}

/// The internal report's figures for one period, and the spend series its charts draw.
///
/// Every count is of the period's own facts: applications received in it, decisions made in
/// it, vouchers issued or expired in it. A voucher's standing (active, expired) is taken at the
/// period's end, or at `at` for a period not yet over.
pub fn figures(inputs: &Inputs, period: Period, at: NaiveDateTime) -> (Figures, Series) {
    let end: NaiveDateTime = (period.to() + chrono::Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default();
    let start: NaiveDateTime = period.from().and_hms_opt(0, 0, 0).unwrap_or_default();
    // What has happened by now: the period's end, or the report's making if sooner.
    let cutoff = end.min(at);
    let (applications, decision_days) = application_figures(inputs, start, end);
    let facts: BTreeMap<&str, Facets> = inputs
        .vouchers
        .iter()
        .map(|v| (v.id.as_str(), facets(v)))
        .collect();
    let consumed: i64 = inputs.rollups.iter().map(|r| r.cost).sum();
    let organisations: BTreeSet<&str> = inputs
        .rollups
        .iter()
        .filter(|r| r.requests > 0)
        .filter_map(|r| facts.get(r.voucher_id.as_str()).map(|f| f.company.as_str()))
        .collect();
    let (usage, series) = usage_figures(inputs, &facts, consumed);
    let figures = Figures {
        applications,
        decision_days,
        budget_lines: inputs
            .budget_lines
            .iter()
            .map(|l| BudgetLineFigures {
                name: l.name.clone(),
                financial_year: l.financial_year.clone(),
                allocated: Pounds::of(l.allocated_micros),
                spent: Pounds::of(l.spent_micros),
                remaining: Pounds::of(l.remaining_micros),
                spent_in_period: Pounds::of(l.spent_in_period_micros),
            })
            .collect(),
        incentives_by_rule: inputs
            .incentives_by_rule
            .iter()
            .map(|i| IncentiveFigures {
                rule_key: i.rule_key.clone(),
                name: i.name.clone(),
                count: i.count,
                value: Pounds::of(i.value_micros),
            })
            .collect(),
        consulting: ConsultingFigures {
            sessions_booked: inputs.consulting.sessions_booked,
            hours_booked: hundredths(inputs.consulting.minutes_booked, 60),
            sessions_delivered: inputs.consulting.sessions_delivered,
            hours_delivered: hundredths(inputs.consulting.minutes_delivered, 60),
        },
        challenge_outcomes: inputs
            .challenge_outcomes
            .iter()
            .map(|o| ChallengeOutcome {
                challenge_id: o.challenge_id.clone(),
                title: o.title.clone(),
                entries: o.entries,
                winners: o.winners,
                awards: Pounds::of(o.awards_micros),
            })
            .collect(),
        vouchers: voucher_counts(inputs, start, end, cutoff),
        credit: credit_figures(inputs, consumed),
        usage,
        organisations_active: organisations.len(),
        challenges: ChallengeCounts {
            entries: inputs.entries.len(),
            assessed: inputs.entries.iter().filter(|e| e.1).count(),
            awarded: inputs.entries.iter().filter(|e| e.2 > 0).count(),
            pilot_places: inputs.entries.iter().filter(|e| e.3).count(),
            award_credit: Pounds::of(transfers_total(inputs, "challenge_award")),
        },
        top_ups_and_co_funding: None,
        mfa_awards_over_100000: mfa_awards(inputs, start, end),
    };
    (figures, series)
}

/// The report's `applications` and `decision_days` sections: applications received in
/// `[start, end)`, and the decisions made in it.
fn application_figures(
    inputs: &Inputs,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> (ApplicationFigures, DecisionDays) {
    let in_period = |t: NaiveDateTime| t >= start && t < end;
    let received: Vec<_> = inputs
        .applications
        .iter()
        .filter(|a| in_period(a.created_at))
        .collect();
    let decided: Vec<_> = inputs
        .applications
        .iter()
        .filter(|a| a.decided_at.is_some_and(in_period))
        .collect();
    let apps = &received;
    let count = |s: ApplicationStatus| decided.iter().filter(|a| a.status == s).count();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for a in apps
        .iter()
        .filter(|a| a.status == ApplicationStatus::Ineligible)
    {
        let checks: Vec<Value> = serde_json::from_str(&a.checks).unwrap_or_default();
        for c in checks.iter().filter(|c| c["passed"] == false) {
            *failed
                .entry(c["rule"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    // Minutes from application to decision, of the decisions made in the period.
    let minutes: Vec<i64> = decided
        .iter()
        .filter_map(|a| a.decided_at.map(|d| (d - a.created_at).num_minutes()))
        .collect();
    let as_hours = |m: Option<i64>| m.map(|m| format!("{}.{:02}", m / 60, (m % 60) * 100 / 60));
    let as_days = |m: Option<i64>| m.map(|m| hundredths(m, 1_440));
    let applications = ApplicationFigures {
        received: apps.len(),
        eligible: apps
            .iter()
            .filter(|a| a.status != ApplicationStatus::Ineligible)
            .count(),
        approved: count(ApplicationStatus::Approved),
        rejected: count(ApplicationStatus::Rejected),
        ineligible_by_rule: failed,
        decision_hours: DecisionHours {
            median: as_hours(stats::median(&minutes)),
            p90: as_hours(stats::percentile(&minutes, 90)),
        },
    };
    let decision_days = DecisionDays {
        decisions: minutes.len(),
        median: as_days(stats::median(&minutes)),
        p75: as_days(stats::percentile(&minutes, 75)),
        p90: as_days(stats::percentile(&minutes, 90)),
        max: as_days(minutes.iter().copied().max()),
    };
    (applications, decision_days)
}

/// The report's `vouchers` section: issued in `[start, end)`, and active, exhausted and
/// expired as at `cutoff`.
fn voucher_counts(
    inputs: &Inputs,
    start: NaiveDateTime,
    end: NaiveDateTime,
    cutoff: NaiveDateTime,
) -> VoucherCounts {
    let issued = inputs
        .vouchers
        .iter()
        .filter(|v| v.created_at >= start && v.created_at < end)
        .count();
    let active = inputs
        .vouchers
        .iter()
        .filter(|v| v.created_at < cutoff && v.expires_at >= cutoff)
        .count();
    // Expired within the period: not before it, and not after its end or now.
    let expired = inputs
        .vouchers
        .iter()
        .filter(|v| v.expires_at >= start && v.expires_at < cutoff)
        .count();
    let exhausted = inputs
        .vouchers
        .iter()
        .filter(|v| {
            v.status == voucherd_domain::VoucherState::Active
                && v.credits_posted > 0
                && v.credits_posted - v.debits_posted - v.debits_pending <= 0
        })
        .count();
    VoucherCounts {
        issued,
        active,
        exhausted,
        expired,
    }
}

/// The period's transfers of one code, in micros (0 when there were none).
fn transfers_total(inputs: &Inputs, code: &str) -> i64 {
    inputs
        .transfers_by_code
        .iter()
        .find(|(k, _)| k == code)
        .map_or(0, |(_, v)| *v)
}

/// The report's `credit` section, given what the period's usage cost (`consumed_micros`).
fn credit_figures(inputs: &Inputs, consumed_micros: i64) -> CreditFigures {
    let granted = transfers_total(inputs, "voucher_grant");
    let held: i64 = inputs.vouchers.iter().map(|v| v.debits_pending).sum();
    CreditFigures {
        granted: Pounds::of(granted),
        consumed: Pounds::of(consumed_micros),
        held: Pounds::of(held),
        forfeited: Pounds::of(transfers_total(inputs, "expiry")),
        utilisation_percent: pct_bp(consumed_micros, granted),
        incentive_bonuses: Pounds::of(transfers_total(inputs, "incentive_milestone")),
    }
}

/// The report's `usage` section, with its breakdowns, and the spend series charted from them.
fn usage_figures(
    inputs: &Inputs,
    facts: &BTreeMap<&str, Facets>,
    consumed_micros: i64,
) -> (UsageFigures, Series) {
    let requests: i64 = inputs.rollups.iter().map(|r| r.requests).sum();
    let prompt: i64 = inputs.rollups.iter().map(|r| r.prompt_tokens).sum();
    let completion: i64 = inputs.rollups.iter().map(|r| r.completion_tokens).sum();
    let facet = |r: &voucherd_store::rollup::DailyRow, f: fn(&Facets) -> String| {
        facts.get(r.voucher_id.as_str()).map_or("?".to_string(), f)
    };
    let by_model = totals_by(inputs, |r| r.model.clone());
    let by_region = totals_by(inputs, |r| facet(r, |f| f.region.clone()));
    let by_sector = totals_by(inputs, |r| facet(r, |f| f.sector.clone()));
    let by_size_band = totals_by(inputs, |r| facet(r, |f| f.size.clone()));
    let by_month = totals_by(inputs, |r| r.day.format("%Y-%m").to_string());
    let series = Series {
        by_month: spend(&by_month),
        by_region: spend(&by_region),
        by_model: spend(&by_model),
    };
    let usage = UsageFigures {
        requests,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost: Pounds::of(consumed_micros),
        by_model: breakdown(&by_model),
        by_region: breakdown(&by_region),
        by_sector: breakdown(&by_sector),
        by_size_band: breakdown(&by_size_band),
        by_month: breakdown(&by_month),
    };
    (usage, series)
}

/// The report's Minimal Financial Assistance list: per company, what its vouchers created in
/// `[start, end)` were credited (grants, awards, bonuses), where over £100,000.
fn mfa_awards(inputs: &Inputs, start: NaiveDateTime, end: NaiveDateTime) -> Vec<MfaAward> {
    let mut per_company: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
    for v in inputs
        .vouchers
        .iter()
        .filter(|v| v.created_at >= start && v.created_at < end)
    {
        let e = per_company
            .entry(v.company_number.as_str())
            .or_insert((v.company_name.as_str(), 0));
        e.1 += v.credits_posted;
    }
    per_company
        .into_iter()
        .filter(|(_, (_, amount))| *amount > 100_000_000_000)
        .map(|(number, (name, amount))| MfaAward {
            company_name: name.to_string(),
            company_number: number.to_string(),
            amount: Pounds::of(amount),
        })
        .collect()
}

/// The public summary: headline counts rounded, and organisations and spend by region and size
/// band under disclosure control. No names, no free text.
pub fn public(inputs: &Inputs, rules: &Rules) -> PublicSummary {
    let facts: BTreeMap<&str, Facets> = inputs
        .vouchers
        .iter()
        .map(|v| (v.id.as_str(), facets(v)))
        .collect();
    let regions: Vec<&str> = Region::ALL.iter().map(|r| r.as_str()).collect();
    let sizes = ["micro", "small", "medium"];
    let home = home_cells(inputs, &regions, &sizes);
    let (orgs, spend) = spend_by_cell(inputs, &facts, &home);
    let table = |cell: &dyn Fn((usize, usize), u32) -> Cell| -> Vec<Vec<Cell>> {
        (0..regions.len())
            .map(|ri| {
                (0..sizes.len())
                    .map(|si| {
                        let n = orgs.get(&(ri, si)).map_or(0, |s| s.len() as u32);
                        cell((ri, si), n)
                    })
                    .collect()
            })
            .collect()
    };
    let mut org_table = disclosure::control(&table(&|_, n| Cell::count(n)), rules, true);
    let mut spend_table = disclosure::control(
        &table(&|k, n| {
            let by_org = spend.get(&k);
            Cell {
                organisations: n,
                value: by_org.map_or(0, |m| m.values().sum()),
                largest: by_org.and_then(|m| m.values().max().copied()).unwrap_or(0),
            }
        }),
        rules,
        false,
    );
    // The same cells hidden in both, so one cannot show which the other's small cells were.
    disclosure::hide_alike(&mut org_table, &mut spend_table);
    // Headline counts are of organisations too: fewer than k is suppressed, the rest rounded.
    let headline = |n: usize| {
        if n > 0 && (n as u32) < rules.min_organisations {
            PublicCount::Suppressed
        } else {
            PublicCount::Count(rules.round(n as i64))
        }
    };
    let approved = inputs
        .applications
        .iter()
        .filter(|a| a.status == ApplicationStatus::Approved)
        .count();
    PublicSummary {
        disclosure_control: rules.describe(),
        applications_received: headline(inputs.applications.len()),
        applications_approved: headline(approved),
        organisations_by_region_and_size: published_rows(&org_table, &regions, |r| {
            PublicCountRow {
                region: r.region,
                micro: count_shown(r.cells[0]),
                small: count_shown(r.cells[1]),
                medium: count_shown(r.cells[2]),
                total: count_shown(r.total),
            }
        }),
        spend_by_region_and_size: published_rows(&spend_table, &regions, |r| PublicAmountRow {
            region: r.region,
            micro: amount_shown(r.cells[0]),
            small: amount_shown(r.cells[1]),
            medium: amount_shown(r.cells[2]),
            total: amount_shown(r.total),
        }),
    }
}

/// Per cell of a public table: a region and a size band, as indexes into their lists.
type ByCell<T> = BTreeMap<(usize, usize), T>;

/// Per company, its headcount and the cell (region, size band) it is counted in.
///
/// Each organisation sits in one cell, by its largest headcount on record (an award
/// voucher records none), so no total counts a company twice.
fn home_cells<'a>(
    inputs: &'a Inputs,
    regions: &[&str],
    sizes: &[&str],
) -> BTreeMap<&'a str, (i32, usize, usize)> {
    let mut home: BTreeMap<&str, (i32, usize, usize)> = BTreeMap::new();
    for v in &inputs.vouchers {
        let f = facets(v);
        let (Some(ri), Some(si)) = (
            regions.iter().position(|x| *x == f.region),
            sizes.iter().position(|x| *x == f.size),
        ) else {
            continue;
        };
        let e = home
            .entry(v.company_number.as_str())
            .or_insert((v.employees, ri, si));
        if v.employees > e.0 {
            *e = (v.employees, ri, si);
        }
    }
    home
}

/// Per cell, the organisations that spent there; and per cell and organisation, what it spent
/// in micros (from which the cell's total and its largest part).
fn spend_by_cell<'a>(
    inputs: &Inputs,
    facts: &'a BTreeMap<&str, Facets>,
    home: &BTreeMap<&str, (i32, usize, usize)>,
) -> (ByCell<BTreeSet<&'a str>>, ByCell<BTreeMap<&'a str, i64>>) {
    let mut orgs: ByCell<BTreeSet<&str>> = BTreeMap::new();
    let mut spend: ByCell<BTreeMap<&str, i64>> = BTreeMap::new();
    for r in inputs.rollups.iter().filter(|r| r.requests > 0) {
        let Some(f) = facts.get(r.voucher_id.as_str()) else {
            continue;
        };
        let Some(&(_, ri, si)) = home.get(f.company.as_str()) else {
            continue;
        };
        orgs.entry((ri, si)).or_default().insert(f.company.as_str());
        *spend
            .entry((ri, si))
            .or_default()
            .entry(f.company.as_str())
            .or_default() += r.cost;
    }
    (orgs, spend)
}

/// One published count: `[c]` when suppressed.
fn count_shown(p: &Published) -> PublicCount {
    match p {
        Published::Suppressed => PublicCount::Suppressed,
        Published::Value(v) => PublicCount::Count(*v),
    }
}

/// One published amount: `[c]` when suppressed, else pounds.
fn amount_shown(p: &Published) -> PublicAmount {
    match p {
        Published::Suppressed => PublicAmount::Suppressed,
        Published::Value(v) => PublicAmount::Amount(Pounds::of(*v)),
    }
}

/// One row of a controlled table: a region (or "all regions"), its cells by size band, and
/// its total.
struct PublishedRow<'a> {
    region: String,
    cells: [&'a Published; 3],
    total: &'a Published,
}

/// A controlled table as the summary's rows: one per region with its total, then the
/// column totals as "all regions".
fn published_rows<'a, R>(
    t: &'a disclosure::Controlled,
    regions: &[&str],
    row: impl Fn(PublishedRow<'a>) -> R,
) -> Vec<R> {
    // Every table has the three size bands' columns; a missing one would show suppressed.
    static MISSING: Published = Published::Suppressed;
    let by_size = |cells: &'a [Published]| -> [&'a Published; 3] {
        [0, 1, 2].map(|i| cells.get(i).unwrap_or(&MISSING))
    };
    regions
        .iter()
        .zip(&t.cells)
        .zip(&t.row_totals)
        .map(|((region, cells), total)| {
            row(PublishedRow {
                region: (*region).to_string(),
                cells: by_size(cells),
                total,
            })
        })
        .chain(std::iter::once(row(PublishedRow {
            region: "all regions".to_string(),
            cells: by_size(&t.column_totals),
            total: &t.total,
        })))
        .collect()
}

/// Every table of the internal report, by name: where it sits in the report's JSON (a JSON
/// pointer). Listed in the report as `tables`; each downloads as CSV.
pub const TABLES: [(&str, &str); 15] = [
    ("applications", "/current/applications"),
    ("decision_days", "/current/decision_days"),
    ("vouchers", "/current/vouchers"),
    ("credit", "/current/credit"),
    ("budget_lines", "/current/budget_lines"),
    ("incentives_by_rule", "/current/incentives_by_rule"),
    ("consulting", "/current/consulting"),
    ("challenges", "/current/challenges"),
    ("challenge_outcomes", "/current/challenge_outcomes"),
    ("mfa_awards_over_100000", "/current/mfa_awards_over_100000"),
    ("by_model", "/current/usage/by_model"),
    ("by_region", "/current/usage/by_region"),
    ("by_sector", "/current/usage/by_sector"),
    ("by_size_band", "/current/usage/by_size_band"),
    ("by_month", "/current/usage/by_month"),
];

const STYLE: &str = "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #b1b4b6;padding:4px 8px;text-align:left}.draft{border:4px solid #d4351c;padding:1em;font-weight:bold}@media print{svg{max-width:100%}}</style>";

const INTERNAL: &str = r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{{title}}</title>
{{{style}}}</head><body>
<h1>{{title}}</h1>{{#if draft}}<p class="draft">DRAFT: the period had not ended when this report was made. It is not published and the final report replaces it.</p>{{/if}}
<p>{{period.from}} to {{period.to}} (previous period {{previous_period.from}} to {{previous_period.to}}). Generated {{generated_at}} by {{generated_by}}.</p>
<h2>Applications</h2><table><tr><th></th><th>This period</th><th>Previous</th></tr>
<tr><td>Received</td><td>{{current.applications.received}}</td><td>{{previous.applications.received}}</td></tr>
<tr><td>Eligible</td><td>{{current.applications.eligible}}</td><td>{{previous.applications.eligible}}</td></tr>
<tr><td>Approved</td><td>{{current.applications.approved}}</td><td>{{previous.applications.approved}}</td></tr>
<tr><td>Rejected</td><td>{{current.applications.rejected}}</td><td>{{previous.applications.rejected}}</td></tr></table>
<h2>Days to decision</h2><table><tr><th></th><th>This period</th><th>Previous</th></tr>
<tr><td>Decisions</td><td>{{current.decision_days.decisions}}</td><td>{{previous.decision_days.decisions}}</td></tr>
<tr><td>Median</td><td>{{current.decision_days.median}}</td><td>{{previous.decision_days.median}}</td></tr>
<tr><td>75th percentile</td><td>{{current.decision_days.p75}}</td><td>{{previous.decision_days.p75}}</td></tr>
<tr><td>90th percentile</td><td>{{current.decision_days.p90}}</td><td>{{previous.decision_days.p90}}</td></tr></table>
<h2>Vouchers</h2><table><tr><th></th><th>This period</th><th>Previous</th></tr>
<tr><td>Issued</td><td>{{current.vouchers.issued}}</td><td>{{previous.vouchers.issued}}</td></tr>
<tr><td>Active</td><td>{{current.vouchers.active}}</td><td>{{previous.vouchers.active}}</td></tr>
<tr><td>Expired</td><td>{{current.vouchers.expired}}</td><td>{{previous.vouchers.expired}}</td></tr></table>
<h2>Credit</h2><table><tr><th></th><th>This period</th><th>Previous</th></tr>
<tr><td>Granted</td><td>{{pounds current.credit.granted}}</td><td>{{pounds previous.credit.granted}}</td></tr>
<tr><td>Consumed</td><td>{{pounds current.credit.consumed}}</td><td>{{pounds previous.credit.consumed}}</td></tr>
<tr><td>Forfeited</td><td>{{pounds current.credit.forfeited}}</td><td>{{pounds previous.credit.forfeited}}</td></tr>
<tr><td>Incentive bonuses</td><td>{{pounds current.credit.incentive_bonuses}}</td><td>{{pounds previous.credit.incentive_bonuses}}</td></tr></table>
<h2>Budget lines</h2><table><tr><th>Line</th><th>Year</th><th>Allocated</th><th>Spent</th><th>Remaining</th><th>Spent in period</th></tr>
{{#each current.budget_lines}}<tr><td>{{name}}</td><td>{{financial_year}}</td><td>{{pounds allocated}}</td><td>{{pounds spent}}</td><td>{{pounds remaining}}</td><td>{{pounds spent_in_period}}</td></tr>{{else}}<tr><td colspan="6">None</td></tr>{{/each}}</table>
<h2>Incentives by rule</h2><table><tr><th>Rule</th><th>Count</th><th>Value</th></tr>
{{#each current.incentives_by_rule}}<tr><td>{{name}} ({{rule_key}})</td><td>{{count}}</td><td>{{pounds value}}</td></tr>{{else}}<tr><td colspan="3">None</td></tr>{{/each}}</table>
<h2>Consulting</h2><table><tr><th></th><th>Sessions</th><th>Hours</th></tr>
<tr><td>Booked</td><td>{{current.consulting.sessions_booked}}</td><td>{{current.consulting.hours_booked}}</td></tr>
<tr><td>Delivered</td><td>{{current.consulting.sessions_delivered}}</td><td>{{current.consulting.hours_delivered}}</td></tr></table>
<h2>Challenge outcomes</h2><table><tr><th>Challenge</th><th>Entries</th><th>Winners</th><th>Awards</th></tr>
{{#each current.challenge_outcomes}}<tr><td>{{title}}</td><td>{{entries}}</td><td>{{winners}}</td><td>{{pounds awards}}</td></tr>{{else}}<tr><td colspan="4">None</td></tr>{{/each}}</table>
<h2>Spend</h2>{{{charts.by_month}}}{{{charts.by_region}}}{{{charts.by_model}}}
<h2>Minimal Financial Assistance over £100,000</h2><ul>{{#each current.mfa_awards_over_100000}}<li>{{company_name}} ({{company_number}}): {{pounds amount}}</li>{{else}}<li>None</li>{{/each}}</ul>
</body></html>"#;

const PUBLIC: &str = r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{{title}}</title>
{{{style}}}</head><body>
<h1>{{title}}</h1><p>{{period.from}} to {{period.to}}.</p>
<p>Applications received: {{summary.applications_received}}. Applications approved: {{summary.applications_approved}}.</p>
<h2>Organisations using their vouchers, by region and size</h2><table><tr><th>Region</th><th>Micro</th><th>Small</th><th>Medium</th><th>Total</th></tr>
{{#each summary.organisations_by_region_and_size}}<tr><td>{{region}}</td><td>{{micro}}</td><td>{{small}}</td><td>{{medium}}</td><td>{{total}}</td></tr>{{/each}}</table>
<h2>Spend by region and size</h2><table><tr><th>Region</th><th>Micro</th><th>Small</th><th>Medium</th><th>Total</th></tr>
{{#each summary.spend_by_region_and_size}}<tr><td>{{region}}</td><td>{{pounds micro}}</td><td>{{pounds small}}</td><td>{{pounds medium}}</td><td>{{pounds total}}</td></tr>{{/each}}</table>
<h2>How figures are protected</h2><p>{{summary.disclosure_control}}</p>
</body></html>"#;

/// A report amount ("133820.00") for reading ("£133,820.00"); anything else ("[c]") as it is.
fn pounds_for_reading(v: &Value) -> String {
    match v {
        Value::String(s) => voucherd_domain::money::display_decimal(s).unwrap_or_else(|| s.clone()),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

handlebars::handlebars_helper!(pounds_helper: |v: Json| pounds_for_reading(v));

/// Builds, renders and keeps the report of `period`, with the period before for comparison.
/// A period not yet over at `at` is reported as a draft: kept and listed, never published, and
/// never in the way of the final report. `Ok(None)` when the final report exists already (made
/// by another worker or an earlier run).
pub async fn generate(
    store: &Store,
    period: Period,
    by: &str,
    at: NaiveDateTime,
    rules: &Rules,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Option<ReportRow>, StoreError> {
    let kind = period.kind();
    let (from, to) = (period.from(), period.to());
    let draft = !period.has_ended(at.date());
    let previous_period = period.previous();
    let (prev_from, prev_to) = (previous_period.from(), previous_period.to());
    progress("reading this period");
    let current = store.report_inputs(from, to).await?;
    progress("reading the previous period");
    let previous = store.report_inputs(prev_from, prev_to).await?;
    progress("computing figures");
    let title = report_title(kind, draft);
    let (cur, series) = figures(&current, period, at);
    let dates = |p: Period| PeriodView {
        from: p.from(),
        to: p.to(),
    };
    let report = Report {
        schema_version: SCHEMA_VERSION,
        kind,
        draft,
        title: title.to_string(),
        period: dates(period),
        previous_period: dates(previous_period),
        generated_at: at.and_utc().to_rfc3339(),
        generated_by: by.to_string(),
        tables: TABLES
            .iter()
            .map(|(name, pointer)| ((*name).to_string(), (*pointer).to_string()))
            .collect(),
        current: cur,
        previous: figures(&previous, previous_period, at).0,
    };
    let public_report = PublicReport {
        schema_version: SCHEMA_VERSION,
        kind,
        draft,
        title: format!("{title} (public summary)"),
        period: dates(period),
        summary: public(&current, rules),
    };
    let as_json = |e: serde_json::Error| StoreError::Invariant(format!("the report as JSON: {e}"));
    let content = serde_json::to_value(&report).map_err(as_json)?;
    let public_content = serde_json::to_value(&public_report).map_err(as_json)?;
    progress("rendering");
    let (html, public_html) = render_pages(&content, &series, &public_content)?;
    let text = content.to_string();
    let hash = hex(&Sha256::digest(text.as_bytes()));
    progress("saving");
    store
        .save_report(ReportRow {
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            period_from: from,
            period_to: to,
            generated_at: at,
            generated_by: by.to_string(),
            schema_version: SCHEMA_VERSION,
            content_hash: hash,
            content: text,
            public_content: public_content.to_string(),
            html,
            public_html,
            draft,
        })
        .await
}

/// The report's title, marked as a draft when the period is not over.
fn report_title(kind: Kind, draft: bool) -> &'static str {
    match (kind, draft) {
        (Kind::Monthly, false) => "AI Voucher Programme: monthly operations report",
        (Kind::Monthly, true) => "DRAFT AI Voucher Programme: monthly operations report",
        (Kind::SemiAnnual, false) => "AI Voucher Programme: semi-annual review",
        (Kind::SemiAnnual, true) => "DRAFT AI Voucher Programme: semi-annual review",
    }
}

/// The internal report's page, with its spend charts, and the public summary's page.
fn render_pages(
    content: &Value,
    series: &Series,
    public_content: &Value,
) -> Result<(String, String), StoreError> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_helper("pounds", Box::new(pounds_helper));
    let render_err = |e: String| StoreError::Invariant(format!("rendering the report: {e}"));
    hb.register_template_string("internal", INTERNAL)
        .map_err(|e| render_err(e.to_string()))?;
    hb.register_template_string("public", PUBLIC)
        .map_err(|e| render_err(e.to_string()))?;
    let mut with_charts = content.clone();
    with_charts["style"] = json!(STYLE);
    with_charts["charts"] = json!({
        "by_month": charts::line("Spend per month", &series.by_month, format_pounds_display),
        "by_region": charts::bars("Spend by region", &series.by_region, format_pounds_display),
        "by_model": charts::bars("Spend by model", &series.by_model, format_pounds_display),
    });
    let html = hb
        .render("internal", &with_charts)
        .map_err(|e| render_err(e.to_string()))?;
    let mut public_page = public_content.clone();
    public_page["style"] = json!(STYLE);
    let public_html = hb
        .render("public", &public_page)
        .map_err(|e| render_err(e.to_string()))?;
    Ok((html, public_html))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_show_as_hours_and_days_with_two_decimals() {
        assert_eq!(hundredths(90, 60), "1.50");
        assert_eq!(hundredths(2_160, 1_440), "1.50");
        assert_eq!(hundredths(1, 1_440), "0.00");
        assert_eq!(hundredths(0, 60), "0.00");
    }

    #[test]
    fn amounts_read_with_a_pound_sign_and_separators() {
        assert_eq!(pounds_for_reading(&json!("133820.00")), "£133,820.00");
        assert_eq!(pounds_for_reading(&json!("[c]")), "[c]");
    }
}
