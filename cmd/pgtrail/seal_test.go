package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail/archive"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/testcontainers"
)

// TestCLI_SealOnceChainsEventsInSlot: every table in mode trigger, and a stream that ran once
// and stopped, leaving its slot. Application events written meanwhile (audit.log_event, schema
// 16, and audit.log_event_autonomous) wait in the slot, not in audit.pending. Tried: leaving
// them there. What must hold: `verify db --max-capture-lag` exits 1 and says so, and
// `seal --once` chains them (it looked at the slot only when tables were in mode wal), after
// which verify exits 0.
func TestCLI_SealOnceChainsEventsInSlot(t *testing.T) {
	url := testcontainers.Postgres(t)
	vars := map[string]string{"DATABASE_URL": url}
	if code, _, errOut := runCLI(t, vars, "migrate", "up"); code != 0 {
		t.Fatal(errOut)
	}
	db := testdb.Pool(t, url)
	testdb.Exec(t, db, `CREATE TABLE accounts (id int PRIMARY KEY, balance int); SELECT audit.enable('accounts')`)
	dir := t.TempDir()
	key := filepath.Join(dir, "stream.key")
	if _, err := archive.WriteKeyFiles(key); err != nil {
		t.Fatal(err)
	}
	slot := fmt.Sprintf("seal_once_%d", rand.Uint32())
	t.Cleanup(func() { db.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, slot) })
	if code, _, errOut := runCLI(t, vars, "stream", "--archive", "file://"+filepath.Join(dir, "archive"), "--signing-key", key,
		"--slot", slot, "--batch-age", "20ms", "--exit-when-caught-up"); code != 0 {
		t.Fatalf("stream: exit %d: %s", code, errOut)
	}
	testdb.Exec(t, db, `INSERT INTO accounts VALUES (1, 1);
		SELECT audit.log_event('LOGIN', 'user', 'alice');
		SELECT audit.log_event_autonomous('FAILED_LOGIN', 'user', 'bob', 'FAILURE')`)
	var pending int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit.pending WHERE resource_type = 'user'`).Scan(&pending); err != nil || pending != 0 {
		t.Fatalf("%d events in audit.pending (%v), want them in the slot", pending, err)
	}
	time.Sleep(1100 * time.Millisecond)
	code, out, errOut := runCLI(t, vars, "verify", "db", "--max-capture-lag", "1s", "--slot", slot)
	if code != 1 || !strings.Contains(out, "application events have waited") {
		t.Errorf("verify with the events waiting: exit %d, stdout %q, stderr %q; want exit 1 naming them", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, vars, "seal", "--once", "--slot", slot); code != 0 {
		t.Fatalf("seal --once: exit %d: %s %s", code, out, errOut)
	}
	var chained int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events WHERE resource_type = 'user'`).Scan(&chained); err != nil || chained != 2 {
		t.Errorf("%d events chained after seal --once (%v), want 2", chained, err)
	}
	if code, out, errOut := runCLI(t, vars, "verify", "db", "--max-capture-lag", "1s", "--slot", slot); code != 0 {
		t.Errorf("verify after seal --once: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
