-- pgtrail schema version 9: tenant readers read through audit.tenant_events, never the trail's
-- tables or views. Row-level security filtered the rows a tenant reader read, but the planner
-- ran the reader's own conditions first when they were leakproof and an index serves them
-- (md5(actor_id) = md5('bob'), action_type = ...), and EXPLAIN ANALYZE counted the other
-- tenants' rows the policy then removed ("Rows Removed by Filter"): a guess of another tenant's
-- value could be tested, a prefix walked. A policy that lets nothing through leaks the same way.
-- audit.tenant_events is a SECURITY DEFINER function: it selects the caller's tenants' rows
-- first, inside, and the caller's conditions only ever see its result.
-- Roles that read the trail otherwise (pgtrail_reader, pgtrail_auditor) cannot be mapped to a
-- tenant any more: their privileges read the tables, where the side channel is.
-- And audit.events_masked masks resource_id when the table's key holds a PII column (an email
-- as primary key was in every entry's resource_id): a keyed hash stands for it, the same for
-- every entry of one row, so that an investigation can still follow a record.
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

SELECT audit.require_superuser();

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

-- The key of those hashes: drawn at install, read by the view's owner only.
CREATE TABLE audit.mask_key (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  key bytea NOT NULL CHECK (octet_length(key) = 32)
);
INSERT INTO audit.mask_key (key)
VALUES (sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())));
ALTER TABLE audit.mask_key OWNER TO pgtrail_sealer;
REVOKE ALL ON audit.mask_key FROM PUBLIC;
GRANT SELECT ON audit.mask_key, audit.audited_tables TO pgtrail_views;

-- Version 3's view is kept as events_masked_v3, and read by its successor, which replaces
-- resource_id. A table's key counts as PII when one of its key columns is; when the table is no
-- longer known (dropped, no longer audited) any PII column of it does.
ALTER VIEW audit.events_masked RENAME TO events_masked_v3;
REVOKE ALL ON audit.events_masked_v3 FROM pgtrail_reader, pgtrail_tenant_reader, pgtrail_auditor;
CREATE VIEW audit.events_masked WITH (security_barrier) AS
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
ALTER VIEW audit.events_masked OWNER TO pgtrail_views;
GRANT SELECT ON audit.events_masked TO pgtrail_reader, pgtrail_auditor;

-- The tenants of the session's user and the roles it may act as (a reader logged in as itself
-- or one that SET ROLE into a tenant reader). SECURITY DEFINER functions do not see the role
-- that called them, only the session's user.
CREATE FUNCTION audit.session_tenants() RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN ARRAY(SELECT DISTINCT tr.tenant_id FROM audit.tenant_readers tr JOIN pg_roles r ON r.rolname = tr.role
              WHERE pg_has_role(session_user, r.oid, 'MEMBER'));

-- The masked trail of the caller's tenants, occurred_at in [since, until]. Give the period: the
-- rows of the period are selected before any condition of the caller applies (by the index on
-- md5(tenant_id), occurred_at).
CREATE FUNCTION audit.tenant_events(since timestamptz DEFAULT '-infinity', until timestamptz DEFAULT 'infinity')
RETURNS SETOF audit.events_masked
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT m.* FROM audit.events_masked m, (SELECT audit.session_tenants() AS t) s
   WHERE md5(m.tenant_id) = ANY (ARRAY(SELECT md5(x) FROM unnest(s.t) AS x)) AND m.tenant_id = ANY (s.t)
     AND m.occurred_at >= since AND m.occurred_at <= until
$$;

ALTER FUNCTION audit.session_tenants() OWNER TO pgtrail_views;
ALTER FUNCTION audit.tenant_events(timestamptz, timestamptz) OWNER TO pgtrail_views;
REVOKE ALL ON FUNCTION audit.session_tenants(), audit.tenant_events(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.tenant_events(timestamptz, timestamptz) TO pgtrail_tenant_reader;
GRANT EXECUTE ON FUNCTION audit.session_tenants() TO pgtrail_tenant_reader, pgtrail_auditor;
-- The definer reads every mapping (the policy own_mappings shows a role only its own).
CREATE POLICY views ON audit.tenant_readers FOR SELECT TO pgtrail_views USING (true);

-- Version 3's add_tenant_reader, kept as add_tenant_reader_v3 and called.
ALTER FUNCTION audit.add_tenant_reader(regrole, text) RENAME TO add_tenant_reader_v3;
REVOKE ALL ON FUNCTION audit.add_tenant_reader_v3(regrole, text) FROM PUBLIC;
CREATE FUNCTION audit.add_tenant_reader(reader regrole, tenant_id text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_has_role(reader, 'pgtrail_reader', 'MEMBER') OR pg_has_role(reader, 'pgtrail_auditor', 'MEMBER') THEN
    RAISE EXCEPTION 'audit.add_tenant_reader: % reads the whole trail (a member of pgtrail_reader or pgtrail_auditor): it cannot be limited to a tenant; map a role that is neither', reader
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM audit.add_tenant_reader_v3(reader, tenant_id);
END $$;
-- Owned like version 3's (the caller's rights grant the role: it runs as the caller).
DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION audit.add_tenant_reader(regrole, text) OWNER TO %I',
                 (SELECT r.rolname FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
                   WHERE p.oid = 'audit.add_tenant_reader_v3(regrole, text)'::regprocedure));
END $$;
REVOKE ALL ON FUNCTION audit.add_tenant_reader(regrole, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.add_tenant_reader(regrole, text), audit.add_tenant_reader_v3(regrole, text) TO pgtrail_owner;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
