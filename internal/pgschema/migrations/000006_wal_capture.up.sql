-- pgtrail schema version 6: WAL capture. A table in mode 'wal' has no row trigger: it is in the
-- publication pgtrail with REPLICA IDENTITY FULL, so the write-ahead log carries every change with
-- both row images, and a statement trigger emits the session's pgtrail.* context as a logical
-- message when it differs from the last one the transaction emitted. `pgtrail stream` decodes
-- both, chains the entries and writes them to audit.events (as pgtrail_sealer) and the archive.
-- A change that arrives without a context message (its triggers were disabled) is still chained,
-- and flagged. Mode 'trigger' is capture as in version 5. See docs/design.md, "Capture".
-- Must run as a superuser. No BEGIN/COMMIT: golang-migrate sends the file as one simple query,
-- which PostgreSQL runs as one implicit transaction, so a failure leaves nothing behind.

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    RAISE EXCEPTION 'pgtrail migrations must run as a superuser (they create roles and event triggers); % is not one', current_user;
  END IF;
  -- pgtrail_typer: builds row images (audit.row_images); has no rights but PUBLIC's and no members.
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgtrail_typer') THEN
    BEGIN
      CREATE ROLE pgtrail_typer NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
END $$;

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

ALTER TABLE audit.audited_tables ADD COLUMN mode text NOT NULL DEFAULT 'trigger' CHECK (mode IN ('wal', 'trigger'));
-- The end of the last WAL transaction whose changes are chained: the stream skips transactions
-- at or before it when the slot sends them again after a crash. Moves with the head, under its lock.
ALTER TABLE audit.chain_head ADD COLUMN wal_lsn pg_lsn NOT NULL DEFAULT '0/0';

-- The publication the stream reads: audit.events (its inserts are archived; anything else done to
-- it is tampering) and the tables in mode 'wal'. `pgtrail stream` created it before this version.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'pgtrail') THEN
    CREATE PUBLICATION pgtrail FOR TABLE audit.events
      WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true);
  END IF;
END $$;

-- The key that authenticates context messages: any session can emit a logical message with any
-- prefix, so the stream takes only messages whose MAC it can check with this key, which only
-- pgtrail_sealer (the stream's role) reads. Drawn from the strong random source at install.
CREATE TABLE audit.context_key (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  key bytea NOT NULL CHECK (octet_length(key) = 32)
);
INSERT INTO audit.context_key (key)
VALUES (sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())));
ALTER TABLE audit.context_key OWNER TO pgtrail_sealer;
REVOKE ALL ON audit.context_key FROM PUBLIC;

-- Emits the session's context: a transactional logical message, decoded in commit order before
-- the changes that follow it:
--   <json>\n<hex of sha256(key || sha256(key || json))>
-- The JSON holds the transaction's xid: a message replayed from another transaction does not
-- match. SECURITY DEFINER, to read the key. Any role may call it: it says only the truth about
-- the caller's own session.
CREATE FUNCTION audit.emit_signed_context() RETURNS void
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

-- The statement trigger of tables in mode wal: emits the context once per transaction, and again
-- whenever it changes. It runs before every statement on an audited table, so the common case
-- is two simple expressions and nothing else: no SECURITY DEFINER, no SET clause, no query (a
-- definer call with a SET clause on every statement cost a third of the writers' throughput
-- here). It runs with the caller's rights and decides only whether to emit; what is emitted,
-- audit.emit_signed_context reads itself. pgtrail.emitted only saves repeating the message: a
-- session that sets it itself makes its own changes look as if made under its previous context,
-- or without one (and flagged).
CREATE FUNCTION audit.emit_context() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  k text := pg_catalog.concat_ws(E'\x1f', pg_catalog.pg_current_xact_id(), pg_catalog.current_setting('role'),
              pg_catalog.current_setting('pgtrail.actor_id', true), pg_catalog.current_setting('pgtrail.actor_ip', true),
              pg_catalog.current_setting('pgtrail.user_agent', true), pg_catalog.current_setting('pgtrail.request_id', true),
              pg_catalog.current_setting('pgtrail.tenant_id', true), pg_catalog.current_setting('application_name'));
BEGIN
  IF k IS DISTINCT FROM pg_catalog.current_setting('pgtrail.emitted', true) THEN
    PERFORM audit.emit_signed_context(), pg_catalog.set_config('pgtrail.emitted', k, true);
  END IF;
  RETURN NULL;
END $$;

-- Row images of changes decoded from the WAL: each column's text goes through its type's input
-- function and to_jsonb of the typed row is what a row trigger's to_jsonb(NEW) gives. That runs
-- code the table's owner chose (domain checks, casts to json), so it runs as pgtrail_typer, a role
-- with no rights of its own, inside a SECURITY DEFINER function where no code can SET ROLE back to
-- the stream's role (a superuser or member of pgtrail_sealer). The stream bounds it with
-- statement_timeout and, when it fails, calls it again with typed = false: the images are then
-- built from the column texts, which runs no code of anyone's.
-- types, typmods: each column's type and modifier (as the WAL's relation message gives them);
-- names: the columns; excl: excluded columns; pk: key
-- columns; has_old, has_new, warn: per change; old, new: per column and change, the texts.
-- The derivations are audit.seal's and audit.capture_excluding's: excluded columns leave the
-- images but a change to them is named; changed_columns are the keys that differ (all keys for an
-- insert or delete), sorted bytewise; resource_id is the key columns' values joined by commas.
CREATE FUNCTION audit.row_images(types oid[], typmods integer[], names text[], excl text[], pk text[], has_old boolean[],
                                 has_new boolean[], warn text[], old text[], new text[], typed boolean)
RETURNS TABLE (before_state text, after_state text, changed_columns text[], resource_id text, details text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  arrays text;  -- the columns' arrays, for unnest
  aliases text; -- their names in the unnest
  before text;  -- the expression of the old image
  after text;   -- and of the new one
BEGIN
  -- old and new hold a row per column (column-major), and each column is read by one unnest, in
  -- one pass: a subscript of an array of text walks it from its start, so reading change by
  -- change would take time quadratic in the batch.
  SELECT string_agg(format(', $8[%s:%s], $9[%s:%s]', i, i, i, i), '' ORDER BY i),
         string_agg(format('o%s, n%s, ', i, i), '' ORDER BY i)
    INTO arrays, aliases FROM generate_subscripts(names, 1) AS i;
  IF typed THEN
    -- format_type with this function's search_path names every type with its schema.
    SELECT format('(SELECT to_jsonb(x) FROM (SELECT %s) x)',
                  string_agg(format('u.o%s::%s AS %I', i, format_type(types[i], NULLIF(typmods[i], -1)), names[i]), ', ' ORDER BY i)),
           format('(SELECT to_jsonb(x) FROM (SELECT %s) x)',
                  string_agg(format('u.n%s::%s AS %I', i, format_type(types[i], NULLIF(typmods[i], -1)), names[i]), ', ' ORDER BY i))
      INTO before, after FROM generate_subscripts(names, 1) AS i;
  ELSE
    SELECT format('jsonb_object($10, ARRAY[%s]::text[])', string_agg(format('u.o%s', i), ', ' ORDER BY i)),
           format('jsonb_object($10, ARRAY[%s]::text[])', string_agg(format('u.n%s', i), ', ' ORDER BY i))
      INTO before, after FROM generate_subscripts(names, 1) AS i;
  END IF;
  RETURN QUERY EXECUTE format($q$
    SELECT m.bm::text, m.am::text,
           ARRAY(SELECT k FROM (
                   SELECT k FROM jsonb_object_keys(COALESCE(m.bm, '{}') || COALESCE(m.am, '{}')) AS k
                    WHERE m.bm IS NULL OR m.am IS NULL OR m.bm -> k IS DISTINCT FROM m.am -> k
                   UNION ALL SELECT unnest(m.ec)) AS s(k) ORDER BY k COLLATE "C"),
           (SELECT string_agg(COALESCE(m.af, m.bf) ->> k.c, ',' ORDER BY k.o) FROM unnest($4) WITH ORDINALITY AS k(c, o)),
           NULLIF(jsonb_strip_nulls(jsonb_build_object(
             'excluded_columns_changed', CASE WHEN cardinality(m.ec) > 0 THEN to_jsonb(m.ec) END,
             'capture_warning', u.warn)), '{}')::text
      FROM unnest($5, $6, $7%s) WITH ORDINALITY AS u(has_old, has_new, warn, %sord)
      CROSS JOIN LATERAL (SELECT CASE WHEN u.has_old THEN %s END AS bf, CASE WHEN u.has_new THEN %s END AS af) f
      CROSS JOIN LATERAL (SELECT f.bf, f.af, f.bf - $3 AS bm, f.af - $3 AS am,
                                 CASE WHEN u.has_old AND u.has_new THEN
                                   ARRAY(SELECT c FROM unnest($3) AS c WHERE f.bf -> c IS DISTINCT FROM f.af -> c) ELSE '{}' END AS ec) m
     ORDER BY u.ord$q$,
      COALESCE(arrays, ''), COALESCE(aliases, ''), COALESCE(before, '''{}''::jsonb'), COALESCE(after, '''{}''::jsonb'))
    USING types, names, excl, pk, has_old, has_new, warn, old, new, names;
END $$;

-- Puts a table in the publication with both row images in the WAL, or takes it out. Owned by the
-- superuser who runs this migration (ALTER PUBLICATION needs the publication's owner), so it
-- checks its caller: a member of pgtrail_owner, as for every capture change.
CREATE FUNCTION audit.publish_table(target regclass, publish boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  part regclass;
  rel record;
  published boolean := EXISTS (SELECT FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
                                WHERE p.pubname = 'pgtrail' AND r.prrelid = target);
BEGIN
  SELECT c.relowner, c.relnamespace INTO rel FROM pg_class c WHERE c.oid = target;
  IF NOT pg_has_role(session_user, 'pgtrail_owner', 'MEMBER') THEN
    RAISE EXCEPTION 'audit.publish_table: % is not a member of pgtrail_owner', session_user USING ERRCODE = 'insufficient_privilege';
  END IF;
  -- Publishing a table puts its rows in the trail: only for whoever may read them.
  IF NOT (pg_has_role(session_user, rel.relowner, 'MEMBER') OR has_table_privilege(session_user, target, 'SELECT')) THEN
    RAISE EXCEPTION 'audit.publish_table: % may not read %', session_user, target USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF rel.relnamespace = 'audit'::regnamespace THEN
    RAISE EXCEPTION 'audit.publish_table: % is part of pgtrail itself', target USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF publish THEN
    IF NOT published THEN
      EXECUTE format('ALTER PUBLICATION pgtrail ADD TABLE %s', target);
    END IF;
    -- A partition's changes are logged with its own replica identity and sent, under the root,
    -- tagged with the root's: both must be FULL.
    FOR part IN SELECT c.oid FROM pg_class c
                 WHERE (c.oid = target OR c.oid IN (SELECT t.relid FROM pg_partition_tree(target) t))
                   AND c.relkind IN ('r', 'p') AND c.relreplident <> 'f' LOOP
      EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', part);
    END LOOP;
  ELSIF published THEN
    EXECUTE format('ALTER PUBLICATION pgtrail DROP TABLE %s', target);
  END IF;
  -- The publication's DDL is not recorded by the event triggers: say it here.
  IF publish IS DISTINCT FROM published THEN
    PERFORM audit.log_event('AUDIT_CONFIG', 'publication pgtrail', audit.table_name(target), 'SUCCESS',
      jsonb_build_object('operation', CASE WHEN publish THEN 'ADD TABLE' ELSE 'DROP TABLE' END));
  END IF;
END $$;

-- What keeps the changes of tables in mode wal from reaching the trail whole, a row per table and
-- problem: `pgtrail status` shows them, and the stream records them as CAPTURE_GAP entries.
CREATE FUNCTION audit.capture_problems(publication text DEFAULT 'pgtrail')
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT a.table_name, p.problem
    FROM audit.audited_tables a JOIN pg_class c ON c.oid = a.relid,
         LATERAL (VALUES
           (CASE WHEN NOT EXISTS (SELECT FROM pg_publication_rel r JOIN pg_publication pb ON pb.oid = r.prpubid
                                   WHERE pb.pubname = capture_problems.publication AND r.prrelid = a.relid)
                 THEN 'not in the publication: its changes do not reach the trail' END),
           (CASE WHEN c.relreplident <> 'f' THEN 'replica identity not FULL: before images hold only the key' END),
           (CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED: its changes never reach the WAL' END)) AS p(problem)
   WHERE a.mode = 'wal' AND p.problem IS NOT NULL
   ORDER BY 1, 2
$$;

-- Drops a capture trigger if the table has it (DROP TRIGGER IF EXISTS would say when it has not).
CREATE FUNCTION audit.drop_trigger(target regclass, name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = name AND NOT t.tgisinternal) THEN
    EXECUTE format('DROP TRIGGER %I ON %s', name, target);
  END IF;
END $$;

-- Which tables are audited, and how, decides what reaches the trail: audit.audited_tables
-- belongs to the sealer and changes only here, each change an event. (Owned by pgtrail_owner
-- before, a member could delete a table's row, or change its excluded columns, and leave no
-- trace.) Callers: audit.enable and audit.disable, which check the caller's rights on the table
-- by creating or dropping its triggers; a member of pgtrail_owner calling these directly is
-- recorded all the same.
CREATE FUNCTION audit.register_table(target regclass, pk text[], exclude_columns text[], mode text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT pg_has_role(session_user, 'pgtrail_owner', 'MEMBER') THEN
    RAISE EXCEPTION 'audit.register_table: % is not a member of pgtrail_owner', session_user USING ERRCODE = 'insufficient_privilege';
  END IF;
  INSERT INTO audit.audited_tables (relid, table_name, pk_columns, exclude_columns, mode)
  VALUES (target, audit.table_name(target), pk, exclude_columns, register_table.mode)
  ON CONFLICT (relid) DO UPDATE SET table_name = EXCLUDED.table_name, pk_columns = EXCLUDED.pk_columns,
    exclude_columns = EXCLUDED.exclude_columns, mode = EXCLUDED.mode, enabled_at = now(), enabled_by = session_user;
  PERFORM audit.log_event('AUDIT_ENABLE', 'table', audit.table_name(target), 'SUCCESS',
                          jsonb_build_object('exclude_columns', exclude_columns, 'pk_columns', pk, 'mode', mode));
END $$;

CREATE FUNCTION audit.unregister_table(target regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT pg_has_role(session_user, 'pgtrail_owner', 'MEMBER') THEN
    RAISE EXCEPTION 'audit.unregister_table: % is not a member of pgtrail_owner', session_user USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM audit.log_event('AUDIT_DISABLE', 'table', audit.table_name(target), 'SUCCESS', NULL);
  DELETE FROM audit.audited_tables WHERE relid = target;
END $$;

-- audit.enable with the capture mode: 'wal' or 'trigger'. pii_columns NULL leaves the PII columns
-- as they are. Runs with the caller's rights (creating a trigger needs the TRIGGER privilege).
CREATE FUNCTION audit.enable(target regclass, exclude_columns text[], pii_columns text[], mode text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rel record;
  pk text[];
  bad text;
BEGIN
  IF mode IS NULL OR mode NOT IN ('wal', 'trigger') THEN
    RAISE EXCEPTION 'audit.enable: mode must be wal or trigger, got %', COALESCE(quote_literal(mode), 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
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
  IF mode = 'wal' AND rel.relpersistence = 'u' THEN
    RAISE EXCEPTION 'audit.enable: % is UNLOGGED: its changes never reach the WAL (use mode trigger, or make it LOGGED)', target
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF mode = 'wal' AND current_setting('wal_level') <> 'logical' THEN
    RAISE EXCEPTION 'audit.enable: WAL capture needs wal_level = logical (it is %): set it and restart PostgreSQL, or use mode trigger', current_setting('wal_level')
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  IF mode = 'wal' AND NOT EXISTS (SELECT FROM pg_replication_slots s WHERE s.database = current_database() AND s.plugin = 'pgoutput') THEN
    RAISE EXCEPTION 'audit.enable: WAL capture needs the stream''s replication slot, or changes made before it exists are lost: run `pgtrail enable --mode wal` (which creates it) or start `pgtrail stream` first'
      USING ERRCODE = 'object_not_in_prerequisite_state';
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

  PERFORM audit.register_table(target, pk, COALESCE(exclude_columns, '{}'), mode);

  IF mode = 'wal' THEN
    -- The context trigger first, the row trigger gone after: no change falls between the modes.
    EXECUTE format('CREATE OR REPLACE TRIGGER pgtrail_context BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION audit.emit_context()', target);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER pgtrail_context', target);
    PERFORM audit.publish_table(target, true);
    PERFORM audit.drop_trigger(target, 'pgtrail_capture');
    PERFORM audit.drop_trigger(target, 'pgtrail_capture_truncate');
  ELSE
    PERFORM audit.install_capture(target, pk, COALESCE(exclude_columns, '{}'));
    PERFORM audit.publish_table(target, false);
    PERFORM audit.drop_trigger(target, 'pgtrail_context');
  END IF;
  IF pii_columns IS NOT NULL THEN
    PERFORM audit.set_pii_columns(target, pii_columns);
  END IF;
END $$;

-- The two-argument form keeps a table's mode (trigger for a table not yet audited).
CREATE OR REPLACE FUNCTION audit.enable(target regclass, exclude_columns text[] DEFAULT '{}') RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM audit.enable(target, exclude_columns, NULL::text[],
                       COALESCE((SELECT a.mode FROM audit.audited_tables a WHERE a.relid = target), 'trigger'));
END $$;

CREATE OR REPLACE FUNCTION audit.disable(target regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM audit.audited_tables WHERE relid = target) THEN
    RAISE EXCEPTION 'audit.disable: % is not audited', target USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM audit.drop_trigger(target, 'pgtrail_capture');
  PERFORM audit.drop_trigger(target, 'pgtrail_capture_truncate');
  PERFORM audit.drop_trigger(target, 'pgtrail_context');
  PERFORM audit.publish_table(target, false);
  PERFORM audit.unregister_table(target);
END $$;

ALTER TABLE audit.audited_tables OWNER TO pgtrail_sealer;
GRANT SELECT ON audit.audited_tables TO pgtrail_owner;
ALTER FUNCTION audit.register_table(regclass, text[], text[], text) OWNER TO pgtrail_sealer;
ALTER FUNCTION audit.unregister_table(regclass) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.register_table(regclass, text[], text[], text), audit.unregister_table(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.register_table(regclass, text[], text[], text), audit.unregister_table(regclass) TO pgtrail_owner;

ALTER FUNCTION audit.capture_problems(text) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.capture_problems(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.capture_problems(text) TO pgtrail_owner, pgtrail_auditor;
ALTER FUNCTION audit.emit_context() OWNER TO pgtrail_sealer;
ALTER FUNCTION audit.emit_signed_context() OWNER TO pgtrail_sealer;
ALTER FUNCTION audit.row_images(oid[], integer[], text[], text[], text[], boolean[], boolean[], text[], text[], text[], boolean) OWNER TO pgtrail_typer;
ALTER FUNCTION audit.drop_trigger(regclass, text) OWNER TO pgtrail_sealer;
ALTER FUNCTION audit.enable(regclass, text[], text[], text) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.row_images(oid[], integer[], text[], text[], text[], boolean[], boolean[], text[], text[], text[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.row_images(oid[], integer[], text[], text[], text[], boolean[], boolean[], text[], text[], text[], boolean) TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.emit_context(), audit.publish_table(regclass, boolean),
  audit.enable(regclass, text[], text[], text), audit.drop_trigger(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.emit_context(), audit.publish_table(regclass, boolean),
  audit.enable(regclass, text[], text[], text), audit.drop_trigger(regclass, text) TO pgtrail_owner;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
