-- Budget lines: the programme fund divided by financial year and, optionally, by whom the
-- money is for. Each line is a ledger account funded from the programme fund; an approval
-- draws from the most specific line that matches the organisation.
CREATE TABLE budget_lines (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    -- UK financial year, 1 April to 31 March, written 2026/27.
    financial_year TEXT NOT NULL,
    -- JSON {regions, sic_sections, size_bands}; an empty list means any.
    targeting TEXT NOT NULL,
    account_id TEXT NOT NULL UNIQUE REFERENCES accounts (id),
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX budget_lines_year ON budget_lines (financial_year);

-- The line a voucher was granted from (NULL: granted from the fund before lines existed, or
-- a challenge award).
ALTER TABLE vouchers ADD COLUMN budget_line_id TEXT REFERENCES budget_lines (id);
