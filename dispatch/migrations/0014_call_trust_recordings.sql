-- Issue 13: whether the caller's number was asserted by a trusted trunk peer (RFC 3325), where the
-- INVITE came from, and the call recording's hash, transparency-log leaf and retention deletion.
ALTER TABLE emergency_calls
    ADD COLUMN caller_verified      boolean NOT NULL DEFAULT false,
    ADD COLUMN caller_source        text NOT NULL DEFAULT '',
    ADD COLUMN trunk_peer           text NOT NULL DEFAULT '',
    ADD COLUMN recording_sha256     text,
    ADD COLUMN recording_size       bigint,
    ADD COLUMN recording_log_id     text,
    ADD COLUMN recording_leaf       bigint,
    ADD COLUMN recording_deleted_at timestamptz;
CREATE INDEX emergency_calls_recording ON emergency_calls (recording_path) WHERE recording_path <> '';
