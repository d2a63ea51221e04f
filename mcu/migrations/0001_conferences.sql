-- Conferences (scheduled, standing, running, ended) and every site's attendance history.

CREATE TABLE conferences (
    id          text        PRIMARY KEY CHECK (id ~ '^[0-9]{4,12}$'),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    pin         text        NOT NULL DEFAULT '' CHECK (pin ~ '^([0-9]{4,12})?$'),
    guests      boolean     NOT NULL DEFAULT false,
    standing    boolean     NOT NULL DEFAULT false,
    sites       text[]      NOT NULL DEFAULT '{}',   -- meeting-room ids from the site plan
    starts_at   timestamptz,                         -- NULL: start by hand
    ends_at     timestamptz,                         -- NULL: open-ended
    status      text        NOT NULL DEFAULT 'scheduled'
                CHECK (status IN ('scheduled', 'running', 'ended')),
    node        text        NOT NULL DEFAULT '',
    created_by  text        NOT NULL DEFAULT 'system',
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    ended_at    timestamptz,
    CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX conferences_status ON conferences(status);

CREATE TABLE conference_attendance (
    id             bigserial   PRIMARY KEY,
    conference_id  text        NOT NULL REFERENCES conferences(id),
    participant_id text        NOT NULL,
    name           text        NOT NULL,
    protocol       text        NOT NULL,
    joined_at      timestamptz NOT NULL DEFAULT now(),
    left_at        timestamptz,
    reason         text        NOT NULL DEFAULT ''
);
CREATE INDEX conference_attendance_conf ON conference_attendance(conference_id, joined_at);
