-- The same as PostgreSQL's: the consulting tables go, and the role CHECK loses `adviser`
-- (SQLite rebuilds the users table for that, with foreign keys off).
PRAGMA foreign_keys = OFF;
BEGIN;
DROP TABLE consulting_bookings;
DROP TABLE consulting_slots;
DELETE FROM accounts WHERE id IN ('consulting-source', 'consulting-used');
CREATE TABLE users_old (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    full_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('applicant', 'admin', 'assessor')),
    created_at TIMESTAMP NOT NULL
);
INSERT INTO users_old (id, email, password_hash, full_name, role, created_at)
    SELECT id, email, password_hash, full_name, role, created_at FROM users;
DROP TABLE users;
ALTER TABLE users_old RENAME TO users;
COMMIT;
PRAGMA foreign_keys = ON;
