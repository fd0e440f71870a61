-- The retention purge reads only the webhooks not yet purged, oldest first: an index of those
-- alone, in place of one of every webhook by time (which made each hourly purge read all of
-- history again). Queries by time are about webhooks that still have their bodies.
DROP INDEX webhooks_received_at;
CREATE INDEX webhooks_unpurged ON webhooks (received_at) WHERE status != 'purged';
