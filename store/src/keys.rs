use crate::audit::{self, AuditEntry};
use crate::db::{now, Store};
use crate::error::{StoreError, StoreResult};
use crate::outbox::{self, Notification};
use crate::schema::{api_keys, vouchers};
use crate::vouchers::VoucherRow;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::VoucherId;
use voucherd_domain::{ApiKeyId, UserId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: ApiKeyId,
    pub voucher_id: VoucherId,
    pub name: String,
    /// The first characters of the key, shown so its owner can tell keys apart.
    pub prefix: String,
    /// SHA-256 of the whole key, hex. The key itself is never stored.
    pub key_hash: String,
    pub created_by: UserId,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    /// `live` spends the voucher; `test` calls the sandbox and spends the free allowance.
    pub mode: voucherd_domain::KeyMode,
    /// JSON array of model names; `None` allows every priced model.
    pub allowed_models: Option<String>,
    pub rpm: Option<i32>,
    pub tpm: Option<i32>,
    pub max_concurrent: Option<i32>,
    pub monthly_spend_cap: Option<i64>,
    pub expires_at: Option<NaiveDateTime>,
    /// Set on a key that was rotated: the key that replaced it.
    pub rotated_to: Option<ApiKeyId>,
    /// Set when the programme suspended the key (usage above its holds past the threshold).
    pub suspended_at: Option<NaiveDateTime>,
    pub suspension_reason: Option<String>,
}

impl Store {
    pub async fn create_key(&self, row: ApiKeyRow) -> StoreResult<ApiKeyRow> {
        self.write(move |c| {
            diesel::insert_into(api_keys::table)
                .values(&row)
                .execute(c)?;
            // The voucher's owner hears of every key, whoever made it.
            let owner: UserId = vouchers::table
                .find(&row.voucher_id)
                .select(vouchers::owner_id)
                .first(c)?;
            let email = outbox::user_email(c, &owner)?;
            let voucher_reference = crate::vouchers::reference_of(c, &row.voucher_id)?;
            outbox::enqueue(
                c,
                Notification {
                    dedupe_key: format!("key-created:{}", row.id),
                    recipient: &email,
                    template: "key_created",
                    data: serde_json::json!({
                        "voucher_id": row.voucher_id,
                        "voucher_reference": voucher_reference,
                        "key_name": row.name,
                        "key_prefix": row.prefix,
                        "mode": row.mode,
                        "created_at": voucherd_domain::uk_time::date_time(row.created_at),
                    }),
                },
            )?;
            Ok(row)
        })
        .await
    }

    /// Replaces a key: the new one is created, and the old one keeps working until
    /// `old_valid_until` (or its own earlier expiry), then stops. Both spend the same voucher,
    /// so nothing is doubled. A key rotates once; revoked keys do not rotate.
    pub async fn rotate_key(
        &self,
        old_id: ApiKeyId,
        new: ApiKeyRow,
        old_valid_until: NaiveDateTime,
        actor_id: UserId,
    ) -> StoreResult<ApiKeyRow> {
        self.write(move |c| {
            let old: ApiKeyRow = api_keys::table
                .find(&old_id)
                .select(ApiKeyRow::as_select())
                .first(c)
                .optional()?
                .ok_or(StoreError::NotFound("key"))?;
            if old.revoked_at.is_some() || old.rotated_to.is_some() {
                return Err(StoreError::KeyNotRotatable);
            }
            let until = old
                .expires_at
                .map_or(old_valid_until, |e| e.min(old_valid_until));
            let changed = diesel::update(
                api_keys::table
                    .filter(api_keys::id.eq(&old_id))
                    .filter(api_keys::rotated_to.is_null())
                    .filter(api_keys::revoked_at.is_null()),
            )
            .set((
                api_keys::expires_at.eq(Some(until)),
                api_keys::rotated_to.eq(Some(&new.id)),
            ))
            .execute(c)?;
            if changed != 1 {
                return Err(StoreError::KeyNotRotatable);
            }
            diesel::insert_into(api_keys::table)
                .values(&new)
                .execute(c)?;
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: "key.rotate",
                    subject_type: "key",
                    subject_id: old_id.as_str(),
                    reason: None,
                    details: serde_json::json!({
                        "new_key_id": new.id,
                        "old_valid_until": until.to_string(),
                    }),
                },
            )?;
            Ok(new)
        })
        .await
    }

    pub async fn keys_for_voucher(&self, voucher_id: VoucherId) -> StoreResult<Vec<ApiKeyRow>> {
        self.read(move |c| {
            Ok(api_keys::table
                .filter(api_keys::voucher_id.eq(voucher_id))
                .order((api_keys::created_at.desc(), api_keys::id.desc()))
                .select(ApiKeyRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// A key with the voucher it spends.
    pub async fn key(&self, id: ApiKeyId) -> StoreResult<(ApiKeyRow, VoucherRow)> {
        self.read(move |c| {
            api_keys::table
                .inner_join(vouchers::table)
                .filter(api_keys::id.eq(id))
                .select((ApiKeyRow::as_select(), VoucherRow::as_select()))
                .first(c)
                .optional()?
                .ok_or(StoreError::NotFound("key"))
        })
        .await
    }

    /// A key, its voucher, and what the organisation's purchased credit had available (0
    /// when it never bought any): the proxy refuses a key nothing can pay for without further
    /// database work.
    pub async fn key_by_hash(
        &self,
        key_hash: String,
    ) -> StoreResult<Option<(ApiKeyRow, VoucherRow, i64)>> {
        self.read(move |c| {
            let found: Option<(ApiKeyRow, VoucherRow)> = api_keys::table
                .inner_join(vouchers::table)
                .filter(api_keys::key_hash.eq(key_hash))
                .select((ApiKeyRow::as_select(), VoucherRow::as_select()))
                .first(c)
                .optional()?;
            let Some((key, voucher)) = found else {
                return Ok(None);
            };
            let purchased = crate::ledger::find_account(
                c,
                &crate::payments::purchased_account_id(&voucher.owner_id),
            )?
            .map_or(0, |a| a.totals().available());
            Ok(Some((key, voucher, purchased)))
        })
        .await
    }

    /// Revokes a key once; revoking it again changes nothing and reports `false`.
    pub async fn revoke_key(&self, id: ApiKeyId, actor_id: UserId) -> StoreResult<bool> {
        self.write(move |c| {
            let changed = diesel::update(
                api_keys::table
                    .filter(api_keys::id.eq(&id))
                    .filter(api_keys::revoked_at.is_null()),
            )
            .set(api_keys::revoked_at.eq(Some(now())))
            .execute(c)?;
            if changed == 1 {
                audit::record(
                    c,
                    AuditEntry {
                        actor_id: Some(&actor_id),
                        action: "key.revoke",
                        subject_type: "key",
                        subject_id: id.as_str(),
                        reason: None,
                        details: serde_json::json!({}),
                    },
                )?;
            }
            Ok(changed == 1)
        })
        .await
    }

    pub async fn touch_key(&self, id: ApiKeyId, at: NaiveDateTime) -> StoreResult<()> {
        self.write(move |c| {
            diesel::update(api_keys::table.filter(api_keys::id.eq(id)))
                .set(api_keys::last_used_at.eq(Some(at)))
                .execute(c)?;
            Ok(())
        })
        .await
    }
}
