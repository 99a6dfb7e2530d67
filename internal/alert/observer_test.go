package alert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgtrail/pgtrail/internal/alert"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/cdc"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/testdb"
)

// daemon is a database with an audited table, a real stream archiving it to a file sink with
// an alert Observer attached, a sealer, and a webhook receiver.
type daemon struct {
	db      *pgxpool.Pool
	hook    *hook
	metrics *alert.Metrics
	reg     *prometheus.Registry
	obs     *alert.Observer
}

// rulesHeader points every rule at the test's webhook, with quick retries.
const rulesHeader = `
webhooks:
  ops:
    url: ${HOOK}/alerts
    headers: {Authorization: "Bearer ${TOKEN}"}
    backoff: 20ms
    max_backoff: 100ms
default_webhooks: [ops]
rules:
`

// start runs the daemon with the given rules (YAML list items, appended to rulesHeader); the
// webhook answers with statuses first, then 200.
func start(t *testing.T, rules string, statuses ...int) *daemon {
	t.Helper()
	db, url := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric); SELECT audit.enable('accounts');
		CREATE TABLE other (id int PRIMARY KEY); SELECT audit.enable('other')`)
	d := &daemon{db: db, hook: newHook(t, statuses...), reg: prometheus.NewRegistry()}
	d.metrics = alert.NewMetrics(d.reg)
	cfg, err := alert.Parse([]byte(rulesHeader+rules), "rules.yaml",
		func(k string) (string, bool) {
			v, ok := map[string]string{"HOOK": d.hook.URL, "TOKEN": "t0k3n"}[k]
			return v, ok
		})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testLog(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	d.obs, err = alert.New(cfg, alert.Options{DB: db, Logger: log, Metrics: d.metrics})
	if err != nil {
		t.Fatal(err)
	}
	sink, err := archive.Open(context.Background(), "file://"+t.TempDir(), archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := cdc.New(cdc.Config{ConnConfig: conn, BatchEvents: 200, BatchAge: 20 * time.Millisecond,
		StandbyInterval: time.Second, HeartbeatInterval: 200 * time.Millisecond, ShutdownTimeout: 10 * time.Second,
		Observer: d.obs, Logger: log, Metrics: cdc.NewMetrics(nil)}, &archive.Writer{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.obs.Start(ctx)
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()
	sealer := &chain.Sealer{DB: db, Interval: 20 * time.Millisecond, Logger: log}
	sealer.Start(ctx)
	t.Cleanup(func() {
		cancel()
		sealer.Stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stream: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("stream did not stop within 30s")
		}
		d.obs.Stop()
	})
	return d
}

// exec runs sql as the application would: one transaction, with the actor's context set.
func (d *daemon) exec(t *testing.T, actorID, actorIP, sql string) {
	t.Helper()
	_, err := d.db.Exec(context.Background(), fmt.Sprintf(`BEGIN;
		SELECT set_config('pgtrail.actor_id', %s, true), set_config('pgtrail.actor_ip', %s, true);
		%s;
		COMMIT`, quote(actorID), quote(actorIP), sql))
	if err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// settle seals everything and waits until the Observer has seen the whole chain.
func (d *daemon) settle(t *testing.T) {
	t.Helper()
	testdb.Streamed(t, d.db) // application events go through the WAL
	testdb.Seal(t, d.db)
	var head int64
	if err := d.db.QueryRow(context.Background(), "SELECT seq FROM audit.chain_head").Scan(&head); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(d.metrics.LastSeq) < float64(head) {
		if time.Now().After(deadline) {
			t.Fatalf("the rules saw seq %v of %d within 30s", testutil.ToFloat64(d.metrics.LastSeq), head)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fired is the number of alerts raised, all rules together.
func (d *daemon) fired(t *testing.T) float64 {
	t.Helper()
	mfs, err := d.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "pgtrail_alert_fired_total" {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// quiet checks that nothing fired and nothing reached the webhook.
func (d *daemon) quiet(t *testing.T, what string) {
	t.Helper()
	d.settle(t)
	if n := d.fired(t); n != 0 {
		t.Fatalf("%s: %v alerts fired, want none", what, n)
	}
	if n := len(d.hook.requests()); n != 0 {
		t.Fatalf("%s: webhook got %d requests, want none", what, n)
	}
}

// alerts waits for n webhook requests and decodes their bodies.
func (d *daemon) alerts(t *testing.T, n int) []alert.Alert {
	t.Helper()
	reqs := d.hook.wait(t, n, 30*time.Second)
	var out []alert.Alert
	for _, r := range reqs {
		var a alert.Alert
		if err := json.Unmarshal(r.body, &a); err != nil {
			t.Fatalf("webhook body %s: %v", r.body, err)
		}
		if r.header.Get("Authorization") != "Bearer t0k3n" {
			t.Errorf("webhook request without the configured Authorization header: %v", r.header)
		}
		out = append(out, a)
	}
	return out
}

// recorded returns the ALERT events in audit.events (sealing first) as rule → details.
func (d *daemon) recorded(t *testing.T, want int) []alert.Alert {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		testdb.Seal(t, d.db)
		rows, err := d.db.Query(context.Background(), `SELECT resource_type, resource_id, outcome, details::text
			FROM audit.events WHERE action_type = 'ALERT' ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		var out []alert.Alert
		for rows.Next() {
			var rtype, rid, outcome, det string
			if err := rows.Scan(&rtype, &rid, &outcome, &det); err != nil {
				t.Fatal(err)
			}
			var a alert.Alert
			if err := json.Unmarshal([]byte(det), &a); err != nil {
				t.Fatalf("ALERT details %s: %v", det, err)
			}
			if rtype != "alert_rule" || rid != a.Rule || outcome != "SUCCESS" {
				t.Errorf("ALERT event resource %s/%s outcome %s for rule %s", rtype, rid, outcome, a.Rule)
			}
			out = append(out, a)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(out) >= want || time.Now().After(deadline) {
			if len(out) != want {
				t.Fatalf("%d ALERT events in audit.events, want %d", len(out), want)
			}
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failedLogin records a failed login for user from ip, as an application would.
func (d *daemon) failedLogin(t *testing.T, user, ip string) {
	t.Helper()
	d.exec(t, "", ip, fmt.Sprintf(`SELECT audit.log_event('FAILED_LOGIN', 'user', %s, 'FAILURE', '{"reason": "bad password"}')`, quote(user)))
}

// TestObserver_BruteForce: one address trying four accounts stays quiet; the sixth failure
// within five minutes fires one alert with all six events, recorded as an ALERT event, which in
// turn fires nothing; more failures in the cooldown stay quiet.
func TestObserver_BruteForce(t *testing.T) {
	d := start(t, "  - {name: brute-force, type: brute_force}\n")
	for _, user := range []string{"alice", "bob", "carol", "dave"} {
		d.failedLogin(t, user, "203.0.113.7")
	}
	d.failedLogin(t, "erin", "198.51.100.1") // another address
	d.exec(t, "alice", "203.0.113.7", `SELECT audit.log_event('LOGIN', 'user', 'alice')`)
	d.quiet(t, "four failed logins")

	d.failedLogin(t, "frank", "203.0.113.7")
	d.failedLogin(t, "grace", "203.0.113.7")
	a := d.alerts(t, 1)[0]
	if a.Rule != "brute-force" || a.Severity != "high" || a.Key != "ip:203.0.113.7" ||
		!strings.Contains(a.Summary, "6 FAILED_LOGIN events for ip:203.0.113.7 within 5m (more than 5)") {
		t.Errorf("alert %+v", a)
	}
	if time.Since(a.FiredAt) > time.Minute || a.FiredAt.After(time.Now()) {
		t.Errorf("fired_at %s is not now", a.FiredAt)
	}
	// The events are the six failures from that address, as stored.
	rows, err := d.db.Query(context.Background(), `SELECT seq, event_id::text, occurred_at, resource_id FROM audit.events
		WHERE action_type = 'FAILED_LOGIN' AND actor_ip = '203.0.113.7' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	i := 0
	for rows.Next() {
		var seq int64
		var id, rid string
		var at time.Time
		if err := rows.Scan(&seq, &id, &at, &rid); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
		if i < len(a.Events) {
			e := a.Events[i]
			if e.Seq != seq || e.EventID != id || !e.OccurredAt.Equal(at) || e.ActionType != "FAILED_LOGIN" ||
				e.ResourceType != "user" || e.ResourceID == nil || *e.ResourceID != rid || e.ActorIP == nil || *e.ActorIP != "203.0.113.7" {
				t.Errorf("alert event %d = %+v, want seq %d %s %s", i, e, seq, id, rid)
			}
		}
		i++
	}
	if len(a.Events) != 6 || len(seqs) != 6 || a.FirstSeq != seqs[0] || a.LastSeq != seqs[5] {
		t.Errorf("alert holds %d events, seq %d..%d; the database has %v", len(a.Events), a.FirstSeq, a.LastSeq, seqs)
	}

	rec := d.recorded(t, 1)[0]
	if rec.Rule != a.Rule || rec.Key != a.Key || rec.FirstSeq != a.FirstSeq || len(rec.Events) != 6 {
		t.Errorf("recorded ALERT %+v differs from the webhook's %+v", rec, a)
	}
	// More failures in the cooldown, and the ALERT event itself going through the stream: quiet.
	d.failedLogin(t, "heidi", "203.0.113.7")
	d.failedLogin(t, "ivan", "203.0.113.7")
	d.settle(t)
	if n := d.fired(t); n != 1 {
		t.Errorf("%v alerts fired in all, want 1", n)
	}
	if n := testutil.ToFloat64(d.metrics.Suppressed.WithLabelValues("brute-force")); n != 2 {
		t.Errorf("suppressed = %v, want 2", n)
	}
	if n := len(d.hook.requests()); n != 1 {
		t.Errorf("webhook got %d requests, want 1", n)
	}
}

// TestObserver_BulkExport: an export of 10,000 rows is quiet, one of 10,001 fires.
func TestObserver_BulkExport(t *testing.T) {
	d := start(t, "  - {name: export, type: bulk_export}\n")
	d.exec(t, "eve", "192.0.2.1", `SELECT audit.log_event('EXPORT', 'report', 'customers', 'SUCCESS', '{"rows": 10000, "format": "csv"}')`)
	d.exec(t, "eve", "192.0.2.1", `SELECT audit.log_event('EXPORT', 'report', 'customers')`)
	d.quiet(t, "an export of 10,000 rows")
	d.exec(t, "eve", "192.0.2.1", `SELECT audit.log_event('EXPORT', 'report', 'customers', 'SUCCESS', '{"rows": 10001, "format": "csv"}')`)
	a := d.alerts(t, 1)[0]
	if a.Rule != "export" || a.Key != "actor:eve" || len(a.Events) != 1 || a.Events[0].ActorID != "eve" ||
		!strings.Contains(a.Summary, "EXPORT of 10001 records (details.rows) from report customers by eve (more than 10000)") {
		t.Errorf("alert %+v", a)
	}
	d.recorded(t, 1)
}

// TestObserver_PrivilegeEscalation: granting an ordinary role is quiet; granting admin fires.
func TestObserver_PrivilegeEscalation(t *testing.T) {
	d := start(t, "  - {name: admin-grant, type: privilege_escalation, severity: critical}\n")
	d.exec(t, "alice", "", `SELECT audit.log_event('ROLE_GRANT', 'user', 'bob', 'SUCCESS', '{"role": "readonly"}')`)
	d.quiet(t, "a grant of readonly")
	d.exec(t, "alice", "", `SELECT audit.log_event('ROLE_GRANT', 'user', 'bob', 'SUCCESS', '{"role": "admin"}')`)
	a := d.alerts(t, 1)[0]
	if a.Rule != "admin-grant" || a.Severity != "critical" || a.Key != "role:admin grantee:bob" ||
		!strings.Contains(a.Summary, `ROLE_GRANT of admin role "admin" to bob by alice`) {
		t.Errorf("alert %+v", a)
	}
}

// TestObserver_OffHours: VIEW_PII inside working hours is quiet, outside fires. Working hours
// are set around the current time, so the test means the same at any hour.
func TestObserver_OffHours(t *testing.T) {
	h := time.Now().UTC().Hour()
	hours := func(from, to int) string { return fmt.Sprintf("%02d:00-%02d:00", (from+24)%24, (to+24)%24) }
	d := start(t, fmt.Sprintf(`  - {name: pii-quiet, type: off_hours, working_hours: "%s", weekdays: [mon, tue, wed, thu, fri, sat, sun]}
  - {name: pii-loud, type: off_hours, working_hours: "%s", weekdays: [mon, tue, wed, thu, fri, sat, sun]}
`, hours(h-2, h+3), hours(h+3, h+6)))
	d.exec(t, "bob", "", `SELECT audit.log_event('VIEW_PII', 'customer', '42'), audit.log_event('VIEW_PII', 'customer', '43')`)
	d.exec(t, "bob", "", `SELECT audit.log_event('LOGIN', 'user', 'bob')`)
	as := d.alerts(t, 1)
	d.settle(t)
	if n := d.fired(t); n != 1 {
		t.Errorf("%v alerts, want 1 (the second view is in the cooldown)", n)
	}
	a := as[0]
	if a.Rule != "pii-loud" || a.Key != "actor:bob" || len(a.Events) != 1 || *a.Events[0].ResourceID != "42" ||
		!strings.Contains(a.Summary, "VIEW_PII of customer 42 by bob at") || !strings.Contains(a.Summary, "outside working hours "+hours(h+3, h+6)) {
		t.Errorf("alert %+v", a)
	}
}

// TestObserver_Tampering: a trigger disabled on an audited table, auditing disabled, and a
// superuser rewriting the trail with triggers off each fire; the TAMPERING events the daemon
// records for the last add nothing.
func TestObserver_Tampering(t *testing.T) {
	d := start(t, "  - {name: tampering, type: tampering}\n")
	d.exec(t, "app", "", "INSERT INTO accounts VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
	testdb.Exec(t, d.db, "ALTER TABLE accounts ADD COLUMN note text")
	d.quiet(t, "writes and ordinary DDL")

	testdb.Exec(t, d.db, "alter table accounts\n  disable trigger pgtrail_capture")
	a := d.alerts(t, 1)[0]
	if a.Key != "trigger_disabled:public.accounts" || a.Severity != "critical" || len(a.Events) != 1 || a.Events[0].ActionType != "DDL" ||
		!strings.Contains(a.Summary, ": alter table accounts disable trigger pgtrail_capture") {
		t.Errorf("alert %+v", a)
	}
	testdb.Exec(t, d.db, "SELECT audit.disable('other')")
	a = d.alerts(t, 2)[1]
	if a.Key != "audit_disabled:public.other" || a.Events[0].ActionType != "AUDIT_DISABLE" {
		t.Errorf("alert %+v", a)
	}
	testdb.Exec(t, d.db, `BEGIN; SET LOCAL session_replication_role = replica;
		UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 2; DELETE FROM audit.events WHERE seq = 3; COMMIT`)
	a = d.alerts(t, 3)[2]
	if a.Key != "trail_modified:audit.events" || a.FirstSeq != 2 || len(a.Events) != 0 ||
		!strings.Contains(a.Summary, "UPDATE of audit.events entry 2 seen in the WAL") {
		t.Errorf("alert %+v", a)
	}
	// The daemon records both changes as TAMPERING events; once the rules have seen them,
	// still three alerts.
	deadline := time.Now().Add(30 * time.Second)
	for {
		testdb.Seal(t, d.db)
		var n int
		if err := d.db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events WHERE action_type = 'TAMPERING'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= 2 { // more if the stream reconnected and saw the WAL again: still no new alert
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d TAMPERING events recorded, want 2 or more", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.settle(t)
	if n := d.fired(t); n != 3 {
		t.Errorf("%v alerts fired, want 3", n)
	}
	if n := testutil.ToFloat64(d.metrics.Suppressed.WithLabelValues("tampering")); n < 3 {
		t.Errorf("suppressed = %v, want at least 3 (the DELETE seen in the WAL, two TAMPERING events)", n)
	}
	if n := len(d.recorded(t, 3)); n != 3 {
		t.Errorf("%d ALERT events, want 3", n)
	}
}

// TestObserver_WebhookRetry: the webhook answers 500 twice; the third attempt delivers the same
// alert, and the alert is recorded once.
func TestObserver_WebhookRetry(t *testing.T) {
	d := start(t, "  - {name: export, type: bulk_export}\n", 500, 500)
	d.exec(t, "eve", "", `SELECT audit.log_event('EXPORT', 'table', 'public.customers', 'SUCCESS', '{"records": 50000}')`)
	reqs := d.hook.wait(t, 3, 30*time.Second)
	for i, r := range reqs[1:] {
		if string(r.body) != string(reqs[0].body) || r.header.Get("X-Pgtrail-Alert-Id") != reqs[0].header.Get("X-Pgtrail-Alert-Id") {
			t.Errorf("attempt %d differs from the first: %s vs %s", i+2, r.body, reqs[0].body)
		}
	}
	d.recorded(t, 1)
	d.settle(t)
	if n := len(d.hook.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	if n := testutil.ToFloat64(d.metrics.Deliveries.WithLabelValues("webhook:ops", alert.ResultDelivered)); n != 1 {
		t.Errorf("delivered = %v, want 1", n)
	}
}
