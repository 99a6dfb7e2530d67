package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/testdb"
)

func rulesFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAlertObserver_BadRules: a rules file with problems refuses the start (exit 2) before
// anything connects, with every problem on one line, each naming file, line and field.
func TestAlertObserver_BadRules(t *testing.T) {
	cfg, err := pgx.ParseConfig("postgres://nobody@127.0.0.1:1/none") // never reached
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, body string
		want       []string
	}{
		{"UnknownType", "rules:\n  - name: x\n    type: brute_forse\n", []string{`rules.yaml:3: rules[0].type: unknown rule type "brute_forse"`}},
		{"Malformed", "rules:\n  - name: x\n   type: tampering\n", []string{"rules.yaml:"}},
		{"SeveralProblems", "rules:\n  - {name: x, type: tampering, threshold: 3}\n  - {name: y, type: bulk_exprot}\n",
			[]string{`rules.yaml:2: rules[0].threshold: unknown field "threshold" for a tampering rule`, "; ", `rules.yaml:3: rules[1].type: unknown rule type "bulk_exprot"`}},
		{"BadValue", "rules:\n  - {name: y, type: bulk_export, threshold: lots}\n", []string{"rules.yaml:2: cannot unmarshal !!str `lots` into int64"}},
		{"UnsetEnv", "webhooks:\n  ops:\n    url: https://hooks.example.com/x\n    headers: {Authorization: 'Bearer ${ALERT_TOKEN}'}\nrules:\n  - {name: x, type: tampering}\n",
			[]string{"rules.yaml:4: webhooks.ops.headers.Authorization: environment variable ALERT_TOKEN is not set"}},
	}
	e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs, _, err := alertObserver(context.Background(), e, rulesFile(t, tc.body), cfg, prometheus.NewRegistry(), log)
			var ex *exitError
			if obs != nil || !errors.As(err, &ex) || ex.code != exitNotRun {
				t.Fatalf("alertObserver = %v, %v; want a could-not-run error", obs, err)
			}
			msg := oneLine(err)
			if !strings.HasPrefix(msg, "--rules: ") {
				t.Errorf("error %q does not name the flag", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q\nlacks %q", msg, w)
				}
			}
		})
	}
	if _, _, err := alertObserver(context.Background(), e, filepath.Join(t.TempDir(), "nope.yaml"), cfg, prometheus.NewRegistry(), log); err == nil ||
		!strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing rules file: %v", err)
	}
}

// TestAlertObserver_NoRules: without --rules there is no Observer at all (a nil interface, which
// the stream skips), and stop is safe to call.
func TestAlertObserver_NoRules(t *testing.T) {
	obs, stop, err := alertObserver(context.Background(), &env{getenv: os.Getenv}, "", nil, nil, slog.Default())
	if obs != nil || err != nil {
		t.Fatalf("alertObserver(\"\") = %v, %v", obs, err)
	}
	stop()
}

// TestAlertObserver_Wiring: the Observer built from flags delivers to the webhook with the token
// from the environment and records the ALERT event through its own pool; stop flushes both.
func TestAlertObserver_Wiring(t *testing.T) {
	db, url := testdb.New(t)
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { auth.Store(r.Header.Get("Authorization")) }))
	defer srv.Close()
	path := rulesFile(t, "webhooks:\n  ops: {url: '${HOOK}', headers: {Authorization: 'Bearer ${ALERT_TOKEN}'}}\n"+
		"default_webhooks: [ops]\nrules:\n  - {name: export, type: bulk_export}\n")
	vars := map[string]string{"HOOK": srv.URL, "ALERT_TOKEN": "t0k3n"}
	e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string { return vars[k] }}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	obs, stop, err := alertObserver(context.Background(), e, path, cfg, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	details := `{"rows": 20000}`
	obs.Archived(context.Background(), []pgtrail.Event{{Seq: 1, EventID: "00000000-0000-4000-8000-000000000001", OccurredAt: time.Now(),
		ActionType: "EXPORT", ResourceType: "report", Outcome: "SUCCESS", ActorID: "eve", DBUser: "app", Details: &details}})
	stop()
	if got, _ := auth.Load().(string); got != "Bearer t0k3n" {
		t.Errorf("webhook got Authorization %q, want the token from ALERT_TOKEN", got)
	}
	testdb.Seal(t, db)
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events WHERE action_type = 'ALERT' AND resource_id = 'export'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d ALERT events recorded (%v), want 1", n, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "pgtrail_alert_fired_total"
	}
	if !found {
		t.Error("alert metrics not registered")
	}
}
