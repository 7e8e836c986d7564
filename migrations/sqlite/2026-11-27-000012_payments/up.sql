-- Payments from SMEs through Stripe Checkout: co-funding contributions and top-ups.

-- A co-funded voucher waits for its share: it spends only once the share is paid.
ALTER TABLE vouchers ADD COLUMN contribution_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE vouchers ADD COLUMN contribution_paid_at TIMESTAMP;

-- One row per Checkout Session we asked Stripe for. Its id is the session's
-- client_reference_id, which is how webhooks and reconciliation find it again.
CREATE TABLE payments (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('contribution', 'top_up')),
    owner_id TEXT NOT NULL REFERENCES users (id),
    voucher_id TEXT REFERENCES vouchers (id),
    -- The ledger account the payment credits.
    account_id TEXT NOT NULL REFERENCES accounts (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    amount_pence BIGINT NOT NULL CHECK (amount_pence > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'processing', 'paid', 'failed', 'expired', 'refunded')),
    stripe_session_id TEXT UNIQUE,
    checkout_url TEXT,
    payment_intent_id TEXT,
    -- What Stripe reports refunded in all, what the ledger took back, and what it could not
    -- (already spent): the shortfall administrators follow up.
    refunded_micros BIGINT NOT NULL DEFAULT 0,
    reversed_micros BIGINT NOT NULL DEFAULT 0,
    shortfall_micros BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    paid_at TIMESTAMP,
    -- How the payment was learnt of: 'webhook' or 'reconciliation'.
    paid_via TEXT
);
CREATE INDEX payments_owner ON payments (owner_id, created_at);
CREATE INDEX payments_intent ON payments (payment_intent_id);
CREATE INDEX payments_status ON payments (status, created_at);
-- A voucher's contribution is asked for once at a time: two tabs cannot make two sessions.
CREATE UNIQUE INDEX payments_one_open_contribution ON payments (voucher_id)
    WHERE kind = 'contribution' AND status IN ('open', 'processing');

-- Stripe events processed, by id: a replay finds its id here and changes nothing.
CREATE TABLE stripe_events (
    id TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    payment_id TEXT REFERENCES payments (id),
    outcome TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL
);

-- Purchased credit consumed through the proxy is the SME's own money, not programme spending:
-- it is consumed to an account of its own.
INSERT INTO accounts (id, kind, flags, currency, created_at) VALUES
    ('purchased-usage', 'usage', 0, 'GBP', CURRENT_TIMESTAMP),
    ('stripe-clearing', 'stripe_clearing', 0, 'GBP', CURRENT_TIMESTAMP);
