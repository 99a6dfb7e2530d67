package alert

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgtrail/pgtrail"
)

// t0 is a Monday, 10:00 UTC.
var t0 = time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC)

// event is a synthetic audit event; opts adjust it.
func event(seq int64, at time.Time, action string, opts ...func(*pgtrail.Event)) pgtrail.Event {
	e := pgtrail.Event{Seq: seq, EventID: fmt.Sprintf("00000000-0000-0000-0000-%012d", seq), OccurredAt: at,
		ActionType: action, ResourceType: "user", Outcome: "SUCCESS", ActorID: "app", DBUser: "app"}
	for _, o := range opts {
		o(&e)
	}
	return e
}

func actor(a string) func(*pgtrail.Event) { return func(e *pgtrail.Event) { e.ActorID = a } }
func ip(a string) func(*pgtrail.Event)    { return func(e *pgtrail.Event) { e.ActorIP = &a } }
func rawIP(a string) func(*pgtrail.Event) { return func(e *pgtrail.Event) { e.ActorIPRaw = &a } }
func rid(id string) func(*pgtrail.Event)  { return func(e *pgtrail.Event) { e.ResourceID = &id } }
func rtype(t string) func(*pgtrail.Event) { return func(e *pgtrail.Event) { e.ResourceType = t } }
func withDetails(js string) func(*pgtrail.Event) {
	return func(e *pgtrail.Event) { e.Details = &js }
}

// burst returns n events of action, one every step from start, seqs from seq.
func burst(seq int64, start time.Time, step time.Duration, n int, action string, opts ...func(*pgtrail.Event)) []pgtrail.Event {
	var out []pgtrail.Event
	for i := range n {
		out = append(out, event(seq+int64(i), start.Add(time.Duration(i)*step), action, opts...))
	}
	return out
}

func concat(parts ...[]pgtrail.Event) []pgtrail.Event {
	var out []pgtrail.Event
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// fired is what a test expects of an alert.
type fired struct {
	rule, key       string
	first, last     int64
	events          int
	summaryContains string
}

func engine(t *testing.T, rules string) (*Engine, *Metrics) {
	t.Helper()
	cfg, err := Parse([]byte("skip_older_than: 0s\nrules:\n"+rules), "test.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(nil)
	e, err := NewEngine(cfg, func() time.Time { return t0.Add(time.Hour) }, m)
	if err != nil {
		t.Fatal(err)
	}
	return e, m
}

func run(e *Engine, evs []pgtrail.Event) []Alert {
	var out []Alert
	for i := range evs {
		out = append(out, e.Event(&evs[i])...)
	}
	return out
}

func check(t *testing.T, got []Alert, want []fired) {
	t.Helper()
	if len(got) != len(want) {
		var s []string
		for _, a := range got {
			s = append(s, a.Rule+" "+a.Key+": "+a.Summary)
		}
		t.Fatalf("%d alerts, want %d:\n%s", len(got), len(want), strings.Join(s, "\n"))
	}
	for i, w := range want {
		g := got[i]
		if g.Rule != w.rule || g.Key != w.key || g.FirstSeq != w.first || g.LastSeq != w.last || len(g.Events) != w.events {
			t.Errorf("alert %d: %s %q seq %d..%d with %d events, want %s %q seq %d..%d with %d events (%s)",
				i, g.Rule, g.Key, g.FirstSeq, g.LastSeq, len(g.Events), w.rule, w.key, w.first, w.last, w.events, g.Summary)
		}
		if !strings.Contains(g.Summary, w.summaryContains) {
			t.Errorf("alert %d summary %q lacks %q", i, g.Summary, w.summaryContains)
		}
		if g.FiredAt.IsZero() || g.id == "" || g.Severity == "" {
			t.Errorf("alert %d: fired_at %v, id %q, severity %q: not set", i, g.FiredAt, g.id, g.Severity)
		}
	}
}

func TestEngine_Event(t *testing.T) {
	const (
		bf       = "- {name: bf, type: brute_force}\n"
		bfIP     = "- {name: bf, type: brute_force, keys: [ip]}\n"
		export   = "- {name: export, type: bulk_export}\n"
		priv     = "- {name: priv, type: privilege_escalation}\n"
		offHours = "- {name: pii, type: off_hours, timezone: Europe/Berlin, working_hours: '08:00-18:00', weekdays: [mon, tue, wed, thu, fri]}\n"
		tamper   = "- {name: tamper, type: tampering}\n"
	)
	attacker := []func(*pgtrail.Event){ip("203.0.113.7"), rid("alice")}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	sat := time.Date(2025, 3, 8, 10, 0, 0, 0, berlin)
	mon := func(h, m int) time.Time { return time.Date(2025, 3, 3, h, m, 0, 0, berlin) }
	pii := func(seq int64, at time.Time) pgtrail.Event {
		return event(seq, at, "VIEW_PII", actor("bob"), rtype("customer"), rid("42"))
	}
	cases := []struct {
		name   string
		rules  string
		events []pgtrail.Event
		want   []fired
	}{
		{"BruteForceFiveQuiet", bfIP, burst(1, t0, 10*time.Second, 5, "FAILED_LOGIN", attacker...), nil},
		{"BruteForceSixthFires", bfIP, burst(1, t0, 10*time.Second, 6, "FAILED_LOGIN", attacker...),
			[]fired{{"bf", "ip:203.0.113.7", 1, 6, 6, "6 FAILED_LOGIN events for ip:203.0.113.7 within 5m (more than 5)"}}},
		{"BruteForceOtherActionsIgnored", bfIP, burst(1, t0, time.Second, 10, "LOGIN", attacker...), nil},
		{"BruteForceSpreadBeyondWindowQuiet", bfIP, burst(1, t0, 61*time.Second, 12, "FAILED_LOGIN", attacker...), nil},
		{"BruteForceWindowIsExclusive", bfIP, burst(1, t0, time.Minute, 6, "FAILED_LOGIN", attacker...), nil},
		{"BruteForceOneAlertPerCooldown", bfIP, concat(
			burst(1, t0, time.Second, 20, "FAILED_LOGIN", attacker...),
			burst(21, t0.Add(5*time.Minute+6*time.Second), time.Second, 1, "FAILED_LOGIN", attacker...)),
			[]fired{
				{"bf", "ip:203.0.113.7", 1, 6, 6, "6 FAILED_LOGIN"},
				// After the cooldown: the window then holds #16..#21.
				{"bf", "ip:203.0.113.7", 16, 21, 6, "6 FAILED_LOGIN"},
			}},
		{"BruteForceKeysSeparate", bfIP, concat(
			burst(1, t0, time.Second, 5, "FAILED_LOGIN", ip("203.0.113.7")),
			burst(6, t0, time.Second, 5, "FAILED_LOGIN", ip("198.51.100.1"))), nil},
		{"BruteForceRawIP", bfIP, burst(1, t0, time.Second, 6, "FAILED_LOGIN", rawIP("unknown-proxy")),
			[]fired{{"bf", "ip:unknown-proxy", 1, 6, 6, ""}}},
		{"BruteForceByTargetUser", bf, burst(1, t0, time.Second, 6, "FAILED_LOGIN", withDetails(`{"user": "root"}`)),
			[]fired{{"bf", "user:root", 1, 6, 6, ""}}},
		{"BruteForceByResourceID", bf, burst(1, t0, time.Second, 6, "FAILED_LOGIN", rid("alice")),
			[]fired{{"bf", "user:alice", 1, 6, 6, ""}}},
		// actor_id equal to the database user is pgtrail's default, not who tried: a pooled
		// application failing logins for six different users must not fire.
		{"BruteForceDefaultActorNotAKey", bf, []pgtrail.Event{
			event(1, t0, "FAILED_LOGIN", rid("u1")), event(2, t0, "FAILED_LOGIN", rid("u2")),
			event(3, t0, "FAILED_LOGIN", rid("u3")), event(4, t0, "FAILED_LOGIN", rid("u4")),
			event(5, t0, "FAILED_LOGIN", rid("u5")), event(6, t0, "FAILED_LOGIN", rid("u6"))}, nil},
		{"BruteForceActorAndSameUserOneAlert", bf, burst(1, t0, time.Second, 6, "FAILED_LOGIN", actor("mallory"), rid("mallory")),
			[]fired{{"bf", "actor:mallory", 1, 6, 6, ""}}},
		{"BruteForceActorAndIPBothFire", bf, burst(1, t0, time.Second, 6, "FAILED_LOGIN", actor("mallory"), ip("203.0.113.9")),
			[]fired{{"bf", "actor:mallory", 1, 6, 6, ""}, {"bf", "ip:203.0.113.9", 1, 6, 6, ""}}},
		{"BruteForceOutOfOrder", bfIP, []pgtrail.Event{
			event(1, t0.Add(4*time.Minute), "FAILED_LOGIN", attacker...), event(2, t0.Add(time.Minute), "FAILED_LOGIN", attacker...),
			event(3, t0.Add(2*time.Minute), "FAILED_LOGIN", attacker...), event(4, t0.Add(3*time.Minute), "FAILED_LOGIN", attacker...),
			event(5, t0.Add(5*time.Minute), "FAILED_LOGIN", attacker...), event(6, t0.Add(90*time.Second), "FAILED_LOGIN", attacker...)},
			[]fired{{"bf", "ip:203.0.113.7", 1, 6, 6, ""}}},
		{"BruteForceCustomThreshold", "- {name: bf, type: brute_force, threshold: 2, window: 1m, keys: [ip]}\n",
			burst(1, t0, time.Second, 3, "FAILED_LOGIN", attacker...), []fired{{"bf", "ip:203.0.113.7", 1, 3, 3, "3 FAILED_LOGIN events for ip:203.0.113.7 within 1m (more than 2)"}}},

		{"BulkExportAtThresholdQuiet", export, []pgtrail.Event{event(1, t0, "EXPORT", actor("eve"), withDetails(`{"rows": 10000}`))}, nil},
		{"BulkExportOverThresholdFires", export, []pgtrail.Event{event(1, t0, "EXPORT", actor("eve"), rtype("report"), rid("q3"), withDetails(`{"rows": 10001}`))},
			[]fired{{"export", "actor:eve", 1, 1, 1, "EXPORT of 10001 records (details.rows) from report q3 by eve"}}},
		{"BulkExportRecordsAsString", export, []pgtrail.Event{event(1, t0, "EXPORT", actor("eve"), withDetails(`{"records": "25000"}`))},
			[]fired{{"export", "actor:eve", 1, 1, 1, "25000 records (details.records)"}}},
		{"BulkExportCount", export, []pgtrail.Event{event(1, t0, "EXPORT", actor("eve"), withDetails(`{"format": "csv", "count": 1e6}`))},
			[]fired{{"export", "actor:eve", 1, 1, 1, "1000000 records (details.count)"}}},
		{"BulkExportNoCountQuiet", export, []pgtrail.Event{event(1, t0, "EXPORT", actor("eve"), withDetails(`{"format": "csv"}`)), event(2, t0, "EXPORT", actor("eve"))}, nil},
		{"BulkExportCooldownPerActor", export, []pgtrail.Event{
			event(1, t0, "EXPORT", actor("eve"), withDetails(`{"rows": 50000}`)),
			event(2, t0.Add(time.Minute), "EXPORT", actor("eve"), withDetails(`{"rows": 50000}`)),
			event(3, t0.Add(time.Minute), "EXPORT", actor("mallory"), withDetails(`{"rows": 50000}`)),
			event(4, t0.Add(6*time.Minute), "EXPORT", actor("eve"), withDetails(`{"rows": 50000}`))},
			[]fired{{"export", "actor:eve", 1, 1, 1, ""}, {"export", "actor:mallory", 3, 3, 1, ""}, {"export", "actor:eve", 4, 4, 1, ""}}},
		{"BulkExportCustomFieldAndThreshold", "- {name: export, type: bulk_export, threshold: 100, count_fields: [n]}\n",
			[]pgtrail.Event{event(1, t0, "EXPORT", actor("eve"), withDetails(`{"rows": 5000, "n": 101}`))},
			[]fired{{"export", "actor:eve", 1, 1, 1, "101 records (details.n)"}}},

		{"PrivilegeEscalationRoleInResourceID", priv, []pgtrail.Event{event(1, t0, "ROLE_GRANT", actor("alice"), rtype("role"), rid("admin"))},
			[]fired{{"priv", "role:admin", 1, 1, 1, `ROLE_GRANT of admin role "admin" by alice`}}},
		{"PrivilegeEscalationRoleInDetails", priv, []pgtrail.Event{event(1, t0, "ROLE_GRANT", actor("alice"), rid("bob"), withDetails(`{"role": "SuperUser"}`))},
			[]fired{{"priv", "role:SuperUser grantee:bob", 1, 1, 1, `"SuperUser" to bob`}}},
		{"PrivilegeEscalationOrdinaryRoleQuiet", priv, []pgtrail.Event{
			event(1, t0, "ROLE_GRANT", rid("readonly")), event(2, t0, "ROLE_GRANT", rid("bob"), withDetails(`{"role": "analyst"}`)),
			event(3, t0, "ROLE_REVOKE", rid("admin"))}, nil},
		{"PrivilegeEscalationCustomRoles", "- {name: priv, type: privilege_escalation, admin_roles: [billing_admin]}\n", []pgtrail.Event{
			event(1, t0, "ROLE_GRANT", rid("admin")), event(2, t0, "ROLE_GRANT", rid("Billing_Admin"), withDetails(`{"grantee": "carol"}`))},
			[]fired{{"priv", "role:Billing_Admin grantee:carol", 2, 2, 1, ""}}},

		{"OffHoursWeekend", offHours, []pgtrail.Event{pii(1, sat)},
			[]fired{{"pii", "actor:bob", 1, 1, 1, "VIEW_PII of customer 42 by bob at Sat 2025-03-08 10:00 Europe/Berlin, outside working hours 08:00-18:00"}}},
		{"OffHoursWorkingTimeQuiet", offHours, []pgtrail.Event{pii(1, mon(8, 0)), pii(2, mon(12, 0)), pii(3, mon(17, 59))}, nil},
		{"OffHoursEdges", offHours, []pgtrail.Event{pii(1, mon(7, 59)), pii(2, mon(18, 0).Add(10*time.Minute))},
			[]fired{{"pii", "actor:bob", 1, 1, 1, "07:59"}, {"pii", "actor:bob", 2, 2, 1, "18:10"}}},
		{"OffHoursTimezone", offHours, []pgtrail.Event{pii(1, time.Date(2025, 3, 3, 17, 30, 0, 0, time.UTC))}, // 18:30 in Berlin
			[]fired{{"pii", "actor:bob", 1, 1, 1, "18:30"}}},
		{"OffHoursOvernightShift", "- {name: pii, type: off_hours, working_hours: '22:00-06:00', weekdays: [mon,tue,wed,thu,fri,sat,sun]}\n",
			[]pgtrail.Event{pii(1, t0.Add(13*time.Hour)), pii(2, t0.Add(-5*time.Hour)), pii(3, t0)},
			[]fired{{"pii", "actor:bob", 3, 3, 1, ""}}},
		{"OffHoursOtherActionsIgnored", offHours, []pgtrail.Event{event(1, sat, "LOGIN", actor("bob"))}, nil},

		{"TamperingEvent", tamper, []pgtrail.Event{event(1, t0, "TAMPERING", rtype("audit.events"), rid("3"), actor("pgtrail"),
			withDetails(`{"operation": "UPDATE", "seen_by": "pgtrail stream"}`))},
			[]fired{{"tamper", "trail_modified:audit.events", 1, 1, 1, "UPDATE of audit.events entry 3 seen in the WAL"}}},
		{"TamperingCaptureWarning", tamper, []pgtrail.Event{
			event(1, t0, "UPDATE", rtype("public.accounts"), rid("1"), actor("(unknown)"),
				withDetails(`{"capture_warning": "no context: the change was made with pgtrail's triggers disabled; who made it is unknown"}`)),
			event(2, t0, "UPDATE", rtype("public.accounts"), rid("1"), withDetails(`{"note": {"capture_warning": "nested: not the stream's"}}`))},
			[]fired{{"tamper", "capture_warning:public.accounts", 1, 1, 1, "UPDATE of public.accounts 1 flagged by the stream: no context"}}},
		{"TamperingAuditDisable", tamper, []pgtrail.Event{event(1, t0, "AUDIT_DISABLE", rtype("table"), rid("public.accounts"), actor("dba"))},
			[]fired{{"tamper", "audit_disabled:public.accounts", 1, 1, 1, "auditing disabled on public.accounts by dba"}}},
		{"TamperingDisableTrigger", tamper, []pgtrail.Event{event(1, t0, "DDL", rtype("table"), rid("public.accounts"),
			withDetails(`{"command_tag": "ALTER TABLE", "query": "alter table accounts\n  disable   trigger pgtrail_capture"}`))},
			[]fired{{"tamper", "trigger_disabled:public.accounts", 1, 1, 1, "triggers disabled on public.accounts by app: alter table accounts disable trigger pgtrail_capture"}}},
		{"TamperingReplicaTrigger", tamper, []pgtrail.Event{event(1, t0, "DDL", rtype("table"), rid("audit.events"),
			withDetails(`{"command_tag": "ALTER TABLE", "query": "ALTER TABLE audit.events ENABLE REPLICA TRIGGER guard"}`))},
			[]fired{{"tamper", "trigger_disabled:audit.events", 1, 1, 1, ""}}},
		{"TamperingOrdinaryDDLQuiet", tamper, []pgtrail.Event{
			event(1, t0, "DDL", rtype("table"), rid("public.accounts"), withDetails(`{"command_tag": "ALTER TABLE", "query": "ALTER TABLE accounts ADD COLUMN note text"}`)),
			event(2, t0, "DDL", rtype("table"), rid("public.accounts"), withDetails(`{"command_tag": "ALTER TABLE", "query": "ALTER TABLE accounts ENABLE TRIGGER ALL"}`)),
			event(3, t0, "DDL", rtype("trigger"), rid("t on public.accounts"), withDetails(`{"command_tag": "CREATE TRIGGER", "query": "CREATE TRIGGER t AFTER UPDATE ON accounts EXECUTE FUNCTION f() -- disable trigger"}`)),
			event(4, t0, "UPDATE", rtype("audit.events"), rid("3"))}, nil},
		{"TamperingSignalsKeyedApart", tamper, []pgtrail.Event{
			event(1, t0, "DDL", rtype("table"), rid("public.accounts"), withDetails(`{"command_tag": "ALTER TABLE", "query": "ALTER TABLE accounts DISABLE TRIGGER ALL"}`)),
			event(2, t0, "DDL", rtype("table"), rid("public.accounts"), withDetails(`{"command_tag": "ALTER TABLE", "query": "ALTER TABLE accounts DISABLE TRIGGER ALL"}`)),
			event(3, t0, "AUDIT_DISABLE", rtype("table"), rid("public.accounts"))},
			[]fired{{"tamper", "trigger_disabled:public.accounts", 1, 1, 1, ""}, {"tamper", "audit_disabled:public.accounts", 3, 3, 1, ""}}},

		{"AlertEventsNeverEvaluated", bf + tamper, concat(
			burst(1, t0, time.Second, 10, "ALERT", ip("203.0.113.7"), rid("bf"), withDetails(`{"rule": "bf"}`))), nil},
		{"DisabledRuleQuiet", "- {name: bf, type: brute_force, disabled: true}\n", burst(1, t0, time.Second, 10, "FAILED_LOGIN", attacker...), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := engine(t, tc.rules)
			check(t, run(e, tc.events), tc.want)
		})
	}
}

// TestEngine_WALTampering: the WAL sighting and the TAMPERING event the daemon then records are
// the same tampering, so they make one alert.
func TestEngine_WALTampering(t *testing.T) {
	e, m := engine(t, "- {name: tamper, type: tampering}\n")
	got := e.WALTampering("UPDATE", "3", t0)
	got = append(got, e.WALTampering("DELETE", "4", t0)...)
	evs := []pgtrail.Event{
		event(10, t0.Add(time.Second), "TAMPERING", rtype("audit.events"), rid("3"), withDetails(`{"operation": "UPDATE"}`)),
		event(11, t0.Add(time.Second), "TAMPERING", rtype("audit.events"), rid("4"), withDetails(`{"operation": "DELETE"}`)),
	}
	got = append(got, run(e, evs)...)
	if len(got) != 1 {
		t.Fatalf("%d alerts, want 1: %+v", len(got), got)
	}
	a := got[0]
	if a.Key != "trail_modified:audit.events" || a.FirstSeq != 3 || a.LastSeq != 3 || len(a.Events) != 0 ||
		!strings.Contains(a.Summary, "UPDATE of audit.events entry 3 seen in the WAL") || a.Severity != "critical" {
		t.Errorf("alert %+v", a)
	}
	if n := testutil.ToFloat64(m.Suppressed.WithLabelValues("tamper")); n != 3 {
		t.Errorf("suppressed = %v, want 3", n)
	}
	// After the cooldown, a new sighting alerts again.
	if got := e.WALTampering("TRUNCATE", "", t0.Add(6*time.Minute)); len(got) != 1 || got[0].FirstSeq != 0 {
		t.Errorf("after cooldown: %+v", got)
	}
}

// TestEngine_SkipOlderThan: events older than skip_older_than (by the clock) are not evaluated.
func TestEngine_SkipOlderThan(t *testing.T) {
	cfg, err := Parse([]byte("skip_older_than: 1h\nrules:\n- {name: export, type: bulk_export}\n"), "t.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(nil)
	e, err := NewEngine(cfg, func() time.Time { return t0 }, m)
	if err != nil {
		t.Fatal(err)
	}
	old := event(1, t0.Add(-61*time.Minute), "EXPORT", withDetails(`{"rows": 1e9}`))
	recent := event(2, t0.Add(-59*time.Minute), "EXPORT", withDetails(`{"rows": 1e9}`))
	if got := e.Event(&old); len(got) != 0 {
		t.Errorf("an event older than skip_older_than fired: %+v", got)
	}
	if got := e.Event(&recent); len(got) != 1 {
		t.Errorf("a recent event: %d alerts, want 1", len(got))
	}
	if n := testutil.ToFloat64(m.Skipped); n != 1 {
		t.Errorf("skipped = %v, want 1", n)
	}
}

// TestEngine_BoundedMemory sprays failed logins from many addresses: the rule keeps at most
// max_keys keys and threshold+1 events per key, forgetting the least recently seen first.
func TestEngine_BoundedMemory(t *testing.T) {
	e, m := engine(t, "- {name: bf, type: brute_force, keys: [ip]}\n")
	e.rules[0].(*bruteForce).keys.max = 100
	var evs []pgtrail.Event
	for i := range 1000 {
		evs = append(evs, event(int64(i+1), t0.Add(time.Duration(i)*time.Millisecond), "FAILED_LOGIN", ip(fmt.Sprintf("10.0.%d.%d", i/250, i%250))))
	}
	for i := range 50 {
		evs = append(evs, event(int64(2000+i), t0.Add(2*time.Second), "FAILED_LOGIN", ip("203.0.113.7")))
	}
	if got := run(e, evs); len(got) != 1 || got[0].Key != "ip:203.0.113.7" {
		t.Fatalf("alerts %+v, want one for ip:203.0.113.7", got)
	}
	kt := e.rules[0].(*bruteForce).keys
	if len(kt.m) > 100 || kt.lru.Len() != len(kt.m) {
		t.Errorf("%d keys kept (list %d), want at most 100", len(kt.m), kt.lru.Len())
	}
	if st := kt.m["ip:203.0.113.7"].Value.(*keyState); len(st.events) != 6 {
		t.Errorf("%d events kept for one key, want threshold+1 = 6", len(st.events))
	}
	if n := testutil.ToFloat64(m.Evicted.WithLabelValues("bf")); n != 901 {
		t.Errorf("evicted = %v, want 901", n)
	}
	// Keys whose window and cooldown are over are forgotten as time moves on, without pressure.
	later := event(5000, t0.Add(time.Hour), "FAILED_LOGIN", ip("198.51.100.1"))
	e.Event(&later)
	if len(kt.m) != 1 {
		t.Errorf("%d keys kept an hour later, want 1", len(kt.m))
	}
}

// TestEngine_AlertEventsNeverEvaluated: even a rule that somehow watched ALERT (the rules file
// refuses to name it) never sees one, so recording an alert cannot trigger another.
func TestEngine_AlertEventsNeverEvaluated(t *testing.T) {
	e, m := engine(t, "- {name: pii, type: off_hours, weekdays: [sat]}\n")
	e.rules[0].(*offHours).actions[ActionAlert] = true
	ev := event(1, t0, ActionAlert, actor("pgtrail"), rtype("alert_rule"), rid("pii"), withDetails(`{"rule": "pii"}`))
	if got := e.Event(&ev); len(got) != 0 {
		t.Fatalf("an ALERT event fired %+v", got)
	}
	if n := testutil.ToFloat64(m.Events); n != 0 {
		t.Errorf("events evaluated = %v, want 0", n)
	}
	view := event(2, t0, "VIEW_PII", actor("bob"))
	if got := e.Event(&view); len(got) != 1 {
		t.Errorf("the rule itself does not fire: %+v", got)
	}
}
