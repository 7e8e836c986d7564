DROP TABLE account_tokens;
DROP TABLE sessions;
ALTER TABLE users DROP COLUMN disabled_at;
ALTER TABLE users DROP COLUMN email_verified_at;
