CREATE INDEX usage_records_hold ON usage_records (hold_id);
DROP TABLE hold_usage;
