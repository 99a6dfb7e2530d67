package search_test

import (
	"context"
	"errors"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtrail/pgtrail/internal/pgschema"
	"github.com/pgtrail/pgtrail/internal/search"
	"github.com/pgtrail/pgtrail/internal/testdb"
)

// TestEventsMasked_Reader reads the trail as a pgtrail_reader and as an auditor: the reader sees
// every event with the configured PII keys and the address masked and no hashes; the auditor sees
// the values.
func TestEventsMasked_Reader(t *testing.T) {
	f := setup(t)
	reader, _ := f.connect(t, f.reader)
	got, err := dump(t, reader, `SELECT action_type, tenant_id, actor_ip, actor_ip_raw, before_state, after_state, details, changed_columns
	                               FROM audit.events_masked WHERE resource_type = 'public.customers' ORDER BY seq`)
	if err != nil {
		t.Fatalf("reader reads audit.events_masked: %v", err)
	}
	want := []string{
		`CREATE|acme|198.51.100.0/24|NULL|NULL|map[email:[masked] id:1 name:[masked] phone:[masked] plan:free]|NULL|[email id name phone plan]|`,
		`UPDATE|acme|198.51.100.0/24|NULL|map[email:[masked] id:1 name:[masked] phone:[masked] plan:free]|map[email:[masked] id:1 name:[masked] phone:[masked] plan:pro]|NULL|[plan]|`,
		`VIEW_PII|acme|198.51.100.0/24|NULL|NULL|NULL|map[email:[masked] reason:support]|[]|`,
		`CREATE|globex|NULL|[masked]|NULL|map[email:[masked] id:2 name:[masked] phone:[masked] plan:free]|NULL|[email id name phone plan]|`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("reader sees:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if l := leaks(got...); len(l) > 0 {
		t.Errorf("reader saw %v", l)
	}
	var hashCols int
	if err := f.db.QueryRow(context.Background(), `SELECT count(*) FROM information_schema.columns
	    WHERE table_schema = 'audit' AND table_name = 'events_masked' AND column_name IN ('prev_hash', 'entry_hash')`).Scan(&hashCols); err != nil || hashCols != 0 {
		t.Errorf("events_masked has %d hash columns (%v): a reader could test guesses of masked values against them", hashCols, err)
	}

	auditor, _ := f.connect(t, f.auditor)
	all, err := dump(t, auditor, `SELECT before_state, after_state, actor_ip, actor_ip_raw FROM audit.events WHERE resource_type = 'public.customers'`)
	if err != nil {
		t.Fatalf("auditor reads audit.events: %v", err)
	}
	if l := leaks(all...); len(l) != len(secrets) {
		t.Errorf("auditor sees only %v of the values, want all of %v", l, secrets)
	}
}

// TestEventsMasked_NoPathToUnmasked tries every other way a pgtrail_reader might reach the
// unmasked trail: the table, its partitions, the pending entries, the canonical encoding,
// statistics, COPY, and its own leaky functions and operators in WHERE (which security_barrier
// must keep above the masking). Each must be refused or show only masked values.
func TestEventsMasked_NoPathToUnmasked(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	// Something pending too, so that reading audit.pending would show it.
	testdb.Exec(t, f.db, `SET pgtrail.tenant_id = 'acme'; SELECT audit.log_event('VIEW_PII', 'public.customers', '1', 'SUCCESS', '{"email": "alice@example.com"}')`)
	var partition string
	if err := f.db.QueryRow(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	    WHERE i.inhparent = 'audit.events'::regclass AND EXISTS (SELECT FROM audit.events e WHERE e.tableoid = c.oid) LIMIT 1`).Scan(&partition); err != nil {
		t.Fatal(err)
	}
	testdb.Exec(t, f.db, `ANALYZE audit.events`)
	reader, notices := f.connect(t, f.reader)
	if _, err := reader.Exec(ctx, `
CREATE FUNCTION scratch.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
  $$ BEGIN RAISE NOTICE 'leak: %', $1; RETURN true; END $$;
CREATE FUNCTION scratch.leaky_eq(text, text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
  $$ BEGIN RAISE NOTICE 'leak: % %', $1, $2; RETURN $1 = $2; END $$;
CREATE OPERATOR scratch.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = scratch.leaky_eq)`); err != nil {
		t.Fatalf("reader creates its functions: %v", err)
	}
	refused := []struct{ name, sql string }{
		{"Table", `SELECT * FROM audit.events`},
		{"Partition", `SELECT * FROM audit.` + pgx.Identifier{partition}.Sanitize()},
		{"DefaultPartition", `SELECT * FROM audit.events_default`},
		{"Pending", `SELECT * FROM audit.pending`},
		{"Canonical", `SELECT audit.canonical(e) FROM audit.events e`},
		{"ChainHead", `SELECT * FROM audit.chain_head`},
		{"PIIConfig", `SELECT * FROM audit.pii_columns`},
		{"Anchors", `SELECT * FROM audit.chain_anchors`},
		{"CopyTable", `COPY audit.events TO STDOUT`},
		{"WidenOwnScope", `SELECT audit.add_tenant_reader(current_user::regrole, 'globex')`},
		{"UnmaskConfig", `SELECT audit.set_pii_columns('public.customers', '{}')`},
		{"BecomeViewOwner", `SET ROLE pgtrail_views`},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			got, err := dump(t, reader, c.sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("%s as a reader: err = %v, rows %v; want permission denied", c.sql, err, got)
			}
		})
	}
	shown := []struct{ name, sql string }{
		{"LeakyFunctionOnState", `SELECT seq FROM audit.events_masked WHERE scratch.leak(before_state::text) AND scratch.leak(after_state::text) AND scratch.leak(details::text)`},
		{"LeakyFunctionOnAddress", `SELECT seq FROM audit.events_masked WHERE scratch.leak(actor_ip::text || coalesce(actor_ip_raw, ''))`},
		{"LeakyOperator", `SELECT seq FROM audit.events_masked WHERE after_state->>'email' OPERATOR(scratch.===) 'guess'`},
		{"ErrorMessageOfCast", `SELECT (after_state->>'email')::int FROM audit.events_masked WHERE after_state ? 'email'`},
		{"Statistics", `SELECT attname, most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE schemaname = 'audit'`},
		{"ViewDefinition", `SELECT pg_get_viewdef('audit.events_masked')`},
		{"WholeView", `SELECT * FROM audit.events_masked`},
	}
	for _, c := range shown {
		t.Run(c.name, func(t *testing.T) {
			*notices = nil
			got, err := dump(t, reader, c.sql)
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			if l := leaks(append(append(got, *notices...), msg)...); len(l) > 0 {
				t.Errorf("%s showed %v (rows %v, notices %v, error %q)", c.sql, l, got, *notices, msg)
			}
			if strings.HasPrefix(c.name, "Leaky") && len(*notices) == 0 {
				t.Errorf("%s: the reader's function never ran, so this proves nothing", c.sql)
			}
		})
	}
}

// TestTenantReaders_Isolation reads as a role mapped to tenant acme and as an auditor mapped to
// globex: each sees its tenant's events only, whatever settings it changes, and unmapping leaves
// nothing visible rather than everything.
func TestTenantReaders_Isolation(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	tenants := func(conn *pgx.Conn, sql string) []string {
		t.Helper()
		rows, err := dump(t, conn, sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		slices.Sort(rows)
		return slices.Compact(rows)
	}
	acme, notices := f.connect(t, f.acmeReader)
	cases := []struct {
		name, setup string
	}{
		{"AsIs", ``},
		{"SetsReaderTenant", `SELECT set_config('pgtrail.reader_tenant', 'globex', false)`},
		{"SetsTenantID", `SET pgtrail.tenant_id = 'globex'`},
		{"ResetsRole", `RESET ROLE`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != "" {
				if _, err := acme.Exec(ctx, c.setup); err != nil {
					t.Fatal(err)
				}
			}
			if got := tenants(acme, `SELECT tenant_id FROM audit.tenant_events()`); !slices.Equal(got, []string{"acme|"}) {
				t.Errorf("acme reader sees tenants %v, want only acme", got)
			}
		})
	}
	t.Run("LeakyFunction", func(t *testing.T) {
		if _, err := acme.Exec(ctx, `CREATE FUNCTION scratch.peek(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
		    $$ BEGIN RAISE NOTICE 'peek: %', $1; RETURN true; END $$`); err != nil {
			t.Fatal(err)
		}
		*notices = nil
		if _, err := dump(t, acme, `SELECT seq FROM audit.tenant_events() WHERE scratch.peek(coalesce(tenant_id, 'none'))`); err != nil {
			t.Fatal(err)
		}
		for _, n := range *notices {
			if n != "peek: acme" {
				t.Errorf("the reader's function saw %q: it ran on another tenant's rows", n)
			}
		}
	})
	// Since schema version 9 a tenant reader reads no table or view of the trail: row-level
	// security filtered them, but the plans showed what it removed (TestTenantReaders_NoPlannerSideChannel).
	for _, rel := range []string{"audit.events", "audit.events_masked", "audit.pending"} {
		t.Run("Direct_"+rel, func(t *testing.T) {
			if _, err := dump(t, acme, `SELECT * FROM `+rel); err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("tenant reader reads %s: %v", rel, err)
			}
		})
	}

	globex, _ := f.connect(t, f.globexReader)
	if got := tenants(globex, `SELECT tenant_id FROM audit.tenant_events()`); !slices.Equal(got, []string{"globex|"}) {
		t.Errorf("globex reader sees tenants %v, want only globex", got)
	}
	auditor, _ := f.connect(t, f.auditor)
	if got := tenants(auditor, `SELECT role || ':' || tenant_id FROM audit.tenant_readers`); len(got) != 2 {
		t.Errorf("auditor sees mappings %v, want both", got)
	}
	if got := tenants(acme, `SELECT role || ':' || tenant_id FROM audit.tenant_readers`); !slices.Equal(got, []string{f.acmeReader + ":acme|"}) {
		t.Errorf("acme reader sees mappings %v, want only its own", got)
	}

	testdb.Exec(t, f.db, `SELECT audit.remove_tenant_reader($1::regrole, 'acme')`, f.acmeReader)
	if got := tenants(acme, `SELECT tenant_id FROM audit.tenant_events()`); len(got) != 0 {
		t.Errorf("after unmapping, acme reader sees %v, want nothing", got)
	}
	for _, bad := range []string{`SELECT audit.add_tenant_reader('postgres', 'acme')`, `SELECT audit.add_tenant_reader('pgtrail_reader', NULL)`,
		`SELECT audit.add_tenant_reader('` + f.auditor + `', 'acme')`, `SELECT audit.add_tenant_reader('` + f.reader + `', 'acme')`} {
		if _, err := f.db.Exec(ctx, bad); err == nil {
			t.Errorf("%s succeeded, want a refusal (a superuser, an auditor or a reader cannot be scoped; a tenant is needed)", bad)
		}
	}
}

// TestSetPIIColumns_Rename renames and then drops a configured table: events under the new name
// are masked too, and the old events stay masked after the drop.
func TestSetPIIColumns_Rename(t *testing.T) {
	f := setup(t)
	testdb.Exec(t, f.db, `ALTER TABLE customers RENAME TO clients`)
	testdb.Exec(t, f.db, `INSERT INTO clients VALUES (3, 'Alice Liddell', 'alice@example.com', NULL, 'free')`)
	testdb.Exec(t, f.db, `ALTER TABLE clients SET SCHEMA scratch`)
	testdb.Exec(t, f.db, `INSERT INTO scratch.clients VALUES (4, 'x', 'bob@example.com', NULL, 'free')`)
	testdb.Exec(t, f.db, `DROP TABLE scratch.clients`)
	testdb.Seal(t, f.db)
	reader, _ := f.connect(t, f.reader)
	got, err := dump(t, reader, `SELECT resource_type, after_state FROM audit.events_masked WHERE action_type = 'CREATE'`)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Errorf("reader sees %d CREATE events, want 4: %v", len(got), got)
	}
	if l := leaks(got...); len(l) > 0 {
		t.Errorf("after rename and drop, the reader sees %v in %v", l, got)
	}
	var dangling int
	if err := f.db.QueryRow(context.Background(), `SELECT count(*) FROM audit.pii_columns WHERE relid IS NOT NULL`).Scan(&dangling); err != nil || dangling != 0 {
		t.Errorf("%d PII rows still follow the dropped table's oid (%v)", dangling, err)
	}
}

// TestSetPIIColumns_Refused tries bad configurations: each fails and the configuration is as
// before.
func TestSetPIIColumns_Refused(t *testing.T) {
	f := setup(t)
	testdb.Exec(t, f.db, `CREATE VIEW v AS SELECT 1 AS x`)
	cases := []struct{ name, sql, msg string }{
		{"UnknownColumn", `SELECT audit.set_pii_columns('customers', '{emial}')`, "has no column emial"},
		{"NotATable", `SELECT audit.set_pii_columns('v', '{x}')`, "is not a table"},
		{"Null", `SELECT audit.set_pii_columns('customers', NULL)`, "must not be NULL"},
		{"NoSuchTable", `SELECT audit.set_pii_columns('nope', '{x}')`, "does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.db.Exec(context.Background(), c.sql)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s: err = %v, want %q", c.sql, err, c.msg)
			}
		})
	}
	var cols []string
	if err := f.db.QueryRow(context.Background(), `SELECT columns FROM audit.pii_columns WHERE resource_type = 'public.customers'`).Scan(&cols); err != nil ||
		!slices.Equal(cols, []string{"email", "name", "phone"}) {
		t.Errorf("configuration after refusals = %v (%v), want [email name phone]", cols, err)
	}
}

// TestConfigChanges_Recorded changes each configuration table and checks that each change is an
// AUDIT_CONFIG event, and that TRUNCATE, which would bypass that, is refused.
func TestConfigChanges_Recorded(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	testdb.Exec(t, f.db, `INSERT INTO audit.retention_policies (tenant_id, action_type, keep, archive_retention) VALUES ('acme', NULL, '2 years', '7 years')`)
	testdb.Exec(t, f.db, `SELECT audit.set_pii_columns('customers', '{email}')`)
	testdb.Seal(t, f.db)
	var got []string
	rows, err := f.db.Query(ctx, `SELECT resource_type || ':' || (details->>'operation') FROM audit.events WHERE action_type = 'AUDIT_CONFIG' ORDER BY seq`)
	if err == nil {
		got, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	// The publication's change is enabling customers in mode trigger (schema 12: the WAL witnesses it).
	want := []string{"audit.tenant_readers:INSERT", "audit.tenant_readers:INSERT", "publication pgtrail:ADD TABLE", "audit.pii_columns:INSERT",
		"audit.retention_policies:INSERT", "audit.pii_columns:UPDATE"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("AUDIT_CONFIG events = %v (%v), want %v", got, err, want)
	}
	for _, table := range []string{"audit.pii_columns", "audit.tenant_readers", "audit.retention_policies", "audit.chain_anchors"} {
		if _, err := f.db.Exec(ctx, "TRUNCATE "+table); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("TRUNCATE %s: err = %v, want the guard's refusal", table, err)
		}
	}
}

// TestInvestigationsMigration_DownUp reverts the migration: refused without force while the trail
// holds data (everything stays), and with force readers get audit.events back; then it applies
// again.
func TestInvestigationsMigration_DownUp(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(f.url)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pgschema.NewMigrator(ctx, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	before, _, _ := m.Version()
	if err := m.Down(ctx); !errors.Is(err, pgschema.ErrHoldsAuditData) {
		t.Fatalf("down without force: err = %v, want ErrHoldsAuditData", err)
	}
	if v, dirty, _ := m.Version(); v != before || dirty {
		t.Errorf("after the refused down: version %d dirty %v, want %d clean", v, dirty, before)
	}
	var masked bool
	if err := f.db.QueryRow(ctx, `SELECT to_regclass('audit.events_masked') IS NOT NULL`).Scan(&masked); err != nil || !masked {
		t.Fatalf("refused down removed the masked view (%v)", err)
	}

	// The later migrations go down first and come up again after it, as `migrate to 2` and
	// `migrate up` would run them.
	// Every version after 3, newest first (their downs run before 3's).
	ups, err := fs.Glob(pgschema.Migrations(), "*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	var later []string
	for _, up := range slices.Backward(ups) {
		if name := strings.TrimSuffix(up, ".up.sql"); name > "000003_investigations" {
			later = append(later, name)
		}
	}
	var downs []string
	ups = nil
	for _, name := range append(later, "000003_investigations") {
		down, err := readMigration(name + ".down.sql")
		if err != nil {
			t.Fatal(err)
		}
		up, err := readMigration(name + ".up.sql")
		if err != nil {
			t.Fatal(err)
		}
		downs, ups = append(downs, down), append([]string{up}, ups...)
	}
	conn, err := f.db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	testdb.Exec(t, conn, `SET pgtrail.force_destroy_audit_data = on`)
	for _, down := range downs {
		if _, err := conn.Exec(ctx, down); err != nil {
			t.Fatalf("down with force: %v", err)
		}
	}
	reader, _ := f.connect(t, f.reader)
	if _, err := dump(t, reader, `SELECT * FROM audit.events`); err != nil {
		t.Errorf("after down, reader cannot read audit.events: %v", err)
	}
	var pending int
	if err := f.db.QueryRow(ctx, `SELECT count(*) FROM audit.pending`).Scan(&pending); err != nil || pending != 0 {
		t.Errorf("down recorded %d DDL events (%v), want none: it is the migration's own change", pending, err)
	}
	for _, up := range ups {
		if _, err := conn.Exec(ctx, up); err != nil {
			t.Fatalf("up again: %v", err)
		}
	}
	if _, err := dump(t, reader, `SELECT * FROM audit.events`); err == nil {
		t.Error("after up, reader reads audit.events again")
	}
}

func readMigration(name string) (string, error) {
	data, err := fs.ReadFile(pgschema.Migrations(), name)
	return string(data), err
}

// TestTenantReaders_NoPlannerSideChannel: a tenant reader guesses another tenant's values and
// reads the answer from the plan, not the rows: with enable_seqscan off, an index scan on its own
// (leakproof) condition ran before row-level security, and EXPLAIN ANALYZE counted the other
// tenant's rows it removed ("Rows Removed by Filter"). What must survive: the plans of a guess
// that exists in another tenant and of one that exists nowhere are alike, for what pgtrail
// search runs and for the tables and views read directly (or those are refused).
func TestTenantReaders_NoPlannerSideChannel(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	acme, _ := f.connect(t, f.acmeReader)
	if _, err := acme.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	counts := regexp.MustCompile(`(actual rows=\d+|Rows Removed by \w+: \d+)`)
	plan := func(sql string, args ...any) (string, error) {
		t.Helper()
		rows, err := dump(t, acme, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "+sql, args...)
		if err != nil {
			return "", err
		}
		return strings.Join(counts.FindAllString(strings.Join(rows, "\n"), -1), " "), nil
	}
	rel, err := search.ChooseRelation(ctx, acme)
	if err != nil {
		t.Fatal(err)
	}
	// Customer 2 and actor bob are globex's; 999 and mallory are nobody's.
	guesses := []struct {
		name       string
		sql        func(guess string) (string, []any)
		hit, blank string
	}{
		{"Search", func(g string) (string, []any) {
			return search.Query(&search.Filter{ResourceType: "public.customers", ResourceID: &g}, rel, 0)
		}, "2", "999"},
		{"SearchActor", func(g string) (string, []any) { return search.Query(&search.Filter{Actor: g}, rel, 0) }, "bob", "mallory"},
		{"MaskedView", func(g string) (string, []any) {
			return `SELECT seq FROM audit.events_masked WHERE md5(resource_type) = md5('public.customers') AND md5(resource_id) = md5($1)`, []any{g}
		}, "2", "999"},
		{"Table", func(g string) (string, []any) {
			return `SELECT seq FROM audit.events WHERE md5(actor_id) = md5($1)`, []any{g}
		}, "bob", "mallory"},
	}
	for _, g := range guesses {
		t.Run(g.name, func(t *testing.T) {
			sql, args := g.sql(g.hit)
			hit, errHit := plan(sql, args...)
			sql, args = g.sql(g.blank)
			blank, errBlank := plan(sql, args...)
			if errHit != nil || errBlank != nil {
				if errHit == nil || errBlank == nil || !strings.Contains(errHit.Error(), "permission denied") {
					t.Errorf("refused one guess and not the other, or not for want of permission: %v / %v", errHit, errBlank)
				}
				return
			}
			if hit != blank {
				t.Errorf("the plan tells another tenant's value from none:\n  %q: %s\n  %q: %s", g.hit, hit, g.blank, blank)
			}
		})
	}
}

// TestEventsMasked_PIIKey: a table whose primary key is a PII column (an email). The key was in
// every entry's resource_id, unmasked, for readers of audit.events_masked and of pgtrail search.
// What must survive: readers see a keyed hash in its place, the same for every entry of one row
// (so an investigation can still follow a record) and different between rows; search by that
// value finds them; the auditor sees the key.
func TestEventsMasked_PIIKey(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	testdb.Exec(t, f.db, `CREATE TABLE subscribers (email text PRIMARY KEY, plan text);
		SELECT audit.enable('subscribers', '{}', '{email}', 'trigger');
		INSERT INTO subscribers VALUES ('carol@example.com', 'free'), ('dave@example.com', 'free');
		UPDATE subscribers SET plan = 'pro' WHERE email = 'carol@example.com'`)
	testdb.Seal(t, f.db)
	reader, _ := f.connect(t, f.reader)
	ids, err := dump(t, reader, `SELECT resource_id FROM audit.events_masked WHERE resource_type = 'public.subscribers' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || ids[0] != ids[2] || ids[0] == ids[1] || !strings.HasPrefix(ids[0], "masked:") {
		t.Errorf("reader's resource_ids %v: want 3, masked, carol's two alike and unlike dave's", ids)
	}
	for _, id := range ids {
		if strings.Contains(id, "@") {
			t.Errorf("reader sees the key %s", id)
		}
	}
	carol := strings.TrimSuffix(ids[0], "|")
	res, err := search.DB(ctx, reader, search.Filter{ResourceType: "public.subscribers", ResourceID: &carol})
	if err != nil || len(res.Events) != 2 {
		t.Errorf("reader's search by the masked id: %v, %d events, want 2", err, len(res.Events))
	}
	auditor, _ := f.connect(t, f.auditor)
	raw, err := dump(t, auditor, `SELECT resource_id FROM audit.events WHERE resource_type = 'public.subscribers' ORDER BY seq`)
	if err != nil || len(raw) != 3 || raw[0] != "carol@example.com|" {
		t.Errorf("auditor's resource_ids %v (%v), want the keys", raw, err)
	}
}
