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

-- Emits the session's context once per transaction and again whenever it changes: a transactional
-- logical message, decoded in commit order before the changes of the statement that fired it.
-- One statement, no SET clause: it runs before every statement on an audited table, and each
-- statement or SET of a PL/pgSQL trigger costs microseconds per short transaction. Everything
-- is schema-qualified; it runs with the caller's rights and gives the caller nothing.
-- pgtrail.emitted only saves repeating the message: a session that sets it itself makes its own
-- changes look as if made under its previous context, or without one (and flagged).
CREATE FUNCTION audit.emit_context() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.pg_logical_emit_message(true, 'pgtrail.context', c.v), pg_catalog.set_config('pgtrail.emitted', c.v, true)
     FROM (SELECT pg_catalog.json_build_object(
                    'xid', pg_catalog.pg_current_xact_id(),
                    'actor_id', pg_catalog.current_setting('pgtrail.actor_id', true),
                    'actor_ip', pg_catalog.current_setting('pgtrail.actor_ip', true),
                    'user_agent', pg_catalog.current_setting('pgtrail.user_agent', true),
                    'request_id', pg_catalog.current_setting('pgtrail.request_id', true),
                    'tenant_id', pg_catalog.current_setting('pgtrail.tenant_id', true),
                    'db_user', COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), SESSION_USER::text),
                    'application_name', pg_catalog.current_setting('application_name'),
                    'client_addr', pg_catalog.inet_client_addr())::text AS v) c
    WHERE c.v IS DISTINCT FROM pg_catalog.current_setting('pgtrail.emitted', true);
  RETURN NULL;
END $$;

-- Puts a table in the publication with both row images in the WAL, or takes it out. Owned by the
-- superuser who runs this migration (ALTER PUBLICATION needs the publication's owner), so it
-- checks its caller: a member of pgtrail_owner, as for every capture change.
CREATE FUNCTION audit.publish_table(target regclass, publish boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  part regclass;
  published boolean := EXISTS (SELECT FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
                                WHERE p.pubname = 'pgtrail' AND r.prrelid = target);
BEGIN
  IF NOT pg_has_role(session_user, 'pgtrail_owner', 'MEMBER') THEN
    RAISE EXCEPTION 'audit.publish_table: % is not a member of pgtrail_owner', session_user USING ERRCODE = 'insufficient_privilege';
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
END $$;

-- Drops a capture trigger if the table has it (DROP TRIGGER IF EXISTS would say when it has not).
CREATE FUNCTION audit.drop_trigger(target regclass, name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = target AND t.tgname = name AND NOT t.tgisinternal) THEN
    EXECUTE format('DROP TRIGGER %I ON %s', name, target);
  END IF;
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

  INSERT INTO audit.audited_tables (relid, table_name, pk_columns, exclude_columns, mode)
  VALUES (target, audit.table_name(target), pk, COALESCE(exclude_columns, '{}'), enable.mode)
  ON CONFLICT (relid) DO UPDATE SET table_name = EXCLUDED.table_name, pk_columns = EXCLUDED.pk_columns,
    exclude_columns = EXCLUDED.exclude_columns, mode = EXCLUDED.mode, enabled_at = now(), enabled_by = session_user;

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
  PERFORM audit.log_event('AUDIT_ENABLE', 'table', audit.table_name(target), 'SUCCESS',
                          jsonb_build_object('exclude_columns', COALESCE(exclude_columns, '{}'), 'pk_columns', pk, 'mode', mode));
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
  PERFORM audit.log_event('AUDIT_DISABLE', 'table', audit.table_name(target), 'SUCCESS', NULL);
  PERFORM audit.drop_trigger(target, 'pgtrail_capture');
  PERFORM audit.drop_trigger(target, 'pgtrail_capture_truncate');
  PERFORM audit.drop_trigger(target, 'pgtrail_context');
  PERFORM audit.publish_table(target, false);
  DELETE FROM audit.audited_tables WHERE relid = target;
END $$;

ALTER FUNCTION audit.emit_context() OWNER TO pgtrail_sealer;
ALTER FUNCTION audit.drop_trigger(regclass, text) OWNER TO pgtrail_sealer;
ALTER FUNCTION audit.enable(regclass, text[], text[], text) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.emit_context(), audit.publish_table(regclass, boolean),
  audit.enable(regclass, text[], text[], text), audit.drop_trigger(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.emit_context(), audit.publish_table(regclass, boolean),
  audit.enable(regclass, text[], text[], text), audit.drop_trigger(regclass, text) TO pgtrail_owner;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
