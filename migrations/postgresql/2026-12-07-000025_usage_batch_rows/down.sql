-- The batch as JSON again, as migration 000023 made it.
DROP FUNCTION record_usage_rows(text[], text[], text[], text[], text[], text[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], text[], text[], integer[], timestamp[], bigint[], text[], text[]);

CREATE OR REPLACE FUNCTION record_usage_batch(batch jsonb, touch text[], own_money text[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    rows usage_records[];
    holds text[];
    resolved text;
    k record;
    inserted integer;
BEGIN
    rows := ARRAY(SELECT r FROM jsonb_populate_recordset(NULL::usage_records, batch) r);
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
