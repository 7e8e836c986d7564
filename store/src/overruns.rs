//! Overrun: usage the provider billed above what its request held. The hold bounds every
//! request, so an overrun means the bound missed something; each is recorded on its usage row,
//! shown per key and model, told to administrators once per key per day, and a key whose
//! overrun adds up to more than the programme's threshold is suspended, audited
//! (docs/ARCHITECTURE.md, "Overrun").

use crate::audit::{self, AuditEntry};
use crate::db::{DbConn, Store};
use crate::error::{StoreError, StoreResult};
use crate::outbox;
use crate::schema::{api_keys, usage_records, vouchers};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::money::format_micros;
use voucherd_domain::VoucherId;
use voucherd_domain::{ApiKeyId, UserId};

/// Overrun rows read at most for the summary (they are rare: each is a missed bound).
const SUMMARY_ROWS_MAX: i64 = 100_000;

/// One overrun, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Overrun {
    pub api_key_id: ApiKeyId,
    pub model: String,
    pub overrun_micros: i64,
    pub at: NaiveDateTime,
}

/// Overrun of one key on one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyModelOverrun {
    pub api_key_id: ApiKeyId,
    pub key_name: String,
    pub key_prefix: String,
    pub voucher_id: VoucherId,
    pub company_number: String,
    pub model: String,
    pub requests: i64,
    pub overrun_micros: i64,
    pub last_at: NaiveDateTime,
    pub key_suspended_at: Option<NaiveDateTime>,
}

/// What noting an overrun did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noted {
    /// The key's overrun in all, this one included.
    pub key_total_micros: i64,
    /// The key was suspended by this overrun.
    pub suspended: bool,
}

fn key_total(c: &mut DbConn, api_key_id: &ApiKeyId) -> StoreResult<i64> {
    // Summed here rather than in SQL: SUM of a BIGINT is NUMERIC on PostgreSQL. The partial
    // index on overrun rows keeps this read small.
    let amounts: Vec<i64> = usage_records::table
        .filter(usage_records::api_key_id.eq(api_key_id))
        .filter(usage_records::overrun_micros.gt(0))
        .select(usage_records::overrun_micros)
        .load(c)?;
    Ok(amounts.iter().fold(0i64, |a, b| a.saturating_add(*b)))
}

impl Store {
    /// Notes an overrun already recorded on its usage row: administrators hear of it once per
    /// key per day, and the key is suspended (audited) once its overrun passes
    /// `threshold_micros`.
    pub async fn note_overrun(&self, o: Overrun, threshold_micros: i64) -> StoreResult<Noted> {
        self.write(move |c| {
            let (name, prefix, voucher_id, suspended_at, revoked_at): (
                String,
                String,
                VoucherId,
                Option<NaiveDateTime>,
                Option<NaiveDateTime>,
            ) = api_keys::table
                .find(&o.api_key_id)
                .select((
                    api_keys::name,
                    api_keys::prefix,
                    api_keys::voucher_id,
                    api_keys::suspended_at,
                    api_keys::revoked_at,
                ))
                .first(c)?;
            let company: String = vouchers::table
                .find(&voucher_id)
                .select(vouchers::company_number)
                .first(c)?;
            let total = key_total(c, &o.api_key_id)?;
            let suspend =
                total > threshold_micros && suspended_at.is_none() && revoked_at.is_none();
            let suspended = suspend && suspend_key(c, &o, total, threshold_micros)?;
            let voucher_reference = crate::vouchers::reference_of(c, &voucher_id)?;
            outbox::notify_admins(
                c,
                &format!("usage-overrun:{}:{}", o.api_key_id, o.at.format("%Y-%m-%d")),
                "usage_overrun",
                serde_json::json!({
                    "key_name": name,
                    "key_prefix": prefix,
                    "company_number": company,
                    "voucher_id": voucher_id,
                    "voucher_reference": voucher_reference,
                    "model": o.model,
                    "amount": format_micros(o.overrun_micros),
                    "total": format_micros(total),
                    "threshold": format_micros(threshold_micros),
                    "suspended": suspended || suspended_at.is_some(),
                }),
            )?;
            Ok(Noted {
                key_total_micros: total,
                suspended,
            })
        })
        .await
    }

    /// Overrun per key and model, largest first.
    pub async fn overruns(&self) -> StoreResult<Vec<KeyModelOverrun>> {
        self.read(move |c| {
            let rows: Vec<(String, String, i64, NaiveDateTime)> = usage_records::table
                .filter(usage_records::overrun_micros.gt(0))
                .select((
                    usage_records::api_key_id,
                    usage_records::model,
                    usage_records::overrun_micros,
                    usage_records::created_at,
                ))
                .limit(SUMMARY_ROWS_MAX)
                .load(c)?;
            let mut by: std::collections::BTreeMap<(String, String), (i64, i64, NaiveDateTime)> =
                Default::default();
            for (key, model, micros, at) in rows {
                let e = by.entry((key, model)).or_insert((0, 0, at));
                e.0 += 1;
                e.1 = e.1.saturating_add(micros);
                e.2 = e.2.max(at);
            }
            let mut out = Vec::with_capacity(by.len());
            for ((key, model), (requests, micros, last_at)) in by {
                let (name, prefix, voucher_id, suspended_at): (
                    String,
                    String,
                    VoucherId,
                    Option<NaiveDateTime>,
                ) = api_keys::table
                    .find(&key)
                    .select((
                        api_keys::name,
                        api_keys::prefix,
                        api_keys::voucher_id,
                        api_keys::suspended_at,
                    ))
                    .first(c)?;
                let company_number: String = vouchers::table
                    .find(&voucher_id)
                    .select(vouchers::company_number)
                    .first(c)?;
                out.push(KeyModelOverrun {
                    api_key_id: key.into(),
                    key_name: name,
                    key_prefix: prefix,
                    voucher_id,
                    company_number,
                    model,
                    requests,
                    overrun_micros: micros,
                    last_at,
                    key_suspended_at: suspended_at,
                });
            }
            out.sort_by(|a, b| {
                b.overrun_micros
                    .cmp(&a.overrun_micros)
                    .then_with(|| a.api_key_id.cmp(&b.api_key_id))
            });
            Ok(out)
        })
        .await
    }

    /// Lifts a key's suspension (an administrator's decision, audited with its reason).
    pub async fn reinstate_key(
        &self,
        api_key_id: ApiKeyId,
        actor_id: UserId,
        reason: String,
    ) -> StoreResult<()> {
        self.write(move |c| {
            let exists = api_keys::table
                .find(&api_key_id)
                .select(api_keys::id)
                .first::<String>(c)
                .optional()?
                .is_some();
            if !exists {
                return Err(StoreError::NotFound("api key"));
            }
            let n = diesel::update(
                api_keys::table
                    .filter(api_keys::id.eq(&api_key_id))
                    .filter(api_keys::suspended_at.is_not_null()),
            )
            .set((
                api_keys::suspended_at.eq(None::<NaiveDateTime>),
                api_keys::suspension_reason.eq(None::<String>),
            ))
            .execute(c)?;
            if n != 1 {
                return Err(StoreError::KeyNotSuspended);
            }
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: "api_key_reinstated",
                    subject_type: "api_key",
                    subject_id: api_key_id.as_str(),
                    reason: Some(&reason),
                    details: serde_json::json!({}),
                },
            )
        })
        .await
    }
}

/// Suspends the key of an overrun whose total (`total_micros`) passed the threshold, audited;
/// whether this call suspended it (not another at the same time).
fn suspend_key(
    c: &mut DbConn,
    o: &Overrun,
    total_micros: i64,
    threshold_micros: i64,
) -> StoreResult<bool> {
    let reason = format!(
        "usage above its holds reached £{} (the programme suspends a key above £{})",
        format_micros(total_micros),
        format_micros(threshold_micros)
    );
    let n = diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(&o.api_key_id))
            .filter(api_keys::suspended_at.is_null()),
    )
    .set((
        api_keys::suspended_at.eq(Some(o.at)),
        api_keys::suspension_reason.eq(Some(&reason)),
    ))
    .execute(c)?;
    if n == 1 {
        audit::record(
            c,
            AuditEntry {
                actor_id: None,
                action: "api_key_suspended",
                subject_type: "api_key",
                subject_id: o.api_key_id.as_str(),
                reason: Some(&reason),
                details: serde_json::json!({
                    "overrun_total": format_micros(total_micros),
                    "threshold": format_micros(threshold_micros),
                    "model": o.model,
                }),
            },
        )?;
    }
    Ok(n == 1)
}
