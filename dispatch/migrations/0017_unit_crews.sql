-- Issue 20: field responders (单兵). A console login of role responder is the crew of one unit: the
-- field page (/field) shows that unit's assignment and changes only that unit. Seeded from the site
-- plan's users (``unit = ...``); an administrator binds others (PUT /api/field/crews/<username>, DELETE to unbind).
CREATE TABLE unit_crew_logins (
    username   text PRIMARY KEY,
    unit_id    text NOT NULL REFERENCES units (id),
    bound_by   text NOT NULL,
    bound_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX unit_crew_logins_unit ON unit_crew_logins (unit_id);
