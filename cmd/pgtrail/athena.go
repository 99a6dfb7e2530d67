package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pgtrail/pgtrail/internal/archive"
)

func runAthena(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "athena", "athena ddl s3://bucket/prefix [--database pgtrail] [--table audit_events] [--tenants a,b]")
	database := fs.String("database", "pgtrail", "Athena database (Glue catalog) of the table")
	table := fs.String("table", "audit_events", "table name")
	tenants := fs.String("tenants", "", "comma-separated tenant_ids: makes the tenant partition an enum so queries may span tenants (default: injected, every query names its tenants)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || pos[0] != "ddl" {
		return fs.usageError(errors.New("expected: athena ddl s3://bucket/prefix"))
	}
	t := archive.AthenaTable{URL: pos[1], Database: *database, Table: *table}
	if *tenants != "" {
		t.Tenants = strings.Split(*tenants, ",")
	}
	ddl, err := archive.AthenaDDL(t)
	if err != nil {
		return notRun(err)
	}
	fmt.Fprint(e.stdout, ddl)
	return nil
}
