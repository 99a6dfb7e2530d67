-- Reverts schema version 10. Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

DROP EVENT TRIGGER pgtrail_capture_check;
DROP EVENT TRIGGER pgtrail_capture_drop;
DROP FUNCTION audit.check_capture();
DROP FUNCTION audit.capture_triggers(text, boolean);
DROP FUNCTION audit.publish_table(regclass, boolean);
ALTER FUNCTION audit.publish_table_v7(regclass, boolean) RENAME TO publish_table;
GRANT EXECUTE ON FUNCTION audit.publish_table(regclass, boolean) TO pgtrail_owner;
DROP FUNCTION audit.disable(regclass);
ALTER FUNCTION audit.disable_v6(regclass) RENAME TO disable;
GRANT EXECUTE ON FUNCTION audit.disable(regclass) TO pgtrail_owner;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
