-- Serving segment bytes checks that the caller has a logged view covering them (web console,
-- /api/inspect/segments): access leaves are looked up by user and viewing time.
CREATE INDEX recorder_log_leaves_views ON recorder_log_leaves ((body->>'user'), ((body->>'time_ms')::bigint))
    WHERE kind = 'access';
