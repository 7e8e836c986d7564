-- Leases: one hold may now cover many requests' usage (the proxy leases part of a balance
-- and spends it from memory), and such usage is posted when the lease closes. So a usage row
-- names its hold, not necessarily a post of its own; the post of a leased row is the
-- transfer resolving its hold (transfers.pending_id = usage_records.hold_id).
CREATE TABLE usage_records_new (
    id TEXT PRIMARY KEY NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    voucher_id TEXT NOT NULL REFERENCES vouchers (id),
    api_key_id TEXT NOT NULL REFERENCES api_keys (id),
    model TEXT NOT NULL,
    price_id TEXT NOT NULL REFERENCES prices (id),
    input_per_million BIGINT NOT NULL,
    cached_input_per_million BIGINT NOT NULL,
    output_per_million BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    cached_prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost BIGINT NOT NULL,
    hold_id TEXT NOT NULL REFERENCES transfers (id),
    post_id TEXT REFERENCES transfers (id),
    upstream_status INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL
);
INSERT INTO usage_records_new SELECT * FROM usage_records;
DROP TABLE usage_records;
ALTER TABLE usage_records_new RENAME TO usage_records;
CREATE INDEX usage_records_voucher ON usage_records (voucher_id, created_at);
CREATE INDEX usage_records_hold ON usage_records (hold_id);
CREATE TRIGGER usage_records_no_update BEFORE UPDATE ON usage_records
BEGIN SELECT RAISE(ABORT, 'usage records are immutable'); END;
CREATE TRIGGER usage_records_no_delete BEFORE DELETE ON usage_records
BEGIN SELECT RAISE(ABORT, 'usage records are immutable'); END;
