-- A plain, unchained row-trigger audit in the style of supa_audit and audit-trigger: the row
-- before and after as JSON, the actor, the transaction id, into one table with a serial key.
CREATE SCHEMA audit_plain;

CREATE TABLE audit_plain.record_version (
  id           bigserial PRIMARY KEY,
  ts           timestamptz NOT NULL DEFAULT clock_timestamp(),
  txid         bigint NOT NULL DEFAULT txid_current(),
  op           text NOT NULL,
  table_schema name NOT NULL,
  table_name   name NOT NULL,
  actor        text NOT NULL,
  old_record   jsonb,
  record       jsonb
);

CREATE FUNCTION audit_plain.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO audit_plain.record_version (op, table_schema, table_name, actor, old_record, record)
  VALUES (TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME,
          COALESCE(current_setting('pgtrail.actor_id', true), session_user),
          CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
          CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
  RETURN NULL;
END $$;

CREATE TRIGGER audit_plain AFTER INSERT OR UPDATE OR DELETE ON public.accounts
  FOR EACH ROW EXECUTE FUNCTION audit_plain.capture();
CREATE TRIGGER audit_plain AFTER INSERT OR UPDATE OR DELETE ON public.payments
  FOR EACH ROW EXECUTE FUNCTION audit_plain.capture();
