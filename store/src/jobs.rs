//! Scheduled job runs. A run is claimed by inserting its (job, scheduled time) row: the UNIQUE
//! key lets exactly one worker win, on both backends. A run whose worker died (its heartbeat
//! went stale) or that was abandoned at shutdown may be taken over and run again; the jobs
//! themselves are idempotent, so a retried run moves no money twice.

use crate::db::{DbConn, Store};
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::schema::{job_runs, reconciliations};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use voucherd_domain::{JobTrigger, RunOutcome};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = job_runs)]
pub struct JobRunRow {
    pub id: String,
    /// `job@scheduled time` for a scheduled run; unique to the run for a manual one.
    pub run_key: String,
    pub job: String,
    pub scheduled_at: NaiveDateTime,
    pub trigger_kind: JobTrigger,
    pub worker_id: String,
    pub attempts: i32,
    pub started_at: NaiveDateTime,
    pub heartbeat_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    pub outcome: RunOutcome,
    /// What the run did, JSON.
    pub summary: String,
}

/// A claim on one run.
#[derive(Debug, Clone)]
pub struct RunClaim {
    pub job: String,
    pub scheduled_at: NaiveDateTime,
    pub manual: bool,
    pub worker_id: String,
    pub at: NaiveDateTime,
    /// A running run whose heartbeat is older than this is taken to be dead.
    pub stale_before: NaiveDateTime,
}

/// One job's runs on record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    pub job: String,
    pub runs: i64,
    pub failed: i64,
    pub last_started_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = reconciliations)]
pub struct ReconciliationRow {
    pub id: String,
    pub checked_at: NaiveDateTime,
    pub accounts_checked: i64,
    pub transfers_checked: i64,
    pub balanced: bool,
    /// The differences found, JSON.
    pub differences: String,
}

impl RunClaim {
    fn run_key(&self, id: &str) -> String {
        if self.manual {
            format!("{}@manual:{id}", self.job)
        } else {
            format!(
                "{}@{}",
                self.job,
                self.scheduled_at.format("%Y-%m-%dT%H:%M:%S%.6f")
            )
        }
    }
}

fn insert_run(c: &mut DbConn, claim: &RunClaim) -> QueryResult<JobRunRow> {
    let id = uuid::Uuid::now_v7().to_string();
    let row = JobRunRow {
        run_key: claim.run_key(&id),
        id,
        job: claim.job.clone(),
        scheduled_at: claim.scheduled_at,
        trigger_kind: if claim.manual {
            JobTrigger::Manual
        } else {
            JobTrigger::Schedule
        },
        worker_id: claim.worker_id.clone(),
        attempts: 1,
        started_at: claim.at,
        heartbeat_at: claim.at,
        finished_at: None,
        outcome: RunOutcome::Running,
        summary: "{}".into(),
    };
    diesel::insert_into(job_runs::table)
        .values(&row)
        .execute(c)?;
    Ok(row)
}

impl Store {
    /// Claims a run: `Some` for the one worker that may perform it now, `None` for every other
    /// (already done, or running on a live worker). `takeover` names an unfinished run (by
    /// its key) to take over instead of starting a new one.
    pub async fn claim_job_run(
        &self,
        claim: RunClaim,
        takeover: Option<String>,
    ) -> StoreResult<Option<JobRunRow>> {
        let run_key = match takeover {
            Some(key) => key,
            None => {
                let first = claim.clone();
                match self.write(move |c| Ok(insert_run(c, &first)?)).await {
                    Ok(row) => return Ok(Some(row)),
                    // Another worker inserted this scheduled run first.
                    Err(StoreError::Database(e)) if is_unique_violation(&e) => claim.run_key(""),
                    Err(e) => return Err(e),
                }
            }
        };
        // It exists: take it over only if its worker died or gave it up.
        self.write(move |c| {
            let taken = diesel::update(
                job_runs::table
                    .filter(job_runs::run_key.eq(&run_key))
                    .filter(
                        job_runs::outcome
                            .eq(RunOutcome::Abandoned)
                            .or(job_runs::outcome
                                .eq(RunOutcome::Running)
                                .and(job_runs::heartbeat_at.lt(claim.stale_before))),
                    ),
            )
            .set((
                job_runs::worker_id.eq(&claim.worker_id),
                job_runs::attempts.eq(job_runs::attempts + 1),
                job_runs::heartbeat_at.eq(claim.at),
                job_runs::outcome.eq(RunOutcome::Running),
                job_runs::finished_at.eq(None::<NaiveDateTime>),
            ))
            .execute(c)?;
            if taken == 0 {
                return Ok(None);
            }
            Ok(Some(
                job_runs::table
                    .filter(job_runs::run_key.eq(&run_key))
                    .select(JobRunRow::as_select())
                    .first(c)?,
            ))
        })
        .await
    }

    /// Keeps a long run visibly alive; false if another worker took it over.
    pub async fn beat_job_run(
        &self,
        id: String,
        worker_id: String,
        at: NaiveDateTime,
    ) -> StoreResult<bool> {
        self.write(move |c| {
            let n = diesel::update(
                job_runs::table
                    .filter(job_runs::id.eq(&id))
                    .filter(job_runs::worker_id.eq(&worker_id))
                    .filter(job_runs::outcome.eq(RunOutcome::Running)),
            )
            .set(job_runs::heartbeat_at.eq(at))
            .execute(c)?;
            Ok(n == 1)
        })
        .await
    }

    /// Records how a run ended, if this worker still owns it.
    pub async fn finish_job_run(
        &self,
        id: String,
        worker_id: String,
        outcome: RunOutcome,
        summary: serde_json::Value,
        at: NaiveDateTime,
    ) -> StoreResult<()> {
        self.write(move |c| {
            diesel::update(
                job_runs::table
                    .filter(job_runs::id.eq(&id))
                    .filter(job_runs::worker_id.eq(&worker_id))
                    .filter(job_runs::outcome.eq(RunOutcome::Running)),
            )
            .set((
                job_runs::outcome.eq(outcome),
                job_runs::summary.eq(summary.to_string()),
                job_runs::finished_at.eq(Some(at)),
                job_runs::heartbeat_at.eq(at),
            ))
            .execute(c)?;
            Ok(())
        })
        .await
    }

    /// Runs left unfinished: abandoned at a shutdown, or running on a worker whose heartbeat
    /// stopped before `stale_before` (it died). Each may be taken over with
    /// [`Store::claim_job_run`].
    pub async fn orphaned_job_runs(
        &self,
        stale_before: NaiveDateTime,
        limit: i64,
    ) -> StoreResult<Vec<JobRunRow>> {
        self.read(move |c| {
            Ok(job_runs::table
                .filter(
                    job_runs::outcome
                        .eq(RunOutcome::Abandoned)
                        .or(job_runs::outcome
                            .eq(RunOutcome::Running)
                            .and(job_runs::heartbeat_at.lt(stale_before))),
                )
                .order(job_runs::scheduled_at.asc())
                .limit(limit)
                .select(JobRunRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// The latest scheduled (not manual) time recorded for each job.
    pub async fn last_scheduled_runs(&self) -> StoreResult<Vec<(String, NaiveDateTime)>> {
        self.read(|c| {
            let rows: Vec<(String, Option<NaiveDateTime>)> = job_runs::table
                .filter(job_runs::trigger_kind.eq(JobTrigger::Schedule))
                .group_by(job_runs::job)
                .select((job_runs::job, diesel::dsl::max(job_runs::scheduled_at)))
                .load(c)?;
            Ok(rows
                .into_iter()
                .filter_map(|(j, t)| t.map(|t| (j, t)))
                .collect())
        })
        .await
    }

    /// Runs, newest first; one job's when given.
    pub async fn job_runs(&self, job: Option<String>, limit: i64) -> StoreResult<Vec<JobRunRow>> {
        self.read(move |c| {
            let mut q = job_runs::table.into_boxed();
            if let Some(j) = job {
                q = q.filter(job_runs::job.eq(j));
            }
            Ok(q.order((job_runs::started_at.desc(), job_runs::id.desc()))
                .limit(limit)
                .select(JobRunRow::as_select())
                .load(c)?)
        })
        .await
    }

    /// Each job's runs on record: how many, how many failed, and when the latest started,
    /// by job name.
    pub async fn job_summary(&self) -> StoreResult<Vec<JobSummary>> {
        use diesel::dsl::{count_star, max};
        self.read(move |c| {
            let all: Vec<(String, i64, Option<NaiveDateTime>)> = job_runs::table
                .group_by(job_runs::job)
                .select((job_runs::job, count_star(), max(job_runs::started_at)))
                .order(job_runs::job)
                .load(c)?;
            let failed: Vec<(String, i64)> = job_runs::table
                .filter(job_runs::outcome.eq(RunOutcome::Failed))
                .group_by(job_runs::job)
                .select((job_runs::job, count_star()))
                .load(c)?;
            Ok(all
                .into_iter()
                .map(|(job, runs, last_started_at)| JobSummary {
                    failed: failed
                        .iter()
                        .find(|(j, _)| *j == job)
                        .map_or(0, |(_, n)| *n),
                    job,
                    runs,
                    last_started_at,
                })
                .collect())
        })
        .await
    }

    /// Forgets finished runs that started before `before` (run history is kept for a while,
    /// not for ever). Returns how many.
    pub async fn prune_job_runs(&self, before: NaiveDateTime) -> StoreResult<usize> {
        self.write(move |c| {
            Ok(diesel::delete(
                job_runs::table
                    .filter(job_runs::started_at.lt(before))
                    .filter(job_runs::outcome.ne(RunOutcome::Running)),
            )
            .execute(c)?)
        })
        .await
    }

    pub async fn reconciliations(&self, limit: i64) -> StoreResult<Vec<ReconciliationRow>> {
        self.read(move |c| {
            Ok(reconciliations::table
                .order((
                    reconciliations::checked_at.desc(),
                    reconciliations::id.desc(),
                ))
                .limit(limit)
                .select(ReconciliationRow::as_select())
                .load(c)?)
        })
        .await
    }
}
