-- Reverts schema version 4: the capture trigger, audit.seal, audit.log_event and audit.enable of
-- version 1 come back, capture triggers are re-created with version 1's arguments, and pending
-- entries captured without an event_id get one. Must run as a superuser. No BEGIN/COMMIT (one
-- implicit transaction).
-- Keeps the audit data: a downgrade, not a removal.

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

SET LOCAL ROLE pgtrail_owner;

CREATE OR REPLACE FUNCTION audit.seal(max_rows integer DEFAULT 50000) RETURNS bigint
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

CREATE OR REPLACE FUNCTION audit.capture() RETURNS trigger
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

CREATE OR REPLACE FUNCTION audit.log_event(action_type text, resource_type text, resource_id text,
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

-- Only the sealer may change audit.pending; this is the one other writer, under the same flag.
SELECT set_config('pgtrail.sealing', pg_current_xact_id()::text, true);
UPDATE audit.pending p SET event_id = COALESCE(p.event_id, gen_random_uuid()),
  resource_id = COALESCE(p.resource_id, CASE
    WHEN cardinality(p.key_columns) = 1 THEN COALESCE(p.after_state, p.before_state) ->> p.key_columns[array_lower(p.key_columns, 1)]
    WHEN cardinality(p.key_columns) > 1 THEN
      (SELECT string_agg(COALESCE(p.after_state, p.before_state) ->> c, ',' ORDER BY o)
         FROM unnest(p.key_columns) WITH ORDINALITY AS u(c, o)) END)
 WHERE p.event_id IS NULL OR p.key_columns IS NOT NULL;
ALTER TABLE audit.pending DROP COLUMN key_columns;
ALTER TABLE audit.pending ALTER COLUMN event_id SET DEFAULT gen_random_uuid(), ALTER COLUMN event_id SET NOT NULL;
SELECT set_config('pgtrail.sealing', '', true);

RESET ROLE;

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

  EXECUTE format('DROP TRIGGER IF EXISTS pgtrail_capture ON %s', target);
  EXECUTE format('DROP TRIGGER IF EXISTS pgtrail_capture_truncate ON %s', target);
  EXECUTE format('CREATE TRIGGER pgtrail_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION audit.capture(%L, %L)',
                 target, pk::text, COALESCE(exclude_columns, '{}')::text);
  EXECUTE format('CREATE TRIGGER pgtrail_capture_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate()',
                 target);
  PERFORM audit.log_event('AUDIT_ENABLE', 'table', audit.table_name(target), 'SUCCESS',
                          jsonb_build_object('exclude_columns', COALESCE(exclude_columns, '{}'), 'pk_columns', pk));
END $$;

DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT a.relid::regclass AS rel, a.pk_columns, a.exclude_columns FROM audit.audited_tables a ORDER BY a.relid LOOP
    EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION audit.capture(%L, %L)',
                   t.rel, t.pk_columns::text, t.exclude_columns::text);
  END LOOP;
END $$;

DROP FUNCTION audit.install_capture(regclass, text[], text[]);
DROP FUNCTION audit.capture_excluding();
DROP FUNCTION audit.derive_uuid(bytea, bigint);

ALTER EVENT TRIGGER pgtrail_ddl ENABLE;
ALTER EVENT TRIGGER pgtrail_drop ENABLE;
