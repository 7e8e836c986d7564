//! Challenges: the rows, and the once-only side effects of each milestone. A milestone is
//! performed in one transaction that first records it in `challenge_milestones` (whose
//! primary key lets one worker win) and then does its work, so two workers never both lock,
//! allocate or award, and a crash mid-way leaves nothing half done.

use crate::audit::{self, AuditEntry};
use crate::db::{DbConn, Store};
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::ledger::{self, TransferRequest, PROGRAMME_FUND};
use crate::outbox::{self, Notification};
use crate::schema::{
    applications, assessor_conflicts, challenge_allocations, challenge_entries,
    challenge_milestones, challenge_scores, challenges, users, vouchers,
};
use crate::vouchers::VoucherRow;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use voucherd_domain::challenge::{self, Criteria, Criterion, Milestone, Milestones, Status};
use voucherd_domain::ledger::{AccountKind, TransferCode};
use voucherd_domain::money::format_micros;
use voucherd_domain::Money;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = challenges)]
pub struct ChallengeRow {
    pub id: String,
    pub title: String,
    pub theme: String,
    pub eligible_kinds: String,
    pub opens_at: NaiveDateTime,
    pub closes_at: NaiveDateTime,
    pub assessors_assigned_at: NaiveDateTime,
    pub assessment_deadline: NaiveDateTime,
    pub decisions_released_at: NaiveDateTime,
    pub criteria: String,
    pub assessors_per_entry: i32,
    pub award_pool: i64,
    pub award_amounts: String,
    pub pilot_places: i32,
    pub recurrence: Option<String>,
    pub previous_id: Option<String>,
    pub fund_account_id: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
}

impl ChallengeRow {
    pub fn milestones(&self) -> StoreResult<Milestones> {
        Milestones::parse(
            self.opens_at,
            self.closes_at,
            self.assessors_assigned_at,
            self.assessment_deadline,
            self.decisions_released_at,
        )
        .map_err(|(f, m)| StoreError::Invariant(format!("challenge {}: {f} {m}", self.id)))
    }

    pub fn criteria(&self) -> StoreResult<Criteria> {
        let list: Vec<Criterion> = serde_json::from_str(&self.criteria)
            .map_err(|e| StoreError::Invariant(format!("challenge {} criteria: {e}", self.id)))?;
        Criteria::parse(list).map_err(StoreError::Invariant)
    }

    pub fn awards(&self) -> StoreResult<Vec<i64>> {
        serde_json::from_str(&self.award_amounts)
            .map_err(|e| StoreError::Invariant(format!("challenge {} awards: {e}", self.id)))
    }

    pub fn eligible(&self) -> Vec<String> {
        serde_json::from_str(&self.eligible_kinds).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = challenge_entries)]
pub struct EntryRow {
    pub id: String,
    pub challenge_id: String,
    pub entrant_id: String,
    pub company_number: String,
    pub organisation_name: String,
    pub organisation_kind: String,
    pub region: String,
    pub sic_code: String,
    pub title: String,
    pub summary: String,
    pub submitted_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub locked_at: Option<NaiveDateTime>,
    pub score_bp: Option<i64>,
    pub entry_rank: Option<i32>,
    pub award: i64,
    pub pilot_invited: bool,
    pub decided_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = assessor_conflicts)]
pub struct ConflictRow {
    pub id: String,
    pub assessor_id: String,
    pub company_number: String,
    pub reason: String,
    pub declared_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = challenge_scores)]
pub struct ScoreRow {
    pub entry_id: String,
    pub assessor_id: String,
    pub scores: String,
    pub percent_bp: i64,
    pub comment: String,
    pub submitted_at: NaiveDateTime,
}

/// How far assessment has got.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Progress {
    pub entries: i64,
    pub entries_allocated: i64,
    pub allocations: i64,
    pub scores: i64,
    pub milestones_performed: Vec<String>,
}

/// A milestone performed by a worker run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Performed {
    pub challenge_id: String,
    pub milestone: &'static str,
    pub summary: serde_json::Value,
}

fn challenge(c: &mut DbConn, id: &str) -> StoreResult<ChallengeRow> {
    challenges::table
        .find(id)
        .select(ChallengeRow::as_select())
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("challenge"))
}

fn money(micros: i64) -> StoreResult<Money> {
    Money::from_micros(micros).map_err(|e| StoreError::Invariant(e.to_string()))
}

/// Creates a challenge and sets its award pool aside from the programme fund, in one
/// transaction (refused whole when the fund is short).
fn insert_challenge(c: &mut DbConn, row: &ChallengeRow) -> StoreResult<()> {
    ledger::create_account(c, &row.fund_account_id, AccountKind::ChallengeFund)?;
    ledger::transfer(
        c,
        &TransferRequest {
            id: format!("challenge-pool-{}", row.id),
            debit_account_id: PROGRAMME_FUND.into(),
            credit_account_id: row.fund_account_id.clone(),
            amount: money(row.award_pool)?,
            code: TransferCode::ChallengePool,
            memo: format!("award pool of challenge {}", row.title),
        },
    )?;
    diesel::insert_into(challenges::table)
        .values(row)
        .execute(c)?;
    audit::record(
        c,
        AuditEntry {
            actor_id: Some(&row.created_by),
            action: "challenge.create",
            subject_type: "challenge",
            subject_id: &row.id,
            reason: None,
            details: serde_json::json!({
                "title": row.title,
                "award_pool_micros": row.award_pool,
                "previous_id": row.previous_id,
            }),
        },
    )
}

impl Store {
    pub async fn create_challenge(&self, row: ChallengeRow) -> StoreResult<ChallengeRow> {
        self.write(move |c| {
            insert_challenge(c, &row)?;
            Ok(row)
        })
        .await
    }

    /// Challenges, the latest opening first.
    pub async fn challenges(&self, limit: i64) -> StoreResult<Vec<ChallengeRow>> {
        self.read(move |c| {
            Ok(challenges::table
                .order((challenges::opens_at.desc(), challenges::id.desc()))
                .limit(limit)
                .select(ChallengeRow::as_select())
                .load(c)?)
        })
        .await
    }

    pub async fn challenge(&self, id: String) -> StoreResult<ChallengeRow> {
        self.read(move |c| challenge(c, &id)).await
    }

    pub async fn challenge_progress(&self, id: String) -> StoreResult<Progress> {
        self.read(move |c| {
            let entry_ids = challenge_entries::table
                .filter(challenge_entries::challenge_id.eq(&id))
                .select(challenge_entries::id);
            Ok(Progress {
                entries: challenge_entries::table
                    .filter(challenge_entries::challenge_id.eq(&id))
                    .count()
                    .get_result(c)?,
                entries_allocated: challenge_allocations::table
                    .filter(challenge_allocations::entry_id.eq_any(entry_ids))
                    .select(challenge_allocations::entry_id)
                    .distinct()
                    .load::<String>(c)?
                    .len() as i64,
                allocations: challenge_allocations::table
                    .filter(challenge_allocations::entry_id.eq_any(entry_ids))
                    .count()
                    .get_result(c)?,
                scores: challenge_scores::table
                    .filter(challenge_scores::entry_id.eq_any(entry_ids))
                    .count()
                    .get_result(c)?,
                milestones_performed: challenge_milestones::table
                    .filter(challenge_milestones::challenge_id.eq(&id))
                    .order(challenge_milestones::performed_at.asc())
                    .select(challenge_milestones::milestone)
                    .load(c)?,
            })
        })
        .await
    }

    /// Submits an entry while the challenge is open (by `now`), from an eligible kind of
    /// organisation; one per organisation.
    pub async fn submit_entry(&self, row: EntryRow, now: NaiveDateTime) -> StoreResult<EntryRow> {
        self.write(move |c| {
            let ch = challenge(c, &row.challenge_id)?;
            accepting_entries(&ch, now)?;
            if !ch.eligible().contains(&row.organisation_kind) {
                return Err(StoreError::ChallengeClosed(format!(
                    "this challenge is open to {} only",
                    ch.eligible().join(", ")
                )));
            }
            let exists: i64 = challenge_entries::table
                .filter(challenge_entries::challenge_id.eq(&row.challenge_id))
                .filter(challenge_entries::company_number.eq(&row.company_number))
                .count()
                .get_result(c)?;
            if exists > 0 {
                return Err(StoreError::EntryExists);
            }
            match diesel::insert_into(challenge_entries::table)
                .values(&row)
                .execute(c)
            {
                Ok(_) => Ok(row),
                Err(e) if is_unique_violation(&e) => Err(StoreError::EntryExists),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Changes an entry's title and summary while the challenge is open and the entry not
    /// locked; only its entrant may.
    pub async fn update_entry(
        &self,
        entry_id: String,
        entrant_id: String,
        title: String,
        summary: String,
        now: NaiveDateTime,
    ) -> StoreResult<EntryRow> {
        self.write(move |c| {
            let entry = entry(c, &entry_id)?;
            if entry.entrant_id != entrant_id {
                return Err(StoreError::NotFound("entry"));
            }
            let ch = challenge(c, &entry.challenge_id)?;
            accepting_entries(&ch, now)?;
            let n = diesel::update(
                challenge_entries::table
                    .filter(challenge_entries::id.eq(&entry_id))
                    .filter(challenge_entries::locked_at.is_null()),
            )
            .set((
                challenge_entries::title.eq(&title),
                challenge_entries::summary.eq(&summary),
                challenge_entries::updated_at.eq(now),
            ))
            .execute(c)?;
            if n == 0 {
                return Err(StoreError::ChallengeClosed(
                    "entries to this challenge are locked".into(),
                ));
            }
            crate::challenges::entry(c, &entry_id)
        })
        .await
    }

    /// A challenge's entries: all of them, or one entrant's.
    pub async fn entries(
        &self,
        challenge_id: String,
        entrant_id: Option<String>,
    ) -> StoreResult<Vec<EntryRow>> {
        self.read(move |c| {
            let mut q = challenge_entries::table
                .filter(challenge_entries::challenge_id.eq(&challenge_id))
                .into_boxed();
            if let Some(e) = entrant_id {
                q = q.filter(challenge_entries::entrant_id.eq(e));
            }
            Ok(q.order((
                challenge_entries::entry_rank.asc(),
                challenge_entries::submitted_at.asc(),
            ))
            .select(EntryRow::as_select())
            .load(c)?)
        })
        .await
    }

    /// The entries allocated to an assessor, with the assessor's own score if given.
    pub async fn allocated_entries(
        &self,
        assessor_id: String,
    ) -> StoreResult<Vec<(EntryRow, Option<ScoreRow>)>> {
        self.read(move |c| {
            let entries: Vec<EntryRow> = challenge_entries::table
                .inner_join(challenge_allocations::table)
                .filter(challenge_allocations::assessor_id.eq(&assessor_id))
                .order(challenge_entries::submitted_at.asc())
                .select(EntryRow::as_select())
                .load(c)?;
            let scores: Vec<ScoreRow> = challenge_scores::table
                .filter(challenge_scores::assessor_id.eq(&assessor_id))
                .select(ScoreRow::as_select())
                .load(c)?;
            let mut by_entry: BTreeMap<String, ScoreRow> = scores
                .into_iter()
                .map(|s| (s.entry_id.clone(), s))
                .collect();
            Ok(entries
                .into_iter()
                .map(|e| {
                    let s = by_entry.remove(&e.id);
                    (e, s)
                })
                .collect())
        })
        .await
    }

    /// Declares a conflict of interest with an organisation, for a year from `now`.
    pub async fn declare_conflict(&self, row: ConflictRow) -> StoreResult<ConflictRow> {
        self.write(move |c| {
            diesel::insert_into(assessor_conflicts::table)
                .values(&row)
                .execute(c)?;
            Ok(row)
        })
        .await
    }

    pub async fn conflicts(&self, assessor_id: String) -> StoreResult<Vec<ConflictRow>> {
        self.read(move |c| {
            Ok(assessor_conflicts::table
                .filter(assessor_conflicts::assessor_id.eq(&assessor_id))
                .order(assessor_conflicts::declared_at.desc())
                .select(ConflictRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// Records (or replaces) an assessor's score for an entry allocated to them, while the
    /// challenge is in assessment. `percent_bp` is computed by the caller from the criteria.
    pub async fn submit_score(&self, row: ScoreRow, now: NaiveDateTime) -> StoreResult<ScoreRow> {
        self.write(move |c| {
            let allocated: i64 = challenge_allocations::table
                .filter(challenge_allocations::entry_id.eq(&row.entry_id))
                .filter(challenge_allocations::assessor_id.eq(&row.assessor_id))
                .count()
                .get_result(c)?;
            if allocated == 0 {
                return Err(StoreError::NotAllocated);
            }
            let e = entry(c, &row.entry_id)?;
            let ch = challenge(c, &e.challenge_id)?;
            let m = ch.milestones()?;
            if m.status(now) != Status::InAssessment {
                return Err(StoreError::ChallengeClosed(format!(
                    "scores are accepted from {} until {} (UTC)",
                    m.at(Milestone::AssessorsAssigned),
                    m.at(Milestone::AssessmentDeadline)
                )));
            }
            diesel::delete(
                challenge_scores::table
                    .filter(challenge_scores::entry_id.eq(&row.entry_id))
                    .filter(challenge_scores::assessor_id.eq(&row.assessor_id)),
            )
            .execute(c)?;
            match diesel::insert_into(challenge_scores::table)
                .values(&row)
                .execute(c)
            {
                Ok(_) => Ok(row),
                // The same assessor's two submissions at once: the second is told to retry.
                Err(e) if is_unique_violation(&e) => Err(StoreError::Contended),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Performs every milestone due at `at` that no worker performed yet, each in its own
    /// transaction. Returns what was performed here.
    pub async fn run_challenge_milestones(&self, at: NaiveDateTime) -> StoreResult<Vec<Performed>> {
        let due: Vec<ChallengeRow> = self
            .read(move |c| {
                Ok(challenges::table
                    .filter(challenges::opens_at.le(at))
                    // Decided cycles stay due only until their last milestone is recorded.
                    .filter(diesel::dsl::not(diesel::dsl::exists(
                        challenge_milestones::table
                            .filter(challenge_milestones::challenge_id.eq(challenges::id))
                            .filter(
                                challenge_milestones::milestone
                                    .eq(Milestone::DecisionsReleased.as_str()),
                            ),
                    )))
                    .order(challenges::opens_at.asc())
                    .select(ChallengeRow::as_select())
                    .load(c)?)
            })
            .await?;
        let mut performed = Vec::new();
        for ch in due {
            let m = ch.milestones()?;
            for milestone in Milestone::ALL {
                if m.at(milestone) > at {
                    break;
                }
                let row = ch.clone();
                let outcome = self.write(move |c| perform(c, &row, milestone, at)).await;
                match outcome {
                    Ok(Some(summary)) => performed.push(Performed {
                        challenge_id: ch.id.clone(),
                        milestone: milestone.as_str(),
                        summary,
                    }),
                    Ok(None) => {}
                    Err(StoreError::Database(e)) if is_unique_violation(&e) => {}
                    // One challenge's failure does not hold up the others; its milestone
                    // (recorded only on success) is tried again next run. A later milestone
                    // must not run before it.
                    Err(e) => {
                        tracing::error!(challenge = %ch.id, milestone = milestone.as_str(),
                            error = %e, "challenge milestone failed; retried next run");
                        break;
                    }
                }
            }
        }
        Ok(performed)
    }

    /// Recurring challenges whose cycle is decided and whose next cycle does not exist yet.
    pub async fn recurring_without_next(&self) -> StoreResult<Vec<ChallengeRow>> {
        self.read(|c| {
            let next = diesel::alias!(challenges as next);
            Ok(challenges::table
                .filter(challenges::recurrence.is_not_null())
                .filter(diesel::dsl::exists(
                    challenge_milestones::table
                        .filter(challenge_milestones::challenge_id.eq(challenges::id))
                        .filter(
                            challenge_milestones::milestone
                                .eq(Milestone::DecisionsReleased.as_str()),
                        ),
                ))
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    next.filter(
                        next.field(challenges::previous_id)
                            .eq(challenges::id.nullable()),
                    ),
                )))
                .select(ChallengeRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// Creates the next cycle of a recurring challenge, opening at `opens_at` with the same
    /// milestone spacing, criteria and awards; once (UNIQUE `previous_id`). `None` if another
    /// worker created it first.
    pub async fn create_next_cycle(
        &self,
        previous: ChallengeRow,
        opens_at: NaiveDateTime,
        at: NaiveDateTime,
    ) -> StoreResult<Option<ChallengeRow>> {
        let m = previous.milestones()?.shifted_to(opens_at);
        let id = uuid::Uuid::now_v7().to_string();
        let row = ChallengeRow {
            fund_account_id: format!("challenge-{id}"),
            id,
            opens_at: m.at(Milestone::Opens),
            closes_at: m.at(Milestone::Closes),
            assessors_assigned_at: m.at(Milestone::AssessorsAssigned),
            assessment_deadline: m.at(Milestone::AssessmentDeadline),
            decisions_released_at: m.at(Milestone::DecisionsReleased),
            previous_id: Some(previous.id.clone()),
            created_at: at,
            ..previous
        };
        match self
            .write(move |c| {
                insert_challenge(c, &row)?;
                Ok(row)
            })
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(StoreError::Database(e)) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn entry(c: &mut DbConn, id: &str) -> StoreResult<EntryRow> {
    challenge_entries::table
        .find(id)
        .select(EntryRow::as_select())
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("entry"))
}

fn accepting_entries(ch: &ChallengeRow, now: NaiveDateTime) -> StoreResult<()> {
    let m = ch.milestones()?;
    match m.status(now) {
        Status::Open => Ok(()),
        Status::Upcoming => Err(StoreError::ChallengeClosed(format!(
            "this challenge opens for entries at {} (UTC)",
            m.at(Milestone::Opens)
        ))),
        _ => Err(StoreError::ChallengeClosed(format!(
            "this challenge closed for entries at {} (UTC)",
            m.at(Milestone::Closes)
        ))),
    }
}

/// Records the milestone, then performs its side effects, in the caller's transaction.
/// `None` when it was performed before.
fn perform(
    c: &mut DbConn,
    ch: &ChallengeRow,
    milestone: Milestone,
    at: NaiveDateTime,
) -> StoreResult<Option<serde_json::Value>> {
    let done: i64 = challenge_milestones::table
        .filter(challenge_milestones::challenge_id.eq(&ch.id))
        .filter(challenge_milestones::milestone.eq(milestone.as_str()))
        .count()
        .get_result(c)?;
    if done > 0 {
        return Ok(None);
    }
    // Inserted first: a second worker's insert waits on, then fails against, this one, and
    // its transaction rolls back before doing anything.
    diesel::insert_into(challenge_milestones::table)
        .values((
            challenge_milestones::challenge_id.eq(&ch.id),
            challenge_milestones::milestone.eq(milestone.as_str()),
            challenge_milestones::performed_at.eq(at),
            challenge_milestones::summary.eq("{}"),
        ))
        .execute(c)?;
    let summary = match milestone {
        Milestone::Opens | Milestone::AssessmentDeadline => serde_json::json!({}),
        Milestone::Closes => close(c, ch, at)?,
        Milestone::AssessorsAssigned => assign(c, ch, at)?,
        Milestone::DecisionsReleased => decide(c, ch, at)?,
    };
    diesel::update(
        challenge_milestones::table
            .filter(challenge_milestones::challenge_id.eq(&ch.id))
            .filter(challenge_milestones::milestone.eq(milestone.as_str())),
    )
    .set(challenge_milestones::summary.eq(summary.to_string()))
    .execute(c)?;
    Ok(Some(summary))
}

fn notify_entrant(
    c: &mut DbConn,
    e: &EntryRow,
    ch: &ChallengeRow,
    what: &str,
    template: &'static str,
    extra: serde_json::Value,
) -> StoreResult<()> {
    let email = outbox::user_email(c, &e.entrant_id)?;
    let mut data = serde_json::json!({
        "challenge_title": ch.title,
        "organisation_name": e.organisation_name,
        "entry_title": e.title,
    });
    if let (Some(d), Some(x)) = (data.as_object_mut(), extra.as_object()) {
        d.extend(x.clone());
    }
    outbox::enqueue(
        c,
        Notification {
            dedupe_key: format!("challenge-{what}:{}", e.id),
            recipient: &email,
            template,
            data,
        },
    )?;
    Ok(())
}

/// Close: entries are locked; entrants are told.
fn close(c: &mut DbConn, ch: &ChallengeRow, at: NaiveDateTime) -> StoreResult<serde_json::Value> {
    let locked = diesel::update(
        challenge_entries::table
            .filter(challenge_entries::challenge_id.eq(&ch.id))
            .filter(challenge_entries::locked_at.is_null()),
    )
    .set(challenge_entries::locked_at.eq(Some(at)))
    .execute(c)?;
    let entries: Vec<EntryRow> = challenge_entries::table
        .filter(challenge_entries::challenge_id.eq(&ch.id))
        .select(EntryRow::as_select())
        .load(c)?;
    for e in &entries {
        notify_entrant(
            c,
            e,
            ch,
            "closed",
            "challenge_closed",
            serde_json::json!({
                "decisions_released_at": ch.decisions_released_at.format("%-d %B %Y").to_string(),
            }),
        )?;
    }
    Ok(serde_json::json!({ "entries_locked": locked }))
}

/// Assessors assigned: each entry to N assessors, least loaded first, never one with a
/// current conflict of interest with the entrant's organisation.
fn assign(c: &mut DbConn, ch: &ChallengeRow, at: NaiveDateTime) -> StoreResult<serde_json::Value> {
    let entries: Vec<(String, String)> = challenge_entries::table
        .filter(challenge_entries::challenge_id.eq(&ch.id))
        .order((
            challenge_entries::submitted_at.asc(),
            challenge_entries::id.asc(),
        ))
        .select((challenge_entries::id, challenge_entries::company_number))
        .load(c)?;
    let assessors: Vec<String> = users::table
        .filter(users::role.eq("assessor"))
        .order((users::created_at.asc(), users::id.asc()))
        .select(users::id)
        .load(c)?;
    let conflicts: BTreeSet<(String, String)> = assessor_conflicts::table
        .filter(assessor_conflicts::expires_at.gt(at))
        .select((
            assessor_conflicts::assessor_id,
            assessor_conflicts::company_number,
        ))
        .load::<(String, String)>(c)?
        .into_iter()
        .collect();
    let per_entry = usize::try_from(ch.assessors_per_entry).unwrap_or(1);
    let (allocation, short) = challenge::allocate(&entries, &assessors, per_entry, &conflicts);
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    let mut allocations = 0;
    for (entry_id, chosen) in &allocation {
        for assessor in chosen {
            diesel::insert_into(challenge_allocations::table)
                .values((
                    challenge_allocations::entry_id.eq(entry_id),
                    challenge_allocations::assessor_id.eq(assessor),
                    challenge_allocations::allocated_at.eq(at),
                ))
                .execute(c)?;
            *load.entry(assessor.as_str()).or_default() += 1;
            allocations += 1;
        }
    }
    for (assessor, count) in &load {
        let email = outbox::user_email(c, assessor)?;
        outbox::enqueue(
            c,
            Notification {
                dedupe_key: format!("challenge-allocated:{}:{assessor}", ch.id),
                recipient: &email,
                template: "assessments_allocated",
                data: serde_json::json!({
                    "challenge_title": ch.title,
                    "entries": count,
                    "assessment_deadline": ch.assessment_deadline.format("%-d %B %Y %H:%M UTC").to_string(),
                }),
            },
        )?;
    }
    if !short.is_empty() {
        tracing::warn!(challenge = %ch.id, entries = ?short,
            "entries allocated to fewer assessors than asked: too few free of conflicts");
    }
    Ok(serde_json::json!({
        "entries": entries.len(),
        "assessors": assessors.len(),
        "allocations": allocations,
        "short_of_assessors": short,
    }))
}

/// The voucher an award credits: the organisation's live voucher, or a new award voucher.
fn award_voucher(
    c: &mut DbConn,
    e: &EntryRow,
    ch: &ChallengeRow,
    at: NaiveDateTime,
) -> StoreResult<VoucherRow> {
    // The entrant's own live voucher for the company: an entry names a company, but only the
    // entrant's voucher may receive its award.
    let live: Option<VoucherRow> = vouchers::table
        .filter(vouchers::company_number.eq(&e.company_number))
        .filter(vouchers::owner_id.eq(&e.entrant_id))
        .filter(vouchers::status.eq("active"))
        .filter(vouchers::expires_at.gt(at))
        .order(vouchers::expires_at.desc())
        .select(VoucherRow::as_select())
        .first(c)
        .optional()?;
    if let Some(v) = live {
        return Ok(v);
    }
    // No voucher: one is made for the award, on an application record that says so (it does
    // not make the company "live": it may still apply for a standard voucher).
    let application_id = format!("award-{}", e.id);
    diesel::insert_into(applications::table)
        .values((
            applications::id.eq(&application_id),
            applications::applicant_id.eq(&e.entrant_id),
            applications::company_number.eq(&e.company_number),
            applications::company_name.eq(&e.organisation_name),
            applications::employees.eq(0),
            applications::annual_turnover.eq(0_i64),
            applications::balance_sheet_total.eq(0_i64),
            applications::region.eq(&e.region),
            applications::sic_code.eq(&e.sic_code),
            applications::trading_since.eq(at.date()),
            applications::use_case.eq(format!("Award in the challenge {}", ch.title)),
            applications::subsidy_declarations.eq("[]"),
            applications::eligible.eq(true),
            applications::checks.eq("[]"),
            applications::status.eq("approved"),
            applications::live_company_number.eq(None::<String>),
            applications::decided_at.eq(Some(at)),
            applications::decision_reason.eq(Some(format!("challenge award: {}", ch.title))),
            applications::created_at.eq(at),
            applications::updated_at.eq(at),
        ))
        .execute(c)?;
    let id = uuid::Uuid::now_v7().to_string();
    let account_id = format!("voucher-{id}");
    ledger::create_account(c, &account_id, AccountKind::Voucher)?;
    let v = VoucherRow {
        id,
        application_id,
        owner_id: e.entrant_id.clone(),
        account_id,
        company_number: e.company_number.clone(),
        currency: "GBP".into(),
        // What it was created to hold; the award transfer below credits it.
        granted: e.award,
        status: "active".into(),
        expires_at: at + chrono::Duration::days(365),
        created_at: at,
        budget_line_id: None,
        contribution_micros: 0,
        contribution_paid_at: None,
        suspended_at: None,
        suspension_reason: None,
    };
    diesel::insert_into(vouchers::table).values(&v).execute(c)?;
    Ok(v)
}

/// Decisions released: entries ranked by the mean of their assessors' percentages, the line
/// drawn by places, award credit moved from the challenge's pool to each winner's voucher,
/// what was not awarded returned to the programme fund, pilots marked, everyone told.
fn decide(c: &mut DbConn, ch: &ChallengeRow, at: NaiveDateTime) -> StoreResult<serde_json::Value> {
    let entries: Vec<EntryRow> = challenge_entries::table
        .filter(challenge_entries::challenge_id.eq(&ch.id))
        .select(EntryRow::as_select())
        .load(c)?;
    let mut scored = Vec::with_capacity(entries.len());
    for e in &entries {
        let pcts: Vec<i64> = challenge_scores::table
            .filter(challenge_scores::entry_id.eq(&e.id))
            .select(challenge_scores::percent_bp)
            .load(c)?;
        scored.push((e.id.clone(), challenge::mean_bp(&pcts), e.submitted_at));
    }
    let pilot_places = usize::try_from(ch.pilot_places).unwrap_or(0);
    let ranked = challenge::rank(&scored, &ch.awards()?, pilot_places);
    let mut awarded_micros = 0_i64;
    let mut winners = 0;
    for r in &ranked {
        let Some(mut e) = entries.iter().find(|e| e.id == r.entry_id).cloned() else {
            continue;
        };
        e.award = r.award_micros;
        diesel::update(challenge_entries::table.find(&e.id))
            .set((
                challenge_entries::score_bp.eq(r.score_bp),
                challenge_entries::entry_rank.eq(Some(i32::try_from(r.rank).unwrap_or(i32::MAX))),
                challenge_entries::award.eq(r.award_micros),
                challenge_entries::pilot_invited.eq(r.pilot),
                challenge_entries::decided_at.eq(Some(at)),
            ))
            .execute(c)?;
        let mut voucher_id = None;
        if r.award_micros > 0 {
            let v = award_voucher(c, &e, ch, at)?;
            ledger::transfer(
                c,
                &TransferRequest {
                    id: format!("award-{}", e.id),
                    debit_account_id: ch.fund_account_id.clone(),
                    credit_account_id: v.account_id.clone(),
                    amount: money(r.award_micros)?,
                    code: TransferCode::ChallengeAward,
                    memo: format!("award in the challenge {}", ch.title),
                },
            )?;
            awarded_micros += r.award_micros;
            winners += 1;
            voucher_id = Some(v.id);
        }
        notify_entrant(
            c,
            &e,
            ch,
            "result",
            "challenge_result",
            serde_json::json!({
                "rank": r.rank,
                "entries": ranked.len(),
                "score_percent": r.score_bp.map(|b| format!("{}.{:02}", b / 100, b % 100)),
                "awarded": r.award_micros > 0,
                "award": format_micros(r.award_micros),
                "voucher_id": voucher_id,
                "pilot_invited": r.pilot,
            }),
        )?;
    }
    let left = ch.award_pool - awarded_micros;
    if left > 0 {
        ledger::transfer(
            c,
            &TransferRequest {
                id: format!("challenge-return-{}", ch.id),
                debit_account_id: ch.fund_account_id.clone(),
                credit_account_id: PROGRAMME_FUND.into(),
                amount: money(left)?,
                code: TransferCode::ChallengeReturn,
                memo: format!("unawarded pool of the challenge {}", ch.title),
            },
        )?;
    }
    Ok(serde_json::json!({
        "entries": ranked.len(),
        "winners": winners,
        "awarded_micros": awarded_micros,
        "returned_micros": left.max(0),
        "pilot_invitations": ranked.iter().filter(|r| r.pilot).count(),
    }))
}
