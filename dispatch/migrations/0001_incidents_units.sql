-- Dispatch: stations, units (status history, AVL track), incidents (agency components, unit
-- assignments, linked calls, notes, links/merges, append-only timeline), CAP alerts, command
-- conferences and the console settings (training mode).

CREATE TABLE stations (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    agency      text NOT NULL,
    lon         double precision NOT NULL,
    lat         double precision NOT NULL,
    county_code integer,
    approximate boolean NOT NULL DEFAULT false
);

CREATE TABLE units (
    id                 text PRIMARY KEY,
    callsign           text NOT NULL,
    type               text NOT NULL,
    station_id         text NOT NULL REFERENCES stations (id),
    crew               text[] NOT NULL DEFAULT '{}',
    extra_capabilities text[] NOT NULL DEFAULT '{}',
    status             text NOT NULL DEFAULT 'available',
    incident_id        text,
    lon                double precision,
    lat                double precision,
    fix_at             timestamptz,
    speed_kmh          double precision,
    heading_deg        double precision,
    has_avl            boolean NOT NULL DEFAULT true,
    last_dispatched_at timestamptz,
    training           boolean NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (status IN ('available', 'dispatched', 'en_route', 'on_scene', 'transporting', 'at_hospital',
                      'returning', 'out_of_service'))
);
CREATE INDEX units_incident ON units (incident_id) WHERE incident_id IS NOT NULL;

CREATE TABLE unit_status_history (
    id          bigserial PRIMARY KEY,
    unit_id     text NOT NULL REFERENCES units (id),
    at          timestamptz NOT NULL,
    frm         text NOT NULL,
    status      text NOT NULL,
    incident_id text,
    actor       text NOT NULL,
    source      text NOT NULL DEFAULT 'console'
);
CREATE INDEX unit_status_history_unit ON unit_status_history (unit_id, at);

-- The AVL track: every accepted fix (also out-of-order ones, which do not move the unit).
CREATE TABLE unit_positions (
    id          bigserial PRIMARY KEY,
    unit_id     text NOT NULL,
    at          timestamptz NOT NULL,
    lon         double precision NOT NULL,
    lat         double precision NOT NULL,
    speed_kmh   double precision,
    heading_deg double precision,
    accuracy_m  double precision,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX unit_positions_unit_at ON unit_positions (unit_id, at);

CREATE TABLE incidents (
    id              text PRIMARY KEY,
    category        text NOT NULL,
    subtype         text NOT NULL,
    priority        smallint NOT NULL CHECK (priority BETWEEN 1 AND 5),
    status          text NOT NULL,
    lon             double precision NOT NULL,
    lat             double precision NOT NULL,
    uncertainty_m   double precision,
    location_source text NOT NULL DEFAULT 'manual',
    address         text NOT NULL DEFAULT '',
    county_code     integer,
    township_code   integer,
    township_id     text,
    description     text NOT NULL DEFAULT '',
    caller_number   text NOT NULL DEFAULT '',
    caller_name     text NOT NULL DEFAULT '',
    merged_into     text REFERENCES incidents (id),
    disposition     text NOT NULL DEFAULT '',
    training        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incidents_open ON incidents (training, status) WHERE status <> 'closed';

-- One row per agency (联动 component) of an incident.
CREATE TABLE incident_components (
    incident_id text NOT NULL REFERENCES incidents (id),
    agency      text NOT NULL,
    status      text NOT NULL,
    position    smallint NOT NULL,
    PRIMARY KEY (incident_id, agency)
);

-- Unit assignments: released_at is NULL while the unit is on the incident.
CREATE TABLE incident_units (
    id          bigserial PRIMARY KEY,
    incident_id text NOT NULL REFERENCES incidents (id),
    unit_id     text NOT NULL REFERENCES units (id),
    agency      text NOT NULL,
    assigned_at timestamptz NOT NULL,
    released_at timestamptz,
    released_by text
);
CREATE UNIQUE INDEX incident_units_current ON incident_units (incident_id, unit_id) WHERE released_at IS NULL;

CREATE TABLE incident_calls (
    incident_id text NOT NULL REFERENCES incidents (id),
    call_id     text NOT NULL,
    position    integer NOT NULL,
    PRIMARY KEY (incident_id, call_id)
);

CREATE TABLE incident_notes (
    incident_id text NOT NULL REFERENCES incidents (id),
    position    integer NOT NULL,
    text        text NOT NULL,
    PRIMARY KEY (incident_id, position)
);

-- related: a link both ways; merged: dup (a) was merged into primary (b). History is kept.
CREATE TABLE incident_links (
    a      text NOT NULL REFERENCES incidents (id),
    b      text NOT NULL REFERENCES incidents (id),
    kind   text NOT NULL CHECK (kind IN ('related', 'merged')),
    at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (a, b, kind)
);

CREATE TABLE incident_timeline (
    incident_id text NOT NULL REFERENCES incidents (id),
    seq         integer NOT NULL,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (incident_id, seq)
);

CREATE FUNCTION incident_timeline_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'incident_timeline is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER incident_timeline_append_only BEFORE UPDATE OR DELETE ON incident_timeline
    FOR EACH ROW EXECUTE FUNCTION incident_timeline_append_only();
CREATE TRIGGER incident_timeline_no_truncate BEFORE TRUNCATE ON incident_timeline
    FOR EACH STATEMENT EXECUTE FUNCTION incident_timeline_append_only();

CREATE TABLE cap_alerts (
    identifier  text PRIMARY KEY,
    incident_id text REFERENCES incidents (id),
    issued_at   timestamptz NOT NULL,
    actor       text NOT NULL,
    event       text NOT NULL,
    level       text NOT NULL,
    area        jsonb NOT NULL,
    xml         text NOT NULL,
    training    boolean NOT NULL DEFAULT false
);

-- The link between an incident and the MCU command conference started from it.
CREATE TABLE command_conferences (
    conference_id text PRIMARY KEY,
    incident_id   text NOT NULL REFERENCES incidents (id),
    county_code   integer,
    rooms         text[] NOT NULL,
    dispatcher    text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    status        text NOT NULL DEFAULT 'requested',
    training      boolean NOT NULL DEFAULT false
);
CREATE INDEX command_conferences_incident ON command_conferences (incident_id);
CREATE SEQUENCE command_conference_seq;
CREATE SEQUENCE incident_seq;

CREATE TABLE dispatch_settings (
    key   text PRIMARY KEY,
    value jsonb NOT NULL
);
