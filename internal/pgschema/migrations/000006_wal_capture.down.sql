-- Reverts schema version 6: tables in mode 'wal' go back to trigger capture (recorded as
-- AUDIT_ENABLE), leave the publication, and lose their context trigger; audit.enable and
-- audit.disable of version 5 come back. Changes made in mode 'wal' that the stream has not chained
-- yet stay in the slot: run `pgtrail stream --exit-when-caught-up` of version 6 first.
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT a.relid::regclass AS rel, a.table_name, a.pk_columns, a.exclude_columns
             FROM audit.audited_tables a WHERE a.mode = 'wal' ORDER BY a.relid LOOP
    PERFORM audit.install_capture(t.rel, t.pk_columns, t.exclude_columns);
    PERFORM audit.drop_trigger(t.rel, 'pgtrail_context');
    PERFORM audit.publish_table(t.rel, false);
    PERFORM audit.log_event('AUDIT_ENABLE', 'table', t.table_name, 'SUCCESS',
      jsonb_build_object('exclude_columns', t.exclude_columns, 'pk_columns', t.pk_columns,
                         'reason', 'schema version 6 reverted: back to trigger capture'));
  END LOOP;
END $$;

DROP FUNCTION audit.enable(regclass, text[], text[], text);
DROP FUNCTION audit.register_table(regclass, text[], text[], text);
DROP FUNCTION audit.unregister_table(regclass);
ALTER TABLE audit.audited_tables OWNER TO pgtrail_owner;
GRANT SELECT, INSERT, UPDATE, DELETE ON audit.audited_tables TO pgtrail_sealer;
DROP FUNCTION audit.publish_table(regclass, boolean);
DROP FUNCTION audit.emit_context();
DROP FUNCTION audit.capture_problems(text);
DROP FUNCTION audit.emit_signed_context();
DROP TABLE audit.context_key;
DROP FUNCTION audit.row_images(oid[], integer[], text[], text[], text[], boolean[], boolean[], text[], text[], text[], boolean);
DROP FUNCTION audit.drop_trigger(regclass, text);
ALTER TABLE audit.audited_tables DROP COLUMN mode;
ALTER TABLE audit.chain_head DROP COLUMN wal_lsn;

CREATE OR REPLACE FUNCTION audit.enable(target regclass, exclude_columns text[] DEFAULT '{}') RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rel record;
  pk text[];
  bad text;
BEGIN
  SELECT c.relkind, c.relpersistence, n.nspname INTO rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
  IF rel.relkind NOT IN ('r', 'p') THEN
    RAISE EXCEPTION 'audit.enable: % is not a table', target USING ERRCODE = 'wrong_object_type';
  END IF;
  IF rel.nspname = 'audit' THEN
    RAISE EXCEPTION 'audit.enable: % is part of pgtrail itself', target USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF rel.relpersistence = 't' THEN
    RAISE EXCEPTION 'audit.enable: % is a temporary table', target USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT c INTO bad FROM unnest(COALESCE(exclude_columns, '{}')) AS c
   WHERE NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = target AND a.attname = c
                        AND a.attnum > 0 AND NOT a.attisdropped)
   LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'audit.enable: % has no column %', target, quote_ident(bad) USING ERRCODE = 'undefined_column';
  END IF;
  pk := ARRAY(SELECT a.attname::text
                FROM pg_index i
                JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, o) ON true
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE i.indrelid = target AND i.indisprimary
               ORDER BY k.o);

  INSERT INTO audit.audited_tables (relid, table_name, pk_columns, exclude_columns)
  VALUES (target, audit.table_name(target), pk, COALESCE(exclude_columns, '{}'))
  ON CONFLICT (relid) DO UPDATE SET table_name = EXCLUDED.table_name, pk_columns = EXCLUDED.pk_columns,
    exclude_columns = EXCLUDED.exclude_columns, enabled_at = now(), enabled_by = session_user;

  PERFORM audit.install_capture(target, pk, COALESCE(exclude_columns, '{}'));
  PERFORM audit.log_event('AUDIT_ENABLE', 'table', audit.table_name(target), 'SUCCESS',
                          jsonb_build_object('exclude_columns', COALESCE(exclude_columns, '{}'), 'pk_columns', pk));
END $$;

CREATE OR REPLACE FUNCTION audit.disable(target regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM audit.audited_tables WHERE relid = target) THEN
    RAISE EXCEPTION 'audit.disable: % is not audited', target USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM audit.log_event('AUDIT_DISABLE', 'table', audit.table_name(target), 'SUCCESS', NULL);
  EXECUTE format('DROP TRIGGER IF EXISTS pgtrail_capture ON %s', target);
  EXECUTE format('DROP TRIGGER IF EXISTS pgtrail_capture_truncate ON %s', target);
  DELETE FROM audit.audited_tables WHERE relid = target;
END $$;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
