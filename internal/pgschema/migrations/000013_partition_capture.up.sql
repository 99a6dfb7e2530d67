-- pgtrail schema version 13: a partition's own capture. A TRUNCATE of one partition of an audited
-- table reached the trail in neither mode: a statement trigger on the table does not fire for it,
-- and the publication, which sends partitions' changes as their table's, sends no TRUNCATE of a
-- lone partition. The table's owner (or anyone it lets TRUNCATE the partition) could empty it
-- without a trace. Now each partition has its own TRUNCATE capture trigger, in both modes. And a
-- partition created or attached after its table was enabled gets what a partition needs (the
-- TRUNCATE trigger; in mode wal the context trigger; REPLICA IDENTITY FULL, or a published
-- table's updates and deletes on it could be refused) from an event trigger, at once, instead of
-- being a capture problem until `pgtrail enable` ran again. Turning the new trigger off is a
-- CAPTURE_GAP entry like the others (version 10).
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

SELECT audit.require_superuser();

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_check DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_drop DISABLE;

-- Version 10's list, and a partition's TRUNCATE trigger.
ALTER FUNCTION audit.capture_triggers(text, boolean) RENAME TO capture_triggers_v10;
CREATE FUNCTION audit.capture_triggers(mode text, partition boolean) RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
RETURN audit.capture_triggers_v10(mode, partition) || CASE WHEN partition THEN ARRAY['pgtrail_capture_truncate'] ELSE '{}'::text[] END;
ALTER FUNCTION audit.capture_triggers(text, boolean) OWNER TO pgtrail_sealer;

-- Owned by the superuser who runs this migration (creating triggers on, and altering, a table
-- needs its owner), as is the event trigger's function below: they add pgtrail's own triggers
-- and nothing else, so a member of pgtrail_owner may call this one.
-- Gives each partition of target, an audited table, what a partition needs beyond what
-- PostgreSQL clones from its table (row triggers), where it lacks it; with repair (enable), also
-- turns back on a capture trigger someone turned off (the event trigger below leaves that to the
-- capture check, which records it). One ALTER TABLE per partition: the capture check (version
-- 10) runs after each, and must find them all. Acts on nothing it would not change, so the event
-- trigger, which its own ALTER TABLE fires again, ends there.
CREATE FUNCTION audit.capture_partitions(target regclass, repair boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  m text := (SELECT a.mode FROM audit.audited_tables a WHERE a.relid = target);
  p record;
  created text[];
  alter_ text[];
BEGIN
  IF m IS NULL THEN
    RETURN;
  END IF;
  -- Foreign tables take no TRUNCATE trigger and no replica identity (and their rows are not in
  -- this database's WAL).
  FOR p IN SELECT c.oid::regclass AS rel, c.relreplident, c.relpersistence FROM pg_partition_tree(target) t JOIN pg_class c ON c.oid = t.relid
            WHERE t.relid <> target AND c.relkind IN ('r', 'p') LOOP
    created := '{}';
    -- Missing, or (with repair) running some other function than pgtrail's: a table's owner can
    -- replace a trigger of that name with its own.
    IF NOT EXISTS (SELECT FROM pg_trigger x WHERE x.tgrelid = p.rel AND x.tgname = 'pgtrail_capture_truncate' AND NOT x.tgisinternal
                     AND (NOT repair OR x.tgfoid = 'audit.capture_truncate()'::regprocedure)) THEN
      EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_capture_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate()', p.rel);
      created := created || 'pgtrail_capture_truncate'::text;
    END IF;
    IF m = 'wal' AND NOT EXISTS (SELECT FROM pg_trigger x WHERE x.tgrelid = p.rel AND x.tgname = 'pgtrail_context' AND NOT x.tgisinternal
                                   AND (NOT repair OR x.tgfoid = 'audit.emit_context()'::regprocedure)) THEN
      EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_context BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION audit.emit_context()', p.rel);
      created := created || 'pgtrail_context'::text;
    END IF;
    SELECT array_agg(format('ENABLE ALWAYS TRIGGER %I', n)) INTO alter_
      FROM unnest(audit.capture_triggers(m, true)) AS n
      JOIN pg_trigger x ON x.tgrelid = p.rel AND x.tgname = n AND NOT x.tgisinternal
     WHERE x.tgenabled <> 'A' AND (repair OR n = ANY (created));
    IF p.relreplident <> 'f' AND p.relpersistence = 'p' AND (m = 'wal' OR EXISTS (
         SELECT FROM pg_publication_rel r JOIN pg_publication pb ON pb.oid = r.prpubid WHERE pb.pubname = 'pgtrail' AND r.prrelid = target)) THEN
      alter_ := COALESCE(alter_, '{}') || 'REPLICA IDENTITY FULL'::text;
    END IF;
    IF cardinality(alter_) > 0 THEN
      EXECUTE format('ALTER TABLE %s %s', p.rel, array_to_string(alter_, ', '));
    END IF;
  END LOOP;
END $$;

-- A partition created, attached or altered under an audited table: give it its capture.
CREATE FUNCTION audit.capture_new_partitions() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t regclass;
BEGIN
  FOR t IN SELECT DISTINCT a.relid
             FROM pg_event_trigger_ddl_commands() c
             CROSS JOIN LATERAL pg_partition_ancestors(audit.ddl_relation(c.classid, c.objid)) p
             JOIN audit.audited_tables a ON a.relid = p.relid
            WHERE audit.ddl_relation(c.classid, c.objid) IS NOT NULL LOOP
    PERFORM audit.capture_partitions(t, false);
  END LOOP;
END $$;
-- Named to sort before pgtrail_capture_check: event triggers run in name order, and the check
-- must find what this adds.
CREATE EVENT TRIGGER pgtrail_capture_add ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE') EXECUTE FUNCTION audit.capture_new_partitions();

-- A capture trigger is known by its name to the check of version 10, which looks at whether it
-- is enabled: a table's owner could replace one (CREATE OR REPLACE TRIGGER pgtrail_capture ...)
-- with its own function, writing capture rows of its choosing, and nothing said so. After any
-- CREATE TRIGGER, a trigger of pgtrail's names on an audited table or partition that runs
-- another function than pgtrail's is a CAPTURE_GAP entry.
CREATE FUNCTION audit.check_capture_function() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t record;
BEGIN
  FOR t IN
    SELECT DISTINCT a.table_name, x.tgrelid::regclass AS rel, x.tgname, x.tgfoid::regprocedure AS fn
      FROM pg_event_trigger_ddl_commands() c
      JOIN pg_trigger x ON x.oid = c.objid AND c.classid = 'pg_trigger'::regclass
      JOIN audit.audited_tables a ON a.relid = x.tgrelid OR a.relid IN (SELECT p.relid FROM pg_partition_ancestors(x.tgrelid) p)
     WHERE x.tgname IN ('pgtrail_capture', 'pgtrail_capture_truncate', 'pgtrail_context')
       AND x.tgfoid <> ALL (CASE x.tgname
             WHEN 'pgtrail_capture' THEN ARRAY['audit.capture()'::regprocedure, 'audit.capture_excluding()'::regprocedure]
             WHEN 'pgtrail_capture_truncate' THEN ARRAY['audit.capture_truncate()'::regprocedure]
             ELSE ARRAY['audit.emit_context()'::regprocedure] END)
  LOOP
    PERFORM audit.log_event('CAPTURE_GAP', 'table', t.table_name, 'FAILURE', jsonb_build_object(
      'problem', format('capture trigger %s on %s runs %s, not pgtrail''s: what it writes is not capture', t.tgname, t.rel, t.fn),
      'fix', format('pgtrail enable %s', t.table_name),
      'command_tag', TG_TAG, 'query', current_query(), 'seen_by', 'pgtrail event trigger'));
  END LOOP;
END $$;
CREATE EVENT TRIGGER pgtrail_capture_function ON ddl_command_end
  WHEN TAG IN ('CREATE TRIGGER') EXECUTE FUNCTION audit.check_capture_function();

-- Version 12's audit.enable, kept as enable_v12 and called; then the partitions.
ALTER FUNCTION audit.enable(regclass, text[], text[], text) RENAME TO enable_v12;
CREATE FUNCTION audit.enable(target regclass, exclude_columns text[], pii_columns text[], mode text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM audit.enable_v12(target, exclude_columns, pii_columns, mode);
  PERFORM audit.capture_partitions(target, true);
END $$;
ALTER FUNCTION audit.enable(regclass, text[], text[], text) OWNER TO pgtrail_sealer;

-- Version 10's audit.disable, kept as disable_v10 and called; then the partitions' TRUNCATE
-- triggers go too (the table is no longer audited: dropping them is no gap).
ALTER FUNCTION audit.disable(regclass) RENAME TO disable_v10;
CREATE FUNCTION audit.disable(target regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM audit.disable_v10(target);
  PERFORM audit.drop_trigger(t.relid, 'pgtrail_capture_truncate') FROM pg_partition_tree(target) t WHERE t.relid <> target;
END $$;
ALTER FUNCTION audit.disable(regclass) OWNER TO pgtrail_sealer;

REVOKE ALL ON FUNCTION audit.enable(regclass, text[], text[], text), audit.enable_v12(regclass, text[], text[], text),
  audit.disable(regclass), audit.disable_v10(regclass), audit.capture_partitions(regclass, boolean),
  audit.capture_new_partitions(), audit.check_capture_function(), audit.capture_triggers_v10(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.enable(regclass, text[], text[], text), audit.disable(regclass), audit.capture_partitions(regclass, boolean) TO pgtrail_owner;

-- The partitions of the tables audited now.
SELECT audit.capture_partitions(a.relid, true) FROM audit.audited_tables a;

ALTER EVENT TRIGGER pgtrail_capture_add ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_function ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_check ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_drop ENABLE ALWAYS;
