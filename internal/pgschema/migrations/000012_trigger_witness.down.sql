-- Reverts schema version 12. Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).
-- Tables in mode trigger leave the publication; their replica identity stays FULL.

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_check DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_drop DISABLE;

-- Not through audit.publish_table: reverting records nothing (it is the migration's own change).
DO $$
DECLARE t regclass;
BEGIN
  FOR t IN SELECT a.relid FROM audit.audited_tables a
             JOIN pg_publication_rel r ON r.prrelid = a.relid JOIN pg_publication p ON p.oid = r.prpubid
            WHERE a.mode = 'trigger' AND p.pubname = 'pgtrail' LOOP
    EXECUTE format('ALTER PUBLICATION pgtrail DROP TABLE %s', t);
  END LOOP;
END $$;

DROP FUNCTION audit.capture_problems(text);
ALTER FUNCTION audit.capture_problems_v7(text) RENAME TO capture_problems;
GRANT EXECUTE ON FUNCTION audit.capture_problems(text) TO pgtrail_owner, pgtrail_auditor;

DROP FUNCTION audit.enable(regclass, text[], text[], text);
ALTER FUNCTION audit.enable_v11(regclass, text[], text[], text) RENAME TO enable;
GRANT EXECUTE ON FUNCTION audit.enable(regclass, text[], text[], text) TO pgtrail_owner;

DROP PUBLICATION IF EXISTS pgtrail_pending;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_check ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_drop ENABLE ALWAYS;
