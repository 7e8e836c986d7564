ALTER TABLE applications DROP COLUMN ownership_note;
ALTER TABLE applications DROP COLUMN ownership_at;
ALTER TABLE applications DROP COLUMN ownership_by;
ALTER TABLE applications DROP COLUMN ownership_method;
ALTER TABLE applications DROP COLUMN ownership;
