DROP TABLE consulting_bookings;
DROP TABLE consulting_slots;
DELETE FROM accounts WHERE id IN ('consulting-source', 'consulting-used');
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('applicant', 'admin', 'assessor'));
