package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail/internal/status"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

// TestCLI_Status: pgtrail status as the one screen an operator checks. What was tried: entries
// that nothing seals, a capture trigger disabled, a table in mode wal whose slot no stream
// reads, next month's partition of audit.events gone. Each must be listed first, with the
// command that fixes it, and make status exit 1 (--json too); once fixed, exit 0.
func TestCLI_Status(t *testing.T) {
	url := testenv.Postgres(t)
	vars := map[string]string{"DATABASE_URL": url}
	db := testdb.Pool(t, url)
	if code, _, errOut := runCLI(t, vars, "migrate", "up"); code != 0 {
		t.Fatal(errOut)
	}
	// A fresh installation: nothing sealed yet, nothing wrong.
	code, out, errOut := runCLI(t, vars, "status")
	if code != 0 || !strings.Contains(out, "last sealed\tnever") && !strings.Contains(out, "never") {
		t.Fatalf("fresh status: exit %d, %q %q; want exit 0 and last sealed never", code, out, errOut)
	}

	testdb.Exec(t, db, `CREATE TABLE accounts (id int PRIMARY KEY, balance int); CREATE TABLE payments (id int PRIMARY KEY);
		SELECT audit.enable('accounts', '{}', NULL, 'trigger');
		INSERT INTO accounts VALUES (1, 10);
		ALTER TABLE accounts DISABLE TRIGGER pgtrail_capture`)
	if code, _, errOut := runCLI(t, vars, "enable", "payments", "--mode", "wal", "--slot", "status_slot"); code != 0 {
		t.Fatal(errOut)
	}
	t.Cleanup(func() { db.Exec(context.Background(), `SELECT pg_drop_replication_slot('status_slot')`) })
	testdb.Exec(t, db, `DO $$ BEGIN EXECUTE format('DROP TABLE audit.events_%s', to_char(now() + interval '1 month', 'YYYY_MM')); END $$;
		ALTER PUBLICATION pgtrail DROP TABLE audit.audited_tables`)

	code, out, errOut = runCLI(t, vars, "status", "--max-pending-age", "1ms")
	if code != 1 || !strings.Contains(errOut, "problem") {
		t.Errorf("status with problems: exit %d, stderr %q; want exit 1", code, errOut)
	}
	wantProblems := []struct{ problem, fix string }{
		{"public.accounts: TRIGGER DISABLED", "pgtrail enable public.accounts"},
		{"not sealed", "pgtrail stream"},
		{"status_slot", "pgtrail stream"},
		{"partition", "audit.create_partitions"},
		{"audit.audited_tables: not in the publication", "ALTER PUBLICATION pgtrail ADD TABLE audit.audited_tables"},
	}
	head, _, _ := strings.Cut(out, "\n\n")
	for _, w := range wantProblems {
		if !strings.Contains(head, w.problem) || !strings.Contains(head, w.fix) {
			t.Errorf("status's first section lacks %q with fix %q:\n%s", w.problem, w.fix, out)
		}
	}
	code, out, _ = runCLI(t, vars, "status", "--json", "--max-pending-age", "1ms")
	var st status.Report
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 1 || len(st.Problems) != len(wantProblems) {
		t.Errorf("status --json: exit %d, %v, problems %+v; want exit 1 and %d problems", code, err, st.Problems, len(wantProblems))
	}
	for _, p := range st.Problems {
		if p.Fix == "" {
			t.Errorf("problem %q has no fix", p.Problem)
		}
	}

	// Fixed: the trigger enabled, the entries sealed, the partitions made, the slot read.
	testdb.Exec(t, db, `ALTER PUBLICATION pgtrail ADD TABLE audit.audited_tables; ALTER TABLE accounts ENABLE ALWAYS TRIGGER pgtrail_capture; SELECT audit.create_partitions(); SELECT pg_drop_replication_slot('status_slot');
		SELECT audit.enable('payments', '{}', NULL, 'trigger')`)
	testdb.Seal(t, db)
	if code, out, errOut := runCLI(t, vars, "status"); code != 0 || !strings.Contains(out, "no problems") {
		t.Errorf("status once fixed: exit %d, %q %q; want exit 0", code, out, errOut)
	}
	// The partitions' rows are counted (small partitions), not the statistics' lagging estimate,
	// which showed 0 right after sealing.
	code, out, _ = runCLI(t, vars, "status", "--json")
	var shownStatus struct {
		Partitions []status.Partition `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(out), &shownStatus); code != 0 || err != nil {
		t.Fatalf("status --json: exit %d, %v: %s", code, err, out)
	}
	var shown, entries int64
	for _, p := range shownStatus.Partitions {
		if p.Estimated {
			t.Errorf("partition %s: estimated, want counted", p.Name)
		}
		shown += p.Rows
	}
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events`).Scan(&entries); err != nil || shown != entries {
		t.Errorf("status shows %d rows in the partitions, audit.events holds %d (%v)", shown, entries, err)
	}
}
