//! What reports read — applications, vouchers, ledger totals by code, daily usage rollups and
//! challenge results for a period; never raw usage rows — and the reports kept.

use crate::db::Store;
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::rollup::DailyRow;
use crate::schema::{
    accounts, applications, challenge_entries, challenge_scores, reports, transfers, usage_daily,
    vouchers,
};
use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = reports)]
pub struct ReportRow {
    pub id: String,
    pub kind: String,
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
}

/// A report's listed columns: id, kind, period, when, by whom, schema version, hash.
type Listing = (
    String,
    String,
    NaiveDate,
    NaiveDate,
    NaiveDateTime,
    String,
    i32,
    String,
);

/// The transfer codes whose period totals reports show.
const REPORTED_CODES: [&str; 4] = [
    "voucher_grant",
    "expiry",
    "challenge_award",
    "incentive_milestone",
];

/// An application as reports see it (no free text).
#[derive(Debug, Clone, Queryable)]
pub struct ApplicationFact {
    pub id: String,
    pub status: String,
    pub checks: String,
    pub created_at: NaiveDateTime,
    pub decided_at: Option<NaiveDateTime>,
}

/// A voucher with what reports group it by.
#[derive(Debug, Clone, Queryable)]
pub struct VoucherFact {
    pub id: String,
    pub status: String,
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
}

/// Everything a report for one period reads.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub applications: Vec<ApplicationFact>,
    pub vouchers: Vec<VoucherFact>,
    /// Σ transfer amounts in the period by code.
    pub transfers_by_code: Vec<(String, i64)>,
    pub rollups: Vec<DailyRow>,
    /// Challenge entries submitted in the period: (entry id, scored, award micros, pilot).
    pub entries: Vec<(String, bool, i64, bool)>,
}

impl Store {
    /// The inputs of a report for `[from, to]` (dates inclusive).
    pub async fn report_inputs(&self, from: NaiveDate, to: NaiveDate) -> StoreResult<Inputs> {
        let start = from.and_hms_opt(0, 0, 0).unwrap_or_default();
        let end = (to + chrono::Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default();
        self.read(move |c| {
            let applications = applications::table
                .filter(applications::created_at.ge(start))
                .filter(applications::created_at.lt(end))
                // Award applications made for challenge winners are not applications received.
                .filter(applications::id.not_like("award-%"))
                .select((
                    applications::id,
                    applications::status,
                    applications::checks,
                    applications::created_at,
                    applications::decided_at,
                ))
                .load::<ApplicationFact>(c)?;
            // Vouchers that existed at some point of the period.
            let vouchers = vouchers::table
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
                ))
                .load::<VoucherFact>(c)?;
            // Per-voucher movements only (grants, forfeits, awards, bonuses): their number grows
            // with vouchers, not with requests.
            let moved: Vec<(String, i64)> = transfers::table
                .filter(transfers::created_at.ge(start))
                .filter(transfers::created_at.lt(end))
                .filter(transfers::code.eq_any(REPORTED_CODES))
                .filter(transfers::kind.eq("single"))
                .select((transfers::code, transfers::amount))
                .load(c)?;
            let mut by_code: std::collections::BTreeMap<String, i64> = Default::default();
            for (code, amount) in moved {
                *by_code.entry(code).or_default() += amount;
            }
            let rollups = usage_daily::table
                .filter(usage_daily::day.ge(from))
                .filter(usage_daily::day.le(to))
                .select(DailyRow::as_select())
                .load(c)?;
            let entries: Vec<(String, i64, bool)> = challenge_entries::table
                .filter(challenge_entries::submitted_at.ge(start))
                .filter(challenge_entries::submitted_at.lt(end))
                .select((
                    challenge_entries::id,
                    challenge_entries::award,
                    challenge_entries::pilot_invited,
                ))
                .load(c)?;
            let scored: Vec<String> = challenge_scores::table
                .select(challenge_scores::entry_id)
                .distinct()
                .filter(challenge_scores::entry_id.eq_any(entries.iter().map(|e| e.0.as_str())))
                .load(c)?;
            Ok(Inputs {
                applications,
                vouchers,
                transfers_by_code: by_code.into_iter().collect(),
                rollups,
                entries: entries
                    .into_iter()
                    .map(|(id, award, pilot)| {
                        let s = scored.contains(&id);
                        (id, s, award, pilot)
                    })
                    .collect(),
            })
        })
        .await
    }

    /// Keeps a report; `None` if one of that kind and period exists (another worker made it).
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

    /// The latest report of `kind`, or the one for exactly this period.
    pub async fn public_report(
        &self,
        kind: String,
        period: Option<(NaiveDate, NaiveDate)>,
    ) -> StoreResult<ReportRow> {
        self.read(move |c| {
            let mut q = reports::table.filter(reports::kind.eq(&kind)).into_boxed();
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
