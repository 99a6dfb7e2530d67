-- Removes pgtrail's schema and everything in it, audit data included. Refused while the trail holds
-- entries unless the session set pgtrail.force_destroy_audit_data = 'on' (the CLI's
-- --force-destroy-audit-data). Roles are cluster-wide and stay: other databases may use them.
-- No BEGIN/COMMIT: golang-migrate sends the file as one simple query, which PostgreSQL runs as one
-- implicit transaction, so a failure leaves nothing behind (an explicit block would leave the
-- session in an aborted transaction).

DO $$
BEGIN
  IF (EXISTS (SELECT FROM audit.events) OR EXISTS (SELECT FROM audit.pending))
     AND current_setting('pgtrail.force_destroy_audit_data', true) IS DISTINCT FROM 'on' THEN
    RAISE EXCEPTION 'pgtrail: refusing to drop the audit schema: it holds audit data (set pgtrail.force_destroy_audit_data = on, or pass --force-destroy-audit-data, to destroy it)'
      USING ERRCODE = 'object_in_use';
  END IF;
END $$;

DROP EVENT TRIGGER IF EXISTS pgtrail_ddl;
DROP EVENT TRIGGER IF EXISTS pgtrail_drop;
-- CASCADE also drops the capture triggers on audited tables, which depend on audit.capture().
DROP SCHEMA audit CASCADE;

