-- Leases (noderpc/lease.py): one holder per name (the desk's leadership, "desk"), until `expires_at`
-- (the database's clock). Taken over only once expired; `epoch` grows at each change of holder.
CREATE TABLE rpc_leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    epoch      bigint NOT NULL DEFAULT 1,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
