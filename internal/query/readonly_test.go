package query_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archive/file"
	"github.com/pgtrail/pgtrail/internal/eventtest"
	"github.com/pgtrail/pgtrail/internal/query"
)

// setupReadOnly returns an archive of two days' events, one of its data files, and a directory
// outside it for attacks to aim at, holding secret.csv.
func setupReadOnly(t *testing.T) (sink *file.Sink, dataFile, outside string) {
	t.Helper()
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	events := eventtest.Chain([]pgtrail.Event{
		{OccurredAt: at, ActorID: "x", ActionType: "LOGIN", ResourceType: "session"},
		{OccurredAt: at.AddDate(0, 0, 1), ActorID: "y", ActionType: "LOGIN", ResourceType: "session"},
	})
	sink = eventtest.Archive(t, events, 1)
	keys, err := sink.List(context.Background(), archive.EventsPrefix)
	if err != nil || len(keys) == 0 {
		t.Fatalf("list the archive's data files: %v %v", keys, err)
	}
	outside = t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.csv"), []byte("a\n1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return sink, filepath.Join(sink.Root(), filepath.FromSlash(keys[0])), outside
}

// snapshot maps every file and directory under dir to its content's hash ("dir" for
// directories), so that a write, a new file or a removed one shows as a difference.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel] = "dir"
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diff describes how after differs from before.
func diff(before, after map[string]string) []string {
	var out []string
	for p, h := range after {
		switch b, ok := before[p]; {
		case !ok:
			out = append(out, "new "+p)
		case b != h:
			out = append(out, "changed "+p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			out = append(out, "removed "+p)
		}
	}
	return out
}

// TestRun_ReadOnly runs, as the user of `pgtrail query`, each way found to make the query write
// (into the archive or elsewhere), read outside the files it was given, or undo the settings that
// forbid both. Each must be refused with query.ErrRefused (pgtrail-query exits 2), and the
// archive and the directory outside it must be byte for byte as they were.
func TestRun_ReadOnly(t *testing.T) {
	sink, dataFile, outside := setupReadOnly(t)
	root := sink.Root()
	cases := []struct {
		name, query string
		// tenant, when set, selects no file: dataFile is then not part of the table.
		tenant *string
	}{
		{name: "CopyIntoArchive", query: "COPY (SELECT * FROM audit_events) TO '" + filepath.Dir(dataFile) + "/99-99.parquet' (FORMAT parquet)"},
		{name: "CopyOverArchivedFile", query: "COPY (SELECT * FROM audit_events WHERE false) TO '" + dataFile + "' (FORMAT parquet)"},
		{name: "CopyOverArchivedFileInPlace", query: "COPY (SELECT * FROM audit_events WHERE false) TO '" + dataFile + "' (FORMAT parquet, USE_TMP_FILE false)"},
		{name: "CopyOutside", query: "COPY (SELECT * FROM audit_events) TO '" + outside + "/out.csv'"},
		{name: "CopyFirstOfTwoStatements", query: "COPY (SELECT 1) TO '" + root + "/m.csv'; SELECT 1"},
		{name: "ExplainAnalyzeCopy", query: "EXPLAIN ANALYZE COPY (SELECT 1) TO '" + root + "/e.csv'"},
		{name: "AttachInArchive", query: "ATTACH '" + root + "/x.duckdb' AS x"},
		{name: "AttachAndCreateTable", query: "ATTACH '" + root + "/x.duckdb' AS x; CREATE TABLE x.t AS SELECT * FROM audit_events"},
		{name: "AttachOutside", query: "ATTACH '" + outside + "/x.db'"},
		{name: "CreateTable", query: "CREATE TABLE t AS SELECT * FROM audit_events"},
		{name: "ExportDatabase", query: "EXPORT DATABASE '" + root + "/export'"},
		{name: "SetExternalAccess", query: "SET enable_external_access = true"},
		{name: "SetAllowedDirectories", query: "SET allowed_directories = ['/']"},
		{name: "ResetExternalAccess", query: "RESET enable_external_access"},
		{name: "UnlockConfiguration", query: "SET lock_configuration = false"},
		{name: "PragmaProfilingOutput", query: "PRAGMA profiling_output = '" + root + "/profile.json'"},
		{name: "InstallExtension", query: "INSTALL httpfs"},
		{name: "LoadExtension", query: "LOAD httpfs"},
		{name: "CreateSecret", query: "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')"},
		{name: "ReadOutside", query: "SELECT * FROM read_csv('/etc/passwd')"},
		{name: "ReadOutsideCSV", query: "SELECT * FROM read_csv('" + outside + "/secret.csv')"},
		{name: "ReadOutsideByPath", query: "SELECT * FROM '" + outside + "/secret.csv'"},
		{name: "ReadUnselectedArchiveFile", query: "SELECT * FROM read_parquet('" + dataFile + "')", tenant: eventtest.Str("nobody")},
		{name: "EnableLoggingToArchive", query: "SELECT * FROM enable_logging(storage = 'file', storage_path = '" + root + "/log')"},
		{name: "EnableLoggingQualified", query: "SELECT * FROM system.main.\"ENABLE_LOGGING\"(storage = 'file', storage_path = '" + root + "/log')"},
		{name: "EnableLoggingInSelectList", query: "SELECT enable_logging(storage = 'file', storage_path = '" + root + "/log')"},
		{name: "WriteLog", query: "SELECT write_log('x', level := 'error')"},
		{name: "ReadDuckDBFile", query: "SELECT * FROM read_duckdb('" + root + "/x.duckdb')"},
		{name: "CommentBeforeCopy", query: "/* SELECT */ -- SELECT\nCOPY (SELECT 1) TO '" + root + "/c.csv'"},
		{name: "QueryFunction", query: "SELECT * FROM query('COPY (SELECT 1) TO ''" + root + "/q.csv''')"},
		{name: "ExecuteSerializedSQL", query: "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT * FROM enable_logging(storage = ''file'', storage_path = ''" + root + "/log2'')'))"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			archived, elsewhere := snapshot(t, root), snapshot(t, outside)
			var out bytes.Buffer
			err := query.Run(context.Background(), query.Config{Sink: sink, Out: &out, Tenant: c.tenant}, c.query)
			if !errors.Is(err, query.ErrRefused) {
				t.Errorf("%s: err = %v, want query.ErrRefused", c.query, err)
			}
			if d := diff(archived, snapshot(t, root)); len(d) > 0 {
				t.Errorf("%s wrote into the archive: %v", c.query, d)
			}
			if d := diff(elsewhere, snapshot(t, outside)); len(d) > 0 {
				t.Errorf("%s wrote outside the archive: %v", c.query, d)
			}
		})
	}
	// The archive is still the table.
	if rows := runJSON(t, query.Config{Sink: sink}, "SELECT count(*) AS n FROM audit_events"); !equalRows(rows, []map[string]any{{"n": 2.0}}) {
		t.Errorf("count = %v, want 2", rows)
	}
	// And the view named as a user names it first: events.
	if rows := runJSON(t, query.Config{Sink: sink}, "SELECT count(*) AS n FROM events"); !equalRows(rows, []map[string]any{{"n": 2.0}}) {
		t.Errorf("count from events = %v, want 2", rows)
	}
}

// TestRun_ReadOnlyAllows runs the read-only statements and functions an investigation uses: the
// checks that refuse writes must let them through.
func TestRun_ReadOnlyAllows(t *testing.T) {
	sink, dataFile, _ := setupReadOnly(t)
	cases := []struct{ name, query string }{
		{"Select", "SELECT actor_id FROM pgtrail.audit_events ORDER BY seq"},
		{"With", "WITH a AS (SELECT actor_id FROM audit_events) SELECT * FROM a ORDER BY 1"},
		{"FromFirst", "FROM audit_events SELECT actor_id ORDER BY seq"},
		{"Describe", "DESCRIBE audit_events"},
		{"Summarize", "SUMMARIZE audit_events"},
		{"ShowTables", "SHOW TABLES"},
		{"ReadSelectedFile", "SELECT actor_id FROM read_parquet('" + dataFile + "')"},
		{"ParquetMetadata", "SELECT num_rows FROM parquet_file_metadata('" + dataFile + "')"},
		{"Range", "SELECT * FROM range(2)"},
		{"Unnest", "SELECT unnest(changed_columns) FROM audit_events"},
		{"JSON", "SELECT json_extract_scalar(details, '$.a') FROM audit_events"},
		{"EventsView", "SELECT actor_id FROM events ORDER BY seq"},
		{"EventsViewInSchema", "SELECT count(*) FROM pgtrail.events"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := query.Run(context.Background(), query.Config{Sink: sink, Out: &out}, c.query); err != nil {
				t.Errorf("%s: %v", c.query, err)
			}
		})
	}
}

// TestRun_TempDirectory checks where DuckDB would spill a query too large for memory: in a
// directory of its own under Config.TempDir, removed afterwards, never the working directory
// (DuckDB's default, ".tmp", which is the archive when query runs from there).
func TestRun_TempDirectory(t *testing.T) {
	sink, _, _ := setupReadOnly(t)
	tmp := t.TempDir()
	rows := runJSON(t, query.Config{Sink: sink, TempDir: tmp}, "SELECT current_setting('temp_directory') AS d")
	if len(rows) != 1 {
		t.Fatalf("rows = %v", rows)
	}
	d, _ := rows[0]["d"].(string)
	if !strings.HasPrefix(d, tmp+string(filepath.Separator)) {
		t.Errorf("temp_directory = %q, want a directory under %s", d, tmp)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in %s: %v", tmp, left)
	}
}
