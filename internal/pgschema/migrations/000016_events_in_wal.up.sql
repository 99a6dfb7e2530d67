-- pgtrail schema version 16: application events written through the WAL. audit.log_event wrote
-- every event into audit.pending, a row on the application's path that the sealer then chained
-- and deleted: where pgtrail stream reads the database's WAL, an application's event (class app:
-- LOGIN, FAILED_LOGIN, VIEW_PII, ...) is now a transactional logical message instead, signed like
-- the context messages of mode wal (version 6) and chained by the stream with the transaction's
-- changes, in its place among them — and not at all if the transaction rolls back, as before.
-- So is a DDL event (the event trigger's, through audit.log_event): chained in WAL order with the
-- changes the DDL governs. audit.log_event keeps its signature, its checks and its return value.
-- pgtrail's other own events (written by pgtrail's commands and the stream itself),
-- details no message reader could take (nested 256 levels deep) or that audit.pending refuses
-- (pgtrail's own keys), and databases no stream reads, go through audit.pending as before.
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

SELECT audit.require_superuser();

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

-- Whether the stream reading a slot takes application events from the WAL: a stream of this
-- version says so when it registers its slot. One of an earlier version skips their messages,
-- and acknowledges them: an upgrade of the schema while it runs would have lost every event
-- (found by red-teaming). Its events go through audit.pending until it is upgraded too.
ALTER TABLE audit.stream_slots ADD COLUMN reads_events boolean NOT NULL DEFAULT false;

-- Whether a slot of pgtrail stream reads this database's WAL (registered by the stream in
-- audit.stream_slots and created through: another tool's slot, or one still being created,
-- decodes nothing for the trail; nor does one invalidated for retaining too much WAL). A message
-- no such slot reads would be lost. events: for transactional event messages, which only a
-- stream that says it reads them may be given.
CREATE FUNCTION audit.streamed(events boolean) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN current_setting('wal_level') = 'logical' AND EXISTS (
  SELECT FROM audit.stream_slots t JOIN pg_replication_slots s ON s.slot_name = t.slot
   WHERE s.database = current_database() AND s.plugin = 'pgoutput' AND NOT s.temporary
     AND s.confirmed_flush_lsn IS NOT NULL AND s.restart_lsn IS NOT NULL
     AND s.wal_status IS DISTINCT FROM 'lost' AND (t.reads_events OR NOT $1));
ALTER FUNCTION audit.streamed(boolean) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.streamed(boolean) FROM PUBLIC;

-- The message of an application event: "<json>\n<hex MAC>", the event and the caller's session
-- context, authenticated with the key only pgtrail_sealer reads (the stream's decodeAutonomous).
-- autonomous says which writer signed it: the stream takes a transactional writer's message
-- only in its own transaction, so one copied out of the WAL and emitted again outside any
-- transaction must not pass for an autonomous event. No details key for SQL NULL details, so
-- that details of JSON null stay so. (No jsonb_strip_nulls: it would strip the NULLs inside
-- details too.)
CREATE FUNCTION audit.event_message(id uuid, action_type text, resource_type text, resource_id text, outcome text, details jsonb,
                                    autonomous boolean)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT m.v || E'\n' || encode(sha256(k.key || sha256(k.key || convert_to(m.v, 'UTF8'))), 'hex')
    FROM (SELECT (jsonb_build_object('event_id', $1, 'occurred_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                                     'action_type', $2, 'resource_type', $3, 'resource_id', $4, 'outcome', $5, 'autonomous', $7)
                  || CASE WHEN $6 IS NULL THEN '{}' ELSE jsonb_build_object('details', $6) END
                  || audit.session_context()::jsonb)::text AS v) m, audit.context_key k
$$;
ALTER FUNCTION audit.event_message(uuid, text, text, text, text, jsonb, boolean) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.event_message(uuid, text, text, text, text, jsonb, boolean) FROM PUBLIC;

-- Details the stream can append: it writes entries with COPY's text format, which doubles each
-- backslash of their JSON text, and a row of COPY is at most 1 GB (found by red-teaming: 268 MB
-- of backslashes in one log_event stopped the stream for good). Larger details go through
-- audit.pending (the sealer appends them with INSERT ... SELECT); an autonomous event refuses them.
CREATE FUNCTION audit.message_sized(details jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
RETURN $1 IS NULL OR octet_length($1::text) < 128 * 1024 * 1024;

-- Version 8's writer, called for what does not go through the WAL; and version 15's autonomous
-- writer, kept so that reverting this version renames them back.
ALTER FUNCTION audit.insert_event(text, text, text, text, jsonb) RENAME TO insert_event_v8;
ALTER FUNCTION audit.log_event_autonomous(text, text, text, text, jsonb) RENAME TO log_event_autonomous_v15;
REVOKE ALL ON FUNCTION audit.log_event_autonomous_v15(text, text, text, text, jsonb) FROM PUBLIC;

-- Called by the class writers of version 8 (which check who may write the class) with the
-- arguments audit.log_event checked. A signed message is as good as a call of a class writer:
-- only this function (and log_event_autonomous, app class only) signs.
CREATE FUNCTION audit.insert_event(action_type text, resource_type text, resource_id text, outcome text, details jsonb)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  id uuid;
BEGIN
  IF (audit.event_class($1, $2) = 'app' OR $1 = 'DDL') AND audit.streamed(true)
     AND NOT COALESCE(jsonb_typeof($5) = 'object' AND ($5 ? 'capture_warning' OR $5 ? 'excluded_columns_changed'), false)
     AND NOT COALESCE(jsonb_path_exists($5, 'lax $.**{256}'), false) AND audit.message_sized($5) THEN
    id := gen_random_uuid();
    PERFORM pg_logical_emit_message(true, 'pgtrail.event', audit.event_message(id, $1, $2, $3, $4, $5, false));
    RETURN id;
  END IF;
  RETURN audit.insert_event_v8($1, $2, $3, $4, $5);
END $$;
ALTER FUNCTION audit.insert_event(text, text, text, text, jsonb) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.insert_event(text, text, text, text, jsonb) FROM PUBLIC;

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
      THEN 'details nest deeper than 256 levels'
    WHEN NOT audit.message_sized($5) THEN 'details are 128 MB or more as JSON text' END;
  id uuid := gen_random_uuid();
BEGIN
  IF problem IS NOT NULL THEN
    RAISE EXCEPTION 'audit.log_event_autonomous: %', problem USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF audit.event_class($1, $2) <> 'app' THEN
    RAISE EXCEPTION 'audit.log_event_autonomous: % is one of pgtrail''s own event types (class %), which are never written autonomously', $1, audit.event_class($1, $2)
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Name the application''s events otherwise (e.g. USER_DELETED rather than DELETE).';
  END IF;
  IF NOT audit.streamed(false) THEN
    RAISE EXCEPTION 'audit.log_event_autonomous: no logical replication slot of pgtrail stream reads this database''s WAL, so the event would be lost'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Run pgtrail stream (or pgtrail seal --once) once, or use audit.log_event (transactional).';
  END IF;
  PERFORM pg_logical_emit_message(false, 'pgtrail.event', audit.event_message(id, $1, $2, $3, $4, $5, true));
  RETURN id;
END $$;
ALTER FUNCTION audit.log_event_autonomous(text, text, text, text, jsonb) OWNER TO pgtrail_sealer;
GRANT EXECUTE ON FUNCTION audit.log_event_autonomous(text, text, text, text, jsonb) TO PUBLIC;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
