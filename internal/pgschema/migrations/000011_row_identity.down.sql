-- Reverts schema version 11. Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

DROP FUNCTION audit.enable(regclass, text[], text[], text);
ALTER FUNCTION audit.enable_v6(regclass, text[], text[], text) RENAME TO enable;
GRANT EXECUTE ON FUNCTION audit.enable(regclass, text[], text[], text) TO pgtrail_owner;
DROP FUNCTION audit.row_key(regclass);

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
