-- Daily usage rollups, maintained in the same transaction as the usage rows they count, so
-- reports read these (their size grows with vouchers × models × days) rather than raw rows.
-- Test-mode usage is not programme spending and is left out.
CREATE TABLE usage_daily (
    day DATE NOT NULL,
    voucher_id TEXT NOT NULL REFERENCES vouchers (id),
    model TEXT NOT NULL,
    requests BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    cached_prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost BIGINT NOT NULL,
    PRIMARY KEY (day, voucher_id, model)
);
CREATE INDEX usage_daily_voucher ON usage_daily (voucher_id, day);
