-- SQLite only (the view usage_batch_rows, whose trigger writes each row of a usage batch). On
-- PostgreSQL the function record_usage_batch (migrations 000021 and 000023) writes a batch.
SELECT 1;
