-- The obvious hash chain: each audited row locks the single chain-head row, hashes the previous
-- hash with the row, appends, and moves the head. The lock is held until commit.
CREATE SCHEMA audit_naive;

CREATE TABLE audit_naive.head (
  one  boolean PRIMARY KEY DEFAULT true CHECK (one),
  seq  bigint NOT NULL,
  hash bytea NOT NULL
);
INSERT INTO audit_naive.head VALUES (true, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_naive.chain (
  seq          bigint PRIMARY KEY,
  ts           timestamptz NOT NULL DEFAULT clock_timestamp(),
  txid         bigint NOT NULL DEFAULT txid_current(),
  op           text NOT NULL,
  table_schema name NOT NULL,
  table_name   name NOT NULL,
  actor        text NOT NULL,
  old_record   jsonb,
  record       jsonb,
  prev_hash    bytea NOT NULL,
  entry_hash   bytea NOT NULL
);

CREATE FUNCTION audit_naive.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s bigint;
  h bytea;
  o jsonb;
  n jsonb;
  a text := COALESCE(current_setting('pgtrail.actor_id', true), session_user);
  nh bytea;
BEGIN
  SELECT head.seq, head.hash INTO s, h FROM audit_naive.head FOR UPDATE;
  IF TG_OP <> 'INSERT' THEN o := to_jsonb(OLD); END IF;
  IF TG_OP <> 'DELETE' THEN n := to_jsonb(NEW); END IF;
  nh := sha256(h || convert_to(concat_ws(E'\x1f', s + 1, TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, a, o::text, n::text), 'UTF8'));
  INSERT INTO audit_naive.chain (seq, op, table_schema, table_name, actor, old_record, record, prev_hash, entry_hash)
  VALUES (s + 1, TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, a, o, n, h, nh);
  UPDATE audit_naive.head SET seq = s + 1, hash = nh;
  RETURN NULL;
END $$;

CREATE TRIGGER audit_naive AFTER INSERT OR UPDATE OR DELETE ON public.accounts
  FOR EACH ROW EXECUTE FUNCTION audit_naive.capture();
CREATE TRIGGER audit_naive AFTER INSERT OR UPDATE OR DELETE ON public.payments
  FOR EACH ROW EXECUTE FUNCTION audit_naive.capture();
