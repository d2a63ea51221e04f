-- Tamper-evident audit log: every row carries the SHA-256 of its predecessor's hash and its own
-- contents, so an edit, a deletion or an inserted row breaks the chain even when made by a
-- database superuser with the append-only trigger disabled. `commandcenter audit verify` walks it.
--
-- row_hash = SHA-256(prev_hash || UTF-8 of the canonical encoding), prev_hash of the first row =
-- 32 zero bytes. The canonical encoding (core/audit.py `canonical_entry` computes the same) is
-- 'audit-v1,' followed by, for each of id, at (microseconds since the epoch), actor, action,
-- target, outcome, source and detail (jsonb text form), the field's UTF-8 length in bytes,
-- ':', the field and ','.
--
-- The hash is computed in the inserting transaction by a trigger that first locks the single row of
-- audit_chain_head (SELECT ... FOR UPDATE): concurrent writers take turns, and ids (assigned under
-- that lock) follow the chain order.

CREATE FUNCTION audit_field(value text) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT octet_length(value)::text || ':' || value || ','
$$;

CREATE FUNCTION audit_row_hash(prev bytea, id bigint, at timestamptz, actor text, action text, target text,
                               outcome text, source text, detail jsonb) RETURNS bytea
LANGUAGE sql STABLE STRICT AS $$
    SELECT sha256(prev || convert_to(
        'audit-v1,' || audit_field(id::text)
        || audit_field(((extract(epoch FROM at) * 1000000)::bigint)::text)
        || audit_field(actor) || audit_field(action) || audit_field(target) || audit_field(outcome)
        || audit_field(source) || audit_field(detail::text), 'UTF8'))
$$;

ALTER TABLE audit_log ADD COLUMN prev_hash bytea, ADD COLUMN row_hash bytea;

CREATE TABLE audit_chain_head (
    id         integer PRIMARY KEY CHECK (id = 1),
    last_id    bigint,
    last_hash  bytea   NOT NULL
);

-- Chain the rows written before this migration, in id order.
ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
DO $$
DECLARE
    r        record;
    h        bytea := decode(repeat('00', 32), 'hex');
    last     bigint;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        UPDATE audit_log SET prev_hash = h,
               row_hash = audit_row_hash(h, r.id, r.at, r.actor, r.action, r.target, r.outcome, r.source, r.detail)
         WHERE id = r.id
        RETURNING row_hash INTO h;
        last := r.id;
    END LOOP;
    INSERT INTO audit_chain_head (id, last_id, last_hash) VALUES (1, last, h);
END $$;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only;
ALTER TABLE audit_log ALTER COLUMN prev_hash SET NOT NULL, ALTER COLUMN row_hash SET NOT NULL;
-- ids are assigned by the chain trigger, under the head lock.
ALTER TABLE audit_log ALTER COLUMN id DROP DEFAULT;

CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head bytea;
BEGIN
    SELECT last_hash INTO head FROM audit_chain_head WHERE id = 1 FOR UPDATE;
    IF head IS NULL THEN
        RAISE EXCEPTION 'audit_chain_head is missing';
    END IF;
    NEW.id := nextval(pg_get_serial_sequence('audit_log', 'id'));
    NEW.at := clock_timestamp();
    NEW.prev_hash := head;
    NEW.row_hash := audit_row_hash(head, NEW.id, NEW.at, NEW.actor, NEW.action, NEW.target, NEW.outcome,
                                   NEW.source, NEW.detail);
    UPDATE audit_chain_head SET last_id = NEW.id, last_hash = NEW.row_hash WHERE id = 1;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_chain();
