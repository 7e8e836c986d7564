use crate::audit::{self, AuditEntry};
use crate::budget;
use crate::db::{now, DbConn, Store};
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::ledger;
use crate::outbox::{self, Notification};
use crate::schema::{applications, second_approvals, vouchers};
use crate::vouchers::VoucherRow;
use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use voucherd_domain::budget::{FinancialYear, Organisation, SicSection, SizeBand};
use voucherd_domain::consulting::Minutes;
use voucherd_domain::ledger::AccountKind;
use voucherd_domain::ownership::{Check, Method, Note, Ownership};
use voucherd_domain::reference::{self, Reference, ReferenceKind};
use voucherd_domain::UserId;
use voucherd_domain::{ApplicationId, ApplicationStatus, Money, SicCode, VoucherId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = applications)]
pub struct ApplicationRow {
    pub id: ApplicationId,
    pub applicant_id: UserId,
    pub company_number: String,
    pub company_name: String,
    pub employees: i32,
    pub annual_turnover: i64,
    pub balance_sheet_total: i64,
    pub region: String,
    pub sic_code: String,
    pub trading_since: NaiveDate,
    pub use_case: String,
    /// JSON array of `{provider, amount, awarded_on}`.
    pub subsidy_declarations: String,
    pub eligible: bool,
    /// JSON array of `{rule, passed, reason}`.
    pub checks: String,
    pub status: voucherd_domain::ApplicationStatus,
    pub live_company_number: Option<String>,
    pub decided_by: Option<UserId>,
    pub decided_at: Option<NaiveDateTime>,
    pub decision_reason: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Declared by the applicant: incentives may target spin-offs.
    pub university_spin_off: bool,
    #[diesel(embed)]
    pub ownership: OwnershipColumns,
    /// `APP-7K2M9Q` (domain::reference), drawn by the store when the application is stored.
    pub reference: String,
}

/// A new application's reference, not yet held by any application (the unique column is
/// the backstop against a concurrent draw of the same code, about one in a billion). A code
/// space so full that 16 draws all collide is a fault to report, not to loop on.
pub(crate) fn fresh_reference(c: &mut DbConn) -> StoreResult<Reference> {
    for _ in 0..16 {
        let mut random = [0u8; reference::CODE_LEN];
        random.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..reference::CODE_LEN]);
        let r = Reference::from_random(ReferenceKind::Application, random);
        let held: i64 = applications::table
            .filter(applications::reference.eq(r.to_string()))
            .count()
            .get_result(c)?;
        if held == 0 {
            return Ok(r);
        }
    }
    Err(StoreError::Invariant(
        "no free application reference in 16 draws".into(),
    ))
}

/// The reference of the voucher granted on the application with `application_reference`.
pub(crate) fn voucher_reference(application_reference: &str) -> StoreResult<String> {
    Reference::parse(application_reference)
        .map(|r| r.as_kind(ReferenceKind::Voucher).to_string())
        .map_err(|_| {
            StoreError::Invariant(format!(
                "application reference {application_reference:?} does not read back"
            ))
        })
}

impl ApplicationRow {
    /// Whether the applicant was found to own the company, parsed from its columns.
    pub fn ownership(&self) -> StoreResult<Ownership> {
        self.ownership
            .parse()
            .map_err(|e| StoreError::Invariant(format!("application {}: {e}", self.id)))
    }
}

/// How ownership of an application's company was settled, as stored: the state and, once an
/// administrator has checked, the method, who, when and their note. Written whole: a `None`
/// is written as NULL.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = applications, treat_none_as_null = true)]
pub struct OwnershipColumns {
    pub ownership: String,
    pub ownership_method: Option<String>,
    pub ownership_by: Option<String>,
    pub ownership_at: Option<NaiveDateTime>,
    pub ownership_note: Option<String>,
}

impl OwnershipColumns {
    pub fn of(o: &Ownership) -> OwnershipColumns {
        let check = o.check();
        OwnershipColumns {
            ownership: o.state().to_string(),
            ownership_method: check.map(|c| c.method.as_str().to_string()),
            ownership_by: check.map(|c| c.by.clone()),
            ownership_at: check.map(|c| c.at),
            ownership_note: check.map(|c| c.note.clone()),
        }
    }

    fn parse(&self) -> Result<Ownership, String> {
        Ownership::parse(
            &self.ownership,
            self.ownership_method.as_deref(),
            self.ownership_by.as_deref(),
            self.ownership_at,
            self.ownership_note.as_deref(),
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct ApplicationFilter {
    pub applicant_id: Option<UserId>,
    pub status: Option<String>,
    /// Oldest first (a queue: who has waited longest); newest first otherwise.
    pub oldest_first: bool,
    pub limit: i64,
    pub offset: i64,
}

pub enum Verdict {
    Approve {
        voucher_id: VoucherId,
        amount: Money,
        expires_at: NaiveDateTime,
        /// The consulting allowance that comes with the voucher.
        consulting: Minutes,
        /// The incentive rule versions applied (their `voucher_id` is filled in here).
        incentives: Vec<crate::incentives::AppliedRow>,
        /// The SME's co-funding share: the voucher spends once it is paid (zero: at once).
        contribution: Money,
    },
    Reject,
}

pub struct Decision {
    pub application_id: ApplicationId,
    pub actor_id: UserId,
    pub verdict: Verdict,
    pub reason: String,
    /// Whether this decides a submitted application, or confirms or rejects one that awaits
    /// a second administrator.
    pub stage: Stage,
    /// The Minimal Financial Assistance rule an approval is checked against, in its own
    /// transaction (`crate::mfa`).
    pub mfa_rules: voucherd_domain::eligibility::EligibilityRules,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The application is `submitted`.
    First,
    /// The application is `awaiting_second_approval`; the actor must not be its first approver.
    Second,
}

impl Stage {
    /// The status an application has at this stage.
    pub fn status(self) -> ApplicationStatus {
        match self {
            Stage::First => ApplicationStatus::Submitted,
            Stage::Second => ApplicationStatus::AwaitingSecondApproval,
        }
    }
}

/// An approval that waits for a second administrator (four eyes).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = second_approvals)]
pub struct SecondApprovalRow {
    pub application_id: ApplicationId,
    pub requested_by: UserId,
    pub reason: String,
    /// The amount the first administrator approved, before incentives.
    pub amount_micros: i64,
    /// The voucher's total with incentives, as evaluated then.
    pub total_micros: i64,
    pub valid_days: i32,
    pub requested_at: NaiveDateTime,
    pub decided_by: Option<UserId>,
    pub outcome: Option<voucherd_domain::SecondApprovalOutcome>,
    pub decided_at: Option<NaiveDateTime>,
}

/// Who an application is for, as budget lines target it.
pub(crate) fn organisation(app: &ApplicationRow) -> StoreResult<Organisation> {
    let bad = |e: String| StoreError::Invariant(format!("application {}: {e}", app.id));
    let sic = SicCode::parse(&app.sic_code).map_err(|e| bad(e.to_string()))?;
    Ok(Organisation {
        region: app.region.parse().map_err(bad)?,
        sic_section: SicSection::parse(&sic.section().to_string()).map_err(bad)?,
        size_band: SizeBand::of(u32::try_from(app.employees).unwrap_or(0)),
    })
}

fn application(c: &mut DbConn, id: &ApplicationId) -> StoreResult<ApplicationRow> {
    applications::table
        .find(id)
        .select(ApplicationRow::as_select())
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("application"))
}

/// An application and the id of its voucher, if it has one.
fn with_voucher(
    c: &mut DbConn,
    id: &ApplicationId,
) -> StoreResult<(ApplicationRow, Option<VoucherId>)> {
    applications::table
        .left_join(vouchers::table)
        .filter(applications::id.eq(id))
        .select((ApplicationRow::as_select(), vouchers::id.nullable()))
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("application"))
}

/// One decision in one transaction: the application marked decided (only from the status it
/// was read in), an approval's voucher granted, the decision audited and the applicant told.
fn decide(c: &mut DbConn, d: &Decision) -> StoreResult<(ApplicationRow, Option<VoucherRow>)> {
    let (app, first_approver) = pending_decision(c, d)?;
    let at = now();
    let status = match d.verdict {
        Verdict::Approve { .. } => ApplicationStatus::Approved,
        Verdict::Reject => ApplicationStatus::Rejected,
    };
    mark_decided(c, &app, d, status, first_approver.is_some(), at)?;
    let before = app.ownership()?;
    let voucher = grant_voucher(c, &app, d, at)?;
    audit_decision(
        c,
        &app,
        d,
        voucher.as_ref(),
        first_approver.as_ref().map(UserId::as_str),
        before,
    )?;
    notify_decision(c, &app, voucher.as_ref(), &d.reason, at)?;
    let app = application(c, &app.id)?;
    Ok((app, voucher))
}

/// The application, if it is at the decision's stage, and its first approver at the second
/// stage (who may not also be the second).
fn pending_decision(c: &mut DbConn, d: &Decision) -> StoreResult<(ApplicationRow, Option<UserId>)> {
    let app = application(c, &d.application_id)?;
    if app.status != d.stage.status() {
        return Err(StoreError::ApplicationNotPending {
            status: app.status.to_string(),
        });
    }
    let first_approver = match d.stage {
        Stage::First => None,
        Stage::Second => {
            let pending = pending_second(c, &app.id)?;
            if pending.requested_by == d.actor_id {
                return Err(StoreError::Approval(
                    voucherd_domain::ErrorCode::SameApprover,
                    "the administrator who approved first cannot be the second: \
                     another administrator must confirm or reject"
                        .into(),
                ));
            }
            Some(pending.requested_by)
        }
    };
    Ok((app, first_approver))
}

/// Marks the application decided, conditional on the status it was read in, so two concurrent
/// decisions cannot both win. Its company number is let go of here and held again by the
/// approval's voucher.
fn mark_decided(
    c: &mut DbConn,
    app: &ApplicationRow,
    d: &Decision,
    status: ApplicationStatus,
    second: bool,
    at: NaiveDateTime,
) -> StoreResult<()> {
    let changed = diesel::update(
        applications::table
            .filter(applications::id.eq(&app.id))
            .filter(applications::status.eq(d.stage.status())),
    )
    .set((
        applications::status.eq(status),
        applications::live_company_number.eq(None::<String>),
        applications::decided_by.eq(Some(&d.actor_id)),
        applications::decided_at.eq(Some(at)),
        applications::decision_reason.eq(Some(&d.reason)),
        applications::updated_at.eq(at),
    ))
    .execute(c)?;
    if changed != 1 {
        return Err(StoreError::ApplicationNotPending {
            status: "decided".into(),
        });
    }
    if second {
        let outcome = if status == ApplicationStatus::Approved {
            voucherd_domain::SecondApprovalOutcome::Confirmed
        } else {
            voucherd_domain::SecondApprovalOutcome::Rejected
        };
        diesel::update(
            second_approvals::table
                .find(&app.id)
                .filter(second_approvals::outcome.is_null()),
        )
        .set((
            second_approvals::decided_by.eq(Some(&d.actor_id)),
            second_approvals::outcome.eq(Some(outcome)),
            second_approvals::decided_at.eq(Some(at)),
        ))
        .execute(c)?;
    }
    Ok(())
}

/// An approval's voucher (a rejection has none): checked against the Minimal Financial
/// Assistance limit, funded from the year's budget line, with its consulting allowance and
/// incentives.
fn grant_voucher(
    c: &mut DbConn,
    app: &ApplicationRow,
    d: &Decision,
    at: NaiveDateTime,
) -> StoreResult<Option<VoucherRow>> {
    let Verdict::Approve {
        voucher_id,
        amount,
        expires_at,
        consulting,
        incentives,
        contribution,
    } = &d.verdict
    else {
        return Ok(None);
    };
    confirm_at_approval(c, app, d.actor_id.as_str(), at, &d.reason)?;
    within_mfa_limit(c, app, d, at, *amount)?;
    let account_id = format!("voucher-{voucher_id}");
    ledger::create_account(c, &account_id, AccountKind::Voucher)?;
    // From the year's matching budget line, or the fund when the year has none.
    let line = budget::line_for(c, FinancialYear::containing(at.date()), &organisation(app)?)?;
    budget::grant(
        c,
        line.as_ref(),
        format!("grant-{}", app.id),
        &account_id,
        *amount,
        format!("voucher for application {}", app.id),
    )?;
    let reference = voucher_reference(&app.reference)?;
    let v = VoucherRow {
        id: voucher_id.clone(),
        application_id: app.id.clone(),
        owner_id: app.applicant_id.clone(),
        account_id,
        company_number: app.company_number.clone(),
        currency: "GBP".into(),
        granted: amount.micros(),
        status: voucherd_domain::VoucherState::Active,
        expires_at: *expires_at,
        created_at: at,
        budget_line_id: line.map(|l| l.id),
        contribution_micros: contribution.micros(),
        contribution_paid_at: None,
        suspended_at: None,
        suspension_reason: None,
        reference,
    };
    diesel::insert_into(vouchers::table).values(&v).execute(c)?;
    crate::consulting::grant_minutes(c, &v.id, *consulting)?;
    record_incentives(c, incentives, &v.id)?;
    Ok(Some(v))
}

/// Refuses an approval that would take the organisation past the Minimal Financial Assistance
/// limit.
fn within_mfa_limit(
    c: &mut DbConn,
    app: &ApplicationRow,
    d: &Decision,
    at: NaiveDateTime,
    amount: Money,
) -> StoreResult<()> {
    // The voucher with its incentive extras is assistance: within the limit with everything
    // declared and paid in the window, checked here with the payment so that two awards at
    // once cannot both fit.
    let mfa = crate::mfa::check(c, &d.mfa_rules, &app.company_number, at, amount.micros())?;
    if !mfa.passed {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::MfaLimitExceeded,
            mfa.reason,
        ));
    }
    Ok(())
}

/// Records the incentives an approval applied, on its voucher.
fn record_incentives(
    c: &mut DbConn,
    incentives: &[crate::incentives::AppliedRow],
    voucher_id: &VoucherId,
) -> StoreResult<()> {
    let applied: Vec<_> = incentives
        .iter()
        .cloned()
        .map(|mut a| {
            a.voucher_id = voucher_id.clone();
            a
        })
        .collect();
    crate::incentives::record_applied(c, &applied)
}

/// The decision in the audit log, with the voucher an approval granted.
fn audit_decision(
    c: &mut DbConn,
    app: &ApplicationRow,
    d: &Decision,
    voucher: Option<&VoucherRow>,
    first_approver: Option<&str>,
    before: Ownership,
) -> StoreResult<()> {
    audit::record(
        c,
        AuditEntry {
            actor_id: Some(&d.actor_id),
            action: if voucher.is_some() {
                "application.approve"
            } else {
                "application.reject"
            },
            subject_type: "application",
            subject_id: app.id.as_str(),
            reason: Some(&d.reason),
            details: match voucher {
                Some(v) => serde_json::json!({
                    "voucher_id": v.id,
                    "amount_micros": v.granted,
                    "expires_at": v.expires_at.to_string(),
                    "first_approver": first_approver,
                    "ownership_confirmed_by_approval": before == Ownership::Unconfirmed,
                }),
                None => serde_json::json!({ "first_approver": first_approver }),
            },
        },
    )
}

/// Tells the applicant: approved with the voucher's amount and dates, or rejected with why.
fn notify_decision(
    c: &mut DbConn,
    app: &ApplicationRow,
    voucher: Option<&VoucherRow>,
    reason: &str,
    at: NaiveDateTime,
) -> StoreResult<()> {
    let email = outbox::user_email(c, &app.applicant_id)?;
    let (template, data) = match voucher {
        Some(v) => (
            "application_approved",
            serde_json::json!({
                "company_name": app.company_name,
                "application_id": app.id,
                "reference": app.reference,
                "voucher_id": v.id,
                "voucher_reference": v.reference,
                "amount": Money::from_micros(v.granted)
                    .map_err(|e| StoreError::Invariant(e.to_string()))?
                    .to_string(),
                "awarded_on": at.format("%-d %B %Y").to_string(),
                "expires_on": v.expires_at.format("%-d %B %Y").to_string(),
                "contribution": (v.contribution_micros > 0)
                    .then(|| voucherd_domain::money::format_micros(v.contribution_micros)),
            }),
        ),
        None => (
            "application_rejected",
            serde_json::json!({
                "company_name": app.company_name,
                "application_id": app.id,
                "reason": reason,
            }),
        ),
    };
    outbox::enqueue(
        c,
        Notification {
            dedupe_key: format!("application-decided:{}", app.id),
            recipient: &email,
            template,
            data,
        },
    )?;
    Ok(())
}

/// The open second approval of an application awaiting one.
fn pending_second(
    c: &mut DbConn,
    application_id: &ApplicationId,
) -> StoreResult<SecondApprovalRow> {
    second_approvals::table
        .find(application_id)
        .filter(second_approvals::outcome.is_null())
        .select(SecondApprovalRow::as_select())
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("second approval"))
}

/// A voucher past its expiry no longer makes its company live, whether or not the expiry job
/// has run yet: its application lets go of the number.
fn release_expired(c: &mut DbConn, company_number: &str) -> StoreResult<()> {
    let expired: Vec<String> = applications::table
        .inner_join(vouchers::table)
        .filter(applications::live_company_number.eq(company_number))
        .filter(vouchers::expires_at.le(now()))
        .select(applications::id)
        .load(c)?;
    if !expired.is_empty() {
        diesel::update(applications::table.filter(applications::id.eq_any(&expired)))
            .set(applications::live_company_number.eq(None::<String>))
            .execute(c)?;
    }
    Ok(())
}

/// Makes the application hold its company's number (one live application or voucher per
/// company): refused while another confirmed application or live voucher holds it. The UNIQUE
/// `live_company_number` column settles a race between processes.
fn hold_number(
    c: &mut DbConn,
    application_id: &ApplicationId,
    company_number: &str,
) -> StoreResult<()> {
    release_expired(c, company_number)?;
    let held: i64 = applications::table
        .filter(applications::live_company_number.eq(company_number))
        .filter(applications::id.ne(application_id))
        .count()
        .get_result(c)?;
    let taken = || StoreError::CompanyAlreadyLive {
        company_number: company_number.to_string(),
    };
    if held > 0 {
        return Err(taken());
    }
    match diesel::update(applications::table.find(application_id))
        .set(applications::live_company_number.eq(Some(company_number)))
        .execute(c)
    {
        Ok(1) => Ok(()),
        Ok(_) => Err(StoreError::NotFound("application")),
        Err(e) if is_unique_violation(&e) => Err(taken()),
        Err(e) => Err(e.into()),
    }
}

/// What an approval by `actor` makes of the application's ownership, written with it: an
/// unchecked one is confirmed by the approver (an administrator's check), one refused stops
/// the approval. Either way the application then holds its company's number.
fn confirm_at_approval(
    c: &mut DbConn,
    app: &ApplicationRow,
    actor: &str,
    at: NaiveDateTime,
    reason: &str,
) -> StoreResult<Ownership> {
    let ownership = app
        .ownership()?
        .at_approval(actor, at, reason)
        .map_err(|r| refused_ownership(&r.note))?;
    diesel::update(applications::table.find(&app.id))
        .set(OwnershipColumns::of(&ownership))
        .execute(c)?;
    hold_number(c, &app.id, &app.company_number)?;
    Ok(ownership)
}

fn refused_ownership(note: &str) -> StoreError {
    StoreError::Refused(
        voucherd_domain::ErrorCode::OwnershipRefused,
        format!(
            "an administrator found that the applicant does not own the company ({note}); \
             confirm ownership first if that has changed"
        ),
    )
}

impl Store {
    /// Whether another application or voucher holds the company's number now, as the
    /// approval's own transaction would find (a voucher past its expiry holds nothing).
    pub async fn number_held_by_other(
        &self,
        application_id: ApplicationId,
        company_number: String,
    ) -> StoreResult<bool> {
        self.read(move |c| {
            let holders: Vec<Option<NaiveDateTime>> = applications::table
                .left_join(vouchers::table)
                .filter(applications::live_company_number.eq(&company_number))
                .filter(applications::id.ne(&application_id))
                .select(vouchers::expires_at.nullable())
                .load(c)?;
            let at = now();
            Ok(holders.iter().any(|e| e.is_none_or(|e| e > at)))
        })
        .await
    }

    /// Checks that an approval of `amount` for the application could be paid now: from the
    /// year's matching budget line, or the fund when the year has none. The same checks, in
    /// the same words, as the approval's own transaction makes.
    pub async fn check_grant(
        &self,
        application_id: ApplicationId,
        amount: Money,
    ) -> StoreResult<()> {
        self.read(move |c| {
            let app: ApplicationRow = applications::table
                .find(&application_id)
                .select(ApplicationRow::as_select())
                .first(c)
                .optional()?
                .ok_or(StoreError::NotFound("application"))?;
            let line = budget::line_for(
                c,
                FinancialYear::containing(now().date()),
                &organisation(&app)?,
            )?;
            budget::grant_source(c, line.as_ref(), amount).map(|_| ())
        })
        .await
    }

    /// Records a first approval that needs a second administrator: the application awaits
    /// one, nothing is granted, and the request is audited.
    pub async fn request_second_approval(
        &self,
        row: SecondApprovalRow,
    ) -> StoreResult<ApplicationRow> {
        self.write(move |c| {
            let at = row.requested_at;
            let changed = diesel::update(
                applications::table
                    .filter(applications::id.eq(&row.application_id))
                    .filter(applications::status.eq(ApplicationStatus::Submitted)),
            )
            .set((
                applications::status.eq(ApplicationStatus::AwaitingSecondApproval),
                applications::updated_at.eq(at),
            ))
            .execute(c)?;
            if changed != 1 {
                let status: Option<String> = applications::table
                    .find(&row.application_id)
                    .select(applications::status)
                    .first(c)
                    .optional()?;
                return Err(match status {
                    Some(status) => StoreError::ApplicationNotPending { status },
                    None => StoreError::NotFound("application"),
                });
            }
            // An earlier request that was rejected cannot be here: rejection is final.
            diesel::insert_into(second_approvals::table)
                .values(&row)
                .execute(c)?;
            let app = application(c, &row.application_id)?;
            let before = app.ownership()?;
            let ownership =
                confirm_at_approval(c, &app, row.requested_by.as_str(), at, &row.reason)?;
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&row.requested_by),
                    action: "application.approval_requested",
                    subject_type: "application",
                    subject_id: row.application_id.as_str(),
                    reason: Some(&row.reason),
                    details: serde_json::json!({
                        "amount_micros": row.amount_micros,
                        "total_micros": row.total_micros,
                        "valid_days": row.valid_days,
                        "ownership_confirmed_by_approval": before != ownership,
                    }),
                },
            )?;
            Ok(applications::table
                .find(&row.application_id)
                .select(ApplicationRow::as_select())
                .first(c)?)
        })
        .await
    }

    /// The application's second approval, open or decided, if it needed one.
    pub async fn second_approval(
        &self,
        application_id: ApplicationId,
    ) -> StoreResult<Option<SecondApprovalRow>> {
        self.read(move |c| {
            Ok(second_approvals::table
                .find(&application_id)
                .select(SecondApprovalRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Whether a confirmed application or a live voucher holds the company's number now (so a
    /// new application for it would be refused), after releasing any a voucher that has
    /// expired held.
    /// The short references of these applications or vouchers, by id (ids not found are left
    /// out): one statement, for lists that name many.
    pub async fn references(
        &self,
        kind: ReferenceKind,
        ids: Vec<String>,
    ) -> StoreResult<std::collections::HashMap<String, String>> {
        self.read(move |c| {
            let pairs: Vec<(String, String)> = match kind {
                ReferenceKind::Application => applications::table
                    .filter(applications::id.eq_any(&ids))
                    .select((applications::id, applications::reference))
                    .load(c)?,
                ReferenceKind::Voucher => crate::schema::vouchers::table
                    .filter(crate::schema::vouchers::id.eq_any(&ids))
                    .select((
                        crate::schema::vouchers::id,
                        crate::schema::vouchers::reference,
                    ))
                    .load(c)?,
            };
            Ok(pairs.into_iter().collect())
        })
        .await
    }

    pub async fn company_number_taken(&self, company_number: String) -> StoreResult<bool> {
        self.write(move |c| {
            release_expired(c, &company_number)?;
            let live: i64 = applications::table
                .filter(applications::live_company_number.eq(&company_number))
                .count()
                .get_result(c)?;
            Ok(live > 0)
        })
        .await
    }

    /// Stores a new application, its ownership unconfirmed: it does not hold the company's
    /// number, so several applications naming one company may wait side by side until an
    /// administrator confirms one. Refused while a confirmed application or a live voucher
    /// holds the number.
    pub async fn submit_application(&self, mut row: ApplicationRow) -> StoreResult<ApplicationRow> {
        self.write(move |c| {
            release_expired(c, &row.company_number)?;
            let live: i64 = applications::table
                .filter(applications::live_company_number.eq(&row.company_number))
                .count()
                .get_result(c)?;
            if live > 0 {
                return Err(StoreError::CompanyAlreadyLive {
                    company_number: row.company_number.clone(),
                });
            }
            // Typing a number proves nothing: a new application never holds it.
            row.live_company_number = None;
            row.reference = fresh_reference(c)?.to_string();
            row.ownership = OwnershipColumns::of(&Ownership::Unconfirmed);
            diesel::insert_into(applications::table)
                .values(&row)
                .execute(c)?;
            let email = outbox::user_email(c, &row.applicant_id)?;
            outbox::enqueue(
                c,
                Notification {
                    dedupe_key: format!("application-received:{}", row.id),
                    recipient: &email,
                    template: "application_received",
                    data: serde_json::json!({
                        "company_name": row.company_name,
                        "company_number": row.company_number,
                        "application_id": row.id,
                        "reference": row.reference,
                        "eligible": row.eligible,
                    }),
                },
            )?;
            Ok(row)
        })
        .await
    }

    /// An administrator confirms or refuses that the applicant owns the company, with a note;
    /// audited. Confirmed, the application holds the company's number (refused with
    /// `CompanyAlreadyLive` while another confirmed application or a live voucher holds it);
    /// refused, it lets go of it and cannot be approved unless confirmed later. Only while the
    /// application is still to be decided.
    pub async fn decide_ownership(
        &self,
        application_id: ApplicationId,
        actor_id: UserId,
        confirmed: bool,
        note: Note,
        at: NaiveDateTime,
    ) -> StoreResult<(ApplicationRow, Option<VoucherId>)> {
        self.write(move |c| {
            let app = application(c, &application_id)?;
            if !ApplicationStatus::PENDING.contains(&app.status) {
                return Err(StoreError::Refused(
                    voucherd_domain::ErrorCode::ApplicationAlreadyDecided,
                    format!(
                        "the application is {}: its company's ownership is settled",
                        app.status
                    ),
                ));
            }
            let before = app.ownership()?;
            let after = admin_check(&actor_id, note, at, confirmed);
            // Conditional on the status read: a decision racing this one wins or loses whole.
            let changed = diesel::update(
                applications::table
                    .filter(applications::id.eq(&app.id))
                    .filter(applications::status.eq(&app.status)),
            )
            .set((
                OwnershipColumns::of(&after),
                applications::live_company_number.eq(None::<String>),
                applications::updated_at.eq(at),
            ))
            .execute(c)?;
            if changed != 1 {
                return Err(StoreError::Contended);
            }
            if after.holds_number() {
                hold_number(c, &app.id, &app.company_number)?;
            }
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: if confirmed {
                        "application.ownership_confirm"
                    } else {
                        "application.ownership_refuse"
                    },
                    subject_type: "application",
                    subject_id: app.id.as_str(),
                    reason: after.check().map(|c| c.note.as_str()),
                    details: serde_json::json!({
                        "company_number": app.company_number,
                        "method": Method::AdminCheck.as_str(),
                        "previous": before.state(),
                    }),
                },
            )?;
            with_voucher(c, &app.id)
        })
        .await
    }

    /// Releases a company number an application holds without a voucher (a squatted number):
    /// the application is rejected with the reason, its ownership recorded as refused, and it
    /// holds the number no longer; audited, the applicant told. An application awaiting a
    /// second administrator is released by another administrator than its first approver.
    pub async fn release_company_number(
        &self,
        application_id: ApplicationId,
        actor_id: UserId,
        reason: String,
        at: NaiveDateTime,
    ) -> StoreResult<(ApplicationRow, Option<VoucherId>)> {
        self.write(move |c| {
            let app = releasable(c, &application_id)?;
            let first_approver = if app.status == Stage::Second.status() {
                Some(reject_second_approval(c, &app, &actor_id, at)?)
            } else {
                None
            };
            let before = app.ownership()?;
            let refused = Ownership::Refused(Check {
                method: Method::AdminCheck,
                by: actor_id.to_string(),
                at,
                note: reason.clone(),
            });
            let changed = diesel::update(
                applications::table
                    .filter(applications::id.eq(&app.id))
                    .filter(applications::status.eq(&app.status)),
            )
            .set((
                applications::status.eq(ApplicationStatus::Rejected),
                applications::live_company_number.eq(None::<String>),
                applications::decided_by.eq(Some(&actor_id)),
                applications::decided_at.eq(Some(at)),
                applications::decision_reason.eq(Some(&reason)),
                applications::updated_at.eq(at),
                OwnershipColumns::of(&refused),
            ))
            .execute(c)?;
            if changed != 1 {
                return Err(StoreError::Contended);
            }
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: "application.release",
                    subject_type: "application",
                    subject_id: app.id.as_str(),
                    reason: Some(&reason),
                    details: serde_json::json!({
                        "company_number": app.company_number,
                        "held_number": app.live_company_number.is_some(),
                        "previous_status": app.status,
                        "previous_ownership": before.state(),
                        "first_approver": first_approver,
                    }),
                },
            )?;
            notify_decision(c, &app, None, &reason, at)?;
            with_voucher(c, &app.id)
        })
        .await
    }

    /// An application and the id of its voucher, if it has one.
    pub async fn application(
        &self,
        id: ApplicationId,
    ) -> StoreResult<(ApplicationRow, Option<VoucherId>)> {
        self.read(move |c| with_voucher(c, &id)).await
    }

    pub async fn list_applications(
        &self,
        f: ApplicationFilter,
    ) -> StoreResult<Vec<(ApplicationRow, Option<VoucherId>)>> {
        self.read(move |c| {
            let mut q = applications::table.left_join(vouchers::table).into_boxed();
            if let Some(a) = f.applicant_id {
                q = q.filter(applications::applicant_id.eq(a));
            }
            if let Some(s) = f.status {
                q = q.filter(applications::status.eq(s));
            }
            q = if f.oldest_first {
                q.order((applications::created_at.asc(), applications::id.asc()))
            } else {
                q.order((applications::created_at.desc(), applications::id.desc()))
            };
            Ok(q.limit(f.limit)
                .offset(f.offset)
                .select((ApplicationRow::as_select(), vouchers::id.nullable()))
                .load(c)?)
        })
        .await
    }

    /// How many applications [`Store::list_applications`] would list without its page.
    pub async fn count_applications(
        &self,
        applicant_id: Option<UserId>,
        status: Option<String>,
    ) -> StoreResult<i64> {
        self.read(move |c| {
            let mut q = applications::table.into_boxed();
            if let Some(a) = applicant_id {
                q = q.filter(applications::applicant_id.eq(a));
            }
            if let Some(s) = status {
                q = q.filter(applications::status.eq(s));
            }
            Ok(q.count().get_result(c)?)
        })
        .await
    }

    /// Approves or rejects a submitted application in one transaction: the status change, the
    /// grant from the programme fund to a new voucher account, the voucher and the audit entry
    /// commit together or not at all.
    pub async fn decide_application(
        &self,
        d: Decision,
    ) -> StoreResult<(ApplicationRow, Option<VoucherRow>)> {
        self.write(move |c| decide(c, &d)).await
    }
}

/// An administrator's check of a company's ownership, as the application records it.
fn admin_check(actor_id: &UserId, note: Note, at: NaiveDateTime, confirmed: bool) -> Ownership {
    let check = Check {
        method: Method::AdminCheck,
        by: actor_id.to_string(),
        at,
        note: note.into_string(),
    };
    if confirmed {
        Ownership::Confirmed(check)
    } else {
        Ownership::Refused(check)
    }
}

/// The application to release: one still pending, without a voucher.
fn releasable(c: &mut DbConn, application_id: &ApplicationId) -> StoreResult<ApplicationRow> {
    let (app, voucher_id) = with_voucher(c, application_id)?;
    if let Some(v) = voucher_id {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::HasVoucher,
            format!("the application has the voucher {v}: suspend or expire the voucher instead"),
        ));
    }
    if !ApplicationStatus::PENDING.contains(&app.status) {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::ApplicationAlreadyDecided,
            format!(
                "the application is {}: it holds no company number",
                app.status
            ),
        ));
    }
    Ok(app)
}

/// Records an application's pending second approval as rejected by `actor_id`, who must not be
/// its first approver; that first approver.
fn reject_second_approval(
    c: &mut DbConn,
    app: &ApplicationRow,
    actor_id: &UserId,
    at: NaiveDateTime,
) -> StoreResult<UserId> {
    let pending = pending_second(c, &app.id)?;
    if &pending.requested_by == actor_id {
        return Err(StoreError::Approval(
            voucherd_domain::ErrorCode::SameApprover,
            "the administrator who approved first cannot release the application: \
             another administrator must"
                .into(),
        ));
    }
    diesel::update(
        second_approvals::table
            .find(&app.id)
            .filter(second_approvals::outcome.is_null()),
    )
    .set((
        second_approvals::decided_by.eq(Some(actor_id)),
        second_approvals::outcome.eq(Some(voucherd_domain::SecondApprovalOutcome::Rejected)),
        second_approvals::decided_at.eq(Some(at)),
    ))
    .execute(c)?;
    Ok(pending.requested_by)
}
