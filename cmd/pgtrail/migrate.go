package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/pgtrail/pgtrail/internal/pgschema"
)

func runMigrate(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "migrate", "migrate up|down|version|to VERSION [flags]\n\n"+
		"up: install or upgrade to the newest schema; down: remove it (refused while it holds audit data\n"+
		"unless --force-destroy-audit-data); to VERSION: upgrade or downgrade to that schema version;\n"+
		"version: print the installed version")
	var db dbFlags
	db.register(fs)
	force := fs.Bool("force-destroy-audit-data", false, "let 'down' drop the audit schema even though it holds audit data")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	var target uint64
	switch {
	case len(pos) == 2 && pos[0] == "to":
		target, err = strconv.ParseUint(pos[1], 10, 32)
		if err != nil || target < 1 || target > uint64(pgschema.LatestVersion()) {
			return notRun(fmt.Errorf("migrate to: %q is not a schema version: this pgtrail knows versions 1 to %d (use 'down' to remove the schema)",
				pos[1], pgschema.LatestVersion()))
		}
	case len(pos) == 1 && (pos[0] == "up" || pos[0] == "down" || pos[0] == "version"):
	default:
		return fs.usageError(fmt.Errorf("expected one of up, down, version, to VERSION"))
	}
	cfg, err := db.config(e)
	if err != nil {
		return err
	}
	m, err := pgschema.NewMigrator(ctx, cfg, *force)
	if err != nil {
		return notRun(err)
	}
	defer m.Close()

	switch pos[0] {
	case "up":
		err = m.Up(ctx)
	case "down":
		err = m.Down(ctx)
	case "to":
		err = m.To(ctx, uint(target))
	}
	if err != nil {
		return err
	}
	v, dirty, err := m.Version()
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"version": v, "dirty": dirty})
	}
	switch {
	case dirty:
		fmt.Fprintf(e.stdout, "schema version %d (dirty: a migration failed half-way)\n", v)
	case v == 0:
		fmt.Fprintln(e.stdout, "schema version 0 (pgtrail is not installed)")
	default:
		fmt.Fprintf(e.stdout, "schema version %d\n", v)
	}
	return nil
}
