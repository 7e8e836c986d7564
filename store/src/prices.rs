//! The versioned price table. A price change inserts a new version; usage rows keep a
//! snapshot of the version they were priced with, so past usage never changes.

use crate::audit::{self, AuditEntry};
use crate::db::{now, Store};
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::schema::prices;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::pricing::PriceRates;
use voucherd_domain::Money;
use voucherd_domain::UserId;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = prices)]
pub struct PriceRow {
    pub id: String,
    pub model: String,
    pub input_per_million: i64,
    pub cached_input_per_million: i64,
    pub output_per_million: i64,
    pub effective_from: NaiveDateTime,
    pub created_by: Option<UserId>,
    pub created_at: NaiveDateTime,
}

impl PriceRow {
    pub fn rates(&self) -> StoreResult<PriceRates> {
        let m = |v: i64| {
            Money::from_micros(v)
                .map_err(|e| StoreError::Invariant(format!("price {}: {e}", self.id)))
        };
        Ok(PriceRates {
            input_per_million: m(self.input_per_million)?,
            cached_input_per_million: m(self.cached_input_per_million)?,
            output_per_million: m(self.output_per_million)?,
        })
    }
}

fn current(rows: Vec<PriceRow>) -> Vec<PriceRow> {
    // Rows arrive ordered by model, newest first: keep the first of each model.
    let mut out: Vec<PriceRow> = Vec::new();
    for r in rows {
        if out.last().is_none_or(|l| l.model != r.model) {
            out.push(r);
        }
    }
    out
}

impl Store {
    /// The price in force at `at` for every model.
    pub async fn current_prices(&self, at: NaiveDateTime) -> StoreResult<Vec<PriceRow>> {
        self.read(move |c| {
            let rows = prices::table
                .filter(prices::effective_from.le(at))
                .order((prices::model.asc(), prices::effective_from.desc()))
                .select(PriceRow::as_select())
                .load(c)?;
            Ok(current(rows))
        })
        .await
    }

    /// Every version of every model's price, scheduled ones included: newest first per model,
    /// at most `limit`.
    pub async fn price_history(&self, limit: i64) -> StoreResult<Vec<PriceRow>> {
        self.read(move |c| {
            Ok(prices::table
                .order((prices::model.asc(), prices::effective_from.desc()))
                .limit(limit)
                .select(PriceRow::as_select())
                .load(c)?)
        })
        .await
    }

    pub async fn current_price(
        &self,
        model: String,
        at: NaiveDateTime,
    ) -> StoreResult<Option<PriceRow>> {
        self.read(move |c| {
            Ok(prices::table
                .filter(prices::model.eq(model))
                .filter(prices::effective_from.le(at))
                .order(prices::effective_from.desc())
                .select(PriceRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Adds a price version, audited when an administrator sets it.
    pub async fn set_price(&self, row: PriceRow) -> StoreResult<PriceRow> {
        self.write(move |c| {
            match diesel::insert_into(prices::table).values(&row).execute(c) {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::PriceVersionExists {
                        model: row.model.clone(),
                        effective_from: row.effective_from.to_string(),
                    })
                }
                Err(e) => return Err(e.into()),
            }
            audit::record(
                c,
                AuditEntry {
                    actor_id: row.created_by.as_ref(),
                    action: "price.set",
                    subject_type: "price",
                    subject_id: row.model.as_str(),
                    reason: None,
                    details: serde_json::json!({
                        "price_id": row.id,
                        "input_per_million_micros": row.input_per_million,
                        "cached_input_per_million_micros": row.cached_input_per_million,
                        "output_per_million_micros": row.output_per_million,
                        "effective_from": row.effective_from.to_string(),
                    }),
                },
            )?;
            Ok(row)
        })
        .await
    }

    /// At start-up: gives each configured model a price if it has none yet. Prices already in
    /// the table are the administrators' and are never overwritten by configuration.
    pub fn seed_prices(&self, defaults: &[(String, PriceRates)]) -> StoreResult<usize> {
        self.write_blocking(|c| {
            let mut added = 0;
            for (model, rates) in defaults {
                let known: i64 = prices::table
                    .filter(prices::model.eq(model))
                    .count()
                    .get_result(c)?;
                if known == 0 {
                    let at = now();
                    diesel::insert_into(prices::table)
                        .values(&PriceRow {
                            id: uuid::Uuid::now_v7().to_string(),
                            model: model.clone(),
                            input_per_million: rates.input_per_million.micros(),
                            cached_input_per_million: rates.cached_input_per_million.micros(),
                            output_per_million: rates.output_per_million.micros(),
                            effective_from: at,
                            created_by: None,
                            created_at: at,
                        })
                        .execute(c)?;
                    added += 1;
                }
            }
            Ok(added)
        })
    }
}
