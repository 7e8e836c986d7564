-- SQLite only (a view whose trigger writes a usage batch in one statement). On PostgreSQL the
-- function record_usage_batch (migrations 000021 and 000023) already does it in one statement.
SELECT 1;
