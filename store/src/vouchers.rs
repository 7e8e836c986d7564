use crate::db::Store;
use crate::error::{StoreError, StoreResult};
use crate::ledger::{self, AccountRow, TransferRow};
use crate::schema::{accounts, applications, vouchers};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::UserId;
use voucherd_domain::{ApplicationId, VoucherId};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// Which vouchers [`Store::find_vouchers`] lists.
#[derive(Debug, Clone, Default)]
pub struct VoucherFilter {
    pub owner_id: Option<UserId>,
    pub company_number: Option<String>,
    /// A part of the company's name, matched in any case.
    pub company_name_contains: Option<String>,
    /// A voucher's reference (`VCH-7K2M9Q`), as stored.
    pub reference: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// A voucher as listed: with its ledger account and its company's name.
#[derive(Debug, Clone)]
pub struct FoundVoucher {
    pub voucher: VoucherRow,
    pub account: AccountRow,
    pub company_name: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = vouchers)]
pub struct VoucherRow {
    pub id: VoucherId,
    pub application_id: ApplicationId,
    pub owner_id: UserId,
    pub account_id: String,
    pub company_number: String,
    pub currency: String,
    pub granted: i64,
    pub status: voucherd_domain::VoucherState,
    pub expires_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    /// The budget line it was granted from.
    pub budget_line_id: Option<voucherd_domain::BudgetLineId>,
    /// The SME's co-funding share (0 when the programme asks for none).
    pub contribution_micros: i64,
    /// When the share was paid; a co-funded voucher spends only once it is.
    pub contribution_paid_at: Option<NaiveDateTime>,
    /// Set while an administrator has suspended the voucher: its keys spend nothing.
    pub suspended_at: Option<NaiveDateTime>,
    pub suspension_reason: Option<String>,
    /// `VCH-7K2M9Q`: its application's code (domain::reference).
    pub reference: String,
}

/// A voucher's short reference (`VCH-7K2M9Q`), for messages that name it.
pub(crate) fn reference_of(
    c: &mut crate::db::DbConn,
    voucher_id: &VoucherId,
) -> StoreResult<String> {
    Ok(vouchers::table
        .find(voucher_id)
        .select(vouchers::reference)
        .first(c)?)
}

impl VoucherRow {
    /// A co-funded voucher whose share is not (or no longer) paid: it may not spend.
    pub fn awaiting_contribution(&self) -> bool {
        self.contribution_micros > 0 && self.contribution_paid_at.is_none()
    }
}

impl Store {
    /// What the programme itself has credited to a company's vouchers created since `since`
    /// (grants, awards, bonuses), with when: Minimal Financial Assistance it must count.
    pub async fn company_credits(
        &self,
        company_number: String,
        since: NaiveDateTime,
    ) -> StoreResult<Vec<(i64, NaiveDateTime)>> {
        self.read(move |c| {
            Ok(vouchers::table
                .inner_join(accounts::table.on(accounts::id.eq(vouchers::account_id)))
                .filter(vouchers::company_number.eq(&company_number))
                .filter(vouchers::created_at.ge(since))
                .select((accounts::credits_posted, vouchers::created_at))
                .load(c)?)
        })
        .await
    }

    /// Vouchers with their ledger accounts; all of them when `owner_id` is `None`.
    pub async fn vouchers(
        &self,
        owner_id: Option<UserId>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<(VoucherRow, AccountRow)>> {
        let found = self
            .find_vouchers(VoucherFilter {
                owner_id,
                limit,
                offset,
                ..Default::default()
            })
            .await?;
        Ok(found.into_iter().map(|f| (f.voucher, f.account)).collect())
    }

    /// Vouchers, newest first, with their accounts and company names: an owner's, a
    /// company's (by number, or by a part of its name in any case), or all.
    pub async fn find_vouchers(&self, f: VoucherFilter) -> StoreResult<Vec<FoundVoucher>> {
        self.read(move |c| {
            let mut q = vouchers::table
                .inner_join(accounts::table.on(accounts::id.eq(vouchers::account_id)))
                .inner_join(applications::table)
                .into_boxed();
            if let Some(o) = f.owner_id {
                q = q.filter(vouchers::owner_id.eq(o));
            }
            if let Some(n) = f.company_number {
                q = q.filter(vouchers::company_number.eq(n));
            }
            if let Some(r) = f.reference {
                q = q.filter(vouchers::reference.eq(r));
            }
            if let Some(name) = f.company_name_contains {
                // A part of the name, in any case; `%` and `_` typed are themselves.
                let escaped = name
                    .to_lowercase()
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                q = q.filter(
                    lower(applications::company_name)
                        .like(format!("%{escaped}%"))
                        .escape('\\'),
                );
            }
            let rows: Vec<(VoucherRow, AccountRow, String)> = q
                .order((vouchers::created_at.desc(), vouchers::id.desc()))
                .limit(f.limit)
                .offset(f.offset)
                .select((
                    VoucherRow::as_select(),
                    AccountRow::as_select(),
                    applications::company_name,
                ))
                .load(c)?;
            Ok(rows
                .into_iter()
                .map(|(voucher, account, company_name)| FoundVoucher {
                    voucher,
                    account,
                    company_name,
                })
                .collect())
        })
        .await
    }

    /// The name of the company a voucher was granted to (its application's).
    pub async fn company_name(&self, application_id: ApplicationId) -> StoreResult<String> {
        self.read(move |c| {
            applications::table
                .find(&application_id)
                .select(applications::company_name)
                .first(c)
                .optional()?
                .ok_or(StoreError::NotFound("application"))
        })
        .await
    }

    /// A voucher and its ledger account; `id` a [`VoucherId`] (or its text).
    pub async fn voucher(&self, id: impl Into<VoucherId>) -> StoreResult<(VoucherRow, AccountRow)> {
        let id = id.into();
        self.read(move |c| {
            let v: VoucherRow = vouchers::table
                .find(&id)
                .select(VoucherRow::as_select())
                .first(c)
                .optional()?
                .ok_or(StoreError::NotFound("voucher"))?;
            let a = ledger::account(c, &v.account_id)?;
            Ok((v, a))
        })
        .await
    }

    pub async fn account_transfers(
        &self,
        account_id: String,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<TransferRow>> {
        self.read(move |c| ledger::account_transfers(c, &account_id, limit, offset))
            .await
    }

    /// Suspends a voucher (`Some(reason)`) or reinstates it (`None` suspension, with the
    /// reason for reinstating): its keys stop or start again. Audited; a voucher already in
    /// the asked state is refused, so the log never shows a change that did not happen.
    pub async fn set_suspension(
        &self,
        id: VoucherId,
        suspend: bool,
        reason: String,
        actor_id: UserId,
    ) -> StoreResult<VoucherRow> {
        self.write(move |c| {
            let at = crate::db::now();
            let changed = write_suspension(c, &id, suspend, &reason, at)?;
            let v: VoucherRow = vouchers::table
                .find(&id)
                .select(VoucherRow::as_select())
                .first(c)
                .optional()?
                .ok_or(StoreError::NotFound("voucher"))?;
            if changed != 1 {
                return Err(StoreError::Payment(
                    if suspend {
                        voucherd_domain::ErrorCode::AlreadySuspended
                    } else {
                        voucherd_domain::ErrorCode::NotSuspended
                    },
                    if suspend {
                        "the voucher is already suspended".into()
                    } else {
                        "the voucher is not suspended".into()
                    },
                ));
            }
            crate::audit::record(
                c,
                crate::audit::AuditEntry {
                    actor_id: Some(&actor_id),
                    action: if suspend {
                        "voucher.suspend"
                    } else {
                        "voucher.reinstate"
                    },
                    subject_type: "voucher",
                    subject_id: id.as_str(),
                    reason: Some(&reason),
                    details: serde_json::json!({}),
                },
            )?;
            Ok(v)
        })
        .await
    }
}

/// Marks a voucher suspended at `at` with the reason, or reinstated, if it is not so already;
/// the rows changed.
fn write_suspension(
    c: &mut crate::db::DbConn,
    id: &VoucherId,
    suspend: bool,
    reason: &str,
    at: NaiveDateTime,
) -> StoreResult<usize> {
    Ok(if suspend {
        diesel::update(
            vouchers::table
                .filter(vouchers::id.eq(id))
                .filter(vouchers::suspended_at.is_null()),
        )
        .set((
            vouchers::suspended_at.eq(Some(at)),
            vouchers::suspension_reason.eq(Some(reason)),
        ))
        .execute(c)?
    } else {
        diesel::update(
            vouchers::table
                .filter(vouchers::id.eq(id))
                .filter(vouchers::suspended_at.is_not_null()),
        )
        .set((
            vouchers::suspended_at.eq(None::<NaiveDateTime>),
            vouchers::suspension_reason.eq(None::<String>),
        ))
        .execute(c)?
    })
}
