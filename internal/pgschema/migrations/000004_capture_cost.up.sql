-- pgtrail schema version 4: a cheaper capture trigger and sealer (measured in docs/benchmarks.md).
-- - event_id is no longer drawn by the writer: gen_random_uuid() cost about 6 µs per captured row
--   here (the strong random source). The sealer derives it (audit.derive_uuid); audit.log_event
--   still draws one, since it returns it.
-- - audit.capture takes the primary key columns as plain trigger arguments and does nothing else
--   per row: plpgsql re-initializes every simple expression in each new transaction, so each
--   statement of a trigger function is paid per short transaction, not once. Tables with excluded
--   columns get audit.capture_excluding (the former audit.capture).
-- - audit.seal: JIT off (compiling the statement cost more than running it: its cost estimate
--   follows audit.pending's size, dead rows included, and crossed jit_above_cost), and one scan of
--   audit.pending instead of two.
-- Must run as a superuser. No BEGIN/COMMIT: golang-migrate sends the file as one simple query,
-- which PostgreSQL runs as one implicit transaction, so a failure leaves nothing behind.

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    RAISE EXCEPTION 'pgtrail migrations must run as a superuser (they create roles and event triggers); % is not one', current_user;
  END IF;
END $$;

-- This migration's own changes are not DDL to record; the triggers it re-creates are recorded
-- below as AUDIT_ENABLE events instead. Paused for this transaction only.
ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

SET LOCAL ROLE pgtrail_owner;

ALTER TABLE audit.pending ALTER COLUMN event_id DROP DEFAULT, ALTER COLUMN event_id DROP NOT NULL;
-- The key columns of the captured table (audit.capture's arguments): the sealer reads the
-- resource_id out of the row image with them, so that the trigger is a single statement. As
-- PL/pgSQL's TG_ARGV, the array starts at index 0.
ALTER TABLE audit.pending ADD COLUMN key_columns text[];

-- An event_id for entry n of a seal call: 118 bits of SHA-256(seed || n) in the layout of a
-- version 4 UUID, where seed comes from the strong random source once per call. Unique (n is
-- unique in audit.pending) and as unguessable as a random UUID, for a hash instead of a draw.
CREATE FUNCTION audit.derive_uuid(seed bytea, n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN encode(set_byte(set_byte(substring(sha256(seed || int8send(n)) FROM 1 FOR 16), 6, 64), 8, 128), 'hex')::uuid;

-- audit.seal of version 1, cheaper: see the notes at the top of this file.
-- enable_seqscan off: the rows taken are deleted by ctid, and that must be a TID scan whatever the
-- statistics say. A plan made while audit.pending was empty (and kept by a long-lived sealer)
-- could otherwise scan the table comparing every row with the whole ctid array: quadratic in a
-- backlog. audit.pending has no index, so its own scans stay sequential.
CREATE OR REPLACE FUNCTION audit.seal(max_rows integer DEFAULT 50000) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET work_mem = '64MB' SET jit = off SET enable_seqscan = off AS $$
DECLARE
  -- Read before this transaction takes a transaction id of its own: every transaction below it
  -- has finished, so its rows are all visible (or aborted) from here on.
  horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
  head_seq bigint;
  h bytea;
  n bigint;
  seed bytea;
BEGIN
  IF max_rows < 1 THEN
    RAISE EXCEPTION 'max_rows must be positive, got %', max_rows;
  END IF;
  -- Idle: return before locking the head, which would write WAL every call.
  IF NOT EXISTS (SELECT FROM audit.pending p WHERE p.txid < horizon) THEN
    RETURN 0;
  END IF;
  SELECT seq, entry_hash INTO head_seq, h FROM audit.chain_head FOR UPDATE;
  -- Drawn once per call: the event_id of every entry captured without one derives from it.
  seed := uuid_send(gen_random_uuid());
  PERFORM set_config('pgtrail.sealing', pg_current_xact_id()::text, true);
  -- A synchronous commit flushes the WAL before it too: writers' asynchronous commits then reach
  -- logical replication within a seal interval instead of whenever the WAL writer gets to them.
  PERFORM set_config('synchronous_commit', 'on', true);

  IF to_regclass('audit.events_' || to_char(now() AT TIME ZONE 'UTC' + interval '1 month', 'YYYY_MM')) IS NULL THEN
    PERFORM audit.create_partitions();
  END IF;

  -- One statement: take the rows (at most max_rows, a prefix of the chain order: the rest sorts
  -- after it; picked in one scan and deleted by ctid, as pending rows never move), number them
  -- in chain order, derive the final fields, fold the hash chain over them with a window
  -- aggregate, and append.
  WITH taken AS (
    DELETE FROM audit.pending p
     WHERE p.ctid = ANY (ARRAY(SELECT r.ctid FROM audit.pending r WHERE r.txid < horizon
                                ORDER BY r.txid, r.id LIMIT max_rows))
    RETURNING *),
  derived AS (
    SELECT ROW(
      head_seq + row_number() OVER (ORDER BY p.txid, p.id),
      COALESCE(p.event_id, audit.derive_uuid(seed, p.id)), p.occurred_at, p.txid, p.action_type, p.resource_type,
      COALESCE(p.resource_id, CASE
        WHEN cardinality(p.key_columns) = 1 THEN COALESCE(p.after_state, p.before_state) ->> p.key_columns[array_lower(p.key_columns, 1)]
        WHEN cardinality(p.key_columns) > 1 THEN
          (SELECT string_agg(COALESCE(p.after_state, p.before_state) ->> c, ',' ORDER BY o)
             FROM unnest(p.key_columns) WITH ORDINALITY AS u(c, o)) END),
      p.outcome,
      COALESCE(NULLIF(p.actor_id, ''), p.db_user),
      audit.try_inet(p.actor_ip),
      CASE WHEN audit.try_inet(p.actor_ip) IS NULL THEN NULLIF(p.actor_ip, '') END,
      NULLIF(p.user_agent, ''), NULLIF(p.request_id, ''), NULLIF(p.tenant_id, ''),
      p.db_user, NULLIF(p.application_name, ''), p.client_addr,
      -- Changed columns: keys whose value differs between the row images (all keys for INSERT
      -- and DELETE), plus excluded columns the capture trigger saw change, sorted bytewise. The
      -- common cases first, each with one subquery (this costs the sealer more than hashing
      -- when written as one general expression).
      CASE WHEN p.details ? 'excluded_columns_changed' THEN
             ARRAY(SELECT k FROM (
                     SELECT k FROM jsonb_object_keys(COALESCE(p.before_state, '{}') || COALESCE(p.after_state, '{}')) AS k
                      WHERE p.before_state IS NULL OR p.after_state IS NULL
                         OR p.before_state -> k IS DISTINCT FROM p.after_state -> k
                     UNION ALL
                     SELECT jsonb_array_elements_text(p.details -> 'excluded_columns_changed')) AS c(k)
                    ORDER BY k COLLATE "C")
           WHEN p.before_state IS NULL OR p.after_state IS NULL THEN
             ARRAY(SELECT k FROM jsonb_object_keys(COALESCE(p.after_state, p.before_state, '{}')) AS k ORDER BY k COLLATE "C")
           ELSE
             ARRAY(SELECT k FROM jsonb_object_keys(p.before_state || p.after_state) AS k
                    WHERE p.before_state -> k IS DISTINCT FROM p.after_state -> k ORDER BY k COLLATE "C") END,
      p.before_state, p.after_state, p.details, NULL, NULL)::audit.events AS e
    FROM taken p),
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

-- Row trigger on audited tables without excluded columns. TG_ARGV: the primary key columns, in
-- key order, stored as they are for the sealer to extract the key value. One statement: PL/pgSQL
-- prepares each expression again in every new transaction, so in short transactions each
-- statement of a trigger costs microseconds per call (≈ 15–20 µs per transaction measured
-- between this and a version with IF branches and assignments).
CREATE OR REPLACE FUNCTION audit.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO audit.pending (action_type, resource_type, key_columns, outcome, actor_id, actor_ip,
                             user_agent, request_id, tenant_id, application_name,
                             before_state, after_state)
  VALUES (CASE TG_OP WHEN 'INSERT' THEN 'CREATE' ELSE TG_OP END,
          quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), TG_ARGV, 'SUCCESS',
          current_setting('pgtrail.actor_id', true), current_setting('pgtrail.actor_ip', true),
          current_setting('pgtrail.user_agent', true), current_setting('pgtrail.request_id', true),
          current_setting('pgtrail.tenant_id', true), current_setting('application_name'),
          CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
          CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
  RETURN NULL;
END $$;

-- Row trigger on audited tables with excluded columns. TG_ARGV[0]: primary key columns,
-- TG_ARGV[1]: excluded columns, both as text[] literals.
CREATE FUNCTION audit.capture_excluding() RETURNS trigger
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

-- Records an event that is not table DML (LOGIN, FAILED_LOGIN, EXPORT, VIEW_PII, ROLE_GRANT, ...)
-- in the caller's transaction, with the caller's pgtrail.* context. Returns its event_id.
CREATE OR REPLACE FUNCTION audit.log_event(action_type text, resource_type text, resource_id text,
                                outcome text DEFAULT 'SUCCESS', details jsonb DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  id uuid := gen_random_uuid();
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
  INSERT INTO audit.pending (event_id, action_type, resource_type, resource_id, outcome, actor_id, actor_ip,
                             user_agent, request_id, tenant_id, application_name, details)
  VALUES (id, log_event.action_type, log_event.resource_type, log_event.resource_id, log_event.outcome,
          current_setting('pgtrail.actor_id', true), current_setting('pgtrail.actor_ip', true),
          current_setting('pgtrail.user_agent', true), current_setting('pgtrail.request_id', true),
          current_setting('pgtrail.tenant_id', true), current_setting('application_name'),
          log_event.details);
  RETURN id;
END $$;

RESET ROLE;

-- (Re)creates the capture triggers of a table: audit.capture when nothing is excluded, else
-- audit.capture_excluding. Runs with the caller's rights (the TRIGGER privilege on the table).
CREATE FUNCTION audit.install_capture(target regclass, pk text[], exclude_columns text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF cardinality(exclude_columns) = 0 THEN
    EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION audit.capture(%s)',
                   target, (SELECT string_agg(quote_literal(c), ', ' ORDER BY o) FROM unnest(pk) WITH ORDINALITY AS u(c, o)));
  ELSE
    EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION audit.capture_excluding(%L, %L)',
                   target, pk::text, exclude_columns::text);
  END IF;
  EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_capture_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate()',
                 target);
END $$;

-- Installs capture triggers on a table (again, if already audited: e.g. to change exclusions).
-- Runs with the caller's rights: creating a trigger needs the TRIGGER privilege on the table.
CREATE OR REPLACE FUNCTION audit.enable(target regclass, exclude_columns text[] DEFAULT '{}') RETURNS void
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

  PERFORM audit.install_capture(target, pk, COALESCE(exclude_columns, '{}'));
  PERFORM audit.log_event('AUDIT_ENABLE', 'table', audit.table_name(target), 'SUCCESS',
                          jsonb_build_object('exclude_columns', COALESCE(exclude_columns, '{}'), 'pk_columns', pk));
END $$;

REVOKE ALL ON FUNCTION audit.derive_uuid(bytea, bigint), audit.capture_excluding(),
  audit.install_capture(regclass, text[], text[]) FROM PUBLIC;
ALTER FUNCTION audit.install_capture(regclass, text[], text[]) OWNER TO pgtrail_owner;

-- Triggers installed by earlier versions pass arguments audit.capture no longer reads: re-create
-- them, and say so in the trail.
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT a.relid::regclass AS rel, a.table_name, a.pk_columns, a.exclude_columns
             FROM audit.audited_tables a ORDER BY a.relid LOOP
    PERFORM audit.install_capture(t.rel, t.pk_columns, t.exclude_columns);
    PERFORM audit.log_event('AUDIT_ENABLE', 'table', t.table_name, 'SUCCESS',
      jsonb_build_object('exclude_columns', t.exclude_columns, 'pk_columns', t.pk_columns,
                         'reason', 'schema migration 4 re-created the capture triggers'));
  END LOOP;
END $$;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE;
ALTER EVENT TRIGGER pgtrail_drop ENABLE;
