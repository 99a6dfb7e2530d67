-- pgtrail schema version 5: the trail belongs to a role nobody can act as, and no value any role
-- can write stops it. See docs/design.md, "Threat model".
--
-- Found on version 4 (each is a test in sql/hostile_test.go):
-- - A member of pgtrail_owner owned the trail: it could set the user-settable pgtrail.sealing to
--   its own xid and append backdated, correctly chained entries; replace audit.capture_ddl (the
--   DDL event trigger's own function) and then audit.capture; create a rule (DO INSTEAD NOTHING),
--   trigger or policy on the audit tables without it being recorded; or revoke the sealer's
--   INSERT and stop the trail.
-- - session_replication_role = replica silenced the capture triggers and the event triggers.
-- - One ~10 kB pgtrail.actor_id (or log_event argument) failed every later seal: a B-tree entry
--   holds at most a third of a page.
--
-- What changes:
-- - pgtrail_sealer (NOLOGIN, no members) owns the schema, the trail's tables (audit.events and its
--   partitions, audit.pending, audit.chain_head) and every function in the schema. Only its own
--   SECURITY DEFINER functions act as it, so "current_user = pgtrail_sealer" is what authorizes a
--   write to the trail: a setting any session can set no longer does. Members of pgtrail_owner
--   keep what they did before (configure, enable, read), through grants.
-- - The DDL event trigger asks who runs the command (its own function runs with the caller's
--   rights) and resolves triggers, rules and policies to their table: any DDL on the audit schema
--   by anyone but a superuser is refused, except the sealer's own partition maintenance.
-- - Capture triggers and the event triggers fire in every session_replication_role (ENABLE
--   ALWAYS).
-- - The search indexes hold md5 of the free-text columns instead of the values: bounded, and md5
--   is leakproof, so the indexes still serve searches through the masked (security_barrier) view.
-- Must run as a superuser. No BEGIN/COMMIT: golang-migrate sends the file as one simple query,
-- which PostgreSQL runs as one implicit transaction, so a failure leaves nothing behind.

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    RAISE EXCEPTION 'pgtrail migrations must run as a superuser (they create roles and event triggers); % is not one', current_user;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgtrail_sealer') THEN
    BEGIN
      CREATE ROLE pgtrail_sealer NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
END $$;

-- This migration's own changes are not DDL to record. Paused for this transaction only.
ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

-- Ownership. Roles, not settings, decide who writes the trail.
ALTER SCHEMA audit OWNER TO pgtrail_sealer;
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.oid::regclass AS rel FROM pg_catalog.pg_class c
            WHERE c.oid IN ('audit.events'::regclass, 'audit.pending'::regclass, 'audit.chain_head'::regclass)
               OR c.oid IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = 'audit.events'::regclass) LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO pgtrail_sealer', r.rel);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS fn, p.prokind FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = 'audit'::regnamespace LOOP
    EXECUTE pg_catalog.format('ALTER %s %s OWNER TO pgtrail_sealer',
                              CASE r.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, r.fn);
  END LOOP;
END $$;
-- What members of pgtrail_owner did as owners and still do: run every function (enable, disable,
-- set_pii_columns, create_partitions, ...) and read the trail. They write the configuration
-- tables, which they still own; the sealer's functions write them too.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA audit TO pgtrail_owner;
GRANT SELECT ON audit.events, audit.pending, audit.chain_head TO pgtrail_owner;
GRANT SELECT, INSERT, UPDATE, DELETE ON audit.audited_tables, audit.pii_columns, audit.retention_policies TO pgtrail_sealer;
GRANT SELECT, INSERT ON audit.chain_anchors TO pgtrail_sealer;
GRANT SELECT ON audit.tenant_readers TO pgtrail_sealer;

-- The capture triggers run as the writer, not as the sealer: to_jsonb(NEW) calls code the table's
-- owner chose (a cast of its own type to json), which must never run with the trail's rights.
-- The writer may add to audit.pending only the columns capture fills; transaction, time, role
-- and address come from the defaults, which it cannot set.
ALTER FUNCTION audit.capture() SECURITY INVOKER;
ALTER FUNCTION audit.capture_excluding() SECURITY INVOKER;
ALTER FUNCTION audit.capture_truncate() SECURITY INVOKER;
GRANT INSERT (action_type, resource_type, key_columns, resource_id, outcome, actor_id, actor_ip, user_agent,
              request_id, tenant_id, application_name, before_state, after_state, details) ON audit.pending TO PUBLIC;
CREATE POLICY capture ON audit.pending FOR INSERT TO PUBLIC WITH CHECK (true);
-- What the sealer reads must have the shape it expects, or one row would make every later seal
-- fail: row images are objects; of details, excluded_columns_changed is an array (the sealer
-- expands it), and capture_warning is the stream's alone.
ALTER TABLE audit.pending ADD CONSTRAINT images_are_objects CHECK (
  (before_state IS NULL OR jsonb_typeof(before_state) = 'object') AND (after_state IS NULL OR jsonb_typeof(after_state) = 'object'));
ALTER TABLE audit.pending ADD CONSTRAINT details_reserved_keys CHECK (
  details IS NULL OR jsonb_typeof(details) <> 'object'
  OR ((NOT details ? 'excluded_columns_changed'
       OR (jsonb_typeof(details -> 'excluded_columns_changed') = 'array'
           AND NOT jsonb_path_exists(details, '$.excluded_columns_changed[*] ? (@.type() != "string")')))
      AND NOT details ? 'capture_warning'));
-- action_type is indexed as it is, and outcome is one of three: as audit.log_event checks them
-- (a writer inserting into audit.pending directly skips that check).
ALTER TABLE audit.pending ADD CONSTRAINT action_type_word CHECK (action_type ~ '^[A-Z][A-Z0-9_]{0,62}$');
ALTER TABLE audit.pending ADD CONSTRAINT outcome_known CHECK (outcome IN ('SUCCESS', 'FAILURE', 'UNAUTHORIZED'));

-- Only the sealer's own functions write the trail.
CREATE OR REPLACE FUNCTION audit.refuse_unless_sealing() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP <> 'TRUNCATE' AND current_user = 'pgtrail_sealer' THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'pgtrail: % on %.% refused: only audit.seal() changes it', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$;

-- The relation a DDL command's object belongs to: the object itself for tables, indexes and
-- sequences; the table for triggers, rules, policies, constraints and column defaults.
CREATE FUNCTION audit.ddl_relation(classid oid, objid oid) RETURNS oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
RETURN CASE classid
  WHEN 'pg_class'::regclass THEN objid
  WHEN 'pg_trigger'::regclass THEN (SELECT t.tgrelid FROM pg_trigger t WHERE t.oid = objid)
  WHEN 'pg_rewrite'::regclass THEN (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = objid)
  WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy p WHERE p.oid = objid)
  WHEN 'pg_constraint'::regclass THEN (SELECT c.conrelid FROM pg_constraint c WHERE c.oid = objid)
  WHEN 'pg_attrdef'::regclass THEN (SELECT d.adrelid FROM pg_attrdef d WHERE d.oid = objid)
END;

-- Records DDL on audited tables and on the audit schema, and refuses DDL on the audit schema from
-- anyone but a superuser, except the sealer's partition maintenance (by_sealer). Called by
-- audit.capture_ddl only: outside an event trigger, pg_event_trigger_ddl_commands() raises.
CREATE FUNCTION audit.record_ddl(by_sealer boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  rel oid;
  in_audit boolean;
  is_super boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = session_user);
  maintenance boolean;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    rel := audit.ddl_relation(r.classid, r.objid);
    in_audit := r.schema_name = 'audit'
             OR EXISTS (SELECT FROM pg_class c WHERE c.oid = rel AND c.relnamespace = 'audit'::regnamespace);
    CONTINUE WHEN NOT in_audit AND NOT EXISTS (SELECT FROM audit.audited_tables t WHERE t.relid = rel);
    -- What audit.create_partitions runs, nothing more.
    maintenance := by_sealer AND r.command_tag IN ('CREATE TABLE', 'CREATE INDEX', 'CREATE TRIGGER', 'REVOKE');
    IF in_audit AND NOT is_super AND NOT maintenance THEN
      RAISE EXCEPTION 'pgtrail: % on % refused: only a superuser may change the audit schema', r.command_tag, r.object_identity
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    CONTINUE WHEN in_audit AND maintenance;
    PERFORM audit.log_event('DDL', r.object_type, r.object_identity, 'SUCCESS',
      jsonb_build_object('command_tag', r.command_tag, 'query', current_query()));
  END LOOP;
END $$;

-- The event trigger's function runs with the rights of whoever runs the DDL, so that it can tell
-- the sealer (current_user inside the sealer's functions) from everyone else.
CREATE OR REPLACE FUNCTION audit.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM audit.record_ddl(current_user = 'pgtrail_sealer');
END $$;

-- DROP: as before, and triggers, rules and policies count as part of the table they were on.
CREATE OR REPLACE FUNCTION audit.capture_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  is_super boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = session_user);
  audited boolean;
  schema text;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
    schema := COALESCE(r.schema_name, CASE WHEN r.object_type IN ('trigger', 'rule', 'policy') THEN r.address_names[1] END);
    audited := EXISTS (SELECT FROM audit.audited_tables t WHERE t.relid = r.objid)
            OR (r.object_type = 'trigger' AND r.object_name IN ('pgtrail_capture', 'pgtrail_capture_truncate'))
            OR (r.object_type IN ('trigger', 'rule', 'policy') AND EXISTS (
                  SELECT FROM audit.audited_tables t WHERE t.table_name = pg_catalog.quote_ident(r.address_names[1]) || '.' || pg_catalog.quote_ident(r.address_names[2])));
    CONTINUE WHEN schema IS DISTINCT FROM 'audit' AND NOT audited;
    IF schema = 'audit' AND NOT is_super THEN
      RAISE EXCEPTION 'pgtrail: DROP of % refused: only a superuser may change the audit schema', r.object_identity
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM audit.log_event('DDL', r.object_type, r.object_identity, 'SUCCESS',
      jsonb_build_object('command_tag', tg_tag, 'query', current_query()));
    DELETE FROM audit.audited_tables WHERE relid = r.objid;
  END LOOP;
END $$;

-- Capture triggers as in version 4, firing in every replication role: a superuser's
-- session_replication_role = replica no longer skips them.
CREATE OR REPLACE FUNCTION audit.install_capture(target regclass, pk text[], exclude_columns text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF cardinality(exclude_columns) = 0 THEN
    EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION audit.capture(%s)',
                   target, (SELECT string_agg(quote_literal(c), ', ' ORDER BY o) FROM unnest(pk) WITH ORDINALITY AS u(c, o)));
  ELSE
    EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION audit.capture_excluding(%L, %L)',
                   target, pk::text, exclude_columns::text);
  END IF;
  EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_capture_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate()',
                 target);
  EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER pgtrail_capture, ENABLE ALWAYS TRIGGER pgtrail_capture_truncate', target);
END $$;

GRANT EXECUTE ON FUNCTION audit.record_ddl(boolean) TO PUBLIC;
REVOKE ALL ON FUNCTION audit.ddl_relation(oid, oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.ddl_relation(oid, oid), audit.install_capture(regclass, text[], text[]) TO pgtrail_owner;
ALTER FUNCTION audit.ddl_relation(oid, oid) OWNER TO pgtrail_sealer;
ALTER FUNCTION audit.record_ddl(boolean) OWNER TO pgtrail_sealer;

-- Every capture trigger already installed fires in every replication role. The guards on the
-- trail stay as they were: they stop everyone but superusers, and a superuser can turn any
-- trigger off; what a superuser does to the trail, verification and the stream's WAL check catch.
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT tg.tgrelid::regclass AS rel, tg.tgname FROM pg_trigger tg
            WHERE tg.tgname IN ('pgtrail_capture', 'pgtrail_capture_truncate') AND tg.tgparentid = 0
              AND tg.tgrelid IN (SELECT a.relid FROM audit.audited_tables a) LOOP
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.rel, t.tgname);
  END LOOP;
END $$;

-- Bounded search indexes: md5 of the values a writer chooses (any length), then the time.
-- search.Query compares md5(column) = md5($n) AND column = $n.
DROP INDEX audit.events_actor_idx;
DROP INDEX audit.events_resource_idx;
DROP INDEX audit.events_tenant_idx;
CREATE INDEX events_actor_idx ON audit.events (md5(actor_id), occurred_at);
CREATE INDEX events_resource_idx ON audit.events (md5(resource_type), md5(resource_id), occurred_at);
CREATE INDEX events_tenant_idx ON audit.events (md5(tenant_id), occurred_at);

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_pii_rename ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_pii_drop ENABLE ALWAYS;
