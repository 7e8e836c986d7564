//! Daily usage rollups by voucher and model, added to in the transaction that writes the usage
//! rows. Groups are upserted in key order, so two writers never take the same rows' locks in
//! opposite orders.

use crate::db::DbConn;
use crate::error::StoreResult;
use crate::schema::usage_daily;
use crate::usage::UsageRow;
use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::upsert::excluded;
use std::collections::BTreeMap;
use voucherd_domain::VoucherId;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq, Eq)]
#[diesel(table_name = usage_daily)]
// Explicit values only, so a batch reaches SQLite as one multi-row INSERT.
#[diesel(treat_none_as_default_value = false)]
pub struct DailyRow {
    pub day: NaiveDate,
    pub voucher_id: VoucherId,
    pub model: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: i64,
}

/// More tokens than any request can use: a row reporting more counts this many in a rollup.
const MAX_TOKENS_PER_ROW: i64 = 1_000_000_000_000;

/// Adds live usage rows to their days' rollups.
pub(crate) fn add<'a>(c: &mut DbConn, rows: impl Iterator<Item = &'a UsageRow>) -> StoreResult<()> {
    let mut groups: BTreeMap<(NaiveDate, &str, &str), DailyRow> = BTreeMap::new();
    for r in rows {
        let day = r.created_at.date();
        let g = groups
            .entry((day, r.voucher_id.as_str(), r.model.as_str()))
            .or_insert_with(|| DailyRow {
                day,
                voucher_id: r.voucher_id.clone(),
                model: r.model.clone(),
                requests: 0,
                prompt_tokens: 0,
                cached_prompt_tokens: 0,
                completion_tokens: 0,
                cost: 0,
            });
        // Absurd reported counts are clamped so no day's sums can overflow.
        let t = |n: i64| n.clamp(0, MAX_TOKENS_PER_ROW);
        g.requests += 1;
        g.prompt_tokens = g.prompt_tokens.saturating_add(t(r.prompt_tokens));
        g.cached_prompt_tokens = g
            .cached_prompt_tokens
            .saturating_add(t(r.cached_prompt_tokens));
        g.completion_tokens = g.completion_tokens.saturating_add(t(r.completion_tokens));
        g.cost = g.cost.saturating_add(r.cost.max(0));
    }
    let rows: Vec<DailyRow> = groups.into_values().collect();
    if rows.is_empty() {
        return Ok(());
    }
    macro_rules! upsert {
        ($conn:expr, $values:expr) => {
            diesel::insert_into(usage_daily::table)
                .values($values)
                .on_conflict((
                    usage_daily::day,
                    usage_daily::voucher_id,
                    usage_daily::model,
                ))
                .do_update()
                .set((
                    usage_daily::requests
                        .eq(usage_daily::requests + excluded(usage_daily::requests)),
                    usage_daily::prompt_tokens
                        .eq(usage_daily::prompt_tokens + excluded(usage_daily::prompt_tokens)),
                    usage_daily::cached_prompt_tokens.eq(usage_daily::cached_prompt_tokens
                        + excluded(usage_daily::cached_prompt_tokens)),
                    usage_daily::completion_tokens
                        .eq(usage_daily::completion_tokens
                            + excluded(usage_daily::completion_tokens)),
                    usage_daily::cost.eq(usage_daily::cost + excluded(usage_daily::cost)),
                ))
                .execute($conn)?
        };
    }
    // One statement for the whole batch (its rows are locked in key order on PostgreSQL).
    match c {
        DbConn::Postgresql(p) => {
            upsert!(p, &rows);
        }
        DbConn::Sqlite(s) => {
            upsert!(s, &rows);
        }
    }
    Ok(())
}

impl crate::Store {
    /// Rollup rows for days in `[from, to]`, one voucher's (by its [`VoucherId`] or its text) or
    /// all.
    pub async fn usage_daily(
        &self,
        voucher_id: Option<impl Into<VoucherId>>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<Vec<DailyRow>> {
        let voucher_id: Option<VoucherId> = voucher_id.map(Into::into);
        self.read(move |c| {
            let mut q = usage_daily::table
                .filter(usage_daily::day.ge(from))
                .filter(usage_daily::day.le(to))
                .into_boxed();
            if let Some(v) = voucher_id {
                q = q.filter(usage_daily::voucher_id.eq(v));
            }
            Ok(q.order((
                usage_daily::day,
                usage_daily::voucher_id,
                usage_daily::model,
            ))
            .select(DailyRow::as_select())
            .load(c)?)
        })
        .await
    }
}
