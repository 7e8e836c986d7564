-- A busy lease is extended instead of closed and reopened: transfers are immutable, so the
-- later timeout its instance bought is kept beside its registration, and the hold-timeouts
-- job leaves a hold alone until then.
ALTER TABLE instance_holds ADD COLUMN extended_to TIMESTAMP;
