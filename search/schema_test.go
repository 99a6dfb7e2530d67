package search_test

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtrail/pgtrail/internal/testdb"
	pgsql "github.com/pgtrail/pgtrail/sql"
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
	testdb.Exec(t, f.db, `SET pgtrail.tenant_id = 'acme'; SELECT audit.log_event('LOGIN', 'session', 'pending-acme')`)
	testdb.Exec(t, f.db, `SET pgtrail.tenant_id = 'globex'; SELECT audit.log_event('LOGIN', 'session', 'pending-globex')`)
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
			if got := tenants(acme, `SELECT tenant_id FROM audit.events_masked`); !slices.Equal(got, []string{"acme|"}) {
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
		if _, err := dump(t, acme, `SELECT seq FROM audit.events_masked WHERE scratch.peek(coalesce(tenant_id, 'none'))`); err != nil {
			t.Fatal(err)
		}
		for _, n := range *notices {
			if n != "peek: acme" {
				t.Errorf("the reader's function saw %q: row-level security let it run on another tenant's rows", n)
			}
		}
	})
	t.Run("DirectTable", func(t *testing.T) {
		if _, err := dump(t, acme, `SELECT * FROM audit.events`); err == nil {
			t.Error("tenant reader reads audit.events")
		}
	})

	globex, _ := f.connect(t, f.globexAuditor)
	if got := tenants(globex, `SELECT tenant_id FROM audit.events`); !slices.Equal(got, []string{"globex|"}) {
		t.Errorf("globex auditor sees tenants %v in audit.events, want only globex", got)
	}
	if got := tenants(globex, `SELECT tenant_id FROM audit.pending`); !slices.Equal(got, []string{"globex|"}) {
		t.Errorf("globex auditor sees tenants %v in audit.pending, want only globex", got)
	}
	if got := tenants(globex, `SELECT role || ':' || tenant_id FROM audit.tenant_readers`); len(got) != 2 {
		t.Errorf("auditor sees mappings %v, want both", got)
	}
	if got := tenants(acme, `SELECT role || ':' || tenant_id FROM audit.tenant_readers`); !slices.Equal(got, []string{f.acmeReader + ":acme|"}) {
		t.Errorf("acme reader sees mappings %v, want only its own", got)
	}

	testdb.Exec(t, f.db, `SELECT audit.remove_tenant_reader($1::regrole, 'acme')`, f.acmeReader)
	if got := tenants(acme, `SELECT tenant_id FROM audit.events_masked`); len(got) != 0 {
		t.Errorf("after unmapping, acme reader sees %v, want nothing", got)
	}
	for _, bad := range []string{`SELECT audit.add_tenant_reader('postgres', 'acme')`, `SELECT audit.add_tenant_reader('pgtrail_reader', NULL)`} {
		if _, err := f.db.Exec(ctx, bad); err == nil {
			t.Errorf("%s succeeded, want a refusal (a superuser cannot be scoped; a tenant is needed)", bad)
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
	want := []string{"audit.tenant_readers:INSERT", "audit.tenant_readers:INSERT", "audit.pii_columns:INSERT",
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
	m, err := pgsql.NewMigrator(ctx, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	before, _, _ := m.Version()
	if err := m.Down(ctx); !errors.Is(err, pgsql.ErrHoldsAuditData) {
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
	later := []string{"000006_wal_capture", "000005_sealer_role", "000004_capture_cost"}
	var downs, ups []string
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
	data, err := fs.ReadFile(pgsql.Migrations(), name)
	return string(data), err
}
