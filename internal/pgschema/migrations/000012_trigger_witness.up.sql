-- pgtrail schema version 12: in mode trigger too, the WAL witnesses every change to an audited
-- table. The table joins the publication the stream reads (with both row images, as in mode
-- wal), and so do the inserts into audit.pending, through a second publication that publishes
-- inserts only (audit.pending has no replica identity: a publication of its deletes would refuse
-- the sealer's). The stream then sees, in each transaction, the changes made to tables in mode
-- trigger beside the capture rows their triggers wrote, and records a CAPTURE_GAP entry when
-- changes outnumber capture rows: capture triggers were off, which a superuser can arrange
-- without the event triggers of version 10 seeing it (it can disable those first). It also sees
-- every entry captured into audit.pending and reports one deleted before it was sealed.
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

SELECT audit.require_superuser();

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_check DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_drop DISABLE;

-- What the stream needs of a captured entry to match it with its table's changes and to find it
-- again: a column list keeps the row images out of the WAL the stream decodes.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'pgtrail_pending') THEN
    CREATE PUBLICATION pgtrail_pending FOR TABLE audit.pending (id, txid, occurred_at, action_type, resource_type)
      WITH (publish = 'insert');
  END IF;
END $$;

-- Version 11's audit.enable, kept as enable_v11 and called; a table in mode trigger is then put
-- in the publication (taken out by version 6's trigger branch, which only mode wal needed).
ALTER FUNCTION audit.enable(regclass, text[], text[], text) RENAME TO enable_v11;
CREATE FUNCTION audit.enable(target regclass, exclude_columns text[], pii_columns text[], mode text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM audit.enable_v11(target, exclude_columns, pii_columns, mode);
  -- An UNLOGGED table's changes are not in the WAL (and PostgreSQL refuses to publish it): its
  -- triggers alone capture it.
  IF mode = 'trigger' AND (SELECT c.relpersistence FROM pg_class c WHERE c.oid = target) = 'p' THEN
    PERFORM audit.publish_table_v6(target, true);
  END IF;
END $$;
ALTER FUNCTION audit.enable(regclass, text[], text[], text) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.enable(regclass, text[], text[], text), audit.enable_v11(regclass, text[], text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.enable(regclass, text[], text[], text) TO pgtrail_owner;

-- Version 7's problems, and a table in mode trigger out of the publication.
ALTER FUNCTION audit.capture_problems(text) RENAME TO capture_problems_v7;
CREATE FUNCTION audit.capture_problems(publication text DEFAULT 'pgtrail')
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT * FROM audit.capture_problems_v7($1)
  UNION ALL
  SELECT a.table_name, format('not in the publication: a change made with its capture triggers off would go unreported (run pgtrail enable %s again)', a.table_name)
    FROM audit.audited_tables a
   WHERE a.mode = 'trigger' AND (SELECT c.relpersistence FROM pg_class c WHERE c.oid = a.relid) = 'p'
     AND NOT EXISTS (SELECT FROM pg_publication_rel r JOIN pg_publication pb ON pb.oid = r.prpubid
                      WHERE pb.pubname = $1 AND r.prrelid = a.relid)
   ORDER BY 1, 2
$$;
ALTER FUNCTION audit.capture_problems(text) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.capture_problems(text), audit.capture_problems_v7(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.capture_problems(text) TO pgtrail_owner, pgtrail_auditor;

-- The tables already in mode trigger.
SELECT audit.publish_table_v6(a.relid, true) FROM audit.audited_tables a JOIN pg_class c ON c.oid = a.relid
 WHERE a.mode = 'trigger' AND c.relpersistence = 'p';

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_check ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_drop ENABLE ALWAYS;
