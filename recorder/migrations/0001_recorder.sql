-- Recorder: the transparency log (append-only), signed tree heads, the segment index,
-- explained gaps, legal holds and inspectors' bookmarks.

-- Log leaves: the Merkle leaf hash is SHA-256(0x00 || data). `body` is the same JSON,
-- decoded, so rows can be searched (e.g. a segment leaf by its store key).
CREATE TABLE recorder_log_leaves (
    log_id     text        NOT NULL,
    idx        bigint      NOT NULL CHECK (idx >= 0),
    data       bytea       NOT NULL,
    leaf_hash  bytea       NOT NULL CHECK (length(leaf_hash) = 32),
    kind       text        NOT NULL,
    body       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, idx)
);
CREATE INDEX recorder_log_leaves_segment_key ON recorder_log_leaves ((body->>'key')) WHERE kind = 'segment';

CREATE TABLE recorder_tree_heads (
    id           bigserial   PRIMARY KEY,
    log_id       text        NOT NULL,
    tree_size    bigint      NOT NULL CHECK (tree_size >= 0),
    root_hash    bytea       NOT NULL CHECK (length(root_hash) = 32),
    timestamp_ms bigint      NOT NULL,
    key_id       text        NOT NULL,
    signature    bytea       NOT NULL CHECK (length(signature) = 64),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recorder_tree_heads_log ON recorder_tree_heads (log_id, id);

-- Neither leaves nor heads may change once written. (A superuser can still drop the
-- trigger; that is what the Merkle heads and consistency proofs are for.)
CREATE FUNCTION recorder_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER recorder_log_leaves_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON recorder_log_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION recorder_append_only();
CREATE TRIGGER recorder_tree_heads_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON recorder_tree_heads
    FOR EACH STATEMENT EXECUTE FUNCTION recorder_append_only();

-- The playback index: one row per committed segment. Retention sets deleted_at (the
-- bytes are gone, the leaf stays).
CREATE TABLE recorder_segments (
    id          bigserial   PRIMARY KEY,
    camera      text        NOT NULL,
    start_ms    bigint      NOT NULL,
    end_ms      bigint      NOT NULL CHECK (end_ms > start_ms),
    size        bigint      NOT NULL CHECK (size >= 0),
    sha256      text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    codec       text        NOT NULL DEFAULT '',
    width       integer     NOT NULL DEFAULT 0,
    height      integer     NOT NULL DEFAULT 0,
    has_audio   boolean     NOT NULL DEFAULT false,
    store_key   text        NOT NULL UNIQUE,
    log_id      text        NOT NULL,
    leaf_index  bigint      NOT NULL,
    recorder    text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    deleted_by  text,
    UNIQUE (log_id, leaf_index)
);
CREATE INDEX recorder_segments_camera_time ON recorder_segments (camera, start_ms);
CREATE INDEX recorder_segments_live ON recorder_segments (start_ms) WHERE deleted_at IS NULL;

-- Spans a camera did not record, and why (disconnect, recorder stopped).
CREATE TABLE recorder_gaps (
    id         bigserial PRIMARY KEY,
    camera     text      NOT NULL,
    start_ms   bigint    NOT NULL,
    end_ms     bigint    NOT NULL CHECK (end_ms > start_ms),
    cause      text      NOT NULL,
    log_id     text      NOT NULL,
    leaf_index bigint    NOT NULL
);
CREATE INDEX recorder_gaps_camera_time ON recorder_gaps (camera, start_ms);

-- Evidence locks: segments overlapping an active hold on their camera are never deleted by retention.
CREATE TABLE recorder_legal_holds (
    id             text        PRIMARY KEY,
    cameras        text[]      NOT NULL,
    start_ms       bigint      NOT NULL,
    end_ms         bigint      NOT NULL CHECK (end_ms > start_ms),
    placed_by      text        NOT NULL,
    placed_reason  text        NOT NULL,
    placed_at      timestamptz NOT NULL DEFAULT now(),
    lifted_by      text,
    lifted_reason  text,
    lifted_at      timestamptz
);

-- Inspectors' bookmarks and notes on a camera at a moment, shared among inspectors.
CREATE TABLE recorder_bookmarks (
    id         bigserial   PRIMARY KEY,
    camera     text        NOT NULL,
    at_ms      bigint      NOT NULL,
    note       text        NOT NULL DEFAULT '',
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recorder_bookmarks_camera_time ON recorder_bookmarks (camera, at_ms);
