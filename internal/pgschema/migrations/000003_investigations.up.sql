-- pgtrail schema, investigations and compliance: PII masking for readers, tenant isolation with
-- row-level security, retention policies, and the anchors that keep the chain verifiable after old
-- partitions are pruned. See docs/investigations.md.
-- Must run as a superuser (roles, event triggers, row-level security on the trail).
-- No BEGIN/COMMIT: golang-migrate sends the file as one simple query, which PostgreSQL runs as one
-- implicit transaction, so a failure leaves nothing behind.

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    RAISE EXCEPTION 'pgtrail migrations must run as a superuser (they create roles and event triggers); % is not one', current_user;
  END IF;
END $$;

-- pgtrail_tenant_reader: members read the masked trail of the tenants audit.tenant_readers maps
-- them to, and nothing else. pgtrail_views: owns the masked view; nobody is granted it. It is not
-- the owner of audit.events, so row-level security applies to what the view reads.
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['pgtrail_tenant_reader', 'pgtrail_views'] LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
      END;
    END IF;
  END LOOP;
END $$;

-- This migration's own schema changes are not DDL to record (000001 creates its event triggers
-- last for the same reason). Paused for this transaction only: other sessions never see it.
ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

SET LOCAL ROLE pgtrail_owner;

-- Which keys of before_state/after_state (and details) hold personal data, per resource_type.
-- A table configured with audit.set_pii_columns has a row under its name; when it is renamed its
-- new name gets a row too (events keep the name they were captured under), and when it is dropped
-- the rows stay, for the events it left.
CREATE TABLE audit.pii_columns (
  resource_type text PRIMARY KEY,
  relid         oid,
  columns       text[] NOT NULL,
  set_at        timestamptz NOT NULL DEFAULT now(),
  set_by        text NOT NULL DEFAULT session_user
);
CREATE INDEX pii_columns_relid_idx ON audit.pii_columns (relid);

-- Role -> tenant: what a member of pgtrail_tenant_reader may read. Keyed by the role, not by a
-- setting, so that a reader cannot widen its own scope.
CREATE TABLE audit.tenant_readers (
  role      name NOT NULL,
  tenant_id text NOT NULL,
  added_at  timestamptz NOT NULL DEFAULT now(),
  added_by  text NOT NULL DEFAULT session_user,
  PRIMARY KEY (role, tenant_id)
);

-- How long events stay in the database (keep) and in the archive (archive_retention), per tenant
-- and action type. NULL matches any. The most specific row wins: (tenant, action), (tenant, any),
-- (any, action), (any, any); see docs/investigations.md.
CREATE TABLE audit.retention_policies (
  tenant_id         text,
  action_type       text CHECK (action_type ~ '^[A-Z][A-Z0-9_]{0,62}$'),
  keep              interval NOT NULL CHECK (keep >= interval '1 day'),
  archive_retention interval NOT NULL,
  set_at            timestamptz NOT NULL DEFAULT now(),
  set_by            text NOT NULL DEFAULT session_user,
  UNIQUE NULLS NOT DISTINCT (tenant_id, action_type),
  -- Pruning needs the archived copy: an archive that forgets first makes the prune refuse.
  CHECK (archive_retention >= keep)
);

-- Where the chain in audit.events starts after pruning: entry seq + 1 has prev_hash = entry_hash.
-- One row per prune, signed with the archive's ed25519 key over retention.Anchor's signing bytes.
CREATE TABLE audit.chain_anchors (
  seq        bigint PRIMARY KEY CHECK (seq > 0),
  entry_hash bytea NOT NULL CHECK (octet_length(entry_hash) = 32),
  first_seq  bigint NOT NULL CHECK (first_seq BETWEEN 1 AND seq),
  partitions text[] NOT NULL,
  rows       bigint NOT NULL,
  archive    text NOT NULL,
  pruned_at  timestamptz NOT NULL,
  pruned_by  text NOT NULL DEFAULT session_user,
  public_key bytea NOT NULL CHECK (octet_length(public_key) = 32),
  signature  bytea NOT NULL CHECK (octet_length(signature) = 64)
);
CREATE TRIGGER guard BEFORE UPDATE OR DELETE ON audit.chain_anchors
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON audit.chain_anchors
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- Changes to who may read what, what is masked and how long data is kept are themselves events.
CREATE FUNCTION audit.log_config_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM audit.log_event('AUDIT_CONFIG', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, NULL, 'SUCCESS',
    jsonb_build_object('operation', TG_OP,
                       'old', CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
                       'new', CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END));
  RETURN NULL;
END $$;

CREATE TRIGGER log_change AFTER INSERT OR UPDATE OR DELETE ON audit.pii_columns
  FOR EACH ROW EXECUTE FUNCTION audit.log_config_change();
CREATE TRIGGER log_change AFTER INSERT OR UPDATE OR DELETE ON audit.tenant_readers
  FOR EACH ROW EXECUTE FUNCTION audit.log_config_change();
CREATE TRIGGER log_change AFTER INSERT OR UPDATE OR DELETE ON audit.retention_policies
  FOR EACH ROW EXECUTE FUNCTION audit.log_config_change();
-- TRUNCATE would skip the row triggers.
CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON audit.pii_columns
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON audit.tenant_readers
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON audit.retention_policies
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- Replaces the values of the top-level keys of doc named in fields with "[masked]". Keys keep
-- their place, so a reader sees that the value existed; changed_columns still says what changed.
-- Anything but an object is returned as is (PII inside arrays or nested objects is not found).
CREATE FUNCTION audit.mask_json(doc jsonb, fields text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
  WHEN doc IS NULL OR fields IS NULL OR pg_catalog.jsonb_typeof(doc) <> 'object' OR NOT (doc OPERATOR(pg_catalog.?|) fields) THEN doc
  ELSE (doc OPERATOR(pg_catalog.-) fields) OPERATOR(pg_catalog.||)
       (SELECT pg_catalog.jsonb_object_agg(f, '"[masked]"'::jsonb) FROM pg_catalog.unnest(fields) AS f
         WHERE doc OPERATOR(pg_catalog.?) f)
END;

-- An address cut to its network: /24 for IPv4, /48 for IPv6 (or the stored prefix if shorter).
CREATE FUNCTION audit.mask_ip(ip inet) RETURNS inet
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.network(pg_catalog.set_masklen(ip,
         LEAST(pg_catalog.masklen(ip), CASE pg_catalog.family(ip) WHEN 4 THEN 24 ELSE 48 END)))::inet;

-- Marks columns of a table as personal data: readers of audit.events_masked see "[masked]" in
-- their place, in the table's past and future events. '{}' unmasks. Runs with the caller's
-- rights: the table's owner or a member of pgtrail_owner.
CREATE FUNCTION audit.set_pii_columns(target regclass, columns text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  bad text;
  name text := (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target);
BEGIN
  IF columns IS NULL THEN
    RAISE EXCEPTION 'audit.set_pii_columns: columns must not be NULL (''{}'' unmasks)' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF (SELECT relkind FROM pg_class WHERE oid = target) NOT IN ('r', 'p') THEN
    RAISE EXCEPTION 'audit.set_pii_columns: % is not a table', target USING ERRCODE = 'wrong_object_type';
  END IF;
  SELECT c INTO bad FROM unnest(columns) AS c
   WHERE NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = target AND a.attname = c
                        AND a.attnum > 0 AND NOT a.attisdropped)
   LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'audit.set_pii_columns: % has no column %', target, quote_ident(bad) USING ERRCODE = 'undefined_column';
  END IF;
  columns := ARRAY(SELECT DISTINCT c FROM unnest(columns) AS c ORDER BY c);
  -- The table's earlier names too: the same table, the same personal data.
  UPDATE audit.pii_columns p SET columns = set_pii_columns.columns, set_at = now(), set_by = session_user
   WHERE p.relid = target AND p.resource_type <> name AND p.columns IS DISTINCT FROM set_pii_columns.columns;
  INSERT INTO audit.pii_columns (resource_type, relid, columns) VALUES (name, target, columns)
  ON CONFLICT (resource_type) DO UPDATE SET relid = EXCLUDED.relid, columns = EXCLUDED.columns,
    set_at = now(), set_by = session_user;
END $$;

-- audit.enable with PII columns, for named notation:
--   SELECT audit.enable('users', exclude_columns => '{password_hash}', pii_columns => '{email,phone}');
-- No defaults, so that every call of the two-argument audit.enable still resolves to it.
CREATE FUNCTION audit.enable(target regclass, exclude_columns text[], pii_columns text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM audit.enable(target, exclude_columns);
  PERFORM audit.set_pii_columns(target, COALESCE(pii_columns, '{}'));
END $$;

-- Follows configured tables across renames (ALTER TABLE ... RENAME / SET SCHEMA, ALTER SCHEMA ...
-- RENAME): the new name gets the table's PII columns. Fires on every such command in the
-- database, so it does one cheap statement and never fails the command over its own data.
CREATE FUNCTION audit.follow_pii_renames() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO audit.pii_columns (resource_type, relid, columns)
  SELECT DISTINCT ON (x.name) x.name, x.relid, x.columns
    FROM (SELECT quote_ident(ns.nspname) || '.' || quote_ident(c.relname) AS name, p.relid, p.columns, p.set_at
            FROM audit.pii_columns p
            JOIN pg_class c ON c.oid = p.relid
            JOIN pg_namespace ns ON ns.oid = c.relnamespace) x
   WHERE NOT EXISTS (SELECT FROM audit.pii_columns q WHERE q.resource_type = x.name)
   ORDER BY x.name, x.set_at DESC
  ON CONFLICT (resource_type) DO NOTHING;
END $$;

-- A dropped table's rows stay for its events, but no longer follow its oid, which a new table
-- may get.
CREATE FUNCTION audit.forget_dropped_pii_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE audit.pii_columns SET relid = NULL
   WHERE relid IN (SELECT objid FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table');
END $$;

-- Tenant isolation. A member of pgtrail_tenant_reader (not a superuser) sees the rows of the
-- tenants audit.tenant_readers maps it (or a role it belongs to) to; everyone else sees what
-- their privileges allow. current_user is the querying role even through audit.events_masked,
-- whose owner (pgtrail_views) the policy applies to.
CREATE FUNCTION audit.tenant_scoped() RETURNS boolean
LANGUAGE sql STABLE
RETURN pg_catalog.pg_has_role(current_user, 'pgtrail_tenant_reader', 'MEMBER')
   AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user);

ALTER TABLE audit.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit.pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit.tenant_readers ENABLE ROW LEVEL SECURITY;
-- The owner (the sealer, capture) and superusers are not subject to these; nothing is FORCEd.
-- Everyone may read their own mappings (the policies below need that, whoever queries);
-- auditors read them all.
CREATE POLICY own_mappings ON audit.tenant_readers FOR SELECT TO PUBLIC
  USING (role IN (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')));
CREATE POLICY auditors ON audit.tenant_readers FOR SELECT TO pgtrail_auditor USING (true);
CREATE POLICY tenant_isolation ON audit.events FOR SELECT TO PUBLIC
  USING (NOT (SELECT audit.tenant_scoped())
         OR tenant_id IN (SELECT tr.tenant_id FROM audit.tenant_readers tr
                            JOIN pg_catalog.pg_roles r ON r.rolname = tr.role
                           WHERE pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')));
CREATE POLICY tenant_isolation ON audit.pending FOR SELECT TO PUBLIC
  USING (NOT (SELECT audit.tenant_scoped())
         OR tenant_id IN (SELECT tr.tenant_id FROM audit.tenant_readers tr
                            JOIN pg_catalog.pg_roles r ON r.rolname = tr.role
                           WHERE pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')));

-- What pgtrail_reader and pgtrail_tenant_reader read instead of audit.events: every column but
-- the hashes, with the table's PII keys and the actor's address masked. The hashes are left out
-- because with them a reader could test guesses of a masked value (a phone number, the last
-- octet of an address) against entry_hash. security_barrier: a reader's own functions in WHERE
-- see only what the view returns. The PII columns are looked up per row (an index probe of a
-- small table) rather than joined, so that the scan of audit.events is planned as it would be
-- without the view and the search indexes serve it.
CREATE VIEW audit.events_masked WITH (security_barrier) AS
SELECT e.seq, e.event_id, e.occurred_at, e.txid, e.action_type, e.resource_type, e.resource_id,
       e.outcome, e.actor_id,
       audit.mask_ip(e.actor_ip) AS actor_ip,
       CASE WHEN e.actor_ip_raw IS NOT NULL THEN '[masked]' END AS actor_ip_raw,
       e.actor_user_agent, e.request_id, e.tenant_id, e.db_user, e.application_name, e.client_addr,
       e.changed_columns,
       audit.mask_json(e.before_state, (SELECT p.columns FROM audit.pii_columns p WHERE p.resource_type = e.resource_type)) AS before_state,
       audit.mask_json(e.after_state, (SELECT p.columns FROM audit.pii_columns p WHERE p.resource_type = e.resource_type)) AS after_state,
       audit.mask_json(e.details, (SELECT p.columns FROM audit.pii_columns p WHERE p.resource_type = e.resource_type)) AS details
  FROM audit.events e;

-- Maps a role to a tenant and makes it a member of pgtrail_tenant_reader. The caller needs the
-- right to grant that role (a superuser, or CREATEROLE) and to write audit.tenant_readers.
CREATE FUNCTION audit.add_tenant_reader(reader regrole, tenant_id text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF tenant_id IS NULL THEN
    RAISE EXCEPTION 'audit.add_tenant_reader: tenant_id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE oid = reader) THEN
    RAISE EXCEPTION 'audit.add_tenant_reader: % is a superuser or bypasses row-level security: it cannot be limited to a tenant', reader
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO audit.tenant_readers (role, tenant_id) VALUES ((SELECT rolname FROM pg_roles WHERE oid = reader), tenant_id)
  ON CONFLICT DO NOTHING;
  IF NOT pg_has_role(reader, 'pgtrail_tenant_reader', 'MEMBER') THEN
    EXECUTE format('GRANT pgtrail_tenant_reader TO %I', (SELECT rolname FROM pg_roles WHERE oid = reader));
  END IF;
END $$;

-- Unmaps a role from a tenant. It stays a member of pgtrail_tenant_reader, so it sees less, not more.
CREATE FUNCTION audit.remove_tenant_reader(reader regrole, tenant_id text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  DELETE FROM audit.tenant_readers t
   WHERE t.role = (SELECT rolname FROM pg_roles WHERE oid = reader) AND t.tenant_id = remove_tenant_reader.tenant_id;
END $$;

-- Detaches and drops old partitions of audit.events whose entries are exactly the chain prefix
-- first_seq..last_seq, writes the anchor the chain continues from, and records a PRUNE event, in
-- the caller's transaction. `pgtrail partitions prune` calls it after checking that the entries
-- are archived and recomputing their hashes; this function checks again what the database alone
-- can tell. Superusers only: the schema's event trigger refuses the DDL to anyone else.
CREATE FUNCTION audit.prune_partitions(parts regclass[], first_seq bigint, last_seq bigint,
                                       last_entry_hash bytea, archive text, pruned_at timestamptz,
                                       public_key bytea, signature bytea, details jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p regclass;
  prev bigint;
  n bigint;
  lo bigint;
  hi bigint;
  names text[];
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) THEN
    RAISE EXCEPTION 'audit.prune_partitions: only a superuser may drop audit partitions' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF cardinality(parts) IS NULL OR cardinality(parts) = 0 THEN
    RAISE EXCEPTION 'audit.prune_partitions: no partitions given' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOREACH p IN ARRAY parts LOOP
    IF NOT EXISTS (SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhrelid = p AND i.inhparent = 'audit.events'::regclass
                      AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT') THEN
      RAISE EXCEPTION 'audit.prune_partitions: % is not a monthly partition of audit.events', p USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('LOCK TABLE %s IN SHARE MODE', p);
  END LOOP;
  SELECT max(a.seq) INTO prev FROM audit.chain_anchors a;
  IF first_seq IS DISTINCT FROM COALESCE(prev, 0) + 1 THEN
    RAISE EXCEPTION 'audit.prune_partitions: the chain in the database starts at seq %, not %', COALESCE(prev, 0) + 1, first_seq
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT count(*), min(e.seq), max(e.seq) INTO n, lo, hi FROM audit.events e WHERE e.tableoid = ANY (parts::oid[]);
  IF n = 0 OR lo <> first_seq OR hi <> last_seq OR n <> last_seq - first_seq + 1 THEN
    RAISE EXCEPTION 'audit.prune_partitions: the partitions hold % entries, seq % to %, not exactly seq % to %', n, lo, hi, first_seq, last_seq
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF EXISTS (SELECT FROM audit.events e WHERE e.seq <= last_seq AND e.tableoid <> ALL (parts::oid[])) THEN
    RAISE EXCEPTION 'audit.prune_partitions: entries up to seq % are also in other partitions: dropping these would leave a hole in the chain', last_seq
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF (SELECT e.entry_hash FROM audit.events e WHERE e.seq = last_seq) IS DISTINCT FROM last_entry_hash THEN
    RAISE EXCEPTION 'audit.prune_partitions: entry_hash of seq % differs from the anchor''s', last_seq USING ERRCODE = 'invalid_parameter_value';
  END IF;
  names := ARRAY(SELECT c.relname::text FROM unnest(parts) AS u(r) JOIN pg_class c ON c.oid = u.r ORDER BY 1);
  FOREACH p IN ARRAY parts LOOP
    EXECUTE format('ALTER TABLE audit.events DETACH PARTITION %s', p);
    EXECUTE format('DROP TABLE %s', p);
  END LOOP;
  INSERT INTO audit.chain_anchors (seq, entry_hash, first_seq, partitions, rows, archive, pruned_at, public_key, signature)
  VALUES (last_seq, last_entry_hash, first_seq, names, n, archive, pruned_at, public_key, signature);
  PERFORM audit.log_event('PRUNE', 'audit.events', last_seq::text, 'SUCCESS',
    COALESCE(details, '{}') || jsonb_build_object('partitions', names, 'first_seq', first_seq, 'last_seq', last_seq,
      'rows', n, 'anchor_entry_hash', encode(last_entry_hash, 'hex'), 'archive', archive));
  RETURN n;
END $$;

RESET ROLE;

ALTER VIEW audit.events_masked OWNER TO pgtrail_views;

CREATE EVENT TRIGGER pgtrail_pii_rename ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE', 'ALTER SCHEMA') EXECUTE FUNCTION audit.follow_pii_renames();
CREATE EVENT TRIGGER pgtrail_pii_drop ON sql_drop EXECUTE FUNCTION audit.forget_dropped_pii_tables();

-- Privileges. New functions are executable by PUBLIC unless revoked.
REVOKE ALL ON audit.pii_columns, audit.tenant_readers, audit.retention_policies, audit.chain_anchors FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON audit.chain_anchors FROM pgtrail_owner;
REVOKE ALL ON FUNCTION audit.set_pii_columns(regclass, text[]), audit.enable(regclass, text[], text[]),
  audit.add_tenant_reader(regrole, text), audit.remove_tenant_reader(regrole, text),
  audit.prune_partitions(regclass[], bigint, bigint, bytea, text, timestamptz, bytea, bytea, jsonb),
  audit.log_config_change(), audit.follow_pii_renames(), audit.forget_dropped_pii_tables() FROM PUBLIC;
-- Readers call these through the view and the policy; they compute nothing secret.
GRANT EXECUTE ON FUNCTION audit.mask_json(jsonb, text[]), audit.mask_ip(inet), audit.tenant_scoped() TO PUBLIC;

-- Readers lose the unmasked trail; auditors keep it (filtered by tenant when they are scoped too).
REVOKE SELECT ON audit.events FROM pgtrail_reader;
GRANT SELECT ON audit.events, audit.pii_columns TO pgtrail_views;
-- Row-level security shows each role its own mappings only (see own_mappings).
GRANT SELECT ON audit.tenant_readers TO PUBLIC;
GRANT SELECT ON audit.events_masked TO pgtrail_reader, pgtrail_tenant_reader, pgtrail_auditor;
GRANT SELECT ON audit.pii_columns, audit.tenant_readers, audit.retention_policies, audit.chain_anchors TO pgtrail_auditor;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE;
ALTER EVENT TRIGGER pgtrail_drop ENABLE;
