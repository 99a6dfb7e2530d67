// Command pgtrail installs, runs and verifies pgtrail's tamper-evident audit trail.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
)

// Exit codes scripts rely on.
const (
	exitOK     = 0 // done; for verify: the chain is intact
	exitFailed = 1 // the command ran and failed or refused; for verify: tampering or a gap found
	exitNotRun = 2 // could not run: bad usage, cannot connect, no permission; for verify: could not check
)

// command is one subcommand: its one-line summary and how to run it.
type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

var commands = map[string]command{
	"migrate":    {"apply or revert the audit schema: migrate up|down|version", runMigrate},
	"enable":     {"capture INSERT/UPDATE/DELETE on a table: enable TABLE [--exclude-columns a,b]", runEnable},
	"disable":    {"stop capturing a table: disable TABLE", runDisable},
	"status":     {"show audited tables, chain head, pending entries and partitions", runStatus},
	"seal":       {"chain committed entries into audit.events (loop, or --once)", runSeal},
	"stream":     {"archive the trail over logical replication as Parquet (file:// or Object-Locked s3://)", runStream},
	"verify":     {"verify the trail: verify db | archive URL --public-key KEY | all URL --public-key KEY (--since-checkpoint)", runVerify},
	"version":    {"print the pgtrail version", runVersion},
	"keygen":     {"create an ed25519 key pair for signing archive digests: keygen --out PATH", runKeygen},
	"archive":    {"prepare an archive: archive init s3://bucket/prefix (Object Lock, retention, Glacier lifecycle) or file:///dir", runArchive},
	"athena":     {"print Athena DDL for the archive: athena ddl s3://bucket/prefix", runAthena},
	"search":     {"search the trail (database, or --archive): --actor --resource TYPE[:ID] --action --outcome --tenant --since --until", runSearch},
	"query":      {"SQL over the Parquet archive with DuckDB: query ARCHIVE_URL \"SQL\" (runs pgtrail-query)", runQuery},
	"export":     {"write a CSV/Parquet report for a filter, recorded as an EXPORT event: export --out PATH", runExport},
	"partitions": {"list partitions, or prune old ones once archived and verified: partitions list|prune", runPartitions},
}

// env is what a subcommand may touch of the outside world.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// PGTRAIL_CPUPROFILE=file writes a CPU profile of the command (go tool pprof): where the
	// stream's time goes under a benchmark's load.
	if path := os.Getenv("PGTRAIL_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f) // written out by StopCPUProfile before the exit
		}
	}
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	stop()
	pprof.StopCPUProfile()
	os.Exit(code)
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout)
		if len(args) == 0 {
			return exitNotRun
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "pgtrail: unknown command %q (see pgtrail help)\n", args[0])
		return exitNotRun
	}
	err := cmd.run(ctx, e, args[1:])
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var ex *exitError
	if errors.As(err, &ex) {
		if ex.err != nil {
			fmt.Fprintf(e.stderr, "pgtrail %s: %s\n", args[0], oneLine(ex.err))
		}
		return ex.code
	}
	fmt.Fprintf(e.stderr, "pgtrail %s: %s\n", args[0], oneLine(err))
	return exitFailed
}

func usage(w io.Writer) {
	fmt.Fprint(w, `pgtrail: a tamper-evident audit trail for PostgreSQL.

Usage: pgtrail COMMAND [flags] [args]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, `
The database comes from --database-url, else DATABASE_URL, else the libpq PG* variables.
Exit codes: 0 done (verify: intact), 1 failed or refused (verify: tampering found),
2 could not run (usage, connection, permission; verify: could not check).
Run "pgtrail COMMAND --help" for a command's flags.
`)
}

// exitError carries an exit code other than exitFailed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return fmt.Sprint(e.err) }
func (e *exitError) Unwrap() error { return e.err }

// notRun marks err as "could not run" (exit 2).
func notRun(err error) error { return &exitError{code: exitNotRun, err: err} }

// oneLine flattens multi-line errors (pgx lists every address it tried) into one line; for a
// failed connection only the last attempt is kept, which carries the server's answer.
func oneLine(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "\n\t"); i >= 0 && strings.Contains(msg, "failed to connect") {
		head, _, _ := strings.Cut(msg, "\n")
		msg = head + " " + msg[i+2:]
	}
	return strings.Join(strings.Fields(msg), " ")
}
