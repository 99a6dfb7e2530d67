-- pgtrail schema version 10: turning a capture trigger off is a CAPTURE_GAP entry. In mode
-- trigger a superuser or the table's owner could disable the capture trigger (or make it fire
-- for replicas only, or outside replica mode only, or drop it), change rows that then never
-- reached the trail, and turn it back on: the ALTER was one DDL entry among others, and verify
-- said intact. In mode wal the context trigger likewise (changes are then chained without who
-- made them). Now an event trigger checks, after ALTER TABLE, ALTER TRIGGER and DROP TRIGGER, the
-- capture triggers of the audited tables (and their partitions) it touched, and records each that
-- is not ENABLE ALWAYS as a CAPTURE_GAP entry, which verify reports (kind capture_warning).
-- audit.disable unregisters the table before it drops its triggers, so disabling is no gap.
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

SELECT audit.require_superuser();

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

-- The capture triggers rel needs, as a table audited in mode (its own) or as a partition of one.
CREATE FUNCTION audit.capture_triggers(mode text, partition boolean) RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN mode = 'wal' THEN ARRAY['pgtrail_context']
            WHEN partition THEN ARRAY['pgtrail_capture']
            ELSE ARRAY['pgtrail_capture', 'pgtrail_capture_truncate'] END;

CREATE FUNCTION audit.check_capture() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rels oid[];
  t record;
BEGIN
  IF TG_EVENT = 'ddl_command_end' THEN
    rels := ARRAY(SELECT audit.ddl_relation(c.classid, c.objid) FROM pg_event_trigger_ddl_commands() c
                   WHERE c.command_tag IN ('ALTER TABLE', 'ALTER TRIGGER'));
  ELSE
    rels := ARRAY(SELECT to_regclass(quote_ident(d.address_names[1]) || '.' || quote_ident(d.address_names[2]))
                    FROM pg_event_trigger_dropped_objects() d
                   WHERE d.object_type = 'trigger' AND d.address_names[3] LIKE 'pgtrail\_%');
  END IF;
  FOR t IN
    SELECT DISTINCT a.table_name, a.mode, r.rel, n.name, x.tgenabled
      FROM unnest(rels) AS r(rel)
      JOIN audit.audited_tables a ON a.relid = r.rel OR a.relid IN (SELECT p.relid FROM pg_partition_ancestors(r.rel) p)
      CROSS JOIN LATERAL unnest(audit.capture_triggers(a.mode, r.rel <> a.relid)) AS n(name)
      LEFT JOIN pg_trigger x ON x.tgrelid = r.rel AND x.tgname = n.name AND NOT x.tgisinternal
     WHERE r.rel IS NOT NULL AND x.tgenabled IS DISTINCT FROM 'A'
  LOOP
    PERFORM audit.log_event('CAPTURE_GAP', 'table', t.table_name, 'FAILURE', jsonb_build_object(
      'problem', format('capture trigger %s on %s is %s: %s', t.name, t.rel::regclass,
                        CASE t.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'enabled for replicas only'
                                         WHEN 'O' THEN 'skipped in replica mode' ELSE 'gone' END,
                        CASE t.mode WHEN 'wal' THEN 'changes are chained without who made them'
                                    ELSE 'changes to the table are not captured' END),
      'fix', format('pgtrail enable %s', t.table_name),
      'command_tag', TG_TAG, 'query', current_query(), 'seen_by', 'pgtrail event trigger'));
  END LOOP;
END $$;

CREATE EVENT TRIGGER pgtrail_capture_check ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER') EXECUTE FUNCTION audit.check_capture();
CREATE EVENT TRIGGER pgtrail_capture_drop ON sql_drop
  WHEN TAG IN ('DROP TRIGGER', 'ALTER TABLE') EXECUTE FUNCTION audit.check_capture();
ALTER EVENT TRIGGER pgtrail_capture_check ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_drop ENABLE ALWAYS;

-- Version 7's audit.publish_table, kept as publish_table_v7; this one gives the partitions their
-- context trigger before their replica identity is changed (an ALTER TABLE, which the check
-- above would find them without it at).
ALTER FUNCTION audit.publish_table(regclass, boolean) RENAME TO publish_table_v7;
CREATE FUNCTION audit.publish_table(target regclass, publish boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  part regclass;
BEGIN
  IF publish AND pg_has_role(session_user, 'pgtrail_owner', 'MEMBER') THEN
    FOR part IN SELECT t.relid FROM pg_partition_tree(target) t WHERE t.relid <> target LOOP
      EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_context BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION audit.emit_context()', part);
      EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER pgtrail_context', part);
    END LOOP;
  END IF;
  PERFORM audit.publish_table_v7(target, publish); -- checks the caller, publishes, and the rest
END $$;
REVOKE ALL ON FUNCTION audit.publish_table(regclass, boolean), audit.publish_table_v7(regclass, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.publish_table(regclass, boolean) TO pgtrail_owner;

-- Version 6's audit.disable, kept as disable_v6; this one unregisters the table first.
ALTER FUNCTION audit.disable(regclass) RENAME TO disable_v6;
CREATE FUNCTION audit.disable(target regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM audit.audited_tables a WHERE a.relid = target) THEN
    RAISE EXCEPTION 'audit.disable: % is not audited', target USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- Unregistered first: the triggers dropped below belong to no audited table, and dropping them
  -- is no capture gap.
  PERFORM audit.unregister_table(target);
  PERFORM audit.drop_trigger(target, n) FROM unnest(ARRAY['pgtrail_capture', 'pgtrail_capture_truncate', 'pgtrail_context']) AS n;
  PERFORM audit.publish_table(target, false);
END $$;

ALTER FUNCTION audit.capture_triggers(text, boolean) OWNER TO pgtrail_sealer;
ALTER FUNCTION audit.check_capture() OWNER TO pgtrail_sealer;
ALTER FUNCTION audit.disable(regclass) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.disable(regclass), audit.disable_v6(regclass), audit.check_capture() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.disable(regclass) TO pgtrail_owner;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
