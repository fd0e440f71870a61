-- The overview counts the attempts of the last hour per minute: an index by when each
-- started, so that it reads the last hour's alone. Attempts are written in time order, so
-- each insert adds at the index's end.
CREATE INDEX attempts_started ON attempts (started_at);
