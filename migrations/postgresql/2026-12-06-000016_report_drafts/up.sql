-- A report of a period that has not ended is a draft: kept and listed, never published, and
-- never in the way of the period's final report. One final report per kind and period; any
-- number of drafts.
ALTER TABLE reports ADD COLUMN draft BOOLEAN NOT NULL DEFAULT FALSE;
-- Reports made before drafts existed for a period not yet over when they were made.
UPDATE reports SET draft = TRUE WHERE period_to >= CAST(generated_at AS DATE);
ALTER TABLE reports DROP CONSTRAINT reports_kind_period_from_period_to_key;
CREATE UNIQUE INDEX reports_final_period ON reports (kind, period_from, period_to) WHERE NOT draft;
