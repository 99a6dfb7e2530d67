package pgschema_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// TestHostile_OwnerMember tries, as a login role that is a member of pgtrail_owner, every way
// found on schema version 4 to silence or forge the trail. Each must be refused; what must
// survive: the trail as it was, capture of the next change, and a chain that verifies.
func TestHostile_OwnerMember(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, db, `CREATE TABLE accounts (id int PRIMARY KEY, balance int); SELECT audit.enable('accounts');
		INSERT INTO accounts VALUES (1, 10)`)
	testdb.Seal(t, db)
	testdb.Exec(t, db, `CREATE ROLE owner_mallory LOGIN IN ROLE pgtrail_owner; CREATE TABLE hostile_secret (ssn text)`)
	var before int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM audit.events`).Scan(&before); err != nil {
		t.Fatal(err)
	}

	// Each runs in its own transaction as owner_mallory acting as pgtrail_owner.
	attacks := []struct{ name, sql string }{
		// The setting the guards trusted: any session can set it to its own xid.
		{"ForgedSealingSettingInsert", `SELECT set_config('pgtrail.sealing', pg_current_xact_id()::text, true);
			INSERT INTO audit.events SELECT seq + 1000, gen_random_uuid(), occurred_at - interval '1 year', txid, action_type,
			  resource_type, resource_id, outcome, 'someone-else', actor_ip, actor_ip_raw, actor_user_agent, request_id,
			  tenant_id, db_user, application_name, client_addr, changed_columns, before_state, after_state, details,
			  prev_hash, entry_hash FROM audit.events LIMIT 1`},
		{"ForgedSealingSettingRewritePending", `SELECT set_config('pgtrail.sealing', pg_current_xact_id()::text, true);
			UPDATE audit.pending SET actor_id = 'someone-else'`},
		{"ForgedSealingSettingHead", `SELECT set_config('pgtrail.sealing', pg_current_xact_id()::text, true);
			UPDATE audit.chain_head SET seq = seq`},
		{"InsertPending", `INSERT INTO audit.pending (action_type, resource_type, outcome, occurred_at) VALUES ('UPDATE', 'public.accounts', 'SUCCESS', now() - interval '1 year')`},
		// Rules and triggers on the trail were not recorded, and the DDL trigger's own function
		// could be replaced.
		{"RuleOnPending", `CREATE RULE r AS ON INSERT TO audit.pending DO INSTEAD NOTHING`},
		{"RuleOnConfig", `CREATE RULE r AS ON INSERT TO audit.pii_columns DO INSTEAD NOTHING`},
		{"TriggerOnPending", `CREATE TRIGGER t BEFORE INSERT ON audit.pending FOR EACH ROW EXECUTE FUNCTION audit.refuse_change()`},
		{"TriggerOnConfig", `CREATE TRIGGER t BEFORE INSERT ON audit.tenant_readers FOR EACH ROW EXECUTE FUNCTION audit.refuse_change()`},
		{"PolicyOnEvents", `CREATE POLICY p ON audit.events FOR SELECT TO PUBLIC USING (true)`},
		{"ReplaceDDLTrigger", `CREATE OR REPLACE FUNCTION audit.capture_ddl() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END'`},
		{"ReplaceRecordDDL", `CREATE OR REPLACE FUNCTION audit.record_ddl(boolean) RETURNS void LANGUAGE sql AS 'SELECT'`},
		{"ReplaceCapture", `CREATE OR REPLACE FUNCTION audit.capture() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'`},
		{"ReplaceGuard", `CREATE OR REPLACE FUNCTION audit.refuse_unless_sealing() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'`},
		// Stopping the trail: the sealer's rights, the schema's name, the guards.
		{"RenameSchema", `ALTER SCHEMA audit RENAME TO elsewhere`},
		{"DisableGuard", `ALTER TABLE audit.pending DISABLE TRIGGER guard`},
		{"DisableConfigLog", `ALTER TABLE audit.pii_columns DISABLE TRIGGER log_change`},
		{"DropConfigLog", `DROP TRIGGER log_change ON audit.pii_columns`},
		{"RecordDDLDirectly", `SELECT audit.record_ddl(true)`},
		// Which tables are audited, and how: owned by the sealer since schema 6.
		{"UnauditTable", `DELETE FROM audit.audited_tables`},
		{"ChangeExclusions", `UPDATE audit.audited_tables SET exclude_columns = '{balance}'`},
		// Publishing a table puts its rows in the trail: not one the member may not read.
		{"PublishUnreadable", `SELECT audit.publish_table('hostile_secret', true)`},
		{"PublishTrail", `SELECT audit.publish_table('audit.pending', true)`},
	}
	// Revoking the sealer's rights is not refused (PostgreSQL warns that nothing was revoked: only
	// the owner's grants can be); that sealing still works below shows it had no effect.
	testdb.Exec(t, connectAs(t, url, "owner_mallory"), `SET ROLE pgtrail_owner; REVOKE INSERT ON audit.events FROM pgtrail_sealer; REVOKE ALL ON SCHEMA audit FROM pgtrail_sealer`)
	conn := connectAs(t, url, "owner_mallory")
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			_, err := conn.Exec(ctx, "BEGIN; SET LOCAL ROLE pgtrail_owner; "+a.sql+"; COMMIT")
			conn.Exec(ctx, "ROLLBACK")
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("%s: err = %v, want a refusal", a.sql, err)
			}
			refused := pgErr.Code == "42501" || pgErr.Code == "42P01" && strings.Contains(pgErr.Message, "audit") ||
				strings.Contains(pgErr.Message, "refused") || strings.Contains(pgErr.Message, "must be owner") ||
				strings.Contains(pgErr.Message, "event trigger") || strings.Contains(pgErr.Message, "may not read") ||
				strings.Contains(pgErr.Message, "part of pgtrail")
			if !refused {
				t.Errorf("%s: err = %v, want a refusal", a.sql, err)
			}
		})
	}

	// The owner's own work still works, and is recorded.
	if _, err := conn.Exec(ctx, `SET ROLE pgtrail_owner; SELECT audit.set_pii_columns('accounts', '{balance}'); SELECT audit.create_partitions(4); RESET ROLE`); err != nil {
		t.Fatalf("owner member configuring: %v", err)
	}
	testdb.Exec(t, db, `UPDATE accounts SET balance = 11 WHERE id = 1`)
	testdb.Seal(t, db)
	got := readEvents(t, db, "seq > $1", before)
	var config, update bool
	for _, e := range got {
		config = config || e.Action == "AUDIT_CONFIG"
		update = update || e.Action == "UPDATE" && e.ResourceType == "public.accounts"
		if e.ActorID == "someone-else" {
			t.Errorf("a forged entry reached the trail: %+v", e)
		}
	}
	if !config || !update {
		t.Errorf("after the attacks: AUDIT_CONFIG recorded %v, next UPDATE captured %v; entries %+v", config, update, got)
	}
	rep, err := verify.DB(ctx, db)
	if err != nil || !rep.Intact() {
		t.Errorf("verify db after the attacks: %+v, %v", rep, err)
	}
}

// TestHostile_ReplicationRole: a superuser with session_replication_role = replica (what made
// triggers skip capture on version 4) changes and truncates audited rows, and changes the schema
// of an audited table. What must survive: every change and the DDL in the trail.
func TestHostile_ReplicationRole(t *testing.T) {
	db, _ := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE accounts (id int PRIMARY KEY, balance int); SELECT audit.enable('accounts');
		INSERT INTO accounts VALUES (1, 10)`)
	testdb.Seal(t, db)
	var before int64
	if err := db.QueryRow(context.Background(), `SELECT max(seq) FROM audit.events`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	testdb.Exec(t, conn, `SET session_replication_role = replica;
		UPDATE accounts SET balance = 1000000 WHERE id = 1;
		INSERT INTO accounts VALUES (2, 5);
		ALTER TABLE accounts ADD COLUMN note text;
		TRUNCATE accounts;
		RESET session_replication_role`)
	testdb.Seal(t, db)
	var got []string
	for _, e := range readEvents(t, db, "seq > $1", before) {
		if e.ResourceType == "public.accounts" || e.Action == "DDL" && str(e.ResourceID) == "public.accounts" {
			got = append(got, e.Action)
		}
	}
	want := "UPDATE,CREATE,DDL,TRUNCATE"
	if strings.Join(got, ",") != want {
		t.Errorf("entries for accounts = %v, want %s", got, want)
	}
}

// TestHostile_PoisonValues: any role writes context values and log_event arguments far longer
// than an index entry can hold (1 MB). What must survive: those entries, with their full values,
// and every entry after them, sealed and verified.
func TestHostile_PoisonValues(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, db, `CREATE TABLE accounts (id text PRIMARY KEY, balance int); SELECT audit.enable('accounts');
		CREATE ROLE poison_app LOGIN; GRANT ALL ON accounts TO poison_app`)
	app := connectAs(t, url, "poison_app")
	big := `(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 32768) i)` // 1 MiB, incompressible enough
	steps := []string{
		`SELECT set_config('pgtrail.actor_id', ` + big + `, false)`,
		`INSERT INTO accounts VALUES ('a', 1)`,
		`RESET pgtrail.actor_id`,
		`SELECT set_config('pgtrail.tenant_id', ` + big + `, false), set_config('pgtrail.request_id', ` + big + `, false)`,
		`INSERT INTO accounts VALUES ('b', 1)`,
		`RESET pgtrail.tenant_id; RESET pgtrail.request_id`,
		// A key as long as the table's own index allows (its entry holds a third of a page).
		`INSERT INTO accounts VALUES ((SELECT string_agg(md5(i::text), '') FROM generate_series(1, 84) i), 1)`,
		`SELECT audit.log_event('VIEW_PII', ` + big + `, ` + big + `)`,
		`INSERT INTO accounts VALUES ('after', 1)`,
	}
	for _, s := range steps {
		if _, err := app.Exec(ctx, s); err != nil {
			t.Fatalf("as app: %s: %v", s[:min(len(s), 60)], err)
		}
	}
	testdb.Seal(t, db)
	var n, longest int
	var after bool
	err := db.QueryRow(ctx, `SELECT count(*), max(greatest(length(actor_id), length(tenant_id), length(request_id), length(resource_id), length(resource_type))),
	                                bool_or(resource_id = 'after')
	                           FROM audit.events WHERE resource_type = 'public.accounts' OR action_type = 'VIEW_PII'`).Scan(&n, &longest, &after)
	if err != nil || n != 5 || longest != 1<<20 || !after {
		t.Errorf("sealed %d entries (want 5), longest value %d (want %d), the entry after them sealed %v (%v)", n, longest, 1<<20, after, err)
	}
	rep, err := verify.DB(ctx, db)
	if err != nil || !rep.Intact() {
		t.Errorf("verify db: %+v, %v", rep, err)
	}
}

// TestHostile_OwnerCodeInCapture: a table's owner (a plain role) gives its enum a cast to json,
// which capture's to_jsonb(NEW) calls. On schema 5 before this fix capture ran as the trail's
// owner, and the cast rewrote the trail from inside. The cast now tries the same: delete this
// transaction's pending entries, append a forged entry, disable a guard. What must hold: every
// attempt refused, the change captured, the chain intact. Any role also tries to stop the sealer
// with a reserved key of details that it cannot expand: refused.
func TestHostile_OwnerCodeInCapture(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, db, `CREATE ROLE cast_app LOGIN; GRANT CREATE ON SCHEMA public TO cast_app`)
	app := connectAs(t, url, "cast_app")
	testdb.Exec(t, app, `
		CREATE TYPE mood AS ENUM ('sad', 'happy');
		CREATE TABLE public.tried (what text); GRANT INSERT ON public.tried TO PUBLIC;
		CREATE FUNCTION public.mood_json(m mood) RETURNS json LANGUAGE plpgsql AS $f$
		DECLARE a text;
		BEGIN
		  FOREACH a IN ARRAY ARRAY[
		    'DELETE FROM audit.pending',
		    'INSERT INTO audit.events SELECT * FROM audit.events LIMIT 1',
		    'ALTER TABLE audit.events DISABLE TRIGGER guard',
		    'UPDATE audit.chain_head SET seq = seq + 1'] LOOP
		    BEGIN
		      EXECUTE a;
		      INSERT INTO public.tried VALUES (a || ' as ' || current_user);
		    EXCEPTION WHEN others THEN NULL;
		    END;
		  END LOOP;
		  RETURN to_json(m::text);
		END $f$;
		CREATE CAST (mood AS json) WITH FUNCTION public.mood_json(mood);
		CREATE TABLE feelings (id int PRIMARY KEY, m mood)`)
	testdb.Exec(t, db, `SELECT audit.enable('feelings')`)
	testdb.Exec(t, app, `INSERT INTO feelings VALUES (1, 'happy'); UPDATE feelings SET m = 'sad'`)
	testdb.Seal(t, db)
	var succeeded []string
	rows, err := db.Query(ctx, `SELECT what FROM public.tried`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var w string
		rows.Scan(&w)
		succeeded = append(succeeded, w)
	}
	rows.Close()
	if len(succeeded) > 0 {
		t.Errorf("the owner's cast changed the trail: %v", succeeded)
	}
	if got := readEvents(t, db, "resource_type = 'public.feelings'"); len(got) != 2 || got[1].After["m"] != "sad" {
		t.Errorf("entries of feelings: %+v", got)
	}
	if _, err := app.Exec(ctx, `SELECT audit.log_event('X', 'y', NULL, 'SUCCESS', '{"excluded_columns_changed": 1}')`); err == nil {
		t.Error("log_event with a scalar excluded_columns_changed: accepted, want refused")
	}
	if _, err := app.Exec(ctx, `SELECT audit.log_event('X', 'y', NULL, 'SUCCESS', '{"capture_warning": "forged"}')`); err == nil {
		t.Error("log_event with capture_warning: accepted, want refused")
	}
	// Capture runs as the writer, so the writer may add capture-shaped rows to audit.pending:
	// none of a shape that makes the sealer fail.
	for _, bad := range []string{
		`INSERT INTO audit.pending (action_type, resource_type, outcome, before_state, after_state) VALUES ('UPDATE', 'x', 'SUCCESS', '1', '2')`,
		`INSERT INTO audit.pending (action_type, resource_type, outcome, txid, occurred_at) VALUES ('UPDATE', 'x', 'SUCCESS', '1', now() - interval '1 year')`,
		// Longer than an index entry holds (action_type is indexed as it is), or not a word.
		`INSERT INTO audit.pending (action_type, resource_type, outcome) VALUES ((SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) i), 'y', 'SUCCESS')`,
		`INSERT INTO audit.pending (action_type, resource_type, outcome) VALUES ('UPDATE', 'y', 'MAYBE')`,
		// The stream cannot scan a NULL changed column.
		`SELECT audit.log_event('X', 'y', 'z', 'SUCCESS', '{"excluded_columns_changed": [null]}')`,
	} {
		if _, err := app.Exec(ctx, bad); err == nil {
			t.Errorf("as the application: %s: accepted, want refused", bad)
		}
	}
	testdb.Exec(t, app, `INSERT INTO feelings VALUES (2, 'happy')`)
	if n := testdb.Seal(t, db); n < 1 {
		t.Errorf("sealed %d entries after the attempts, want the next change", n)
	}
	rep, err := verify.DB(ctx, db)
	if err != nil || !rep.Intact() {
		t.Errorf("verify db: %+v, %v", rep, err)
	}
}

// TestHostile_ReadAllData: a role granted pg_read_all_data (a backup or reporting role, not a
// superuser) reads every table. The key that authenticates WAL context messages must not be
// among what it reads: with it, it could emit a context message naming anyone, and its own
// changes to tables in mode wal would be chained as theirs. What must survive: the key secret,
// and the emitting of context messages (which reads the key as the sealer).
func TestHostile_ReadAllData(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, db, `CREATE ROLE backup_bob LOGIN IN ROLE pg_read_all_data`)
	conn := connectAs(t, url, "backup_bob")
	for _, q := range []string{
		`SELECT encode(key, 'hex') FROM audit.context_key`,
		`SELECT encode(key, 'hex') FROM ONLY audit.context_key`,
		`TABLE audit.context_key`,
	} {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			continue // refused: fine
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err == nil && n > 0 {
			t.Errorf("%s: a pg_read_all_data member read %d key row(s)", q, n)
		}
	}
	// The key still signs: a context message is emitted for a session of this role.
	var msg string
	if err := db.QueryRow(ctx, `SELECT count(*)::text FROM audit.context_key`).Scan(&msg); err != nil || msg != "1" {
		t.Fatalf("the superuser sees %s key rows (%v), want 1", msg, err)
	}
	if _, err := conn.Exec(ctx, `BEGIN; SELECT audit.emit_signed_context(); COMMIT`); err != nil {
		t.Errorf("emitting a context message as a pg_read_all_data member: %v", err)
	}
}

// TestHostile_ReservedEventTypes: audit.log_event is open to every role for the application's
// own events; pgtrail's own event types must not be written through it by a role that pgtrail
// does not write them as. A forged VERIFY carrying a checkpoint blinded every later incremental
// verification; a forged TAMPERING, CAPTURE_GAP or ALERT cries wolf; a forged UPDATE or DDL
// looks like a captured change; a forged AUDIT_DISABLE like a configuration change. What must
// survive: every refusal (nothing reaches audit.pending), the application's own event types,
// each reserved type for the role pgtrail writes it as, and pgtrail's own writers of them (DDL
// capture, enable and disable, the configuration triggers).
func TestHostile_ReservedEventTypes(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, db, `CREATE ROLE app_alice LOGIN; CREATE ROLE reader_rita LOGIN IN ROLE pgtrail_reader;
		CREATE ROLE auditor_alan LOGIN IN ROLE pgtrail_auditor; CREATE ROLE owner_olga LOGIN IN ROLE pgtrail_owner;
		CREATE ROLE stream_sam LOGIN IN ROLE pgtrail_sealer; CREATE TABLE accounts (id int PRIMARY KEY, balance int);
		ALTER TABLE accounts OWNER TO owner_olga`)
	checkpoint := `'{"checkpoint": {"version": 1, "scope": "db", "seq": 40, "entry_hash": "00", "verified_at": "2026-01-01T00:00:00Z", "signature": "AAAA"}}'`
	cases := []struct {
		role, action, resource string
		allowed                bool
	}{
		{"app_alice", "LOGIN", "session", true},
		{"app_alice", "EXPORT", "report", true}, // the application's own exports
		{"app_alice", "VERIFY", "audit.events", false},
		{"app_alice", "TAMPERING", "audit.events", false},
		{"app_alice", "CAPTURE_GAP", "wal", false},
		{"app_alice", "ALERT", "alert_rule", false},
		{"app_alice", "AUDIT_DISABLE", "table", false},
		{"app_alice", "AUDIT_CONFIG", "audit.pii_columns", false},
		{"app_alice", "PRUNE", "audit.events", false},
		{"app_alice", "DDL", "table", false},
		{"app_alice", "UPDATE", "public.accounts", false},
		{"app_alice", "EXPORT", "audit.events", false},
		{"reader_rita", "EXPORT", "audit.events", true},
		{"reader_rita", "VERIFY", "audit.events", false},
		{"auditor_alan", "VERIFY", "audit.events", true},
		{"auditor_alan", "TAMPERING", "audit.events", false},
		{"owner_olga", "AUDIT_CONFIG", "table", true},
		{"owner_olga", "TAMPERING", "audit.events", false},
		{"owner_olga", "DDL", "table", false},
		{"stream_sam", "TAMPERING", "audit.events", true},
		{"stream_sam", "ALERT", "alert_rule", true},
	}
	for _, c := range cases {
		t.Run(c.role+"_"+c.action+"_"+c.resource, func(t *testing.T) {
			conn := connectAs(t, url, c.role)
			var before, after int
			db.QueryRow(ctx, `SELECT count(*) FROM audit.pending`).Scan(&before)
			_, err := conn.Exec(ctx, `SELECT audit.log_event($1, $2, 'x', 'SUCCESS', `+checkpoint+`)`, c.action, c.resource)
			db.QueryRow(ctx, `SELECT count(*) FROM audit.pending`).Scan(&after)
			switch {
			case c.allowed && err != nil:
				t.Errorf("%s writing %s on %s: %v, want it recorded", c.role, c.action, c.resource, err)
			case !c.allowed && err == nil:
				t.Errorf("%s wrote pgtrail's own %s on %s", c.role, c.action, c.resource)
			case !c.allowed && (after != before || !strings.Contains(err.Error(), "pgtrail's own")):
				t.Errorf("%s writing %s: err %v, pending %d -> %d; want a refusal naming the type as pgtrail's own and nothing pending", c.role, c.action, err, before, after)
			}
		})
	}
	// pgtrail's own writers, acting for roles that may not write the types themselves.
	olga := connectAs(t, url, "owner_olga")
	if _, err := olga.Exec(ctx, `SELECT audit.enable('accounts', '{}', NULL, 'trigger'); SET ROLE pgtrail_owner;
		SELECT audit.set_pii_columns('accounts', '{balance}'); RESET ROLE; ALTER TABLE accounts ADD COLUMN note text;
		SELECT audit.disable('accounts')`); err != nil {
		t.Fatalf("an owner member enabling, configuring, altering and disabling: %v", err)
	}
	testdb.Seal(t, db)
	var kinds string
	if err := db.QueryRow(ctx, `SELECT string_agg(DISTINCT action_type, ',' ORDER BY action_type) FROM audit.events WHERE db_user = 'owner_olga'`).Scan(&kinds); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"AUDIT_CONFIG", "AUDIT_DISABLE", "AUDIT_ENABLE", "DDL"} {
		if !strings.Contains(kinds, k) {
			t.Errorf("events recorded for owner_olga's work: %s, want %s among them", kinds, k)
		}
	}
}

// TestHostile_CaptureTriggerOff: in mode trigger, a superuser or the table's owner turns the
// capture trigger off (disables it, makes it fire for replicas only, drops it) and changes rows
// that then never reach the trail; in mode wal, the context trigger (changes are then chained
// without who made them). The ALTER was a DDL entry among others, and verify said intact. What
// must survive: each such act is a CAPTURE_GAP entry naming the table, and verify db reports it
// (kind capture_warning); pgtrail's own enabling, switching and disabling raise none.
func TestHostile_CaptureTriggerOff(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Slot(t, db, "pgtrail")
	testdb.Exec(t, db, `CREATE ROLE owner_otto LOGIN IN ROLE pgtrail_owner;
		CREATE TABLE accounts (id int PRIMARY KEY, balance int); ALTER TABLE accounts OWNER TO owner_otto;
		CREATE TABLE ledger (id int PRIMARY KEY, memo text);
		CREATE TABLE orders (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('eu');
		CREATE TABLE parted (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
		CREATE FUNCTION public.fake_capture() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`)
	// pgtrail's own work: none of it is a gap.
	testdb.Exec(t, db, `SELECT audit.enable('accounts', '{}', NULL, 'trigger'); SELECT audit.enable('ledger', '{}', NULL, 'wal');
		SELECT audit.enable('orders', '{}', NULL, 'trigger'); SELECT audit.enable('parted', '{}', NULL, 'wal');
		SELECT audit.enable('parted', '{}', NULL, 'trigger'); SELECT audit.enable('parted', '{}', NULL, 'wal');
		SELECT audit.enable('ledger', '{}', NULL, 'trigger'); SELECT audit.enable('ledger', '{}', NULL, 'wal');
		ALTER TABLE accounts ADD COLUMN note text; SELECT audit.disable('orders'); SELECT audit.enable('orders', '{}', NULL, 'trigger')`)
	gaps := func() int {
		var n int
		if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit.pending WHERE action_type = 'CAPTURE_GAP')
			+ (SELECT count(*) FROM audit.events WHERE action_type = 'CAPTURE_GAP')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := gaps(); n != 0 {
		t.Fatalf("pgtrail's own enable, mode switches and disable raised %d CAPTURE_GAP entries, want 0", n)
	}
	otto := connectAs(t, url, "owner_otto")
	acts := []struct {
		name string
		conn interface {
			Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
		}
		sql   string
		table string
	}{
		{"SuperuserDisablesAll", db, `ALTER TABLE accounts DISABLE TRIGGER ALL; UPDATE accounts SET balance = 0; ALTER TABLE accounts ENABLE TRIGGER ALL`, "public.accounts"},
		{"OwnerDisables", otto, `ALTER TABLE accounts DISABLE TRIGGER pgtrail_capture`, "public.accounts"},
		{"OwnerReplicaOnly", otto, `ALTER TABLE accounts ENABLE REPLICA TRIGGER pgtrail_capture`, "public.accounts"},
		{"OwnerDrops", otto, `DROP TRIGGER pgtrail_capture ON accounts`, "public.accounts"},
		// Enabled and ALWAYS, but running the owner's function, which writes capture rows of its
		// choosing (schema 13).
		{"OwnerReplacesFunction", otto, `CREATE OR REPLACE TRIGGER pgtrail_capture AFTER INSERT OR UPDATE OR DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION public.fake_capture();
			ALTER TABLE accounts ENABLE ALWAYS TRIGGER pgtrail_capture`, "public.accounts"},
		{"PartitionTruncateReplaced", db, `CREATE OR REPLACE TRIGGER pgtrail_capture_truncate AFTER TRUNCATE ON orders_eu FOR EACH STATEMENT EXECUTE FUNCTION public.fake_capture()`, "public.orders"},
		{"PartitionDisabled", db, `ALTER TABLE orders_eu DISABLE TRIGGER pgtrail_capture`, "public.orders"},
		{"ContextDisabled", db, `ALTER TABLE ledger DISABLE TRIGGER pgtrail_context`, "public.ledger"},
	}
	for _, a := range acts {
		t.Run(a.name, func(t *testing.T) {
			before := gaps()
			if _, err := a.conn.Exec(ctx, a.sql); err != nil {
				t.Fatalf("%s: %v", a.sql, err)
			}
			if after := gaps(); after <= before {
				t.Errorf("%s: no CAPTURE_GAP entry", a.sql)
			}
			var named bool
			db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM audit.pending WHERE action_type = 'CAPTURE_GAP' AND resource_id = $1)`, a.table).Scan(&named)
			if !named {
				t.Errorf("%s: no CAPTURE_GAP entry names %s", a.sql, a.table)
			}
			testdb.Exec(t, db, `SELECT audit.enable('accounts', '{}', NULL, 'trigger'); SELECT audit.enable('orders', '{}', NULL, 'trigger');
				ALTER TABLE orders_eu ENABLE ALWAYS TRIGGER pgtrail_capture; SELECT audit.enable('ledger', '{}', NULL, 'wal')`)
		})
	}
	testdb.Seal(t, db)
	rep, err := verify.DB(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	warned := 0
	for _, p := range rep.Problems {
		if p.Kind == verify.CaptureWarning {
			warned++
		}
	}
	if rep.Intact() || warned != gaps() {
		t.Errorf("verify db: intact %v, %d capture warnings for %d CAPTURE_GAP entries; want each reported", rep.Intact(), warned, gaps())
	}
}

// TestHostile_PartitionTruncated: the owner of a partitioned audited table (no member of any
// pgtrail role) truncates one partition on its own, in mode trigger and in mode wal, including a
// partition it created after the table was enabled. Before schema 13 neither mode captured it:
// the table's statement trigger does not fire for a partition, and the publication sends no
// TRUNCATE of a lone partition. Must survive: a TRUNCATE entry naming each partition emptied;
// the new partition given its capture at once (no capture problem, no CAPTURE_GAP for creating
// it); the partition's TRUNCATE trigger turned off is a CAPTURE_GAP entry. A foreign partition
// (which takes no TRUNCATE trigger) does not stop its table from being enabled.
func TestHostile_PartitionTruncated(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Slot(t, db, "pgtrail")
	testdb.Exec(t, db, `CREATE ROLE owner_paula LOGIN;
		CREATE TABLE orders (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('eu');
		CREATE TABLE ledger (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE ledger_eu PARTITION OF ledger FOR VALUES IN ('eu');
		CREATE FOREIGN DATA WRAPPER paula_fdw; CREATE SERVER paula_remote FOREIGN DATA WRAPPER paula_fdw;
		CREATE TABLE remote_log (id int, region text) PARTITION BY LIST (region);
		CREATE TABLE remote_log_eu PARTITION OF remote_log FOR VALUES IN ('eu');
		CREATE FOREIGN TABLE remote_log_far PARTITION OF remote_log FOR VALUES IN ('far') SERVER paula_remote;
		SELECT audit.enable('remote_log', '{}', NULL, 'trigger');
		ALTER TABLE orders OWNER TO owner_paula; ALTER TABLE orders_eu OWNER TO owner_paula;
		ALTER TABLE ledger OWNER TO owner_paula; ALTER TABLE ledger_eu OWNER TO owner_paula;
		GRANT CREATE ON SCHEMA public TO owner_paula;
		SELECT audit.enable('orders', '{}', NULL, 'trigger'); SELECT audit.enable('ledger', '{}', NULL, 'wal')`)
	paula := connectAs(t, url, "owner_paula")
	count := func(sql string, args ...any) (n int) {
		t.Helper()
		if err := db.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	gaps := func() int {
		return count(`SELECT count(*) FROM audit.pending WHERE action_type = 'CAPTURE_GAP'`)
	}
	if _, err := paula.Exec(ctx, `CREATE TABLE ledger_us PARTITION OF ledger FOR VALUES IN ('us')`); err != nil {
		t.Fatal(err)
	}
	// (A partition of a table in mode trigger clones its capture trigger, whose function only
	// pgtrail_owner may execute: the superuser creates it, then gives it to the owner.)
	testdb.Exec(t, db, `CREATE TABLE orders_us PARTITION OF orders FOR VALUES IN ('us'); ALTER TABLE orders_us OWNER TO owner_paula`)
	if n := gaps(); n != 0 {
		t.Fatalf("creating partitions of audited tables raised %d CAPTURE_GAP entries, want 0", n)
	}
	if n := count(`SELECT count(*) FROM audit.capture_problems()`); n != 0 {
		t.Errorf("%d capture problems after the owner created partitions, want 0 (they get their capture at once)", n)
	}
	for _, part := range []string{"orders_eu", "orders_us", "ledger_eu", "ledger_us"} {
		t.Run(part, func(t *testing.T) {
			if _, err := paula.Exec(ctx, `INSERT INTO `+strings.Split(part, "_")[0]+` VALUES (1, '`+strings.Split(part, "_")[1]+`'); TRUNCATE `+part); err != nil {
				t.Fatal(err)
			}
			if n := count(`SELECT count(*) FROM audit.pending WHERE action_type = 'TRUNCATE' AND resource_type = $1`, "public."+part); n != 1 {
				t.Errorf("TRUNCATE %s alone: %d TRUNCATE entries naming it, want 1", part, n)
			}
		})
	}
	before := gaps()
	if _, err := paula.Exec(ctx, `ALTER TABLE orders_us DISABLE TRIGGER pgtrail_capture_truncate`); err != nil {
		t.Fatal(err)
	}
	if gaps() <= before {
		t.Error("the owner turned a partition's TRUNCATE trigger off: no CAPTURE_GAP entry")
	}
	testdb.Exec(t, db, `SELECT audit.disable('orders')`)
	if n := count(`SELECT count(*) FROM pg_trigger WHERE tgname = 'pgtrail_capture_truncate' AND tgrelid IN ('orders_eu'::regclass, 'orders_us'::regclass)`); n != 0 {
		t.Errorf("after disable, %d partitions of orders keep a TRUNCATE trigger", n)
	}
}

// TestHostile_InheritedTable: a table that inherits from an audited table (INHERITS, not a
// partition) holds rows that read as the audited table's, and UPDATE or DELETE of the audited
// table change them; but no trigger of the audited table fires for them and the publication does
// not hold the child. Tried in both modes: create such a child (or attach one with INHERIT),
// insert a row into it, then change the row through the audited table. As the audited table's
// owner who is no member of pgtrail_owner (which alone enables tables): refused, nothing made. As
// one who is a member: the child is audited with its parent. What must survive: every change in
// the trail, under the child's name, with the parent's PII columns; no capture problem left.
func TestHostile_InheritedTable(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Slot(t, db, "pgtrail")
	testdb.Exec(t, db, `CREATE ROLE inh_ines LOGIN; CREATE ROLE inh_olga LOGIN IN ROLE pgtrail_owner;
		GRANT CREATE ON SCHEMA public TO inh_ines, inh_olga;
		DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO inh_ines, inh_olga', current_database()); END $$`)
	for _, c := range []struct{ role, mode, child string }{
		{"inh_ines", "trigger", "CREATE TABLE %[1]s_shadow (note text) INHERITS (%[1]s)"},
		{"inh_ines", "wal", "CREATE TABLE %[1]s_shadow (id int NOT NULL, email text, balance int, note text); ALTER TABLE %[1]s_shadow INHERIT %[1]s"},
		// Found by red-teaming: a schema's elements are subcommands of CREATE SCHEMA, which the
		// event triggers did not listen to.
		{"inh_ines", "trigger", "CREATE SCHEMA %[1]s_s CREATE TABLE hidden (note text) INHERITS (public.%[1]s); CREATE VIEW %[1]s_shadow AS SELECT 1"},
		{"inh_olga", "trigger", "CREATE TABLE %[1]s_shadow (note text) INHERITS (%[1]s)"},
		{"inh_olga", "wal", "CREATE TABLE %[1]s_shadow (note text) INHERITS (%[1]s)"},
		{"inh_olga", "trigger", "CREATE TABLE %[1]s_shadow (id int NOT NULL, email text, balance int, note text); ALTER TABLE %[1]s_shadow INHERIT %[1]s"},
		{"inh_olga", "wal", "CREATE SCHEMA %[1]s_s CREATE TABLE shadow (note text) INHERITS (public.%[1]s); CREATE VIEW %[1]s_shadow AS SELECT 1; DROP VIEW %[1]s_shadow; ALTER TABLE %[1]s_s.shadow SET SCHEMA public; ALTER TABLE shadow RENAME TO %[1]s_shadow"},
		// A table with an inheritor of its own, made to inherit from the audited table: refused
		// (found by red-teaming: the inheritor's inheritor was left out); attached the other way
		// round, both are audited.
		{"inh_olga", "trigger", "CREATE TABLE %[1]s_mid (id int NOT NULL, email text, balance int); CREATE TABLE %[1]s_x (note text) INHERITS (%[1]s_mid); ALTER TABLE %[1]s_mid INHERIT %[1]s"},
		{"inh_olga", "trigger", "CREATE TABLE %[1]s_mid (id int NOT NULL, email text, balance int); ALTER TABLE %[1]s_mid INHERIT %[1]s; CREATE TABLE %[1]s_shadow (note text) INHERITS (%[1]s_mid)"},
	} {
		parent := fmt.Sprintf("inh_%s_%s%d", c.role, c.mode, len(c.child))
		t.Run(parent, func(t *testing.T) {
			testdb.Exec(t, db, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, email text, balance int);
				ALTER TABLE %[1]s OWNER TO %[3]s; SELECT audit.enable('%[1]s', '{}', '{email}', '%[2]s')`, parent, c.mode, c.role))
			owner := connectAs(t, url, c.role)
			_, err := owner.Exec(ctx, fmt.Sprintf(c.child, parent))
			var exists bool
			if err := db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, parent+"_shadow").Scan(&exists); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(c.child, "_x (note text)") {
				if err == nil || !strings.Contains(err.Error(), "with inheritors of its own") {
					t.Errorf("a table with an inheritor made to inherit from an audited table: %v, want refused", err)
				}
				return
			}
			if c.role == "inh_ines" {
				if strings.Contains(c.child, "CREATE SCHEMA") {
					// The table the schema holds, not the view named like the others.
					if err := db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, parent+"_s.hidden").Scan(&exists); err != nil {
						t.Fatal(err)
					}
				}
				if err == nil || !strings.Contains(err.Error(), "only a member of pgtrail_owner can audit it") || exists {
					t.Errorf("a non-member made an inheritor of an audited table: error %v, table made: %v; want refused", err, exists)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := owner.Exec(ctx, fmt.Sprintf(`INSERT INTO %[1]s_shadow VALUES (5, 'eve@example.com', 1, 'n');
				UPDATE %[1]s SET balance = 1000000 WHERE id = 5; DELETE FROM %[1]s WHERE id = 5`, parent)); err != nil {
				t.Fatal(err)
			}
			var mode, pii string
			if err := db.QueryRow(ctx, `SELECT a.mode, p.columns::text FROM audit.audited_tables a JOIN audit.pii_columns p ON p.relid = a.relid
			                             WHERE a.relid = $1::regclass`, parent+"_shadow").Scan(&mode, &pii); err != nil {
				t.Fatalf("%s_shadow is not audited: %v", parent, err)
			}
			if mode != c.mode || pii != "{email}" {
				t.Errorf("%s_shadow audited in mode %s with PII columns %s, want %s and {email} (its parent's)", parent, mode, pii, c.mode)
			}
			var problems int
			if err := db.QueryRow(ctx, `SELECT count(*) FROM audit.capture_problems()`).Scan(&problems); err != nil || problems != 0 {
				t.Errorf("%d capture problems (%v), want 0", problems, err)
			}
			if c.mode == "wal" {
				// The stream chains it (cdc's tests): here, the child's changes must reach it,
				// with both row images.
				var published bool
				if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_publication_tables WHERE pubname = 'pgtrail' AND tablename = $1)
				                              AND (SELECT relreplident = 'f' FROM pg_class WHERE oid = $1::regclass)`, parent+"_shadow").Scan(&published); err != nil || !published {
					t.Errorf("%s_shadow in the publication with REPLICA IDENTITY FULL: %v (%v)", parent, published, err)
				}
				return
			}
			var actions string
			if err := db.QueryRow(ctx, `SELECT COALESCE(string_agg(action_type, ' ' ORDER BY seq), '') FROM (
			                              SELECT seq, action_type, resource_type FROM audit.events
			                              UNION ALL SELECT 1e9 + id, action_type, resource_type FROM audit.pending) x
			                             WHERE resource_type = $1`, "public."+parent+"_shadow").Scan(&actions); err != nil {
				t.Fatal(err)
			}
			if actions != "CREATE UPDATE DELETE" {
				t.Errorf("the trail holds %q for the child's row, want CREATE UPDATE DELETE", actions)
			}
		})
	}
	// An inheritor made while the event trigger was off (a superuser's doing) is a capture
	// problem that names it.
	testdb.Exec(t, db, `CREATE TABLE inh_late (id int PRIMARY KEY); SELECT audit.enable('inh_late', '{}', NULL, 'trigger');
		ALTER EVENT TRIGGER pgtrail_capture_0inherit DISABLE; CREATE TABLE inh_late_child () INHERITS (inh_late);
		ALTER EVENT TRIGGER pgtrail_capture_0inherit ENABLE ALWAYS`)
	var problem string
	if err := db.QueryRow(ctx, `SELECT problem FROM audit.capture_problems() WHERE table_name = 'public.inh_late'`).Scan(&problem); err != nil ||
		!strings.Contains(problem, "inh_late_child inherits from it") {
		t.Errorf("capture problem of an inheritor made with the event trigger off: %q (%v)", problem, err)
	}
}

// TestHostile_ReaderSeesNoQueryText: pgtrail's own entries keep the text the client sent with a
// TRUNCATE or DDL command (details.query, from current_query()): it can hold literals, and other
// statements sent in the same string. Tried, as pgtrail_reader and as a tenant reader: read such
// entries, a CAPTURE_GAP entry naming changed rows by their key, of a table whose key is PII,
// and an ALERT quoting the entries it fired on (found by red-teaming: their full addresses, keys
// and query text were in its details). What must survive: the entries (their type, command tag, table) for readers, the full
// text for auditors.
func TestHostile_ReaderSeesNoQueryText(t *testing.T) {
	db, url := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, db, `CREATE TABLE people (email text PRIMARY KEY, tenant text); SELECT audit.enable('people', '{}', '{email}', 'trigger');
		CREATE ROLE qt_reader_rita LOGIN IN ROLE pgtrail_reader; CREATE ROLE qt_tenant_tom LOGIN;
		SELECT audit.add_tenant_reader('qt_tenant_tom', 't1'); CREATE ROLE qt_auditor_amy LOGIN IN ROLE pgtrail_auditor`)
	testdb.Exec(t, db, `SET pgtrail.tenant_id = 't1'; TRUNCATE people; INSERT INTO people VALUES ('carol@example.com', 't1');
		ALTER TABLE people ALTER COLUMN tenant SET DEFAULT 'carol@example.com';
		SET ROLE pgtrail_sealer; SELECT audit.log_event('CAPTURE_GAP', 'public.people', '42', 'FAILURE', '{"changes": ["UPDATE carol@example.com"]}');
		SELECT audit.log_event('ALERT', 'alert_rule', 'ddl', 'SUCCESS', '{"rule": "ddl", "severity": "high", "key": "carol@example.com",
		  "summary": "ALTER TABLE people ALTER COLUMN tenant SET DEFAULT ''carol@example.com''", "first_seq": 1, "last_seq": 2,
		  "events": [{"seq": 1, "actor_ip": "203.0.113.77", "resource_id": "carol@example.com"}]}')`)
	testdb.Seal(t, db)
	for _, c := range []struct{ role, from string }{
		{"qt_reader_rita", "audit.events_masked"},
		{"qt_tenant_tom", "audit.tenant_events()"},
		{"qt_auditor_amy", "audit.events"},
	} {
		t.Run(c.role, func(t *testing.T) {
			var n int
			var details string
			if err := connectAs(t, url, c.role).QueryRow(ctx, `SELECT count(*), COALESCE(string_agg(details::text, ' '), '') FROM `+c.from+`
			                                                     WHERE action_type IN ('TRUNCATE', 'DDL', 'CAPTURE_GAP', 'ALERT')`).Scan(&n, &details); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatal("no TRUNCATE, DDL or CAPTURE_GAP entry read")
			}
			leaks := strings.Contains(details, "carol@") || strings.Contains(details, "203.0.113.77")
			if want := c.role == "qt_auditor_amy"; leaks != want {
				t.Errorf("details read by %s hold the email: %v, want %v:\n%s", c.role, leaks, want, details)
			}
		})
	}
}
