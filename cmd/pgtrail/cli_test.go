package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pgtrail/pgtrail/internal/pgschema"
	"github.com/pgtrail/pgtrail/internal/status"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
)

// runCLI runs pgtrail with args and an environment holding only the given variables.
func runCLI(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }}
	code = run(context.Background(), e, args)
	return code, out.String(), errb.String()
}

func TestCLI_EndToEnd(t *testing.T) {
	url := testenv.Postgres(t)
	vars := map[string]string{"DATABASE_URL": url}
	db := testdb.Pool(t, url)

	steps := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"migrate", "version"}, 0, "schema version 0", ""},
		{[]string{"migrate", "up"}, 0, fmt.Sprintf("schema version %d", pgschema.LatestVersion()), ""},
		{[]string{"enable", "users", "--exclude-columns", "password_hash"}, 0, "auditing public.users in mode wal (replica identity full: the WAL logs whole old rows), excluding password_hash", ""},
		{[]string{"enable", "payments", "--json"}, 0, `"table":"public.payments"`, ""},
		{[]string{"enable", "users", "--exclude-columns", "password_hash", "--pii-columns", "email"}, 0, ", masking email for readers", ""},
		{[]string{"enable", "users", "--pii-columns", "nope"}, 1, "", "nope"},
		{[]string{"enable", "users; DROP TABLE payments"}, 1, "", "invalid name syntax"},
		// A table with no key to name its rows by is enabled, and the user is told.
		{[]string{"enable", "keyless", "--mode", "trigger"}, 0, "auditing public.keyless", "warning: audit.enable: public.keyless has no primary key"},
		{[]string{"enable", "nope"}, 1, "", `relation "nope" does not exist`},
		{[]string{"enable", "users", "--exclude-columns", "nope"}, 1, "", "has no column nope"},
		{[]string{"enable"}, 2, "", "expected exactly one table name"},
		{[]string{"seal", "--once"}, 0, "sealed", ""},
		{[]string{"verify", "db"}, 0, "intact:", ""},
		// No stream reads the slot enable made: status says so, and exits 1.
		{[]string{"status"}, 1, "public.users: capturing (mode wal) excluding password_hash", "problem(s) found"},
		{[]string{"migrate", "down"}, 1, "", "refusing to drop"},
		{[]string{"migrate", "to", "3"}, 0, "schema version 3", ""},
		{[]string{"migrate", "to", "3", "--json"}, 0, `{"dirty":false,"version":3}`, ""},
		{[]string{"migrate", "to", "0"}, 2, "", "is not a schema version"},
		{[]string{"migrate", "to", "x"}, 2, "", "is not a schema version"},
		{[]string{"migrate", "up"}, 0, fmt.Sprintf("schema version %d", pgschema.LatestVersion()), ""},
		{[]string{"disable", "payments"}, 0, "stopped auditing public.payments", ""},
		{[]string{"disable", "payments"}, 1, "", "is not audited"},
		{[]string{"bogus"}, 2, "", "unknown command"},
		// An archive no key signs can never be verified: only on request.
		{[]string{"stream", "--archive", "file:///nonexistent/arch"}, 2, "", "--signing-key is required"},
		{[]string{"verify"}, 2, "", "expected: verify db"},
		{[]string{"seal", "--interval", "0"}, 2, "", "must be positive"},
	}
	for _, s := range steps {
		if len(s.args) == 4 && s.args[0] == "enable" && s.args[1] == "users" && s.args[3] == "password_hash" {
			testdb.Exec(t, db, `CREATE TABLE keyless (v int); CREATE TABLE users (id int PRIMARY KEY, email text, password_hash text);
				CREATE TABLE payments (id int PRIMARY KEY, user_id int, amount numeric)`)
		}
		if s.args[0] == "seal" && len(s.args) == 2 {
			testdb.Exec(t, db, `INSERT INTO users VALUES (1, 'a@example.com', 'x'); INSERT INTO payments VALUES (1, 1, 9.5)`)
		}
		code, out, errOut := runCLI(t, vars, s.args...)
		if code != s.code || !strings.Contains(out, s.inStdout) || !strings.Contains(errOut, s.inStderr) {
			t.Errorf("pgtrail %s: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				strings.Join(s.args, " "), code, out, errOut, s.code, s.inStdout, s.inStderr)
		}
		if strings.Count(strings.TrimSpace(errOut), "\n") > 0 && s.code != 0 && !strings.Contains(errOut, "Usage:") {
			t.Errorf("pgtrail %s: error is not one line: %q", strings.Join(s.args, " "), errOut)
		}
	}

	code, out, _ := runCLI(t, vars, "status", "--json")
	var st status.Report
	// (Back in mode trigger after migrate to 3 and up again: no slot is needed, nothing is wrong.)
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || len(st.Problems) != 0 {
		t.Fatalf("status --json: exit %d, %v: %s", code, err, out)
	}
	if st.HeadSeq == 0 || len(st.Tables) != 2 || len(st.Partitions) < 5 {
		t.Errorf("status --json = %+v", st)
	}

	// Tampering makes verify exit 1 and name the entry.
	testdb.Exec(t, db, `BEGIN; SET LOCAL session_replication_role = replica; UPDATE audit.events SET actor_id = 'x' WHERE seq = 2; COMMIT`)
	code, out, _ = runCLI(t, vars, "verify", "db", "--json")
	var rep struct {
		Intact   bool `json:"intact"`
		Problems []struct {
			Seq  int64  `json:"seq"`
			Kind string `json:"kind"`
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("verify --json output: %v: %s", err, out)
	}
	if code != 1 || rep.Intact || len(rep.Problems) == 0 || rep.Problems[0].Seq != 2 || rep.Problems[0].Kind != "modified" {
		t.Errorf("verify after tampering: exit %d, report %+v; want exit 1 naming seq 2 modified", code, rep)
	}

	// Forced down drops everything.
	if code, _, errOut := runCLI(t, vars, "migrate", "down", "--force-destroy-audit-data"); code != 0 {
		t.Fatalf("forced down: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, vars, "status"); code != 1 || !strings.Contains(errOut, "not installed") {
		t.Errorf("status without schema: exit %d, %q", code, errOut)
	}
}

// TestCLI_CannotConnect tries unreachable and missing databases: exit 2 and one line that says
// what failed.
func TestCLI_CannotConnect(t *testing.T) {
	url := testenv.Postgres(t)
	cluster := testenv.PostgresCluster(t)
	cases := []struct {
		name string
		args []string
		vars map[string]string
		msg  string
	}{
		{"MissingDatabase", []string{"verify", "db", "--database-url", cluster.URL("no_such_db")}, nil, `database "no_such_db" does not exist`},
		{"UnknownRole", []string{"status"}, map[string]string{"DATABASE_URL": strings.Replace(url, "postgres@", "nobody@", 1)}, `role "nobody" does not exist`},
		{"NothingListening", []string{"migrate", "up", "--database-url", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"}, nil, "connection refused"},
		{"MalformedURL", []string{"status", "--database-url", "postgres://%zz"}, nil, "bad database URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, c.vars, c.args...)
			if code != 2 || !strings.Contains(errOut, c.msg) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line containing %q", code, errOut, c.msg)
			}
		})
	}
}

// TestCLI_EnableAgain: a DBA runs `pgtrail enable users` (or SELECT audit.enable('users')) again,
// without the options given the first time. What must survive: the excluded columns (the next
// update wrote "password_hash": "leaked" into the immutable trail when they were reset), the PII
// columns and the mode, and the output says what was kept. Clearing them takes saying so.
func TestCLI_EnableAgain(t *testing.T) {
	url := testenv.Postgres(t)
	vars := map[string]string{"DATABASE_URL": url}
	db := testdb.Pool(t, url)
	if code, _, errOut := runCLI(t, vars, "migrate", "up"); code != 0 {
		t.Fatal(errOut)
	}
	testdb.Exec(t, db, `CREATE TABLE users (id int PRIMARY KEY, email text, password_hash text); INSERT INTO users VALUES (1, 'a@example.com', 'h0')`)
	steps := []struct {
		args     []string
		sql      string // run after the command
		inStdout string
	}{
		{[]string{"enable", "users", "--exclude-columns", "password_hash", "--pii-columns", "email", "--mode", "trigger"}, "", "excluding password_hash"},
		{[]string{"enable", "users"}, `UPDATE users SET password_hash = 'leaked-1'`, "kept: mode trigger, excluding password_hash, masking email"},
		{nil, `SELECT audit.enable('users'); UPDATE users SET password_hash = 'leaked-2'`, ""},
		{[]string{"enable", "users", "--exclude-columns", ""}, `UPDATE users SET password_hash = 'shown-3'`, "auditing public.users in mode trigger"},
	}
	for _, s := range steps {
		if s.args != nil {
			code, out, errOut := runCLI(t, vars, s.args...)
			if code != 0 || !strings.Contains(out, s.inStdout) {
				t.Errorf("pgtrail %s: exit %d, stdout %q, stderr %q; want stdout with %q", strings.Join(s.args, " "), code, out, errOut, s.inStdout)
			}
		}
		if s.sql != "" {
			testdb.Exec(t, db, s.sql)
		}
	}
	testdb.Seal(t, db)
	var leaked, shown int
	var pii string
	if err := db.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE e.after_state::text LIKE '%leaked%'), count(*) FILTER (WHERE e.after_state::text LIKE '%shown-3%'),
		(SELECT array_to_string(columns, ',') FROM audit.pii_columns)
		FROM audit.events e`).Scan(&leaked, &shown, &pii); err != nil {
		t.Fatal(err)
	}
	if leaked != 0 || shown == 0 || pii != "email" {
		// (The entry of the update after clearing holds the value before it in its before image:
		// clearing the exclusion is the DBA's choice.)
		t.Errorf("entries with an excluded value: %d (want 0); with the value after clearing: %d (want > 0); PII columns %q (want email)", leaked, shown, pii)
	}
}
