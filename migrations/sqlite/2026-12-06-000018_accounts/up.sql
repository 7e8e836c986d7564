-- Accounts: verified email addresses, disabled accounts, server-side sessions (every access
-- token names one; signing out, a password change, a role change or disabling the account
-- ends them at once), and single-use account tokens (email verification, password reset,
-- staff invitations) of which only a hash is kept.
ALTER TABLE users ADD COLUMN email_verified_at TIMESTAMP;
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMP;
-- Accounts that existed before verification was required keep working.
UPDATE users SET email_verified_at = created_at;

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP,
    ended_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE account_tokens (
    -- SHA-256 of the secret sent by email; the secret itself is never stored.
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    purpose TEXT NOT NULL,
    -- SHA-256 of the short code sent beside a verification link, for typing in.
    code_hash TEXT,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);
