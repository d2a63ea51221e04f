-- Issue 20: SMS through Kannel. A message (one text, one reference) to recipients, each with its
-- own delivery status, attempts and the time it is due again (the queue survives restarts: a row
-- that is queued and due is sent by whichever node's sender claims it first).
CREATE TABLE sms_messages (
    id          bigserial PRIMARY KEY,
    reference   text NOT NULL,            -- what it is about: plan:<activation>, conference:<id>, bulletin…
    kind        text NOT NULL CHECK (kind IN ('bulletin', 'meeting', 'command', 'plan', 'warning', 'other')),
    text        text NOT NULL,
    encoding    text NOT NULL CHECK (encoding IN ('gsm7', 'ucs2')),
    parts       integer NOT NULL CHECK (parts BETWEEN 1 AND 16),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sms_recipients (
    id            bigserial PRIMARY KEY,
    message_id    bigint NOT NULL REFERENCES sms_messages (id),
    number        text NOT NULL,
    name          text NOT NULL DEFAULT '',
    via           text NOT NULL DEFAULT '',   -- number | user:x | post:x | group:x | contact:x
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'submitted', 'buffered', 'delivered', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    next_at       timestamptz NOT NULL DEFAULT now(),
    error         text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, number)
);
CREATE INDEX sms_recipients_due ON sms_recipients (next_at, id) WHERE status = 'queued';
CREATE INDEX sms_recipients_message ON sms_recipients (message_id);
