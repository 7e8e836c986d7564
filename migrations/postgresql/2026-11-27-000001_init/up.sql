-- voucherd schema (PostgreSQL). Keep in step with ../../sqlite: same names, same meaning.
-- Timestamps are naive UTC.

CREATE FUNCTION forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END
$$;

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    full_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('applicant', 'admin', 'assessor')),
    created_at TIMESTAMP NOT NULL
);

-- Ledger accounts. The four totals are a cache of the transfers, updated in the same
-- transaction; the CHECKs are the database's own guard against overdraft.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    flags INTEGER NOT NULL,
    currency TEXT NOT NULL,
    debits_pending BIGINT NOT NULL DEFAULT 0,
    debits_posted BIGINT NOT NULL DEFAULT 0,
    credits_pending BIGINT NOT NULL DEFAULT 0,
    credits_posted BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    CHECK (debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 AND credits_posted >= 0),
    CHECK ((flags & 1) = 0 OR debits_pending + debits_posted <= credits_posted),
    CHECK ((flags & 2) = 0 OR credits_pending + credits_posted <= debits_posted)
);

CREATE TABLE transfers (
    id TEXT PRIMARY KEY NOT NULL,
    debit_account_id TEXT NOT NULL REFERENCES accounts (id),
    credit_account_id TEXT NOT NULL REFERENCES accounts (id),
    amount BIGINT NOT NULL CHECK (amount >= 0),
    kind TEXT NOT NULL CHECK (kind IN ('single', 'pending', 'post', 'void')),
    -- A post or void names the hold it resolves; UNIQUE makes each hold resolve once.
    pending_id TEXT UNIQUE REFERENCES transfers (id),
    code TEXT NOT NULL,
    memo TEXT NOT NULL,
    timeout_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((kind IN ('post', 'void')) = (pending_id IS NOT NULL)),
    CHECK ((kind = 'pending') = (timeout_at IS NOT NULL))
);
CREATE INDEX transfers_debit_account ON transfers (debit_account_id, created_at);
CREATE INDEX transfers_credit_account ON transfers (credit_account_id, created_at);
CREATE INDEX transfers_hold_timeout ON transfers (timeout_at) WHERE kind = 'pending';

CREATE TRIGGER transfers_immutable BEFORE UPDATE OR DELETE ON transfers
FOR EACH ROW EXECUTE FUNCTION forbid_change('transfers are immutable');

-- Well-known programme accounts.
INSERT INTO accounts (id, kind, flags, currency, created_at) VALUES
    ('funding-source', 'funding_source', 0, 'GBP', now() AT TIME ZONE 'UTC'),
    ('programme-fund', 'programme_fund', 1, 'GBP', now() AT TIME ZONE 'UTC'),
    ('usage', 'usage', 0, 'GBP', now() AT TIME ZONE 'UTC'),
    ('overrun-loss', 'overrun_loss', 0, 'GBP', now() AT TIME ZONE 'UTC'),
    ('forfeited', 'forfeited', 0, 'GBP', now() AT TIME ZONE 'UTC');

CREATE TABLE applications (
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
    status TEXT NOT NULL CHECK (status IN ('submitted', 'ineligible', 'approved', 'rejected')),
    -- Set while the application or its voucher is live: one live per company, enforced here.
    live_company_number TEXT UNIQUE,
    decided_by TEXT REFERENCES users (id),
    decided_at TIMESTAMP,
    decision_reason TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX applications_applicant ON applications (applicant_id, created_at);
CREATE INDEX applications_status ON applications (status, created_at);

CREATE TABLE vouchers (
    id TEXT PRIMARY KEY NOT NULL,
    application_id TEXT NOT NULL UNIQUE REFERENCES applications (id),
    owner_id TEXT NOT NULL REFERENCES users (id),
    account_id TEXT NOT NULL UNIQUE REFERENCES accounts (id),
    company_number TEXT NOT NULL,
    currency TEXT NOT NULL,
    granted BIGINT NOT NULL CHECK (granted > 0),
    status TEXT NOT NULL CHECK (status IN ('active', 'expired')),
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX vouchers_owner ON vouchers (owner_id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    voucher_id TEXT NOT NULL REFERENCES vouchers (id),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);
CREATE INDEX api_keys_voucher ON api_keys (voucher_id);

CREATE TABLE prices (
    id TEXT PRIMARY KEY NOT NULL,
    model TEXT NOT NULL,
    input_per_million BIGINT NOT NULL CHECK (input_per_million >= 0),
    cached_input_per_million BIGINT NOT NULL CHECK (cached_input_per_million >= 0),
    output_per_million BIGINT NOT NULL CHECK (output_per_million >= 0),
    effective_from TIMESTAMP NOT NULL,
    created_by TEXT REFERENCES users (id),
    created_at TIMESTAMP NOT NULL,
    UNIQUE (model, effective_from)
);

CREATE TABLE usage_records (
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
    hold_id TEXT NOT NULL UNIQUE REFERENCES transfers (id),
    post_id TEXT NOT NULL UNIQUE REFERENCES transfers (id),
    upstream_status INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX usage_records_voucher ON usage_records (voucher_id, created_at);
CREATE TRIGGER usage_records_immutable BEFORE UPDATE OR DELETE ON usage_records
FOR EACH ROW EXECUTE FUNCTION forbid_change('usage records are immutable');

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY NOT NULL,
    actor_id TEXT REFERENCES users (id),
    action TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    reason TEXT,
    details TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject_type, subject_id);
CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION forbid_change('the audit log is append-only');
