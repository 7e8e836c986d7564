-- A usage batch reaches PostgreSQL as one typed array per column instead of JSON, as SQLite's
-- batch (usage_batch_rows, this migration) reaches it as rows instead of JSON: nothing is
-- encoded as text by the writer and parsed again by the database. record_usage_rows does
-- what record_usage_batch (000023) did, in the same order and with the same locks.
DROP FUNCTION record_usage_batch(jsonb, text[], text[]);

CREATE FUNCTION record_usage_rows(
    in_id text[],
    in_request_id text[],
    in_voucher_id text[],
    in_api_key_id text[],
    in_model text[],
    in_price_id text[],
    in_input_per_million bigint[],
    in_cached_input_per_million bigint[],
    in_output_per_million bigint[],
    in_prompt_tokens bigint[],
    in_cached_prompt_tokens bigint[],
    in_completion_tokens bigint[],
    in_cost bigint[],
    in_hold_id text[],
    in_post_id text[],
    in_upstream_status integer[],
    in_created_at timestamp[],
    in_overrun_micros bigint[],
    touch text[], own_money text[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    rows usage_records[];
    holds text[];
    resolved text;
    k record;
    inserted integer;
BEGIN
    -- One array per column, in usage_records' column order: each row is a record of the
    -- table's own type, with no text to parse.
    rows := ARRAY(SELECT ROW(u.*)::usage_records FROM unnest(in_id, in_request_id, in_voucher_id, in_api_key_id, in_model, in_price_id, in_input_per_million, in_cached_input_per_million, in_output_per_million, in_prompt_tokens, in_cached_prompt_tokens, in_completion_tokens, in_cost, in_hold_id, in_post_id, in_upstream_status, in_created_at, in_overrun_micros) AS u);
    holds := ARRAY(SELECT DISTINCT hold_id FROM unnest(rows) ORDER BY 1);
    -- Usage may only join a hold that is still open: the holds are locked (in key order, as
    -- everywhere) so a closing lease waits for this batch, then checked.
    PERFORM 1 FROM transfers WHERE id = ANY(holds) ORDER BY id FOR UPDATE;
    SELECT pending_id INTO resolved FROM transfers WHERE pending_id = ANY(holds) LIMIT 1;
    IF resolved IS NOT NULL THEN
        RAISE EXCEPTION 'hold % was already posted or voided', resolved
            USING HINT = 'hold_resolved', DETAIL = resolved;
    END IF;
    INSERT INTO usage_records SELECT * FROM unnest(rows);
    GET DIAGNOSTICS inserted = ROW_COUNT;
    -- Each lease's running total, in hold order (the holds are locked above, in that order).
    INSERT INTO hold_usage (hold_id, cost, requests)
        SELECT hold_id, sum(cost)::bigint, count(*) FROM unnest(rows)
        WHERE post_id IS NULL
        GROUP BY hold_id
        ORDER BY hold_id
    ON CONFLICT (hold_id) DO UPDATE SET
        cost = hold_usage.cost + excluded.cost,
        requests = hold_usage.requests + excluded.requests;
    -- Keys, then rollups, each in sorted order: the lock order of every write path.
    FOR k IN
        SELECT api_key_id, max(created_at) AS at FROM unnest(rows)
        WHERE api_key_id = ANY(touch) GROUP BY api_key_id ORDER BY api_key_id
    LOOP
        UPDATE api_keys SET last_used_at = k.at WHERE id = k.api_key_id;
    END LOOP;
    -- Absurd reported counts are clamped so no day's sums can overflow (as `rollup::add`).
    INSERT INTO usage_daily (day, voucher_id, model, requests, prompt_tokens,
                             cached_prompt_tokens, completion_tokens, cost)
        SELECT created_at::date, voucher_id, model, count(*),
               sum(LEAST(GREATEST(prompt_tokens, 0), 1000000000000))::bigint,
               sum(LEAST(GREATEST(cached_prompt_tokens, 0), 1000000000000))::bigint,
               sum(LEAST(GREATEST(completion_tokens, 0), 1000000000000))::bigint,
               sum(GREATEST(cost, 0))::bigint
        FROM unnest(rows)
        WHERE NOT (hold_id = ANY(own_money))
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3
    ON CONFLICT (day, voucher_id, model) DO UPDATE SET
        requests = usage_daily.requests + excluded.requests,
        prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens,
        cached_prompt_tokens = usage_daily.cached_prompt_tokens + excluded.cached_prompt_tokens,
        completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens,
        cost = usage_daily.cost + excluded.cost;
    RETURN inserted;
END $$;
