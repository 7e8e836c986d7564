DELETE FROM reports WHERE draft;
CREATE TABLE reports_old (
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
    UNIQUE (kind, period_from, period_to)
);
INSERT INTO reports_old
SELECT id, kind, period_from, period_to, generated_at, generated_by, schema_version,
       content_hash, content, public_content, html, public_html
FROM reports;
DROP TABLE reports;
ALTER TABLE reports_old RENAME TO reports;
CREATE INDEX reports_generated ON reports (generated_at);
