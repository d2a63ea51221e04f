-- Nodes with heartbeats, what each hosts, and the node RPC request/reply rows (noderpc/).
CREATE TABLE rpc_nodes (
    node_id    text PRIMARY KEY,
    role       text NOT NULL,
    base_url   text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    stopped    boolean NOT NULL DEFAULT false
);

-- A room (conference), call or recording pinned to the node that hosts it.
CREATE TABLE rpc_pins (
    kind      text NOT NULL CHECK (kind IN ('room', 'call', 'recording')),
    key       text NOT NULL,
    node_id   text NOT NULL REFERENCES rpc_nodes (node_id) ON DELETE CASCADE,
    pinned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);
CREATE INDEX rpc_pins_node ON rpc_pins (node_id);

-- One row per request; the reply is written into the same row. (target, idempotency_key) is
-- unique: a retried request finds the first one's row and its reply.
CREATE TABLE rpc_requests (
    id              text PRIMARY KEY,
    idempotency_key text NOT NULL,
    sender          text NOT NULL,
    target          text NOT NULL,
    method          text NOT NULL,
    args            jsonb NOT NULL,
    deadline        double precision NOT NULL,
    signature       text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    reply           jsonb,
    reply_signature text,
    replied_at      timestamptz,
    UNIQUE (target, idempotency_key)
);
CREATE INDEX rpc_requests_open ON rpc_requests (target) WHERE reply IS NULL;
