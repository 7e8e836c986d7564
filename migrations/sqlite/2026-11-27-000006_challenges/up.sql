-- Innovation challenges. A challenge's status is derived from its milestone dates, never
-- stored; challenge_milestones records which milestones' side effects were performed (its
-- primary key makes each happen once, however many workers run).
CREATE TABLE challenges (
    id TEXT PRIMARY KEY NOT NULL,
    title TEXT NOT NULL,
    theme TEXT NOT NULL,
    -- JSON array of organisation kinds: startup, university_spin_off, sme.
    eligible_kinds TEXT NOT NULL,
    opens_at TIMESTAMP NOT NULL,
    closes_at TIMESTAMP NOT NULL,
    assessors_assigned_at TIMESTAMP NOT NULL,
    assessment_deadline TIMESTAMP NOT NULL,
    decisions_released_at TIMESTAMP NOT NULL,
    -- JSON array of {name, max_score, weight}.
    criteria TEXT NOT NULL,
    assessors_per_entry INTEGER NOT NULL CHECK (assessors_per_entry BETWEEN 1 AND 10),
    award_pool BIGINT NOT NULL CHECK (award_pool > 0),
    -- JSON array of micros, first place first; their sum is at most the pool.
    award_amounts TEXT NOT NULL,
    pilot_places INTEGER NOT NULL CHECK (pilot_places >= 0),
    -- A cron expression: when the next cycle opens. NULL for a one-off challenge.
    recurrence TEXT,
    -- The cycle this one follows; UNIQUE so a cycle is created once.
    previous_id TEXT UNIQUE REFERENCES challenges (id),
    fund_account_id TEXT NOT NULL UNIQUE REFERENCES accounts (id),
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at TIMESTAMP NOT NULL,
    CHECK (opens_at < closes_at AND closes_at < assessors_assigned_at
        AND assessors_assigned_at < assessment_deadline AND assessment_deadline < decisions_released_at)
);
CREATE INDEX challenges_opens ON challenges (opens_at);

CREATE TABLE challenge_entries (
    id TEXT PRIMARY KEY NOT NULL,
    challenge_id TEXT NOT NULL REFERENCES challenges (id),
    entrant_id TEXT NOT NULL REFERENCES users (id),
    company_number TEXT NOT NULL,
    organisation_name TEXT NOT NULL,
    organisation_kind TEXT NOT NULL CHECK (organisation_kind IN ('startup', 'university_spin_off', 'sme')),
    region TEXT NOT NULL,
    sic_code TEXT NOT NULL,
    title TEXT NOT NULL,
    summary TEXT NOT NULL,
    submitted_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    locked_at TIMESTAMP,
    score_bp BIGINT,
    entry_rank INTEGER,
    award BIGINT NOT NULL DEFAULT 0,
    pilot_invited BOOLEAN NOT NULL DEFAULT FALSE,
    decided_at TIMESTAMP,
    -- One entry per organisation per challenge.
    UNIQUE (challenge_id, company_number)
);

-- Conflicts of interest an assessor declares with an organisation; each lasts a year and must
-- then be declared again.
CREATE TABLE assessor_conflicts (
    id TEXT PRIMARY KEY NOT NULL,
    assessor_id TEXT NOT NULL REFERENCES users (id),
    company_number TEXT NOT NULL,
    reason TEXT NOT NULL,
    declared_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX assessor_conflicts_assessor ON assessor_conflicts (assessor_id, expires_at);

CREATE TABLE challenge_allocations (
    entry_id TEXT NOT NULL REFERENCES challenge_entries (id),
    assessor_id TEXT NOT NULL REFERENCES users (id),
    allocated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (entry_id, assessor_id)
);
CREATE INDEX challenge_allocations_assessor ON challenge_allocations (assessor_id);

CREATE TABLE challenge_scores (
    entry_id TEXT NOT NULL,
    assessor_id TEXT NOT NULL,
    -- JSON object: criterion name → score.
    scores TEXT NOT NULL,
    percent_bp BIGINT NOT NULL CHECK (percent_bp BETWEEN 0 AND 10000),
    comment TEXT NOT NULL,
    submitted_at TIMESTAMP NOT NULL,
    PRIMARY KEY (entry_id, assessor_id),
    FOREIGN KEY (entry_id, assessor_id) REFERENCES challenge_allocations (entry_id, assessor_id)
);

CREATE TABLE challenge_milestones (
    challenge_id TEXT NOT NULL REFERENCES challenges (id),
    milestone TEXT NOT NULL,
    performed_at TIMESTAMP NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (challenge_id, milestone)
);
