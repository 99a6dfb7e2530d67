package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/eventtest"
	"github.com/pgtrail/pgtrail/internal/query"
)

var str = eventtest.Str

// athenaEvents is a trail that each ready-made query of docs/athena.md selects from, with rows
// each must skip: other tenants, other actors, too old, outside the dt range.
func athenaEvents(now time.Time) []pgtrail.Event {
	acme, globex := str("acme"), str("globex")
	quarter := now.Add(-2 * time.Second)
	ev := func(at time.Time, tenant *string, actor, action, rtype string, rid *string, outcome string, ip *string, details *string) pgtrail.Event {
		return pgtrail.Event{OccurredAt: at, TenantID: tenant, ActorID: actor, ActionType: action, ResourceType: rtype,
			ResourceID: rid, Outcome: outcome, ActorIP: ip, Details: details}
	}
	bad, other := str("198.51.100.9"), str("203.0.113.5")
	return []pgtrail.Event{
		// 1-5: all actions by user-42 in the last 30 days (tenant acme): seq 1 and 5 only.
		ev(now.Add(-10*24*time.Hour), acme, "user-42", "UPDATE", "public.accounts", str("7"), "SUCCESS", nil, nil),
		ev(now.Add(-40*24*time.Hour), acme, "user-42", "LOGIN", "session", nil, "SUCCESS", nil, nil),
		ev(now.Add(-5*24*time.Hour), globex, "user-42", "UPDATE", "public.accounts", str("8"), "SUCCESS", nil, nil),
		ev(now.Add(-3*24*time.Hour), acme, "user-7", "UPDATE", "public.accounts", str("9"), "SUCCESS", nil, nil),
		// On the first day of the 30-day window: Athena's CAST(date - interval AS varchar) is a
		// date there; in DuckDB it is a timestamp string, which sorts after this day's dt.
		ev(now.Add(-30*24*time.Hour+time.Minute), acme, "user-42", "DELETE", "public.accounts", str("10"), "SUCCESS", nil, nil),
		// 6-9: access to public.patients 42 in 2024: seq 6 and 7.
		ev(time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC), acme, "dr-who", "UPDATE", "public.patients", str("42"), "SUCCESS", nil, nil),
		ev(time.Date(2024, 6, 1, 9, 0, 0, 0, time.UTC), acme, "nurse-1", "VIEW_PII", "public.patients", str("42"), "SUCCESS", nil, nil),
		ev(time.Date(2024, 3, 5, 11, 0, 0, 0, time.UTC), acme, "dr-who", "UPDATE", "public.patients", str("43"), "SUCCESS", nil, nil),
		ev(time.Date(2025, 1, 2, 8, 0, 0, 0, time.UTC), acme, "dr-who", "UPDATE", "public.patients", str("42"), "SUCCESS", nil, nil),
		// 10-19: failed logins in the last hour: 10-14, 15 (LOGIN FAILURE), 18, 19; 198.51.100.9
		// fails 6 times (a brute-force candidate), 203.0.113.5 twice (not one).
		ev(now.Add(-50*time.Minute), acme, "a", "FAILED_LOGIN", "session", nil, "FAILURE", bad, nil),
		ev(now.Add(-45*time.Minute), acme, "b", "FAILED_LOGIN", "session", nil, "FAILURE", bad, nil),
		ev(now.Add(-40*time.Minute), acme, "a", "FAILED_LOGIN", "session", nil, "FAILURE", bad, nil),
		ev(now.Add(-35*time.Minute), acme, "b", "FAILED_LOGIN", "session", nil, "FAILURE", bad, nil),
		ev(now.Add(-32*time.Minute), acme, "a", "FAILED_LOGIN", "session", nil, "FAILURE", bad, nil),
		ev(now.Add(-30*time.Minute), acme, "c", "LOGIN", "session", nil, "FAILURE", bad, nil),
		ev(now.Add(-20*time.Minute), acme, "c", "LOGIN", "session", nil, "SUCCESS", bad, nil),
		ev(now.Add(-2*time.Hour), acme, "a", "FAILED_LOGIN", "session", nil, "FAILURE", bad, nil),
		ev(now.Add(-15*time.Minute), acme, "d", "FAILED_LOGIN", "session", nil, "FAILURE", other, nil),
		ev(now.Add(-10*time.Minute), acme, "d", "FAILED_LOGIN", "session", nil, "FAILURE", other, nil),
		// 20-23: grants this quarter: 20 and 21.
		ev(quarter, acme, "admin", "ROLE_GRANT", "role", str("billing"), "SUCCESS", nil, nil),
		ev(quarter, nil, "postgres", "DDL", "table", str("public.accounts"), "SUCCESS", nil,
			str(`{"query": "GRANT SELECT ON accounts TO bi", "command_tag": "GRANT"}`)),
		ev(quarter, nil, "postgres", "DDL", "table", str("public.t"), "SUCCESS", nil,
			str(`{"query": "CREATE TABLE t ()", "command_tag": "CREATE TABLE"}`)),
		ev(quarter, globex, "admin", "ROLE_GRANT", "role", str("billing"), "SUCCESS", nil, nil),
	}
}

// athenaQueries returns the ready-made queries of docs/athena.md (its ```sql blocks that
// SELECT), adapted where DuckDB differs: date - interval and date_trunc give timestamps there,
// whose text sorts after the dt of their first day, so they are cast to date first (a form
// Athena accepts too).
func athenaQueries(t *testing.T) []string {
	doc, err := os.ReadFile("../../docs/athena.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		q := m[1]
		if !strings.HasPrefix(strings.TrimSpace(q), "SELECT") {
			continue
		}
		for _, r := range [][2]string{
			{"CAST(current_date - INTERVAL '30' DAY AS varchar)", "CAST(CAST(current_date - INTERVAL '30' DAY AS date) AS varchar)"},
			{"CAST(date_trunc('quarter', current_date) AS varchar)", "CAST(CAST(date_trunc('quarter', current_date) AS date) AS varchar)"},
		} {
			q = strings.ReplaceAll(q, r[0], r[1])
		}
		out = append(out, q)
	}
	return out
}

func runJSON(t *testing.T, cfg query.Config, q string) []map[string]any {
	t.Helper()
	var out bytes.Buffer
	cfg.Out, cfg.Format = &out, query.FormatJSON
	if err := query.Run(context.Background(), cfg, q); err != nil {
		t.Fatalf("run %s: %v", firstLine(q), err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("output of %s is not JSON: %v\n%s", firstLine(q), err, out.String())
	}
	return rows
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// TestRun_AthenaQueries runs every ready-made query of docs/athena.md against an archive written
// by archive.Writer and checks that each returns exactly its rows.
func TestRun_AthenaQueries(t *testing.T) {
	now := time.Now().UTC()
	events := eventtest.Chain(athenaEvents(now))
	sink := eventtest.Archive(t, events, 7)
	queries := athenaQueries(t)
	if len(queries) != 5 {
		t.Fatalf("found %d SELECT queries in docs/athena.md, want the 5 this test knows", len(queries))
	}
	col := func(rows []map[string]any, name string) []any {
		var out []any
		for _, r := range rows {
			out = append(out, r[name])
		}
		return out
	}
	cases := []struct {
		name  string
		check func(t *testing.T, rows []map[string]any)
	}{
		{"ActionsByActor", func(t *testing.T, rows []map[string]any) {
			if got := col(rows, "seq"); !slices.Equal(got, []any{1.0, 5.0}) {
				t.Errorf("seq = %v, want [1 5] (user-42 in acme within 30 days)", got)
			}
		}},
		{"AccessToResource", func(t *testing.T, rows []map[string]any) {
			if got := col(rows, "actor_id"); !slices.Equal(got, []any{"dr-who", "nurse-1"}) {
				t.Errorf("actors = %v, want [dr-who nurse-1] (public.patients 42 in 2024)", got)
			}
		}},
		{"FailedLogins", func(t *testing.T, rows []map[string]any) {
			if got := col(rows, "actor_id"); !slices.Equal(got, []any{"d", "d", "c", "a", "b", "a", "b", "a"}) {
				t.Errorf("actors = %v, want the 8 failures of the last hour, newest first", got)
			}
		}},
		{"BruteForce", func(t *testing.T, rows []map[string]any) {
			if len(rows) != 1 || rows[0]["source"] != "198.51.100.9" || rows[0]["failures"] != 6.0 || rows[0]["accounts"] != 3.0 {
				t.Errorf("rows = %v, want one: 198.51.100.9 with 6 failures on 3 accounts", rows)
			}
		}},
		{"Grants", func(t *testing.T, rows []map[string]any) {
			if got := col(rows, "action_type"); !slices.Equal(got, []any{"ROLE_GRANT", "DDL"}) {
				t.Errorf("actions = %v, want [ROLE_GRANT DDL] (acme and _none this quarter)", got)
			}
			if len(rows) == 2 && (rows[1]["command"] != "GRANT" || rows[1]["statement"] != "GRANT SELECT ON accounts TO bi") {
				t.Errorf("DDL row = %v, want command GRANT and its statement (json_extract_scalar)", rows[1])
			}
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.check(t, runJSON(t, query.Config{Sink: sink}, queries[i]))
		})
	}
}

// hiddenSink hides the file sink's directory, as an S3 sink would: Run must download.
type hiddenSink struct{ archive.Sink }

// TestRun_Download reads a non-local archive by downloading the files the flags select, and
// checks that the partition columns are the keys' values, not DuckDB's URL-decoded ones.
func TestRun_Download(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	events := eventtest.Chain([]pgtrail.Event{
		{OccurredAt: at, TenantID: str("a/b"), ActorID: "x", ActionType: "LOGIN", ResourceType: "session"},
		{OccurredAt: at, TenantID: str("_none"), ActorID: "y", ActionType: "LOGIN", ResourceType: "session"},
		{OccurredAt: at, TenantID: nil, ActorID: "z", ActionType: "LOGIN", ResourceType: "session"},
		{OccurredAt: at.AddDate(0, 0, 3), TenantID: str("a/b"), ActorID: "w", ActionType: "LOGIN", ResourceType: "session"},
	})
	sink := hiddenSink{eventtest.Archive(t, events, 10)}
	tmp := t.TempDir()
	rows := runJSON(t, query.Config{Sink: sink, TempDir: tmp}, "SELECT actor_id, tenant, tenant_id, dt FROM audit_events ORDER BY seq")
	want := []map[string]any{
		{"actor_id": "x", "tenant": "a%2Fb", "tenant_id": "a/b", "dt": "2024-05-01"},
		{"actor_id": "y", "tenant": "%5Fnone", "tenant_id": "_none", "dt": "2024-05-01"},
		{"actor_id": "z", "tenant": "_none", "tenant_id": nil, "dt": "2024-05-01"},
		{"actor_id": "w", "tenant": "a%2Fb", "tenant_id": "a/b", "dt": "2024-05-04"},
	}
	if !equalRows(rows, want) {
		t.Errorf("rows = %v\nwant %v", rows, want)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("downloaded files left in %s: %v", tmp, left)
	}
	// --tenant and --since prune the downloaded files: only one tenant's later day remains.
	rows = runJSON(t, query.Config{Sink: sink, Tenant: str("a/b"), Since: at.AddDate(0, 0, 1)}, "SELECT actor_id FROM pgtrail.audit_events")
	if !equalRows(rows, []map[string]any{{"actor_id": "w"}}) {
		t.Errorf("pruned rows = %v, want only w", rows)
	}
	// Nothing selected: the table exists, empty, with its columns.
	rows = runJSON(t, query.Config{Sink: sink, Tenant: str("nobody")}, "SELECT count(*) AS n, max(dt) AS d FROM audit_events")
	if !equalRows(rows, []map[string]any{{"n": 0.0, "d": nil}}) {
		t.Errorf("empty table: rows = %v", rows)
	}
}

func equalRows(a, b []map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestRun_Formats checks the table and CSV output of one row.
func TestRun_Formats(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)
	events := eventtest.Chain([]pgtrail.Event{{OccurredAt: at, ActorID: "line\nbreak", ActionType: "LOGIN", ResourceType: "session",
		ChangedColumns: []string{"a", "b"}}})
	sink := eventtest.Archive(t, events, 10)
	q := "SELECT seq, actor_id, occurred_at, changed_columns FROM audit_events"
	cases := []struct{ format, want string }{
		{query.FormatCSV, "seq,actor_id,occurred_at,changed_columns\n1,\"line\nbreak\",2024-05-01T12:00:00.123456Z,\"[\"\"a\"\",\"\"b\"\"]\"\n"},
		{query.FormatTable, "seq  actor_id       occurred_at                  changed_columns\n1    \"line\\nbreak\"  2024-05-01T12:00:00.123456Z  [\"a\",\"b\"]\n(1 row(s))\n"},
	}
	for _, c := range cases {
		t.Run(c.format, func(t *testing.T) {
			var out bytes.Buffer
			if err := query.Run(context.Background(), query.Config{Sink: sink, Out: &out, Format: c.format}, q); err != nil {
				t.Fatal(err)
			}
			if out.String() != c.want {
				t.Errorf("output:\n%q\nwant\n%q", out.String(), c.want)
			}
		})
	}
}
