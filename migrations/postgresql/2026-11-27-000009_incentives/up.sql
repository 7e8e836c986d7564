-- Tailored incentives: versioned rules (a new version per change; the key names the rule
-- across versions) and, per voucher, the rule versions applied at approval.
ALTER TABLE applications ADD COLUMN university_spin_off BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE incentive_rules (
    id TEXT PRIMARY KEY NOT NULL,
    rule_key TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    name TEXT NOT NULL,
    condition_json TEXT NOT NULL,
    effect_json TEXT NOT NULL,
    -- Where milestone bonuses are paid from (NULL: the programme fund).
    budget_line_id TEXT REFERENCES budget_lines (id),
    active BOOLEAN NOT NULL,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at TIMESTAMP NOT NULL,
    UNIQUE (rule_key, version)
);

CREATE TABLE voucher_incentives (
    id TEXT PRIMARY KEY NOT NULL,
    voucher_id TEXT NOT NULL REFERENCES vouchers (id),
    rule_id TEXT NOT NULL REFERENCES incentive_rules (id),
    -- Why it matched, JSON array of phrases.
    why TEXT NOT NULL,
    -- Added at approval, or (milestone) to grant when the trigger happens.
    amount BIGINT NOT NULL CHECK (amount >= 0),
    milestone BOOLEAN NOT NULL,
    granted_at TIMESTAMP,
    UNIQUE (voucher_id, rule_id)
);
CREATE INDEX voucher_incentives_pending ON voucher_incentives (milestone, granted_at);
