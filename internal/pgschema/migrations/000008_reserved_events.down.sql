-- Reverts schema version 8: audit.log_event writes any event type again.
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

DROP FUNCTION audit.log_event(text, text, text, text, jsonb);
DROP FUNCTION audit.log_app_event(text, text, text, text, jsonb), audit.log_pgtrail_event(text, text, text, text, jsonb),
  audit.log_config_event(text, text, text, text, jsonb), audit.log_verify_event(text, text, text, text, jsonb),
  audit.log_export_event(text, text, text, text, jsonb);
DROP FUNCTION audit.insert_event(text, text, text, text, jsonb);
DROP FUNCTION audit.event_class(text, text);
ALTER FUNCTION audit.log_event_v4(text, text, text, text, jsonb) RENAME TO log_event;
GRANT EXECUTE ON FUNCTION audit.log_event(text, text, text, text, jsonb) TO PUBLIC;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
