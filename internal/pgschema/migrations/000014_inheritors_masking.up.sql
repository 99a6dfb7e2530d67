-- pgtrail schema version 14: two routes found open after version 13, and a shorter context
-- message (at the end).
--
-- A table inheriting from an audited table (INHERITS, not a partition) was not captured: its rows
-- read as the audited table's (SELECT from the parent shows them, UPDATE and DELETE of the parent
-- change them), but no trigger of the parent fires for them and the publication holds the
-- children it had when the parent joined it, not later ones. The parent's owner could create such
-- a child, or attach a table with INHERIT, and change those rows without a trace. Now the child
-- is audited with its parent at once, by an event trigger, in the parent's mode with the
-- parent's excluded and PII columns (an AUDIT_ENABLE entry says so); if it cannot be (the caller
-- is no member of pgtrail_owner, who alone enable tables), the CREATE or ALTER is refused with
-- the reason.
--
-- audit.events_masked showed readers details.query, the whole text the client sent
-- (current_query()) with a TRUNCATE or a DDL command: it can hold any literal, and other
-- statements of the same string (an INSERT of a customer's email). Readers now see it masked in
-- pgtrail's own entries, the keys of the changes a CAPTURE_GAP entry names are masked when the
-- table's key is PII, as resource_id is, and an ALERT shows its rule and seq range, not the
-- entries it quotes.
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

SELECT audit.require_superuser();

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_check DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_drop DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_add DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_function DISABLE;

-- The nearest audited table rel inherits from (not as a partition), or NULL.
CREATE FUNCTION audit.audited_ancestor(rel regclass) RETURNS regclass
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  WITH RECURSIVE up(relid, depth) AS (
    SELECT i.inhparent, 1 FROM pg_inherits i WHERE i.inhrelid = rel
    UNION
    SELECT i.inhparent, u.depth + 1 FROM pg_inherits i JOIN up u ON i.inhrelid = u.relid WHERE u.depth < 100
  )
  SELECT u.relid::regclass FROM up u JOIN audit.audited_tables a ON a.relid = u.relid ORDER BY u.depth LIMIT 1
$$;

-- Owned by the superuser who runs this migration, as capture_new_partitions: the triggers and
-- the publication need their owners' rights; what it does, its caller (a member of
-- pgtrail_owner who owns the parent) could do itself.
CREATE FUNCTION audit.capture_inheritors() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
BEGIN
  FOR c IN
    SELECT DISTINCT r.rel, audit.audited_ancestor(r.rel) AS parent
      FROM (SELECT audit.ddl_relation(d.classid, d.objid)::regclass AS rel FROM pg_event_trigger_ddl_commands() d) r
      JOIN pg_class k ON k.oid = r.rel
     WHERE k.relkind IN ('r', 'p') AND NOT k.relispartition
       AND NOT EXISTS (SELECT FROM audit.audited_tables a WHERE a.relid = r.rel)
  LOOP
    CONTINUE WHEN c.parent IS NULL;
    -- Enabling is for members of pgtrail_owner (a setting of the trail, an AUDIT_ENABLE entry):
    -- the parent's owner alone may not add a table to the trail, nor a table outside it.
    IF NOT pg_has_role(session_user, 'pgtrail_owner', 'MEMBER') THEN
      RAISE EXCEPTION 'pgtrail: % would inherit from the audited table %, and only a member of pgtrail_owner can audit it with it', c.rel, c.parent
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Its rows would read as the audited table''s without being captured. Have a member of pgtrail_owner run this, or make it a partition.';
    END IF;
    -- A table made to inherit from an audited one brings its own inheritors along, which would
    -- then read as the audited table's too. (Auditing them here is refused by PostgreSQL: the
    -- publication takes a table with its inheritors, and one of them already in it is an error.)
    IF EXISTS (SELECT FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid
                WHERE i.inhparent = c.rel AND NOT k.relispartition
                  AND NOT EXISTS (SELECT FROM audit.audited_tables a WHERE a.relid = i.inhrelid)) THEN
      RAISE EXCEPTION 'pgtrail: % would inherit from the audited table % with inheritors of its own, which pgtrail cannot audit with it', c.rel, c.parent
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Detach its inheritors (ALTER TABLE … NO INHERIT), make it inherit, then attach them again: each is audited as it is attached.';
    END IF;
    BEGIN
      PERFORM audit.enable(c.rel,
        (SELECT a.exclude_columns FROM audit.audited_tables a WHERE a.relid = c.parent),
        COALESCE((SELECT p.columns FROM audit.pii_columns p WHERE p.relid = c.parent), '{}'),
        (SELECT a.mode FROM audit.audited_tables a WHERE a.relid = c.parent));
    EXCEPTION WHEN OTHERS THEN
      RAISE EXCEPTION 'pgtrail: % inherits from the audited table %, and cannot be audited with it: %', c.rel, c.parent, SQLERRM
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Its rows would read as the audited table''s without being captured. Make it a partition, or fix the cause and retry.';
    END;
  END LOOP;
END $$;
-- Named to sort before pgtrail_capture_add and pgtrail_capture_check (event triggers run in name
-- order): the check must find the child's capture in place.
-- CREATE SCHEMA too: its elements (CREATE TABLE … INHERITS or PARTITION OF, CREATE TRIGGER) are
-- its subcommands, and a trigger filtered on CREATE TABLE alone never saw them.
CREATE EVENT TRIGGER pgtrail_capture_0inherit ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE SCHEMA') EXECUTE FUNCTION audit.capture_inheritors();
-- Version 13's, likewise.
DROP EVENT TRIGGER pgtrail_capture_add;
CREATE EVENT TRIGGER pgtrail_capture_add ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE SCHEMA') EXECUTE FUNCTION audit.capture_new_partitions();
DROP EVENT TRIGGER pgtrail_capture_function;
CREATE EVENT TRIGGER pgtrail_capture_function ON ddl_command_end
  WHEN TAG IN ('CREATE TRIGGER', 'CREATE SCHEMA') EXECUTE FUNCTION audit.check_capture_function();

REVOKE ALL ON FUNCTION audit.audited_ancestor(regclass), audit.capture_inheritors() FROM PUBLIC;

-- Tables that inherit from an audited table and are not audited (made before this version, or
-- while the event trigger was off): capture problems.
ALTER FUNCTION audit.capture_problems(text) RENAME TO capture_problems_v12;
CREATE FUNCTION audit.capture_problems(publication text DEFAULT 'pgtrail')
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT * FROM audit.capture_problems_v12($1)
  UNION ALL
  SELECT a.table_name, format('%s inherits from it and is not audited: changes to its rows are not captured (run pgtrail enable %s)',
                              i.inhrelid::regclass, i.inhrelid::regclass)
    FROM audit.audited_tables a
    JOIN pg_inherits i ON i.inhparent = a.relid
    JOIN pg_class k ON k.oid = i.inhrelid
   WHERE NOT k.relispartition AND NOT EXISTS (SELECT FROM audit.audited_tables b WHERE b.relid = i.inhrelid)
   ORDER BY 1, 2
$$;
ALTER FUNCTION audit.capture_problems(text) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.capture_problems(text), audit.capture_problems_v12(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.capture_problems(text) TO pgtrail_owner, pgtrail_auditor;

-- Version 9's view, but for details. Replaced in place: audit.tenant_events returns its rows.
-- The test of a PII key is written out twice rather than joined: a join or a function would
-- change how a reader's conditions on audit.events are planned (see version 3's view).
CREATE OR REPLACE VIEW audit.events_masked WITH (security_barrier) AS
SELECT v.seq, v.event_id, v.occurred_at, v.txid, v.action_type, v.resource_type,
       CASE WHEN v.resource_id IS NOT NULL AND EXISTS (
              SELECT FROM audit.pii_columns p
               WHERE p.resource_type = v.resource_type
                 AND p.columns && COALESCE((SELECT a.pk_columns FROM audit.audited_tables a WHERE a.relid = p.relid), p.columns))
            THEN 'masked:' || left(encode(sha256((SELECT k.key FROM audit.mask_key k) || convert_to(v.resource_id, 'UTF8')), 'hex'), 32)
            ELSE v.resource_id END AS resource_id,
       v.outcome, v.actor_id, v.actor_ip, v.actor_ip_raw, v.actor_user_agent, v.request_id, v.tenant_id, v.db_user,
       v.application_name, v.client_addr, v.changed_columns, v.before_state, v.after_state,
       CASE WHEN audit.event_class(v.action_type, v.resource_type) NOT IN ('pgtrail', 'config') THEN v.details
            -- An alert quotes the entries it fired on (their actors' full addresses, keys,
            -- query text in its summary): readers see the rule and the seq range, and read
            -- those entries here, masked.
            WHEN v.action_type = 'ALERT' THEN audit.mask_json(v.details, ARRAY['summary', 'events', 'key'])
            WHEN EXISTS (
              SELECT FROM audit.pii_columns p
               WHERE p.resource_type = v.resource_type
                 AND p.columns && COALESCE((SELECT a.pk_columns FROM audit.audited_tables a WHERE a.relid = p.relid), p.columns))
            THEN audit.mask_json(v.details, ARRAY['query', 'changes'])
            ELSE audit.mask_json(v.details, ARRAY['query']) END AS details
  FROM audit.events_masked_v3 v;

-- The session's context as pgtrail's messages carry it (the stream's sessionContext). No SET
-- clause (a function with one costs a settings save and restore per call, on the application's
-- path): its callers, SECURITY DEFINER functions, pin the search path, and it names pg_catalog.
CREATE FUNCTION audit.session_context() RETURNS json
LANGUAGE sql STABLE
RETURN pg_catalog.json_build_object(
  'xid', pg_catalog.pg_current_xact_id(),
  'actor_id', pg_catalog.current_setting('pgtrail.actor_id', true),
  'actor_ip', pg_catalog.current_setting('pgtrail.actor_ip', true),
  'user_agent', pg_catalog.current_setting('pgtrail.user_agent', true),
  'request_id', pg_catalog.current_setting('pgtrail.request_id', true),
  'tenant_id', pg_catalog.current_setting('pgtrail.tenant_id', true),
  'db_user', COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), SESSION_USER::text),
  'application_name', pg_catalog.current_setting('application_name'),
  'client_addr', pg_catalog.inet_client_addr());
ALTER FUNCTION audit.session_context() OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.session_context() FROM PUBLIC;

-- The context message of mode wal, without its NULL fields and spaces: it is written to the WAL
-- once per transaction on the application's path, and was a third of what capture added there
-- (328 of about 800 bytes per transaction with no pgtrail.* setting made). The stream reads a
-- missing field as NULL, as before; the MAC covers the text as sent.
CREATE OR REPLACE FUNCTION audit.emit_signed_context() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v text := json_strip_nulls(audit.session_context())::text;
BEGIN
  PERFORM pg_logical_emit_message(true, 'pgtrail.context',
            v || E'\n' || encode(sha256(k.key || sha256(k.key || convert_to(v, 'UTF8'))), 'hex'))
     FROM audit.context_key k;
END $$;

ALTER EVENT TRIGGER pgtrail_capture_0inherit ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_add ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_function ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_check ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_drop ENABLE ALWAYS;
