-- pgtrail schema version 11: a table without a primary key is keyed by a unique index on NOT NULL
-- columns when it has one, and enabling one that has neither says so. Such a table was enabled
-- silently and every entry of it had an empty resource_id.
-- Must run as a superuser. No BEGIN/COMMIT (one implicit transaction).

SELECT audit.require_superuser();

ALTER EVENT TRIGGER pgtrail_ddl DISABLE;
ALTER EVENT TRIGGER pgtrail_drop DISABLE;

-- The columns that identify a row of target: its primary key, else the unique index on NOT NULL
-- columns (not partial, no expressions, not deferrable) with the fewest columns, the first by
-- name among equals; empty when it has neither. (What PostgreSQL would accept as a replica
-- identity index.)
CREATE FUNCTION audit.row_key(target regclass) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT COALESCE((
    SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, o)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE k.o <= i.indnkeyatts ORDER BY k.o)
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
     WHERE i.indrelid = target AND i.indisunique AND i.indimmediate AND i.indisvalid
       AND i.indpred IS NULL AND i.indexprs IS NULL
       AND NOT EXISTS (SELECT FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, o)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                        WHERE k.o <= i.indnkeyatts AND NOT a.attnotnull)
     ORDER BY i.indisprimary DESC, i.indnkeyatts, ic.relname
     LIMIT 1), '{}')
$$;

-- Version 6's four-argument audit.enable, kept as enable_v6 and called; then, when the table has
-- no primary key, it is registered (and in mode trigger captured) with the key above, or a
-- WARNING says its entries will carry no resource_id.
ALTER FUNCTION audit.enable(regclass, text[], text[], text) RENAME TO enable_v6;
CREATE FUNCTION audit.enable(target regclass, exclude_columns text[], pii_columns text[], mode text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  key text[];
BEGIN
  PERFORM audit.enable_v6(target, exclude_columns, pii_columns, mode);
  IF (SELECT cardinality(a.pk_columns) FROM audit.audited_tables a WHERE a.relid = target) > 0 THEN
    RETURN;
  END IF;
  key := audit.row_key(target);
  IF cardinality(key) = 0 THEN
    RAISE WARNING 'audit.enable: % has no primary key and no unique index on NOT NULL columns: its entries carry no resource_id (add a primary key, then enable it again)', target;
    RETURN;
  END IF;
  PERFORM audit.register_table(target, key, COALESCE(exclude_columns, '{}'), mode);
  IF mode = 'trigger' THEN
    PERFORM audit.install_capture(target, key, COALESCE(exclude_columns, '{}'));
  END IF;
END $$;

ALTER FUNCTION audit.row_key(regclass) OWNER TO pgtrail_sealer;
ALTER FUNCTION audit.enable(regclass, text[], text[], text) OWNER TO pgtrail_sealer;
REVOKE ALL ON FUNCTION audit.row_key(regclass), audit.enable(regclass, text[], text[], text),
  audit.enable_v6(regclass, text[], text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.row_key(regclass), audit.enable(regclass, text[], text[], text) TO pgtrail_owner;

ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER pgtrail_drop ENABLE ALWAYS;
