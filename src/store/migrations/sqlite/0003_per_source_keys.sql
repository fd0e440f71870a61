-- A delivery's key is its mapping's key within the webhook's source, `source/key`: every
-- source of a platform shares the platform's mappings, and two shops' order 1234 are two
-- orders. Keys stored before were the mapping's key alone; this gives them their source.
-- In two steps, so that no row ever takes a key another row still has: first every key gets
-- a prefix no key starts with (a control character), then the prefix goes.
UPDATE deliveries SET
    key = char(1)
          || coalesce((SELECT source FROM webhooks WHERE webhooks.id = deliveries.webhook_id)
                      || '/', '')
          || key,
    needs_key = CASE WHEN needs_key IS NULL THEN NULL
                ELSE (SELECT source FROM webhooks WHERE webhooks.id = deliveries.webhook_id)
                     || '/' || needs_key END;
UPDATE deliveries SET key = substr(key, 2) WHERE substr(key, 1, 1) = char(1);
