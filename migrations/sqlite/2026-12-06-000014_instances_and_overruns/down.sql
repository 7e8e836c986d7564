ALTER TABLE api_keys DROP COLUMN suspension_reason;
ALTER TABLE api_keys DROP COLUMN suspended_at;
DROP INDEX usage_records_overrun;
ALTER TABLE usage_records DROP COLUMN overrun_micros;
DROP INDEX instance_holds_instance;
DROP TABLE instance_holds;
DROP INDEX proxy_instances_heartbeat;
DROP TABLE proxy_instances;
