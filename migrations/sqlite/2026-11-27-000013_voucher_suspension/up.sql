-- An administrator may suspend a voucher (its keys stop at once, whatever pays) and reinstate
-- it; both are audited with their reasons.
ALTER TABLE vouchers ADD COLUMN suspended_at TIMESTAMP;
ALTER TABLE vouchers ADD COLUMN suspension_reason TEXT;
CREATE INDEX vouchers_company ON vouchers (company_number);
