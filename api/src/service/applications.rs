//! Applications: submitting one (with its rule results), the applicant's and the programme's
//! lists, the administrators' decision with its incentives preview, the second approval,
//! ownership checks and releasing a company number.

use crate::auth::AuthUser;
use crate::error::{ApiError, FieldError};
use crate::handlers::Page;
use crate::state::AppState;
use crate::views::{ApplicationView, SecondApprovalView, VoucherView};
use chrono::{Duration, NaiveDate, Utc};
use serde::Deserialize;
use validator::Validate;
use voucherd_domain::approval::{Approvals, Reason};
use voucherd_domain::budget::{SicSection, SizeBand};
use voucherd_domain::eligibility::{ApplicationFacts, SubsidyDeclaration};
use voucherd_domain::incentive;
use voucherd_domain::money::Amount;
use voucherd_domain::ownership::{Note, Ownership};
use voucherd_domain::{
    ApplicationId, ApplicationStatus, CompanyNumber, Money, Region, SicCode, VoucherId,
};
use voucherd_domain::{ErrorCode, UserId};
use voucherd_store::applications::{
    ApplicationFilter, ApplicationRow, Decision, OwnershipColumns, SecondApprovalRow, Stage,
    Verdict,
};
use voucherd_store::vouchers::VoucherRow;

// Each limit below is stated twice, side by side: `validate` enforces it, `schema` publishes
// it in the OpenAPI document.

/// Public subsidy the company received, counted towards its Minimal Financial Assistance
/// limit.
#[derive(Debug, Deserialize, serde::Serialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubsidyDeclarationRequest {
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    #[schema(min_length = 1, max_length = 200)]
    pub provider: String,
    pub amount: Money,
    /// Not in the future.
    pub awarded_on: NaiveDate,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRequest {
    #[schema(value_type = voucherd_domain::CompanyNumberInput)]
    pub company_number: CompanyNumber,
    #[validate(length(min = 1, max = 160, message = "must be 1 to 160 characters"))]
    #[schema(min_length = 1, max_length = 160)]
    pub company_name: String,
    #[validate(range(max = 10_000_000, message = "must be at most 10000000"))]
    #[schema(maximum = 10_000_000)]
    pub employees: u32,
    pub annual_turnover: Money,
    pub balance_sheet_total: Money,
    #[schema(value_type = voucherd_domain::RegionInput)]
    pub region: Region,
    pub sic_code: SicCode,
    /// At most a year in the future.
    pub trading_since: NaiveDate,
    /// What the company will use AI APIs for.
    #[validate(length(min = 20, max = 4000, message = "must be 20 to 4000 characters"))]
    #[schema(min_length = 20, max_length = 4000)]
    pub use_case: String,
    #[validate(
        nested,
        length(max = 50, message = "must list at most 50 declarations")
    )]
    #[serde(default)]
    #[schema(max_items = 50, default = json!([]))]
    pub subsidy_declarations: Vec<SubsidyDeclarationRequest>,
    /// The company is a university spin-off; incentives may target spin-offs.
    #[serde(default)]
    #[schema(default = false)]
    pub university_spin_off: bool,
}

fn declarations(
    body: &ApplicationRequest,
    today: NaiveDate,
) -> Result<Vec<SubsidyDeclaration>, ApiError> {
    let mut errors = Vec::new();
    // Lengths were checked as sent; what is stored is trimmed, so check that too.
    if body.company_name.trim().is_empty() {
        errors.push(FieldError::new("company_name", "must not be blank"));
    }
    if body.use_case.trim().chars().count() < 20 {
        errors.push(FieldError::new("use_case", "must be 20 to 4000 characters"));
    }
    let earliest = NaiveDate::from_ymd_opt(1800, 1, 1).unwrap_or(NaiveDate::MIN);
    if body.trading_since < earliest {
        errors.push(FieldError::new("trading_since", "must be after 1800-01-01"));
    }
    if body.trading_since > today + Duration::days(366) {
        errors.push(FieldError::new(
            "trading_since",
            "must not be more than a year in the future",
        ));
    }
    let declared = body
        .subsidy_declarations
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if d.provider.trim().is_empty() {
                errors.push(FieldError::new(
                    format!("subsidy_declarations[{i}].provider"),
                    "must not be blank",
                ));
            }
            if d.awarded_on < earliest {
                errors.push(FieldError::new(
                    format!("subsidy_declarations[{i}].awarded_on"),
                    "must be after 1800-01-01",
                ));
            }
            if d.awarded_on > today {
                errors.push(FieldError::new(
                    format!("subsidy_declarations[{i}].awarded_on"),
                    "must not be in the future",
                ));
            }
            SubsidyDeclaration {
                provider: d.provider.trim().to_string(),
                amount: d.amount,
                awarded_on: d.awarded_on,
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(declared)
    } else {
        Err(ApiError::Validation(errors))
    }
}

pub async fn submit(
    state: &AppState,
    user: &AuthUser,
    body: ApplicationRequest,
) -> Result<ApplicationView, ApiError> {
    if !user.email_verified {
        return Err(ApiError::Denied {
            code: ErrorCode::EmailUnverified,
            detail: "confirm your email address with the code we sent before applying".into(),
        });
    }
    let today = Utc::now().date_naive();
    let subsidy_declarations = declarations(&body, today)?;
    let facts = ApplicationFacts {
        company_number: body.company_number.clone(),
        employees: body.employees,
        annual_turnover: body.annual_turnover,
        balance_sheet_total: body.balance_sheet_total,
        region: body.region,
        sic_code: body.sic_code.clone(),
        trading_since: body.trading_since,
        subsidy_declarations,
        voucher_amount: state.config.standard_voucher,
    };
    let eligibility = state.config.eligibility.evaluate(&facts, today);
    let at = voucherd_store::now();
    let status = if eligibility.eligible {
        ApplicationStatus::Submitted
    } else {
        ApplicationStatus::Ineligible
    };
    let row = ApplicationRow {
        id: crate::keys::new_id::<ApplicationId>(),
        applicant_id: user.id.clone(),
        company_number: body.company_number.as_str().to_string(),
        company_name: body.company_name.trim().to_string(),
        employees: i32::try_from(body.employees)
            .map_err(|_| ApiError::field("employees", "too large"))?,
        annual_turnover: body.annual_turnover.micros(),
        balance_sheet_total: body.balance_sheet_total.micros(),
        region: body.region.as_str().to_string(),
        sic_code: body.sic_code.as_str().to_string(),
        trading_since: body.trading_since,
        use_case: body.use_case.trim().to_string(),
        subsidy_declarations: serde_json::to_string(&facts.subsidy_declarations)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        eligible: eligibility.eligible,
        checks: serde_json::to_string(&eligibility.checks)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        status,
        live_company_number: None,
        decided_by: None,
        decided_at: None,
        decision_reason: None,
        created_at: at,
        updated_at: at,
        university_spin_off: body.university_spin_off,
        ownership: OwnershipColumns::of(&Ownership::Unconfirmed),
        // Drawn by the store.
        reference: String::new(),
    };
    let saved = state.store.submit_application(row).await?;
    ApplicationView::new(&saved, None)
}

/// Whether an application for this company would be refused now because a confirmed
/// application or a live voucher holds its number: asked by the application form before the
/// applicant confirms, so they learn it on the form.
pub async fn company_number_taken(
    state: &AppState,
    company_number: &CompanyNumber,
) -> Result<bool, ApiError> {
    Ok(state
        .store
        .company_number_taken(company_number.as_str().to_string())
        .await?)
}

/// Which end of a list comes first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListOrder {
    #[default]
    Newest,
    /// Who has waited longest first: the decision queue.
    Oldest,
}

#[derive(Debug, Default, Deserialize, Validate)]
pub struct ListQuery {
    #[validate(custom(function = "valid_status"))]
    pub status: Option<String>,
    /// `newest` (the default) or `oldest` first.
    pub order: Option<ListOrder>,
    #[validate(range(min = 1, max = 500, message = "must be between 1 and 500"))]
    pub limit: Option<i64>,
    #[validate(range(min = 0, max = 1_000_000, message = "must be between 0 and 1000000"))]
    pub offset: Option<i64>,
}

fn valid_status(s: &str) -> Result<(), validator::ValidationError> {
    if s.parse::<ApplicationStatus>().is_ok() {
        Ok(())
    } else {
        let mut e = validator::ValidationError::new("status");
        let known: Vec<&str> = ApplicationStatus::ALL.iter().map(|s| s.as_str()).collect();
        e.message = Some(format!("must be one of {}", known.join(", ")).into());
        Err(e)
    }
}

/// A page of applications, with how many match in all.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = ApplicationList)]
pub struct ApplicationPage {
    pub data: Vec<ApplicationView>,
    /// Applications matching the filter, on every page.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// Applicants see their own applications; administrators see all.
pub async fn list(
    state: &AppState,
    user: &AuthUser,
    q: ListQuery,
) -> Result<ApplicationPage, ApiError> {
    let page = Page {
        limit: q.limit,
        offset: q.offset,
    };
    let applicant_id = (!user.is_admin()).then(|| user.id.clone());
    let rows = state
        .store
        .list_applications(ApplicationFilter {
            applicant_id: applicant_id.clone(),
            status: q.status.clone(),
            oldest_first: q.order == Some(ListOrder::Oldest),
            limit: page.limit(),
            offset: page.offset(),
        })
        .await?;
    let total = state
        .store
        .count_applications(applicant_id, q.status)
        .await?;
    Ok(ApplicationPage {
        data: rows
            .iter()
            .map(|(a, v)| ApplicationView::new(a, v.as_ref()))
            .collect::<Result<_, _>>()?,
        total,
        limit: page.limit(),
        offset: page.offset(),
    })
}

/// Someone else's application answers 404, so ids reveal nothing.
async fn visible(
    state: &AppState,
    user: &AuthUser,
    id: ApplicationId,
) -> Result<(ApplicationRow, Option<VoucherId>), ApiError> {
    let (app, voucher_id) = state.store.application(id).await?;
    if !user.is_admin() && app.applicant_id != user.id {
        return Err(ApiError::NotFound("application"));
    }
    Ok((app, voucher_id))
}

/// An application: the applicant's own, or any for an administrator (who also sees its
/// second approval).
pub async fn get(
    state: &AppState,
    user: &AuthUser,
    id: &ApplicationId,
) -> Result<ApplicationView, ApiError> {
    let (app, voucher_id) = visible(state, user, id.clone()).await?;
    if user.is_admin() {
        return for_admin(state, &app, voucher_id.as_ref()).await;
    }
    ApplicationView::new(&app, voucher_id.as_ref())
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Approve,
    Reject,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub decision: DecisionKind,
    /// Approval only: the voucher's value, more than 0; the standard voucher when absent (or
    /// null).
    pub amount: Option<Money>,
    /// Approval only: days until the voucher expires, at most the configured maximum.
    #[validate(range(min = 1, message = "must be at least 1"))]
    #[schema(minimum = 1)]
    pub valid_days: Option<u32>,
    /// Parsed as a [`Reason`].
    #[schema(schema_with = voucherd_domain::approval::reason_schema)]
    pub reason: String,
    /// Approval only: the total the administrator saw in the incentives preview. When given
    /// and the rules now give another total, the approval is refused (409
    /// `incentives_changed`) rather than granting what was not shown.
    pub incentives_total: Option<Money>,
}

/// An approval worked out and checked: everything the decision checks before money moves,
/// shared by the decision, its preview and the second administrator's confirmation, so the
/// three refuse the same amounts with the same answers.
struct Approval {
    app: ApplicationRow,
    base: Money,
    valid_days: u32,
    evaluation: incentive::Evaluation,
    total: Money,
    approvals: Approvals,
}

/// Checks an approval of `amount` (the standard voucher when absent) for `valid_days` at
/// `stage`: the amount's limits, the validity, the application's status, Minimal Financial
/// Assistance, the incentives, the maximum voucher, and that the budget line or fund it would
/// be paid from holds it now.
async fn plan_approval(
    state: &AppState,
    application_id: ApplicationId,
    stage: Stage,
    amount: Option<Money>,
    valid_days: Option<u32>,
) -> Result<Approval, ApiError> {
    let cfg = &state.config;
    let base = amount.unwrap_or(cfg.standard_voucher);
    if base.is_zero() {
        return Err(ApiError::field("amount", "must be more than 0"));
    }
    let max = cfg.approval_limits.max_voucher;
    if base > max {
        return Err(ApiError::field(
            "amount",
            format!("must be at most £{max}, the programme's maximum voucher"),
        ));
    }
    let valid_days = valid_days.unwrap_or(cfg.default_valid_days);
    if valid_days == 0 || valid_days > cfg.max_valid_days {
        return Err(ApiError::field(
            "valid_days",
            format!("must be between 1 and {}", cfg.max_valid_days),
        ));
    }
    let (app, _) = state.store.application(application_id).await?;
    // Already decided says more than any check of the amount would.
    if app.status != stage.status() {
        return Err(voucherd_store::StoreError::ApplicationNotPending {
            status: app.status.to_string(),
        }
        .into());
    }
    check_ownership(state, &app).await?;
    check_mfa_with_amount(state, &app, base).await?;
    let evaluation = evaluate_incentives(state, &app, base).await?;
    let total = Money::from_micros(evaluation.total_micros)
        .map_err(|x| ApiError::Internal(x.to_string()))?;
    let approvals = cfg
        .approval_limits
        .check(total)
        .map_err(|m| ApiError::field("amount", m))?;
    state.store.check_grant(app.id.clone(), total).await?;
    Ok(Approval {
        app,
        base,
        valid_days,
        evaluation,
        total,
        approvals,
    })
}

impl Approval {
    /// The verdict that grants it.
    fn verdict(&self, state: &AppState) -> Result<Verdict, ApiError> {
        let cfg = &state.config;
        let e = &self.evaluation;
        let voucher_id = crate::keys::new_id::<VoucherId>();
        let applied = e
            .applied
            .iter()
            .map(|a| voucherd_store::incentives::AppliedRow {
                id: uuid::Uuid::now_v7().to_string(),
                voucher_id: voucher_id.clone(),
                rule_id: a.rule_id.clone(),
                why: serde_json::to_string(&a.why).unwrap_or_default(),
                amount: a.now_micros.max(a.later_micros),
                milestone: a.later_micros > 0,
                granted_at: None,
                refused_reason: None,
            })
            .collect();
        let consulting = voucherd_domain::consulting::Minutes::new(
            (cfg.consulting.get() + i64::from(e.consulting_hours) * 60)
                .min(voucherd_domain::consulting::MAX_MINUTES),
        )
        .map_err(ApiError::Internal)?;
        Ok(Verdict::Approve {
            voucher_id,
            amount: self.total,
            incentives: applied,
            expires_at: voucherd_store::now() + Duration::days(i64::from(self.valid_days)),
            consulting,
            contribution: cfg
                .payments
                .co_funding
                .share_of(self.total)
                .map_err(|e| ApiError::field("amount", format!("co-funding share: {e}")))?
                .to_money(),
        })
    }

    /// Refuses when the rules now give another total than the one the administrator saw.
    fn check_seen(&self, seen: Option<Money>) -> Result<(), ApiError> {
        match seen {
            Some(seen) if seen != self.total => Err(ApiError::conflict(
                ErrorCode::IncentivesChanged,
                format!(
                    "the incentive rules now give £{}, not the £{seen} previewed: preview again",
                    self.total
                ),
            )),
            _ => Ok(()),
        }
    }
}

fn reason(input: &str) -> Result<Reason, ApiError> {
    Reason::parse(input).map_err(|m| ApiError::field("reason", m))
}

/// The application as the API shows it to administrators, with its second approval if it
/// needed one.
async fn for_admin(
    state: &AppState,
    app: &ApplicationRow,
    voucher_id: Option<&VoucherId>,
) -> Result<ApplicationView, ApiError> {
    let mut view = ApplicationView::new(app, voucher_id)?;
    view.second_approval = state
        .store
        .second_approval(app.id.clone())
        .await?
        .as_ref()
        .map(SecondApprovalView::new);
    // Administrators are named, not shown as ids.
    let second = view.second_approval.as_ref();
    let ids = [
        view.ownership.by.clone().map(UserId::new),
        second.map(|s| s.requested_by.clone()),
        second.and_then(|s| s.decided_by.clone()),
    ];
    let names = crate::service::users::names(state, ids.into_iter().flatten()).await?;
    let name = |id: Option<&str>| id.and_then(|i| names.get(i).cloned().flatten());
    view.ownership.by_name = name(view.ownership.by.as_deref());
    if let Some(s) = view.second_approval.as_mut() {
        s.requested_by_name = name(Some(s.requested_by.as_str()));
        s.decided_by_name = name(s.decided_by.as_ref().map(UserId::as_str));
    }
    Ok(view)
}

/// What a decision came to: `voucher` is the granted voucher on approval and null on
/// rejection.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = DecisionResponse)]
pub struct DecidedView {
    pub application: ApplicationView,
    #[schema(required)]
    pub voucher: Option<VoucherView>,
    /// Null for a rejection. For an approval, the incentive rules applied and the amount
    /// granted (`total`: the base plus extras).
    #[schema(required)]
    pub incentives: Option<EvaluationView>,
    /// The approval waits for a second administrator: no money moved (202 on the API).
    #[serde(skip)]
    pub awaiting_second: bool,
}

async fn decided(
    state: &AppState,
    app: &ApplicationRow,
    voucher: Option<&VoucherRow>,
    evaluation: Option<&incentive::Evaluation>,
) -> Result<DecidedView, ApiError> {
    let voucher_view = match voucher {
        Some(v) => {
            let (v, a) = state.store.voucher(v.id.clone()).await?;
            Some(VoucherView::new(
                &v,
                &a,
                &app.company_name,
                0,
                Default::default(),
            ))
        }
        None => None,
    };
    Ok(DecidedView {
        application: for_admin(state, app, voucher.map(|v| &v.id)).await?,
        voucher: voucher_view,
        incentives: evaluation.map(EvaluationView::new),
        awaiting_second: false,
    })
}

/// Approves or rejects a submitted application. An approval worth more than
/// `second_approval_above` is recorded as awaiting a second administrator (202, no money
/// moves); see [`second_approval`].
pub async fn decide(
    state: &AppState,
    user: &AuthUser,
    id: &ApplicationId,
    body: DecisionRequest,
) -> Result<DecidedView, ApiError> {
    let reason = reason(&body.reason)?;
    let application_id = id.clone();
    match body.decision {
        DecisionKind::Reject => reject(state, user, application_id, &body, reason).await,
        DecisionKind::Approve => approve(state, user, application_id, &body, reason).await,
    }
}

/// A first administrator's rejection.
async fn reject(
    state: &AppState,
    user: &AuthUser,
    application_id: ApplicationId,
    body: &DecisionRequest,
    reason: Reason,
) -> Result<DecidedView, ApiError> {
    if body.amount.is_some() || body.valid_days.is_some() {
        return Err(ApiError::field(
            "amount",
            "a rejection takes no amount or valid_days",
        ));
    }
    let (app, voucher) = state
        .store
        .decide_application(Decision {
            application_id,
            actor_id: user.id.clone(),
            verdict: Verdict::Reject,
            reason: reason.into_string(),
            stage: Stage::First,
            mfa_rules: state.config.eligibility.clone(),
        })
        .await?;
    decided(state, &app, voucher.as_ref(), None).await
}

/// A first administrator's approval: granted at once, or recorded as awaiting a second
/// administrator when it is worth more than `second_approval_above`.
async fn approve(
    state: &AppState,
    user: &AuthUser,
    application_id: ApplicationId,
    body: &DecisionRequest,
    reason: Reason,
) -> Result<DecidedView, ApiError> {
    let plan = plan_approval(
        state,
        application_id,
        Stage::First,
        body.amount,
        body.valid_days,
    )
    .await?;
    plan.check_seen(body.incentives_total)?;
    if plan.approvals == Approvals::Two {
        let app = state
            .store
            .request_second_approval(SecondApprovalRow {
                application_id: plan.app.id.clone(),
                requested_by: user.id.clone(),
                reason: reason.into_string(),
                amount_micros: plan.base.micros(),
                total_micros: plan.total.micros(),
                valid_days: i32::try_from(plan.valid_days)
                    .map_err(|_| ApiError::field("valid_days", "too large"))?,
                requested_at: voucherd_store::now(),
                decided_by: None,
                outcome: None,
                decided_at: None,
            })
            .await?;
        return Ok(DecidedView {
            application: for_admin(state, &app, None).await?,
            voucher: None,
            incentives: Some(EvaluationView::new(&plan.evaluation)),
            awaiting_second: true,
        });
    }
    let (app, voucher) = state
        .store
        .decide_application(Decision {
            application_id: plan.app.id.clone(),
            actor_id: user.id.clone(),
            verdict: plan.verdict(state)?,
            reason: reason.into_string(),
            stage: Stage::First,
            mfa_rules: state.config.eligibility.clone(),
        })
        .await?;
    decided(state, &app, voucher.as_ref(), Some(&plan.evaluation)).await
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecondDecisionKind {
    Confirm,
    Reject,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct SecondApprovalRequest {
    pub decision: SecondDecisionKind,
    /// Parsed as a [`Reason`].
    #[schema(schema_with = voucherd_domain::approval::reason_schema)]
    pub reason: String,
}

/// A second administrator confirms (the voucher is granted, every check made again) or rejects
/// an approval awaiting one. The first approver cannot: 409 `same_approver`.
pub async fn second_approval(
    state: &AppState,
    user: &AuthUser,
    id: &ApplicationId,
    body: SecondApprovalRequest,
) -> Result<DecidedView, ApiError> {
    let reason = reason(&body.reason)?;
    let application_id = id.clone();
    let (app, _) = state.store.application(application_id.clone()).await?;
    let pending = match state.store.second_approval(application_id.clone()).await? {
        Some(p) if app.status == Stage::Second.status() => p,
        _ => {
            return Err(ApiError::conflict(
                ErrorCode::NoSecondApprovalPending,
                format!(
                    "the application is {}: no approval awaits a second administrator",
                    app.status
                ),
            ))
        }
    };
    if pending.requested_by == user.id {
        return Err(ApiError::conflict(
            ErrorCode::SameApprover,
            "the administrator who approved first cannot be the second: another administrator must confirm or reject",
        ));
    }
    let (verdict, evaluation) = match body.decision {
        SecondDecisionKind::Reject => (Verdict::Reject, None),
        SecondDecisionKind::Confirm => {
            let money =
                |m: i64| Money::from_micros(m).map_err(|e| ApiError::Internal(e.to_string()));
            let plan = plan_approval(
                state,
                application_id.clone(),
                Stage::Second,
                Some(money(pending.amount_micros)?),
                Some(u32::try_from(pending.valid_days).unwrap_or(0)),
            )
            .await?;
            // What the first administrator approved is what the second confirms.
            plan.check_seen(Some(money(pending.total_micros)?))?;
            (plan.verdict(state)?, Some(plan.evaluation))
        }
    };
    let (app, voucher) = state
        .store
        .decide_application(Decision {
            application_id,
            actor_id: user.id.clone(),
            mfa_rules: state.config.eligibility.clone(),
            verdict,
            reason: reason.into_string(),
            stage: Stage::Second,
        })
        .await?;
    decided(state, &app, voucher.as_ref(), evaluation.as_ref()).await
}

/// What an application says of the organisation, with `amount` as the voucher. The
/// programme's own earlier credits to the company count as Minimal Financial Assistance too,
/// declared or not.
async fn facts(
    state: &AppState,
    app: &ApplicationRow,
    amount: Money,
) -> Result<ApplicationFacts, ApiError> {
    let mut declarations: Vec<SubsidyDeclaration> = serde_json::from_str(&app.subsidy_declarations)
        .map_err(|e| ApiError::Internal(format!("stored declarations: {e}")))?;
    // Three financial years back at most; the rule itself draws the exact window.
    let since = (Utc::now() - Duration::days(4 * 366)).naive_utc();
    for (credited, at) in state
        .store
        .company_credits(app.company_number.clone(), since)
        .await?
    {
        if credited > 0 {
            declarations.push(SubsidyDeclaration {
                provider: "this programme".into(),
                amount: Money::from_micros(credited)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                awarded_on: at.date(),
            });
        }
    }
    let company_number =
        CompanyNumber::parse(&app.company_number).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Applications stored before SIC codes were checked against the list may hold one that is
    // not in it: such an application can be rejected, not approved.
    let sic = SicCode::parse(&app.sic_code).map_err(|_| {
        ApiError::conflict(
            ErrorCode::UnknownSicCode,
            format!(
                "the application's SIC code {} is not a UK SIC 2007 code; reject it and ask for a new application",
                app.sic_code
            ),
        )
    })?;
    let region: Region = app.region.parse().map_err(ApiError::Internal)?;
    let money = |m: i64| Money::from_micros(m).map_err(|e| ApiError::Internal(e.to_string()));
    Ok(ApplicationFacts {
        company_number,
        employees: u32::try_from(app.employees).unwrap_or(0),
        annual_turnover: money(app.annual_turnover)?,
        balance_sheet_total: money(app.balance_sheet_total)?,
        region,
        sic_code: sic,
        trading_since: app.trading_since,
        subsidy_declarations: declarations,
        voucher_amount: amount,
    })
}

/// An approval confirms ownership of the company unless an administrator refused it, and then
/// holds the company's number: refused, as the approval's own transaction would refuse, when
/// ownership was refused or another application or voucher holds the number.
async fn check_ownership(state: &AppState, app: &ApplicationRow) -> Result<(), ApiError> {
    if let Ownership::Refused(check) = app.ownership()? {
        return Err(ApiError::conflict(
            ErrorCode::OwnershipRefused,
            format!(
                "an administrator found that the applicant does not own the company ({}); \
                 confirm ownership first if that has changed",
                check.note
            ),
        ));
    }
    if state
        .store
        .number_held_by_other(app.id.clone(), app.company_number.clone())
        .await?
    {
        return Err(voucherd_store::StoreError::CompanyAlreadyLive {
            company_number: app.company_number.clone(),
        }
        .into());
    }
    Ok(())
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnershipRequest {
    /// True when the applicant owns the company; false when they do not.
    pub confirmed: bool,
    /// Parsed as a [`Note`]: what the administrator checked.
    #[schema(schema_with = voucherd_domain::ownership::note_schema)]
    pub note: String,
}

/// An administrator confirms or refuses that the applicant owns the company, with a note;
/// audited. Confirmed, the application holds the company's number: 409 `company_already_live`
/// while another confirmed application or a live voucher holds it.
pub async fn ownership(
    state: &AppState,
    user: &AuthUser,
    id: &ApplicationId,
    body: OwnershipRequest,
) -> Result<ApplicationView, ApiError> {
    let note = Note::parse(&body.note).map_err(|m| ApiError::field("note", m))?;
    let (app, voucher_id) = state
        .store
        .decide_ownership(
            id.clone(),
            user.id.clone(),
            body.confirmed,
            note,
            voucherd_store::now(),
        )
        .await?;
    for_admin(state, &app, voucher_id.as_ref()).await
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// Parsed as a [`Reason`]; the applicant is told it.
    #[schema(schema_with = voucherd_domain::approval::reason_schema)]
    pub reason: String,
}

/// Releases the company number an application without a voucher holds (a squatted number):
/// the application is rejected with the reason and its ownership recorded as refused; audited.
pub async fn release(
    state: &AppState,
    user: &AuthUser,
    id: &ApplicationId,
    body: ReleaseRequest,
) -> Result<ApplicationView, ApiError> {
    let reason = reason(&body.reason)?;
    let (app, voucher_id) = state
        .store
        .release_company_number(
            id.clone(),
            user.id.clone(),
            reason.into_string(),
            voucherd_store::now(),
        )
        .await?;
    for_admin(state, &app, voucher_id.as_ref()).await
}

/// The applicant was checked against the standard voucher; an administrator who grants more
/// must not push the company over its Minimal Financial Assistance limit.
async fn check_mfa_with_amount(
    state: &AppState,
    app: &ApplicationRow,
    amount: Money,
) -> Result<(), ApiError> {
    let facts = facts(state, app, amount).await?;
    let result = state
        .config
        .eligibility
        .evaluate(&facts, Utc::now().date_naive());
    match result
        .checks
        .iter()
        .find(|c| c.rule == "subsidy_control_mfa")
    {
        Some(c) if !c.passed => Err(ApiError::conflict(
            ErrorCode::MfaLimitExceeded,
            c.reason.clone(),
        )),
        _ => Ok(()),
    }
}

/// The active incentive rules evaluated for an approval of `base`: which matched and why, and
/// the resulting amount within the cap and the MFA headroom.
async fn evaluate_incentives(
    state: &AppState,
    app: &ApplicationRow,
    base: Money,
) -> Result<incentive::Evaluation, ApiError> {
    let rules = state
        .store
        .latest_rules()
        .await?
        .into_iter()
        .filter(|r| r.active)
        .map(|r| r.rule())
        .collect::<Result<Vec<_>, _>>()?;
    let first_time = state.store.first_time_applicant(app.id.clone()).await?;
    let f = facts(state, app, base).await?;
    let today = Utc::now().date_naive();
    let organisation = incentive::Organisation {
        region: f.region,
        sic_section: SicSection::parse(&f.sic_code.section().to_string())
            .map_err(ApiError::Internal)?,
        size_band: SizeBand::of(f.employees),
        trading_since: app.trading_since,
        university_spin_off: app.university_spin_off,
        first_time_applicant: first_time,
    };
    let headroom = state.config.eligibility.mfa_headroom(&f, today);
    Ok(incentive::evaluate(
        &rules,
        &organisation,
        today,
        base,
        state.config.standard_voucher,
        state.config.incentive_cap_percent,
        headroom,
    ))
}

/// An incentive rule that matched, and what it adds.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = IncentiveApplied)]
pub struct AppliedView {
    /// The rule's key.
    pub rule: String,
    pub version: i32,
    pub name: String,
    /// Why the rule matched.
    pub why: Vec<String>,
    pub effect: incentive::Effect,
    /// Added at approval.
    #[schema(value_type = Money)]
    pub now: Amount,
    /// A milestone bonus granted later.
    #[schema(value_type = Money)]
    pub later: Amount,
}

/// An active rule whose condition did not hold.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = IncentiveNotMatched)]
pub struct NotMatchedView {
    pub name: String,
    /// Which conditions failed.
    pub why: Vec<String>,
}

/// The active incentive rules evaluated for an approval of `base`. Incentives never add more
/// than the configured cap (a percentage of the standard voucher), and the whole (base,
/// extras and milestone bonuses) stays within the organisation's Minimal Financial Assistance
/// headroom.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = IncentiveEvaluation)]
pub struct EvaluationView {
    /// The voucher before incentives.
    #[schema(value_type = Money)]
    pub base: Amount,
    /// Added at approval.
    #[schema(value_type = Money)]
    pub extra: Amount,
    /// The voucher granted: `base` + `extra`.
    #[schema(value_type = Money)]
    pub total: Amount,
    /// Granted later, when their triggers happen.
    #[schema(value_type = Money)]
    pub milestone_bonuses: Amount,
    /// The most the organisation's co-funding share may be, when a rule caps it.
    #[schema(required)]
    pub co_funding_cap_percent: Option<u32>,
    /// Consulting hours added to the standard allowance.
    pub consulting_hours_added: u32,
    /// Why less was added than the rules asked, such as the configured cap on top of the
    /// standard voucher or the Minimal Financial Assistance limit.
    pub limited_by: Vec<String>,
    /// The rules whose condition held.
    pub applied: Vec<AppliedView>,
    /// The active rules whose condition did not hold.
    pub not_matched: Vec<NotMatchedView>,
    /// Only in a preview: whether the approval would wait for a second administrator.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub needs_second_approval: Option<bool>,
}

impl EvaluationView {
    pub fn new(e: &incentive::Evaluation) -> EvaluationView {
        EvaluationView {
            base: Amount(e.base_micros),
            extra: Amount(e.extra_micros),
            total: Amount(e.total_micros),
            milestone_bonuses: Amount(e.milestones_micros),
            co_funding_cap_percent: e.co_funding_cap_percent,
            consulting_hours_added: e.consulting_hours,
            limited_by: e.limited_by.clone(),
            applied: e
                .applied
                .iter()
                .map(|a| AppliedView {
                    rule: a.key.clone(),
                    version: a.version,
                    name: a.name.clone(),
                    why: a.why.clone(),
                    effect: a.effect,
                    now: Amount(a.now_micros),
                    later: Amount(a.later_micros),
                })
                .collect(),
            not_matched: e
                .not_matched
                .iter()
                .map(|(name, why)| NotMatchedView {
                    name: name.clone(),
                    why: why.clone(),
                })
                .collect(),
            needs_second_approval: None,
        }
    }
}

#[derive(Debug, Default, Deserialize, Validate)]
pub struct PreviewQuery {
    pub amount: Option<Money>,
}

/// What the incentive rules would add to an approval of `amount` (the standard voucher when
/// absent), shown before the administrator confirms. It makes every check the approval makes
/// (the same code), so an amount the approval would refuse is refused here with the same
/// status, code and field.
pub async fn preview_incentives(
    state: &AppState,
    id: &ApplicationId,
    q: PreviewQuery,
) -> Result<EvaluationView, ApiError> {
    let plan = plan_approval(state, id.clone(), Stage::First, q.amount, None).await?;
    let mut view = EvaluationView::new(&plan.evaluation);
    view.needs_second_approval = Some(plan.approvals == Approvals::Two);
    Ok(view)
}

/// The size and subsidy limits an application is checked against, as the apply page explains
/// them: fewer than `max_employees` people, and turnover, balance sheet and the subsidies of
/// the last three years at most the amounts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EligibilityLimits {
    pub max_employees: u32,
    pub max_turnover: Money,
    pub max_balance_sheet: Money,
    pub mfa_limit: Money,
}

pub fn eligibility_limits(state: &AppState) -> EligibilityLimits {
    let r = &state.config.eligibility;
    EligibilityLimits {
        max_employees: r.max_employees_exclusive,
        max_turnover: r.max_turnover,
        max_balance_sheet: r.max_balance_sheet_total,
        mfa_limit: r.mfa_limit,
    }
}
