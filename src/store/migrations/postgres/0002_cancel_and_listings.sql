-- What the cancelled state and the operators' listings need, as the SQLite store's
-- migration 0007 and its reads: the overview counts the attempts of the last hour per
-- minute, through an index by when each started (attempts are written in time order, so
-- each insert adds at the index's end); `status` takes the word `cancelled` as any other
-- (no constraint names the states).
CREATE INDEX attempts_started ON attempts (started_at);

-- The order ids a webhook's body names, for a listing by order: its top-level `id`,
-- `order_number` and `number` as text (every platform's order id or the number the shop
-- shows); NULL where the body is not JSON text (a purged body is empty), as SQLite's
-- `json_valid` leaves such a body out.
CREATE FUNCTION storehook_order_ids(body BYTEA) RETURNS TEXT[]
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    doc JSONB;
BEGIN
    doc := convert_from(body, 'UTF8')::jsonb;
    IF jsonb_typeof(doc) <> 'object' THEN
        RETURN NULL;
    END IF;
    RETURN ARRAY[doc ->> 'id', doc ->> 'order_number', doc ->> 'number'];
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
