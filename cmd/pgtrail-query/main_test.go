package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/eventtest"
)

// TestRun_Refused checks what the user sees when a query would write or read outside the
// archive: one line on stderr, exit 2 like a usage error, nothing written; a SELECT still runs.
func TestRun_Refused(t *testing.T) {
	events := eventtest.Chain([]pgtrail.Event{{OccurredAt: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
		ActorID: "x", ActionType: "LOGIN", ResourceType: "session"}})
	root := eventtest.Archive(t, events, 10).Root()
	url := "file://" + root
	cases := []struct {
		name, sql string
		code      int
	}{
		{"CopyIntoArchive", "COPY (SELECT * FROM audit_events) TO '" + root + "/events/99-99.parquet'", exitNotRun},
		{"AttachInArchive", "ATTACH '" + root + "/x.duckdb'", exitNotRun},
		{"ReadOutside", "SELECT * FROM read_csv('/etc/passwd')", exitNotRun},
		{"Select", "SELECT actor_id FROM audit_events", exitOK},
		// A typing error is DuckDB's message, not a refusal.
		{"SyntaxError", "SELEC actor_id FROM audit_events", exitFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), &stdout, &stderr, []string{url, c.sql})
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, c.code, stderr.String())
			}
			if c.code == exitFailed && (strings.Contains(stderr.String(), "refused") || !strings.Contains(stderr.String(), "syntax error")) {
				t.Errorf("stderr = %q, want DuckDB's syntax error", stderr.String())
			}
			if c.code == exitNotRun {
				msg := stderr.String()
				if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "pgtrail query: ") || !strings.Contains(msg, "refused") {
					t.Errorf("stderr = %q, want one line saying the query was refused", msg)
				}
			}
			for _, p := range []string{"events/99-99.parquet", "x.duckdb", "x.duckdb.wal"} {
				if _, err := os.Stat(filepath.Join(root, p)); err == nil {
					t.Errorf("%s written into the archive", p)
				}
			}
		})
	}
}
