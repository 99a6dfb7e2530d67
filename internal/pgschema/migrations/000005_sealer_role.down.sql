-- Reverts schema version 5: pgtrail_owner owns the schema, the trail and its functions again, the
-- sealing setting authorizes writes to the trail, capture and event triggers fire only in the
-- origin replication role, and the search indexes hold the values. The role pgtrail_sealer stays (roles are
-- cluster-wide). Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).
-- Keeps the audit data: a downgrade, not a removal.

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;
ALTER EVENT TRIGGER pgtrail_pii_rename ENABLE;
ALTER EVENT TRIGGER pgtrail_pii_drop ENABLE;

DROP FUNCTION audit.record_ddl(boolean);
ALTER FUNCTION audit.capture() SECURITY DEFINER;
ALTER FUNCTION audit.capture_excluding() SECURITY DEFINER;
ALTER FUNCTION audit.capture_truncate() SECURITY DEFINER;
REVOKE INSERT ON audit.pending FROM PUBLIC;
DROP POLICY capture ON audit.pending;
ALTER TABLE audit.pending DROP CONSTRAINT details_reserved_keys;
ALTER TABLE audit.pending DROP CONSTRAINT images_are_objects;
ALTER TABLE audit.pending DROP CONSTRAINT action_type_word;
ALTER TABLE audit.pending DROP CONSTRAINT outcome_known;
DROP FUNCTION audit.ddl_relation(oid, oid);

DROP INDEX audit.events_actor_idx;
DROP INDEX audit.events_resource_idx;
DROP INDEX audit.events_tenant_idx;
CREATE INDEX events_actor_idx ON audit.events (actor_id, occurred_at);
CREATE INDEX events_resource_idx ON audit.events (resource_type, resource_id, occurred_at);
CREATE INDEX events_tenant_idx ON audit.events (tenant_id, occurred_at);

DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT tg.tgrelid::regclass AS rel, tg.tgname
             FROM pg_trigger tg
            WHERE tg.tgname IN ('pgtrail_capture', 'pgtrail_capture_truncate') AND tg.tgparentid = 0
              AND tg.tgrelid IN (SELECT a.relid FROM audit.audited_tables a) LOOP
    EXECUTE format('ALTER TABLE %s ENABLE TRIGGER %I', t.rel, t.tgname);
  END LOOP;
END $$;

ALTER SCHEMA audit OWNER TO pgtrail_owner;
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.oid::regclass AS rel FROM pg_catalog.pg_class c
            WHERE c.oid IN ('audit.events'::regclass, 'audit.pending'::regclass, 'audit.chain_head'::regclass)
               OR c.oid IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = 'audit.events'::regclass) LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO pgtrail_owner', r.rel);
    EXECUTE pg_catalog.format('REVOKE UPDATE, DELETE, TRUNCATE ON %s FROM pgtrail_owner', r.rel);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS fn, p.prokind FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = 'audit'::regnamespace AND p.proname <> 'table_name' LOOP
    EXECUTE pg_catalog.format('ALTER %s %s OWNER TO pgtrail_owner',
                              CASE r.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, r.fn);
  END LOOP;
END $$;
GRANT UPDATE, DELETE ON audit.pending, audit.chain_head TO pgtrail_owner;
REVOKE ALL ON audit.audited_tables, audit.pii_columns, audit.retention_policies, audit.chain_anchors,
  audit.tenant_readers FROM pgtrail_sealer;
REVOKE ALL ON SCHEMA audit FROM pgtrail_sealer;

SET LOCAL ROLE pgtrail_owner;

CREATE OR REPLACE FUNCTION audit.refuse_unless_sealing() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP <> 'TRUNCATE' AND current_user = 'pgtrail_owner'
     AND current_setting('pgtrail.sealing', true) = pg_current_xact_id()::text THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'pgtrail: % on %.% refused: only audit.seal() changes it', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE OR REPLACE FUNCTION audit.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  rel oid;
  is_super boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = session_user);
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    rel := CASE WHEN r.object_type = 'trigger' THEN (SELECT tgrelid FROM pg_trigger WHERE oid = r.objid)
                WHEN r.classid = 'pg_class'::regclass THEN r.objid END;
    CONTINUE WHEN r.schema_name IS DISTINCT FROM 'audit'
              AND NOT EXISTS (SELECT FROM audit.audited_tables t WHERE t.relid = rel);
    IF r.schema_name = 'audit' AND NOT is_super AND r.command_tag NOT IN ('CREATE TABLE', 'CREATE INDEX', 'CREATE TRIGGER', 'REVOKE', 'GRANT') THEN
      RAISE EXCEPTION 'pgtrail: % on % refused: only a superuser may change the audit schema', r.command_tag, r.object_identity
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    CONTINUE WHEN r.schema_name = 'audit' AND r.command_tag IN ('CREATE TABLE', 'CREATE INDEX', 'CREATE TRIGGER', 'REVOKE', 'GRANT')
              AND current_setting('pgtrail.sealing', true) = pg_current_xact_id()::text;
    PERFORM audit.log_event('DDL', r.object_type, r.object_identity, 'SUCCESS',
      jsonb_build_object('command_tag', r.command_tag, 'query', current_query()));
  END LOOP;
END $$;

CREATE OR REPLACE FUNCTION audit.capture_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  is_super boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = session_user);
  audited boolean;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
    audited := EXISTS (SELECT FROM audit.audited_tables t WHERE t.relid = r.objid)
            OR (r.object_type = 'trigger' AND r.object_name IN ('pgtrail_capture', 'pgtrail_capture_truncate'));
    CONTINUE WHEN r.schema_name IS DISTINCT FROM 'audit' AND NOT audited;
    IF r.schema_name = 'audit' AND NOT is_super THEN
      RAISE EXCEPTION 'pgtrail: DROP of % refused: only a superuser may change the audit schema', r.object_identity
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM audit.log_event('DDL', r.object_type, r.object_identity, 'SUCCESS',
      jsonb_build_object('command_tag', tg_tag, 'query', current_query()));
    DELETE FROM audit.audited_tables WHERE relid = r.objid;
  END LOOP;
END $$;

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
END $$;

RESET ROLE;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE;
ALTER EVENT TRIGGER pgtrail_drop ENABLE;
