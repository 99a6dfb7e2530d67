-- Reverts the investigations migration: readers get the unmasked trail back, tenant isolation,
-- PII configuration, retention policies and chain anchors are dropped. Refused while the trail
-- holds entries unless the session set pgtrail.force_destroy_audit_data = 'on', like 000001's
-- down, so that "migrate down" without force changes nothing at all; the anchors are what keep a
-- pruned chain verifiable. Roles are cluster-wide and stay.
-- No BEGIN/COMMIT: golang-migrate sends the file as one simple query, which PostgreSQL runs as one
-- implicit transaction.

DO $$
BEGIN
  IF (EXISTS (SELECT FROM audit.events) OR EXISTS (SELECT FROM audit.pending) OR EXISTS (SELECT FROM audit.chain_anchors))
     AND current_setting('pgtrail.force_destroy_audit_data', true) IS DISTINCT FROM 'on' THEN
    RAISE EXCEPTION 'pgtrail: refusing to drop the audit schema: it holds audit data (set pgtrail.force_destroy_audit_data = on, or pass --force-destroy-audit-data, to destroy it)'
      USING ERRCODE = 'object_in_use';
  END IF;
END $$;

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

DROP EVENT TRIGGER IF EXISTS pgtrail_pii_rename;
DROP EVENT TRIGGER IF EXISTS pgtrail_pii_drop;

DROP POLICY IF EXISTS tenant_isolation ON audit.events;
DROP POLICY IF EXISTS tenant_isolation ON audit.pending;
ALTER TABLE audit.events DISABLE ROW LEVEL SECURITY;
ALTER TABLE audit.pending DISABLE ROW LEVEL SECURITY;

DROP VIEW IF EXISTS audit.events_masked;
DROP FUNCTION IF EXISTS audit.prune_partitions(regclass[], bigint, bigint, bytea, text, timestamptz, bytea, bytea, jsonb);
DROP FUNCTION IF EXISTS audit.add_tenant_reader(regrole, text);
DROP FUNCTION IF EXISTS audit.remove_tenant_reader(regrole, text);
DROP FUNCTION IF EXISTS audit.enable(regclass, text[], text[]);
DROP FUNCTION IF EXISTS audit.set_pii_columns(regclass, text[]);
DROP FUNCTION IF EXISTS audit.follow_pii_renames();
DROP FUNCTION IF EXISTS audit.forget_dropped_pii_tables();
DROP FUNCTION IF EXISTS audit.mask_json(jsonb, text[]);
DROP FUNCTION IF EXISTS audit.mask_ip(inet);
DROP TABLE IF EXISTS audit.pii_columns, audit.tenant_readers, audit.retention_policies, audit.chain_anchors;
DROP FUNCTION IF EXISTS audit.tenant_scoped();
DROP FUNCTION IF EXISTS audit.log_config_change();

REVOKE ALL ON audit.events FROM pgtrail_views;
GRANT SELECT ON audit.events TO pgtrail_reader;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE;
ALTER EVENT TRIGGER pgtrail_drop ENABLE;
