DROP FUNCTION record_usage_batch(jsonb, text[], text[]);
