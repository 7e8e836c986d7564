-- Short references people can read out and type (domain::reference): APP-7K2M9Q for an
-- application, VCH-7K2M9Q for the voucher granted on it, with the same six characters of
-- Crockford's base 32. The store draws new ones; rows made before this get theirs here.
ALTER TABLE applications ADD COLUMN reference TEXT NOT NULL DEFAULT '';
ALTER TABLE vouchers ADD COLUMN reference TEXT NOT NULL DEFAULT '';

UPDATE applications SET reference = 'APP-'
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (abs(random()) % 32) + 1, 1) || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (abs(random()) % 32) + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (abs(random()) % 32) + 1, 1) || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (abs(random()) % 32) + 1, 1)
    || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (abs(random()) % 32) + 1, 1) || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (abs(random()) % 32) + 1, 1);

UPDATE vouchers SET reference = 'VCH-' || substr(
    (SELECT a.reference FROM applications a WHERE a.id = vouchers.application_id), 5);

CREATE UNIQUE INDEX applications_reference ON applications (reference);
CREATE UNIQUE INDEX vouchers_reference ON vouchers (reference);
