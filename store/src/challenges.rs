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
use voucherd_domain::challenge::{
    self, Criteria, Criterion, KindCheck, Milestone, Milestones, OrganisationKind, Standing, Status,
};
use voucherd_domain::eligibility::EligibilityRules;
use voucherd_domain::ledger::{AccountKind, TransferCode};
use voucherd_domain::money::format_micros;
use voucherd_domain::reference::Reference;
use voucherd_domain::{
    ApplicationId, ApplicationStatus, ChallengeId, EntryId, Money, Region, UserId, VoucherId,
};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = challenges)]
pub struct ChallengeRow {
    pub id: ChallengeId,
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
    pub previous_id: Option<ChallengeId>,
    pub fund_account_id: String,
    pub created_by: UserId,
    pub created_at: NaiveDateTime,
    pub cancelled_at: Option<NaiveDateTime>,
    pub cancellation_reason: Option<String>,
}

impl ChallengeRow {
    /// Where it stands at `now`: cancelled, or what its dates give.
    pub fn standing_at(&self, now: NaiveDateTime) -> StoreResult<Standing> {
        if self.cancelled_at.is_some() {
            return Ok(Standing::Cancelled);
        }
        Ok(self.milestones()?.status(now).into())
    }

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

    /// Who may enter, as kinds: a stored spelling no kind has is a broken row, not "nobody".
    pub fn eligible_kinds(&self) -> StoreResult<Vec<OrganisationKind>> {
        serde_json::from_str(&self.eligible_kinds)
            .map_err(|e| StoreError::Invariant(format!("challenge {} eligible: {e}", self.id)))
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = challenge_entries)]
pub struct EntryRow {
    pub id: EntryId,
    pub challenge_id: ChallengeId,
    pub entrant_id: UserId,
    pub company_number: String,
    pub organisation_name: String,
    pub organisation_kind: OrganisationKind,
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
    /// An award it placed for but was not paid (Minimal Financial Assistance), and why.
    pub award_refused_reason: Option<String>,
    /// Its allocated assessors had not all scored it when decisions were released.
    pub assessments_incomplete: bool,
    /// JSON `KindEvidence`, for an entry as a startup or spin-off.
    pub kind_evidence: Option<String>,
    /// Accepted or rejected by an administrator; `None` until checked.
    pub kind_check: Option<KindCheck>,
    pub kind_check_reason: Option<String>,
    pub kind_checked_by: Option<UserId>,
    pub kind_checked_at: Option<NaiveDateTime>,
}

impl EntryRow {
    /// Its region, likewise.
    pub fn region_of(&self) -> StoreResult<Region> {
        self.region
            .parse()
            .map_err(|e| StoreError::Invariant(format!("entry {}: {e}", self.id)))
    }

    /// Why the entry cannot be ranked yet (or was not), if it cannot: its kind's evidence
    /// unchecked or rejected, or its assessments incomplete at the panel.
    pub fn not_ranked_because(&self) -> Option<String> {
        if self.kind_evidence.is_some() {
            match self.kind_check {
                Some(KindCheck::Accepted) => {}
                Some(KindCheck::Rejected | KindCheck::Unchecked) => {
                    return Some(format!(
                        "the evidence that it is a {} was rejected: {}",
                        self.organisation_kind,
                        self.kind_check_reason.as_deref().unwrap_or("")
                    ))
                }
                None => {
                    return Some(format!(
                        "the evidence that it is a {} has not been checked",
                        self.organisation_kind
                    ))
                }
            }
        }
        self.assessments_incomplete
            .then(|| "its assessments were incomplete when decisions were released".to_string())
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = assessor_conflicts)]
pub struct ConflictRow {
    pub id: String,
    pub assessor_id: UserId,
    pub company_number: String,
    pub reason: String,
    pub declared_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = challenge_scores)]
pub struct ScoreRow {
    pub entry_id: EntryId,
    pub assessor_id: UserId,
    pub scores: String,
    pub percent_bp: i64,
    pub comment: String,
    pub submitted_at: NaiveDateTime,
}

impl ScoreRow {
    /// The scores by criterion name.
    pub fn by_criterion(&self) -> StoreResult<BTreeMap<String, u32>> {
        serde_json::from_str(&self.scores)
            .map_err(|e| StoreError::Invariant(format!("scores of entry {}: {e}", self.entry_id)))
    }
}

/// How far assessment has got (administrators only).
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
#[schema(as = ChallengeProgress)]
pub struct Progress {
    pub entries: i64,
    /// Entries allocated to at least one assessor.
    pub entries_allocated: i64,
    /// Entry–assessor allocations.
    pub allocations: i64,
    /// Scores submitted.
    pub scores: i64,
    /// The milestones whose side effects the worker has performed.
    pub milestones_performed: Vec<Milestone>,
    /// Entries not every allocated assessor has scored: not ranked if still so at the panel.
    pub entries_incomplete: Vec<EntryId>,
    /// Entries as startups or spin-offs whose evidence no administrator has checked yet.
    pub entries_awaiting_kind_check: Vec<EntryId>,
    /// Once assessors are assigned, entries with fewer than `assessors_per_entry` of them:
    /// too few were free of conflicts of interest, at allocation or when one was declared.
    pub entries_short_of_assessors: Vec<EntryId>,
    /// What the challenge's own account holds (its pool, less what was paid or returned).
    pub pool_balance_micros: i64,
}

/// A milestone performed by a worker run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Performed {
    pub challenge_id: ChallengeId,
    pub milestone: Milestone,
    pub summary: serde_json::Value,
}

fn challenge(c: &mut DbConn, id: &ChallengeId) -> StoreResult<ChallengeRow> {
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
            subject_id: row.id.as_str(),
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

    pub async fn challenge(&self, id: ChallengeId) -> StoreResult<ChallengeRow> {
        self.read(move |c| challenge(c, &id)).await
    }

    pub async fn challenge_progress(&self, id: ChallengeId) -> StoreResult<Progress> {
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
                entries_incomplete: incomplete_entries(c, &id)?,
                entries_awaiting_kind_check: challenge_entries::table
                    .filter(challenge_entries::challenge_id.eq(&id))
                    .filter(challenge_entries::kind_evidence.is_not_null())
                    .filter(challenge_entries::kind_check.is_null())
                    .order(challenge_entries::submitted_at.asc())
                    .select(challenge_entries::id)
                    .load(c)?,
                entries_short_of_assessors: short_of_assessors(c, &id)?,
                pool_balance_micros: {
                    let ch = challenge(c, &id)?;
                    ledger::account(c, &ch.fund_account_id)?
                        .totals()
                        .available()
                },
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
            let eligible = ch.eligible_kinds()?;
            let kind = row.organisation_kind;
            if !eligible.contains(&kind) {
                let names: Vec<&str> = eligible.iter().map(|k| k.as_str()).collect();
                return Err(StoreError::ChallengeClosed(format!(
                    "this challenge is open to {} only",
                    names.join(", ")
                )));
            }
            if kind == OrganisationKind::Sme {
                refused_as_sme(c, &row.company_number)?;
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
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(StoreError::EntryExists),
                Err(e) => return Err(e.into()),
            }
            notify_entrant(
                c,
                &row,
                &ch,
                "received",
                "challenge_entry_received",
                serde_json::json!({
                    "entry_id": row.id,
                    "organisation_kind": row.organisation_kind.as_str().replace('_', " "),
                    "evidence_to_check": row.kind_evidence.is_some(),
                    "submitted_at": voucherd_domain::uk_time::date_time(row.submitted_at),
                    "closes_at": voucherd_domain::uk_time::date_time(ch.closes_at),
                }),
            )?;
            Ok(row)
        })
        .await
    }

    /// Replaces an upcoming challenge's fields (as at creation, already validated) before it
    /// opens; a changed pool moves the difference between the fund and its account. Refused
    /// once it has opened or when cancelled.
    pub async fn update_challenge(
        &self,
        row: ChallengeRow,
        actor_id: UserId,
        now: NaiveDateTime,
    ) -> StoreResult<ChallengeRow> {
        self.write(move |c| {
            let old = challenge(c, &row.id)?;
            not_yet_open(&old, now, "edited")?;
            move_pool_difference(c, &old, &row)?;
            if write_upcoming_challenge(c, &row, now)? != 1 {
                return Err(StoreError::Refused(
                    voucherd_domain::ErrorCode::ChallengeOpen,
                    "the challenge has opened: it can no longer be edited".into(),
                ));
            }
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: "challenge.update",
                    subject_type: "challenge",
                    subject_id: row.id.as_str(),
                    reason: None,
                    details: serde_json::json!({
                        "title": row.title,
                        "award_pool_micros": row.award_pool,
                        "previous_award_pool_micros": old.award_pool,
                        "opens_at": row.opens_at.to_string(),
                    }),
                },
            )?;
            challenge(c, &row.id)
        })
        .await
    }

    /// Cancels a challenge before its decisions are released: what its account holds goes
    /// back to the programme fund it came from (one transfer), no milestone runs again, every
    /// entrant is told; audited.
    pub async fn cancel_challenge(
        &self,
        id: ChallengeId,
        actor_id: UserId,
        reason: String,
        now: NaiveDateTime,
    ) -> StoreResult<(ChallengeRow, i64)> {
        self.write(move |c| {
            let ch = challenge(c, &id)?;
            check_cancellable(c, &ch)?;
            let n = diesel::update(
                challenges::table
                    .filter(challenges::id.eq(&id))
                    .filter(challenges::cancelled_at.is_null()),
            )
            .set((
                challenges::cancelled_at.eq(Some(now)),
                challenges::cancellation_reason.eq(Some(&reason)),
            ))
            .execute(c)?;
            if n != 1 {
                return Err(StoreError::Contended);
            }
            let held = return_cancelled_pool(c, &ch)?;
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: "challenge.cancel",
                    subject_type: "challenge",
                    subject_id: id.as_str(),
                    reason: Some(&reason),
                    details: serde_json::json!({ "returned_micros": held }),
                },
            )?;
            let entries: Vec<EntryRow> = challenge_entries::table
                .filter(challenge_entries::challenge_id.eq(&id))
                .select(EntryRow::as_select())
                .load(c)?;
            for e in &entries {
                notify_entrant(
                    c,
                    e,
                    &ch,
                    "cancelled",
                    "challenge_cancelled",
                    serde_json::json!({ "reason": reason }),
                )?;
            }
            Ok((challenge(c, &id)?, held))
        })
        .await
    }

    /// An administrator accepts or rejects the evidence of an entry's kind (startup or
    /// spin-off), with a reason, until decisions are released; audited, the entrant told. Only
    /// an accepted entry is ranked.
    pub async fn check_entry_kind(
        &self,
        challenge_id: ChallengeId,
        entry_id: EntryId,
        actor_id: UserId,
        accepted: bool,
        reason: String,
        now: NaiveDateTime,
    ) -> StoreResult<EntryRow> {
        self.write(move |c| {
            let (e, ch) = checkable_entry(c, &challenge_id, &entry_id)?;
            let verdict = if accepted {
                KindCheck::Accepted
            } else {
                KindCheck::Rejected
            };
            diesel::update(challenge_entries::table.find(&entry_id))
                .set((
                    challenge_entries::kind_check.eq(Some(verdict)),
                    challenge_entries::kind_check_reason.eq(Some(&reason)),
                    challenge_entries::kind_checked_by.eq(Some(&actor_id)),
                    challenge_entries::kind_checked_at.eq(Some(now)),
                ))
                .execute(c)?;
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&actor_id),
                    action: if accepted {
                        "challenge.entry_kind_accept"
                    } else {
                        "challenge.entry_kind_reject"
                    },
                    subject_type: "challenge_entry",
                    subject_id: entry_id.as_str(),
                    reason: Some(&reason),
                    details: serde_json::json!({
                        "challenge_id": challenge_id,
                        "organisation_kind": e.organisation_kind,
                        "evidence": serde_json::from_str::<serde_json::Value>(
                            e.kind_evidence.as_deref().unwrap_or("null")
                        ).unwrap_or_default(),
                    }),
                },
            )?;
            notify_kind_check(c, &e, &ch, accepted, &reason)?;
            entry(c, &entry_id)
        })
        .await
    }

    /// Changes an entry's title and summary while the challenge is open and the entry not
    /// locked; only its entrant may.
    pub async fn update_entry(
        &self,
        entry_id: EntryId,
        entrant_id: UserId,
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
        challenge_id: ChallengeId,
        entrant_id: Option<UserId>,
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

    /// The entries allocated to an assessor, with the assessor's own score if given. An entry
    /// from a company the assessor has a current conflict of interest with is never listed,
    /// whatever the allocations say.
    pub async fn allocated_entries(
        &self,
        assessor_id: UserId,
        now: NaiveDateTime,
    ) -> StoreResult<Vec<(EntryRow, Option<ScoreRow>)>> {
        self.read(move |c| {
            let entries: Vec<EntryRow> = challenge_entries::table
                .inner_join(challenge_allocations::table)
                .filter(challenge_allocations::assessor_id.eq(&assessor_id))
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    assessor_conflicts::table
                        .filter(assessor_conflicts::assessor_id.eq(&assessor_id))
                        .filter(
                            assessor_conflicts::company_number
                                .eq(challenge_entries::company_number),
                        )
                        .filter(assessor_conflicts::expires_at.gt(now)),
                )))
                .order(challenge_entries::submitted_at.asc())
                .select(EntryRow::as_select())
                .load(c)?;
            let scores: Vec<ScoreRow> = challenge_scores::table
                .filter(challenge_scores::assessor_id.eq(&assessor_id))
                .select(ScoreRow::as_select())
                .load(c)?;
            let mut by_entry: BTreeMap<EntryId, ScoreRow> = scores
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

    /// Declares a conflict of interest with an organisation (until `row.expires_at`), in one
    /// transaction with its consequences: each undecided entry of that organisation allocated
    /// to the assessor is taken off them (their score, if any, dropped) and, while it can still
    /// be scored, allocated to the least loaded assessor free of conflicts who is not already on
    /// it; with nobody free it is left short of assessors. Each withdrawal is audited.
    pub async fn declare_conflict(
        &self,
        row: ConflictRow,
    ) -> StoreResult<(ConflictRow, Vec<Withdrawn>)> {
        self.write(move |c| {
            diesel::insert_into(assessor_conflicts::table)
                .values(&row)
                .execute(c)?;
            let now = row.declared_at;
            let affected: Vec<EntryRow> = challenge_entries::table
                .inner_join(challenge_allocations::table)
                .filter(challenge_allocations::assessor_id.eq(&row.assessor_id))
                .filter(challenge_entries::company_number.eq(&row.company_number))
                .filter(challenge_entries::decided_at.is_null())
                .order((
                    challenge_entries::submitted_at.asc(),
                    challenge_entries::id.asc(),
                ))
                .select(EntryRow::as_select())
                .load(c)?;
            let mut withdrawn = Vec::with_capacity(affected.len());
            for e in &affected {
                withdrawn.push(withdraw(c, e, &row, now)?);
            }
            audit::record(
                c,
                AuditEntry {
                    actor_id: Some(&row.assessor_id),
                    action: "challenge.conflict_declared",
                    subject_type: "assessor_conflict",
                    subject_id: row.id.as_str(),
                    reason: Some(&row.reason),
                    details: serde_json::json!({
                        "company_number": row.company_number,
                        "expires_at": row.expires_at.to_string(),
                        "entries_withdrawn": withdrawn.iter().map(|w| &w.entry_id).collect::<Vec<_>>(),
                    }),
                },
            )?;
            Ok((row, withdrawn))
        })
        .await
    }

    /// One allocated entry as its assessor reads it, with their score if given. Refused when
    /// the assessor has a current conflict of interest with the entrant's company (even if an
    /// allocation remains), and when the entry is not allocated to them.
    pub async fn assessment(
        &self,
        entry_id: EntryId,
        assessor_id: UserId,
        now: NaiveDateTime,
    ) -> StoreResult<(EntryRow, Option<ScoreRow>)> {
        self.read(move |c| {
            let e = entry(c, &entry_id)?;
            may_assess(c, &e, &assessor_id, now)?;
            let score = challenge_scores::table
                .filter(challenge_scores::entry_id.eq(&entry_id))
                .filter(challenge_scores::assessor_id.eq(&assessor_id))
                .select(ScoreRow::as_select())
                .first(c)
                .optional()?;
            Ok((e, score))
        })
        .await
    }

    pub async fn conflicts(&self, assessor_id: UserId) -> StoreResult<Vec<ConflictRow>> {
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
    /// Refused, like reading, to an assessor with a current conflict of interest with the
    /// entrant's company: checked here, in the writing transaction, so a conflict declared
    /// after the entry was read still stops the score.
    pub async fn submit_score(&self, row: ScoreRow, now: NaiveDateTime) -> StoreResult<ScoreRow> {
        self.write(move |c| {
            let e = entry(c, &row.entry_id)?;
            may_assess(c, &e, &row.assessor_id, now)?;
            // A no-op write that locks the allocation (PostgreSQL) until this commits: a
            // conflict declared at the same moment either deleted it first, and the score is
            // refused here, or waits for this score and then drops it.
            let held = diesel::update(
                challenge_allocations::table
                    .filter(challenge_allocations::entry_id.eq(&row.entry_id))
                    .filter(challenge_allocations::assessor_id.eq(&row.assessor_id)),
            )
            .set(challenge_allocations::allocated_at.eq(challenge_allocations::allocated_at))
            .execute(c)?;
            if held == 0 {
                return Err(StoreError::NotAllocated);
            }
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
    /// Awards are checked against `rules`' Minimal Financial Assistance limit.
    pub async fn run_challenge_milestones(
        &self,
        at: NaiveDateTime,
        rules: &EligibilityRules,
    ) -> StoreResult<Vec<Performed>> {
        let due: Vec<ChallengeRow> = self
            .read(move |c| {
                Ok(challenges::table
                    .filter(challenges::opens_at.le(at))
                    .filter(challenges::cancelled_at.is_null())
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
            for &milestone in Milestone::ALL {
                if m.at(milestone) > at {
                    break;
                }
                let row = ch.clone();
                let rules = rules.clone();
                let outcome = self
                    .write(move |c| perform(c, &row, milestone, at, &rules))
                    .await;
                match outcome {
                    Ok(Some(summary)) => performed.push(Performed {
                        challenge_id: ch.id.clone(),
                        milestone,
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
                .filter(challenges::cancelled_at.is_null())
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
        use chrono::Datelike;
        let m = previous.milestones()?.shifted_to(opens_at);
        let id = ChallengeId::new(uuid::Uuid::now_v7().to_string());
        let row = ChallengeRow {
            fund_account_id: format!("challenge-{id}"),
            id,
            title: challenge::cycle_title(
                &previous.title,
                previous.opens_at.year(),
                opens_at.year(),
            ),
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

/// Refuses an edit or change of a challenge that has opened (or is cancelled).
fn not_yet_open(ch: &ChallengeRow, now: NaiveDateTime, what: &str) -> StoreResult<()> {
    if ch.cancelled_at.is_some() {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::ChallengeCancelled,
            format!("the challenge is cancelled: it can no longer be {what}"),
        ));
    }
    if ch.opens_at <= now {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::ChallengeOpen,
            format!(
                "the challenge opened at {} (UTC): it can no longer be {what}",
                ch.opens_at
            ),
        ));
    }
    Ok(())
}

/// A company whose latest application was refused (rejected, or found not eligible as an
/// SME) cannot enter as an SME; as a startup or spin-off it must give evidence, then checked.
fn refused_as_sme(c: &mut DbConn, company_number: &str) -> StoreResult<()> {
    let latest: Option<(ApplicationStatus, bool, String)> = applications::table
        .filter(applications::company_number.eq(company_number))
        .filter(applications::id.not_like("award-%"))
        .order((applications::created_at.desc(), applications::id.desc()))
        .select((
            applications::status,
            applications::eligible,
            applications::checks,
        ))
        .first(c)
        .optional()?;
    let Some((status, eligible, checks)) = latest else {
        return Ok(());
    };
    let not_sme = !eligible
        && serde_json::from_str::<Vec<voucherd_domain::eligibility::RuleResult>>(&checks)
            .unwrap_or_default()
            .iter()
            .any(|r| r.rule.starts_with("sme_") && !r.passed);
    if status == ApplicationStatus::Rejected || not_sme {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::NotAnSme,
            "this company's application was refused: it cannot enter as an SME (a startup or university spin-off may enter with evidence, which is checked)".into(),
        ));
    }
    Ok(())
}

/// Entries allocated to fewer assessors than the challenge asks for, once the allocation
/// milestone has run (before it, nothing is allocated and nothing is short).
fn short_of_assessors(c: &mut DbConn, challenge_id: &ChallengeId) -> StoreResult<Vec<EntryId>> {
    let ch = challenge(c, challenge_id)?;
    let allocated: i64 = challenge_milestones::table
        .filter(challenge_milestones::challenge_id.eq(challenge_id))
        .filter(challenge_milestones::milestone.eq(Milestone::AssessorsAssigned.as_str()))
        .count()
        .get_result(c)?;
    if allocated == 0 {
        return Ok(Vec::new());
    }
    let entries: Vec<EntryId> = challenge_entries::table
        .filter(challenge_entries::challenge_id.eq(challenge_id))
        .order((
            challenge_entries::submitted_at.asc(),
            challenge_entries::id.asc(),
        ))
        .select(challenge_entries::id)
        .load(c)?;
    let entry_ids = challenge_entries::table
        .filter(challenge_entries::challenge_id.eq(challenge_id))
        .select(challenge_entries::id);
    let mut count: BTreeMap<EntryId, i64> = BTreeMap::new();
    for e in challenge_allocations::table
        .filter(challenge_allocations::entry_id.eq_any(entry_ids))
        .select(challenge_allocations::entry_id)
        .load::<EntryId>(c)?
    {
        *count.entry(e).or_default() += 1;
    }
    let per_entry = i64::from(ch.assessors_per_entry);
    Ok(entries
        .into_iter()
        .filter(|e| count.get(e).copied().unwrap_or(0) < per_entry)
        .collect())
}

/// Entries that not every assessor allocated to them has scored yet.
fn incomplete_entries(c: &mut DbConn, challenge_id: &ChallengeId) -> StoreResult<Vec<EntryId>> {
    let entry_ids = challenge_entries::table
        .filter(challenge_entries::challenge_id.eq(challenge_id))
        .select(challenge_entries::id);
    let allocated: Vec<(EntryId, UserId)> = challenge_allocations::table
        .filter(challenge_allocations::entry_id.eq_any(entry_ids))
        .select((
            challenge_allocations::entry_id,
            challenge_allocations::assessor_id,
        ))
        .load(c)?;
    let scored: BTreeSet<(EntryId, UserId)> = challenge_scores::table
        .filter(challenge_scores::entry_id.eq_any(entry_ids))
        .select((challenge_scores::entry_id, challenge_scores::assessor_id))
        .load::<(EntryId, UserId)>(c)?
        .into_iter()
        .collect();
    let incomplete: BTreeSet<EntryId> = allocated
        .into_iter()
        .filter(|a| !scored.contains(a))
        .map(|(e, _)| e)
        .collect();
    Ok(incomplete.into_iter().collect())
}

/// What became of an entry taken off an assessor who declared a conflict of interest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Withdrawn {
    pub entry_id: EntryId,
    pub challenge_id: ChallengeId,
    /// The assessor had scored it: that score no longer counts.
    pub score_dropped: bool,
    /// The assessor who took it over; `None` when nobody free of conflicts was left or
    /// scoring had closed, and the entry is short of assessors.
    pub reallocated_to: Option<UserId>,
}

/// Refuses an assessor the entry when they have a current conflict of interest with the
/// entrant's company, or it is not allocated to them.
fn may_assess(
    c: &mut DbConn,
    e: &EntryRow,
    assessor_id: &UserId,
    now: NaiveDateTime,
) -> StoreResult<()> {
    let conflicts: i64 = assessor_conflicts::table
        .filter(assessor_conflicts::assessor_id.eq(assessor_id))
        .filter(assessor_conflicts::company_number.eq(&e.company_number))
        .filter(assessor_conflicts::expires_at.gt(now))
        .count()
        .get_result(c)?;
    if conflicts > 0 {
        return Err(StoreError::ConflictOfInterest {
            company_number: e.company_number.clone(),
        });
    }
    let allocated: i64 = challenge_allocations::table
        .filter(challenge_allocations::entry_id.eq(&e.id))
        .filter(challenge_allocations::assessor_id.eq(assessor_id))
        .count()
        .get_result(c)?;
    if allocated == 0 {
        return Err(StoreError::NotAllocated);
    }
    Ok(())
}

/// Takes entry `e` off the assessor who declared `conflict`, dropping their score, and gives
/// it to a replacement while it can still be scored (before the assessment deadline, the
/// challenge not cancelled). In the declaration's transaction.
fn withdraw(
    c: &mut DbConn,
    e: &EntryRow,
    conflict: &ConflictRow,
    now: NaiveDateTime,
) -> StoreResult<Withdrawn> {
    let ch = challenge(c, &e.challenge_id)?;
    // The score first: it refers to the allocation.
    let dropped: Option<ScoreRow> = challenge_scores::table
        .filter(challenge_scores::entry_id.eq(&e.id))
        .filter(challenge_scores::assessor_id.eq(&conflict.assessor_id))
        .select(ScoreRow::as_select())
        .first(c)
        .optional()?;
    if dropped.is_some() {
        diesel::delete(
            challenge_scores::table
                .filter(challenge_scores::entry_id.eq(&e.id))
                .filter(challenge_scores::assessor_id.eq(&conflict.assessor_id)),
        )
        .execute(c)?;
    }
    diesel::delete(
        challenge_allocations::table
            .filter(challenge_allocations::entry_id.eq(&e.id))
            .filter(challenge_allocations::assessor_id.eq(&conflict.assessor_id)),
    )
    .execute(c)?;
    let scorable =
        ch.cancelled_at.is_none() && now < ch.milestones()?.at(Milestone::AssessmentDeadline);
    let reallocated_to = if scorable {
        replace_assessor(c, e, &ch, now)?
    } else {
        None
    };
    if reallocated_to.is_none() {
        tracing::warn!(challenge = %ch.id, entry = %e.id,
            "entry withdrawn from an assessor with a conflict of interest and left short of assessors");
    }
    audit::record(
        c,
        AuditEntry {
            actor_id: Some(&conflict.assessor_id),
            action: "challenge.allocation_withdrawn",
            subject_type: "challenge_entry",
            subject_id: e.id.as_str(),
            reason: Some(&conflict.reason),
            details: serde_json::json!({
                "challenge_id": ch.id,
                "assessor_id": conflict.assessor_id,
                "company_number": e.company_number,
                "dropped_score": dropped.as_ref().map(|s| serde_json::json!({
                    "scores": serde_json::from_str::<serde_json::Value>(&s.scores).unwrap_or_default(),
                    "percent_bp": s.percent_bp,
                    "comment": s.comment,
                    "submitted_at": s.submitted_at.to_string(),
                })),
                "reallocated_to": reallocated_to,
                "short_of_assessors": reallocated_to.is_none(),
            }),
        },
    )?;
    Ok(Withdrawn {
        entry_id: e.id.clone(),
        challenge_id: ch.id,
        score_dropped: dropped.is_some(),
        reallocated_to,
    })
}

/// Allocates entry `e` to the least loaded assessor (in the challenge) who is not already on
/// it and has no current conflict with its organisation, and tells them. `None` when there is
/// nobody.
fn replace_assessor(
    c: &mut DbConn,
    e: &EntryRow,
    ch: &ChallengeRow,
    now: NaiveDateTime,
) -> StoreResult<Option<UserId>> {
    // The same order as the allocation milestone's, so ties fall the same way.
    let assessors: Vec<String> = users::table
        .filter(users::role.eq(voucherd_domain::Role::Assessor))
        .order((users::created_at.asc(), users::id.asc()))
        .select(users::id)
        .load(c)?;
    let on_entry: BTreeSet<String> = challenge_allocations::table
        .filter(challenge_allocations::entry_id.eq(&e.id))
        .select(challenge_allocations::assessor_id)
        .load::<String>(c)?
        .into_iter()
        .collect();
    let conflicted: BTreeSet<String> = assessor_conflicts::table
        .filter(assessor_conflicts::company_number.eq(&e.company_number))
        .filter(assessor_conflicts::expires_at.gt(now))
        .select(assessor_conflicts::assessor_id)
        .load::<String>(c)?
        .into_iter()
        .collect();
    let entry_ids = challenge_entries::table
        .filter(challenge_entries::challenge_id.eq(&ch.id))
        .select(challenge_entries::id);
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    for a in challenge_allocations::table
        .filter(challenge_allocations::entry_id.eq_any(entry_ids))
        .select(challenge_allocations::assessor_id)
        .load::<String>(c)?
    {
        *load.entry(a).or_default() += 1;
    }
    let Some(chosen) = challenge::replacement(&assessors, &load, &on_entry, &conflicted) else {
        return Ok(None);
    };
    let chosen = UserId::new(chosen);
    diesel::insert_into(challenge_allocations::table)
        .values((
            challenge_allocations::entry_id.eq(&e.id),
            challenge_allocations::assessor_id.eq(&chosen),
            challenge_allocations::allocated_at.eq(now),
        ))
        .execute(c)?;
    let email = outbox::user_email(c, &chosen)?;
    outbox::enqueue(
        c,
        Notification {
            dedupe_key: format!("challenge-reallocated:{}:{chosen}", e.id),
            recipient: &email,
            template: "assessment_reallocated",
            data: serde_json::json!({
                "challenge_title": ch.title,
                "entry_title": e.title,
                "assessment_deadline": voucherd_domain::uk_time::date_time(ch.assessment_deadline),
            }),
        },
    )?;
    Ok(Some(chosen))
}

fn entry(c: &mut DbConn, id: &EntryId) -> StoreResult<EntryRow> {
    challenge_entries::table
        .find(id)
        .select(EntryRow::as_select())
        .first(c)
        .optional()?
        .ok_or(StoreError::NotFound("entry"))
}

fn accepting_entries(ch: &ChallengeRow, now: NaiveDateTime) -> StoreResult<()> {
    if ch.cancelled_at.is_some() {
        return Err(StoreError::ChallengeClosed(
            "this challenge is cancelled".into(),
        ));
    }
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
    rules: &EligibilityRules,
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
        Milestone::DecisionsReleased => decide(c, ch, at, rules)?,
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
        .filter(users::role.eq(voucherd_domain::Role::Assessor))
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
        let email = outbox::user_email(c, &UserId::new(*assessor))?;
        outbox::enqueue(
            c,
            Notification {
                dedupe_key: format!("challenge-allocated:{}:{assessor}", ch.id),
                recipient: &email,
                template: "assessments_allocated",
                data: serde_json::json!({
                    "challenge_title": ch.title,
                    "entries": count,
                    "assessment_deadline": voucherd_domain::uk_time::date_time(ch.assessment_deadline),
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

/// Moves a changed award pool's difference between the programme fund and the challenge's
/// account: in when it grew, back when it shrank.
fn move_pool_difference(c: &mut DbConn, old: &ChallengeRow, row: &ChallengeRow) -> StoreResult<()> {
    let difference = row.award_pool - old.award_pool;
    if difference != 0 {
        let (debit, credit) = if difference > 0 {
            (PROGRAMME_FUND.to_string(), old.fund_account_id.clone())
        } else {
            (old.fund_account_id.clone(), PROGRAMME_FUND.to_string())
        };
        ledger::transfer(
            c,
            &TransferRequest {
                id: format!("challenge-pool-change-{}", uuid::Uuid::now_v7()),
                debit_account_id: debit,
                credit_account_id: credit,
                amount: money(difference.abs())?,
                code: if difference > 0 {
                    TransferCode::ChallengePool
                } else {
                    TransferCode::ChallengeReturn
                },
                memo: format!("award pool of challenge {} changed", row.title),
            },
        )?;
    }
    Ok(())
}

/// Writes an edited challenge's fields if it has not opened (nor been cancelled) by `now`; the
/// rows changed, 0 when it had.
fn write_upcoming_challenge(
    c: &mut DbConn,
    row: &ChallengeRow,
    now: NaiveDateTime,
) -> StoreResult<usize> {
    // Conditional on the opening time read: an edit racing the opening loses.
    Ok(diesel::update(
        challenges::table
            .filter(challenges::id.eq(&row.id))
            .filter(challenges::opens_at.gt(now))
            .filter(challenges::cancelled_at.is_null()),
    )
    .set((
        challenges::title.eq(&row.title),
        challenges::theme.eq(&row.theme),
        challenges::eligible_kinds.eq(&row.eligible_kinds),
        challenges::opens_at.eq(row.opens_at),
        challenges::closes_at.eq(row.closes_at),
        challenges::assessors_assigned_at.eq(row.assessors_assigned_at),
        challenges::assessment_deadline.eq(row.assessment_deadline),
        challenges::decisions_released_at.eq(row.decisions_released_at),
        challenges::criteria.eq(&row.criteria),
        challenges::assessors_per_entry.eq(row.assessors_per_entry),
        challenges::award_pool.eq(row.award_pool),
        challenges::award_amounts.eq(&row.award_amounts),
        challenges::pilot_places.eq(row.pilot_places),
        challenges::recurrence.eq(&row.recurrence),
    ))
    .execute(c)?)
}

/// Refuses to cancel a challenge already cancelled or whose decisions are released.
fn check_cancellable(c: &mut DbConn, ch: &ChallengeRow) -> StoreResult<()> {
    if ch.cancelled_at.is_some() {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::ChallengeCancelled,
            "the challenge is already cancelled".into(),
        ));
    }
    let decided: i64 = challenge_milestones::table
        .filter(challenge_milestones::challenge_id.eq(&ch.id))
        .filter(challenge_milestones::milestone.eq(Milestone::DecisionsReleased.as_str()))
        .count()
        .get_result(c)?;
    if decided > 0 {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::ChallengeDecided,
            "the challenge's decisions are released: it can no longer be cancelled".into(),
        ));
    }
    Ok(())
}

/// Returns what a cancelled challenge's account holds to the programme fund, in one transfer;
/// the amount returned, in micros.
fn return_cancelled_pool(c: &mut DbConn, ch: &ChallengeRow) -> StoreResult<i64> {
    let held = ledger::account(c, &ch.fund_account_id)?
        .totals()
        .available();
    if held > 0 {
        ledger::transfer(
            c,
            &TransferRequest {
                id: format!("challenge-cancel-{}", ch.id),
                debit_account_id: ch.fund_account_id.clone(),
                credit_account_id: PROGRAMME_FUND.into(),
                amount: money(held)?,
                code: TransferCode::ChallengeReturn,
                memo: format!("pool of the cancelled challenge {}", ch.title),
            },
        )?;
    }
    Ok(held)
}

/// The entry whose kind is to be checked, and its challenge: refused when the entry carries
/// no evidence, or the challenge is decided or cancelled.
fn checkable_entry(
    c: &mut DbConn,
    challenge_id: &ChallengeId,
    entry_id: &EntryId,
) -> StoreResult<(EntryRow, ChallengeRow)> {
    let e = entry(c, entry_id)?;
    if &e.challenge_id != challenge_id {
        return Err(StoreError::NotFound("entry"));
    }
    if e.kind_evidence.is_none() {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::NoEvidenceToCheck,
            format!(
                "an entry as {} carries no evidence to check",
                e.organisation_kind
            ),
        ));
    }
    let ch = challenge(c, challenge_id)?;
    if e.decided_at.is_some() || ch.cancelled_at.is_some() {
        return Err(StoreError::Refused(
            voucherd_domain::ErrorCode::ChallengeDecided,
            "the challenge is decided or cancelled: its entries can no longer be checked".into(),
        ));
    }
    Ok((e, ch))
}

/// Tells the entrant the outcome of a check of their entry's kind.
fn notify_kind_check(
    c: &mut DbConn,
    e: &EntryRow,
    ch: &ChallengeRow,
    accepted: bool,
    reason: &str,
) -> StoreResult<()> {
    // Each check is told: a reversal is news too.
    let email = outbox::user_email(c, &e.entrant_id)?;
    outbox::enqueue(
        c,
        Notification {
            dedupe_key: format!("challenge-kind-check:{}:{}", e.id, uuid::Uuid::now_v7()),
            recipient: &email,
            template: "challenge_entry_checked",
            data: serde_json::json!({
                "challenge_title": ch.title,
                "organisation_name": e.organisation_name,
                "entry_title": e.title,
                "organisation_kind": e.organisation_kind.as_str().replace('_', " "),
                "accepted": accepted,
                "reason": reason,
            }),
        },
    )?;
    Ok(())
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
        .filter(vouchers::status.eq(voucherd_domain::VoucherState::Active))
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
    let (application_id, application_reference) = insert_award_application(c, e, ch, at)?;
    let id = VoucherId::new(uuid::Uuid::now_v7().to_string());
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
        status: voucherd_domain::VoucherState::Active,
        expires_at: at + chrono::Duration::days(365),
        created_at: at,
        budget_line_id: None,
        contribution_micros: 0,
        contribution_paid_at: None,
        suspended_at: None,
        suspension_reason: None,
        reference: application_reference
            .as_kind(voucherd_domain::ReferenceKind::Voucher)
            .to_string(),
    };
    diesel::insert_into(vouchers::table).values(&v).execute(c)?;
    Ok(v)
}

/// The application record an award voucher is made on, approved at `at`: its id and reference.
fn insert_award_application(
    c: &mut DbConn,
    e: &EntryRow,
    ch: &ChallengeRow,
    at: NaiveDateTime,
) -> StoreResult<(ApplicationId, Reference)> {
    let application_id = ApplicationId::new(format!("award-{}", e.id));
    let application_reference = crate::applications::fresh_reference(c)?;
    diesel::insert_into(applications::table)
        .values((
            applications::id.eq(&application_id),
            applications::reference.eq(application_reference.to_string()),
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
            applications::status.eq(ApplicationStatus::Approved),
            applications::live_company_number.eq(None::<String>),
            applications::decided_at.eq(Some(at)),
            applications::decision_reason.eq(Some(format!("challenge award: {}", ch.title))),
            applications::created_at.eq(at),
            applications::updated_at.eq(at),
        ))
        .execute(c)?;
    Ok((application_id, application_reference))
}

/// Decisions released: entries ranked by the mean of their assessors' percentages, the line
/// drawn by places, award credit moved from the challenge's pool to each winner's voucher,
/// what was not awarded returned to the programme fund, pilots marked, everyone told.
///
/// Not ranked (no score, no award, the reason shown): an entry some allocated assessor did not
/// score — decisions are released on their date, so it is recorded as incomplete rather than
/// waited for — and an entry as a startup or spin-off whose evidence was not accepted. An award
/// that would take the organisation past the Minimal Financial Assistance limit is recorded as
/// refused with the reason and not paid; its amount stays in the challenge's account.
fn decide(
    c: &mut DbConn,
    ch: &ChallengeRow,
    at: NaiveDateTime,
    rules: &EligibilityRules,
) -> StoreResult<serde_json::Value> {
    mark_incomplete(c, ch)?;
    let entries: Vec<EntryRow> = challenge_entries::table
        .filter(challenge_entries::challenge_id.eq(&ch.id))
        .select(EntryRow::as_select())
        .load(c)?;
    let (scored, not_ranked) = score_entries(c, &entries)?;
    let pilot_places = usize::try_from(ch.pilot_places).unwrap_or(0);
    let ranked = challenge::rank(&scored, &ch.awards()?, pilot_places);
    let mut awarded_micros = 0_i64;
    let mut refused_micros = 0_i64;
    let mut refused = Vec::new();
    let mut winners = 0;
    for r in &ranked {
        let Some(mut e) = entries.iter().find(|e| e.id == r.entry_id).cloned() else {
            continue;
        };
        e.award = r.award_micros;
        record_rank(c, &e, r, at)?;
        let award = award_entry(c, ch, &e, r.award_micros, at, rules)?;
        match &award {
            Award::Paid { .. } => {
                awarded_micros += r.award_micros;
                winners += 1;
            }
            Award::Refused { reason } => {
                refused_micros += r.award_micros;
                refused.push(serde_json::json!({ "entry_id": e.id, "reason": reason }));
            }
            Award::None => {}
        }
        notify_result(c, &e, ch, r, ranked.len(), award, at)?;
    }
    // A refused award stays in the challenge's account; the rest not awarded goes back.
    let left = ch.award_pool - awarded_micros - refused_micros;
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
        "refused_micros": refused_micros,
        "awards_refused": refused,
        "not_ranked": not_ranked,
        "returned_micros": left.max(0),
        "pilot_invitations": ranked.iter().filter(|r| r.pilot).count(),
    }))
}

/// Marks the entries some allocated assessor did not score, so they are not ranked.
fn mark_incomplete(c: &mut DbConn, ch: &ChallengeRow) -> StoreResult<()> {
    let incomplete: BTreeSet<EntryId> = incomplete_entries(c, &ch.id)?.into_iter().collect();
    if !incomplete.is_empty() {
        diesel::update(
            challenge_entries::table.filter(
                challenge_entries::id.eq_any(incomplete.iter().cloned().collect::<Vec<_>>()),
            ),
        )
        .set(challenge_entries::assessments_incomplete.eq(true))
        .execute(c)?;
        tracing::warn!(challenge = %ch.id, entries = ?incomplete,
            "entries with incomplete assessments are not ranked");
    }
    Ok(())
}

/// An entry's id, its mean percentage (none when it is not ranked) and when it was submitted,
/// as [`challenge::rank`] takes them.
type Scored = (EntryId, Option<i64>, NaiveDateTime);

/// Each entry's mean score for ranking, and the entries not ranked with the reason.
fn score_entries(
    c: &mut DbConn,
    entries: &[EntryRow],
) -> StoreResult<(Vec<Scored>, Vec<serde_json::Value>)> {
    let mut scored = Vec::with_capacity(entries.len());
    let mut not_ranked = Vec::new();
    for e in entries {
        let pcts: Vec<i64> = challenge_scores::table
            .filter(challenge_scores::entry_id.eq(&e.id))
            .select(challenge_scores::percent_bp)
            .load(c)?;
        let score = match e.not_ranked_because() {
            Some(why) => {
                not_ranked.push(serde_json::json!({ "entry_id": e.id, "reason": why }));
                None
            }
            None => challenge::mean_bp(&pcts),
        };
        scored.push((e.id.clone(), score, e.submitted_at));
    }
    Ok((scored, not_ranked))
}

/// Writes an entry's score, rank (none when not ranked), award and pilot place.
fn record_rank(
    c: &mut DbConn,
    e: &EntryRow,
    r: &challenge::Ranked,
    at: NaiveDateTime,
) -> StoreResult<()> {
    diesel::update(challenge_entries::table.find(&e.id))
        .set((
            challenge_entries::score_bp.eq(r.score_bp),
            challenge_entries::entry_rank.eq(e
                .not_ranked_because()
                .is_none()
                .then(|| i32::try_from(r.rank).unwrap_or(i32::MAX))),
            challenge_entries::award.eq(r.award_micros),
            challenge_entries::pilot_invited.eq(r.pilot),
            challenge_entries::decided_at.eq(Some(at)),
        ))
        .execute(c)?;
    Ok(())
}

/// What became of an entry's award.
enum Award {
    /// Below the line: nothing to award.
    None,
    /// Credited to this voucher.
    Paid { voucher_id: VoucherId },
    /// Past the MFA limit, for this reason.
    Refused { reason: String },
}

/// Pays an entry's award onto its voucher from the challenge's account, or records it refused
/// (audited, not paid) when it would take the organisation past the MFA limit.
fn award_entry(
    c: &mut DbConn,
    ch: &ChallengeRow,
    e: &EntryRow,
    award_micros: i64,
    at: NaiveDateTime,
    rules: &EligibilityRules,
) -> StoreResult<Award> {
    if award_micros <= 0 {
        return Ok(Award::None);
    }
    let mfa = crate::mfa::check(c, rules, &e.company_number, at, award_micros)?;
    if !mfa.passed {
        diesel::update(challenge_entries::table.find(&e.id))
            .set((
                challenge_entries::award.eq(0_i64),
                challenge_entries::award_refused_reason.eq(Some(&mfa.reason)),
            ))
            .execute(c)?;
        audit::record(
            c,
            AuditEntry {
                actor_id: None,
                action: "challenge.award_refused",
                subject_type: "challenge_entry",
                subject_id: e.id.as_str(),
                reason: Some(&mfa.reason),
                details: serde_json::json!({
                    "challenge_id": ch.id,
                    "award_micros": award_micros,
                    "received_micros": mfa.received_micros,
                    "limit_micros": mfa.limit_micros,
                }),
            },
        )?;
        return Ok(Award::Refused { reason: mfa.reason });
    }
    let v = award_voucher(c, e, ch, at)?;
    ledger::transfer(
        c,
        &TransferRequest {
            id: format!("award-{}", e.id),
            debit_account_id: ch.fund_account_id.clone(),
            credit_account_id: v.account_id.clone(),
            amount: money(award_micros)?,
            code: TransferCode::ChallengeAward,
            memo: format!("award in the challenge {}", ch.title),
        },
    )?;
    Ok(Award::Paid { voucher_id: v.id })
}

/// Tells the entrant their rank and score, and what became of their award.
fn notify_result(
    c: &mut DbConn,
    e: &EntryRow,
    ch: &ChallengeRow,
    r: &challenge::Ranked,
    entries: usize,
    award: Award,
    at: NaiveDateTime,
) -> StoreResult<()> {
    let (voucher_id, refusal) = match award {
        Award::None => (None, None),
        Award::Paid { voucher_id } => (Some(voucher_id), None),
        Award::Refused { reason } => (None, Some(reason)),
    };
    let voucher_reference = match &voucher_id {
        Some(id) => Some(crate::vouchers::reference_of(c, id)?),
        None => None,
    };
    notify_entrant(
        c,
        e,
        ch,
        "result",
        "challenge_result",
        serde_json::json!({
            "rank": r.rank,
            "entries": entries,
            "score_percent": r.score_bp.map(challenge::format_percent_bp),
            "awarded": voucher_id.is_some(),
            "award": format_micros(r.award_micros),
            "voucher_id": voucher_id,
            "voucher_reference": voucher_reference,
            "pilot_invited": r.pilot,
            "award_refused": refusal.is_some().then(|| format_micros(r.award_micros)),
            "award_refused_reason": refusal,
            "awarded_on": at.format("%-d %B %Y").to_string(),
        }),
    )
}
