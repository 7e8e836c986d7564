-- Four eyes: an approval above the configured amount waits for a second administrator.
-- SQLite cannot change a CHECK in place: the applications table is rebuilt (with foreign keys
-- off, so the tables that refer to it keep their rows and references).
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE applications_new (
    id TEXT PRIMARY KEY NOT NULL,
    applicant_id TEXT NOT NULL REFERENCES users (id),
    company_number TEXT NOT NULL,
    company_name TEXT NOT NULL,
    employees INTEGER NOT NULL,
    annual_turnover BIGINT NOT NULL,
    balance_sheet_total BIGINT NOT NULL,
    region TEXT NOT NULL,
    sic_code TEXT NOT NULL,
    trading_since DATE NOT NULL,
    use_case TEXT NOT NULL,
    subsidy_declarations TEXT NOT NULL,
    eligible BOOLEAN NOT NULL,
    checks TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN
        ('submitted', 'ineligible', 'awaiting_second_approval', 'approved', 'rejected')),
    live_company_number TEXT UNIQUE,
    decided_by TEXT REFERENCES users (id),
    decided_at TIMESTAMP,
    decision_reason TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    university_spin_off BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO applications_new
    SELECT id, applicant_id, company_number, company_name, employees, annual_turnover,
        balance_sheet_total, region, sic_code, trading_since, use_case, subsidy_declarations,
        eligible, checks, status, live_company_number, decided_by, decided_at, decision_reason,
        created_at, updated_at, university_spin_off
    FROM applications;
DROP TABLE applications;
ALTER TABLE applications_new RENAME TO applications;
CREATE INDEX applications_applicant ON applications (applicant_id, created_at);
CREATE INDEX applications_status ON applications (status, created_at);

-- The first approval of an application that needs a second: what was approved, by whom and
-- why. No money moves until a different administrator confirms.
CREATE TABLE second_approvals (
    application_id TEXT PRIMARY KEY NOT NULL REFERENCES applications (id),
    requested_by TEXT NOT NULL REFERENCES users (id),
    reason TEXT NOT NULL,
    -- The amount asked for, before incentives; the total with them as then evaluated.
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    total_micros BIGINT NOT NULL CHECK (total_micros > 0),
    valid_days INTEGER NOT NULL CHECK (valid_days > 0),
    requested_at TIMESTAMP NOT NULL,
    -- Set when the second administrator confirms or rejects.
    decided_by TEXT REFERENCES users (id),
    outcome TEXT CHECK (outcome IN ('confirmed', 'rejected')),
    decided_at TIMESTAMP,
    CHECK (decided_by IS NULL OR decided_by <> requested_by)
);
COMMIT;
PRAGMA foreign_keys = ON;
