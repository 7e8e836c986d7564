DROP INDEX reports_final_period;
DELETE FROM reports WHERE draft;
ALTER TABLE reports ADD CONSTRAINT reports_kind_period_from_period_to_key UNIQUE (kind, period_from, period_to);
ALTER TABLE reports DROP COLUMN draft;
