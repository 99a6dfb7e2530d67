-- pgtrail schema version 15: audit.log_event_autonomous, an application event that is recorded
-- even when the caller's transaction rolls back. audit.log_event writes into audit.pending in the
-- caller's transaction, so a FAILED_LOGIN logged in a transaction that then fails (the usual case:
-- the login's work is rolled back) was lost with it. This one writes a non-transactional logical
-- message, which the WAL keeps whatever the transaction does, and pgtrail stream (or seal --once)
-- chains it in WAL order. The message is authenticated like the context messages of mode wal
-- (version 6): any session can emit a message with any prefix, and the stream believes only those
-- whose MAC checks with the key only pgtrail_sealer reads. Only the application's own event types:
-- pgtrail's (class other than app, version 8) are written transactionally by pgtrail itself.
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

SELECT audit.require_superuser();

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

-- The slots pgtrail stream reads, and how far it has confirmed each: written by the stream before
-- it confirms a position to PostgreSQL. A slot whose confirmed position is past what the stream
-- recorded was moved by someone else (dropped and created again, or advanced) over WAL the
-- stream never read: the stream records a CAPTURE_GAP entry. And audit.log_event_autonomous
-- writes only when a slot the stream reads exists.
CREATE TABLE audit.stream_slots (
  slot          text PRIMARY KEY,
  confirmed_lsn pg_lsn NOT NULL,
  recorded_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE audit.stream_slots OWNER TO pgtrail_sealer;
REVOKE ALL ON audit.stream_slots FROM PUBLIC;
GRANT SELECT ON audit.stream_slots TO pgtrail_auditor, pgtrail_owner;

CREATE FUNCTION audit.log_event_autonomous(action_type text, resource_type text, resource_id text,
                                           outcome text DEFAULT 'SUCCESS', details jsonb DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  problem text := CASE
    WHEN $1 IS NULL OR $1 !~ '^[A-Z][A-Z0-9_]{0,62}$'
      THEN format('action_type must be an upper-case word like LOGIN or VIEW_PII, got %s', COALESCE(quote_literal($1), 'NULL'))
    WHEN $4 IS NULL OR $4 NOT IN ('SUCCESS', 'FAILURE', 'UNAUTHORIZED')
      THEN format('outcome must be SUCCESS, FAILURE or UNAUTHORIZED, got %s', COALESCE(quote_literal($4), 'NULL'))
    WHEN $2 IS NULL OR $2 = '' THEN 'resource_type must not be empty'
    WHEN jsonb_typeof($5) = 'object' AND ($5 ? 'capture_warning' OR $5 ? 'excluded_columns_changed')
      THEN 'details.capture_warning and details.excluded_columns_changed are pgtrail''s own keys'
    -- Far deeper than any event needs, and deep enough that a reader of the message would stop
    -- on it (built by jsonb functions, such a value never went through a parser's limit).
    WHEN jsonb_path_exists($5, 'lax $.**{256}')
      THEN 'details nest deeper than 256 levels' END;
  id uuid := gen_random_uuid();
  v text;
BEGIN
  IF problem IS NOT NULL THEN
    RAISE EXCEPTION 'audit.log_event_autonomous: %', problem USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF audit.event_class($1, $2) <> 'app' THEN
    RAISE EXCEPTION 'audit.log_event_autonomous: % is one of pgtrail''s own event types (class %), which are never written autonomously', $1, audit.event_class($1, $2)
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Name the application''s events otherwise (e.g. USER_DELETED rather than DELETE).';
  END IF;
  -- Nothing reads a message no slot of pgtrail stream decodes: say so rather than lose it. Another
  -- tool's slot does not count, nor one still being created (dropped if its creator dies; it
  -- decodes nothing from before its consistent point).
  IF current_setting('wal_level') <> 'logical' OR NOT EXISTS (
       SELECT FROM audit.stream_slots t JOIN pg_replication_slots s ON s.slot_name = t.slot
        WHERE s.database = current_database() AND s.plugin = 'pgoutput' AND NOT s.temporary
          AND s.confirmed_flush_lsn IS NOT NULL) THEN
    RAISE EXCEPTION 'audit.log_event_autonomous: no logical replication slot of pgtrail stream reads this database''s WAL, so the event would be lost'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Run pgtrail stream (or pgtrail seal --once) once, or use audit.log_event (transactional).';
  END IF;
  -- (No jsonb_strip_nulls: it would strip the NULLs inside details too.)
  v := (jsonb_build_object('event_id', id, 'occurred_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                           'action_type', $1, 'resource_type', $2, 'resource_id', $3, 'outcome', $4, 'details', $5)
        || audit.session_context()::jsonb)::text;
  PERFORM pg_logical_emit_message(false, 'pgtrail.event',
            v || E'\n' || encode(sha256(k.key || sha256(k.key || convert_to(v, 'UTF8'))), 'hex'))
     FROM audit.context_key k;
  RETURN id;
END $$;
ALTER FUNCTION audit.log_event_autonomous(text, text, text, text, jsonb) OWNER TO pgtrail_sealer;
GRANT EXECUTE ON FUNCTION audit.log_event_autonomous(text, text, text, text, jsonb) TO PUBLIC;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
