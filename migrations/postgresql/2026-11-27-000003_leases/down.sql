DROP INDEX usage_records_hold;
-- The relaxed constraints are not restored: leased usage rows share their hold.
