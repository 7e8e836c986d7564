-- Per-key options: test or live mode, allowed models, rate and concurrency limits, a monthly
-- spend cap, expiry, and rotation.
ALTER TABLE api_keys ADD COLUMN mode TEXT NOT NULL DEFAULT 'live' CHECK (mode IN ('live', 'test'));
ALTER TABLE api_keys ADD COLUMN allowed_models TEXT;
ALTER TABLE api_keys ADD COLUMN rpm INTEGER;
ALTER TABLE api_keys ADD COLUMN tpm INTEGER;
ALTER TABLE api_keys ADD COLUMN max_concurrent INTEGER;
ALTER TABLE api_keys ADD COLUMN monthly_spend_cap BIGINT;
ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMP;
ALTER TABLE api_keys ADD COLUMN rotated_to TEXT;

-- What a capped key has spent and holds in a calendar month (YYYY-MM), kept in the same
-- transactions as the ledger holds it mirrors.
CREATE TABLE key_spend (
    api_key_id TEXT NOT NULL REFERENCES api_keys (id),
    month TEXT NOT NULL,
    spent BIGINT NOT NULL DEFAULT 0 CHECK (spent >= 0),
    held BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
    PRIMARY KEY (api_key_id, month)
);

-- Which key and month a usage hold counts against, so its release finds the counter.
CREATE TABLE capped_holds (
    hold_id TEXT PRIMARY KEY NOT NULL REFERENCES transfers (id),
    api_key_id TEXT NOT NULL REFERENCES api_keys (id),
    month TEXT NOT NULL,
    amount BIGINT NOT NULL
);

-- A free allowance per organisation for test-mode keys.
INSERT INTO accounts (id, kind, flags, currency, created_at) VALUES
    ('test-funding', 'test_funding', 0, 'GBP', now() AT TIME ZONE 'UTC');
