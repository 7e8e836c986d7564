use crate::audit::{self, AuditEntry};
use crate::db::{now, Store};
use crate::error::{StoreError, StoreResult};
use crate::schema::{api_keys, vouchers};
use crate::vouchers::VoucherRow;
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: String,
    pub voucher_id: String,
    pub name: String,
    /// The first characters of the key, shown so its owner can tell keys apart.
    pub prefix: String,
    /// SHA-256 of the whole key, hex. The key itself is never stored.
    pub key_hash: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

impl Store {
    pub async fn create_key(&self, row: ApiKeyRow) -> StoreResult<ApiKeyRow> {
        self.write(move |c| {
            diesel::insert_into(api_keys::table)
                .values(&row)
                .execute(c)?;
            Ok(row)
        })
        .await
    }

    pub async fn keys_for_voucher(&self, voucher_id: String) -> StoreResult<Vec<ApiKeyRow>> {
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
    pub async fn key(&self, id: String) -> StoreResult<(ApiKeyRow, VoucherRow)> {
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

    pub async fn key_by_hash(
        &self,
        key_hash: String,
    ) -> StoreResult<Option<(ApiKeyRow, VoucherRow)>> {
        self.read(move |c| {
            Ok(api_keys::table
                .inner_join(vouchers::table)
                .filter(api_keys::key_hash.eq(key_hash))
                .select((ApiKeyRow::as_select(), VoucherRow::as_select()))
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Revokes a key once; revoking it again changes nothing and reports `false`.
    pub async fn revoke_key(&self, id: String, actor_id: String) -> StoreResult<bool> {
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
                        subject_id: &id,
                        reason: None,
                        details: serde_json::json!({}),
                    },
                )?;
            }
            Ok(changed == 1)
        })
        .await
    }

    pub async fn touch_key(&self, id: String, at: NaiveDateTime) -> StoreResult<()> {
        self.write(move |c| {
            diesel::update(api_keys::table.filter(api_keys::id.eq(id)))
                .set(api_keys::last_used_at.eq(Some(at)))
                .execute(c)?;
            Ok(())
        })
        .await
    }
}
