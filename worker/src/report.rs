//! Incentive and impact reports: the internal report (JSON with a schema version, HTML with SVG
//! charts) and its public summary, in which every table passes disclosure control and no name
//! or free text appears. Reports read rollups and per-voucher facts, never raw usage rows.

use crate::charts;
use chrono::{Datelike, NaiveDate, NaiveDateTime};
use handlebars::Handlebars;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use voucherd_domain::budget::{SicSection, SizeBand};
use voucherd_domain::disclosure::{self, Cell, Published, Rules};
use voucherd_domain::money::format_micros;
use voucherd_domain::{stats, Region, SicCode};
use voucherd_store::reports::{Inputs, ReportRow, VoucherFact};
use voucherd_store::{Store, StoreError};

pub const SCHEMA_VERSION: i32 = 1;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Monthly,
    SemiAnnual,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Monthly => "monthly",
            Kind::SemiAnnual => "semi_annual",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s.replace('-', "_").as_str() {
            "monthly" => Some(Kind::Monthly),
            "semi_annual" => Some(Kind::SemiAnnual),
            _ => None,
        }
    }

    /// The last whole period before `day`: the previous calendar month, or the previous half
    /// of the financial year (April–September, October–March).
    pub fn last_period(self, day: NaiveDate) -> (NaiveDate, NaiveDate) {
        let first_of = |y: i32, m: u32| NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(day);
        match self {
            Kind::Monthly => {
                let this = first_of(day.year(), day.month());
                let prev_end = this - chrono::Duration::days(1);
                (first_of(prev_end.year(), prev_end.month()), prev_end)
            }
            Kind::SemiAnnual => {
                let (y, m) = (day.year(), day.month());
                let this_half = if (4..=9).contains(&m) {
                    first_of(y, 4)
                } else if m >= 10 {
                    first_of(y, 10)
                } else {
                    first_of(y - 1, 10)
                };
                let prev_end = this_half - chrono::Duration::days(1);
                let prev_start = if prev_end.month() == 9 {
                    first_of(prev_end.year(), 4)
                } else {
                    first_of(prev_end.year() - 1, 10)
                };
                (prev_start, prev_end)
            }
        }
    }
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

fn breakdown_json(rows: &[(String, i64, i64, i64)]) -> Vec<Value> {
    rows.iter()
        .map(|(k, requests, tokens, cost)| {
            json!({"key": k, "requests": requests, "tokens": tokens, "cost": format_micros(*cost)})
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
pub fn figures(inputs: &Inputs, from: NaiveDate, to: NaiveDate) -> (Value, Series) {
    let end: NaiveDateTime = (to + chrono::Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default();
    let start: NaiveDateTime = from.and_hms_opt(0, 0, 0).unwrap_or_default();
    let apps = &inputs.applications;
    let count = |s: &str| apps.iter().filter(|a| a.status == s).count();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for a in apps.iter().filter(|a| a.status == "ineligible") {
        let checks: Vec<Value> = serde_json::from_str(&a.checks).unwrap_or_default();
        for c in checks.iter().filter(|c| c["passed"] == false) {
            *failed
                .entry(c["rule"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    let hours: Vec<i64> = apps
        .iter()
        .filter_map(|a| a.decided_at.map(|d| (d - a.created_at).num_minutes()))
        .collect();
    let as_hours = |m: Option<i64>| m.map(|m| format!("{}.{:02}", m / 60, (m % 60) * 100 / 60));

    let facts: BTreeMap<&str, Facets> = inputs
        .vouchers
        .iter()
        .map(|v| (v.id.as_str(), facets(v)))
        .collect();
    let issued = inputs
        .vouchers
        .iter()
        .filter(|v| v.created_at >= start && v.created_at < end)
        .count();
    let active = inputs
        .vouchers
        .iter()
        .filter(|v| v.status == "active" && v.expires_at >= end)
        .count();
    let expired = inputs
        .vouchers
        .iter()
        .filter(|v| v.expires_at >= start && v.expires_at < end)
        .count();
    let exhausted = inputs
        .vouchers
        .iter()
        .filter(|v| {
            v.status == "active"
                && v.credits_posted > 0
                && v.credits_posted - v.debits_posted - v.debits_pending <= 0
        })
        .count();
    let code = |c: &str| {
        inputs
            .transfers_by_code
            .iter()
            .find(|(k, _)| k == c)
            .map_or(0, |(_, v)| *v)
    };
    let granted = code("voucher_grant");
    let consumed: i64 = inputs.rollups.iter().map(|r| r.cost).sum();
    let requests: i64 = inputs.rollups.iter().map(|r| r.requests).sum();
    let prompt: i64 = inputs.rollups.iter().map(|r| r.prompt_tokens).sum();
    let completion: i64 = inputs.rollups.iter().map(|r| r.completion_tokens).sum();
    let held: i64 = inputs.vouchers.iter().map(|v| v.debits_pending).sum();
    let facet = |r: &voucherd_store::rollup::DailyRow, f: fn(&Facets) -> String| {
        facts.get(r.voucher_id.as_str()).map_or("?".to_string(), f)
    };
    let organisations: BTreeSet<&str> = inputs
        .rollups
        .iter()
        .filter(|r| r.requests > 0)
        .filter_map(|r| facts.get(r.voucher_id.as_str()).map(|f| f.company.as_str()))
        .collect();
    // Per company, what its vouchers created in the period were credited (grants, awards,
    // bonuses), where over £100,000.
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
    let mfa: Vec<Value> = per_company
        .into_iter()
        .filter(|(_, (_, amount))| *amount > 100_000_000_000)
        .map(|(number, (name, amount))| {
            json!({"company_name": name, "company_number": number, "amount": format_micros(amount)})
        })
        .collect();
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
    let figures = json!({
        "applications": {
            "received": apps.len(),
            "eligible": apps.iter().filter(|a| a.status != "ineligible").count(),
            "approved": count("approved"),
            "rejected": count("rejected"),
            "ineligible_by_rule": failed,
            "decision_hours": {
                "median": as_hours(stats::median(&hours)),
                "p90": as_hours(stats::percentile(&hours, 90)),
            },
        },
        "vouchers": {"issued": issued, "active": active, "exhausted": exhausted, "expired": expired},
        "credit": {
            "granted": format_micros(granted),
            "consumed": format_micros(consumed),
            "held": format_micros(held),
            "forfeited": format_micros(code("expiry")),
            "utilisation_percent": pct_bp(consumed, granted),
            "incentive_bonuses": format_micros(code("incentive_milestone")),
        },
        "usage": {
            "requests": requests,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost": format_micros(consumed),
            "by_model": breakdown_json(&by_model),
            "by_region": breakdown_json(&by_region),
            "by_sector": breakdown_json(&by_sector),
            "by_size_band": breakdown_json(&by_size_band),
            "by_month": breakdown_json(&by_month),
        },
        "organisations_active": organisations.len(),
        "challenges": {
            "entries": inputs.entries.len(),
            "assessed": inputs.entries.iter().filter(|e| e.1).count(),
            "awarded": inputs.entries.iter().filter(|e| e.2 > 0).count(),
            "pilot_places": inputs.entries.iter().filter(|e| e.3).count(),
            "award_credit": format_micros(code("challenge_award")),
        },
        "top_ups_and_co_funding": Value::Null,
        "mfa_awards_over_100000": mfa,
    });
    (figures, series)
}

/// The public summary: headline counts rounded, and organisations and spend by region and size
/// band under disclosure control. No names, no free text.
pub fn public(inputs: &Inputs, rules: &Rules) -> Value {
    let facts: BTreeMap<&str, Facets> = inputs
        .vouchers
        .iter()
        .map(|v| (v.id.as_str(), facets(v)))
        .collect();
    let regions: Vec<&str> = Region::ALL.iter().map(|r| r.as_str()).collect();
    let sizes = ["micro", "small", "medium"];
    // Each organisation sits in one cell, by its largest headcount on record (an award
    // voucher records none), so no total counts a company twice.
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
    // Per cell: the organisations that spent there, and what they spent.
    let mut orgs: BTreeMap<(usize, usize), BTreeSet<&str>> = BTreeMap::new();
    let mut spend: BTreeMap<(usize, usize), i64> = BTreeMap::new();
    for r in inputs.rollups.iter().filter(|r| r.requests > 0) {
        let Some(f) = facts.get(r.voucher_id.as_str()) else {
            continue;
        };
        let Some(&(_, ri, si)) = home.get(f.company.as_str()) else {
            continue;
        };
        orgs.entry((ri, si)).or_default().insert(f.company.as_str());
        *spend.entry((ri, si)).or_default() += r.cost;
    }
    let table = |value: &dyn Fn((usize, usize), u32) -> i64| -> Vec<Vec<Cell>> {
        (0..regions.len())
            .map(|ri| {
                (0..sizes.len())
                    .map(|si| {
                        let n = orgs.get(&(ri, si)).map_or(0, |s| s.len() as u32);
                        Cell {
                            organisations: n,
                            value: value((ri, si), n),
                        }
                    })
                    .collect()
            })
            .collect()
    };
    let mut org_table = disclosure::control(&table(&|_, n| i64::from(n)), rules, true);
    let mut spend_table = disclosure::control(
        &table(&|k, _| spend.get(&k).copied().unwrap_or(0)),
        rules,
        false,
    );
    // The same cells hidden in both, so one cannot show which the other's small cells were.
    disclosure::hide_alike(&mut org_table, &mut spend_table);
    let shown = |p: &Published, money: bool| match p {
        Published::Suppressed => json!("[c]"),
        Published::Value(v) if money => json!(format_micros(*v)),
        Published::Value(v) => json!(v),
    };
    let rows = |t: &disclosure::Controlled, money: bool| -> Vec<Value> {
        regions
            .iter()
            .enumerate()
            .map(|(ri, region)| {
                let mut row = serde_json::Map::new();
                row.insert("region".into(), json!(region));
                for (si, size) in sizes.iter().enumerate() {
                    row.insert((*size).into(), shown(&t.cells[ri][si], money));
                }
                row.insert("total".into(), shown(&t.row_totals[ri], money));
                Value::Object(row)
            })
            .chain(std::iter::once({
                let mut row = serde_json::Map::new();
                row.insert("region".into(), json!("all regions"));
                for (si, size) in sizes.iter().enumerate() {
                    row.insert((*size).into(), shown(&t.column_totals[si], money));
                }
                row.insert("total".into(), shown(&t.total, money));
                Value::Object(row)
            }))
            .collect()
    };
    // Headline counts are of organisations too: fewer than k is suppressed, the rest rounded.
    let headline = |n: usize| {
        if n > 0 && (n as u32) < rules.min_organisations {
            json!("[c]")
        } else {
            json!(rules.round(n as i64))
        }
    };
    json!({
        "disclosure_control": rules.describe(),
        "applications_received": headline(inputs.applications.len()),
        "applications_approved": headline(inputs.applications.iter().filter(|a| a.status == "approved").count()),
        "organisations_by_region_and_size": rows(&org_table, false),
        "spend_by_region_and_size": rows(&spend_table, true),
    })
}

const INTERNAL: &str = r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{{title}}</title>
<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #b1b4b6;padding:4px 8px;text-align:left}@media print{svg{max-width:100%}}</style></head><body>
<h1>{{title}}</h1><p>{{period.from}} to {{period.to}} (previous period {{previous_period.from}} to {{previous_period.to}}). Generated {{generated_at}} by {{generated_by}}.</p>
<h2>Applications</h2><table><tr><th></th><th>This period</th><th>Previous</th></tr>
<tr><td>Received</td><td>{{current.applications.received}}</td><td>{{previous.applications.received}}</td></tr>
<tr><td>Eligible</td><td>{{current.applications.eligible}}</td><td>{{previous.applications.eligible}}</td></tr>
<tr><td>Approved</td><td>{{current.applications.approved}}</td><td>{{previous.applications.approved}}</td></tr>
<tr><td>Rejected</td><td>{{current.applications.rejected}}</td><td>{{previous.applications.rejected}}</td></tr></table>
<h2>Credit</h2><table><tr><th></th><th>This period</th><th>Previous</th></tr>
<tr><td>Granted</td><td>£{{current.credit.granted}}</td><td>£{{previous.credit.granted}}</td></tr>
<tr><td>Consumed</td><td>£{{current.credit.consumed}}</td><td>£{{previous.credit.consumed}}</td></tr>
<tr><td>Forfeited</td><td>£{{current.credit.forfeited}}</td><td>£{{previous.credit.forfeited}}</td></tr></table>
<h2>Spend</h2>{{{charts.by_month}}}{{{charts.by_region}}}{{{charts.by_model}}}
<h2>Minimal Financial Assistance over £100,000</h2><ul>{{#each current.mfa_awards_over_100000}}<li>{{company_name}} ({{company_number}}): £{{amount}}</li>{{else}}<li>None</li>{{/each}}</ul>
</body></html>"#;

const PUBLIC: &str = r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{{title}}</title>
<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #b1b4b6;padding:4px 8px;text-align:left}</style></head><body>
<h1>{{title}}</h1><p>{{period.from}} to {{period.to}}.</p>
<p>Applications received: {{summary.applications_received}}. Applications approved: {{summary.applications_approved}}.</p>
<h2>Organisations using their vouchers, by region and size</h2><table><tr><th>Region</th><th>Micro</th><th>Small</th><th>Medium</th><th>Total</th></tr>
{{#each summary.organisations_by_region_and_size}}<tr><td>{{region}}</td><td>{{micro}}</td><td>{{small}}</td><td>{{medium}}</td><td>{{total}}</td></tr>{{/each}}</table>
<h2>Spend (£), by region and size</h2><table><tr><th>Region</th><th>Micro</th><th>Small</th><th>Medium</th><th>Total</th></tr>
{{#each summary.spend_by_region_and_size}}<tr><td>{{region}}</td><td>{{micro}}</td><td>{{small}}</td><td>{{medium}}</td><td>{{total}}</td></tr>{{/each}}</table>
<h2>How figures are protected</h2><p>{{summary.disclosure_control}}</p>
</body></html>"#;

#[allow(clippy::too_many_arguments)]
/// Builds, renders and keeps the report of `kind` for `[from, to]`, with `previous` for
/// comparison. `Ok(None)` when it exists already (made by another worker or an earlier run).
pub async fn generate(
    store: &Store,
    kind: Kind,
    from: NaiveDate,
    to: NaiveDate,
    by: &str,
    at: NaiveDateTime,
    rules: &Rules,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Option<ReportRow>, StoreError> {
    // The calendar period before: the previous month, or the previous half-year.
    let (prev_from, prev_to) = kind.last_period(from);
    progress("reading this period");
    let current = store.report_inputs(from, to).await?;
    progress("reading the previous period");
    let previous = store.report_inputs(prev_from, prev_to).await?;
    progress("computing figures");
    let title = match kind {
        Kind::Monthly => "AI Voucher Programme: monthly operations report",
        Kind::SemiAnnual => "AI Voucher Programme: semi-annual review",
    };
    let (cur, series) = figures(&current, from, to);
    let content = json!({
        "schema_version": SCHEMA_VERSION,
        "kind": kind.as_str(),
        "title": title,
        "period": {"from": from.to_string(), "to": to.to_string()},
        "previous_period": {"from": prev_from.to_string(), "to": prev_to.to_string()},
        "generated_at": at.and_utc().to_rfc3339(),
        "generated_by": by,
        "current": cur,
        "previous": figures(&previous, prev_from, prev_to).0,
    });
    let summary = public(&current, rules);
    let public_content = json!({
        "schema_version": SCHEMA_VERSION,
        "kind": kind.as_str(),
        "title": format!("{title} (public summary)"),
        "period": {"from": from.to_string(), "to": to.to_string()},
        "summary": summary,
    });
    progress("rendering");
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    let render_err = |e: String| StoreError::Invariant(format!("rendering the report: {e}"));
    hb.register_template_string("internal", INTERNAL)
        .map_err(|e| render_err(e.to_string()))?;
    hb.register_template_string("public", PUBLIC)
        .map_err(|e| render_err(e.to_string()))?;
    let mut with_charts = content.clone();
    let pounds = |v: i64| format!("£{}", format_micros(v));
    with_charts["charts"] = json!({
        "by_month": charts::line("Spend per month", &series.by_month, pounds),
        "by_region": charts::bars("Spend by region", &series.by_region, pounds),
        "by_model": charts::bars("Spend by model", &series.by_model, pounds),
    });
    let html = hb
        .render("internal", &with_charts)
        .map_err(|e| render_err(e.to_string()))?;
    let public_html = hb
        .render("public", &public_content)
        .map_err(|e| render_err(e.to_string()))?;
    let text = content.to_string();
    let hash = hex(&Sha256::digest(text.as_bytes()));
    progress("saving");
    store
        .save_report(ReportRow {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kind.as_str().into(),
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
        })
        .await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn the_last_whole_period_is_the_previous_month_or_half_year() {
        assert_eq!(
            Kind::Monthly.last_period(d(2026, 11, 27)),
            (d(2026, 10, 1), d(2026, 10, 31))
        );
        assert_eq!(
            Kind::Monthly.last_period(d(2027, 1, 1)),
            (d(2026, 12, 1), d(2026, 12, 31))
        );
        assert_eq!(
            Kind::SemiAnnual.last_period(d(2026, 11, 27)),
            (d(2026, 4, 1), d(2026, 9, 30))
        );
        assert_eq!(
            Kind::SemiAnnual.last_period(d(2027, 5, 2)),
            (d(2026, 10, 1), d(2027, 3, 31))
        );
        assert_eq!(
            Kind::SemiAnnual.last_period(d(2027, 2, 2)),
            (d(2026, 4, 1), d(2026, 9, 30))
        );
    }
}
