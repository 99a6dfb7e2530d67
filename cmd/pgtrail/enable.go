package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtrail/pgtrail/internal/cdc"
)

func runEnable(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "enable", `enable TABLE [--mode wal|trigger] [--exclude-columns a,b] [--pii-columns c,d]

Capture modes:
  wal      the write-ahead log witnesses every change: no trigger on the table's rows, so a change
           made with triggers disabled (even by a superuser) still reaches the trail, flagged.
           The table gets REPLICA IDENTITY FULL; pgtrail stream chains its changes. Needs
           wal_level = logical and the replication slot, which enable creates (REPLICATION or
           superuser). Before PostgreSQL 17 a logical slot does not survive a failover.
  trigger  a row trigger writes each change to audit.pending in the writer's transaction: survives
           a failover to a physical standby; the sealer (stream or seal) chains it. The table
           gets REPLICA IDENTITY FULL too: pgtrail stream sees its changes in the WAL and records
           any that no trigger captured (triggers turned off) as a CAPTURE_GAP entry.`)
	var db dbFlags
	db.register(fs)
	exclude := fs.String("exclude-columns", "", "comma-separated columns never written to the trail (e.g. password hashes); a change to them is still recorded, without values")
	pii := fs.String("pii-columns", "", "comma-separated columns masked for pgtrail_reader (e.g. email,phone); pgtrail_auditor sees them")
	mode := fs.String("mode", "", "capture mode: wal or trigger (default: the table's mode when already audited, else wal)")
	slot := fs.String("slot", cdc.DefaultSlot, "with mode wal: the replication slot pgtrail stream reads, created when missing")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fs.usageError(fmt.Errorf("expected exactly one table name"))
	}
	if *mode != "" && *mode != "wal" && *mode != "trigger" {
		return notRun(fmt.Errorf("--mode must be wal or trigger, not %q", *mode))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	cols, piiCols := splitList(*exclude), splitList(*pii)
	// PostgreSQL's warnings about the table (no key to name its rows by) reach the user.
	var warnings []string
	conn, err := db.connect(ctx, e, func(c *pgx.ConnConfig) {
		c.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			if n.Severity == "WARNING" {
				warnings = append(warnings, n.Message)
			}
		}
	})
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	// Enabling a table again keeps what is not given: resetting its excluded columns would put
	// the values they keep out (password hashes) into the immutable trail at the next update.
	var current struct {
		audited        bool
		mode           string
		exclude, piiAt []string
	}
	err = conn.QueryRow(ctx, `SELECT a.relid IS NOT NULL, COALESCE(a.mode, 'wal'), COALESCE(a.exclude_columns, '{}'),
	                                 COALESCE((SELECT p.columns FROM audit.pii_columns p WHERE p.relid = t.relid), '{}')
	                            FROM (SELECT $1::text::regclass::oid AS relid) t LEFT JOIN audit.audited_tables a ON a.relid = t.relid`,
		pos[0]).Scan(&current.audited, &current.mode, &current.exclude, &current.piiAt)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	var kept []string
	if *mode == "" {
		*mode = current.mode
		if current.audited {
			kept = append(kept, "mode "+*mode)
		}
	}
	if !given["exclude-columns"] {
		cols = current.exclude
		if current.audited && len(cols) > 0 {
			kept = append(kept, "excluding "+strings.Join(cols, ", "))
		}
	}
	if !given["pii-columns"] && current.audited && len(current.piiAt) > 0 {
		kept = append(kept, "masking "+strings.Join(current.piiAt, ", "))
	}
	created := false
	if *mode == "wal" {
		if created, err = ensureSlot(ctx, conn, *slot); err != nil {
			return err
		}
	}
	// The name goes to PostgreSQL as a parameter and is resolved by regclass: no quoting here.
	// PII columns NULL: left as they are.
	var piiArg any
	if given["pii-columns"] {
		piiArg = piiCols
	}
	var name, identity string
	err = conn.QueryRow(ctx, `SELECT audit.enable($1::text::regclass, $2::text[], $3::text[], $4), audit.table_name($1::text::regclass)`,
		pos[0], cols, piiArg, *mode).Scan(nil, &name)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	// Read after the change: a statement sees the catalog as it was when it started.
	err = conn.QueryRow(ctx, `SELECT CASE relreplident WHEN 'f' THEN 'full' WHEN 'd' THEN 'default' WHEN 'n' THEN 'nothing' ELSE 'index' END
	                            FROM pg_class WHERE oid = $1::text::regclass`, pos[0]).Scan(&identity)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"table": name, "enabled": true, "mode": *mode, "replica_identity": identity,
			"slot_created": created, "exclude_columns": cols, "pii_columns": piiCols, "kept": kept, "warnings": warnings})
	}
	for _, w := range warnings {
		fmt.Fprintf(e.stderr, "pgtrail enable: warning: %s\n", w)
	}
	if created {
		fmt.Fprintf(e.stdout, "created replication slot %s: pgtrail stream (or seal --once) chains the changes it keeps\n", *slot)
	}
	fmt.Fprintf(e.stdout, "auditing %s in mode %s", name, *mode)
	if identity == "full" { // both modes: the stream reads (mode wal) or witnesses (trigger) the WAL
		fmt.Fprintf(e.stdout, " (replica identity %s: the WAL logs whole old rows)", identity)
	}
	if len(cols) > 0 {
		fmt.Fprintf(e.stdout, ", excluding %s", strings.Join(cols, ", "))
	}
	if len(piiCols) > 0 {
		fmt.Fprintf(e.stdout, ", masking %s for readers", strings.Join(piiCols, ", "))
	}
	fmt.Fprintln(e.stdout)
	if len(kept) > 0 {
		fmt.Fprintf(e.stdout, "already audited; kept: %s (give --mode, --exclude-columns or --pii-columns to change; an empty list clears)\n", strings.Join(kept, ", "))
	}
	return nil
}

// ensureSlot creates the logical replication slot WAL capture needs unless the database has it,
// and reports whether it did. It must exist before a table's first change in mode wal, or the
// change never reaches the trail.
func ensureSlot(ctx context.Context, conn *pgx.Conn, slot string) (bool, error) {
	var db string
	err := conn.QueryRow(ctx, `SELECT database FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&db)
	if err == nil {
		if db != conn.Config().Database {
			return false, notRun(fmt.Errorf("replication slot %s belongs to database %s: choose another --slot", slot, db))
		}
		return false, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("check slot %s: %w", slot, err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
		return false, fmt.Errorf("create replication slot %s (needs the REPLICATION attribute or a superuser; or use --mode trigger): %w", slot, err)
	}
	return true, nil
}

func runDisable(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "disable", "disable TABLE")
	var db dbFlags
	db.register(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fs.usageError(fmt.Errorf("expected exactly one table name"))
	}
	conn, err := db.connect(ctx, e)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var name string
	if err := conn.QueryRow(ctx, "SELECT audit.disable($1::text::regclass), audit.table_name($1::text::regclass)", pos[0]).Scan(nil, &name); err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"table": name, "enabled": false})
	}
	fmt.Fprintf(e.stdout, "stopped auditing %s\n", name)
	return nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(v string) []string {
	out := []string{}
	for _, c := range strings.Split(v, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}
