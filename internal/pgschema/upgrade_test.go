package pgschema_test

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail/internal/cdc"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// captureTriggers returns each audited table's pgtrail_capture trigger definition.
func captureTriggers(t *testing.T, ctx context.Context, url string) map[string]string {
	t.Helper()
	db := testdb.Pool(t, url)
	rows, err := db.Query(ctx, `SELECT tgrelid::regclass::text, pg_get_triggerdef(oid) FROM pg_trigger
	                             WHERE tgname = 'pgtrail_capture' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var rel, def string
		if err := rows.Scan(&rel, &def); err != nil {
			t.Fatal(err)
		}
		out[rel] = def
	}
	return out
}

// TestMigration4_UpgradeAndBack: tables audited under schema version 3 keep being captured,
// correctly, across the upgrade to 4 (which changes the capture trigger's arguments and stops
// drawing event_id in the writer) and back down to 3. Entries captured on either side of each
// step, and left pending across it, must all be sealed into one intact chain with distinct
// event ids; the upgrade must say in the trail that it re-created the triggers.
func TestMigration4_UpgradeAndBack(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	m := migrator(t, url, false)
	if err := m.To(ctx, 3); err != nil {
		t.Fatalf("migrate to 3: %v", err)
	}
	db := testdb.Pool(t, url)
	testdb.Exec(t, db, `
		CREATE TABLE one (id int PRIMARY KEY, v text);
		CREATE TABLE two (a int, b text, secret text, PRIMARY KEY (a, b));
		CREATE TABLE nokey (v text);
		SELECT audit.enable('one');
		SELECT audit.enable('two', '{secret}');
		SELECT audit.enable('nokey');
		INSERT INTO one VALUES (1, 'v3');
		INSERT INTO two VALUES (1, 'x', 's');
		INSERT INTO nokey VALUES ('v3')`)

	if err := m.Up(ctx); err != nil {
		t.Fatalf("upgrade to 4: %v", err)
	}
	for rel, want := range map[string]string{
		"one":   `EXECUTE FUNCTION audit\.capture\('id'\)$`,
		"two":   `EXECUTE FUNCTION audit\.capture_excluding\('\{a,b\}', '\{secret\}'\)$`,
		"nokey": `EXECUTE FUNCTION audit\.capture\(\)$`,
	} {
		if def := captureTriggers(t, ctx, url)[rel]; !regexp.MustCompile(want).MatchString(def) {
			t.Errorf("after upgrade, %s: trigger %q, want it to match %s", rel, def, want)
		}
	}
	// Captured with version 4's triggers; the version 3 entries are still pending.
	testdb.Exec(t, db, `
		INSERT INTO one VALUES (2, 'v4');
		UPDATE two SET secret = 't' WHERE a = 1;
		INSERT INTO nokey VALUES ('v4');
		SELECT audit.log_event('LOGIN', 'session', 'v4')`)
	testdb.Seal(t, db)

	reasons := readEvents(t, db, "action_type = 'AUDIT_ENABLE' AND details ? 'reason'")
	if len(reasons) != 3 {
		t.Errorf("upgrade recorded %d AUDIT_ENABLE events with a reason, want one per audited table (3)", len(reasons))
	}
	for _, c := range []struct {
		where, resourceID string
		changed           []string
	}{
		{"resource_type = 'public.one' AND after_state->>'v' = 'v3'", "1", []string{"id", "v"}},
		{"resource_type = 'public.one' AND after_state->>'v' = 'v4'", "2", []string{"id", "v"}},
		{"resource_type = 'public.two' AND action_type = 'UPDATE'", "1,x", []string{"secret"}},
		{"resource_type = 'public.nokey' AND after_state->>'v' = 'v4'", "<nil>", []string{"v"}},
	} {
		got := readEvents(t, db, c.where)
		if len(got) != 1 {
			t.Errorf("%s: %d entries, want 1", c.where, len(got))
			continue
		}
		if str(got[0].ResourceID) != c.resourceID || !slices.Equal(got[0].Changed, c.changed) {
			t.Errorf("%s: resource_id %s changed %v, want %s %v", c.where, str(got[0].ResourceID), got[0].Changed, c.resourceID, c.changed)
		}
		if _, leaked := got[0].After["secret"]; leaked {
			t.Errorf("%s: excluded column in after_state: %v", c.where, got[0].After)
		}
	}

	// Back to 3 with entries pending that version 4 captured without an event_id.
	testdb.Exec(t, db, `INSERT INTO one VALUES (3, 'pending at downgrade')`)
	// A downgrade keeps the data: no force needed.
	if err := m.To(ctx, 3); err != nil {
		t.Fatalf("downgrade to 3: %v", err)
	}
	if def := captureTriggers(t, ctx, url)["one"]; !regexp.MustCompile(`audit\.capture\('\{id\}', '\{\}'\)$`).MatchString(def) {
		t.Errorf("after downgrade, one: trigger %q, want version 3's arguments", def)
	}
	testdb.Exec(t, db, `INSERT INTO one VALUES (4, 'v3 again')`)
	testdb.Seal(t, db)
	if got := readEvents(t, db, "resource_type = 'public.one' AND resource_id IN ('3', '4')"); len(got) != 2 {
		t.Errorf("after downgrade: %d entries for rows 3 and 4, want 2", len(got))
	}

	var n, distinct, nulls int
	if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id), count(*) FILTER (WHERE event_id IS NULL)
	                              FROM audit.events`).Scan(&n, &distinct, &nulls); err != nil {
		t.Fatal(err)
	}
	if nulls != 0 || distinct != n {
		t.Errorf("%d entries: %d distinct event ids, %d NULL; want all distinct and none NULL", n, distinct, nulls)
	}
	rep, err := verify.DB(ctx, db)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !rep.Intact() || rep.Entries != int64(n) {
		t.Errorf("verify: intact=%v entries=%d (want %d), problems %v", rep.Intact(), rep.Entries, n, rep.Problems)
	}
}

// TestSeal_EventIDs: entries captured by the trigger get their event_id from the sealer in the
// layout of a version 4 UUID, distinct across and within seal calls; audit.log_event's returned id
// is the one the trail keeps.
func TestSeal_EventIDs(t *testing.T) {
	ctx := context.Background()
	db, _ := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY); SELECT audit.enable('t');
	                    INSERT INTO t SELECT generate_series(1, 500)`)
	testdb.Seal(t, db)
	testdb.Exec(t, db, `INSERT INTO t SELECT generate_series(501, 1000)`)
	var logged string
	if err := db.QueryRow(ctx, `SELECT audit.log_event('EXPORT', 'report', 'r1')::text`).Scan(&logged); err != nil {
		t.Fatal(err)
	}
	testdb.Seal(t, db)

	var n, distinct, v4 int
	if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id),
	                                   count(*) FILTER (WHERE event_id::text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')
	                              FROM audit.events`).Scan(&n, &distinct, &v4); err != nil {
		t.Fatal(err)
	}
	if n < 1001 || distinct != n || v4 != n {
		t.Errorf("%d entries, %d distinct event ids, %d in version 4 layout; want all distinct and all version 4", n, distinct, v4)
	}
	var action string
	if err := db.QueryRow(ctx, `SELECT action_type FROM audit.events WHERE event_id = $1::uuid`, logged).Scan(&action); err != nil || action != "EXPORT" {
		t.Errorf("event_id returned by audit.log_event (%s) finds %q, %v; want the EXPORT entry", logged, action, err)
	}
}

// TestSeal_ReadsPendingOnce: a long-lived sealer session whose plan was made while
// audit.pending was empty must still take a backlog in one sequential read of audit.pending
// (the rows are then deleted by ctid). A plan that scans the table for the delete compares every
// row with the whole ctid array: quadratic in the backlog. Counted with pg_stat_user_tables, not
// timed.
func TestSeal_ReadsPendingOnce(t *testing.T) {
	ctx := context.Background()
	db, _ := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY); SELECT audit.enable('t')`)
	testdb.Seal(t, db)
	testdb.Exec(t, db, `VACUUM ANALYZE audit.pending`)
	sealer, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sealer.Release()
	// Enough calls for PL/pgSQL to settle on a cached plan, each with a one-row table.
	for i := range 7 {
		testdb.Exec(t, db, `INSERT INTO t VALUES ($1)`, i+1)
		if _, err := sealer.Exec(ctx, `SELECT audit.seal()`); err != nil {
			t.Fatal(err)
		}
	}
	const backlog = 5000
	testdb.Exec(t, db, `INSERT INTO t SELECT generate_series(100, 99 + $1::int)`, backlog)

	seqRead := func() int64 {
		t.Helper()
		if _, err := sealer.Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
			t.Fatal(err)
		}
		if _, err := sealer.Exec(ctx, `SELECT 1`); err != nil { // flushes the counters
			t.Fatal(err)
		}
		var n int64
		if err := sealer.QueryRow(ctx, `SELECT pg_stat_clear_snapshot() IS NULL,
		    (SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = 'audit.pending'::regclass)`).Scan(new(bool), &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := seqRead()
	var sealed int64
	if err := sealer.QueryRow(ctx, `SELECT audit.seal()`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	read := seqRead() - before
	if sealed != backlog {
		t.Fatalf("sealed %d entries, want %d", sealed, backlog)
	}
	// One pass to pick the rows, plus the first few the idle check looks at.
	if read > backlog+100 {
		t.Errorf("sealing %d entries read %d rows of audit.pending sequentially, want one pass (≤ %d)", backlog, read, backlog+100)
	}
}

// TestMigration6_UpgradeToWAL moves an installation of schema 4 to WAL capture: entries sealed
// and pending under 4 stay, the pending ones are sealed first, a table switched to mode wal is
// captured by one mechanism at a time (no change lost or doubled at the switch, even one inside
// the switching transaction), and the chain is one, intact.
func TestMigration6_UpgradeToWAL(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	m := migrator(t, url, false)
	if err := m.To(ctx, 4); err != nil {
		t.Fatalf("migrate to 4: %v", err)
	}
	db := testdb.Pool(t, url)
	testdb.Exec(t, db, `CREATE TABLE acct (id int PRIMARY KEY, v int);
		SELECT audit.enable('acct');
		INSERT INTO acct VALUES (1, 1), (2, 2)`)
	testdb.Seal(t, db)
	testdb.Exec(t, db, `UPDATE acct SET v = 10 WHERE id = 1`) // pending across the upgrade
	if err := m.Up(ctx); err != nil {
		t.Fatalf("upgrade to 6: %v", err)
	}
	testdb.Seal(t, db)
	var mode string
	if err := db.QueryRow(ctx, `SELECT mode FROM audit.audited_tables WHERE relid = 'acct'::regclass`).Scan(&mode); err != nil || mode != "trigger" {
		t.Fatalf("after the upgrade the table is in mode %q (%v), want trigger as before", mode, err)
	}
	testdb.Slot(t, db, "pgtrail")
	testdb.Exec(t, db, `BEGIN; UPDATE acct SET v = 20 WHERE id = 2; SELECT audit.enable('acct', '{}', NULL, 'wal'); UPDATE acct SET v = 21 WHERE id = 2; COMMIT`)
	testdb.Exec(t, db, `UPDATE acct SET v = 30 WHERE id = 1; DELETE FROM acct WHERE id = 2`)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	// As seal --once: what trigger capture left pending, then the WAL. (The two are chained in
	// the order they are sealed; occurred_at and txid tell when each change happened.)
	testdb.Seal(t, db)
	if _, err := cdc.SealOnce(ctx, cdc.Config{ConnConfig: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Fatalf("seal the WAL: %v", err)
	}
	var got []string
	rows, err := db.Query(ctx, `SELECT action_type || ':' || resource_id || ':' || COALESCE(after_state ->> 'v', '-')
	                              FROM audit.events WHERE resource_type = 'public.acct' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		got = append(got, s)
	}
	rows.Close()
	want := []string{"CREATE:1:1", "CREATE:2:2", "UPDATE:1:10", "UPDATE:2:20", "UPDATE:2:21", "UPDATE:1:30", "DELETE:2:-"}
	if !slices.Equal(got, want) {
		t.Errorf("entries of acct: %v, want %v", got, want)
	}
	rep, err := verify.DB(ctx, db)
	if err != nil || !rep.Intact() {
		t.Errorf("verify db: %v %+v", err, rep.Problems)
	}
}

// TestMigration12_UpgradeWithWALInSlot upgrades an installation whose slot still holds WAL from
// before schema 12 (a change in mode wal not chained yet). PostgreSQL 15 reads publications as of
// the WAL it decodes, and the publication of audit.pending did not exist then: a stream that
// asked for it was refused at every start, for good. Must survive: the stream reads on without
// it, the change is chained, and once past that WAL it reads audit.pending again (a capture row
// written afterwards is witnessed: no CAPTURE_GAP for a change that has one).
func TestMigration12_UpgradeWithWALInSlot(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	m := migrator(t, url, false)
	if err := m.To(ctx, 11); err != nil {
		t.Fatalf("migrate to 11: %v", err)
	}
	db := testdb.Pool(t, url)
	testdb.Slot(t, db, "pgtrail")
	testdb.Exec(t, db, `CREATE TABLE acct (id int PRIMARY KEY, v int); SELECT audit.enable('acct', '{}', NULL, 'wal');
		INSERT INTO acct VALUES (1, 1)`)
	if err := m.Up(ctx); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	testdb.Exec(t, db, `CREATE TABLE trig (id int PRIMARY KEY); SELECT audit.enable('trig', '{}', NULL, 'trigger')`)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	sealOnce := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if _, err := cdc.SealOnce(ctx, cdc.Config{ConnConfig: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
			t.Fatalf("seal the WAL after the upgrade: %v", err)
		}
	}
	sealOnce()
	testdb.Exec(t, db, `INSERT INTO trig VALUES (1); UPDATE acct SET v = 2`)
	testdb.Seal(t, db)
	sealOnce()
	var acct, trig, gaps int
	if err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE resource_type = 'public.acct'), count(*) FILTER (WHERE resource_type = 'public.trig'),
		count(*) FILTER (WHERE action_type = 'CAPTURE_GAP') FROM audit.events`).Scan(&acct, &trig, &gaps); err != nil {
		t.Fatal(err)
	}
	if acct != 2 || trig != 1 || gaps != 0 {
		t.Errorf("after the upgrade: %d entries of acct (want 2), %d of trig (want 1), %d CAPTURE_GAP (want 0)", acct, trig, gaps)
	}
}
