-- pgtrail audit schema, version 1. See docs/design.md for why it is shaped this way.
-- Must run as a superuser (roles, event triggers) in a UTF8 database.
-- No BEGIN/COMMIT: golang-migrate sends the file as one simple query, which PostgreSQL runs as one
-- implicit transaction, so a failure leaves nothing behind (an explicit block would leave the
-- session in an aborted transaction).

DO $$
BEGIN
  IF pg_catalog.getdatabaseencoding() <> 'UTF8' THEN
    RAISE EXCEPTION 'pgtrail needs a UTF8 database, this one is %', pg_catalog.getdatabaseencoding();
  END IF;
  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    RAISE EXCEPTION 'pgtrail migrations must run as a superuser (they create roles and event triggers); % is not one', current_user;
  END IF;
END $$;

-- Roles are cluster-wide: another database of the cluster may have created them already, maybe
-- concurrently, so creation tolerates both kinds of "already there".
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['pgtrail_owner', 'pgtrail_reader', 'pgtrail_auditor'] LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
      END;
    END IF;
  END LOOP;
END $$;

CREATE SCHEMA audit AUTHORIZATION pgtrail_owner;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;
-- USAGE lets applications call audit.log_event; tables stay closed to them.
GRANT USAGE ON SCHEMA audit TO PUBLIC;

SET LOCAL ROLE pgtrail_owner;

-- Writers append here, unchained, without touching any shared row: see docs/design.md.
CREATE TABLE audit.pending (
  id               bigint GENERATED ALWAYS AS IDENTITY (CACHE 64),
  txid             xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
  event_id         uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid(),
  occurred_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  action_type      text NOT NULL,
  resource_type    text NOT NULL,
  resource_id      text,
  outcome          text NOT NULL,
  actor_id         text,
  actor_ip         text,
  user_agent       text,
  request_id       text,
  tenant_id        text,
  -- The effective role: SET ROLE's target when one is set (current_user would be the owner
  -- inside the SECURITY DEFINER capture functions), else the login role.
  db_user          text NOT NULL DEFAULT COALESCE(NULLIF(current_setting('role'), 'none'), session_user),
  application_name text,
  client_addr      inet DEFAULT pg_catalog.inet_client_addr(),
  before_state     jsonb,
  after_state      jsonb,
  details          jsonb
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000);

-- The sealed, hash-chained audit trail. INSERT-only.
CREATE TABLE audit.events (
  seq              bigint NOT NULL,
  event_id         uuid NOT NULL,
  occurred_at      timestamptz NOT NULL,
  txid             xid8 NOT NULL,
  action_type      text NOT NULL,
  resource_type    text NOT NULL,
  resource_id      text,
  outcome          text NOT NULL,
  actor_id         text NOT NULL,
  actor_ip         inet,
  actor_ip_raw     text,
  actor_user_agent text,
  request_id       text,
  tenant_id        text,
  db_user          text NOT NULL,
  application_name text,
  client_addr      inet,
  changed_columns  text[] NOT NULL,
  before_state     jsonb,
  after_state      jsonb,
  details          jsonb,
  prev_hash        bytea NOT NULL,
  entry_hash       bytea NOT NULL,
  PRIMARY KEY (seq, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX events_actor_idx ON audit.events (actor_id, occurred_at);
CREATE INDEX events_resource_idx ON audit.events (resource_type, resource_id, occurred_at);
CREATE INDEX events_action_idx ON audit.events (action_type, occurred_at);
CREATE INDEX events_tenant_idx ON audit.events (tenant_id, occurred_at);

-- Catches rows whose month has no partition yet, so sealing never fails for lack of one.
CREATE TABLE audit.events_default PARTITION OF audit.events DEFAULT;

-- The head of the chain: lets verification see a truncated tail and serializes sealers.
CREATE TABLE audit.chain_head (
  one        boolean PRIMARY KEY DEFAULT true CHECK (one),
  seq        bigint NOT NULL,
  entry_hash bytea NOT NULL,
  sealed_at  timestamptz NOT NULL
);
INSERT INTO audit.chain_head VALUES (true, 0, '\x0000000000000000000000000000000000000000000000000000000000000000', now());

-- Tables whose changes are captured, and how.
CREATE TABLE audit.audited_tables (
  relid           oid PRIMARY KEY,
  table_name      text NOT NULL,
  pk_columns      text[] NOT NULL,
  exclude_columns text[] NOT NULL,
  enabled_at      timestamptz NOT NULL DEFAULT now(),
  enabled_by      text NOT NULL DEFAULT session_user
);

-- Netstring of one canonical field: "<octets>:<text>", or "~" for NULL.
CREATE FUNCTION audit.ns(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN COALESCE(pg_catalog.octet_length(v)::text || ':' || v, '~');

-- Canonical encoding version 1 of an entry; the Go function pgtrail.AppendCanonical is its twin.
-- One expression without subqueries, and STABLE like format() in it, so that PostgreSQL inlines
-- it: not inlined, it costs 4x more, and it is the sealer's hot spot.
CREATE FUNCTION audit.canonical(e audit.events) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.convert_to(
     'pgtrail-v1' || E'\n'
  || audit.ns(e.seq::text)
  || audit.ns(e.event_id::text)
  || audit.ns(((EXTRACT(epoch FROM e.occurred_at) * 1000000)::bigint)::text)
  || audit.ns(e.txid::text)
  || audit.ns(e.action_type)
  || audit.ns(e.resource_type)
  || audit.ns(e.resource_id)
  || audit.ns(e.outcome)
  || audit.ns(e.actor_id)
  || audit.ns(CASE WHEN e.actor_ip IS NOT NULL THEN pg_catalog.format('%s', e.actor_ip) END)
  || audit.ns(e.actor_ip_raw)
  || audit.ns(e.actor_user_agent)
  || audit.ns(e.request_id)
  || audit.ns(e.tenant_id)
  || audit.ns(e.db_user)
  || audit.ns(e.application_name)
  || audit.ns(CASE WHEN e.client_addr IS NOT NULL THEN pg_catalog.format('%s', e.client_addr) END)
  || audit.ns(e.changed_columns::text)
  || audit.ns(e.before_state::text)
  || audit.ns(e.after_state::text)
  || audit.ns(e.details::text),
  'UTF8');

-- Refuses any change to the audit trail, whoever asks.
CREATE FUNCTION audit.refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RAISE EXCEPTION 'pgtrail: % on %.% refused: the audit trail is INSERT-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$;

-- audit.pending, audit.chain_head and appends to audit.events: only inside audit.seal.
CREATE FUNCTION audit.refuse_unless_sealing() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP <> 'TRUNCATE' AND current_user = 'pgtrail_owner'
     AND current_setting('pgtrail.sealing', true) = pg_current_xact_id()::text THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'pgtrail: % on %.% refused: only audit.seal() changes it', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER guard BEFORE UPDATE OR DELETE ON audit.events
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON audit.events
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
-- Only the sealer appends. A member of pgtrail_owner could fake the sealing flag; a forged entry
-- then breaks the chain, which verification reports.
CREATE TRIGGER guard_insert BEFORE INSERT ON audit.events
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_unless_sealing();
CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON audit.events_default
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER guard_insert BEFORE INSERT ON audit.events_default
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_unless_sealing();
-- Statement-level: the sealer deletes thousands of rows per call, one check is enough.
CREATE TRIGGER guard BEFORE UPDATE OR DELETE ON audit.pending
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_unless_sealing();
CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON audit.pending
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_unless_sealing();
CREATE TRIGGER guard BEFORE UPDATE OR DELETE ON audit.chain_head
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_unless_sealing();
CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON audit.chain_head
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_unless_sealing();

-- Monthly partitions (UTC months) from last month to months_ahead months ahead. Returns how many
-- were created. The sealer calls it, so a month never starts without its partition.
CREATE FUNCTION audit.create_partitions(months_ahead integer DEFAULT 3) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  first date := (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month')::date;
  m date;
  name text;
  created integer := 0;
BEGIN
  IF months_ahead < 0 OR months_ahead > 120 THEN
    RAISE EXCEPTION 'months_ahead must be between 0 and 120, got %', months_ahead;
  END IF;
  FOR i IN 0 .. months_ahead + 1 LOOP
    m := (first + make_interval(months => i))::date;
    name := 'events_' || to_char(m, 'YYYY_MM');
    CONTINUE WHEN to_regclass(format('audit.%I', name)) IS NOT NULL;
    EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.events FOR VALUES FROM (%L) TO (%L)',
                   name, m::text || ' 00:00:00+00', (m + interval '1 month')::date::text || ' 00:00:00+00');
    EXECUTE format('CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON audit.%I FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change()', name);
    -- Statement triggers are not inherited: a direct insert into the partition needs its own.
    EXECUTE format('CREATE TRIGGER guard_insert BEFORE INSERT ON audit.%I FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_unless_sealing()', name);
    EXECUTE format('REVOKE ALL ON audit.%I FROM PUBLIC', name);
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON audit.%I FROM pgtrail_owner', name);
    created := created + 1;
  END LOOP;
  RETURN created;
END $$;

SELECT audit.create_partitions();

CREATE FUNCTION audit.try_inet_slow(v text) RETURNS inet
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN v::inet;
EXCEPTION WHEN others THEN
  RETURN NULL;
END $$;

-- Turns a pgtrail.actor_ip setting into inet, or NULL when it does not parse. A plain IPv4
-- address always parses, so it skips the exception block (a subtransaction per call).
CREATE FUNCTION audit.try_inet(v text) RETURNS inet
LANGUAGE sql IMMUTABLE
RETURN CASE
  WHEN v IS NULL OR v = '' THEN NULL
  WHEN v ~ '^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$' THEN v::inet
  ELSE audit.try_inet_slow(v) END;

-- The hash chain as a running aggregate: state is the previous entry_hash (head for the first).
CREATE FUNCTION audit.chain_step(state bytea, head bytea, canon bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN sha256(COALESCE(state, head) || canon);

CREATE AGGREGATE audit.chain_fold(bytea, bytea) (SFUNC = audit.chain_step, STYPE = bytea);

-- Chains the pending entries of finished transactions, in (transaction id, row) order, into
-- audit.events. Entries of transactions still running (at or above the snapshot's xmin) wait for a
-- later call. Returns the number of entries sealed. Safe to call concurrently: sealers queue on the
-- chain head. Set-based except for the hash fold, which is sequential by nature.
CREATE FUNCTION audit.seal(max_rows integer DEFAULT 50000) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET work_mem = '64MB' AS $$
DECLARE
  -- Read before this transaction takes a transaction id of its own: every transaction below it
  -- has finished, so its rows are all visible (or aborted) from here on.
  horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
  head_seq bigint;
  h bytea;
  n bigint;
  last_txid xid8;
  last_id bigint;
BEGIN
  IF max_rows < 1 THEN
    RAISE EXCEPTION 'max_rows must be positive, got %', max_rows;
  END IF;
  -- Idle: return before locking the head, which would write WAL every call.
  IF NOT EXISTS (SELECT FROM audit.pending p WHERE p.txid < horizon) THEN
    RETURN 0;
  END IF;
  SELECT seq, entry_hash INTO head_seq, h FROM audit.chain_head FOR UPDATE;
  PERFORM set_config('pgtrail.sealing', pg_current_xact_id()::text, true);
  -- A synchronous commit flushes the WAL before it too: writers' asynchronous commits then reach
  -- logical replication within a seal interval instead of whenever the WAL writer gets to them.
  PERFORM set_config('synchronous_commit', 'on', true);

  IF to_regclass('audit.events_' || to_char(now() AT TIME ZONE 'UTC' + interval '1 month', 'YYYY_MM')) IS NULL THEN
    PERFORM audit.create_partitions();
  END IF;

  -- With more than max_rows ready, take a prefix of the chain order: the rest sorts after it.
  SELECT p.txid, p.id INTO last_txid, last_id FROM audit.pending p WHERE p.txid < horizon
   ORDER BY p.txid, p.id OFFSET max_rows - 1 LIMIT 1;
  IF last_txid IS NULL THEN
    last_txid := horizon;
    last_id := 0;
  END IF;

  -- One statement: take the rows, number them in chain order, derive the final fields, fold the
  -- hash chain over them with a window aggregate, and append.
  WITH taken AS (
    DELETE FROM audit.pending p
     WHERE p.txid < horizon AND (p.txid < last_txid OR (p.txid = last_txid AND p.id <= last_id))
    RETURNING *),
  derived AS (
    SELECT ROW(
      head_seq + row_number() OVER (ORDER BY p.txid, p.id),
      p.event_id, p.occurred_at, p.txid, p.action_type, p.resource_type, p.resource_id, p.outcome,
      COALESCE(NULLIF(p.actor_id, ''), p.db_user),
      audit.try_inet(p.actor_ip),
      CASE WHEN audit.try_inet(p.actor_ip) IS NULL THEN NULLIF(p.actor_ip, '') END,
      NULLIF(p.user_agent, ''), NULLIF(p.request_id, ''), NULLIF(p.tenant_id, ''),
      p.db_user, NULLIF(p.application_name, ''), p.client_addr,
      COALESCE(cc.cols, '{}'),
      p.before_state, p.after_state, p.details, NULL, NULL)::audit.events AS e
    FROM taken p
    -- Changed columns: keys whose value differs between the row images (all keys for INSERT and
    -- DELETE), plus excluded columns the capture trigger saw change. Sorted bytewise.
    CROSS JOIN LATERAL (
      SELECT array_agg(k ORDER BY k COLLATE "C") AS cols FROM (
        SELECT k FROM jsonb_object_keys(COALESCE(p.before_state, '{}') || COALESCE(p.after_state, '{}')) AS k
         WHERE p.before_state IS NULL OR p.after_state IS NULL
            OR p.before_state -> k IS DISTINCT FROM p.after_state -> k
        UNION ALL
        SELECT jsonb_array_elements_text(p.details -> 'excluded_columns_changed')
         WHERE p.details ? 'excluded_columns_changed') AS c(k)) AS cc),
  hashed AS (
    SELECT d.e, audit.chain_fold(h, audit.canonical(d.e)) OVER (ORDER BY (d.e).seq ROWS UNBOUNDED PRECEDING) AS hash
      FROM derived d)
  INSERT INTO audit.events
  SELECT (x.e).seq, (x.e).event_id, (x.e).occurred_at, (x.e).txid, (x.e).action_type,
         (x.e).resource_type, (x.e).resource_id, (x.e).outcome, (x.e).actor_id, (x.e).actor_ip,
         (x.e).actor_ip_raw, (x.e).actor_user_agent, (x.e).request_id, (x.e).tenant_id,
         (x.e).db_user, (x.e).application_name, (x.e).client_addr, (x.e).changed_columns,
         (x.e).before_state, (x.e).after_state, (x.e).details,
         COALESCE(lag(x.hash) OVER (ORDER BY (x.e).seq), h), x.hash
    FROM hashed x;
  GET DIAGNOSTICS n = ROW_COUNT;

  IF n > 0 THEN
    SELECT e.entry_hash INTO h FROM audit.events e WHERE e.seq = head_seq + n;
    UPDATE audit.chain_head SET seq = head_seq + n, entry_hash = h, sealed_at = now();
  END IF;
  RETURN n;
END $$;

-- Row trigger on audited tables. TG_ARGV[0]: primary key columns, TG_ARGV[1]: excluded columns,
-- both as text[] literals. Kept lean: the sealer derives everything it can later.
CREATE FUNCTION audit.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pk text[] := TG_ARGV[0]::text[];
  excl text[] := TG_ARGV[1]::text[];
  old_j jsonb;
  new_j jsonb;
  key_j jsonb;
  rid text;
  extra jsonb;
BEGIN
  IF TG_OP <> 'INSERT' THEN old_j := to_jsonb(OLD); END IF;
  IF TG_OP <> 'DELETE' THEN new_j := to_jsonb(NEW); END IF;
  key_j := COALESCE(new_j, old_j);
  IF cardinality(pk) = 1 THEN
    rid := key_j ->> pk[1];
  ELSIF cardinality(pk) > 1 THEN
    rid := (SELECT string_agg(key_j ->> c, ',' ORDER BY o) FROM unnest(pk) WITH ORDINALITY AS u(c, o));
  END IF;
  IF cardinality(excl) > 0 THEN
    IF TG_OP = 'UPDATE' THEN
      -- Say that an excluded column changed, without saying what it holds.
      extra := (SELECT jsonb_build_object('excluded_columns_changed', jsonb_agg(c))
                  FROM unnest(excl) AS c WHERE old_j -> c IS DISTINCT FROM new_j -> c HAVING count(*) > 0);
    END IF;
    old_j := old_j - excl;
    new_j := new_j - excl;
  END IF;
  INSERT INTO audit.pending (action_type, resource_type, resource_id, outcome, actor_id, actor_ip,
                             user_agent, request_id, tenant_id, application_name,
                             before_state, after_state, details)
  VALUES (CASE TG_OP WHEN 'INSERT' THEN 'CREATE' ELSE TG_OP END,
          quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), rid, 'SUCCESS',
          current_setting('pgtrail.actor_id', true), current_setting('pgtrail.actor_ip', true),
          current_setting('pgtrail.user_agent', true), current_setting('pgtrail.request_id', true),
          current_setting('pgtrail.tenant_id', true), current_setting('application_name'),
          old_j, new_j, extra);
  RETURN NULL;
END $$;

-- Statement trigger for TRUNCATE of an audited table.
CREATE FUNCTION audit.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO audit.pending (action_type, resource_type, outcome, actor_id, actor_ip, user_agent,
                             request_id, tenant_id, application_name, details)
  VALUES ('TRUNCATE', quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), 'SUCCESS',
          current_setting('pgtrail.actor_id', true), current_setting('pgtrail.actor_ip', true),
          current_setting('pgtrail.user_agent', true), current_setting('pgtrail.request_id', true),
          current_setting('pgtrail.tenant_id', true), current_setting('application_name'),
          jsonb_build_object('query', current_query()));
  RETURN NULL;
END $$;

-- Records an event that is not table DML (LOGIN, FAILED_LOGIN, EXPORT, VIEW_PII, ROLE_GRANT, ...)
-- in the caller's transaction, with the caller's pgtrail.* context. Returns its event_id.
CREATE FUNCTION audit.log_event(action_type text, resource_type text, resource_id text,
                                outcome text DEFAULT 'SUCCESS', details jsonb DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  id uuid;
BEGIN
  IF action_type IS NULL OR action_type !~ '^[A-Z][A-Z0-9_]{0,62}$' THEN
    RAISE EXCEPTION 'audit.log_event: action_type must be an upper-case word like LOGIN or VIEW_PII, got %',
      COALESCE(quote_literal(action_type), 'NULL') USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF outcome IS NULL OR outcome NOT IN ('SUCCESS', 'FAILURE', 'UNAUTHORIZED') THEN
    RAISE EXCEPTION 'audit.log_event: outcome must be SUCCESS, FAILURE or UNAUTHORIZED, got %',
      COALESCE(quote_literal(outcome), 'NULL') USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF resource_type IS NULL OR resource_type = '' THEN
    RAISE EXCEPTION 'audit.log_event: resource_type must not be empty' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO audit.pending (action_type, resource_type, resource_id, outcome, actor_id, actor_ip,
                             user_agent, request_id, tenant_id, application_name, details)
  VALUES (log_event.action_type, log_event.resource_type, log_event.resource_id, log_event.outcome,
          current_setting('pgtrail.actor_id', true), current_setting('pgtrail.actor_ip', true),
          current_setting('pgtrail.user_agent', true), current_setting('pgtrail.request_id', true),
          current_setting('pgtrail.tenant_id', true), current_setting('application_name'),
          log_event.details)
  RETURNING event_id INTO id;
  RETURN id;
END $$;

-- DDL capture: records DDL on audited tables and on the audit schema; refuses DDL on the audit
-- schema from anyone but a superuser (the owner could otherwise disable the guard triggers).
CREATE FUNCTION audit.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  rel oid;
  is_super boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = session_user);
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    rel := CASE WHEN r.object_type = 'trigger' THEN (SELECT tgrelid FROM pg_trigger WHERE oid = r.objid)
                WHEN r.classid = 'pg_class'::regclass THEN r.objid END;
    CONTINUE WHEN r.schema_name IS DISTINCT FROM 'audit'
              AND NOT EXISTS (SELECT FROM audit.audited_tables t WHERE t.relid = rel);
    IF r.schema_name = 'audit' AND NOT is_super AND r.command_tag NOT IN ('CREATE TABLE', 'CREATE INDEX', 'CREATE TRIGGER', 'REVOKE', 'GRANT') THEN
      RAISE EXCEPTION 'pgtrail: % on % refused: only a superuser may change the audit schema', r.command_tag, r.object_identity
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    CONTINUE WHEN r.schema_name = 'audit' AND r.command_tag IN ('CREATE TABLE', 'CREATE INDEX', 'CREATE TRIGGER', 'REVOKE', 'GRANT')
              AND current_setting('pgtrail.sealing', true) = pg_current_xact_id()::text;
    PERFORM audit.log_event('DDL', r.object_type, r.object_identity, 'SUCCESS',
      jsonb_build_object('command_tag', r.command_tag, 'query', current_query()));
  END LOOP;
END $$;

CREATE FUNCTION audit.capture_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  is_super boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = session_user);
  audited boolean;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
    audited := EXISTS (SELECT FROM audit.audited_tables t WHERE t.relid = r.objid)
            OR (r.object_type = 'trigger' AND r.object_name IN ('pgtrail_capture', 'pgtrail_capture_truncate'));
    CONTINUE WHEN r.schema_name IS DISTINCT FROM 'audit' AND NOT audited;
    IF r.schema_name = 'audit' AND NOT is_super THEN
      RAISE EXCEPTION 'pgtrail: DROP of % refused: only a superuser may change the audit schema', r.object_identity
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM audit.log_event('DDL', r.object_type, r.object_identity, 'SUCCESS',
      jsonb_build_object('command_tag', tg_tag, 'query', current_query()));
    DELETE FROM audit.audited_tables WHERE relid = r.objid;
  END LOOP;
END $$;

RESET ROLE;

-- Schema-qualified, quoted where needed: the resource_type of the table's entries.
CREATE FUNCTION audit.table_name(t regclass) RETURNS text
LANGUAGE sql STABLE
RETURN (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = t);

-- Installs capture triggers on a table (again, if already audited: e.g. to change exclusions).
-- Runs with the caller's rights: creating a trigger needs the TRIGGER privilege on the table.
CREATE FUNCTION audit.enable(target regclass, exclude_columns text[] DEFAULT '{}') RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rel record;
  pk text[];
  bad text;
BEGIN
  SELECT c.relkind, c.relpersistence, n.nspname INTO rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
  IF rel.relkind NOT IN ('r', 'p') THEN
    RAISE EXCEPTION 'audit.enable: % is not a table', target USING ERRCODE = 'wrong_object_type';
  END IF;
  IF rel.nspname = 'audit' THEN
    RAISE EXCEPTION 'audit.enable: % is part of pgtrail itself', target USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF rel.relpersistence = 't' THEN
    RAISE EXCEPTION 'audit.enable: % is a temporary table', target USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT c INTO bad FROM unnest(COALESCE(exclude_columns, '{}')) AS c
   WHERE NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = target AND a.attname = c
                        AND a.attnum > 0 AND NOT a.attisdropped)
   LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'audit.enable: % has no column %', target, quote_ident(bad) USING ERRCODE = 'undefined_column';
  END IF;
  pk := ARRAY(SELECT a.attname::text
                FROM pg_index i
                JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, o) ON true
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE i.indrelid = target AND i.indisprimary
               ORDER BY k.o);

  INSERT INTO audit.audited_tables (relid, table_name, pk_columns, exclude_columns)
  VALUES (target, audit.table_name(target), pk, COALESCE(exclude_columns, '{}'))
  ON CONFLICT (relid) DO UPDATE SET table_name = EXCLUDED.table_name, pk_columns = EXCLUDED.pk_columns,
    exclude_columns = EXCLUDED.exclude_columns, enabled_at = now(), enabled_by = session_user;

  EXECUTE format('DROP TRIGGER IF EXISTS pgtrail_capture ON %s', target);
  EXECUTE format('DROP TRIGGER IF EXISTS pgtrail_capture_truncate ON %s', target);
  EXECUTE format('CREATE TRIGGER pgtrail_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION audit.capture(%L, %L)',
                 target, pk::text, COALESCE(exclude_columns, '{}')::text);
  EXECUTE format('CREATE TRIGGER pgtrail_capture_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate()',
                 target);
  PERFORM audit.log_event('AUDIT_ENABLE', 'table', audit.table_name(target), 'SUCCESS',
                          jsonb_build_object('exclude_columns', COALESCE(exclude_columns, '{}'), 'pk_columns', pk));
END $$;

-- Removes capture triggers from a table. The removal itself is recorded.
CREATE FUNCTION audit.disable(target regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM audit.audited_tables WHERE relid = target) THEN
    RAISE EXCEPTION 'audit.disable: % is not audited', target USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM audit.log_event('AUDIT_DISABLE', 'table', audit.table_name(target), 'SUCCESS', NULL);
  EXECUTE format('DROP TRIGGER IF EXISTS pgtrail_capture ON %s', target);
  EXECUTE format('DROP TRIGGER IF EXISTS pgtrail_capture_truncate ON %s', target);
  DELETE FROM audit.audited_tables WHERE relid = target;
END $$;


-- Privileges: nobody writes the trail directly; readers read it.
REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON audit.events, audit.events_default FROM pgtrail_owner;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA audit FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.log_event(text, text, text, text, jsonb) TO PUBLIC;
GRANT EXECUTE ON FUNCTION audit.seal(integer) TO PUBLIC;
GRANT EXECUTE ON FUNCTION audit.canonical(audit.events), audit.ns(text) TO PUBLIC;
GRANT SELECT ON audit.events TO pgtrail_reader, pgtrail_auditor;
GRANT SELECT ON audit.pending, audit.chain_head, audit.audited_tables TO pgtrail_auditor;
ALTER FUNCTION audit.enable(regclass, text[]) OWNER TO pgtrail_owner;
ALTER FUNCTION audit.disable(regclass) OWNER TO pgtrail_owner;

-- Last, so that nothing above is recorded as DDL.
CREATE EVENT TRIGGER pgtrail_ddl ON ddl_command_end EXECUTE FUNCTION audit.capture_ddl();
CREATE EVENT TRIGGER pgtrail_drop ON sql_drop EXECUTE FUNCTION audit.capture_drop();

