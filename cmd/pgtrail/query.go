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
func findQueryBinary(e *env) (string, error) {
	if p := e.getenv(envQueryBinary); p != "" {
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), queryBinary)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(queryBinary); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("pgtrail query runs DuckDB in a companion binary, %s, which is neither next to pgtrail nor on PATH (build it with cgo: go build -o %s ./cmd/pgtrail-query; or set %s)",
		queryBinary, queryBinary, envQueryBinary)
}

func runQuery(ctx context.Context, e *env, args []string) error {
	bin, err := findQueryBinary(e)
	if err != nil {
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
