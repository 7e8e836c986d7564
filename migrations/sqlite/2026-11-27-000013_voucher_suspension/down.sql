DROP INDEX vouchers_company;
ALTER TABLE vouchers DROP COLUMN suspension_reason;
ALTER TABLE vouchers DROP COLUMN suspended_at;
