//! The worker: jobs on cron schedules from configuration. Each run is claimed in the database
//! by its (job, scheduled time), so it happens once however many workers run; a worker that
//! was down catches up a missed run once, not once per missed tick. Jobs are idempotent, so a
//! run retried after a crash moves no money twice.

pub mod mail;
/// Reports are made by their own crate: the console and the command line make them too.
pub use voucherd_reports as report;

use chrono::{DateTime, NaiveDateTime, Utc};
use mail::{MailConfig, MailError, Mailer};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use voucherd_domain::{JobTrigger, RunOutcome};
use voucherd_store::jobs::RunClaim;
use voucherd_store::{Store, StoreError};

pub use voucherd_store::clock::{Clock, ManualClock, SystemClock};

/// The jobs there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Job {
    HoldTimeouts,
    VoucherExpiry,
    LowBalance,
    Reconciliation,
    Outbox,
    Housekeeping,
    Challenges,
    ConsultingReminders,
    IncentiveMilestones,
    ReportMonthly,
    ReportSemiAnnual,
    StripeReconciliation,
}

impl Job {
    pub const ALL: [Job; 12] = [
        Job::HoldTimeouts,
        Job::VoucherExpiry,
        Job::LowBalance,
        Job::Reconciliation,
        Job::Outbox,
        Job::Housekeeping,
        Job::Challenges,
        Job::ConsultingReminders,
        Job::IncentiveMilestones,
        Job::ReportMonthly,
        Job::ReportSemiAnnual,
        Job::StripeReconciliation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::HoldTimeouts => "hold-timeouts",
            Job::VoucherExpiry => "voucher-expiry",
            Job::LowBalance => "low-balance",
            Job::Reconciliation => "reconciliation",
            Job::Outbox => "outbox",
            Job::Housekeeping => "housekeeping",
            Job::Challenges => "challenges",
            Job::ConsultingReminders => "consulting-reminders",
            Job::IncentiveMilestones => "incentive-milestones",
            Job::ReportMonthly => "report-monthly",
            Job::ReportSemiAnnual => "report-semi-annual",
            Job::StripeReconciliation => "stripe-reconciliation",
        }
    }

    /// Cron expressions (seconds, minutes, hours, day of month, month, day of week), UTC.
    pub fn default_schedule(self) -> &'static str {
        match self {
            // With the default 15 s instance staleness, a dead proxy's holds are settled
            // within about 22 s of its last heartbeat.
            Job::HoldTimeouts => "*/5 * * * * *",
            Job::VoucherExpiry => "0 5 * * * *",
            Job::LowBalance => "0 */15 * * * *",
            Job::Reconciliation => "0 30 2 * * *",
            Job::Outbox => "*/15 * * * * *",
            Job::Housekeeping => "0 45 3 * * *",
            Job::Challenges => "0 * * * * *",
            Job::ConsultingReminders => "0 */10 * * * *",
            Job::IncentiveMilestones => "0 */5 * * * *",
            Job::ReportMonthly => "0 0 6 1 * *",
            Job::ReportSemiAnnual => "0 0 6 1 4,10 *",
            Job::StripeReconciliation => "0 */15 * * * *",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Job::HoldTimeouts => {
                "settle the holds of proxy instances whose heartbeat lapsed, and resolve holds past their timeout"
            }
            Job::VoucherExpiry => {
                "expire vouchers, forfeit their remainders, remind 30 and 7 days before"
            }
            Job::LowBalance => "notify organisations at 80% and 100% of their credit used",
            Job::Reconciliation => {
                "recompute the ledger from its transfers and alert on any difference"
            }
            Job::Outbox => "deliver notifications from the outbox, with retries",
            Job::Housekeeping => "forget job runs past their retention",
            Job::Challenges => {
                "perform challenge milestones once each; open recurring challenges' next cycles"
            }
            Job::ConsultingReminders => {
                "remind SMEs of consulting sessions a day ahead; lapse sessions never recorded"
            }
            Job::IncentiveMilestones => "grant milestone bonuses whose trigger happened, once each",
            Job::ReportMonthly => "the monthly operations report for the month just ended",
            Job::ReportSemiAnnual => {
                "the semi-annual review (and public summary) for the half-year just ended"
            }
            Job::StripeReconciliation => {
                "credit paid Checkout Sessions whose webhook never arrived; mark expired ones"
            }
        }
    }

    pub fn parse(name: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("job {job}: bad cron expression {expression:?}: {message}")]
    BadSchedule {
        job: String,
        expression: String,
        message: String,
    },
    #[error("unknown job {0:?} (known: hold-timeouts, voucher-expiry, low-balance, reconciliation, outbox, housekeeping, challenges, consulting-reminders, incentive-milestones, report-monthly, report-semi-annual, stripe-reconciliation)")]
    UnknownJob(String),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Payment(#[from] voucherd_payments::PaymentError),
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Job name → cron expression, replacing the default schedule.
    pub schedules: BTreeMap<String, String>,
    pub mail: MailConfig,
    /// A running run whose heartbeat is older than this is taken to be dead and run again.
    pub stale_run_ms: u64,
    /// A proxy instance whose heartbeat is older than this is dead: its holds are settled.
    pub instance_stale_after_ms: u64,
    /// How long shutdown waits for the current job before abandoning it.
    pub shutdown_grace_ms: u64,
    /// How often the worker looks for due jobs.
    pub poll_ms: u64,
    pub run_retention_days: u32,
    /// Delivery attempts before a message is marked failed.
    pub mail_max_attempts: i32,
    /// First retry delay; doubled per attempt, at most six hours.
    pub mail_retry_base_ms: u64,
    /// Disclosure control of public report summaries.
    pub disclosure: voucherd_domain::disclosure::Rules,
    /// Stripe, when payments are on: the payment reconciliation job asks it.
    pub stripe: Option<voucherd_payments::StripeConfig>,
    /// How far back payment reconciliation looks, in hours.
    pub stripe_lookback_hours: u32,
    /// The Minimal Financial Assistance limit every award is checked against, and the
    /// financial year recurring challenges' cycles are created in.
    pub eligibility: voucherd_domain::eligibility::EligibilityRules,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            schedules: BTreeMap::new(),
            mail: MailConfig {
                smtp_url: None,
                from: "AI Voucher Programme <noreply@voucherd.invalid>".into(),
                dir: "data/mail".into(),
                send_timeout_ms: 30_000,
            },
            stale_run_ms: 600_000,
            instance_stale_after_ms: 15_000,
            shutdown_grace_ms: 10_000,
            poll_ms: 1_000,
            run_retention_days: 30,
            mail_max_attempts: 8,
            mail_retry_base_ms: 30_000,
            disclosure: voucherd_domain::disclosure::Rules::default(),
            stripe: None,
            stripe_lookback_hours: 72,
            eligibility: voucherd_domain::eligibility::EligibilityRules::default(),
        }
    }
}

/// Parses every job's schedule, failing on the first bad one by name.
pub fn schedules(
    config: &BTreeMap<String, String>,
) -> Result<Vec<(Job, String, cron::Schedule)>, WorkerError> {
    if let Some(unknown) = config.keys().find(|k| Job::parse(k).is_none()) {
        return Err(WorkerError::UnknownJob(unknown.clone()));
    }
    Job::ALL
        .into_iter()
        .map(|job| {
            let expression = config
                .get(job.name())
                .cloned()
                .unwrap_or_else(|| job.default_schedule().to_string());
            let schedule =
                cron::Schedule::from_str(&expression).map_err(|e| WorkerError::BadSchedule {
                    job: job.name().into(),
                    expression: expression.clone(),
                    message: e.to_string(),
                })?;
            Ok((job, expression, schedule))
        })
        .collect()
}

/// The latest time at or before `now` that `schedule` fires, looking back at most five years.
pub fn latest_fire(schedule: &cron::Schedule, now: NaiveDateTime) -> Option<NaiveDateTime> {
    let now_utc = DateTime::<Utc>::from_naive_utc_and_offset(now, Utc);
    // Widening windows: a per-second schedule is found in the first, an annual one in a later
    // one, and no window walks more than a bounded number of fire times.
    for window in [
        chrono::Duration::minutes(2),
        chrono::Duration::days(1),
        chrono::Duration::days(32),
        chrono::Duration::days(367),
        chrono::Duration::days(5 * 366),
    ] {
        let found = schedule
            .after(&(now_utc - window))
            .take(200_000)
            .take_while(|t| *t <= now_utc)
            .last();
        if let Some(t) = found {
            return Some(t.naive_utc());
        }
    }
    None
}

/// The next time `schedule` fires after `now`.
pub fn next_fire(schedule: &cron::Schedule, now: NaiveDateTime) -> Option<NaiveDateTime> {
    schedule
        .after(&DateTime::<Utc>::from_naive_utc_and_offset(now, Utc))
        .next()
        .map(|t| t.naive_utc())
}

/// One run's result.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub job: Job,
    pub scheduled_at: NaiveDateTime,
    pub outcome: RunOutcome,
    pub summary: serde_json::Value,
}

pub struct Worker {
    store: Store,
    clock: Arc<dyn Clock>,
    jobs: Vec<(Job, String, cron::Schedule)>,
    mailer: Mailer,
    stripe: Option<voucherd_payments::Stripe>,
    config: WorkerConfig,
    id: String,
    /// Per job, the latest scheduled time known done (by anyone); loaded from the database at
    /// the first tick. Jobs with no history start from when this worker started.
    done: tokio::sync::Mutex<Option<HashMap<Job, NaiveDateTime>>>,
    /// When this worker last looked for unfinished runs to take over.
    orphans_checked: tokio::sync::Mutex<Option<NaiveDateTime>>,
    since: NaiveDateTime,
}

impl Worker {
    pub fn new(
        store: Store,
        config: WorkerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Worker, WorkerError> {
        let jobs = schedules(&config.schedules)?;
        let mailer = Mailer::new(&config.mail)?;
        let stripe = config
            .stripe
            .as_ref()
            .map(voucherd_payments::Stripe::new)
            .transpose()?;
        let since = clock.now();
        Ok(Worker {
            store,
            clock,
            jobs,
            mailer,
            stripe,
            config,
            id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            done: tokio::sync::Mutex::new(None),
            orphans_checked: tokio::sync::Mutex::new(None),
            since,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Each job, its schedule and its next run after now.
    pub fn list(&self) -> Vec<(Job, String, Option<NaiveDateTime>)> {
        let now = self.clock.now();
        self.jobs
            .iter()
            .map(|(job, expr, s)| (*job, expr.clone(), next_fire(s, now)))
            .collect()
    }

    /// Runs every job that is due now, once each (the latest missed time only), and returns
    /// what this worker ran. Runs claimed by another worker are skipped.
    pub async fn tick(
        &self,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Vec<RunReport>, WorkerError> {
        let now = self.clock.now();
        let mut done_guard = self.done.lock().await;
        if done_guard.is_none() {
            *done_guard = Some(self.last_runs().await?);
        }
        let mut reports = Vec::new();
        // First, runs a dead worker left unfinished (or one abandoned at shutdown).
        let orphans = self.orphans(now).await?;
        for orphan in orphans {
            if *shutdown.borrow() {
                return Ok(reports);
            }
            let Some(job) = Job::parse(&orphan.job) else {
                continue;
            };
            tracing::warn!(job = job.name(), scheduled_at = %orphan.scheduled_at,
                previous_worker = %orphan.worker_id, "taking over an unfinished run");
            let manual = orphan.trigger_kind == JobTrigger::Manual;
            if let Some(r) = self
                .claim_and_run(
                    job,
                    orphan.scheduled_at,
                    manual,
                    Some(orphan.run_key),
                    shutdown,
                )
                .await?
            {
                reports.push(r);
            }
        }
        for (job, _, schedule) in &self.jobs {
            if *shutdown.borrow() {
                break;
            }
            let Some(due) = latest_fire(schedule, now) else {
                continue;
            };
            let last = done_guard
                .as_ref()
                .and_then(|m| m.get(job).copied())
                .unwrap_or(self.since);
            if due <= last {
                continue;
            }
            if let Some(r) = self.claim_and_run(*job, due, false, None, shutdown).await? {
                reports.push(r);
            }
            if let Some(m) = done_guard.as_mut() {
                m.insert(*job, due);
            }
        }
        Ok(reports)
    }

    /// Each job's latest scheduled run on record, as this worker starts.
    async fn last_runs(&self) -> Result<HashMap<Job, NaiveDateTime>, WorkerError> {
        let last = self.store.last_scheduled_runs().await?;
        let mut map = HashMap::new();
        for (name, at) in last {
            if let Some(job) = Job::parse(&name) {
                map.insert(job, at);
            }
        }
        Ok(map)
    }

    /// Up to ten runs left unfinished past `stale_run_ms`, when it is time to look for them.
    async fn orphans(
        &self,
        now: NaiveDateTime,
    ) -> Result<Vec<voucherd_store::jobs::JobRunRow>, WorkerError> {
        // A run is stale only after `stale_run_ms`, so looking a tenth as often is soon enough.
        let stale_before = now - chrono::Duration::milliseconds(self.config.stale_run_ms as i64);
        let look = {
            let mut last = self.orphans_checked.lock().await;
            let every =
                chrono::Duration::milliseconds((self.config.stale_run_ms / 10).max(1_000) as i64);
            let due = last.is_none_or(|t| now - t >= every);
            if due {
                *last = Some(now);
            }
            due
        };
        Ok(if look {
            self.store.orphaned_job_runs(stale_before, 10).await?
        } else {
            Vec::new()
        })
    }

    /// Runs one job now, whatever its schedule (for operators and tests).
    pub async fn run_once(&self, job: Job) -> Result<RunReport, WorkerError> {
        let (_tx, rx) = watch::channel(false);
        let at = self.clock.now();
        self.claim_and_run(job, at, true, None, &rx)
            .await?
            .ok_or_else(|| {
                WorkerError::Store(StoreError::Invariant(format!(
                    "a run of {} at {at} already exists",
                    job.name()
                )))
            })
    }

    async fn claim_and_run(
        &self,
        job: Job,
        scheduled_at: NaiveDateTime,
        manual: bool,
        takeover: Option<String>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Option<RunReport>, WorkerError> {
        let at = self.clock.now();
        let stale = chrono::Duration::milliseconds(self.config.stale_run_ms as i64);
        let Some(run) = self
            .store
            .claim_job_run(
                RunClaim {
                    job: job.name().into(),
                    scheduled_at,
                    manual,
                    worker_id: self.id.clone(),
                    at,
                    stale_before: at - stale,
                },
                takeover,
            )
            .await?
        else {
            tracing::debug!(job = job.name(), %scheduled_at, "run claimed by another worker");
            return Ok(None);
        };
        tracing::info!(job = job.name(), %scheduled_at, attempt = run.attempts, worker = %self.id, "job started");
        let result = self.run_beating(job, &run.id, shutdown).await;
        let finished = self.clock.now();
        let (outcome, summary) = outcome(job, result);
        self.store
            .finish_job_run(
                run.id.clone(),
                self.id.clone(),
                outcome,
                summary.clone(),
                finished,
            )
            .await?;
        tracing::info!(job = job.name(), %scheduled_at, %outcome, %summary, "job finished");
        Ok(Some(RunReport {
            job,
            scheduled_at,
            outcome,
            summary,
        }))
    }

    /// Runs the job, beating its run's heartbeat; `None` when the run was taken over, or given
    /// up at shutdown after the grace period.
    async fn run_beating(
        &self,
        job: Job,
        run_id: &str,
        shutdown: &watch::Receiver<bool>,
    ) -> Option<Result<serde_json::Value, WorkerError>> {
        let mut shutdown = shutdown.clone();
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        let beat_every = Duration::from_millis((self.config.stale_run_ms / 3).max(100));
        let work = self.execute(job);
        tokio::pin!(work);
        let mut beat = tokio::time::interval(beat_every);
        beat.tick().await;
        loop {
            tokio::select! {
                r = &mut work => break Some(r),
                _ = beat.tick() => {
                    // Taken over by another worker (this one was thought dead): stop here.
                    if let Ok(false) = self.store.beat_job_run(run_id.to_string(), self.id.clone(), self.clock.now()).await {
                        tracing::warn!(job = job.name(), "run taken over by another worker; stopping");
                        break None;
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        // Finish within the grace period, or give the run up for another
                        // worker (or this one, restarted) to take over.
                        match tokio::time::timeout(grace, &mut work).await {
                            Ok(r) => break Some(r),
                            Err(_) => break None,
                        }
                    }
                }
            }
        }
    }

    async fn execute(&self, job: Job) -> Result<serde_json::Value, WorkerError> {
        let at = self.clock.now();
        Ok(match job {
            Job::HoldTimeouts => self.resolve_holds(at).await?,
            Job::VoucherExpiry => to_json(&self.store.run_voucher_expiry(at).await?),
            Job::LowBalance => to_json(&self.store.run_low_balance().await?),
            Job::Reconciliation => self.reconcile_ledger(at).await?,
            Job::Outbox => self.deliver(at).await?,
            Job::Challenges => self.challenges(at).await?,
            Job::ReportMonthly | Job::ReportSemiAnnual => self.report(job, at).await?,
            Job::StripeReconciliation => self.reconcile_payments(at).await?,
            Job::IncentiveMilestones => {
                let run = self
                    .store
                    .grant_milestones(at, &self.config.eligibility)
                    .await?;
                serde_json::json!({ "granted": run.granted, "refused": run.refused })
            }
            Job::ConsultingReminders => serde_json::json!({
                "reminders": self.store.send_consulting_reminders(at).await?,
                "lapsed": self.store.lapse_unrecorded_sessions(at).await?,
            }),
            Job::Housekeeping => {
                let before = at - chrono::Duration::days(i64::from(self.config.run_retention_days));
                serde_json::json!({ "runs_pruned": self.store.prune_job_runs(before).await? })
            }
        })
    }

    /// Hold timeouts: holds of dead proxy instances settled, then expired holds voided, in
    /// batches of 500.
    async fn resolve_holds(&self, at: NaiveDateTime) -> Result<serde_json::Value, WorkerError> {
        // Heartbeats are written on the real clock, so staleness is judged on it too
        // (the programme calendar may be moved by hand).
        let stale_before = voucherd_store::now()
            - chrono::Duration::milliseconds(
                i64::try_from(self.config.instance_stale_after_ms).unwrap_or(i64::MAX / 2),
            );
        let mut settled = 0;
        loop {
            let n = self.store.settle_dead_instances(stale_before, 500).await?;
            settled += n;
            if n < 500 {
                break;
            }
        }
        let mut resolved = 0;
        loop {
            let n = self.store.void_expired_holds_at(at, 500).await?;
            resolved += n;
            if n < 500 {
                break;
            }
        }
        Ok(serde_json::json!({
            "holds_resolved": resolved,
            "dead_instance_holds_settled": settled,
        }))
    }

    /// Reconciliation of the ledger; each difference found is logged.
    async fn reconcile_ledger(&self, at: NaiveDateTime) -> Result<serde_json::Value, WorkerError> {
        let (row, found) = self.store.run_reconciliation(at).await?;
        if !row.balanced {
            for d in &found.differences {
                tracing::error!(account = d.account_id.as_deref().unwrap_or("(ledger)"),
                    problem = %d.problem, "reconciliation found a difference");
            }
        }
        Ok(serde_json::json!({
            "reconciliation_id": row.id,
            "balanced": row.balanced,
            "accounts_checked": row.accounts_checked,
            "transfers_checked": row.transfers_checked,
            "differences": found.differences,
        }))
    }

    /// The monthly or semi-annual report of the last period ended before `at`.
    async fn report(&self, job: Job, at: NaiveDateTime) -> Result<serde_json::Value, WorkerError> {
        let kind = if job == Job::ReportMonthly {
            report::Kind::Monthly
        } else {
            report::Kind::SemiAnnual
        };
        let period = report::Period::last_before(kind, at.date());
        let (from, to) = (period.from(), period.to());
        let saved = report::generate(
            &self.store,
            period,
            &format!("job:{}", job.name()),
            at,
            &self.config.disclosure,
            &|_| {},
        )
        .await?;
        Ok(serde_json::json!({
            "period": {"from": from.to_string(), "to": to.to_string()},
            "report_id": saved.as_ref().map(|r| r.id.clone()),
            "already_existed": saved.is_none(),
        }))
    }

    /// Performs due milestones, then creates the next cycle of each decided recurring
    /// challenge, opening at its schedule's next time.
    async fn challenges(&self, at: NaiveDateTime) -> Result<serde_json::Value, WorkerError> {
        let performed = self
            .store
            .run_challenge_milestones(at, &self.config.eligibility)
            .await?;
        let mut cycles = Vec::new();
        for ch in self.store.recurring_without_next().await? {
            let Some(expr) = ch.recurrence.clone() else {
                continue;
            };
            let schedule = match cron::Schedule::from_str(&expr) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(challenge = %ch.id, error = %e, "bad recurrence; no next cycle");
                    continue;
                }
            };
            let Some(opens_at) = next_fire(&schedule, ch.opens_at.max(at)) else {
                continue;
            };
            // Created when the financial year it opens in begins, its pool set aside from that
            // year's fund — not months ahead from this one's.
            if !voucherd_domain::challenge::cycle_due(
                opens_at,
                at,
                self.config.eligibility.financial_year_start_month,
            ) {
                continue;
            }
            let id = ch.id.clone();
            match self.store.create_next_cycle(ch, opens_at, at).await {
                Ok(Some(next)) => cycles.push(serde_json::json!({
                    "previous_id": id, "id": next.id, "opens_at": next.opens_at.to_string()
                })),
                Ok(None) => {}
                // A fund too short for the next pool is retried on the next run.
                Err(e) => tracing::error!(challenge = %id, error = %e, "next cycle not created"),
            }
        }
        Ok(serde_json::json!({ "milestones": performed, "cycles_created": cycles }))
    }

    /// Sends what is due in the outbox; failures retry with exponential backoff, and give up
    /// after `mail_max_attempts` (or at once, for a message that can never render).
    /// Lists the Checkout Sessions of the look-back window from Stripe and applies what each
    /// says (paid, completed awaiting a delayed method, expired) exactly as its webhook would:
    /// a payment whose webhook was lost is credited here, once, and one already credited is
    /// left alone.
    async fn reconcile_payments(
        &self,
        at: NaiveDateTime,
    ) -> Result<serde_json::Value, WorkerError> {
        use voucherd_store::payments::{Applied, Via};
        let Some(stripe) = &self.stripe else {
            return Ok(serde_json::json!({ "skipped": "Stripe is not configured" }));
        };
        let since = at - chrono::Duration::hours(i64::from(self.config.stripe_lookback_hours));
        // Bounded: ten thousand sessions in a window is far beyond this programme's rate.
        let mut sessions = stripe
            .sessions_since(since.and_utc().timestamp(), 10_000)
            .await?;
        // Payments still waiting, however old (a delayed method can take days to clear):
        // each asked of by its own session.
        for id in self.store.unsettled_sessions(1_000).await? {
            if sessions.iter().any(|s| s.id == id) {
                continue;
            }
            match stripe.session(&id).await {
                Ok(s) => sessions.push(s),
                Err(e) => {
                    tracing::warn!(error = %e, session = %id, "could not ask Stripe of a session")
                }
            }
        }
        let (mut credited, mut changed, mut unchanged, mut foreign, mut failed) = (0, 0, 0, 0, 0);
        for s in &sessions {
            let Some(fact) = s.fact() else {
                foreign += usize::from(s.client_reference_id.is_none());
                continue;
            };
            let paid = matches!(fact, voucherd_store::payments::StripeFact::Paid { .. });
            // One session's trouble must not stop the others.
            match self
                .store
                .apply_stripe(fact, Via::Reconciliation, None, at)
                .await
            {
                Ok((Applied::Changed(_), _)) if paid => {
                    tracing::warn!(session = %s.id, "credited a paid session whose webhook never arrived");
                    credited += 1;
                }
                Ok((Applied::Changed(_), _)) => changed += 1,
                Ok(_) => unchanged += 1,
                Err(e) => {
                    tracing::error!(error = %e, session = %s.id, "could not apply a session");
                    failed += 1;
                }
            }
        }
        Ok(serde_json::json!({
            "sessions_seen": sessions.len(),
            "credited": credited,
            "other_changes": changed,
            "unchanged": unchanged,
            "not_ours": foreign,
            "failed": failed,
        }))
    }

    async fn deliver(&self, at: NaiveDateTime) -> Result<serde_json::Value, WorkerError> {
        let (mut sent, mut retrying, mut failed) = (0, 0, 0);
        // One message claimed at a time, right before it is sent: a claim never lapses while
        // the message waits behind others, so no other worker sends it too.
        let claim_ms = (self.config.mail.send_timeout_ms * 2) as i64;
        for _ in 0..MAX_SENDS_PER_RUN {
            let claimed_at = self.clock.now().max(at);
            let Some(m) = self
                .store
                .claim_outbox(claimed_at, 1, claim_ms)
                .await?
                .into_iter()
                .next()
            else {
                break;
            };
            let data: serde_json::Value =
                serde_json::from_str(&m.data).unwrap_or(serde_json::Value::Null);
            match self
                .mailer
                .send(&m.recipient, &m.template, &data, &m.id)
                .await
            {
                Ok(()) => {
                    self.store
                        .outbox_sent(m.id, m.next_attempt_at, self.clock.now())
                        .await?;
                    sent += 1;
                }
                Err(e) => {
                    let retry = e.is_transient() && m.attempts < self.config.mail_max_attempts;
                    let retry_at = retry.then(|| {
                        let shift = (m.attempts - 1).clamp(0, 20) as u32;
                        let delay_ms = self
                            .config
                            .mail_retry_base_ms
                            .saturating_mul(1 << shift)
                            .min(6 * 3_600_000);
                        at + chrono::Duration::milliseconds(delay_ms as i64)
                    });
                    if retry {
                        tracing::warn!(id = %m.id, attempt = m.attempts, error = %e, "delivery failed; will retry");
                        retrying += 1;
                    } else {
                        tracing::error!(id = %m.id, attempt = m.attempts, error = %e, "delivery failed; giving up");
                        failed += 1;
                    }
                    self.store
                        .outbox_failed(m.id, m.next_attempt_at, e.to_string(), retry_at)
                        .await?;
                }
            }
        }
        Ok(serde_json::json!({ "sent": sent, "retrying": retrying, "failed": failed }))
    }

    /// Runs due jobs until `shutdown` turns true; the job running then finishes within the
    /// grace period or is abandoned (and later taken over).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker = %self.id, jobs = self.jobs.len(), "worker scheduler running");
        let poll = Duration::from_millis(self.config.poll_ms.max(50));
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = self.tick(&shutdown).await {
                tracing::warn!(error = %e, "scheduler tick failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                r = shutdown.changed() => if r.is_err() { break },
            }
        }
        tracing::info!(worker = %self.id, "worker scheduler stopped");
    }
}

/// A finished run's outcome and summary, as recorded.
fn outcome(
    job: Job,
    result: Option<Result<serde_json::Value, WorkerError>>,
) -> (RunOutcome, serde_json::Value) {
    match result {
        Some(Ok(summary)) => (RunOutcome::Succeeded, summary),
        Some(Err(e)) => {
            tracing::error!(job = job.name(), error = %e, "job failed");
            (
                RunOutcome::Failed,
                serde_json::json!({ "error": e.to_string() }),
            )
        }
        None => {
            tracing::warn!(job = job.name(), "job abandoned at shutdown");
            (
                RunOutcome::Abandoned,
                serde_json::json!({ "reason": "shutdown" }),
            )
        }
    }
}

/// Messages one outbox run sends at most; the rest wait for the next run.
const MAX_SENDS_PER_RUN: usize = 1_000;

fn to_json<T: serde::Serialize>(report: &T) -> serde_json::Value {
    serde_json::to_value(report).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, s)
            .unwrap()
    }

    #[test]
    fn the_latest_fire_time_is_found_for_frequent_and_rare_schedules() {
        let s = cron::Schedule::from_str("*/10 * * * * *").unwrap();
        assert_eq!(
            latest_fire(&s, at(2026, 11, 27, 9, 0, 27)),
            Some(at(2026, 11, 27, 9, 0, 20))
        );
        let yearly = cron::Schedule::from_str("0 0 9 1 4 *").unwrap();
        assert_eq!(
            latest_fire(&yearly, at(2026, 11, 27, 9, 0, 0)),
            Some(at(2026, 4, 1, 9, 0, 0))
        );
        assert_eq!(
            next_fire(&yearly, at(2026, 11, 27, 9, 0, 0)),
            Some(at(2027, 4, 1, 9, 0, 0))
        );
    }

    #[test]
    fn a_bad_or_unknown_schedule_is_refused_by_name() {
        let bad = BTreeMap::from([("voucher-expiry".to_string(), "every day".to_string())]);
        let e = schedules(&bad).unwrap_err().to_string();
        assert!(
            e.contains("voucher-expiry") && e.contains("every day"),
            "{e}"
        );
        let unknown = BTreeMap::from([("coffee".to_string(), "0 * * * * *".to_string())]);
        assert!(schedules(&unknown)
            .unwrap_err()
            .to_string()
            .contains("coffee"));
        assert_eq!(schedules(&BTreeMap::new()).unwrap().len(), Job::ALL.len());
    }
}
