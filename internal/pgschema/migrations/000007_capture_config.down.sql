-- Reverts schema version 7. Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

DROP FUNCTION audit.require_superuser();
DROP POLICY sealer_only ON audit.context_key;
ALTER TABLE audit.context_key NO FORCE ROW LEVEL SECURITY;
ALTER TABLE audit.context_key DISABLE ROW LEVEL SECURITY;
ALTER TABLE audit.chain_head DROP COLUMN wal_config;
ALTER PUBLICATION pgtrail DROP TABLE audit.audited_tables;

DROP FUNCTION audit.capture_problems(text);
ALTER FUNCTION audit.capture_problems_v6(text) RENAME TO capture_problems;

-- The partitions' context triggers go; version 6's functions come back under their names.
DO $$
DECLARE p record;
BEGIN
  FOR p IN SELECT t.relid FROM audit.audited_tables a, LATERAL pg_partition_tree(a.relid) t WHERE t.relid <> a.relid LOOP
    PERFORM audit.drop_trigger(p.relid, 'pgtrail_context');
  END LOOP;
END $$;

DROP FUNCTION audit.publish_table(regclass, boolean);
ALTER FUNCTION audit.publish_table_v6(regclass, boolean) RENAME TO publish_table;

DROP FUNCTION audit.enable(regclass, text[]);
ALTER FUNCTION audit.enable_v6(regclass, text[]) RENAME TO enable;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
