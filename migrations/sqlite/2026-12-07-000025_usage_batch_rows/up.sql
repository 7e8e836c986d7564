-- A usage batch as one multi-row INSERT into the view usage_batch_rows (docs/ARCHITECTURE.md,
-- "Batching"), in place of the batch as JSON (migration 000024). Its trigger runs once per row
-- with the row's values already bound: the row itself, its lease's running total, the daily
-- rollup and, on the one row of each key whose last use is due, the key's last use. The JSON
-- form made SQLite find every field of every row by name in the batch's text four times over:
-- the profile of a one-row batch had more than half of the writer's time in the trigger's
-- JSON work (bench/profile.sh). The statement is still one per batch, so a batch is still one
-- transaction with no BEGIN and COMMIT of its own.
DROP TRIGGER usage_batches_insert;
DROP VIEW usage_batches;

CREATE VIEW usage_batch_rows AS
SELECT id, request_id, voucher_id, api_key_id, model, price_id, input_per_million,
       cached_input_per_million, output_per_million, prompt_tokens, cached_prompt_tokens,
       completion_tokens, cost, hold_id, post_id, upstream_status, created_at, overrun_micros,
       CAST(NULL AS BOOLEAN) AS own_money, CAST(NULL AS BOOLEAN) AS touch
FROM usage_records
WHERE 0;

CREATE TRIGGER usage_batch_rows_insert INSTEAD OF INSERT ON usage_batch_rows
BEGIN
    -- Checked as it is inserted: it may only join a hold still open (trigger
    -- usage_joins_open_hold, migration 000021).
    INSERT INTO usage_records (id, request_id, voucher_id, api_key_id, model, price_id,
                               input_per_million, cached_input_per_million, output_per_million,
                               prompt_tokens, cached_prompt_tokens, completion_tokens, cost,
                               hold_id, post_id, upstream_status, created_at, overrun_micros)
    VALUES (NEW.id, NEW.request_id, NEW.voucher_id, NEW.api_key_id, NEW.model, NEW.price_id,
            NEW.input_per_million, NEW.cached_input_per_million, NEW.output_per_million,
            NEW.prompt_tokens, NEW.cached_prompt_tokens, NEW.completion_tokens, NEW.cost,
            NEW.hold_id, NEW.post_id, NEW.upstream_status, NEW.created_at, NEW.overrun_micros);

    -- The lease's running total (migration 000023).
    INSERT INTO hold_usage (hold_id, cost, requests)
    SELECT NEW.hold_id, NEW.cost, 1
    WHERE NEW.post_id IS NULL
    ON CONFLICT (hold_id) DO UPDATE SET
        cost = hold_usage.cost + excluded.cost,
        requests = hold_usage.requests + excluded.requests;

    -- The key's last use, on the key's latest row of the batch when it is due.
    UPDATE api_keys SET last_used_at = NEW.created_at
    WHERE NEW.touch AND id = NEW.api_key_id;

    -- Live usage's daily rollup; purchased credit's usage stays out of the programme's
    -- figures. Absurd reported counts are clamped so no day's sums can overflow (as
    -- rollup::add).
    INSERT INTO usage_daily (day, voucher_id, model, requests, prompt_tokens,
                             cached_prompt_tokens, completion_tokens, cost)
    SELECT substr(NEW.created_at, 1, 10), NEW.voucher_id, NEW.model, 1,
           min(max(NEW.prompt_tokens, 0), 1000000000000),
           min(max(NEW.cached_prompt_tokens, 0), 1000000000000),
           min(max(NEW.completion_tokens, 0), 1000000000000),
           max(NEW.cost, 0)
    WHERE NOT coalesce(NEW.own_money, 0)
    ON CONFLICT (day, voucher_id, model) DO UPDATE SET
        requests = usage_daily.requests + excluded.requests,
        prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens,
        cached_prompt_tokens = usage_daily.cached_prompt_tokens + excluded.cached_prompt_tokens,
        completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens,
        cost = usage_daily.cost + excluded.cost;
END;
