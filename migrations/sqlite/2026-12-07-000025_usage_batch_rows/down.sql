DROP TRIGGER usage_batch_rows_insert;
DROP VIEW usage_batch_rows;

CREATE VIEW usage_batches AS
SELECT CAST(NULL AS TEXT) AS batch, CAST(NULL AS TEXT) AS touch, CAST(NULL AS TEXT) AS own_money
WHERE 0;

CREATE TRIGGER usage_batches_insert INSTEAD OF INSERT ON usage_batches
BEGIN
    -- Each row is checked as it is inserted: it may only join a hold still open
    -- (trigger usage_joins_open_hold, migration 000021).
    INSERT INTO usage_records (id, request_id, voucher_id, api_key_id, model, price_id,
                               input_per_million, cached_input_per_million, output_per_million,
                               prompt_tokens, cached_prompt_tokens, completion_tokens, cost,
                               hold_id, post_id, upstream_status, created_at, overrun_micros)
    SELECT value ->> 'id', value ->> 'request_id', value ->> 'voucher_id', value ->> 'api_key_id',
           value ->> 'model', value ->> 'price_id',
           value ->> 'input_per_million', value ->> 'cached_input_per_million',
           value ->> 'output_per_million', value ->> 'prompt_tokens',
           value ->> 'cached_prompt_tokens', value ->> 'completion_tokens', value ->> 'cost',
           value ->> 'hold_id', value ->> 'post_id', value ->> 'upstream_status',
           replace(value ->> 'created_at', 'T', ' '), value ->> 'overrun_micros'
    FROM jsonb_each(NEW.batch)
    ORDER BY key;

    -- Each lease's running total (migration 000023).
    INSERT INTO hold_usage (hold_id, cost, requests)
    SELECT value ->> 'hold_id', sum(value ->> 'cost'), count(*)
    FROM jsonb_each(NEW.batch)
    WHERE value ->> 'post_id' IS NULL
    GROUP BY 1
    ON CONFLICT (hold_id) DO UPDATE SET
        cost = hold_usage.cost + excluded.cost,
        requests = hold_usage.requests + excluded.requests;

    -- Keys whose last use is due, at the time of their latest row.
    UPDATE api_keys SET last_used_at = (
        SELECT max(replace(b.value ->> 'created_at', 'T', ' '))
        FROM jsonb_each(NEW.batch) b
        WHERE b.value ->> 'api_key_id' = api_keys.id
    )
    WHERE id IN (SELECT value FROM json_each(NEW.touch));

    -- Live usage's daily rollups; purchased credit's usage stays out of the programme's
    -- figures. Absurd reported counts are clamped so no day's sums can overflow (as
    -- rollup::add).
    INSERT INTO usage_daily (day, voucher_id, model, requests, prompt_tokens,
                             cached_prompt_tokens, completion_tokens, cost)
    SELECT substr(value ->> 'created_at', 1, 10), value ->> 'voucher_id', value ->> 'model',
           count(*),
           sum(min(max(value ->> 'prompt_tokens', 0), 1000000000000)),
           sum(min(max(value ->> 'cached_prompt_tokens', 0), 1000000000000)),
           sum(min(max(value ->> 'completion_tokens', 0), 1000000000000)),
           sum(max(value ->> 'cost', 0))
    FROM jsonb_each(NEW.batch)
    WHERE value ->> 'hold_id' NOT IN (SELECT value FROM json_each(NEW.own_money))
    GROUP BY 1, 2, 3
    ON CONFLICT (day, voucher_id, model) DO UPDATE SET
        requests = usage_daily.requests + excluded.requests,
        prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens,
        cached_prompt_tokens = usage_daily.cached_prompt_tokens + excluded.cached_prompt_tokens,
        completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens,
        cost = usage_daily.cost + excluded.cost;
END;
