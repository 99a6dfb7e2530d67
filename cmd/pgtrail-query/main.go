// Command pgtrail-query runs ad-hoc SQL over a pgtrail archive with embedded DuckDB (package
// query). `pgtrail query` runs it; it is a binary of its own because DuckDB needs cgo and adds
// about 70 MB, which the daemon binary should not carry.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/query"
	"github.com/pgtrail/pgtrail/internal/timeexpr"
)

// Exit codes, as pgtrail's.
const (
	exitOK     = 0
	exitFailed = 1
	exitNotRun = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Stdout, os.Stderr, os.Args[1:])
	stop()
	os.Exit(code)
}

const usage = `Usage: pgtrail query ARCHIVE_URL "SQL" [flags]

Runs SQL over the archive's Parquet files with DuckDB. The archive is the table events (also
pgtrail.audit_events and audit_events) with Athena's columns, tenant and dt included, so the
queries of docs/athena.md run as they are (UTC session, json_extract_scalar defined). A local
archive (file:///dir) is read in place; an s3:// archive is downloaded first: restrict it with
--tenant/--since/--until, which select files by their tenant= and dt= partitions.

The query is read-only: one SELECT (WITH, DESCRIBE, SUMMARIZE too) that reads the archive's
files and nothing else. COPY, ATTACH, SET, INSTALL, CREATE and functions that write are refused
(exit 2).

Flags:
`

const examples = `
Examples:
  pgtrail query file:///var/lib/pgtrail/archive "SELECT actor_id, count(*) AS n FROM events GROUP BY 1 ORDER BY n DESC"
  pgtrail query s3://audit-bucket/app --tenant acme --since 30d --csv "SELECT * FROM events WHERE action_type = 'DELETE'"
`

func run(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	// Help on --help only, to stdout; a mistake is one line (fail) that says where the help is.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	help := func() {
		fmt.Fprint(stdout, usage)
		fs.VisitAll(func(f *flag.Flag) {
			name, use := flag.UnquoteUsage(f)
			if name != "" {
				name = " " + strings.ToUpper(name)
			}
			fmt.Fprintf(stdout, "  --%s%s\n      %s\n", f.Name, name, use)
		})
		fmt.Fprint(stdout, examples)
	}
	tenant := fs.String("tenant", "", "only files of this tenant_id (_none: events without one)")
	since := fs.String("since", "", "only files of days from this time on (30d, 2024-01-01, RFC 3339)")
	until := fs.String("until", "", "only files of days before this time")
	asCSV := fs.Bool("csv", false, "print CSV")
	asJSON := fs.Bool("json", false, "print a JSON array of row objects")
	includeUnverified := fs.Bool("include-unverified", false, "also query data files no digest covers (an upload in progress, or files someone added)")
	endpoint := fs.String("s3-endpoint", "", "S3-compatible endpoint URL (path-style addressing); empty means AWS")
	region := fs.String("region", "", "S3 region (default: from the AWS configuration, else us-east-1)")
	tempDir := fs.String("temp-dir", "", "where to download s3:// files (default: the system's temporary directory)")
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		help()
		return exitOK
	}
	if err != nil {
		return fail(stderr, exitNotRun, fmt.Errorf("%s (run pgtrail query --help)", strings.Replace(err.Error(), " -", " --", 1)))
	}
	if len(pos) != 2 {
		return fail(stderr, exitNotRun, errors.New(`expected: query ARCHIVE_URL "SQL" (run pgtrail query --help)`))
	}
	cfg := query.Config{Out: stdout, TempDir: *tempDir, Format: query.FormatTable, IncludeUnverified: *includeUnverified,
		Unverified: func(keys []string) {
			fmt.Fprintf(stderr, "pgtrail-query: %d archived file(s) left out: no digest covers them (an upload in progress, or added by someone: pgtrail verify archive says which); --include-unverified reads them\n", len(keys))
		}}
	switch {
	case *asCSV && *asJSON:
		return fail(stderr, exitNotRun, errors.New("--csv and --json exclude each other"))
	case *asCSV:
		cfg.Format = query.FormatCSV
	case *asJSON:
		cfg.Format = query.FormatJSON
	}
	if *tenant != "" {
		cfg.Tenant = tenant
	}
	now := time.Now()
	for _, t := range []struct {
		flag, v string
		dst     *time.Time
	}{{"--since", *since, &cfg.Since}, {"--until", *until, &cfg.Until}} {
		if t.v == "" {
			continue
		}
		if *t.dst, err = timeexpr.ParseTime(t.v, now); err != nil {
			return fail(stderr, exitNotRun, fmt.Errorf("%s: %w", t.flag, err))
		}
	}
	// A file:// archive must exist (Open creates nothing) and be absolute: file://tmp/arch is
	// refused, not read relative to the working directory.
	url := pos[0]
	cfg.Sink, err = archive.Open(ctx, url, archive.Options{Endpoint: *endpoint, Region: *region})
	if err != nil {
		return fail(stderr, exitNotRun, err)
	}
	switch err := query.Run(ctx, cfg, pos[1]); {
	case errors.Is(err, query.ErrRefused):
		// Like a usage error: the query asked for more than reading the archive, and nothing
		// was written.
		return fail(stderr, exitNotRun, err)
	case err != nil:
		return fail(stderr, exitFailed, err)
	}
	return exitOK
}

// parse parses flags, allowing them after positional arguments too.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func fail(stderr io.Writer, code int, err error) int {
	fmt.Fprintf(stderr, "pgtrail query: %s\n", strings.Join(strings.Fields(err.Error()), " "))
	return code
}
