-- Emergency call-taking (issue 8): calls with their timestamps and locations, AML reports,
-- the callback list, and recordings' viewing is audited through core.audit.

CREATE TABLE emergency_calls (
    id                  text PRIMARY KEY,
    sip_key             text NOT NULL,
    number              text NOT NULL,
    caller_name         text NOT NULL DEFAULT '',
    dialled             text NOT NULL,
    category            text NOT NULL,
    priority            integer NOT NULL,
    state               text NOT NULL DEFAULT 'queued',
    position_id         text,
    offered_at          timestamptz NOT NULL,
    answered_at         timestamptz,
    abandoned_at        timestamptz,
    ended_at            timestamptz,
    incident_created_at timestamptz,
    first_dispatch_at   timestamptz,
    incident_id         text,
    disposition         text NOT NULL DEFAULT '',
    flags               text[] NOT NULL DEFAULT '{}',
    skipped_positions   text[] NOT NULL DEFAULT '{}',
    locations           jsonb NOT NULL DEFAULT '[]',
    recording_path      text NOT NULL DEFAULT '',
    training            boolean NOT NULL DEFAULT false,
    CHECK (state IN ('queued', 'offered', 'answered', 'abandoned', 'ended'))
);
CREATE INDEX emergency_calls_number ON emergency_calls (number, offered_at DESC);
CREATE INDEX emergency_calls_offered ON emergency_calls (offered_at);

CREATE TABLE aml_reports (
    id           bigserial PRIMARY KEY,
    number       text NOT NULL,
    fmt          text NOT NULL,
    received_at  timestamptz NOT NULL,
    positioned_at timestamptz,
    valid        boolean NOT NULL,
    reason       text NOT NULL DEFAULT '',
    location     jsonb NOT NULL,
    raw          text NOT NULL,
    call_id      text REFERENCES emergency_calls (id),
    status       text NOT NULL DEFAULT 'pending',
    CHECK (status IN ('pending', 'matched', 'expired'))
);
CREATE INDEX aml_reports_pending ON aml_reports (number) WHERE status = 'pending';

CREATE TABLE desk_callbacks (
    call_id    text PRIMARY KEY REFERENCES emergency_calls (id),
    number     text NOT NULL,
    listed_at  timestamptz NOT NULL,
    waited_s   double precision NOT NULL,
    done_at    timestamptz,
    done_by    text
);
