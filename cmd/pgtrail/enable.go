package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

func runEnable(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "enable", "enable TABLE [--exclude-columns a,b]")
	var db dbFlags
	db.register(fs)
	exclude := fs.String("exclude-columns", "", "comma-separated columns never written to the trail (e.g. password hashes); a change to them is still recorded, without values")
	pii := fs.String("pii-columns", "", "comma-separated columns masked for pgtrail_reader (e.g. email,phone); pgtrail_auditor sees them")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return notRun(fmt.Errorf("expected exactly one table name"))
	}
	cols, piiCols := splitList(*exclude), splitList(*pii)
	conn, err := db.connect(ctx, e)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	// The name goes to PostgreSQL as a parameter and is resolved by regclass: no quoting here.
	// With PII columns, the three-argument audit.enable sets both in one transaction.
	q := "SELECT audit.enable($1::text::regclass, $2::text[]), audit.table_name($1::text::regclass)"
	args2 := []any{pos[0], cols}
	if len(piiCols) > 0 {
		q = "SELECT audit.enable($1::text::regclass, $2::text[], $3::text[]), audit.table_name($1::text::regclass)"
		args2 = append(args2, piiCols)
	}
	var name string
	if err := conn.QueryRow(ctx, q, args2...).Scan(nil, &name); err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"table": name, "enabled": true, "exclude_columns": cols, "pii_columns": piiCols})
	}
	fmt.Fprintf(e.stdout, "auditing %s", name)
	if len(cols) > 0 {
		fmt.Fprintf(e.stdout, " (excluding %s)", strings.Join(cols, ", "))
	}
	if len(piiCols) > 0 {
		fmt.Fprintf(e.stdout, " (masking %s for readers)", strings.Join(piiCols, ", "))
	}
	fmt.Fprintln(e.stdout)
	return nil
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
		fs.Usage()
		return notRun(fmt.Errorf("expected exactly one table name"))
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
