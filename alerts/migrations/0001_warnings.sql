-- Issue 20: public warnings (预警). One row per warning (its current state, the pure lifecycle's
-- value as JSON), one row per CAP message version sent (never updated), one row per delivery
-- (channel x recipient x message) with its latest status.
CREATE TABLE warnings (
    id            text PRIMARY KEY,
    state         text NOT NULL CHECK (state IN ('draft', 'pending', 'approved', 'rejected', 'active', 'cancelled', 'expired')),
    proposal      text NOT NULL CHECK (proposal IN ('Alert', 'Update', 'Cancel')),
    sender        text NOT NULL,
    drafted_by    text NOT NULL,
    body          jsonb NOT NULL,          -- alerts.codec.warning_to_json
    expires       timestamptz NOT NULL,
    plan_activation bigint,
    version       integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX warnings_state ON warnings (state);

CREATE TABLE warning_messages (
    identifier    text PRIMARY KEY,
    warning_id    text NOT NULL REFERENCES warnings (id),
    seq           integer NOT NULL,
    msg_type      text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel')),
    sent          timestamptz NOT NULL,
    "references"  text NOT NULL DEFAULT '',
    xml           text NOT NULL,
    UNIQUE (warning_id, seq)
);

CREATE TABLE warning_deliveries (
    id            bigserial PRIMARY KEY,
    warning_id    text NOT NULL REFERENCES warnings (id),
    identifier    text NOT NULL REFERENCES warning_messages (identifier),
    channel       text NOT NULL,
    recipient     text NOT NULL,
    status        text NOT NULL,
    detail        text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (identifier, channel, recipient)
);
CREATE INDEX warning_deliveries_warning ON warning_deliveries (warning_id);
