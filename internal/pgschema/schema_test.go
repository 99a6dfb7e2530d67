package pgschema_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/internal/testdb"
)

// row is what these tests read back of an audit entry.
type row struct {
	Seq           int64
	Action        string
	ResourceType  string
	ResourceID    *string
	Outcome       string
	ActorID       string
	ActorIP       *string
	ActorIPRaw    *string
	UserAgent     *string
	RequestID     *string
	TenantID      *string
	DBUser        string
	AppName       *string
	Changed       []string
	Before, After map[string]any
	Details       map[string]any
	TxID          string
}

func readEvents(t *testing.T, db *pgxpool.Pool, where string, args ...any) []row {
	t.Helper()
	q := `SELECT seq, action_type, resource_type, resource_id, outcome, actor_id,
	             CASE WHEN actor_ip IS NOT NULL THEN host(actor_ip) END, actor_ip_raw, actor_user_agent,
	             request_id, tenant_id, db_user, application_name, changed_columns,
	             before_state, after_state, details, txid::text
	        FROM audit.events`
	if where != "" {
		q += " WHERE " + where
	}
	rows, err := db.Query(context.Background(), q+" ORDER BY seq", args...)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var e row
		err := r.Scan(&e.Seq, &e.Action, &e.ResourceType, &e.ResourceID, &e.Outcome, &e.ActorID,
			&e.ActorIP, &e.ActorIPRaw, &e.UserAgent, &e.RequestID, &e.TenantID, &e.DBUser, &e.AppName,
			&e.Changed, &e.Before, &e.After, &e.Details, &e.TxID)
		return e, err
	})
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	return out
}

func str(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func TestCapture_DML(t *testing.T) {
	db, _ := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, db, `CREATE TABLE public.accounts (id bigint PRIMARY KEY, owner text, balance numeric, password_hash text)`)
	testdb.Exec(t, db, `SELECT audit.enable('public.accounts', '{password_hash}')`)

	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`SELECT set_config('pgtrail.actor_id', 'alice', true), set_config('pgtrail.actor_ip', '203.0.113.7', true),
		        set_config('pgtrail.user_agent', 'curl/8', true), set_config('pgtrail.request_id', 'req-1', true),
		        set_config('pgtrail.tenant_id', 'acme', true), set_config('application_name', 'billing', true)`,
		`INSERT INTO accounts VALUES (1, 'alice', 10, 'h1')`,
		`UPDATE accounts SET balance = 20, password_hash = 'h2' WHERE id = 1`,
		`UPDATE accounts SET owner = 'alice b.' WHERE id = 1`,
		`DELETE FROM accounts WHERE id = 1`,
	} {
		if _, err := tx.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	testdb.Seal(t, db)
	got := readEvents(t, db, "resource_type = 'public.accounts'")

	cases := []struct {
		name    string
		action  string
		changed string
		before  string
		after   string
	}{
		{"Insert", "CREATE", "balance,id,owner", "", `{"balance":10,"id":1,"owner":"alice"}`},
		{"UpdateWithExcludedColumn", "UPDATE", "balance,password_hash", `{"balance":10,"id":1,"owner":"alice"}`, `{"balance":20,"id":1,"owner":"alice"}`},
		{"Update", "UPDATE", "owner", `{"balance":20,"id":1,"owner":"alice"}`, `{"balance":20,"id":1,"owner":"alice b."}`},
		{"Delete", "DELETE", "balance,id,owner", `{"balance":20,"id":1,"owner":"alice b."}`, ""},
	}
	if len(got) != len(cases) {
		t.Fatalf("got %d entries for public.accounts, want %d: %+v", len(got), len(cases), got)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := got[i]
			if e.Action != c.action || str(e.ResourceID) != "1" || e.Outcome != "SUCCESS" {
				t.Errorf("action/resource/outcome = %s/%s/%s, want %s/1/SUCCESS", e.Action, str(e.ResourceID), e.Outcome, c.action)
			}
			if e.ActorID != "alice" || str(e.ActorIP) != "203.0.113.7" || str(e.UserAgent) != "curl/8" ||
				str(e.RequestID) != "req-1" || str(e.TenantID) != "acme" || str(e.AppName) != "billing" {
				t.Errorf("context not captured: %+v", e)
			}
			if strings.Join(e.Changed, ",") != c.changed {
				t.Errorf("changed_columns = %v, want %s", e.Changed, c.changed)
			}
			if js(e.Before) != c.before || js(e.After) != c.after {
				t.Errorf("before/after = %s / %s, want %s / %s", js(e.Before), js(e.After), c.before, c.after)
			}
			for _, state := range []map[string]any{e.Before, e.After} {
				if _, leaked := state["password_hash"]; leaked {
					t.Errorf("excluded column password_hash was written to the trail: %v", state)
				}
			}
		})
	}
	if got[0].TxID != got[3].TxID {
		t.Errorf("entries of one transaction carry different txids: %s, %s", got[0].TxID, got[3].TxID)
	}
}

func js(m map[string]any) string {
	if m == nil {
		return ""
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestCapture_Context(t *testing.T) {
	db, _ := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE t (k1 int, k2 text, v text, PRIMARY KEY (k1, k2))`)
	testdb.Exec(t, db, `SELECT audit.enable('t')`)
	testdb.Exec(t, db, `CREATE ROLE app_user LOGIN`)
	testdb.Exec(t, db, `GRANT ALL ON t TO app_user`)

	cases := []struct {
		name     string
		settings string
		actor    string
		ip, raw  string
	}{
		{"UnsetActorIsDatabaseUser", ``, "app_user", "<nil>", "<nil>"},
		{"EmptyActorIsDatabaseUser", `SET LOCAL pgtrail.actor_id = ''`, "app_user", "<nil>", "<nil>"},
		{"MalformedIPRecordedRaw", `SET LOCAL pgtrail.actor_id = 'bob'; SET LOCAL pgtrail.actor_ip = '999.1.2.3'`, "bob", "<nil>", "999.1.2.3"},
		{"GarbageIPRecordedRaw", `SET LOCAL pgtrail.actor_ip = 'x'' OR 1=1 --'`, "app_user", "<nil>", "x' OR 1=1 --"},
		{"IPv6", `SET LOCAL pgtrail.actor_ip = '2001:db8::1'`, "app_user", "2001:db8::1", "<nil>"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A malformed setting must not make the application's write fail.
			testdb.Exec(t, db, fmt.Sprintf(`BEGIN; SET LOCAL ROLE app_user; %s; INSERT INTO t VALUES (%d, 'a,b', 'v'); COMMIT`, c.settings, i))
			testdb.Seal(t, db)
			got := readEvents(t, db, "resource_type = 'public.t' AND resource_id = $1", fmt.Sprintf("%d,a,b", i))
			if len(got) != 1 {
				t.Fatalf("got %d entries, want 1", len(got))
			}
			e := got[0]
			if e.ActorID != c.actor || str(e.ActorIP) != c.ip || str(e.ActorIPRaw) != c.raw {
				t.Errorf("actor/ip/raw = %q/%s/%s, want %q/%s/%s", e.ActorID, str(e.ActorIP), str(e.ActorIPRaw), c.actor, c.ip, c.raw)
			}
		})
	}
	// Settings are transaction-local: the next transaction must not inherit them.
	testdb.Exec(t, db, `BEGIN; SET LOCAL ROLE app_user; INSERT INTO t VALUES (100, 'x', 'v'); COMMIT`)
	testdb.Seal(t, db)
	if got := readEvents(t, db, "resource_id = '100,x'"); len(got) != 1 || got[0].ActorID != "app_user" || got[0].ActorIPRaw != nil {
		t.Errorf("context leaked into a later transaction: %+v", got)
	}
}

func TestLogEvent(t *testing.T) {
	db, _ := testdb.New(t)
	testdb.Exec(t, db, `BEGIN; SET LOCAL pgtrail.actor_id = 'carol';
		SELECT audit.log_event('LOGIN', 'session', 's-1', 'SUCCESS', '{"method": "password"}');
		SELECT audit.log_event('FAILED_LOGIN', 'session', NULL, 'FAILURE');
		SELECT audit.log_event('VIEW_PII', 'customer', '42');
		COMMIT`)
	// An event in a rolled-back transaction is not recorded.
	testdb.Exec(t, db, `BEGIN; SELECT audit.log_event('EXPORT', 'report', 'r1'); ROLLBACK`)
	testdb.Seal(t, db)
	got := readEvents(t, db, "")
	var summary []string
	for _, e := range got {
		summary = append(summary, fmt.Sprintf("%s/%s/%s/%s/%s", e.Action, e.ResourceType, str(e.ResourceID), e.Outcome, e.ActorID))
	}
	want := "LOGIN/session/s-1/SUCCESS/carol FAILED_LOGIN/session/<nil>/FAILURE/carol VIEW_PII/customer/42/SUCCESS/carol"
	if strings.Join(summary, " ") != want {
		t.Errorf("events = %v\nwant %s", summary, want)
	}
	if got[0].Details["method"] != "password" {
		t.Errorf("details = %v", got[0].Details)
	}

	bad := []struct{ name, call, msg string }{
		{"LowerCaseAction", `SELECT audit.log_event('login', 'session', 'x')`, "action_type must be an upper-case word"},
		{"InjectionInAction", `SELECT audit.log_event('LOGIN''); DROP TABLE x; --', 'session', 'x')`, "action_type must be an upper-case word"},
		{"UnknownOutcome", `SELECT audit.log_event('LOGIN', 'session', 'x', 'MAYBE')`, "outcome must be SUCCESS, FAILURE or UNAUTHORIZED"},
		{"EmptyResourceType", `SELECT audit.log_event('LOGIN', '', 'x')`, "resource_type must not be empty"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := db.Exec(context.Background(), c.call)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s: err = %v, want one saying %q", c.call, err, c.msg)
			}
		})
	}
}

func TestDDLCapture(t *testing.T) {
	db, _ := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE unaudited (id int)`)
	testdb.Exec(t, db, `SELECT audit.enable('a')`)
	testdb.Seal(t, db)
	before := len(readEvents(t, db, ""))

	steps := []struct{ sql, action, resource, tag string }{
		{`ALTER TABLE a DISABLE TRIGGER pgtrail_capture`, "DDL", "public.a", "ALTER TABLE"},
		{`ALTER TABLE a ENABLE TRIGGER pgtrail_capture`, "DDL", "public.a", "ALTER TABLE"},
		{`ALTER TABLE a ADD COLUMN note text`, "DDL", "public.a", "ALTER TABLE"},
		{`ALTER TABLE unaudited ADD COLUMN note text`, "", "", ""}, // not audited: not recorded
		{`SELECT audit.disable('a')`, "AUDIT_DISABLE", "public.a", ""},
		{`SELECT audit.enable('a')`, "AUDIT_ENABLE", "public.a", ""},
		{`DROP TABLE a`, "DDL", "public.a", "DROP TABLE"},
	}
	for _, s := range steps {
		testdb.Exec(t, db, s.sql)
		testdb.Seal(t, db)
		got := readEvents(t, db, "")[before:]
		before += len(got)
		if s.action == "" {
			if len(got) != 0 {
				t.Errorf("%s: recorded %d entries, want none", s.sql, len(got))
			}
			continue
		}
		found := false
		for _, e := range got {
			if e.Action == s.action && str(e.ResourceID) == s.resource && (s.tag == "" || e.Details["command_tag"] == s.tag) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no %s entry for %s (tag %q) among %+v", s.sql, s.action, s.resource, s.tag, got)
		}
	}
	var audited int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit.audited_tables`).Scan(&audited); err != nil || audited != 0 {
		t.Errorf("dropped table still listed as audited: %d, %v", audited, err)
	}
}

// TestImmutability tries every way a non-superuser could change the trail; each must be refused
// and the trail must stay as it was.
func TestImmutability(t *testing.T) {
	db, url := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY); SELECT audit.enable('t'); INSERT INTO t VALUES (1)`)
	testdb.Seal(t, db)
	testdb.Exec(t, db, `CREATE ROLE app LOGIN; GRANT ALL ON t TO app;
		CREATE ROLE owner_member LOGIN IN ROLE pgtrail_owner;
		GRANT CREATE ON SCHEMA public TO owner_member`)
	var count0 int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events`).Scan(&count0); err != nil {
		t.Fatal(err)
	}

	attempts := []string{
		`UPDATE audit.events SET actor_id = 'x'`,
		`DELETE FROM audit.events`,
		`TRUNCATE audit.events`,
		`INSERT INTO audit.events_default SELECT * FROM audit.events LIMIT 1`,
		`DELETE FROM audit.pending`,
		`UPDATE audit.chain_head SET seq = 0`,
		`INSERT INTO audit.events SELECT * FROM audit.events LIMIT 1`,
		`ALTER TABLE audit.events DISABLE TRIGGER guard`,
		`DROP TRIGGER guard ON audit.events`,
		`ALTER TABLE audit.pending DISABLE TRIGGER ALL`,
		`CREATE OR REPLACE FUNCTION audit.capture() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'`,
		`DROP TABLE audit.events_default`,
	}
	roles := []struct {
		name  string
		setup string
	}{
		{"ApplicationRole", `SET ROLE app`},
		{"Owner", `SET ROLE owner_member; SET ROLE pgtrail_owner`},
	}
	for _, r := range roles {
		for _, a := range attempts {
			t.Run(r.name+"/"+a, func(t *testing.T) {
				conn := connectAs(t, url, strings.TrimPrefix(strings.Split(r.setup, ";")[0], "SET ROLE "))
				_, err := conn.Exec(context.Background(), r.setup+"; "+a)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || (pgErr.Code != "42501" && !strings.Contains(pgErr.Message, "refused")) {
					t.Errorf("%s as %s: err = %v, want a refusal", a, r.name, err)
				}
			})
		}
	}
	// Even a superuser is stopped by the guard triggers as long as they are enabled.
	for _, a := range attempts[:6] {
		if _, err := db.Exec(context.Background(), a); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s as superuser: err = %v, want the guard's refusal", a, err)
		}
	}
	var count1 int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events`).Scan(&count1); err != nil || count1 != count0 {
		t.Errorf("trail changed: %d entries before, %d after (%v)", count0, count1, err)
	}
}

// connectAs connects to url as a login role (the test cluster trusts local connections).
func connectAs(t *testing.T, url, user string) *pgx.Conn {
	t.Helper()
	return connect(t, url, user, nil)
}

// connectNotices logs in as the URL's user and collects the server's notices and warnings, as
// "SEVERITY: message".
func connectNotices(t *testing.T, url string) (*pgx.Conn, *[]string) {
	t.Helper()
	notices := &[]string{}
	return connect(t, url, "", notices), notices
}

// connect logs in as user ("": the URL's), appending the server's notices to notices if set.
func connect(t *testing.T, url, user string, notices *[]string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		cfg.User = user
	}
	if notices != nil {
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { *notices = append(*notices, n.Severity+": "+n.Message) }
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestEnable_HostileNames enables auditing on tables with hostile but legal names, and tries
// names that are injection attempts: those must fail cleanly with nothing half-installed.
func TestEnable_HostileNames(t *testing.T) {
	db, _ := testdb.New(t)
	ctx := context.Background()
	legal := []string{`"Robert'); DROP TABLE students;--"`, `"a.b"`, `"x""y"`, `"DROP TABLE t; --"`}
	for i, name := range legal {
		t.Run(fmt.Sprintf("Legal%d", i), func(t *testing.T) {
			testdb.Exec(t, db, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, %s text)`, name, name))
			if _, err := db.Exec(ctx, `SELECT audit.enable($1::text::regclass)`, name); err != nil {
				t.Fatalf("enable %s: %v", name, err)
			}
			testdb.Exec(t, db, fmt.Sprintf(`INSERT INTO %s VALUES (1, 'v'); UPDATE %s SET %s = 'w'`, name, name, name))
			testdb.Seal(t, db)
			var n int
			if err := db.QueryRow(ctx, `SELECT count(*) FROM audit.events WHERE resource_type = (SELECT table_name FROM audit.audited_tables WHERE relid = $1::text::regclass) AND action_type IN ('CREATE','UPDATE')`, name).Scan(&n); err != nil || n != 2 {
				t.Errorf("captured %d entries for %s, want 2 (%v)", n, name, err)
			}
		})
	}
	testdb.Exec(t, db, `CREATE TABLE victim (id int)`)
	hostile := []string{`victim; DROP TABLE victim`, `victim'); DROP TABLE victim; --`, `pg_catalog.pg_class`, `audit.events`, `nonexistent`, ``}
	for i, name := range hostile {
		t.Run(fmt.Sprintf("Hostile%d", i), func(t *testing.T) {
			if _, err := db.Exec(ctx, `SELECT audit.enable($1::text::regclass)`, name); err == nil {
				t.Errorf("enable %q succeeded, want an error", name)
			}
		})
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'victim'::regclass`).Scan(&n); err != nil || n != 0 {
		t.Errorf("victim table has %d triggers after failed enables (%v), want 0 and the table intact", n, err)
	}
	if _, err := db.Exec(ctx, `SELECT audit.enable('victim', '{no_such_column}')`); err == nil || !strings.Contains(err.Error(), "has no column") {
		t.Errorf("enable with a bad excluded column: err = %v", err)
	}
}

// TestEnable_DefaultMode: audit.enable(t) without a mode. With the stream's slot in the database
// a new table is captured from the WAL; without it, by trigger, and a NOTICE says why (a table in
// mode wal with no slot would lose its changes). A table already audited keeps its mode, and an
// UNLOGGED table (whose changes never reach the WAL) is captured by trigger.
func TestEnable_DefaultMode(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, db, `CREATE TABLE before_slot (id int PRIMARY KEY); CREATE TABLE after_slot (id int PRIMARY KEY);
		CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY); CREATE TABLE kept (id int PRIMARY KEY)`)
	conn, notices := connectNotices(t, url)
	testdb.Exec(t, conn, `SELECT audit.enable('before_slot'); SELECT audit.enable('kept')`)
	if len(*notices) != 2 || !strings.Contains((*notices)[0], "NOTICE: ") || !strings.Contains((*notices)[0], "mode trigger") ||
		!strings.Contains((*notices)[0], "replication slot") {
		t.Errorf("notices without a slot: %q, want one per table saying why mode trigger", *notices)
	}
	testdb.Slot(t, db, "pgtrail")
	testdb.Exec(t, conn, `SELECT audit.enable('after_slot'); SELECT audit.enable('scratch'); SELECT audit.enable('kept', '{}')`)
	rows, err := db.Query(ctx, `SELECT table_name || '=' || mode FROM audit.audited_tables ORDER BY table_name`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := "public.after_slot=wal public.before_slot=trigger public.kept=trigger public.scratch=trigger"; strings.Join(got, " ") != want {
		t.Errorf("modes %v, want %s", got, want)
	}
}

// TestEnable_NoPrimaryKey: a table without a primary key was enabled silently, and its entries
// had an empty resource_id. What must survive: a table with a unique index on NOT NULL columns
// is keyed by it (resource_id set, in both modes); one with neither is still captured, and a
// WARNING says its entries carry no resource_id.
func TestEnable_NoPrimaryKey(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Slot(t, db, "pgtrail")
	testdb.Exec(t, db, `CREATE TABLE keyed_by_email (email text NOT NULL, name text);
		CREATE UNIQUE INDEX keyed_by_email_email ON keyed_by_email (email);
		CREATE TABLE nullable_unique (code text UNIQUE, v int);
		CREATE TABLE no_key (v int)`)
	conn, notices := connectNotices(t, url)
	for _, q := range []string{
		`SELECT audit.enable('keyed_by_email', '{}', NULL, 'trigger')`,
		`SELECT audit.enable('nullable_unique', '{}', NULL, 'trigger')`,
		`SELECT audit.enable('no_key', '{}', NULL, 'wal')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var keys string
	if err := db.QueryRow(ctx, `SELECT string_agg(table_name || '=' || array_to_string(pk_columns, ','), ' ' ORDER BY table_name) FROM audit.audited_tables`).Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if want := "public.keyed_by_email=email public.no_key= public.nullable_unique="; keys != want {
		t.Errorf("keys %q, want %q", keys, want)
	}
	warned := map[string]bool{}
	for _, n := range *notices {
		for _, tbl := range []string{"no_key", "nullable_unique", "keyed_by_email"} {
			if strings.HasPrefix(n, "WARNING") && strings.Contains(n, tbl) && strings.Contains(n, "resource_id") {
				warned[tbl] = true
			}
		}
	}
	if !warned["no_key"] || !warned["nullable_unique"] || warned["keyed_by_email"] {
		t.Errorf("warnings %q: want one for no_key and nullable_unique, none for keyed_by_email", *notices)
	}
	testdb.Exec(t, db, `INSERT INTO keyed_by_email VALUES ('a@example.com', 'A'); UPDATE keyed_by_email SET name = 'B'`)
	testdb.Seal(t, db)
	var ids string
	if err := db.QueryRow(ctx, `SELECT string_agg(action_type || ':' || COALESCE(resource_id, '<nil>'), ' ' ORDER BY seq) FROM audit.events WHERE resource_type = 'public.keyed_by_email'`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	if ids != "CREATE:a@example.com UPDATE:a@example.com" {
		t.Errorf("entries %q, want both keyed by the email", ids)
	}
}
