-- Leases: one hold may now cover many requests' usage (the proxy leases part of a balance
-- and spends it from memory), and such usage is posted when the lease closes. So a usage row
-- names its hold, not necessarily a post of its own; the post of a leased row is the
-- transfer resolving its hold (transfers.pending_id = usage_records.hold_id).
ALTER TABLE usage_records DROP CONSTRAINT usage_records_hold_id_key;
ALTER TABLE usage_records DROP CONSTRAINT usage_records_post_id_key;
ALTER TABLE usage_records ALTER COLUMN post_id DROP NOT NULL;
CREATE INDEX usage_records_hold ON usage_records (hold_id);
