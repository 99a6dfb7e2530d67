-- Reverts schema version 14. Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).
-- Tables audited with the table they inherit from stay audited.

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

CREATE OR REPLACE VIEW audit.events_masked WITH (security_barrier) AS
SELECT v.seq, v.event_id, v.occurred_at, v.txid, v.action_type, v.resource_type,
       CASE WHEN v.resource_id IS NOT NULL AND EXISTS (
              SELECT FROM audit.pii_columns p
               WHERE p.resource_type = v.resource_type
                 AND p.columns && COALESCE((SELECT a.pk_columns FROM audit.audited_tables a WHERE a.relid = p.relid), p.columns))
            THEN 'masked:' || left(encode(sha256((SELECT k.key FROM audit.mask_key k) || convert_to(v.resource_id, 'UTF8')), 'hex'), 32)
            ELSE v.resource_id END AS resource_id,
       v.outcome, v.actor_id, v.actor_ip, v.actor_ip_raw, v.actor_user_agent, v.request_id, v.tenant_id, v.db_user,
       v.application_name, v.client_addr, v.changed_columns, v.before_state, v.after_state, v.details
  FROM audit.events_masked_v3 v;

CREATE OR REPLACE FUNCTION audit.emit_signed_context() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v text := json_build_object(
              'xid', pg_current_xact_id(),
              'actor_id', current_setting('pgtrail.actor_id', true),
              'actor_ip', current_setting('pgtrail.actor_ip', true),
              'user_agent', current_setting('pgtrail.user_agent', true),
              'request_id', current_setting('pgtrail.request_id', true),
              'tenant_id', current_setting('pgtrail.tenant_id', true),
              'db_user', COALESCE(NULLIF(current_setting('role'), 'none'), SESSION_USER::text),
              'application_name', current_setting('application_name'),
              'client_addr', inet_client_addr())::text;
BEGIN
  PERFORM pg_logical_emit_message(true, 'pgtrail.context',
            v || E'\n' || encode(sha256(k.key || sha256(k.key || convert_to(v, 'UTF8'))), 'hex'))
     FROM audit.context_key k;
END $$;

DROP FUNCTION audit.session_context();
DROP FUNCTION audit.capture_problems(text);
ALTER FUNCTION audit.capture_problems_v12(text) RENAME TO capture_problems;
GRANT EXECUTE ON FUNCTION audit.capture_problems(text) TO pgtrail_owner, pgtrail_auditor;

DROP EVENT TRIGGER pgtrail_capture_0inherit;
DROP EVENT TRIGGER pgtrail_capture_add;
CREATE EVENT TRIGGER pgtrail_capture_add ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE') EXECUTE FUNCTION audit.capture_new_partitions();
DROP EVENT TRIGGER pgtrail_capture_function;
CREATE EVENT TRIGGER pgtrail_capture_function ON ddl_command_end
  WHEN TAG IN ('CREATE TRIGGER') EXECUTE FUNCTION audit.check_capture_function();
DROP FUNCTION audit.capture_inheritors();
DROP FUNCTION audit.audited_ancestor(regclass);

ALTER EVENT TRIGGER pgtrail_capture_add ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_capture_function ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
