-- pgtrail schema version 7: what the stream needs to chain each WAL change as configured when it
-- was made, and the context key kept from readers of all data.
-- * audit.audited_tables joins the publication: the stream reads each configuration change (mode,
--   excluded columns, enable, disable) in commit order between the changes it governs, instead of
--   reading the table's current configuration when it gets to them (a change waiting in the slot
--   when its table was switched to mode trigger or disabled was dropped; one made while a column
--   was excluded was chained with it once the exclusion was lifted).
-- * audit.chain_head.wal_config: the configuration as of what the stream has read, written with
--   the entries it chains, so that a restarted stream resumes with it rather than with today's.
-- * the context trigger on every partition of a table in mode wal (a write straight into a
--   partition fires no statement trigger of the partitioned table: its changes were flagged as
--   made without context), and a partition without it or without REPLICA IDENTITY FULL reported.
-- * audit.enable(t) keeps a table's excluded columns (it reset them to none); for a table not
--   yet audited it chooses mode wal where WAL capture works (wal_level logical, the stream's slot
--   in this database, a logged table), else mode trigger with a NOTICE saying why; it was
--   trigger always.
-- * audit.context_key under row-level security: pg_read_all_data reads every table, but is bound
--   by policies (it has no BYPASSRLS); only pgtrail_sealer's policy lets a row through.
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    RAISE EXCEPTION 'pgtrail migrations must run as a superuser (they change the publication); % is not one', current_user;
  END IF;
END $$;

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

-- Refuses to go on unless the role running a migration is a superuser (migrations create roles
-- and event triggers and change the publication). Every later migration calls it first, rather
-- than repeating the check.
CREATE FUNCTION audit.require_superuser() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
    RAISE EXCEPTION 'pgtrail migrations must run as a superuser (they create roles and event triggers); % is not one', current_user
      USING ERRCODE = 'insufficient_privilege';
  END IF;
END $$;

ALTER TABLE audit.context_key ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit.context_key FORCE ROW LEVEL SECURITY;
CREATE POLICY sealer_only ON audit.context_key FOR SELECT TO pgtrail_sealer USING (true);

-- NULL until a stream records it: the stream then starts from the current configuration.
ALTER TABLE audit.chain_head ADD COLUMN wal_config jsonb;

ALTER PUBLICATION pgtrail ADD TABLE audit.audited_tables;

-- Version 6's functions are kept under a _v6 name, so that reverting this version renames them
-- back rather than carrying copies of their bodies. audit.publish_table calls its predecessor;
-- audit.capture_problems_v6 is not called (its body names its parameter by its old name).
ALTER FUNCTION audit.capture_problems(text) RENAME TO capture_problems_v6;
ALTER FUNCTION audit.publish_table(regclass, boolean) RENAME TO publish_table_v6;

-- Each table in mode wal and each of its partitions (one created after the table was enabled
-- has no context trigger and not REPLICA IDENTITY FULL until it is enabled again, and is named
-- on its table's row); and the configuration table out of the publication the stream reads.
CREATE FUNCTION audit.capture_problems(publication text DEFAULT 'pgtrail')
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT a.table_name,
         CASE WHEN c.oid = a.relid THEN p.problem
              ELSE format('partition %s: %s (run pgtrail enable %s again)', audit.table_name(c.oid), p.problem, a.table_name) END
    FROM audit.audited_tables a
    JOIN pg_class c ON c.oid = a.relid OR c.oid IN (SELECT t.relid FROM pg_partition_tree(a.relid) t),
         LATERAL (VALUES
           (CASE WHEN c.oid = a.relid AND NOT EXISTS (SELECT FROM pg_publication_rel r JOIN pg_publication pb ON pb.oid = r.prpubid
                                                       WHERE pb.pubname = $1 AND r.prrelid = a.relid)
                 THEN 'not in the publication: its changes do not reach the trail' END),
           (CASE WHEN c.relreplident <> 'f' THEN 'replica identity not FULL: before images hold only the key' END),
           (CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED: its changes never reach the WAL' END),
           (CASE WHEN c.oid <> a.relid AND NOT EXISTS (SELECT FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND tg.tgname = 'pgtrail_context' AND tg.tgenabled = 'A')
                 THEN 'no context trigger: changes written straight into it are flagged as made without context' END)) AS p(problem)
   WHERE a.mode = 'wal' AND p.problem IS NOT NULL
  UNION ALL
  SELECT 'audit.audited_tables', 'not in the publication: configuration changes are read when the stream gets to a change, not when it was made'
   WHERE EXISTS (SELECT FROM audit.audited_tables a WHERE a.mode = 'wal')
     AND NOT EXISTS (SELECT FROM pg_publication_rel r JOIN pg_publication pb ON pb.oid = r.prpubid
                      WHERE pb.pubname = $1 AND r.prrelid = 'audit.audited_tables'::regclass)
   ORDER BY 1, 2
$$;

-- Version 6's publish_table (which checks the caller), and: the context trigger on every
-- partition (ENABLE ALWAYS), dropped when the table leaves the publication. Statement triggers
-- of a partitioned table fire only for statements naming it, and PostgreSQL does not clone them
-- to its partitions. Owned by the superuser running this (as version 6's), to create triggers
-- on tables of any owner.
CREATE FUNCTION audit.publish_table(target regclass, publish boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  part regclass;
BEGIN
  PERFORM audit.publish_table_v6(target, publish);
  FOR part IN SELECT t.relid FROM pg_partition_tree(target) t WHERE t.relid <> target LOOP
    IF publish THEN
      EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_context BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION audit.emit_context()', part);
      EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER pgtrail_context', part);
    ELSE
      PERFORM audit.drop_trigger(part, 'pgtrail_context');
    END IF;
  END LOOP;
END $$;

ALTER FUNCTION audit.capture_problems(text) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.capture_problems(text), audit.capture_problems_v6(text), audit.publish_table(regclass, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.capture_problems(text) TO pgtrail_owner, pgtrail_auditor;
GRANT EXECUTE ON FUNCTION audit.publish_table(regclass, boolean) TO pgtrail_owner;

-- Version 6's two-argument audit.enable is kept as enable_v6 (see above).
ALTER FUNCTION audit.enable(regclass, text[]) RENAME TO enable_v6;
-- exclude_columns NULL (the default) keeps a table's excluded columns: enabling a table again
-- must not quietly put its password hashes back into the trail.
CREATE FUNCTION audit.enable(target regclass, exclude_columns text[] DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  chosen text := (SELECT a.mode FROM audit.audited_tables a WHERE a.relid = target);
BEGIN
  exclude_columns := COALESCE(exclude_columns, (SELECT a.exclude_columns FROM audit.audited_tables a WHERE a.relid = target), '{}');
  IF chosen IS NULL THEN
    IF current_setting('wal_level') = 'logical'
       AND EXISTS (SELECT FROM pg_replication_slots s WHERE s.database = current_database() AND s.plugin = 'pgoutput')
       AND (SELECT c.relpersistence FROM pg_class c WHERE c.oid = target) = 'p' THEN
      chosen := 'wal';
    ELSE
      chosen := 'trigger';
      RAISE NOTICE 'audit.enable: % is captured in mode trigger: mode wal needs wal_level = logical, the stream''s replication slot in this database (pgtrail enable --mode wal creates it) and a logged table', target;
    END IF;
  END IF;
  PERFORM audit.enable(target, exclude_columns, NULL::text[], chosen);
END $$;
ALTER FUNCTION audit.enable(regclass, text[]) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.enable(regclass, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.enable(regclass, text[]) TO pgtrail_owner;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
