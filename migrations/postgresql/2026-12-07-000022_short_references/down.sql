DROP INDEX vouchers_reference;
DROP INDEX applications_reference;
ALTER TABLE vouchers DROP COLUMN reference;
ALTER TABLE applications DROP COLUMN reference;
