-- Reverts schema version 16. Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).
-- Events already written to the WAL are chained by the stream (its code reads them whatever the
-- schema version).
ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;
DROP FUNCTION audit.log_event_autonomous(text, text, text, text, jsonb);
DROP FUNCTION audit.insert_event(text, text, text, text, jsonb);
ALTER FUNCTION audit.log_event_autonomous_v15(text, text, text, text, jsonb) RENAME TO log_event_autonomous;
GRANT EXECUTE ON FUNCTION audit.log_event_autonomous(text, text, text, text, jsonb) TO PUBLIC;
ALTER FUNCTION audit.insert_event_v8(text, text, text, text, jsonb) RENAME TO insert_event;
DROP FUNCTION audit.event_message(uuid, text, text, text, text, jsonb, boolean);
DROP FUNCTION audit.message_sized(jsonb);
DROP FUNCTION audit.streamed(boolean);
ALTER TABLE audit.stream_slots DROP COLUMN reads_events;
ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
