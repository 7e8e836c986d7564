//! Innovation challenges: administrators create them; entrants submit and edit entries while
//! a challenge is open; assessors declare conflicts of interest and score the entries
//! allocated to them. The worker performs each milestone's side effects.

use crate::auth::AuthUser;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use crate::views::Timestamp;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use validator::Validate;
use voucherd_domain::challenge::{
    self, Criteria, Criterion, KindCheck, KindEvidence, Milestone, Milestones, OrganisationKind,
    Standing,
};
use voucherd_domain::money::{format_micros, Amount};
use voucherd_domain::ErrorCode;
use voucherd_domain::{ChallengeId, CompanyNumber, EntryId, Money, Region, Role, SicCode, UserId};
use voucherd_store::challenges::{ChallengeRow, ConflictRow, EntryRow, Progress, ScoreRow};

/// How long a declared conflict of interest lasts before it must be declared again.
const CONFLICT_VALID_DAYS: i64 = 365;

/// A challenge as an administrator creates or edits it.
// Limits stated beside `#[validate]` are published by `#[schema]`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[validate(length(min = 1, max = 2000, message = "must be 1 to 2000 characters"))]
    #[schema(min_length = 1, max_length = 2000)]
    pub theme: String,
    /// The kinds of organisation that may enter.
    #[validate(length(min = 1, max = 3, message = "must list 1 to 3 kinds"))]
    #[schema(min_items = 1, max_items = 3)]
    pub eligible: Vec<OrganisationKind>,
    /// When entries are first accepted.
    pub opens_at: DateTime<Utc>,
    /// After `opens_at` and in the future. Entries lock at this time.
    pub closes_at: DateTime<Utc>,
    /// After `closes_at`. Entries are allocated to assessors at this time.
    pub assessors_assigned_at: DateTime<Utc>,
    /// After `assessors_assigned_at`. Scores are accepted until this time.
    pub assessment_deadline: DateTime<Utc>,
    /// After `assessment_deadline`. Results are published at this time.
    pub decisions_released_at: DateTime<Utc>,
    /// Checked by `Criteria::parse`: 1 to 20, with distinct names.
    #[schema(min_items = 1, max_items = 20)]
    pub criteria: Vec<Criterion>,
    #[validate(range(min = 1, max = 10, message = "must be between 1 and 10"))]
    #[schema(minimum = 1, maximum = 10)]
    pub assessors_per_entry: u32,
    /// More than 0. Reserved from the programme fund when the challenge is created.
    pub award_pool: Money,
    /// Awards by rank, first place first; each more than 0, together at most `award_pool`.
    #[validate(length(min = 1, max = 100, message = "must list 1 to 100 awards"))]
    #[schema(min_items = 1, max_items = 100)]
    pub award_amounts: Vec<Money>,
    /// How many of the best-ranked entries are invited to a pilot.
    #[validate(range(max = 1000, message = "must be at most 1000"))]
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000, default = 0)]
    pub pilot_places: u32,
    /// A cron expression with seconds (sec min hour day-of-month month day-of-week, UTC)
    /// saying when each next cycle opens; a one-off challenge when absent.
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    #[schema(min_length = 1, max_length = 100, examples("0 0 9 1 */3 *"))]
    pub recurrence: Option<String>,
}

fn naive(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

/// A challenge: its theme, milestones, criteria and awards, and how it stands now.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Challenge)]
pub struct ChallengeView {
    /// Time-ordered UUID (v7).
    pub id: ChallengeId,
    pub title: String,
    pub theme: String,
    pub status: Standing,
    #[schema(required)]
    pub cancelled_at: Option<Timestamp>,
    #[schema(required)]
    pub cancellation_reason: Option<String>,
    pub eligible: Vec<OrganisationKind>,
    pub opens_at: Timestamp,
    pub closes_at: Timestamp,
    pub assessors_assigned_at: Timestamp,
    pub assessment_deadline: Timestamp,
    pub decisions_released_at: Timestamp,
    pub criteria: Vec<Criterion>,
    pub assessors_per_entry: i32,
    #[schema(value_type = Money)]
    pub award_pool: Amount,
    /// Awards by rank, first place first.
    #[schema(value_type = Vec<Money>)]
    pub award_amounts: Vec<Amount>,
    pub pilot_places: i32,
    /// The cron expression for the next cycle; null for a one-off challenge.
    #[schema(required)]
    pub recurrence: Option<String>,
    /// The challenge this cycle follows; null for the first cycle.
    #[schema(required)]
    pub previous_id: Option<ChallengeId>,
    pub created_at: Timestamp,
    /// Administrators only: entries, allocations and scores so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub progress: Option<Progress>,
    /// Only in a cancellation's answer: the pool returned to the fund.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<Money>)]
    pub returned_to_fund: Option<Amount>,
}

impl ChallengeView {
    fn new(ch: &ChallengeRow, now: NaiveDateTime) -> Result<ChallengeView, ApiError> {
        let m = ch.milestones()?;
        Ok(ChallengeView {
            id: ch.id.clone(),
            title: ch.title.clone(),
            theme: ch.theme.clone(),
            status: ch.standing_at(now)?,
            cancelled_at: ch.cancelled_at.map(Timestamp),
            cancellation_reason: ch.cancellation_reason.clone(),
            eligible: ch.eligible_kinds()?,
            opens_at: Timestamp(m.at(Milestone::Opens)),
            closes_at: Timestamp(m.at(Milestone::Closes)),
            assessors_assigned_at: Timestamp(m.at(Milestone::AssessorsAssigned)),
            assessment_deadline: Timestamp(m.at(Milestone::AssessmentDeadline)),
            decisions_released_at: Timestamp(m.at(Milestone::DecisionsReleased)),
            criteria: ch.criteria()?.list().to_vec(),
            assessors_per_entry: ch.assessors_per_entry,
            award_pool: Amount(ch.award_pool),
            award_amounts: ch.awards()?.into_iter().map(Amount).collect(),
            pilot_places: ch.pilot_places,
            recurrence: ch.recurrence.clone(),
            previous_id: ch.previous_id.clone(),
            created_at: Timestamp(ch.created_at),
            progress: None,
            returned_to_fund: None,
        })
    }
}

/// How an administrator found the evidence of an entry's kind.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = KindCheckResult)]
pub struct KindCheckView {
    pub status: KindCheck,
    /// Why it was accepted or rejected; null until checked.
    #[schema(required)]
    pub reason: Option<String>,
    #[schema(required)]
    pub checked_at: Option<Timestamp>,
}

/// An entry's result, once decisions are released.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = EntryResult)]
pub struct ResultView {
    /// The mean assessor score as a percentage with two decimals; null when unscored.
    #[schema(required, examples("62.50"))]
    pub score_percent: Option<String>,
    /// 1 for first place; null when unranked.
    #[schema(required)]
    pub rank: Option<i32>,
    #[schema(value_type = Money)]
    pub award: Amount,
    /// An award it placed for but that was not paid because it would pass the Minimal
    /// Financial Assistance limit; the amount stays in the challenge's account.
    #[schema(required)]
    pub award_refused_reason: Option<String>,
    pub assessments_incomplete: bool,
    pub pilot_invited: bool,
}

/// An assessor's own score of an entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = MyScore)]
pub struct MyScoreView {
    /// Score per criterion name.
    pub scores: BTreeMap<String, u32>,
    /// The weighted percentage, with two decimals.
    #[schema(examples("62.50"))]
    pub percent: String,
    pub comment: String,
    pub submitted_at: Timestamp,
}

/// An entry to a challenge.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Entry)]
pub struct EntryView {
    /// Time-ordered UUID (v7).
    pub id: EntryId,
    pub challenge_id: ChallengeId,
    #[schema(value_type = CompanyNumber)]
    pub company_number: String,
    pub organisation_name: String,
    pub organisation_kind: OrganisationKind,
    pub region: Region,
    #[schema(value_type = SicCode)]
    pub sic_code: String,
    pub title: String,
    pub summary: String,
    pub submitted_at: Timestamp,
    pub updated_at: Timestamp,
    /// Entries lock when the challenge closes.
    pub locked: bool,
    /// The evidence of a startup or spin-off's kind.
    #[schema(required, value_type = Option<Object>)]
    pub evidence: Option<serde_json::Value>,
    /// For an entry with evidence: how an administrator found it.
    #[schema(required)]
    pub kind_check: Option<KindCheckView>,
    /// Why it cannot be (or was not) ranked, if it cannot.
    #[schema(required)]
    pub not_ranked_because: Option<String>,
    /// Null until decisions are released.
    #[schema(required)]
    pub result: Option<ResultView>,
    /// In an assessor's list only: their own score; null until they score it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<MyScoreView>)]
    pub my_score: Option<Option<MyScoreView>>,
}

/// An entry allocated to the calling assessor: an entry whose `my_score` is always present.
#[derive(Serialize)]
pub struct Assessment;

impl utoipa::PartialSchema for Assessment {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Ref};
        AllOfBuilder::new()
            .item(Ref::from_schema_name("Entry"))
            .item(ObjectBuilder::new().required("my_score"))
            .into()
    }
}

impl ToSchema for Assessment {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "Entry".into(),
            <EntryView as utoipa::PartialSchema>::schema(),
        ));
        EntryView::schemas(schemas);
    }
}

impl EntryView {
    fn new(e: &EntryRow, decided: bool) -> Result<EntryView, ApiError> {
        Ok(EntryView {
            id: e.id.clone(),
            challenge_id: e.challenge_id.clone(),
            company_number: e.company_number.clone(),
            organisation_name: e.organisation_name.clone(),
            organisation_kind: e.organisation_kind,
            region: e.region_of()?,
            sic_code: e.sic_code.clone(),
            title: e.title.clone(),
            summary: e.summary.clone(),
            submitted_at: Timestamp(e.submitted_at),
            updated_at: Timestamp(e.updated_at),
            locked: e.locked_at.is_some(),
            evidence: e
                .kind_evidence
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok()),
            kind_check: e.kind_evidence.as_ref().map(|_| KindCheckView {
                status: e.kind_check.unwrap_or(KindCheck::Unchecked),
                reason: e.kind_check_reason.clone(),
                checked_at: e.kind_checked_at.map(Timestamp),
            }),
            not_ranked_because: e.not_ranked_because(),
            result: decided.then(|| ResultView {
                score_percent: e.score_bp.map(challenge::format_percent_bp),
                rank: e.entry_rank,
                award: Amount(e.award),
                award_refused_reason: e.award_refused_reason.clone(),
                assessments_incomplete: e.assessments_incomplete,
                pilot_invited: e.pilot_invited,
            }),
            my_score: None,
        })
    }

    /// An allocated entry with the assessor's own score, if given.
    fn assessed(e: &EntryRow, s: Option<&ScoreRow>) -> Result<EntryView, ApiError> {
        let mine = match s {
            Some(s) => Some(MyScoreView {
                scores: s.by_criterion()?,
                percent: challenge::format_percent_bp(s.percent_bp),
                comment: s.comment.clone(),
                submitted_at: Timestamp(s.submitted_at),
            }),
            None => None,
        };
        Ok(EntryView {
            my_score: Some(mine),
            ..EntryView::new(e, false)?
        })
    }
}

/// A challenge's fields, checked as at creation (an edit is checked the same way), as the row
/// they make; its id, author and times are the caller's.
fn parse_challenge(
    body: &ChallengeRequest,
    now: DateTime<Utc>,
    id: ChallengeId,
    created_by: UserId,
    created_at: NaiveDateTime,
) -> Result<ChallengeRow, ApiError> {
    let mut errors = Vec::new();
    let milestones = Milestones::parse(
        naive(body.opens_at),
        naive(body.closes_at),
        naive(body.assessors_assigned_at),
        naive(body.assessment_deadline),
        naive(body.decisions_released_at),
    );
    if let Err((field, message)) = &milestones {
        errors.push(FieldError::new(*field, message.clone()));
    }
    if body.closes_at <= now {
        errors.push(FieldError::new("closes_at", "must be in the future"));
    }
    let criteria = Criteria::parse(body.criteria.clone());
    if let Err(m) = &criteria {
        errors.push(FieldError::new("criteria", m.clone()));
    }
    if body.title.trim().is_empty() {
        errors.push(FieldError::new("title", "must not be blank"));
    }
    check_awards(body, &mut errors);
    let recurrence = recurrence(body, &mut errors);
    let (Ok(milestones), Ok(criteria), true) = (milestones, criteria, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let mut eligible: Vec<OrganisationKind> = body.eligible.clone();
    eligible.sort();
    eligible.dedup();
    Ok(ChallengeRow {
        fund_account_id: format!("challenge-{id}"),
        id,
        title: body.title.trim().to_string(),
        theme: body.theme.trim().to_string(),
        eligible_kinds: to_json(&eligible)?,
        opens_at: milestones.at(Milestone::Opens),
        closes_at: milestones.at(Milestone::Closes),
        assessors_assigned_at: milestones.at(Milestone::AssessorsAssigned),
        assessment_deadline: milestones.at(Milestone::AssessmentDeadline),
        decisions_released_at: milestones.at(Milestone::DecisionsReleased),
        criteria: to_json(&criteria.list())?,
        assessors_per_entry: i32::try_from(body.assessors_per_entry).unwrap_or(1),
        award_pool: body.award_pool.micros(),
        award_amounts: to_json(
            &body
                .award_amounts
                .iter()
                .map(|m| m.micros())
                .collect::<Vec<_>>(),
        )?,
        pilot_places: i32::try_from(body.pilot_places).unwrap_or(0),
        recurrence,
        previous_id: None,
        created_by,
        created_at,
        cancelled_at: None,
        cancellation_reason: None,
    })
}

/// Checks the award pool and the awards: each more than zero, and together within the pool.
fn check_awards(body: &ChallengeRequest, errors: &mut Vec<FieldError>) {
    if body.award_pool.is_zero() {
        errors.push(FieldError::new("award_pool", "must be more than zero"));
    }
    let mut awarded = 0_i64;
    for (i, a) in body.award_amounts.iter().enumerate() {
        if a.is_zero() {
            errors.push(FieldError::new(
                format!("award_amounts[{i}]"),
                "must be more than zero",
            ));
        }
        awarded = awarded.saturating_add(a.micros());
    }
    if awarded > body.award_pool.micros() {
        errors.push(FieldError::new(
            "award_amounts",
            format!(
                "add up to {} but the pool is {}",
                format_micros(awarded),
                body.award_pool
            ),
        ));
    }
}

/// The challenge's recurrence, if it has one that can be read; what cannot is added to
/// `errors`.
fn recurrence(body: &ChallengeRequest, errors: &mut Vec<FieldError>) -> Option<String> {
    match &body.recurrence {
        Some(r) => match challenge::parse_recurrence(r) {
            Ok(r) => Some(r),
            Err(m) => {
                errors.push(FieldError::new("recurrence", m));
                None
            }
        },
        None => None,
    }
}

pub async fn create(
    state: &AppState,
    user: &AuthUser,
    body: ChallengeRequest,
) -> Result<ChallengeView, ApiError> {
    let now = state.clock.now();
    let row = parse_challenge(
        &body,
        now.and_utc(),
        crate::keys::new_id::<ChallengeId>(),
        user.id.clone(),
        now,
    )?;
    let row = state.store.create_challenge(row).await?;
    ChallengeView::new(&row, now)
}

/// Replaces a challenge's fields before it opens (409 `challenge_open` once it has); checked
/// as at creation. A changed pool moves the difference between the fund and the challenge.
pub async fn update(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    body: ChallengeRequest,
) -> Result<ChallengeView, ApiError> {
    let now = state.clock.now();
    let old = state.store.challenge(ChallengeId::new(id)).await?;
    // Refused before validation: a challenge already open cannot be edited at all.
    if old.cancelled_at.is_some() || old.opens_at <= now {
        return Err(ApiError::conflict(
            if old.cancelled_at.is_some() {
                ErrorCode::ChallengeCancelled
            } else {
                ErrorCode::ChallengeOpen
            },
            format!(
                "the challenge {}: it can no longer be edited",
                if old.cancelled_at.is_some() {
                    "is cancelled".to_string()
                } else {
                    format!("opened at {} (UTC)", old.opens_at)
                }
            ),
        ));
    }
    let mut row = parse_challenge(
        &body,
        now.and_utc(),
        old.id.clone(),
        old.created_by,
        old.created_at,
    )?;
    row.fund_account_id = old.fund_account_id;
    row.previous_id = old.previous_id;
    let row = state
        .store
        .update_challenge(row, user.id.clone(), now)
        .await?;
    ChallengeView::new(&row, now)
}

#[derive(Debug, Deserialize, Validate)]
pub struct CancellationRequest {
    #[validate(length(min = 1, max = 1000, message = "must be 1 to 1000 characters"))]
    pub reason: String,
}

/// Cancels a challenge before its decisions are released: its pool goes back to the fund,
/// entrants are told.
pub async fn cancel(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    body: CancellationRequest,
) -> Result<ChallengeView, ApiError> {
    not_blank(&[("reason", &body.reason)])?;
    let now = state.clock.now();
    let (row, returned) = state
        .store
        .cancel_challenge(
            ChallengeId::new(id),
            user.id.clone(),
            body.reason.trim().to_string(),
            now,
        )
        .await?;
    let mut out = ChallengeView::new(&row, now)?;
    out.returned_to_fund = Some(Amount(returned));
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindDecision {
    Accept,
    Reject,
}

#[derive(Debug, Deserialize, Validate)]
pub struct KindCheckRequest {
    pub decision: KindDecision,
    #[validate(length(min = 1, max = 1000, message = "must be 1 to 1000 characters"))]
    pub reason: String,
}

/// An administrator accepts or rejects the evidence of an entry's kind; only an accepted
/// startup or spin-off entry is ranked.
pub async fn check_kind(
    state: &AppState,
    user: &AuthUser,
    challenge_id: &str,
    entry_id: &str,
    body: KindCheckRequest,
) -> Result<EntryView, ApiError> {
    not_blank(&[("reason", &body.reason)])?;
    let row = state
        .store
        .check_entry_kind(
            ChallengeId::new(challenge_id),
            EntryId::new(entry_id),
            user.id.clone(),
            matches!(body.decision, KindDecision::Accept),
            body.reason.trim().to_string(),
            state.clock.now(),
        )
        .await?;
    EntryView::new(&row, false)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The latest 200 challenges.
pub async fn list(state: &AppState) -> Result<Vec<ChallengeView>, ApiError> {
    let now = state.clock.now();
    let rows = state.store.challenges(200).await?;
    rows.iter().map(|c| ChallengeView::new(c, now)).collect()
}

/// A challenge; with its progress for an administrator.
pub async fn get(state: &AppState, user: &AuthUser, id: &str) -> Result<ChallengeView, ApiError> {
    let ch = state.store.challenge(ChallengeId::new(id)).await?;
    let mut view = ChallengeView::new(&ch, state.clock.now())?;
    if user.is_admin() {
        view.progress = Some(state.store.challenge_progress(ch.id.clone()).await?);
    }
    Ok(view)
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryRequest {
    #[schema(value_type = voucherd_domain::CompanyNumberInput)]
    pub company_number: CompanyNumber,
    #[validate(length(min = 1, max = 160, message = "must be 1 to 160 characters"))]
    #[schema(min_length = 1, max_length = 160)]
    pub organisation_name: String,
    pub organisation_kind: OrganisationKind,
    #[schema(value_type = voucherd_domain::RegionInput)]
    pub region: Region,
    pub sic_code: SicCode,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[validate(length(min = 20, max = 5000, message = "must be 20 to 5000 characters"))]
    #[schema(min_length = 20, max_length = 5000)]
    pub summary: String,
    /// Required for `startup` (incorporated within `startup_max_age_years`, default 5) and
    /// `university_spin_off` (naming its university); checked by an administrator before
    /// ranking.
    #[serde(default)]
    pub evidence: Option<EvidenceRequest>,
}

/// What an entry as a startup or spin-off shows of its kind.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = KindEvidence)]
pub struct EvidenceRequest {
    /// The date of incorporation (a startup's must be within the age limit).
    pub incorporated_on: Option<NaiveDate>,
    /// A spin-off's university.
    #[schema(max_length = 200)]
    pub university: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryUpdate {
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[validate(length(min = 20, max = 5000, message = "must be 20 to 5000 characters"))]
    #[schema(min_length = 20, max_length = 5000)]
    pub summary: String,
}

fn not_blank(fields: &[(&str, &str)]) -> Result<(), ApiError> {
    let errors: Vec<FieldError> = fields
        .iter()
        .filter(|(_, v)| v.trim().is_empty())
        .map(|(f, _)| FieldError::new(*f, "must not be blank"))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

pub async fn submit_entry(
    state: &AppState,
    user: &AuthUser,
    challenge_id: &str,
    body: EntryRequest,
) -> Result<EntryView, ApiError> {
    not_blank(&[
        ("organisation_name", &body.organisation_name),
        ("title", &body.title),
        ("summary", &body.summary),
    ])?;
    let at = state.clock.now();
    let evidence = KindEvidence::parse(
        body.organisation_kind,
        body.evidence.as_ref().and_then(|e| e.incorporated_on),
        body.evidence.as_ref().and_then(|e| e.university.as_deref()),
        at.date(),
        state.config.eligibility.startup_max_age_years,
    )
    .map_err(|(field, m)| ApiError::field(field, m))?;
    let row = EntryRow {
        id: crate::keys::new_id::<EntryId>(),
        challenge_id: ChallengeId::new(challenge_id),
        entrant_id: user.id.clone(),
        company_number: body.company_number.as_str().to_string(),
        organisation_name: body.organisation_name.trim().to_string(),
        organisation_kind: body.organisation_kind,
        region: body.region.as_str().to_string(),
        sic_code: body.sic_code.as_str().to_string(),
        title: body.title.trim().to_string(),
        summary: body.summary.trim().to_string(),
        submitted_at: at,
        updated_at: at,
        locked_at: None,
        score_bp: None,
        entry_rank: None,
        award: 0,
        pilot_invited: false,
        decided_at: None,
        award_refused_reason: None,
        assessments_incomplete: false,
        kind_evidence: evidence.as_ref().map(to_json).transpose()?,
        kind_check: None,
        kind_check_reason: None,
        kind_checked_by: None,
        kind_checked_at: None,
    };
    let row = state.store.submit_entry(row, at).await?;
    EntryView::new(&row, false)
}

pub async fn update_entry(
    state: &AppState,
    user: &AuthUser,
    challenge_id: &str,
    entry_id: &str,
    body: EntryUpdate,
) -> Result<EntryView, ApiError> {
    not_blank(&[("title", &body.title), ("summary", &body.summary)])?;
    let row = state
        .store
        .update_entry(
            EntryId::new(entry_id),
            user.id.clone(),
            body.title.trim().to_string(),
            body.summary.trim().to_string(),
            state.clock.now(),
        )
        .await?;
    if row.challenge_id.as_str() != challenge_id {
        return Err(ApiError::NotFound("entry"));
    }
    EntryView::new(&row, false)
}

/// An administrator sees every entry; an entrant their own.
pub async fn list_entries(
    state: &AppState,
    user: &AuthUser,
    challenge_id: &str,
) -> Result<Vec<EntryView>, ApiError> {
    let ch = state
        .store
        .challenge(ChallengeId::new(challenge_id))
        .await?;
    let decided = ch.milestones()?.status(state.clock.now()) == challenge::Status::Decided;
    let only = (!user.is_admin()).then(|| user.id.clone());
    let rows = state.store.entries(ch.id.clone(), only).await?;
    rows.iter()
        .map(|e| EntryView::new(e, decided && e.decided_at.is_some()))
        .collect()
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConflictRequest {
    #[schema(value_type = voucherd_domain::CompanyNumberInput)]
    pub company_number: CompanyNumber,
    #[validate(length(min = 1, max = 500, message = "must be 1 to 500 characters"))]
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// An entry taken off the declaring assessor. Who took it over is not their business: only
/// whether someone did.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = WithdrawnEntry)]
pub struct WithdrawnView {
    pub entry_id: EntryId,
    pub challenge_id: ChallengeId,
    /// The caller had scored it; that score was removed (the audit log keeps it).
    pub score_dropped: bool,
    /// Another assessor free of conflicts took it over; false when nobody was free or scoring
    /// had closed, and the entry is short of assessors.
    pub reallocated: bool,
}

/// A declared conflict of interest.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Conflict)]
pub struct ConflictView {
    /// Time-ordered UUID (v7).
    pub id: String,
    #[schema(value_type = CompanyNumber)]
    pub company_number: String,
    pub reason: String,
    pub declared_at: Timestamp,
    /// 365 days after `declared_at`; declare again to renew.
    pub expires_at: Timestamp,
    /// True until `expires_at` has passed.
    pub current: bool,
    /// In the answer to a declaration only: the undecided entries of the company that were
    /// allocated to the caller and were taken off them in the same transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub entries_withdrawn: Option<Vec<WithdrawnView>>,
}

impl ConflictView {
    fn new(c: &ConflictRow, now: NaiveDateTime) -> ConflictView {
        ConflictView {
            id: c.id.clone(),
            company_number: c.company_number.clone(),
            reason: c.reason.clone(),
            declared_at: Timestamp(c.declared_at),
            expires_at: Timestamp(c.expires_at),
            current: c.expires_at > now,
            entries_withdrawn: None,
        }
    }
}

/// Declares a conflict of interest. Entries of that company already allocated to the caller
/// are taken off them and reallocated in the same transaction; the answer lists them.
pub async fn declare_conflict(
    state: &AppState,
    user: &AuthUser,
    body: ConflictRequest,
) -> Result<ConflictView, ApiError> {
    not_blank(&[("reason", &body.reason)])?;
    let at = state.clock.now();
    let (row, withdrawn) = state
        .store
        .declare_conflict(ConflictRow {
            id: uuid::Uuid::now_v7().to_string(),
            assessor_id: user.id.clone(),
            company_number: body.company_number.as_str().to_string(),
            reason: body.reason.trim().to_string(),
            declared_at: at,
            expires_at: at + chrono::Duration::days(CONFLICT_VALID_DAYS),
        })
        .await?;
    let mut out = ConflictView::new(&row, at);
    out.entries_withdrawn = Some(
        withdrawn
            .iter()
            .map(|w| WithdrawnView {
                entry_id: w.entry_id.clone(),
                challenge_id: w.challenge_id.clone(),
                score_dropped: w.score_dropped,
                reallocated: w.reallocated_to.is_some(),
            })
            .collect(),
    );
    Ok(out)
}

/// The calling assessor's declared conflicts of interest.
pub async fn list_conflicts(
    state: &AppState,
    user: &AuthUser,
) -> Result<Vec<ConflictView>, ApiError> {
    let now = state.clock.now();
    let rows = state.store.conflicts(user.id.clone()).await?;
    Ok(rows.iter().map(|c| ConflictView::new(c, now)).collect())
}

/// The entries allocated to the calling assessor, with their own scores; none from a company
/// they have a current conflict of interest with.
pub async fn assessments(state: &AppState, user: &AuthUser) -> Result<Vec<EntryView>, ApiError> {
    debug_assert_eq!(user.role, Role::Assessor);
    let rows = state
        .store
        .allocated_entries(user.id.clone(), state.clock.now())
        .await?;
    rows.iter()
        .map(|(e, s)| EntryView::assessed(e, s.as_ref()))
        .collect()
}

/// One entry allocated to the calling assessor: 403 `conflict_of_interest` when they have a
/// current conflict with its company, 403 `forbidden` when it is not theirs to assess.
pub async fn assessment(
    state: &AppState,
    user: &AuthUser,
    entry_id: &str,
) -> Result<EntryView, ApiError> {
    let (e, s) = state
        .store
        .assessment(EntryId::new(entry_id), user.id.clone(), state.clock.now())
        .await?;
    EntryView::assessed(&e, s.as_ref())
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// A score for every criterion of the challenge, by name, each at most the criterion's
    /// `max_score`: `{"innovation": 7, "impact": 2}`.
    pub scores: BTreeMap<String, u32>,
    #[validate(length(max = 5000, message = "must be at most 5000 characters"))]
    #[serde(default)]
    #[schema(max_length = 5000, default = "")]
    pub comment: String,
}

/// A score as given.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Score)]
pub struct ScoreView {
    pub entry_id: EntryId,
    /// Score per criterion name.
    pub scores: BTreeMap<String, u32>,
    /// The weighted percentage, with two decimals: Σ weight × score / max_score over Σ weight.
    #[schema(examples("62.50"))]
    pub percent: String,
    pub comment: String,
    pub submitted_at: Timestamp,
}

/// Scores an entry allocated to the calling assessor, criterion by criterion.
pub async fn score(
    state: &AppState,
    user: &AuthUser,
    entry_id: &str,
    body: ScoreRequest,
) -> Result<ScoreView, ApiError> {
    let entry_id = EntryId::new(entry_id);
    // Refused as reading is; the score's own transaction checks again.
    let (entry, _) = state
        .store
        .assessment(entry_id.clone(), user.id.clone(), state.clock.now())
        .await?;
    let ch = state.store.challenge(entry.challenge_id.clone()).await?;
    let percent_bp = ch
        .criteria()?
        .percent_bp(&body.scores)
        .map_err(|(name, m)| ApiError::field(&format!("scores.{name}"), m))?;
    let row = state
        .store
        .submit_score(
            ScoreRow {
                entry_id,
                assessor_id: user.id.clone(),
                scores: serde_json::to_string(&body.scores)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                percent_bp,
                comment: body.comment.trim().to_string(),
                submitted_at: state.clock.now(),
            },
            state.clock.now(),
        )
        .await?;
    Ok(ScoreView {
        entry_id: row.entry_id,
        scores: body.scores,
        percent: challenge::format_percent_bp(row.percent_bp),
        comment: row.comment,
        submitted_at: Timestamp(row.submitted_at),
    })
}
