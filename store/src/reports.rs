//! What reports read — applications, vouchers, ledger totals by code, daily usage rollups and
//! challenge results for a period; never raw usage rows — and the reports kept.

use crate::db::Store;
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::rollup::DailyRow;
use crate::schema::{
    accounts, applications, budget_lines, challenge_entries, challenge_scores, challenges,
    consulting_bookings, consulting_slots, incentive_rules, reports, transfers, usage_daily,
    voucher_incentives, vouchers,
};
use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use std::collections::BTreeMap;
use voucherd_domain::ledger::TransferCode;
use voucherd_domain::report_period::ReportKind;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = reports)]
pub struct ReportRow {
    pub id: String,
    pub kind: ReportKind,
    pub period_from: NaiveDate,
    pub period_to: NaiveDate,
    pub generated_at: NaiveDateTime,
    pub generated_by: String,
    pub schema_version: i32,
    pub content_hash: String,
    pub content: String,
    pub public_content: String,
    pub html: String,
    pub public_html: String,
    /// Made before its period ended: kept and listed, never published, never final.
    pub draft: bool,
}

/// A report's listed columns: id, kind, period, when, by whom, schema version, hash, draft.
type Listing = (
    String,
    ReportKind,
    NaiveDate,
    NaiveDate,
    NaiveDateTime,
    String,
    i32,
    String,
    bool,
);

/// The transfer codes whose period totals reports show.
const REPORTED_CODES: [TransferCode; 4] = [
    TransferCode::VoucherGrant,
    TransferCode::Expiry,
    TransferCode::ChallengeAward,
    TransferCode::IncentiveMilestone,
];

/// An application as reports see it (no free text).
#[derive(Debug, Clone, Queryable)]
pub struct ApplicationFact {
    pub id: String,
    pub status: voucherd_domain::ApplicationStatus,
    pub checks: String,
    pub created_at: NaiveDateTime,
    pub decided_at: Option<NaiveDateTime>,
}

/// A voucher with what reports group it by.
#[derive(Debug, Clone, Queryable)]
pub struct VoucherFact {
    pub id: String,
    pub status: voucherd_domain::VoucherState,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub company_number: String,
    pub company_name: String,
    pub region: String,
    pub sic_code: String,
    pub employees: i32,
    pub credits_posted: i64,
    pub debits_posted: i64,
    pub debits_pending: i64,
    pub budget_line_id: Option<voucherd_domain::BudgetLineId>,
}

/// A budget line's figures for a report: allocated, spent and remaining as at the report's
/// making, and what its vouchers spent in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLineFact {
    pub name: String,
    pub financial_year: String,
    pub allocated_micros: i64,
    pub spent_micros: i64,
    pub remaining_micros: i64,
    pub spent_in_period_micros: i64,
}

/// Incentives of one rule (all its versions) that took effect in the period: those applied at
/// an approval in it, and milestone bonuses granted in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncentiveFact {
    pub rule_key: String,
    pub name: String,
    pub count: i64,
    pub value_micros: i64,
}

/// Consulting in the period: sessions booked in it (not cancelled), and sessions held in it
/// that the adviser recorded as attended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsultingFact {
    pub sessions_booked: i64,
    pub minutes_booked: i64,
    pub sessions_delivered: i64,
    pub minutes_delivered: i64,
}

/// One challenge's outcomes among entries submitted in the period: how many, how many won an
/// award decided by the period's end, and what those awards came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeOutcome {
    pub challenge_id: String,
    pub title: String,
    pub entries: i64,
    pub winners: i64,
    pub awards_micros: i64,
}

/// Everything a report for one period reads.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub applications: Vec<ApplicationFact>,
    pub vouchers: Vec<VoucherFact>,
    /// Σ transfer amounts in the period by code.
    pub transfers_by_code: Vec<(String, i64)>,
    pub rollups: Vec<DailyRow>,
    /// Challenge entries submitted in the period: (entry id, scored, award micros, pilot), the
    /// award and pilot place only if decided by the period's end.
    pub entries: Vec<(String, bool, i64, bool)>,
    pub budget_lines: Vec<BudgetLineFact>,
    pub incentives_by_rule: Vec<IncentiveFact>,
    pub consulting: ConsultingFact,
    pub challenge_outcomes: Vec<ChallengeOutcome>,
}

/// Every budget line's figures now, and what its vouchers spent in the period's rollups.
fn budget_facts(
    c: &mut crate::db::DbConn,
    vouchers: &[VoucherFact],
    rollups: &[DailyRow],
) -> StoreResult<Vec<BudgetLineFact>> {
    let lines: Vec<crate::budget::BudgetLineRow> = budget_lines::table
        .order((
            budget_lines::financial_year,
            budget_lines::created_at,
            budget_lines::id,
        ))
        .select(crate::budget::BudgetLineRow::as_select())
        .load(c)?;
    let line_of: BTreeMap<&str, &str> = vouchers
        .iter()
        .filter_map(|v| {
            v.budget_line_id
                .as_ref()
                .map(|l| (v.id.as_str(), l.as_str()))
        })
        .collect();
    let mut spent_in_period: BTreeMap<&str, i64> = BTreeMap::new();
    for r in rollups {
        if let Some(line) = line_of.get(r.voucher_id.as_str()) {
            *spent_in_period.entry(line).or_default() += r.cost;
        }
    }
    let mut out = Vec::with_capacity(lines.len());
    for l in &lines {
        let f = crate::budget::figures(c, l)?;
        out.push(BudgetLineFact {
            name: l.name.clone(),
            financial_year: l.financial_year.clone(),
            allocated_micros: f.approved,
            spent_micros: f.spent,
            remaining_micros: f.remaining,
            spent_in_period_micros: spent_in_period.get(l.id.as_str()).copied().unwrap_or(0),
        });
    }
    Ok(out)
}

/// Incentives by rule key that took effect in `[start, end)`: an approval's on the voucher's
/// creation, a milestone bonus when it was granted.
fn incentive_facts(
    c: &mut crate::db::DbConn,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> StoreResult<Vec<IncentiveFact>> {
    // (rule key, rule name, rule version, amount micros)
    let rows: Vec<(String, String, i32, i64)> = voucher_incentives::table
        .inner_join(incentive_rules::table)
        .inner_join(vouchers::table.on(vouchers::id.eq(voucher_incentives::voucher_id)))
        .filter(
            voucher_incentives::granted_at
                .ge(start)
                .and(voucher_incentives::granted_at.lt(end))
                .or(voucher_incentives::milestone
                    .eq(false)
                    .and(vouchers::created_at.ge(start))
                    .and(vouchers::created_at.lt(end))),
        )
        .select((
            incentive_rules::rule_key,
            incentive_rules::name,
            incentive_rules::version,
            voucher_incentives::amount,
        ))
        .load(c)?;
    // Per key: (latest version seen, its name, count, value).
    let mut by_key: BTreeMap<String, (i32, String, i64, i64)> = BTreeMap::new();
    for (key, name, version, amount) in rows {
        let e = by_key.entry(key).or_insert((version, name.clone(), 0, 0));
        if version > e.0 {
            (e.0, e.1) = (version, name);
        }
        e.2 += 1;
        e.3 += amount;
    }
    Ok(by_key
        .into_iter()
        .map(|(rule_key, (_, name, count, value_micros))| IncentiveFact {
            rule_key,
            name,
            count,
            value_micros,
        })
        .collect())
}

fn consulting_fact(
    c: &mut crate::db::DbConn,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> StoreResult<ConsultingFact> {
    let booked: Vec<i64> = consulting_bookings::table
        .filter(consulting_bookings::booked_at.ge(start))
        .filter(consulting_bookings::booked_at.lt(end))
        .filter(consulting_bookings::cancelled_at.is_null())
        .select(consulting_bookings::minutes)
        .load(c)?;
    let delivered: Vec<i64> = consulting_bookings::table
        .inner_join(consulting_slots::table)
        .filter(consulting_slots::starts_at.ge(start))
        .filter(consulting_slots::starts_at.lt(end))
        .filter(consulting_bookings::outcome.eq(voucherd_domain::SessionOutcome::Attended))
        .select(consulting_bookings::minutes)
        .load(c)?;
    Ok(ConsultingFact {
        sessions_booked: booked.len() as i64,
        minutes_booked: booked.iter().sum(),
        sessions_delivered: delivered.len() as i64,
        minutes_delivered: delivered.iter().sum(),
    })
}

fn challenge_outcomes(
    c: &mut crate::db::DbConn,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> StoreResult<Vec<ChallengeOutcome>> {
    let rows: Vec<(String, String, i64, Option<NaiveDateTime>)> = challenge_entries::table
        .inner_join(challenges::table)
        .filter(challenge_entries::submitted_at.ge(start))
        .filter(challenge_entries::submitted_at.lt(end))
        .select((
            challenges::id,
            challenges::title,
            challenge_entries::award,
            challenge_entries::decided_at,
        ))
        .load(c)?;
    let mut by_challenge: BTreeMap<String, ChallengeOutcome> = BTreeMap::new();
    for (id, title, award, decided_at) in rows {
        let o = by_challenge
            .entry(id.clone())
            .or_insert_with(|| ChallengeOutcome {
                challenge_id: id,
                title,
                entries: 0,
                winners: 0,
                awards_micros: 0,
            });
        o.entries += 1;
        if award > 0 && decided_at.is_some_and(|d| d < end) {
            o.winners += 1;
            o.awards_micros += award;
        }
    }
    Ok(by_challenge.into_values().collect())
}

/// Applications received in `[start, end)`, and those decided in it.
fn application_facts(
    c: &mut crate::db::DbConn,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> StoreResult<Vec<ApplicationFact>> {
    // Applications received in the period, and those decided in it.
    Ok(applications::table
        .filter(
            applications::created_at
                .ge(start)
                .and(applications::created_at.lt(end))
                .or(applications::decided_at
                    .ge(start)
                    .and(applications::decided_at.lt(end))),
        )
        // Award applications made for challenge winners are not applications received.
        .filter(applications::id.not_like("award-%"))
        .select((
            applications::id,
            applications::status,
            applications::checks,
            applications::created_at,
            applications::decided_at,
        ))
        .load::<ApplicationFact>(c)?)
}

/// Vouchers that existed at some point before `end`, with their company and account.
fn voucher_facts(c: &mut crate::db::DbConn, end: NaiveDateTime) -> StoreResult<Vec<VoucherFact>> {
    // Vouchers that existed at some point of the period.
    Ok(vouchers::table
        .inner_join(applications::table)
        .inner_join(accounts::table.on(accounts::id.eq(vouchers::account_id)))
        .filter(vouchers::created_at.lt(end))
        .select((
            vouchers::id,
            vouchers::status,
            vouchers::created_at,
            vouchers::expires_at,
            vouchers::company_number,
            applications::company_name,
            applications::region,
            applications::sic_code,
            applications::employees,
            accounts::credits_posted,
            accounts::debits_posted,
            accounts::debits_pending,
            vouchers::budget_line_id,
        ))
        .load::<VoucherFact>(c)?)
}

/// The reported codes' transfers in `[start, end)`, summed by code (micros).
fn transfers_by_code(
    c: &mut crate::db::DbConn,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> StoreResult<Vec<(String, i64)>> {
    // Per-voucher movements only (grants, forfeits, awards, bonuses): their number grows
    // with vouchers, not with requests.
    let moved: Vec<(TransferCode, i64)> = transfers::table
        .filter(transfers::created_at.ge(start))
        .filter(transfers::created_at.lt(end))
        .filter(transfers::code.eq_any(REPORTED_CODES))
        .filter(transfers::kind.eq(voucherd_domain::ledger::TransferKind::Single))
        .select((transfers::code, transfers::amount))
        .load(c)?;
    let mut by_code: std::collections::BTreeMap<String, i64> = Default::default();
    for (code, amount) in moved {
        *by_code.entry(code.as_str().to_string()).or_default() += amount;
    }
    Ok(by_code.into_iter().collect())
}

/// Challenge entries submitted in `[start, end)`, as [`Inputs::entries`] holds them.
fn entry_facts(
    c: &mut crate::db::DbConn,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> StoreResult<Vec<(String, bool, i64, bool)>> {
    let entries: Vec<(String, i64, bool, Option<NaiveDateTime>)> = challenge_entries::table
        .filter(challenge_entries::submitted_at.ge(start))
        .filter(challenge_entries::submitted_at.lt(end))
        .select((
            challenge_entries::id,
            challenge_entries::award,
            challenge_entries::pilot_invited,
            challenge_entries::decided_at,
        ))
        .load(c)?;
    // Awards and pilot places count only once decided within the period.
    let entries: Vec<(String, i64, bool)> = entries
        .into_iter()
        .map(|(id, award, pilot, decided_at)| {
            let decided = decided_at.is_some_and(|d| d < end);
            (id, if decided { award } else { 0 }, pilot && decided)
        })
        .collect();
    let scored: Vec<String> = challenge_scores::table
        .select(challenge_scores::entry_id)
        .distinct()
        .filter(challenge_scores::entry_id.eq_any(entries.iter().map(|e| e.0.as_str())))
        .load(c)?;
    Ok(entries
        .into_iter()
        .map(|(id, award, pilot)| {
            let s = scored.contains(&id);
            (id, s, award, pilot)
        })
        .collect())
}

impl Store {
    /// The inputs of a report for `[from, to]` (dates inclusive).
    pub async fn report_inputs(&self, from: NaiveDate, to: NaiveDate) -> StoreResult<Inputs> {
        let start = from.and_hms_opt(0, 0, 0).unwrap_or_default();
        let end = (to + chrono::Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default();
        self.read(move |c| {
            let applications = application_facts(c, start, end)?;
            let vouchers = voucher_facts(c, end)?;
            let transfers_by_code = transfers_by_code(c, start, end)?;
            let rollups = usage_daily::table
                .filter(usage_daily::day.ge(from))
                .filter(usage_daily::day.le(to))
                .select(DailyRow::as_select())
                .load(c)?;
            let entries = entry_facts(c, start, end)?;
            let budget_lines = budget_facts(c, &vouchers, &rollups)?;
            let incentives_by_rule = incentive_facts(c, start, end)?;
            let consulting = consulting_fact(c, start, end)?;
            let challenge_outcomes = challenge_outcomes(c, start, end)?;
            Ok(Inputs {
                budget_lines,
                incentives_by_rule,
                consulting,
                challenge_outcomes,
                applications,
                vouchers,
                transfers_by_code,
                rollups,
                entries,
            })
        })
        .await
    }

    /// Keeps a report; `None` if a final one of that kind and period exists (another worker
    /// made it). Drafts never conflict.
    pub async fn save_report(&self, row: ReportRow) -> StoreResult<Option<ReportRow>> {
        match self
            .write(move |c| {
                diesel::insert_into(reports::table)
                    .values(&row)
                    .execute(c)?;
                Ok(row)
            })
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(StoreError::Database(e)) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reports, newest period first, without their content (left empty).
    pub async fn reports(&self, limit: i64) -> StoreResult<Vec<ReportRow>> {
        self.read(move |c| {
            let rows: Vec<Listing> = reports::table
                .order((reports::period_to.desc(), reports::generated_at.desc()))
                .limit(limit)
                .select((
                    reports::id,
                    reports::kind,
                    reports::period_from,
                    reports::period_to,
                    reports::generated_at,
                    reports::generated_by,
                    reports::schema_version,
                    reports::content_hash,
                    reports::draft,
                ))
                .load(c)?;
            Ok(rows
                .into_iter()
                .map(
                    |(
                        id,
                        kind,
                        period_from,
                        period_to,
                        generated_at,
                        generated_by,
                        schema_version,
                        content_hash,
                        draft,
                    )| ReportRow {
                        id,
                        kind,
                        period_from,
                        period_to,
                        generated_at,
                        generated_by,
                        schema_version,
                        content_hash,
                        content: String::new(),
                        public_content: String::new(),
                        html: String::new(),
                        public_html: String::new(),
                        draft,
                    },
                )
                .collect())
        })
        .await
    }

    pub async fn report(&self, id: String) -> StoreResult<ReportRow> {
        self.read(move |c| {
            reports::table
                .find(&id)
                .select(ReportRow::as_select())
                .first(c)
                .optional()?
                .ok_or(StoreError::NotFound("report"))
        })
        .await
    }

    /// The latest final report of `kind`, or the final one for exactly this period; drafts
    /// are never published.
    pub async fn public_report(
        &self,
        kind: ReportKind,
        period: Option<(NaiveDate, NaiveDate)>,
    ) -> StoreResult<ReportRow> {
        self.read(move |c| {
            let mut q = reports::table
                .filter(reports::kind.eq(&kind))
                .filter(reports::draft.eq(false))
                .into_boxed();
            if let Some((from, to)) = period {
                q = q
                    .filter(reports::period_from.eq(from))
                    .filter(reports::period_to.eq(to));
            }
            q.order(reports::period_to.desc())
                .select(ReportRow::as_select())
                .first(c)
                .optional()?
                .ok_or(StoreError::NotFound("report"))
        })
        .await
    }
}
