-- pgtrail schema version 8: pgtrail's own event types are reserved. audit.log_event is open to
-- every role for the application's events (LOGIN, FAILED_LOGIN, EXPORT of its data, VIEW_PII…),
-- and it wrote whatever type it was given: any role could forge a VERIFY carrying a checkpoint
-- (which blinded every later incremental verification), a TAMPERING, CAPTURE_GAP or ALERT, a
-- DDL or UPDATE that looks captured, an AUDIT_* configuration change.
--
-- Each reserved type belongs to a class, and each class has a SECURITY DEFINER writer whose
-- EXECUTE privilege says who may write it:
--   pgtrail  TAMPERING, CAPTURE_GAP, ALERT, DDL, CREATE, UPDATE, DELETE, TRUNCATE:
--            pgtrail_sealer (the stream's role, and pgtrail's own functions, which it owns)
--   config   AUDIT_*, PRUNE: pgtrail_owner (its members configure and prune)
--   verify   VERIFY: pgtrail_auditor, pgtrail_owner (who run pgtrail verify)
--   export   EXPORT of audit.*: the trail's readers (pgtrail export)
--   app      everything else: PUBLIC
-- audit.log_event keeps its signature and result; it runs with the caller's rights, so the
-- privilege checked is that of the role acting: inside pgtrail's SECURITY DEFINER functions
-- (DDL capture, enable, disable) that is their owner, not the session's user. A setting is never
-- asked: any session could set it.
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

SELECT audit.require_superuser();

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

-- Version 4's audit.log_event, kept so that reverting this version renames it back. Not called.
ALTER FUNCTION audit.log_event(text, text, text, text, jsonb) RENAME TO log_event_v4;
REVOKE ALL ON FUNCTION audit.log_event_v4(text, text, text, text, jsonb) FROM PUBLIC;

-- The class of an event type (see above).
CREATE FUNCTION audit.event_class(action_type text, resource_type text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
RETURN CASE
  WHEN action_type IN ('TAMPERING', 'CAPTURE_GAP', 'ALERT', 'DDL', 'CREATE', 'UPDATE', 'DELETE', 'TRUNCATE') THEN 'pgtrail'
  WHEN action_type LIKE 'AUDIT\_%' OR action_type = 'PRUNE' THEN 'config'
  WHEN action_type = 'VERIFY' THEN 'verify'
  WHEN action_type = 'EXPORT' AND resource_type LIKE 'audit.%' THEN 'export'
  ELSE 'app' END;

-- Appends an event to audit.pending with the session's pgtrail.* context. Called only by the
-- class writers below (it checks nothing about who calls).
CREATE FUNCTION audit.insert_event(action_type text, resource_type text, resource_id text, outcome text, details jsonb)
RETURNS uuid
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  INSERT INTO audit.pending AS p (event_id, action_type, resource_type, resource_id, outcome, actor_id, actor_ip,
                                  user_agent, request_id, tenant_id, application_name, details)
  SELECT gen_random_uuid(), $1, $2, $3, $4, s[1], s[2], s[3], s[4], s[5], current_setting('application_name'), $5
    FROM (SELECT ARRAY[current_setting('pgtrail.actor_id', true), current_setting('pgtrail.actor_ip', true),
                       current_setting('pgtrail.user_agent', true), current_setting('pgtrail.request_id', true),
                       current_setting('pgtrail.tenant_id', true)] AS s) ctx
  RETURNING p.event_id
$$;

-- One writer per class, alike but for the class they accept and who may call them.
DO $do$
DECLARE c record;
BEGIN
  FOR c IN SELECT * FROM (VALUES ('app', 'PUBLIC'), ('pgtrail', NULL), ('config', 'pgtrail_owner'),
                                 ('verify', 'pgtrail_auditor, pgtrail_owner'),
                                 ('export', 'pgtrail_reader, pgtrail_tenant_reader, pgtrail_auditor, pgtrail_owner')) AS v(cls, grantees) LOOP
    EXECUTE format($f$
      CREATE FUNCTION audit.%1$I(action_type text, resource_type text, resource_id text, outcome text, details jsonb)
      RETURNS uuid
      LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $b$
      BEGIN
        IF audit.event_class(action_type, resource_type) IS DISTINCT FROM %2$L THEN
          RAISE EXCEPTION 'audit.%1$s: %% is not an event of class %2$s', action_type USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN audit.insert_event(action_type, resource_type, resource_id, outcome, details);
      END $b$$f$, 'log_' || c.cls || '_event', c.cls);
    EXECUTE format('ALTER FUNCTION audit.%I(text, text, text, text, jsonb) OWNER TO pgtrail_sealer', 'log_' || c.cls || '_event');
    EXECUTE format('REVOKE ALL ON FUNCTION audit.%I(text, text, text, text, jsonb) FROM PUBLIC', 'log_' || c.cls || '_event');
    IF c.grantees IS NOT NULL THEN
      EXECUTE format('GRANT EXECUTE ON FUNCTION audit.%I(text, text, text, text, jsonb) TO %s', 'log_' || c.cls || '_event', c.grantees);
    END IF;
  END LOOP;
END $do$;

-- Records an event that is not table DML (LOGIN, FAILED_LOGIN, EXPORT, VIEW_PII, ROLE_GRANT, ...)
-- in the caller's transaction, with the caller's pgtrail.* context. Returns its event_id.
-- SECURITY INVOKER: whether the caller may write the type is its class writer's EXECUTE
-- privilege, checked for the role acting.
CREATE FUNCTION audit.log_event(action_type text, resource_type text, resource_id text,
                                outcome text DEFAULT 'SUCCESS', details jsonb DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  problem text := CASE
    WHEN $1 IS NULL OR $1 !~ '^[A-Z][A-Z0-9_]{0,62}$'
      THEN format('action_type must be an upper-case word like LOGIN or VIEW_PII, got %s', COALESCE(quote_literal($1), 'NULL'))
    WHEN $4 IS NULL OR $4 NOT IN ('SUCCESS', 'FAILURE', 'UNAUTHORIZED')
      THEN format('outcome must be SUCCESS, FAILURE or UNAUTHORIZED, got %s', COALESCE(quote_literal($4), 'NULL'))
    WHEN $2 IS NULL OR $2 = '' THEN 'resource_type must not be empty' END;
  writer text := format('audit.log_%s_event(text, text, text, text, jsonb)', audit.event_class($1, $2));
  id uuid;
BEGIN
  IF problem IS NOT NULL THEN
    RAISE EXCEPTION 'audit.log_event: %', problem USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF NOT has_function_privilege(current_user, writer, 'EXECUTE') THEN
    RAISE EXCEPTION 'audit.log_event: % is one of pgtrail''s own event types (class %), which % may not write', $1, audit.event_class($1, $2), current_user
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Name the application''s events otherwise (e.g. USER_DELETED rather than DELETE).';
  END IF;
  EXECUTE format('SELECT %s($1, $2, $3, $4, $5)', split_part(writer, '(', 1)) INTO id USING $1, $2, $3, $4, $5;
  RETURN id;
END $$;
ALTER FUNCTION audit.log_event(text, text, text, text, jsonb) OWNER TO pgtrail_sealer;
GRANT EXECUTE ON FUNCTION audit.log_event(text, text, text, text, jsonb) TO PUBLIC;
ALTER FUNCTION audit.event_class(text, text) OWNER TO pgtrail_sealer;
GRANT EXECUTE ON FUNCTION audit.event_class(text, text) TO PUBLIC;
ALTER FUNCTION audit.insert_event(text, text, text, text, jsonb) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.insert_event(text, text, text, text, jsonb) FROM PUBLIC;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
