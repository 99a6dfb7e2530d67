package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// queryBinary is the companion binary that runs `pgtrail query`: DuckDB needs cgo and adds about
// 70 MB, which the daemon binary should not carry (docs/investigations.md).
const queryBinary = "pgtrail-query"

// envQueryBinary overrides where the companion binary is looked for.
const envQueryBinary = "PGTRAIL_QUERY_BIN"

// findQueryBinary looks for pgtrail-query: $PGTRAIL_QUERY_BIN, next to this executable, on PATH.
// When it is nowhere, the error says in one line what to build and where to put it.
func findQueryBinary(e *env) (string, error) {
	if p := e.getenv(envQueryBinary); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			return "", fmt.Errorf("%s=%s: no such executable (unset it to look next to pgtrail and on PATH)", envQueryBinary, p)
		}
		return p, nil
	}
	dir := "the directory of pgtrail"
	if self, err := os.Executable(); err == nil {
		dir = filepath.Dir(self)
		p := filepath.Join(dir, queryBinary)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(queryBinary); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("the query engine (DuckDB, which needs cgo) is a separate binary, %s, found neither in %s nor on PATH: "+
		"build it from the pgtrail source with CGO_ENABLED=1 go build -o %s ./cmd/pgtrail-query (a C compiler is needed; make build builds both), or set %s",
		queryBinary, dir, filepath.Join(dir, queryBinary), envQueryBinary)
}

// queryHelp is pgtrail query's help when pgtrail-query is not there to give its own.
const queryHelp = `Usage: pgtrail query ARCHIVE_URL "SQL" [--tenant T] [--since TIME] [--until TIME] [--csv|--json]

SQL over the archive's Parquet files with DuckDB: the table events (also audit_events), with
Athena's columns. Read-only: one SELECT (WITH, DESCRIBE, SUMMARIZE too).
The engine is a separate binary, pgtrail-query: %s.

Examples:
  pgtrail query file:///var/lib/pgtrail/archive "SELECT actor_id, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC"
  pgtrail query s3://audit-bucket/app --tenant acme --since 30d "SELECT * FROM events WHERE action_type = 'DELETE'"
`

func runQuery(ctx context.Context, e *env, args []string) error {
	bin, err := findQueryBinary(e)
	if e.parseOnly {
		// Its flags are pgtrail-query's; nothing to run here.
		return errParsedOnly
	}
	if err != nil {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprintf(e.stdout, queryHelp, oneLine(err))
			return nil
		}
		return notRun(err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = os.Stdin
	cmd.Stdout, cmd.Stderr = e.stdout, e.stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		// pgtrail-query printed its own error and uses pgtrail's exit codes.
		return &exitError{code: exit.ExitCode()}
	}
	return notRun(fmt.Errorf("run %s: %w", bin, err))
}
