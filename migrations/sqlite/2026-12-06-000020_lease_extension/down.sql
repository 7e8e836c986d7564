ALTER TABLE instance_holds DROP COLUMN extended_to;
