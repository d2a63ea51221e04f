-- Monitoring: gauge readings and the alarms they raise (monitoring/store.py).

-- Readings arrive in batches (COPY); the one query that must be fast is "gauge X from T on", for the
-- charts (24 h / 7 d) and the latest value: an index on (gauge_id, at) carrying the value answers it
-- from the index alone. Delivery is at least once, so a reading may (rarely) be stored twice.
CREATE TABLE monitoring_readings (
    gauge_id  text             NOT NULL,
    at        timestamptz      NOT NULL,
    value     double precision NOT NULL
);
CREATE INDEX monitoring_readings_gauge_at ON monitoring_readings (gauge_id, at DESC) INCLUDE (value);
-- retention deletes by time across gauges
CREATE INDEX monitoring_readings_at_brin ON monitoring_readings USING brin (at);

-- Threshold alarms and sensor faults: raised, cleared, acknowledged by a person, what was done.
CREATE TABLE monitoring_alarms (
    id             bigserial        PRIMARY KEY,
    gauge_id       text             NOT NULL,
    kind           text             NOT NULL CHECK (kind IN ('threshold', 'fault')),
    key            text             NOT NULL,
    severity       text             NOT NULL CHECK (severity IN ('warning', 'critical')),
    value          double precision,
    raised_at      timestamptz      NOT NULL,
    cleared_at     timestamptz,
    cleared_value  double precision,
    acked_by       text,
    acked_at       timestamptz,
    ack_note       text             NOT NULL DEFAULT '',
    incident_id    text,
    proposal       jsonb,
    response_error text             NOT NULL DEFAULT ''
);
-- at most one open alarm per gauge and threshold (or fault)
CREATE UNIQUE INDEX monitoring_alarms_open ON monitoring_alarms (gauge_id, kind, key) WHERE cleared_at IS NULL;
CREATE INDEX monitoring_alarms_raised ON monitoring_alarms (raised_at DESC);
