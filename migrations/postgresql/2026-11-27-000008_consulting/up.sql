-- Advisers join the roles.
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('applicant', 'admin', 'assessor', 'adviser'));

-- Consulting: advisers publish slots; an SME books one against its voucher's consulting
-- hours, which are a ledger of their own unit (minutes, currency 'MIN'), never money.
CREATE TABLE consulting_slots (
    id TEXT PRIMARY KEY NOT NULL,
    adviser_id TEXT NOT NULL REFERENCES users (id),
    starts_at TIMESTAMP NOT NULL,
    ends_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    CHECK (starts_at < ends_at)
);
CREATE INDEX consulting_slots_adviser ON consulting_slots (adviser_id, starts_at);
CREATE INDEX consulting_slots_starts ON consulting_slots (starts_at);

CREATE TABLE consulting_bookings (
    id TEXT PRIMARY KEY NOT NULL,
    slot_id TEXT NOT NULL REFERENCES consulting_slots (id),
    voucher_id TEXT NOT NULL REFERENCES vouchers (id),
    booked_by TEXT NOT NULL REFERENCES users (id),
    minutes BIGINT NOT NULL CHECK (minutes > 0),
    -- The hours held for the session: posted when the adviser records it, voided on cancel.
    hold_id TEXT NOT NULL UNIQUE REFERENCES transfers (id),
    booked_at TIMESTAMP NOT NULL,
    cancelled_at TIMESTAMP,
    outcome TEXT CHECK (outcome IN ('attended', 'no_show')),
    -- Private to the programme.
    notes TEXT,
    -- Visible to the SME.
    next_steps TEXT,
    recorded_at TIMESTAMP
);
-- A slot is booked at most once at a time, and a voucher has one upcoming booking at most:
-- the database refuses a second, however many requests race.
CREATE UNIQUE INDEX consulting_bookings_slot ON consulting_bookings (slot_id) WHERE cancelled_at IS NULL;
CREATE UNIQUE INDEX consulting_bookings_voucher ON consulting_bookings (voucher_id)
    WHERE cancelled_at IS NULL AND outcome IS NULL;

INSERT INTO accounts (id, kind, flags, currency, created_at) VALUES
    ('consulting-source', 'consulting_source', 0, 'MIN', CURRENT_TIMESTAMP),
    ('consulting-used', 'consulting_used', 0, 'MIN', CURRENT_TIMESTAMP);
