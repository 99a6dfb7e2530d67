// Package query runs ad-hoc SQL over the Parquet archive on one machine with DuckDB, embedded
// through cgo, so that the queries written for Athena (docs/athena.md) run locally against the
// same files: the archive is the view pgtrail.audit_events (also audit_events, and events), with the
// partition columns tenant and dt taken from the keys exactly as Athena takes them.
//
// DuckDB makes a binary about 70 MB larger and needs cgo, so it lives in its own binary,
// cmd/pgtrail-query, which `pgtrail query` runs; the main binary stays pure Go.
package query

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" database/sql driver

	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archive/file"
	"github.com/pgtrail/pgtrail/internal/search"
)

// Table is the name of the archive's table, in schema pgtrail (as in the Athena DDL's default
// database) and in DuckDB's default schema.
const Table = "audit_events"

// View is the archive's table under the name a user tries first: events, as audit.events is
// called in the database; the same rows as Table, in both schemas.
const View = "events"

// Formats of the output.
const (
	FormatTable = "table"
	FormatCSV   = "csv"
	FormatJSON  = "json"
)

// Config configures Run.
type Config struct {
	// Sink is the archive. A local directory (archive/file) is read in place; other sinks are
	// downloaded to TempDir first (DuckDB's httpfs would need the network to install).
	Sink archive.Sink
	// Tenant, Since and Until restrict the files the table covers, by the keys' tenant= and dt=
	// partitions, as Athena's partition filters do; a query's own WHERE on tenant and dt still
	// applies. Without them every file is read (and, from S3, downloaded).
	Tenant       *string
	Since, Until time.Time
	// TempDir holds downloaded files and what DuckDB spills from memory; "" means os.TempDir().
	// They are removed afterwards.
	TempDir string
	// Format is table, csv or json ("" is table).
	Format string
	// Out receives the result.
	Out io.Writer
	// IncludeUnverified also makes the data files no digest covers part of the table (an upload
	// in progress, or a file someone added to the archive); Unverified, when set, is told which
	// were left out.
	IncludeUnverified bool
	Unverified        func(keys []string)
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.Sink == nil:
		return errors.New("query: Sink must be set")
	case c.Out == nil:
		return errors.New("query: Out must be set")
	case c.Format != "" && c.Format != FormatTable && c.Format != FormatCSV && c.Format != FormatJSON:
		return fmt.Errorf("query: format %q: want table, csv or json", c.Format)
	}
	return nil
}

// Run makes the archive's files (those Config selects) the table pgtrail.audit_events (also
// events) and runs
// query, writing the result to cfg.Out. The session runs in UTC, like Athena's and like dt;
// json_extract_scalar is defined (as DuckDB's json_extract_string) so Athena's JSON queries run
// unchanged. The query reads the selected files and nothing else, and writes nothing: DuckDB may
// open only those files and its configuration is locked before the query runs, and a query that
// is not one SELECT, or calls a function that writes, is refused (ErrRefused) before it runs.
func Run(ctx context.Context, cfg Config, query string) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	files, unverified, err := search.Files(ctx, cfg.Sink, &search.Filter{Tenant: cfg.Tenant, Since: cfg.Since, Until: cfg.Until,
		IncludeUnverified: cfg.IncludeUnverified})
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	if len(unverified) > 0 && cfg.Unverified != nil {
		cfg.Unverified(unverified)
	}
	// DuckDB spills what does not fit in memory to its temp_directory, by default ".tmp" in the
	// working directory, which may be the archive: it gets a directory of its own, as downloads
	// do.
	work, err := os.MkdirTemp(cfg.TempDir, "pgtrail-query-")
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	defer os.RemoveAll(work)
	work, err = filepath.Abs(work)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	var root string
	if fs, ok := cfg.Sink.(*file.Sink); ok {
		root = fs.Root()
	} else {
		root = filepath.Join(work, "archive")
		if err := download(ctx, cfg.Sink, files, root); err != nil {
			return err
		}
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return fmt.Errorf("query: open duckdb: %w", err)
	}
	defer db.Close()
	// One connection: settings are per connection, and the view and macro must be where the
	// query runs.
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("query: open duckdb: %w", err)
	}
	defer conn.Close()
	for _, stmt := range setup(root, files, filepath.Join(work, "spill")) {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("query: prepare the archive table: %w (%s)", err, firstLine(stmt))
		}
	}
	if err := checkReadOnly(ctx, conn, query); err != nil {
		return err
	}
	rows, err := conn.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("query: %w", refusal(err))
	}
	defer rows.Close()
	return write(cfg, rows)
}

// setup returns the statements that define the table over files and lock the session down:
// DuckDB may then open the files and nothing else (not the archive's directory, where a new
// file could be created) and spill only to tempDir, and the query cannot change that.
func setup(root string, files []search.File, tempDir string) []string {
	stmts := []string{
		"SET TimeZone = 'UTC'",
		"SET autoinstall_known_extensions = false",
		"SET autoload_known_extensions = false",
		"SET temp_directory = " + literal(tempDir),
		"CREATE SCHEMA pgtrail",
	}
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = literal(filepath.Join(root, filepath.FromSlash(f.Key)))
	}
	if len(files) == 0 {
		stmts = append(stmts, "CREATE TABLE pgtrail."+Table+" ("+emptyColumns()+")")
	} else {
		// tenant and dt come from the key as written, like Athena's partition projection:
		// DuckDB's hive_partitioning would URL-decode them ("a%2Fb" -> "a/b", "%5Fnone" ->
		// "_none", which is also the partition of events without a tenant).
		stmts = append(stmts, `CREATE VIEW pgtrail.`+Table+` AS
SELECT * EXCLUDE (filename),
       regexp_extract(filename, '/tenant=([^/]+)/dt=[^/]+/[^/]+$', 1) AS tenant,
       regexp_extract(filename, '/dt=([^/]+)/[^/]+$', 1) AS dt
  FROM read_parquet([`+strings.Join(paths, ", ")+`], filename = true, hive_partitioning = false)`)
	}
	return append(stmts,
		"CREATE VIEW main."+Table+" AS SELECT * FROM pgtrail."+Table,
		"CREATE VIEW pgtrail."+View+" AS SELECT * FROM pgtrail."+Table,
		"CREATE VIEW main."+View+" AS SELECT * FROM pgtrail."+Table,
		"CREATE MACRO json_extract_scalar(j, p) AS json_extract_string(j, p)",
		"SET allowed_paths = ["+strings.Join(paths, ", ")+"]",
		"SET enable_external_access = false",
		"SET lock_configuration = true",
	)
}

// emptyColumns is the table definition when no file matches: the archive's columns and the
// partition columns, so that queries still parse and return nothing.
func emptyColumns() string {
	var cols []string
	for _, c := range archive.Columns() {
		t := map[string]string{"bigint": "BIGINT", "string": "VARCHAR", "timestamp": "TIMESTAMPTZ", "array<string>": "VARCHAR[]"}[c.AthenaType]
		if t == "" {
			t = "VARCHAR"
		}
		cols = append(cols, `"`+c.Name+`" `+t)
	}
	return strings.Join(append(cols, "tenant VARCHAR", "dt VARCHAR"), ", ")
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// downloadConcurrency is how many files are fetched at once.
const downloadConcurrency = 8

// download copies files from sink to dir, keeping their keys as paths.
func download(ctx context.Context, sink archive.Sink, files []search.File, dir string) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, downloadConcurrency)
	var wg sync.WaitGroup
	for _, f := range files {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			data, err := sink.Get(ctx, f.Key)
			if err == nil {
				p := filepath.Join(dir, filepath.FromSlash(f.Key))
				if err = os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
					err = os.WriteFile(p, data, 0o600)
				}
			}
			if err != nil {
				cancel(fmt.Errorf("query: download %s: %w", f.Key, err))
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// write prints the rows in cfg.Format.
func write(cfg Config, rows *sql.Rows) error {
	cols, err := rows.Columns()
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var next func() error
	var done func() error
	switch cfg.Format {
	case FormatCSV:
		w := csv.NewWriter(cfg.Out)
		if err := w.Write(cols); err != nil {
			return err
		}
		next = func() error {
			rec := make([]string, len(vals))
			for i, v := range vals {
				rec[i] = text(v)
			}
			return w.Write(rec)
		}
		done = func() error { w.Flush(); return w.Error() }
	case FormatJSON:
		first := true
		io.WriteString(cfg.Out, "[")
		next = func() error {
			obj := make([]byte, 0, 256)
			obj = append(obj, '{')
			for i, v := range vals {
				if i > 0 {
					obj = append(obj, ',')
				}
				k, _ := json.Marshal(cols[i])
				obj = append(obj, k...)
				obj = append(obj, ':')
				jv, err := json.Marshal(jsonValue(v))
				if err != nil {
					return err
				}
				obj = append(obj, jv...)
			}
			obj = append(obj, '}')
			sep := ",\n"
			if first {
				sep, first = "\n", false
			}
			_, err := io.WriteString(cfg.Out, sep+string(obj))
			return err
		}
		done = func() error { _, err := io.WriteString(cfg.Out, "\n]\n"); return err }
	default:
		tw := tabwriter.NewWriter(cfg.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
		n := 0
		next = func() error {
			n++
			rec := make([]string, len(vals))
			for i, v := range vals {
				rec[i] = oneLine(text(v))
			}
			_, err := fmt.Fprintln(tw, strings.Join(rec, "\t"))
			return err
		}
		done = func() error {
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cfg.Out, "(%d row(s))\n", n)
			return err
		}
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("query: %w", refusal(err))
		}
		if err := next(); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query: %w", refusal(err))
	}
	return done()
}

// text formats a DuckDB value for CSV and the table: NULL is empty, times are RFC 3339 UTC,
// lists and structs are JSON.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return hex.EncodeToString(x)
	case time.Time:
		return x.UTC().Format("2006-01-02T15:04:05.999999Z07:00")
	case int64:
		return strconv.FormatInt(x, 10)
	case bool, int, int8, int16, int32, uint8, uint16, uint32, uint64, float32, float64:
		return fmt.Sprint(x)
	case *big.Int:
		return x.String()
	}
	b, err := json.Marshal(jsonValue(v))
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// jsonValue makes a DuckDB value JSON-friendly.
func jsonValue(v any) any {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format("2006-01-02T15:04:05.999999Z07:00")
	case []byte:
		return hex.EncodeToString(x)
	case *big.Int:
		return x.String()
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = jsonValue(x[i])
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonValue(e)
		}
		return out
	case fmt.Stringer:
		return x.String()
	}
	return v
}

// oneLine keeps a table cell on one line: archived values come from applications.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\n\r\t") {
		return s
	}
	q := strconv.Quote(s)
	return q
}
