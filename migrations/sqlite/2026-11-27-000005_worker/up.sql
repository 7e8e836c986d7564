-- The worker: scheduled job runs, the email outbox and reconciliation results.

-- One row per run. run_key is the job and its scheduled time (a manual run gets a key of its
-- own): UNIQUE makes a scheduled run happen once however many workers see it due. A run whose
-- worker stops beating its heartbeat may be taken over.
CREATE TABLE job_runs (
    id TEXT PRIMARY KEY NOT NULL,
    run_key TEXT NOT NULL UNIQUE,
    job TEXT NOT NULL,
    scheduled_at TIMESTAMP NOT NULL,
    trigger_kind TEXT NOT NULL CHECK (trigger_kind IN ('schedule', 'manual')),
    worker_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    started_at TIMESTAMP NOT NULL,
    heartbeat_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    outcome TEXT NOT NULL CHECK (outcome IN ('running', 'succeeded', 'failed', 'abandoned')),
    summary TEXT NOT NULL
);
CREATE INDEX job_runs_job ON job_runs (job, scheduled_at);
CREATE INDEX job_runs_started ON job_runs (started_at);

-- Notifications, written in the same transaction as the event that causes them and
-- delivered by the worker. dedupe_key makes an event notify once however often it is seen.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    recipient TEXT NOT NULL,
    template TEXT NOT NULL,
    data TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL,
    -- Also the delivery claim: a worker moves it forward before sending.
    next_attempt_at TIMESTAMP NOT NULL,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

CREATE TABLE reconciliations (
    id TEXT PRIMARY KEY NOT NULL,
    checked_at TIMESTAMP NOT NULL,
    accounts_checked BIGINT NOT NULL,
    transfers_checked BIGINT NOT NULL,
    balanced BOOLEAN NOT NULL,
    differences TEXT NOT NULL
);
CREATE INDEX reconciliations_checked ON reconciliations (checked_at);
