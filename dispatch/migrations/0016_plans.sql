-- Issue 19: emergency response plans (应急预案) as versioned, approved data; their activation on
-- incidents as a task list per agency, with the history of every level change and task update;
-- and the agency desks (a user who works for one agency sees and updates only its tasks).
CREATE TABLE emergency_plans (
    key         text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE emergency_plan_versions (
    plan_key     text NOT NULL REFERENCES emergency_plans (key),
    version      integer NOT NULL CHECK (version > 0),
    document     jsonb NOT NULL,           -- dispatch/plans/format.py plan_to_dict
    hazards      text[] NOT NULL,
    status       text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'approved', 'superseded')),
    created_at   timestamptz NOT NULL,
    created_by   text NOT NULL,
    approved_at  timestamptz,
    approved_by  text,
    PRIMARY KEY (plan_key, version)
);
-- at most one approved version per plan: the one an activation uses
CREATE UNIQUE INDEX emergency_plan_versions_approved ON emergency_plan_versions (plan_key) WHERE status = 'approved';

CREATE TABLE plan_activations (
    id            bigserial PRIMARY KEY,
    incident_id   text NOT NULL REFERENCES incidents (id),
    plan_key      text NOT NULL,
    plan_version  integer NOT NULL,
    plan_name     text NOT NULL,
    hazards       text[] NOT NULL,
    level         smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
    activated_at  timestamptz NOT NULL,
    activated_by  text NOT NULL,
    conference_id text,
    proposals     jsonb NOT NULL DEFAULT '{}',  -- units and resources proposed, the drafted warning, whom to notify
    ended_at      timestamptz,
    ended_by      text,
    FOREIGN KEY (plan_key, plan_version) REFERENCES emergency_plan_versions (plan_key, version)
);
CREATE INDEX plan_activations_incident ON plan_activations (incident_id);

CREATE TABLE plan_level_history (
    id             bigserial PRIMARY KEY,
    activation_id  bigint NOT NULL REFERENCES plan_activations (id),
    at             timestamptz NOT NULL,
    actor          text NOT NULL,
    frm            smallint,              -- NULL: the activation itself
    level          smallint NOT NULL,
    reason         text NOT NULL DEFAULT ''
);

CREATE TABLE plan_tasks (
    id             bigserial PRIMARY KEY,
    activation_id  bigint NOT NULL REFERENCES plan_activations (id),
    agency         text NOT NULL,
    title          text NOT NULL,
    position       integer NOT NULL DEFAULT 0,
    level_added    smallint NOT NULL,
    status         text NOT NULL DEFAULT 'assigned'
                   CHECK (status IN ('assigned', 'acknowledged', 'in_progress', 'done', 'cancelled')),
    note           text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    updated_by     text NOT NULL,
    UNIQUE (activation_id, agency, title)
);
CREATE INDEX plan_tasks_agency ON plan_tasks (agency, status);

CREATE TABLE plan_task_history (
    id        bigserial PRIMARY KEY,
    task_id   bigint NOT NULL REFERENCES plan_tasks (id),
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    frm       text,                       -- NULL: the task was created
    status    text NOT NULL,
    note      text NOT NULL DEFAULT ''
);
CREATE INDEX plan_task_history_task ON plan_task_history (task_id);

CREATE TABLE agency_desks (
    username    text PRIMARY KEY,
    agency      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT 'system'
);

-- The duty roster (值班): shifts with the people at each duty post and the agencies' on-duty
-- contacts, and the handover log (交接班) whose open items carry over.
CREATE TABLE duty_shifts (
    id          bigserial PRIMARY KEY,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    posts       jsonb NOT NULL,           -- post → [username]
    contacts    jsonb NOT NULL DEFAULT '{}',  -- agency → {name, phone}
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL
);
CREATE INDEX duty_shifts_time ON duty_shifts (starts_at, ends_at);

CREATE TABLE duty_handovers (
    id          bigserial PRIMARY KEY,
    shift_id    bigint REFERENCES duty_shifts (id),  -- the shift handing over (NULL: none rostered)
    at          timestamptz NOT NULL,
    by_user     text NOT NULL,
    notes       text NOT NULL DEFAULT '',
    items       jsonb NOT NULL DEFAULT '[]'  -- [{text, done}]: open items carry over to the next handover
);
