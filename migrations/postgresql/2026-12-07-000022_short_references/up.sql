-- Short references people can read out and type (domain::reference): APP-7K2M9Q for an
-- application, VCH-7K2M9Q for the voucher granted on it, with the same six characters of
-- Crockford's base 32. The store draws new ones; rows made before this get theirs here.
ALTER TABLE applications ADD COLUMN reference TEXT;
ALTER TABLE vouchers ADD COLUMN reference TEXT;

UPDATE applications SET reference = 'APP-' || (
    SELECT string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', floor(random() * 32)::int + 1, 1), '')
    FROM generate_series(1, 6) WHERE applications.id IS NOT NULL);

UPDATE vouchers SET reference = 'VCH-' || substr(
    (SELECT a.reference FROM applications a WHERE a.id = vouchers.application_id), 5);

ALTER TABLE applications ALTER COLUMN reference SET NOT NULL;
ALTER TABLE vouchers ALTER COLUMN reference SET NOT NULL;
CREATE UNIQUE INDEX applications_reference ON applications (reference);
CREATE UNIQUE INDEX vouchers_reference ON vouchers (reference);
