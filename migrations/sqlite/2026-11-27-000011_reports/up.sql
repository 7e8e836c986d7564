-- Generated reports, kept: when, by whom or which job, for which period, and a hash of the
-- content. One report per kind and period.
CREATE TABLE reports (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('monthly', 'semi_annual')),
    period_from DATE NOT NULL,
    period_to DATE NOT NULL,
    generated_at TIMESTAMP NOT NULL,
    generated_by TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    -- The internal report, JSON; and the public summary (disclosure-controlled), JSON.
    content TEXT NOT NULL,
    public_content TEXT NOT NULL,
    -- Both rendered as printable HTML with server-drawn SVG charts.
    html TEXT NOT NULL,
    public_html TEXT NOT NULL,
    UNIQUE (kind, period_from, period_to)
);
CREATE INDEX reports_generated ON reports (generated_at);

-- Reports total the period's per-voucher movements (grants, forfeits, awards, bonuses) by
-- code: an index keeps that from scanning the per-request transfers.
CREATE INDEX transfers_code_created ON transfers (code, created_at);
