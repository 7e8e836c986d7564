//! Incentive rules, versioned (a change is a new version under the same key), the versions
//! applied to each voucher at approval, and milestone bonuses granted once by the worker.

use crate::audit::{self, AuditEntry};
use crate::db::{DbConn, Store};
use crate::error::{StoreError, StoreResult};
use crate::ledger::{self, TransferRequest, PROGRAMME_FUND};
use crate::outbox::{self, Notification};
use crate::schema::{
    applications, budget_lines, consulting_bookings, incentive_rules, usage_records,
    voucher_incentives, vouchers,
};
use crate::vouchers::VoucherRow;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::budget::{self, FinancialYear};
use voucherd_domain::eligibility::MfaCheck;
use voucherd_domain::incentive::{Condition, Effect, Rule, Trigger};
use voucherd_domain::ledger::TransferCode;
use voucherd_domain::UserId;
use voucherd_domain::{ApplicationId, BudgetLineId, Money, VoucherId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = incentive_rules)]
pub struct RuleRow {
    pub id: String,
    pub rule_key: String,
    pub version: i32,
    pub name: String,
    pub condition_json: String,
    pub effect_json: String,
    pub budget_line_id: Option<voucherd_domain::BudgetLineId>,
    pub active: bool,
    pub created_by: UserId,
    pub created_at: NaiveDateTime,
}

impl RuleRow {
    pub fn rule(&self) -> StoreResult<Rule> {
        let bad = |e: serde_json::Error| StoreError::Invariant(format!("rule {}: {e}", self.id));
        Ok(Rule {
            id: self.id.clone(),
            key: self.rule_key.clone(),
            version: self.version,
            name: self.name.clone(),
            condition: serde_json::from_str::<Condition>(&self.condition_json).map_err(bad)?,
            effect: serde_json::from_str::<Effect>(&self.effect_json).map_err(bad)?,
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = voucher_incentives)]
pub struct AppliedRow {
    pub id: String,
    pub voucher_id: VoucherId,
    pub rule_id: String,
    pub why: String,
    pub amount: i64,
    pub milestone: bool,
    pub granted_at: Option<NaiveDateTime>,
    /// A milestone bonus not paid, and why (it would have passed the MFA limit).
    pub refused_reason: Option<String>,
}

/// What a run of the milestone bonuses did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MilestoneRun {
    pub granted: usize,
    /// Refused for passing the Minimal Financial Assistance limit (recorded, not retried).
    pub refused: usize,
}

enum Bonus {
    Waiting,
    Granted,
    Refused,
}

/// Records the rule versions an approval applied (inside its transaction).
pub(crate) fn record_applied(c: &mut DbConn, rows: &[AppliedRow]) -> StoreResult<()> {
    for r in rows {
        diesel::insert_into(voucher_incentives::table)
            .values(r)
            .execute(c)?;
    }
    Ok(())
}

fn latest_version(c: &mut DbConn, key: &str) -> StoreResult<Option<RuleRow>> {
    Ok(incentive_rules::table
        .filter(incentive_rules::rule_key.eq(key))
        .order(incentive_rules::version.desc())
        .select(RuleRow::as_select())
        .first(c)
        .optional()?)
}

/// The account a voucher's bonus is paid from, by the rule docs/PROGRAMME.md, "Incentives",
/// states (see [`budget::choose_bonus_line`]): the rule's line, then the voucher's own, then
/// the most specific line of the current financial year, each only if the company matches it
/// and it holds the amount; else the programme fund. Never a line the company does not match.
fn bonus_source(
    c: &mut DbConn,
    v: &VoucherRow,
    rule_line: Option<&BudgetLineId>,
    at: NaiveDateTime,
    amount: Money,
) -> StoreResult<String> {
    let app: crate::applications::ApplicationRow = applications::table
        .find(&v.application_id)
        .select(crate::applications::ApplicationRow::as_select())
        .first(c)?;
    let organisation = crate::applications::organisation(&app)?;
    let lines = crate::budget::balances(c)?;
    let balances: Vec<budget::LineBalance> = lines.iter().map(|(_, b)| b.clone()).collect();
    let preferred: Vec<&BudgetLineId> = rule_line
        .into_iter()
        .chain(v.budget_line_id.as_ref())
        .collect();
    let chosen = budget::choose_bonus_line(
        &balances,
        &preferred,
        FinancialYear::containing(at.date()),
        &organisation,
        amount.micros(),
    );
    Ok(match chosen {
        Some(id) => lines
            .iter()
            .find(|(r, _)| r.id == *id)
            .map(|(r, _)| r.account_id.clone())
            .ok_or_else(|| StoreError::Invariant(format!("budget line {id} vanished")))?,
        None => PROGRAMME_FUND.to_string(),
    })
}

impl Store {
    /// Stores a rule's next version (the first when the key is new), audited.
    pub async fn save_rule(&self, mut row: RuleRow) -> StoreResult<RuleRow> {
        self.write(move |c| {
            if let Some(line) = &row.budget_line_id {
                let exists: i64 = budget_lines::table
                    .find(line)
                    .count()
                    .get_result(c)?;
                if exists == 0 {
                    return Err(StoreError::NotFound("budget line"));
                }
            }
            row.version = latest_version(c, &row.rule_key)?.map_or(1, |r| r.version + 1);
            match diesel::insert_into(incentive_rules::table)
                .values(&row)
                .execute(c)
            {
                Ok(_) => {}
                // Two edits of one rule at once: the second is told to retry.
                Err(e) if crate::error::is_unique_violation(&e) => return Err(StoreError::Contended),
                Err(e) => return Err(e.into()),
            }
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&row.created_by),
                    action: "incentive.save",
                    subject_type: "incentive",
                    subject_id: row.rule_key.as_str(),
                    reason: None,
                    details: serde_json::json!({
                        "version": row.version,
                        "name": row.name,
                        "active": row.active,
                        "condition": serde_json::from_str::<serde_json::Value>(&row.condition_json).unwrap_or_default(),
                        "effect": serde_json::from_str::<serde_json::Value>(&row.effect_json).unwrap_or_default(),
                    }),
                },
            )?;
            Ok(row)
        })
        .await
    }

    /// Every rule's latest version.
    pub async fn latest_rules(&self) -> StoreResult<Vec<RuleRow>> {
        self.read(|c| {
            let all: Vec<RuleRow> = incentive_rules::table
                .order((
                    incentive_rules::rule_key.asc(),
                    incentive_rules::version.desc(),
                ))
                .select(RuleRow::as_select())
                .load(c)?;
            // Each key's latest version, in the order the rules were first created: editing a
            // rule does not change which one a cap trims first.
            let mut first_created: std::collections::HashMap<String, NaiveDateTime> =
                Default::default();
            for r in &all {
                first_created.insert(r.rule_key.clone(), r.created_at);
            }
            let mut latest: Vec<RuleRow> = Vec::new();
            for r in all {
                if latest.last().is_none_or(|l| l.rule_key != r.rule_key) {
                    latest.push(r);
                }
            }
            latest.sort_by(|a, b| {
                first_created[&a.rule_key]
                    .cmp(&first_created[&b.rule_key])
                    .then(a.rule_key.cmp(&b.rule_key))
            });
            Ok(latest)
        })
        .await
    }

    /// Whether the company had an application before this one.
    pub async fn first_time_applicant(&self, application_id: ApplicationId) -> StoreResult<bool> {
        self.read(move |c| {
            let (company, created): (String, NaiveDateTime) = applications::table
                .find(&application_id)
                .select((applications::company_number, applications::created_at))
                .first(c)?;
            let earlier: i64 = applications::table
                .filter(applications::company_number.eq(&company))
                .filter(applications::id.ne(&application_id))
                .filter(applications::created_at.le(created))
                .count()
                .get_result(c)?;
            Ok(earlier == 0)
        })
        .await
    }

    /// The incentives applied to a voucher, with their rule versions.
    pub async fn voucher_incentives(
        &self,
        voucher_id: VoucherId,
    ) -> StoreResult<Vec<(AppliedRow, RuleRow)>> {
        self.read(move |c| {
            Ok(voucher_incentives::table
                .inner_join(incentive_rules::table)
                .filter(voucher_incentives::voucher_id.eq(&voucher_id))
                .order(incentive_rules::created_at.asc())
                .select((AppliedRow::as_select(), RuleRow::as_select()))
                .load(c)?)
        })
        .await
    }

    /// Grants every milestone bonus whose trigger has happened, once each (the transfer id is
    /// the applied incentive's), from a line the company matches or the programme fund (see
    /// [`bonus_source`]). A pot too
    /// short is retried on a later run. A bonus that would take the organisation past the
    /// Minimal Financial Assistance limit (checked in the paying transaction) is recorded as
    /// refused with the reason, audited, and not paid; the pot keeps the money.
    pub async fn grant_milestones(
        &self,
        at: NaiveDateTime,
        rules: &voucherd_domain::eligibility::EligibilityRules,
    ) -> StoreResult<MilestoneRun> {
        let pending = self.pending_milestones(at).await?;
        let mut run = MilestoneRun::default();
        for (applied, rule) in pending {
            let Effect::MilestoneBonus { trigger, .. } = rule.rule()?.effect else {
                continue;
            };
            let rules = rules.clone();
            let outcome = self
                .write(move |c| grant_milestone(c, &applied, &rule, trigger, &rules, at))
                .await;
            match outcome {
                Ok(Bonus::Granted) => run.granted += 1,
                Ok(Bonus::Refused) => run.refused += 1,
                Ok(Bonus::Waiting) => {}
                Err(StoreError::InsufficientFunds { account_id }) => {
                    tracing::error!(%account_id, "a milestone bonus waits: its pot is short")
                }
                // One bonus that fails does not hold up the others; it is tried next run.
                Err(e) => tracing::error!(error = %e, "a milestone bonus could not be granted"),
            }
        }
        Ok(run)
    }

    /// The milestone bonuses neither granted nor refused, of vouchers live at `at`, with their
    /// rules; read in pages of 500, at most about 100,000.
    async fn pending_milestones(
        &self,
        at: NaiveDateTime,
    ) -> StoreResult<Vec<(AppliedRow, RuleRow)>> {
        // Only live vouchers' bonuses, in pages: a bonus whose voucher lapsed waits for ever
        // without keeping others from being looked at.
        let mut pending: Vec<(AppliedRow, RuleRow)> = Vec::new();
        let mut after = String::new();
        loop {
            let cursor = after.clone();
            let page: Vec<(AppliedRow, RuleRow)> = self
                .read(move |c| {
                    Ok(voucher_incentives::table
                        .inner_join(incentive_rules::table)
                        .filter(voucher_incentives::milestone.eq(true))
                        .filter(voucher_incentives::granted_at.is_null())
                        .filter(voucher_incentives::refused_reason.is_null())
                        .filter(voucher_incentives::id.gt(&cursor))
                        .filter(
                            voucher_incentives::voucher_id.eq_any(
                                vouchers::table
                                    .filter(
                                        vouchers::status.eq(voucherd_domain::VoucherState::Active),
                                    )
                                    .filter(vouchers::expires_at.gt(at))
                                    .select(vouchers::id),
                            ),
                        )
                        .order(voucher_incentives::id.asc())
                        .limit(500)
                        .select((AppliedRow::as_select(), RuleRow::as_select()))
                        .load(c)?)
                })
                .await?;
            let n = page.len();
            if let Some((last, _)) = page.last() {
                after = last.id.clone();
            }
            pending.extend(page);
            if n < 500 || pending.len() >= 100_000 {
                break;
            }
        }
        Ok(pending)
    }
}

/// One milestone bonus, in the paying transaction: waiting while its voucher is not live or its
/// trigger has not happened, refused past the MFA limit, else paid.
fn grant_milestone(
    c: &mut DbConn,
    applied: &AppliedRow,
    rule: &RuleRow,
    trigger: Trigger,
    rules: &voucherd_domain::eligibility::EligibilityRules,
    at: NaiveDateTime,
) -> StoreResult<Bonus> {
    let v: VoucherRow = vouchers::table
        .find(&applied.voucher_id)
        .select(VoucherRow::as_select())
        .first(c)?;
    if v.status != voucherd_domain::VoucherState::Active || v.expires_at <= at {
        return Ok(Bonus::Waiting);
    }
    if !milestone_reached(c, &v, trigger)? {
        return Ok(Bonus::Waiting);
    }
    let mfa = crate::mfa::check(c, rules, &v.company_number, at, applied.amount)?;
    if !mfa.passed {
        refuse_milestone(c, &v, applied, rule, &mfa)?;
        return Ok(Bonus::Refused);
    }
    pay_milestone(c, &v, applied, rule, at)?;
    Ok(Bonus::Granted)
}

/// Whether the voucher has done what the trigger asks: settled enough requests, or attended a
/// consulting session.
fn milestone_reached(c: &mut DbConn, v: &VoucherRow, trigger: Trigger) -> StoreResult<bool> {
    Ok(match trigger {
        Trigger::RequestsSettled { count } => {
            let n: i64 = usage_records::table
                .filter(usage_records::voucher_id.eq(&v.id))
                .count()
                .get_result(c)?;
            n >= i64::from(count)
        }
        Trigger::ConsultingSessionCompleted {} => {
            let n: i64 = consulting_bookings::table
                .filter(consulting_bookings::voucher_id.eq(&v.id))
                .filter(consulting_bookings::outcome.eq(voucherd_domain::SessionOutcome::Attended))
                .count()
                .get_result(c)?;
            n > 0
        }
    })
}

/// Records a bonus refused under the MFA limit, with the reason: audited, and the company told.
fn refuse_milestone(
    c: &mut DbConn,
    v: &VoucherRow,
    applied: &AppliedRow,
    rule: &RuleRow,
    mfa: &MfaCheck,
) -> StoreResult<()> {
    diesel::update(voucher_incentives::table.find(&applied.id))
        .set(voucher_incentives::refused_reason.eq(Some(&mfa.reason)))
        .execute(c)?;
    audit::record(
        c,
        AuditEntry {
            actor_id: None,
            action: "incentive.milestone_refused",
            subject_type: "voucher",
            subject_id: v.id.as_str(),
            reason: Some(&mfa.reason),
            details: serde_json::json!({
                "voucher_incentive_id": applied.id,
                "rule": rule.name,
                "amount_micros": applied.amount,
                "received_micros": mfa.received_micros,
                "limit_micros": mfa.limit_micros,
            }),
        },
    )?;
    // The company is told, with the reason, once.
    let email = outbox::user_email(c, &v.owner_id)?;
    outbox::enqueue(
        c,
        Notification {
            dedupe_key: format!("milestone-refused:{}", applied.id),
            recipient: &email,
            template: "milestone_bonus_refused",
            data: serde_json::json!({
                "voucher_id": v.id,
                "voucher_reference": v.reference,
                "rule": rule.name,
                "amount": voucherd_domain::money::format_micros(applied.amount),
                "reason": mfa.reason,
            }),
        },
    )?;
    Ok(())
}

/// Pays a bonus onto the voucher from its source, marks it granted and tells the company.
fn pay_milestone(
    c: &mut DbConn,
    v: &VoucherRow,
    applied: &AppliedRow,
    rule: &RuleRow,
    at: NaiveDateTime,
) -> StoreResult<()> {
    let amount =
        Money::from_micros(applied.amount).map_err(|e| StoreError::Invariant(e.to_string()))?;
    let source = bonus_source(c, v, rule.budget_line_id.as_ref(), at, amount)?;
    ledger::transfer(
        c,
        &TransferRequest {
            id: format!("milestone-{}", applied.id),
            debit_account_id: source,
            credit_account_id: v.account_id.clone(),
            amount,
            code: TransferCode::IncentiveMilestone,
            memo: format!("milestone bonus: {}", rule.name),
        },
    )?;
    diesel::update(voucher_incentives::table.find(&applied.id))
        .set(voucher_incentives::granted_at.eq(Some(at)))
        .execute(c)?;
    let email = outbox::user_email(c, &v.owner_id)?;
    outbox::enqueue(
        c,
        Notification {
            dedupe_key: format!("milestone:{}", applied.id),
            recipient: &email,
            template: "milestone_bonus",
            data: serde_json::json!({
                "voucher_id": v.id,
                "voucher_reference": v.reference,
                "rule": rule.name,
                "amount": voucherd_domain::money::format_micros(applied.amount),
                "awarded_on": at.format("%-d %B %Y").to_string(),
            }),
        },
    )?;
    Ok(())
}
