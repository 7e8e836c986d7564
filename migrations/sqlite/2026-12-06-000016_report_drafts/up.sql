-- A report of a period that has not ended is a draft: kept and listed, never published, and
-- never in the way of the period's final report. One final report per kind and period; any
-- number of drafts. SQLite cannot drop a table constraint: the table is rebuilt.
CREATE TABLE reports_new (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('monthly', 'semi_annual')),
    period_from DATE NOT NULL,
    period_to DATE NOT NULL,
    generated_at TIMESTAMP NOT NULL,
    generated_by TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    content TEXT NOT NULL,
    public_content TEXT NOT NULL,
    html TEXT NOT NULL,
    public_html TEXT NOT NULL,
    draft BOOLEAN NOT NULL DEFAULT FALSE
);
-- Reports made before drafts existed for a period not yet over when they were made.
INSERT INTO reports_new
SELECT id, kind, period_from, period_to, generated_at, generated_by, schema_version,
       content_hash, content, public_content, html, public_html,
       period_to >= date(generated_at)
FROM reports;
DROP TABLE reports;
ALTER TABLE reports_new RENAME TO reports;
CREATE INDEX reports_generated ON reports (generated_at);
CREATE UNIQUE INDEX reports_final_period ON reports (kind, period_from, period_to) WHERE NOT draft;
