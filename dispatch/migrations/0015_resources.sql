-- Issue 19: emergency resources (应急资源) beyond units — depots with supplies, rescue teams,
-- experts, shelters and hospitals — and their allocation to incidents.
-- Whatever can be allocated is a row of resource_stock (supplies; a shelter's free places; a
-- hospital's free beds; a team not yet deployed); its quantity can never go below zero.
CREATE TABLE resources (
    id           text PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('depot', 'team', 'expert', 'shelter', 'hospital')),
    name         text NOT NULL,
    lon          double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    lat          double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    county_code  text NOT NULL DEFAULT '',
    agency       text NOT NULL DEFAULT '',
    contact      text NOT NULL DEFAULT '',
    headcount    integer CHECK (headcount > 0),
    skills       text[] NOT NULL DEFAULT '{}',
    specialty    text NOT NULL DEFAULT '',
    capacity     integer CHECK (capacity > 0),
    beds_total   integer CHECK (beds_total > 0),
    specialties  text[] NOT NULL DEFAULT '{}',
    made_up      boolean NOT NULL DEFAULT true,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resources_kind ON resources (kind);

CREATE TABLE resource_stock (
    resource_id  text NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    item         text NOT NULL,
    quantity     integer NOT NULL CHECK (quantity >= 0),
    unit         text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resource_id, item)
);

CREATE TABLE resource_allocations (
    id           bigserial PRIMARY KEY,
    request_id   text NOT NULL UNIQUE,  -- the client's idempotency key: the same request twice is refused
    incident_id  text NOT NULL REFERENCES incidents (id),
    resource_id  text NOT NULL REFERENCES resources (id),
    item         text NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),
    note         text NOT NULL DEFAULT '',
    allocated_at timestamptz NOT NULL,
    allocated_by text NOT NULL,
    released_at  timestamptz,
    released_by  text
);
CREATE INDEX resource_allocations_incident ON resource_allocations (incident_id);
CREATE INDEX resource_allocations_open ON resource_allocations (resource_id) WHERE released_at IS NULL;
