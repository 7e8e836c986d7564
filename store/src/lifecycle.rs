//! What the worker does to vouchers and the ledger on the programme's calendar: expiry and
//! its reminders, low-balance notices, and reconciliation. Every step is idempotent (transfer
//! ids and outbox dedupe keys are derived from the voucher), so a retried run moves no money
//! twice and notifies no one twice.

use crate::db::{DbConn, Store};
use crate::error::{StoreError, StoreResult};
use crate::jobs::ReconciliationRow;
use crate::ledger::{self, Reconciliation, TransferRequest, FORFEITED};
use crate::outbox::{self, Notification};
use crate::schema::{accounts, applications, reconciliations, vouchers};
use crate::vouchers::VoucherRow;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::ledger::TransferCode;
use voucherd_domain::money::format_micros;
use voucherd_domain::UserId;
use voucherd_domain::{ApplicationId, Money, VoucherId};

/// Vouchers looked at per transaction.
const BATCH: i64 = 200;

/// What a voucher-expiry run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExpiryReport {
    /// Vouchers that stopped spending in this run.
    pub expired: usize,
    /// Vouchers whose remainder moved to the forfeited account, and the total moved.
    pub forfeited: usize,
    pub forfeited_micros: i64,
    /// Expired vouchers whose remainder waits for holds in flight to resolve.
    pub waiting_on_holds: usize,
    pub reminders: usize,
}

/// What a low-balance run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LowBalanceReport {
    pub checked: usize,
    pub notified_80: usize,
    pub notified_100: usize,
}

fn company_name(c: &mut DbConn, application_id: &ApplicationId) -> StoreResult<String> {
    Ok(applications::table
        .find(application_id)
        .select(applications::company_name)
        .first(c)?)
}

fn earlier_forfeits(c: &mut DbConn, account_id: &str) -> StoreResult<i64> {
    use crate::schema::transfers;
    Ok(transfers::table
        .filter(transfers::debit_account_id.eq(account_id))
        .filter(transfers::code.eq(TransferCode::Expiry.as_str()))
        .count()
        .get_result(c)?)
}

/// What [`forfeit`] did.
enum Forfeit {
    /// Holds are in flight: the remainder is not known yet.
    Waiting,
    /// Done before, by an earlier run.
    AlreadyDone,
    /// Moved this amount (possibly zero) and told the owner.
    Moved(i64),
}

/// Moves an expired voucher's remainder to the forfeited account once its holds have resolved,
/// and tells its owner.
fn forfeit(c: &mut DbConn, v: &VoucherRow, at: NaiveDateTime) -> StoreResult<Forfeit> {
    let account = ledger::account(c, &v.account_id)?;
    if account.debits_pending > 0 {
        return Ok(Forfeit::Waiting);
    }
    let remainder = account.credits_posted - account.debits_posted;
    if remainder > 0 {
        // A later credit (after an earlier forfeit) is forfeited under an id of its own.
        let forfeit_id = match earlier_forfeits(c, &v.account_id)? {
            0 => format!("forfeit-{}", v.id),
            n => format!("forfeit-{}-{}", v.id, n + 1),
        };
        ledger::transfer(
            c,
            &TransferRequest {
                id: forfeit_id,
                debit_account_id: v.account_id.clone(),
                credit_account_id: FORFEITED.into(),
                amount: Money::from_micros(remainder)
                    .map_err(|e| StoreError::Invariant(e.to_string()))?,
                code: TransferCode::Expiry,
                memo: format!("remainder of voucher {} at its expiry", v.id),
            },
        )?;
    }
    let email = outbox::user_email(c, &v.owner_id)?;
    let company = company_name(c, &v.application_id)?;
    let new = outbox::enqueue(
        c,
        Notification {
            dedupe_key: format!("voucher-expired:{}", v.id),
            recipient: &email,
            template: "voucher_expired",
            data: serde_json::json!({
                "company_name": company,
                "voucher_id": v.id,
                "voucher_reference": v.reference,
                "expired_at": v.expires_at.format("%-d %B %Y").to_string(),
                "granted": format_micros(v.granted),
                "forfeited": format_micros(remainder.max(0)),
                "at": at.to_string(),
            }),
        },
    )?;
    Ok(if new || remainder > 0 {
        Forfeit::Moved(remainder.max(0))
    } else {
        Forfeit::AlreadyDone
    })
}

impl Store {
    /// Expires every active voucher whose expiry has passed at `at`: it stops spending at once
    /// (the proxy refuses an expired voucher's keys), its company may apply again, and its
    /// remainder moves to the forfeited account as soon as no hold is in flight. Also sends
    /// the reminders due 30 and 7 days before expiry.
    pub async fn run_voucher_expiry(&self, at: NaiveDateTime) -> StoreResult<ExpiryReport> {
        // Stop spending, in batches.
        let mut report = ExpiryReport {
            expired: self.stop_expired(at).await?,
            ..Default::default()
        };
        self.forfeit_expired(at, &mut report).await?;
        report.reminders = self.send_expiry_reminders(at).await?;
        Ok(report)
    }

    /// Expires the active vouchers whose expiry has passed at `at`, in batches, and frees their
    /// company numbers; how many.
    async fn stop_expired(&self, at: NaiveDateTime) -> StoreResult<usize> {
        let mut expired = 0;
        loop {
            let n = self
                .write(move |c| {
                    let due: Vec<VoucherRow> = vouchers::table
                        .filter(vouchers::status.eq(voucherd_domain::VoucherState::Active))
                        .filter(vouchers::expires_at.le(at))
                        .order(vouchers::expires_at.asc())
                        .limit(BATCH)
                        .select(VoucherRow::as_select())
                        .load(c)?;
                    for v in &due {
                        diesel::update(
                            vouchers::table
                                .filter(vouchers::id.eq(&v.id))
                                .filter(vouchers::status.eq(voucherd_domain::VoucherState::Active)),
                        )
                        .set(vouchers::status.eq(voucherd_domain::VoucherState::Expired))
                        .execute(c)?;
                        diesel::update(applications::table.find(&v.application_id))
                            .set(applications::live_company_number.eq(None::<String>))
                            .execute(c)?;
                    }
                    Ok(due.len())
                })
                .await?;
            expired += n;
            if (n as i64) < BATCH {
                break;
            }
        }
        Ok(expired)
    }

    /// Forfeits the remainders of recently expired vouchers, counting them into `report`.
    async fn forfeit_expired(
        &self,
        at: NaiveDateTime,
        report: &mut ExpiryReport,
    ) -> StoreResult<()> {
        // Forfeit the remainders of recently expired vouchers (idempotent by transfer id and
        // dedupe key; one with holds in flight waits for a later run). Holds time out within
        // hours, so a month's window catches every one.
        let mut after = String::new();
        let window_start = at - chrono::Duration::days(31);
        loop {
            let cursor = after.clone();
            let expired: Vec<VoucherRow> = self
                .read(move |c| {
                    Ok(vouchers::table
                        .filter(vouchers::status.eq(voucherd_domain::VoucherState::Expired))
                        .filter(vouchers::expires_at.gt(window_start))
                        .filter(vouchers::id.gt(&cursor))
                        .order(vouchers::id)
                        .limit(BATCH)
                        .select(VoucherRow::as_select())
                        .load(c)?)
                })
                .await?;
            let last = expired.last().map(|v| v.id.to_string());
            // Each voucher in its own transaction: one that fails is logged and tried again
            // next run, without holding up the others.
            let mut outcomes = Vec::with_capacity(expired.len());
            for v in expired {
                let id = v.id.clone();
                match self.write(move |c| forfeit(c, &v, at)).await {
                    Ok(o) => outcomes.push(o),
                    Err(e) => {
                        tracing::error!(voucher = %id, error = %e, "forfeit failed; retried next run");
                        outcomes.push(Forfeit::AlreadyDone);
                    }
                }
            }
            for o in &outcomes {
                match o {
                    Forfeit::Moved(amount) => {
                        report.forfeited += 1;
                        report.forfeited_micros += amount;
                    }
                    Forfeit::Waiting => report.waiting_on_holds += 1,
                    Forfeit::AlreadyDone => {}
                }
            }
            match last {
                Some(l) if outcomes.len() as i64 == BATCH => after = l,
                _ => break,
            }
        }
        Ok(())
    }

    /// Reminders 30 and 7 days before expiry, once each per voucher. Returns how many were new.
    async fn send_expiry_reminders(&self, at: NaiveDateTime) -> StoreResult<usize> {
        self.write(move |c| {
            let soon: Vec<(VoucherRow, crate::ledger::AccountRow)> = vouchers::table
                .inner_join(accounts::table.on(accounts::id.eq(vouchers::account_id)))
                .filter(vouchers::status.eq(voucherd_domain::VoucherState::Active))
                .filter(vouchers::expires_at.gt(at))
                .filter(vouchers::expires_at.le(at + chrono::Duration::days(30)))
                .select((
                    VoucherRow::as_select(),
                    crate::ledger::AccountRow::as_select(),
                ))
                .load(c)?;
            let mut sent = 0;
            for (v, a) in &soon {
                let days = if v.expires_at <= at + chrono::Duration::days(7) {
                    7
                } else {
                    30
                };
                let email = outbox::user_email(c, &v.owner_id)?;
                let company = company_name(c, &v.application_id)?;
                // What the SME can still spend: a lease holding part of the balance for a proxy
                // instance is not spent; only usage recorded under it is.
                let available =
                    a.credits_posted - a.debits_posted - crate::usage::unposted(c, &a.id)?;
                if outbox::enqueue(
                    c,
                    Notification {
                        dedupe_key: format!("expiry-reminder-{days}:{}", v.id),
                        recipient: &email,
                        template: "expiry_reminder",
                        data: serde_json::json!({
                            "company_name": company,
                            "voucher_id": v.id,
                            "voucher_reference": v.reference,
                            "days": days,
                            "expires_at": v.expires_at.format("%-d %B %Y").to_string(),
                            "available": format_micros(available.max(0)),
                        }),
                    },
                )? {
                    sent += 1;
                }
            }
            Ok(sent)
        })
        .await
    }

    /// Tells each active voucher's organisation when 80% and when all of its credit is used
    /// (spent, including usage not yet posted; "all" is 99% or more, as the last requests are
    /// capped to what is left), once per crossing.
    pub async fn run_low_balance(&self) -> StoreResult<LowBalanceReport> {
        let mut report = LowBalanceReport::default();
        let mut after = String::new();
        loop {
            let cursor = after.clone();
            let (last, page) = self
                .write(move |c| {
                    let active: Vec<(VoucherRow, crate::ledger::AccountRow)> = vouchers::table
                        .inner_join(accounts::table.on(accounts::id.eq(vouchers::account_id)))
                        .filter(vouchers::status.eq(voucherd_domain::VoucherState::Active))
                        .filter(vouchers::id.gt(&cursor))
                        .order(vouchers::id)
                        .limit(BATCH)
                        .select((
                            VoucherRow::as_select(),
                            crate::ledger::AccountRow::as_select(),
                        ))
                        .load(c)?;
                    let mut page = LowBalanceReport {
                        checked: active.len(),
                        ..Default::default()
                    };
                    for (v, a) in &active {
                        notify_low_balance(c, v, a, &mut page)?;
                    }
                    Ok((active.last().map(|(v, _)| v.id.to_string()), page))
                })
                .await?;
            report.checked += page.checked;
            report.notified_80 += page.notified_80;
            report.notified_100 += page.notified_100;
            match last {
                Some(l) if page.checked as i64 == BATCH => after = l,
                _ => break,
            }
        }
        Ok(report)
    }

    /// Recomputes the whole ledger, records the result, and on any difference notifies every
    /// administrator (naming the accounts). Returns the result.
    pub async fn run_reconciliation(
        &self,
        at: NaiveDateTime,
    ) -> StoreResult<(ReconciliationRow, Reconciliation)> {
        // A read transaction: it runs alongside the proxy's writes without blocking them.
        let result = self
            .read(|c| {
                c.transaction(|c| {
                    // One snapshot for every page, or live traffic would look like differences.
                    if let DbConn::Postgresql(pg) = c {
                        diesel::sql_query(
                            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                        )
                        .execute(pg)?;
                    }
                    ledger::reconcile(c)
                })
            })
            .await?;
        let found = result.clone();
        self.write(move |c| {
            let row = ReconciliationRow {
                id: uuid::Uuid::now_v7().to_string(),
                checked_at: at,
                accounts_checked: found.accounts_checked,
                transfers_checked: found.transfers_checked,
                balanced: found.differences.is_empty(),
                differences: serde_json::to_string(&found.differences)
                    .map_err(|e| StoreError::Invariant(e.to_string()))?,
            };
            diesel::insert_into(reconciliations::table)
                .values(&row)
                .execute(c)?;
            if !row.balanced {
                let accounts: Vec<String> = found
                    .differences
                    .iter()
                    .map(|d| d.account_id.clone().unwrap_or_else(|| "(ledger)".into()))
                    .collect();
                outbox::notify_admins(
                    c,
                    &format!("reconciliation:{}", row.id),
                    "reconciliation_alert",
                    serde_json::json!({
                        "checked_at": at.to_string(),
                        "accounts": accounts,
                        "differences": found.differences,
                    }),
                )?;
            }
            Ok((row, found))
        })
        .await
    }
}

/// Tells a voucher's organisation of each threshold (80%, all) its spending has crossed, once
/// each, counting the notices sent into `page`.
fn notify_low_balance(
    c: &mut DbConn,
    v: &VoucherRow,
    a: &crate::ledger::AccountRow,
    page: &mut LowBalanceReport,
) -> StoreResult<()> {
    let spent = a.debits_posted + crate::usage::unposted(c, &a.id)?;
    let remaining = (a.credits_posted - spent).max(0);
    // Of everything credited (the grant and any bonuses or awards since).
    let credited = a.credits_posted.max(v.granted);
    // Integer arithmetic: spent / credited ≥ 80 / 100.
    let mut crossed = Vec::new();
    if i128::from(spent) * 100 >= i128::from(credited) * 80 {
        crossed.push(80);
    }
    // "Used up": the last requests are capped to what is left, so a
    // voucher ends with crumbs no request can use, not at exactly zero.
    if remaining == 0 || i128::from(spent) * 100 >= i128::from(credited) * 99 {
        crossed.push(100);
    }
    if crossed.is_empty() {
        return Ok(());
    }
    // Read once for every threshold crossed.
    let email = outbox::user_email(c, &v.owner_id)?;
    let company = company_name(c, &v.application_id)?;
    for pct in crossed {
        if outbox::enqueue(
            c,
            Notification {
                dedupe_key: format!("low-balance-{pct}:{}", v.id),
                recipient: &email,
                template: "low_balance",
                data: serde_json::json!({
                    "company_name": company,
                    "voucher_id": v.id,
                    "voucher_reference": v.reference,
                    "percent_used": pct,
                    "granted": format_micros(v.granted),
                    "remaining": format_micros(remaining),
                    "exhausted": pct == 100,
                }),
            },
        )? {
            if pct == 80 {
                page.notified_80 += 1;
            } else {
                page.notified_100 += 1;
            }
        }
    }
    Ok(())
}

/// What left a voucher's account other than usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Withdrawn {
    /// The remainder moved to the forfeited account at expiry.
    pub forfeited_micros: i64,
    /// Credit taken back when a payment was refunded.
    pub refunded_micros: i64,
}

impl Store {
    /// What left `account_id` other than usage: forfeits and refunds (few rows each).
    pub async fn withdrawn(&self, account_id: String) -> StoreResult<Withdrawn> {
        use crate::schema::transfers;
        self.read(move |c| {
            let rows: Vec<(String, i64)> = transfers::table
                .filter(transfers::debit_account_id.eq(&account_id))
                .filter(
                    transfers::code
                        .eq_any([TransferCode::Expiry.as_str(), TransferCode::Refund.as_str()]),
                )
                .filter(transfers::kind.eq_any([
                    voucherd_domain::ledger::TransferKind::Single,
                    voucherd_domain::ledger::TransferKind::Post,
                ]))
                .select((transfers::code, transfers::amount))
                .load(c)?;
            let mut w = Withdrawn::default();
            for (code, amount) in rows {
                if code == TransferCode::Expiry.as_str() {
                    w.forfeited_micros += amount;
                } else {
                    w.refunded_micros += amount;
                }
            }
            Ok(w)
        })
        .await
    }

    /// An administrator expires a voucher now (audited with the reason): it stops spending at
    /// once, its company may apply again, and its remainder is forfeited here if no hold is in
    /// flight (else by the voucher-expiry job once they resolve).
    pub async fn expire_voucher_now(
        &self,
        id: VoucherId,
        actor_id: UserId,
        reason: String,
        at: NaiveDateTime,
    ) -> StoreResult<VoucherRow> {
        self.write(move |c| {
            let v: VoucherRow = vouchers::table
                .find(&id)
                .select(VoucherRow::as_select())
                .first(c)
                .optional()?
                .ok_or(StoreError::NotFound("voucher"))?;
            if v.status == voucherd_domain::VoucherState::Expired {
                return Err(StoreError::Payment(
                    voucherd_domain::ErrorCode::AlreadyExpired,
                    "the voucher has already expired".into(),
                ));
            }
            let expires_at = v.expires_at.min(at);
            let changed = diesel::update(
                vouchers::table
                    .filter(vouchers::id.eq(&id))
                    .filter(vouchers::status.ne(voucherd_domain::VoucherState::Expired)),
            )
            .set((
                vouchers::status.eq(voucherd_domain::VoucherState::Expired),
                vouchers::expires_at.eq(expires_at),
            ))
            .execute(c)?;
            if changed != 1 {
                return Err(StoreError::Contended);
            }
            diesel::update(applications::table.find(&v.application_id))
                .set(applications::live_company_number.eq(None::<String>))
                .execute(c)?;
            crate::audit::record(
                c,
                crate::audit::AuditEntry {
                    actor_id: Some(&actor_id),
                    action: "voucher_expired_now",
                    subject_type: "voucher",
                    subject_id: id.as_str(),
                    reason: Some(&reason),
                    details: serde_json::json!({
                        "was_due": v.expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    }),
                },
            )?;
            let expired = VoucherRow {
                status: voucherd_domain::VoucherState::Expired,
                expires_at,
                ..v
            };
            // Forfeited now when nothing is in flight; a lease or request still holding part
            // of it leaves that to the voucher-expiry job.
            forfeit(c, &expired, at)?;
            Ok(expired)
        })
        .await
    }
}
