-- A usage row not yet posted (a leased request's) is posted later with its hold, so it may only
-- join a hold that is still open. The database checks it as the row is inserted, so the usage
-- writer's batch needs no statement of its own for it (docs/ARCHITECTURE.md, "Batching").
-- SQLite runs one write transaction at a time, so the check cannot race a resolution. The same
-- rule on PostgreSQL, which could race in a trigger, lives in the function record_usage_batch
-- (this migration's PostgreSQL side), which locks the holds before it checks them.
CREATE TRIGGER usage_joins_open_hold BEFORE INSERT ON usage_records
WHEN NEW.post_id IS NULL AND EXISTS (SELECT 1 FROM transfers WHERE pending_id = NEW.hold_id)
BEGIN
    SELECT RAISE(ABORT, 'hold_resolved');
END;
