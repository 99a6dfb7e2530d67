-- Reverts schema version 9: tenant readers read audit.events_masked again (row-level security
-- filters it), and it shows PII keys in resource_id again. Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

DROP FUNCTION audit.add_tenant_reader(regrole, text);
ALTER FUNCTION audit.add_tenant_reader_v3(regrole, text) RENAME TO add_tenant_reader;
DROP POLICY views ON audit.tenant_readers;
DROP FUNCTION audit.tenant_events(timestamptz, timestamptz);
DROP FUNCTION audit.session_tenants();
DROP VIEW audit.events_masked;
ALTER VIEW audit.events_masked_v3 RENAME TO events_masked;
GRANT SELECT ON audit.events_masked TO pgtrail_reader, pgtrail_tenant_reader, pgtrail_auditor;
REVOKE SELECT ON audit.audited_tables FROM pgtrail_views;
DROP TABLE audit.mask_key;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
