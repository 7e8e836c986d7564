-- Four eyes: an approval above the configured amount waits for a second administrator.
ALTER TABLE applications DROP CONSTRAINT applications_status_check;
ALTER TABLE applications ADD CONSTRAINT applications_status_check CHECK (status IN
    ('submitted', 'ineligible', 'awaiting_second_approval', 'approved', 'rejected'));

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
