//! Innovation challenges: administrators create them; entrants submit and edit entries while
//! a challenge is open; assessors declare conflicts of interest and score the entries
//! allocated to them. The worker performs each milestone's side effects.

use crate::auth::AuthUser;
use crate::error::{ApiError, FieldError};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use validator::Validate;
use voucherd_domain::challenge::{
    self, Criteria, Criterion, KindEvidence, Milestone, Milestones, OrganisationKind,
};
use voucherd_domain::money::format_micros;
use voucherd_domain::{CompanyNumber, Money, Region, Role, SicCode};
use voucherd_store::challenges::{ChallengeRow, ConflictRow, EntryRow, ScoreRow};

/// How long a declared conflict of interest lasts before it must be declared again.
const CONFLICT_VALID_DAYS: i64 = 365;

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    pub title: String,
    #[validate(length(min = 1, max = 2000, message = "must be 1 to 2000 characters"))]
    pub theme: String,
    #[validate(length(min = 1, max = 3, message = "must list 1 to 3 kinds"))]
    pub eligible: Vec<OrganisationKind>,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    pub assessors_assigned_at: DateTime<Utc>,
    pub assessment_deadline: DateTime<Utc>,
    pub decisions_released_at: DateTime<Utc>,
    pub criteria: Vec<Criterion>,
    #[validate(range(min = 1, max = 10, message = "must be between 1 and 10"))]
    pub assessors_per_entry: u32,
    pub award_pool: Money,
    #[validate(length(min = 1, max = 100, message = "must list 1 to 100 awards"))]
    pub award_amounts: Vec<Money>,
    #[validate(range(max = 1000, message = "must be at most 1000"))]
    #[serde(default)]
    pub pilot_places: u32,
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    pub recurrence: Option<String>,
}

fn naive(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

fn challenge_json(ch: &ChallengeRow, now: NaiveDateTime) -> Result<serde_json::Value, ApiError> {
    let m = ch.milestones()?;
    let criteria = ch.criteria()?;
    let awards: Vec<String> = ch.awards()?.into_iter().map(format_micros).collect();
    Ok(serde_json::json!({
        "id": ch.id,
        "title": ch.title,
        "theme": ch.theme,
        "status": ch.status_at(now)?,
        "cancelled_at": views::opt_time(ch.cancelled_at),
        "cancellation_reason": ch.cancellation_reason,
        "eligible": ch.eligible(),
        "opens_at": views::time(m.at(Milestone::Opens)),
        "closes_at": views::time(m.at(Milestone::Closes)),
        "assessors_assigned_at": views::time(m.at(Milestone::AssessorsAssigned)),
        "assessment_deadline": views::time(m.at(Milestone::AssessmentDeadline)),
        "decisions_released_at": views::time(m.at(Milestone::DecisionsReleased)),
        "criteria": criteria.list(),
        "assessors_per_entry": ch.assessors_per_entry,
        "award_pool": format_micros(ch.award_pool),
        "award_amounts": awards,
        "pilot_places": ch.pilot_places,
        "recurrence": ch.recurrence,
        "previous_id": ch.previous_id,
        "created_at": views::time(ch.created_at),
    }))
}

fn entry_json(e: &EntryRow, decided: bool) -> serde_json::Value {
    let evidence = e
        .kind_evidence
        .as_deref()
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok());
    serde_json::json!({
        "id": e.id,
        "challenge_id": e.challenge_id,
        "company_number": e.company_number,
        "organisation_name": e.organisation_name,
        "organisation_kind": e.organisation_kind,
        "region": e.region,
        "sic_code": e.sic_code,
        "title": e.title,
        "summary": e.summary,
        "submitted_at": views::time(e.submitted_at),
        "updated_at": views::time(e.updated_at),
        "locked": e.locked_at.is_some(),
        "evidence": evidence,
        "kind_check": e.kind_evidence.as_ref().map(|_| serde_json::json!({
            "status": e.kind_check.as_deref().unwrap_or("unchecked"),
            "reason": e.kind_check_reason,
            "checked_at": views::opt_time(e.kind_checked_at),
        })),
        // Why it cannot be (or was not) ranked, if it cannot.
        "not_ranked_because": e.not_ranked_because(),
        // Results only once decisions are released.
        "result": decided.then(|| serde_json::json!({
            "score_percent": e.score_bp.map(challenge::format_percent_bp),
            "rank": e.entry_rank,
            "award": format_micros(e.award),
            "award_refused_reason": e.award_refused_reason,
            "assessments_incomplete": e.assessments_incomplete,
            "pilot_invited": e.pilot_invited,
        })),
    })
}

/// A challenge's fields, checked as at creation (an edit is checked the same way), as the row
/// they make; its id, author and times are the caller's.
fn parse_challenge(
    body: &ChallengeRequest,
    now: DateTime<Utc>,
    id: String,
    created_by: String,
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
    let recurrence = match &body.recurrence {
        Some(r) => match challenge::parse_recurrence(r) {
            Ok(r) => Some(r),
            Err(m) => {
                errors.push(FieldError::new("recurrence", m));
                None
            }
        },
        None => None,
    };
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

pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<ChallengeRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let row = parse_challenge(
        &body,
        now.and_utc(),
        uuid::Uuid::now_v7().to_string(),
        user.id,
        now,
    )?;
    let row = state.store.create_challenge(row).await?;
    Ok(HttpResponse::Created().json(challenge_json(&row, now)?))
}

/// Replaces a challenge's fields before it opens (409 `challenge_open` once it has); checked
/// as at creation. A changed pool moves the difference between the fund and the challenge.
pub async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<ChallengeRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let old = state.store.challenge(path.into_inner()).await?;
    // Refused before validation: a challenge already open cannot be edited at all.
    if old.cancelled_at.is_some() || old.opens_at <= now {
        return Err(ApiError::conflict(
            if old.cancelled_at.is_some() {
                "challenge_cancelled"
            } else {
                "challenge_open"
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
    let row = state.store.update_challenge(row, user.id, now).await?;
    Ok(HttpResponse::Ok().json(challenge_json(&row, now)?))
}

#[derive(Debug, Deserialize, Validate)]
pub struct CancellationRequest {
    #[validate(length(min = 1, max = 1000, message = "must be 1 to 1000 characters"))]
    pub reason: String,
}

/// Cancels a challenge before its decisions are released: its pool goes back to the fund,
/// entrants are told.
pub async fn cancel(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<CancellationRequest>,
) -> Result<HttpResponse, ApiError> {
    not_blank(&[("reason", &body.reason)])?;
    let now = state.clock.now();
    let (row, returned) = state
        .store
        .cancel_challenge(
            path.into_inner(),
            user.id,
            body.reason.trim().to_string(),
            now,
        )
        .await?;
    let mut out = challenge_json(&row, now)?;
    out["returned_to_fund"] = serde_json::json!(format_micros(returned));
    Ok(HttpResponse::Ok().json(out))
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
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<KindCheckRequest>,
) -> Result<HttpResponse, ApiError> {
    not_blank(&[("reason", &body.reason)])?;
    let (challenge_id, entry_id) = path.into_inner();
    let row = state
        .store
        .check_entry_kind(
            challenge_id,
            entry_id,
            user.id,
            matches!(body.decision, KindDecision::Accept),
            body.reason.trim().to_string(),
            state.clock.now(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(entry_json(&row, false)))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::Internal(e.to_string()))
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rows = state.store.challenges(200).await?;
    let data = rows
        .iter()
        .map(|c| challenge_json(c, now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

pub async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ch = state.store.challenge(path.into_inner()).await?;
    let mut body = challenge_json(&ch, state.clock.now())?;
    if user.is_admin() {
        let progress = state.store.challenge_progress(ch.id.clone()).await?;
        body["progress"] =
            serde_json::to_value(progress).map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct EntryRequest {
    pub company_number: CompanyNumber,
    #[validate(length(min = 1, max = 160, message = "must be 1 to 160 characters"))]
    pub organisation_name: String,
    pub organisation_kind: OrganisationKind,
    pub region: Region,
    pub sic_code: SicCode,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    pub title: String,
    #[validate(length(min = 20, max = 5000, message = "must be 20 to 5000 characters"))]
    pub summary: String,
    /// For an entry as a startup or university spin-off: checked by an administrator.
    #[serde(default)]
    pub evidence: Option<EvidenceRequest>,
}

#[derive(Debug, Deserialize)]
pub struct EvidenceRequest {
    pub incorporated_on: Option<NaiveDate>,
    pub university: Option<String>,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct EntryUpdate {
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    pub title: String,
    #[validate(length(min = 20, max = 5000, message = "must be 20 to 5000 characters"))]
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
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<EntryRequest>,
) -> Result<HttpResponse, ApiError> {
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
        id: uuid::Uuid::now_v7().to_string(),
        challenge_id: path.into_inner(),
        entrant_id: user.id,
        company_number: body.company_number.as_str().to_string(),
        organisation_name: body.organisation_name.trim().to_string(),
        organisation_kind: body.organisation_kind.as_str().to_string(),
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
    Ok(HttpResponse::Created().json(entry_json(&row, false)))
}

pub async fn update_entry(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<EntryUpdate>,
) -> Result<HttpResponse, ApiError> {
    not_blank(&[("title", &body.title), ("summary", &body.summary)])?;
    let (challenge_id, entry_id) = path.into_inner();
    let row = state
        .store
        .update_entry(
            entry_id,
            user.id,
            body.title.trim().to_string(),
            body.summary.trim().to_string(),
            state.clock.now(),
        )
        .await?;
    if row.challenge_id != challenge_id {
        return Err(ApiError::NotFound("entry"));
    }
    Ok(HttpResponse::Ok().json(entry_json(&row, false)))
}

/// An administrator sees every entry; an entrant their own.
pub async fn list_entries(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ch = state.store.challenge(path.into_inner()).await?;
    let decided = ch.milestones()?.status(state.clock.now()) == challenge::Status::Decided;
    let only = (!user.is_admin()).then_some(user.id);
    let rows = state.store.entries(ch.id.clone(), only).await?;
    let data: Vec<_> = rows
        .iter()
        .map(|e| entry_json(e, decided && e.decided_at.is_some()))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct ConflictRequest {
    pub company_number: CompanyNumber,
    #[validate(length(min = 1, max = 500, message = "must be 1 to 500 characters"))]
    pub reason: String,
}

fn conflict_json(c: &ConflictRow, now: NaiveDateTime) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "company_number": c.company_number,
        "reason": c.reason,
        "declared_at": views::time(c.declared_at),
        "expires_at": views::time(c.expires_at),
        "current": c.expires_at > now,
    })
}

/// Declares a conflict of interest. Entries of that company already allocated to the caller
/// are taken off them and reallocated in the same transaction; the answer lists them.
pub async fn declare_conflict(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<ConflictRequest>,
) -> Result<HttpResponse, ApiError> {
    not_blank(&[("reason", &body.reason)])?;
    let at = state.clock.now();
    let (row, withdrawn) = state
        .store
        .declare_conflict(ConflictRow {
            id: uuid::Uuid::now_v7().to_string(),
            assessor_id: user.id,
            company_number: body.company_number.as_str().to_string(),
            reason: body.reason.trim().to_string(),
            declared_at: at,
            expires_at: at + chrono::Duration::days(CONFLICT_VALID_DAYS),
        })
        .await?;
    let mut out = conflict_json(&row, at);
    // Who took an entry over is not the declaring assessor's business: only whether someone did.
    out["entries_withdrawn"] = withdrawn
        .iter()
        .map(|w| {
            serde_json::json!({
                "entry_id": w.entry_id,
                "challenge_id": w.challenge_id,
                "score_dropped": w.score_dropped,
                "reallocated": w.reallocated_to.is_some(),
            })
        })
        .collect();
    Ok(HttpResponse::Created().json(out))
}

pub async fn list_conflicts(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rows = state.store.conflicts(user.id).await?;
    let data: Vec<_> = rows.iter().map(|c| conflict_json(c, now)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

/// An allocated entry with the assessor's own score, if given.
fn assessment_json(e: &EntryRow, s: Option<&ScoreRow>) -> serde_json::Value {
    let mut j = entry_json(e, false);
    j["my_score"] = match s {
        Some(s) => serde_json::json!({
            "scores": serde_json::from_str::<serde_json::Value>(&s.scores).unwrap_or_default(),
            "percent": challenge::format_percent_bp(s.percent_bp),
            "comment": s.comment,
            "submitted_at": views::time(s.submitted_at),
        }),
        None => serde_json::Value::Null,
    };
    j
}

/// The entries allocated to the calling assessor, with their own scores; none from a company
/// they have a current conflict of interest with.
pub async fn assessments(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    debug_assert_eq!(user.role, Role::Assessor);
    let rows = state
        .store
        .allocated_entries(user.id, state.clock.now())
        .await?;
    let data: Vec<_> = rows
        .iter()
        .map(|(e, s)| assessment_json(e, s.as_ref()))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

/// One entry allocated to the calling assessor: 403 `conflict_of_interest` when they have a
/// current conflict with its company, 403 `forbidden` when it is not theirs to assess.
pub async fn assessment(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (e, s) = state
        .store
        .assessment(path.into_inner(), user.id, state.clock.now())
        .await?;
    Ok(HttpResponse::Ok().json(assessment_json(&e, s.as_ref())))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    pub scores: BTreeMap<String, u32>,
    #[validate(length(max = 5000, message = "must be at most 5000 characters"))]
    #[serde(default)]
    pub comment: String,
}

pub async fn score(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    ApiJson(body): ApiJson<ScoreRequest>,
) -> Result<HttpResponse, ApiError> {
    let entry_id = path.into_inner();
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
                assessor_id: user.id,
                scores: serde_json::to_string(&body.scores)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                percent_bp,
                comment: body.comment.trim().to_string(),
                submitted_at: state.clock.now(),
            },
            state.clock.now(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "entry_id": row.entry_id,
        "scores": body.scores,
        "percent": challenge::format_percent_bp(row.percent_bp),
        "comment": row.comment,
        "submitted_at": views::time(row.submitted_at),
    })))
}
