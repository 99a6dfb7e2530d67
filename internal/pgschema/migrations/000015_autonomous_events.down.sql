-- Reverts schema version 15. Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).
ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;
DROP FUNCTION audit.log_event_autonomous(text, text, text, text, jsonb);
DROP TABLE audit.stream_slots;
ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
