-- Bus events carry a random key so that publishing is idempotent: a publish retried after a lost
-- connection (a database failover) finds its row instead of inserting a second one.
ALTER TABLE events ADD COLUMN key uuid;
CREATE UNIQUE INDEX events_key ON events(key) WHERE key IS NOT NULL;
