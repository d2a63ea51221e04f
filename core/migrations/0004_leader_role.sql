-- Issue 19: the leader role (领导), who opens the read-only command view. The users table's role
-- check (0001) lists the roles by name; this one adds 'leader'.
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN
    ('admin', 'chair', 'operator', 'calltaker', 'dispatcher', 'inspector', 'viewer', 'leader'));
