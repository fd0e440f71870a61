-- The deliveries of one mapping that need the same delivery (a conversion's status updates)
-- go out one at a time, oldest first: the claim looks for an older one still unfinished
-- through this index, which holds all it reads. Partial: only such deliveries have a need,
-- so the receive path's other inserts pay nothing.
CREATE INDEX deliveries_needs ON deliveries (needs_mapping, needs_key, mapping, status)
    WHERE needs_key IS NOT NULL;
