ALTER TABLE vouchers DROP COLUMN budget_line_id;
DROP TABLE budget_lines;
