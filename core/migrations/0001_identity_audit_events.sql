-- Core schema: users and their credentials, sessions, API tokens, the audit log and bus events.

CREATE TABLE users (
    id               bigserial   PRIMARY KEY,
    username         text        NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9_.-]{2,64}$'),
    display_name     text        NOT NULL DEFAULT '',
    role             text        NOT NULL CHECK (role IN
                       ('admin', 'chair', 'operator', 'calltaker', 'dispatcher', 'inspector', 'viewer')),
    password_hash    text        NOT NULL,
    disabled         boolean     NOT NULL DEFAULT false,
    failed_logins    integer     NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

-- Browser sessions: only the SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    token_hash   text        PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    source       text        NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions(user_id);

-- API tokens for integrations: shown once, stored as SHA-256.
CREATE TABLE api_tokens (
    id           bigserial   PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         text        NOT NULL,
    prefix       text        NOT NULL,
    token_hash   text        NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Append-only audit log: who, what, when, from where.
CREATE TABLE audit_log (
    id         bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL,
    action     text        NOT NULL,
    target     text        NOT NULL DEFAULT '',
    outcome    text        NOT NULL DEFAULT 'ok' CHECK (outcome IN ('ok', 'denied', 'failed')),
    source     text        NOT NULL DEFAULT '',
    detail     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_actor ON audit_log(actor);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- Bus events that cross processes: NOTIFY carries the id, the row is the payload.
CREATE TABLE events (
    id         bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    topic      text        NOT NULL,
    origin     text        NOT NULL,
    payload    jsonb       NOT NULL
);
CREATE INDEX events_at ON events(at);
