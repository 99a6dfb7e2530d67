-- Reverts schema version 13. Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).
-- The partitions' TRUNCATE triggers go; context triggers and replica identities stay.

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_check DISABLE;
ALTER EVENT TRIGGER pgtrail_capture_drop DISABLE;

DROP EVENT TRIGGER pgtrail_capture_add;
DROP EVENT TRIGGER pgtrail_capture_function;
DROP FUNCTION audit.check_capture_function();
SELECT audit.drop_trigger(t.relid, 'pgtrail_capture_truncate')
  FROM audit.audited_tables a CROSS JOIN LATERAL pg_partition_tree(a.relid) t WHERE t.relid <> a.relid;

DROP FUNCTION audit.disable(regclass);
ALTER FUNCTION audit.disable_v10(regclass) RENAME TO disable;
GRANT EXECUTE ON FUNCTION audit.disable(regclass) TO pgtrail_owner;
DROP FUNCTION audit.enable(regclass, text[], text[], text);
ALTER FUNCTION audit.enable_v12(regclass, text[], text[], text) RENAME TO enable;
GRANT EXECUTE ON FUNCTION audit.enable(regclass, text[], text[], text) TO pgtrail_owner;
DROP FUNCTION audit.capture_new_partitions();
DROP FUNCTION audit.capture_partitions(regclass, boolean);
DROP FUNCTION audit.capture_triggers(text, boolean);
ALTER FUNCTION audit.capture_triggers_v10(text, boolean) RENAME TO capture_triggers;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_check ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_drop ENABLE ALWAYS;
