-- Replaying recorded conferences (issue 18): chairs grant viewers the replay of one conference.
-- A revoked grant is deleted; the audit log keeps who granted and revoked what, when.
CREATE TABLE recorder_replay_grants (
    conference_id text        NOT NULL,
    username      text        NOT NULL,
    granted_by    text        NOT NULL,
    granted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conference_id, username)
);

-- A conference recording's content spans (content leaves), looked up by conference and time.
CREATE INDEX recorder_log_leaves_content ON recorder_log_leaves ((body->>'camera'), ((body->>'start_ms')::bigint))
    WHERE kind = 'content';
