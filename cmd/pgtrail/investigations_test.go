package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/eventtest"
	"github.com/pgtrail/pgtrail/internal/testdb"
)

// investigationCommands are the commands of search.go, export.go, partitions.go and query.go.
// They are added to the command table here too, so these tests run whether or not main.go
// lists them yet.
var investigationCommands = map[string]command{
	"search":     {"search the audit trail", runSearch},
	"export":     {"export a compliance report", runExport},
	"partitions": {"list or prune partitions", runPartitions},
	"query":      {"SQL over the archive", runQuery},
}

// invRun runs pgtrail with args like runCLI, with the investigation commands available.
func invRun(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	for name, c := range investigationCommands {
		if _, ok := commands[name]; !ok {
			commands[name] = c
		}
	}
	return runCLI(t, vars, args...)
}

// invSetup is a database with a few events of two tenants, and an archive of them.
func invSetup(t *testing.T) (db *pgxpool.Pool, vars map[string]string, archiveURL string) {
	t.Helper()
	db, url := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE users (id int PRIMARY KEY, email text); SELECT audit.enable('users')`)
	testdb.Exec(t, db, `BEGIN; SET LOCAL pgtrail.tenant_id = 'acme'; SET LOCAL pgtrail.actor_id = 'alice';
		INSERT INTO users VALUES (1, 'a@example.com'); UPDATE users SET email = 'b@example.com' WHERE id = 1;
		SELECT audit.log_event('FAILED_LOGIN', 'session', NULL, 'FAILURE'); COMMIT`)
	testdb.Exec(t, db, `BEGIN; SET LOCAL pgtrail.tenant_id = 'globex'; INSERT INTO users VALUES (2, 'c@example.com'); COMMIT`)
	testdb.Seal(t, db)
	var events []pgtrail.Event
	if err := chain.Read(context.Background(), db, 1, math.MaxInt64, func(e *pgtrail.Event) error { events = append(events, *e); return nil }); err != nil {
		t.Fatal(err)
	}
	sink := eventtest.Archive(t, events, 3)
	return db, map[string]string{"DATABASE_URL": url}, "file://" + sink.Root()
}

// TestCLI_Search runs searches against the database and the archive in each output format, and
// bad invocations, which must exit 2 with one line saying what is wrong.
func TestCLI_Search(t *testing.T) {
	_, vars, arch := invSetup(t)
	cases := []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"Table", []string{"search", "--actor", "alice"}, 0, "3 event(s) from database", ""},
		{"Resource", []string{"search", "--resource", "public.users:1", "--action", "update"}, 0, "public.users:1", ""},
		{"ArchiveTable", []string{"search", "--archive", arch, "--tenant", "globex"}, 0, "1 event(s) from " + arch, ""},
		{"CSV", []string{"search", "--outcome", "FAILURE", "--csv"}, 0, "seq,event_id,occurred_at", ""},
		{"Limit", []string{"search", "--tenant", "acme", "--limit", "1"}, 0, "more matched", ""},
		{"SinceFuture", []string{"search", "--since", "2999-01-01"}, 0, "0 event(s)", ""},
		{"BadSince", []string{"search", "--since", "yesterday"}, 2, "", "--since: time \"yesterday\""},
		{"BadOutcome", []string{"search", "--outcome", "meh"}, 2, "", "outcome \"MEH\""},
		{"Positional", []string{"search", "alice"}, 2, "", "filters are flags"},
		{"BothFormats", []string{"search", "--json", "--csv"}, 2, "", "exclude each other"},
		{"BadArchive", []string{"search", "--archive", "ftp://x"}, 2, "", "unsupported scheme"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := invRun(t, vars, c.args...)
			if code != c.code || !strings.Contains(out, c.inStdout) || !strings.Contains(errOut, c.inStderr) {
				t.Errorf("pgtrail %s: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					strings.Join(c.args, " "), code, out, errOut, c.code, c.inStdout, c.inStderr)
			}
			if c.code == 2 && strings.Count(strings.TrimSpace(errOut), "\n") > 0 && !strings.Contains(errOut, "Usage:") {
				t.Errorf("error is not one line: %q", errOut)
			}
		})
	}
	// JSON from the database and from the archive agree.
	var fromDB, fromArchive struct {
		Count  int `json:"count"`
		Events []struct {
			Seq       int64  `json:"seq"`
			EntryHash string `json:"entry_hash"`
		} `json:"events"`
	}
	for _, x := range []struct {
		args []string
		dst  any
	}{{[]string{"search", "--tenant", "acme", "--json"}, &fromDB}, {[]string{"search", "--tenant", "acme", "--json", "--archive", arch}, &fromArchive}} {
		code, out, errOut := invRun(t, vars, x.args...)
		if err := json.Unmarshal([]byte(out), x.dst); code != 0 || err != nil {
			t.Fatalf("%v: exit %d, %v: %s %s", x.args, code, err, out, errOut)
		}
	}
	if fromDB.Count != 3 || fromArchive.Count != 3 || fromDB.Events[2].EntryHash != fromArchive.Events[2].EntryHash {
		t.Errorf("database %+v, archive %+v: want the same 3 events", fromDB, fromArchive)
	}
}

// TestCLI_Export exports a report, then tries to overwrite it (refused, exit 1, the report
// unchanged) and to export without --out (exit 2).
func TestCLI_Export(t *testing.T) {
	db, vars, _ := invSetup(t)
	out := filepath.Join(t.TempDir(), "acme.parquet")
	code, stdout, stderr := invRun(t, vars, "export", "--tenant", "acme", "--out", out, "--requested-by", "dpo", "--reason", "GDPR-12")
	if code != 0 || !strings.Contains(stdout, "exported 3 event(s) from database") || !strings.Contains(stdout, "(parquet,") {
		t.Fatalf("export: exit %d, %q %q", code, stdout, stderr)
	}
	before, _ := os.ReadFile(out)
	code, _, stderr = invRun(t, vars, "export", "--out", out)
	if code != 1 || !strings.Contains(stderr, "already exists") {
		t.Errorf("second export to the same file: exit %d, %q; want 1, already exists", code, stderr)
	}
	if after, _ := os.ReadFile(out); string(after) != string(before) {
		t.Error("the report was overwritten")
	}
	if code, _, stderr = invRun(t, vars, "export", "--tenant", "acme"); code != 2 || !strings.Contains(stderr, "--out is required") {
		t.Errorf("export without --out: exit %d, %q", code, stderr)
	}
	testdb.Seal(t, db)
	var actor, details string
	if err := db.QueryRow(context.Background(), `SELECT actor_id, details::text FROM audit.events WHERE action_type = 'EXPORT'`).Scan(&actor, &details); err != nil ||
		actor != "dpo" || !strings.Contains(details, "GDPR-12") {
		t.Errorf("EXPORT event: %v, actor %q, details %s", err, actor, details)
	}
}

// TestCLI_Partitions lists partitions and prunes nothing: a dry run on a young trail, and the
// refusals of bad invocations.
func TestCLI_Partitions(t *testing.T) {
	db, vars, arch := invSetup(t)
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "signing.key")
	if code, _, stderr := invRun(t, vars, "keygen", "--out", keyPath); code != 0 {
		t.Fatalf("keygen: %s", stderr)
	}
	cases := []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"List", []string{"partitions", "list"}, 0, "chain starts at seq 1", ""},
		{"ListJSON", []string{"partitions", "list", "--json"}, 0, `"partitions":[`, ""},
		{"DryRun", []string{"partitions", "prune", "--older-than", "13mo", "--archive", arch, "--dry-run"}, 0, "none", ""},
		{"Prune", []string{"partitions", "prune", "--older-than", "13mo", "--archive", arch, "--signing-key", keyPath}, 0, "none", ""},
		{"NoKey", []string{"partitions", "prune", "--older-than", "13mo", "--archive", arch}, 2, "", "--signing-key is required"},
		{"NoArchive", []string{"partitions", "prune", "--older-than", "13mo"}, 2, "", "--older-than and --archive are required"},
		{"BadAge", []string{"partitions", "prune", "--older-than", "13 months", "--archive", arch}, 2, "", "--older-than: age"},
		{"Unknown", []string{"partitions", "drop"}, 2, "", "unknown partitions command"},
	}
	// Then an old partition that the (empty) archive does not hold: refused, exit 1.
	empty := "file://" + t.TempDir()
	cases = append(cases, []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"RefusedNotArchived", []string{"partitions", "prune", "--older-than", "13mo", "--archive", empty, "--signing-key", keyPath}, 1, "REFUSED events_", "refused"},
		{"ListOld", []string{"partitions", "list"}, 0, "events_", ""},
	}...)
	for _, c := range cases {
		if c.name == "RefusedNotArchived" {
			addOldPartition(t, db, 20)
		}
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := invRun(t, vars, c.args...)
			if code != c.code || !strings.Contains(out, c.inStdout) || !strings.Contains(errOut, c.inStderr) {
				t.Errorf("pgtrail %s: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					strings.Join(c.args, " "), code, out, errOut, c.code, c.inStdout, c.inStderr)
			}
		})
	}
	var rows int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events WHERE occurred_at < now() - interval '13 months'`).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("old entries after the refused prune: %d (%v), want 1", rows, err)
	}
}

// addOldPartition adds the partition of the month monthsAgo months back, as it would have been
// created then (no DDL event today), with one entry.
func addOldPartition(t *testing.T, db *pgxpool.Pool, monthsAgo int) {
	t.Helper()
	now := time.Now().UTC()
	m := time.Date(now.Year(), now.Month()-time.Month(monthsAgo), 1, 0, 0, 0, 0, time.UTC)
	name := pgx.Identifier{"audit", "events_" + m.Format("2006_01")}.Sanitize()
	testdb.Exec(t, db, "BEGIN; ALTER EVENT TRIGGER pgtrail_ddl DISABLE; CREATE TABLE "+name+" PARTITION OF audit.events FOR VALUES FROM ('"+
		m.Format(time.RFC3339)+"') TO ('"+m.AddDate(0, 1, 0).Format(time.RFC3339)+"'); ALTER EVENT TRIGGER pgtrail_ddl ENABLE; COMMIT")
	testdb.Exec(t, db, `INSERT INTO audit.pending (occurred_at, action_type, resource_type, outcome, actor_id) VALUES ($1, 'LOGIN', 'session', 'SUCCESS', 'old')`, m.AddDate(0, 0, 3))
	testdb.Seal(t, db)
}

// buildQueryBinary builds pgtrail-query once per test binary (DuckDB: about 10 s to link).
var buildQueryBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pgtrail-query-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, queryBinary)
	out, err := exec.Command("go", "build", "-o", bin, "../pgtrail-query").CombinedOutput()
	if err != nil {
		return "", &buildError{string(out), err}
	}
	return bin, nil
})

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + ": " + e.out }

// TestCLI_Query runs pgtrail query through the companion binary, passes its exit codes through,
// and says in one line how to get the binary when it is missing: what to build, and where.
func TestCLI_Query(t *testing.T) {
	_, _, arch := invSetup(t)
	code, _, stderr := invRun(t, map[string]string{envQueryBinary: ""}, "query", arch, "SELECT 1")
	if _, err := exec.LookPath(queryBinary); err != nil && (code != 2 || !strings.Contains(stderr, "go build -o ") || !strings.Contains(stderr, "/pgtrail-query ./cmd/pgtrail-query") ||
		!strings.Contains(stderr, envQueryBinary) || strings.Count(strings.TrimSpace(stderr), "\n") != 0) {
		t.Errorf("without the binary: exit %d, %q; want 2 and how to build it", code, stderr)
	}
	if testing.Short() {
		t.Skip("builds the DuckDB binary; skipped with -short")
	}
	bin, err := buildQueryBinary()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{envQueryBinary: bin}
	cases := []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"Count", []string{"query", arch, "SELECT tenant, count(*) AS n FROM pgtrail.audit_events GROUP BY tenant ORDER BY tenant", "--csv"}, 0, "acme,3\nglobex,1\n", ""},
		{"EventsView", []string{"query", arch, "SELECT count(*) AS n, count(*) = (SELECT count(*) FROM audit_events) AS same FROM events", "--csv"}, 0, "n,same\n11,true\n", ""},
		{"BadSQL", []string{"query", arch, "SELEC 1"}, 1, "", "syntax error"},
		{"Usage", []string{"query", arch}, 2, "", `expected: query ARCHIVE_URL "SQL"`},
		{"NoArchive", []string{"query", "file:///nonexistent/archive", "SELECT 1"}, 2, "", "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := invRun(t, vars, c.args...)
			if code != c.code || !strings.Contains(out, c.inStdout) || !strings.Contains(errOut, c.inStderr) {
				t.Errorf("pgtrail %s: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					strings.Join(c.args, " "), code, out, errOut, c.code, c.inStdout, c.inStderr)
			}
		})
	}
}
