DROP TRIGGER usage_batches_insert;
DROP VIEW usage_batches;
