-- Issue 20: the responder role (单兵), a unit's crew on the field phone page (/field). The users
-- table's role check lists the roles by name; this one adds 'responder'.
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN
    ('admin', 'chair', 'operator', 'calltaker', 'dispatcher', 'inspector', 'viewer', 'leader', 'responder'));
