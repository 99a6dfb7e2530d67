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
	"path/filepath"
	"runtime/pprof"
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
	"migrate":    {"apply or revert the audit schema: migrate up|down|version|to N", runMigrate},
	"enable":     {"capture a table: enable TABLE [--mode wal|trigger] [--exclude-columns a,b] [--pii-columns c,d]", runEnable},
	"disable":    {"stop capturing a table: disable TABLE", runDisable},
	"status":     {"show audited tables, chain head, pending entries, replication slots and partitions", runStatus},
	"seal":       {"chain committed entries into audit.events (loop, or --once)", runSeal},
	"stream":     {"archive the trail over logical replication as Parquet: stream --archive URL --signing-key KEY", runStream},
	"verify":     {"verify the trail: verify db | archive ARCHIVE_URL | all ARCHIVE_URL --public-key KEY", runVerify},
	"version":    {"print pgtrail's version and commit (also --version)", runVersion},
	"keygen":     {"create an ed25519 key pair for signing archive digests: keygen --out PATH", runKeygen},
	"archive":    {"prepare an archive: archive init s3://bucket/prefix (Object Lock, retention, Glacier) or file:///dir", runArchive},
	"athena":     {"print Athena DDL for the archive: athena ddl s3://bucket/prefix", runAthena},
	"search":     {"search the trail (database, or --archive): --actor --resource TYPE[:ID] --action --since ...", runSearch},
	"query":      {"SQL over the Parquet archive with DuckDB: query ARCHIVE_URL \"SQL\" (table events)", runQuery},
	"export":     {"write a CSV/Parquet report for a filter, recorded as an EXPORT event: export --out PATH", runExport},
	"partitions": {"list partitions, or prune old ones once archived and verified: partitions list|prune", runPartitions},
}

// commandOrder is the order of the commands in the help: as a user meets them.
var commandOrder = []string{"migrate", "enable", "disable", "status", "keygen", "archive", "stream", "seal",
	"verify", "search", "query", "export", "partitions", "athena", "version"}

// env is what a subcommand may touch of the outside world.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// parseOnly stops every command once its command line is parsed (errParsedOnly): nothing
	// is connected to, read or run.
	parseOnly bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// PGTRAIL_CPUPROFILE=file writes a CPU profile of the command (go tool pprof): where the
	// stream's time goes under a benchmark's load. A path ending in / is a directory that gets
	// one profile per process (<command>-<pid>.prof): a benchmark runs several commands.
	if path := os.Getenv("PGTRAIL_CPUPROFILE"); path != "" {
		if strings.HasSuffix(path, "/") && len(os.Args) > 1 {
			path += fmt.Sprintf("%s-%d.prof", filepath.Base(os.Args[1]), os.Getpid())
		}
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
	if len(args) == 0 {
		usage(e.stdout)
		return exitNotRun
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(e.stdout)
		return exitOK
	case "help":
		if len(args) == 1 {
			usage(e.stdout)
			return exitOK
		}
		// pgtrail help verify db == pgtrail verify db --help
		args = append(args[1:len(args):len(args)], "--help")
	case "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "pgtrail: unknown command %q (run pgtrail --help)\n", args[0])
		return exitNotRun
	}
	err := cmd.run(ctx, e, args[1:])
	if err == nil || errors.Is(err, flag.ErrHelp) || errors.Is(err, errParsedOnly) {
		return exitOK
	}
	var ex *exitError
	if errors.As(err, &ex) {
		if ex.err != nil {
			msg := oneLine(ex.err)
			if ex.help != "" {
				msg += " (run " + ex.help + ")"
			}
			fmt.Fprintf(e.stderr, "pgtrail %s: %s\n", args[0], msg)
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
	for _, n := range commandOrder {
		fmt.Fprintf(w, "  %-11s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, `
Examples:
  export DATABASE_URL=postgres://admin@db.example.com/app
  pgtrail migrate up
  pgtrail enable public.users --exclude-columns password_hash --pii-columns email,phone
  pgtrail keygen --out /etc/pgtrail/signing.key
  pgtrail stream --archive s3://audit-bucket/app --signing-key /etc/pgtrail/signing.key
  pgtrail verify all s3://audit-bucket/app --public-key /etc/pgtrail/signing.key.pub
  pgtrail migrate to 7

The database comes from --database-url, else DATABASE_URL, else the libpq PG* variables.
Sizes read 64MiB, 1GiB, 512KB; durations 500ms, 30s, 90d, 13mo, 7y.
Exit codes: 0 done (verify: intact), 1 failed or refused (verify: tampering found),
2 could not run (usage, connection, permission; verify: could not check).
Run "pgtrail COMMAND --help" for a command's flags and examples; "pgtrail --version" for the version.
`)
}

// exitError carries an exit code other than exitFailed.
type exitError struct {
	code int
	err  error
	// help, when set, is the command line whose help explains the mistake (a usage error).
	help string
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
