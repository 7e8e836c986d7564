DROP TRIGGER usage_joins_open_hold;
