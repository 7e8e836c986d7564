-- Proxy instances record a heartbeat; every hold a proxy opens (a lease or a request's own
-- hold) names its instance, so the hold-timeouts job can settle a dead instance's holds as
-- soon as its heartbeat lapses instead of at their timeout.
CREATE TABLE proxy_instances (
    id TEXT PRIMARY KEY,
    started_at TIMESTAMP NOT NULL,
    heartbeat_at TIMESTAMP NOT NULL
);
CREATE INDEX proxy_instances_heartbeat ON proxy_instances (heartbeat_at);
CREATE TABLE instance_holds (
    hold_id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL
);
CREATE INDEX instance_holds_instance ON instance_holds (instance_id);

-- Usage above what its request held: the provider billed more than the hold bounded. Shown
-- per key and model, and a key whose overrun passes the programme's threshold is suspended.
ALTER TABLE usage_records ADD COLUMN overrun_micros BIGINT NOT NULL DEFAULT 0;
CREATE INDEX usage_records_overrun ON usage_records (api_key_id) WHERE overrun_micros > 0;
ALTER TABLE api_keys ADD COLUMN suspended_at TIMESTAMP;
ALTER TABLE api_keys ADD COLUMN suspension_reason TEXT;
