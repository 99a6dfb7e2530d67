package cdc_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/internal/cdc"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// Tests from red-teaming schema 16 (application and DDL events written to the WAL). Each failed
// on the code the red team attacked, and holds since its fix.

// slotFixture runs a stream on a database with a table in mode trigger, reading slot (slot names
// are the cluster's), once it has registered the slot.
func slotFixture(t *testing.T, slot string) (*fixture, cdc.Config) {
	t.Helper()
	f := setup(t, fileSink(t))
	cfg := f.config(t)
	cfg.Slot = slot
	f.start(t, cfg)
	waitSlot(t, f.db)
	return f, cfg
}

// rt16App connects to f's database as a new ordinary login role (cluster-wide: a unique name).
func rt16App(t *testing.T, f *fixture, role string) *pgx.Conn {
	t.Helper()
	testdb.Exec(t, f.db, `CREATE ROLE `+role+` LOGIN; GRANT SELECT, INSERT, UPDATE ON accounts TO `+role)
	cfg, err := pgx.ParseConfig(f.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	app, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close(context.Background()) })
	return app
}

// rt16Inactive waits until no walsender holds slot.
func rt16Inactive(t *testing.T, db *pgxpool.Pool, slot string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var active bool
		if err := db.QueryRow(context.Background(), `SELECT COALESCE((SELECT active FROM pg_replication_slots WHERE slot_name = $1), false)`, slot).Scan(&active); err != nil {
			t.Fatal(err)
		}
		if !active {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s still active", slot)
		}
	}
}

// rt16Count counts entries of audit.events (or audit.pending) matching where.
func rt16Count(t *testing.T, db *pgxpool.Pool, table, where string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM `+table+` WHERE `+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// rt16SlotHolds reports whether the slot's pending WAL holds needle (peeked, not consumed).
func rt16SlotHolds(t *testing.T, db *pgxpool.Pool, slot, needle string) bool {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
		'proto_version', '1', 'publication_names', 'pgtrail', 'messages', 'true')`, slot)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		found = found || bytes.Contains(data, []byte(needle))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return found
}

// rt16Signed returns the signed message ("<json>\n<64 hex>") holding marker from the WAL files
// around the current position, as a role with pg_read_server_files reads them.
func rt16Signed(t *testing.T, reader *pgx.Conn, marker string) (string, bool) {
	t.Helper()
	ctx := context.Background()
	var segs [][]byte
	for _, back := range []int{0, 16777216} {
		var b []byte
		// The segment before may have been recycled already: skipped.
		if err := reader.QueryRow(ctx, `SELECT pg_read_binary_file('pg_wal/' || pg_walfile_name(pg_current_wal_lsn() - $1::int))`, back).Scan(&b); err == nil {
			segs = append(segs, b)
		}
	}
	for _, seg := range segs {
		i := bytes.Index(seg, []byte(marker))
		if i < 0 {
			continue
		}
		from := bytes.LastIndex(seg[:i], []byte(`{"xid": "`))
		nl := bytes.IndexByte(seg[i:], '\n')
		if from < 0 || nl < 0 || i+nl+65 > len(seg) {
			return "", false
		}
		msg := string(seg[from : i+nl+65])
		mac := msg[len(msg)-64:]
		if strings.Trim(mac, "0123456789abcdef") != "" || strings.ContainsAny(msg[:len(msg)-65], "\x00\n") {
			return "", false // split by a page header: try another
		}
		return msg, true
	}
	return "", false
}

// TestStream_SignedEventReplayed: a signed event message's bytes, read out of the WAL (here by a
// role with pg_read_server_files, as a backup job; also a REPLICATION role, base backups, the
// WAL archive), are emitted again by any login with pg_logical_emit_message(false, ...). The
// message of a ROLE_GRANT whose transaction rolled back (its WAL record is written all the
// same) was chained twice as the admin's. What must hold: a transactional writer's message
// emitted outside its transaction is ignored (schema 16 signs which writer wrote it), and verify
// db is clean. An autonomous event's message replayed, in the same session of the stream or
// after a restart, was chained again with its event_id: what must hold is the event once.
func TestStream_SignedEventReplayed(t *testing.T) {
	ctx := context.Background()
	f, cfg := slotFixture(t, "rt16_replay")
	app := rt16App(t, f, "rt16_rp_app")
	admin := rt16App(t, f, "rt16_rp_admin")
	reader := rt16App(t, f, "rt16_rp_reader")
	// A role that reads the WAL files (as a backup or WAL-archive job does).
	testdb.Exec(t, f.db, `GRANT pg_read_server_files TO rt16_rp_reader; GRANT EXECUTE ON FUNCTION pg_read_binary_file(text) TO rt16_rp_reader`)

	// original: the events each call writes (a call is made again when its message was split
	// across WAL pages).
	// signedCall makes the admin call call (with a marker for %s) until its signed message is
	// found whole in the WAL, and returns it and how many calls that took.
	signedCall := func(t *testing.T, call, name string) (signed string, calls int) {
		for try := 0; ; try++ {
			marker := fmt.Sprintf("rt16-%s-%d", name, try)
			if _, err := admin.Exec(ctx, fmt.Sprintf(call, marker)); err != nil {
				t.Fatal(err)
			}
			testdb.Exec(t, f.db, `SELECT pg_logical_emit_message(true, 'flush', '') FROM set_config('synchronous_commit', 'on', true)`)
			if signed, ok := rt16Signed(t, reader, marker); ok {
				return signed, try + 1
			}
			if try == 5 {
				t.Fatal("no signed message found whole in the WAL")
			}
		}
	}
	replay := func(t *testing.T, call, resourceType string, original int) {
		signed, calls := signedCall(t, call, resourceType)
		t.Logf("read from the WAL: %.150s...", signed)
		for i := 0; i < 2; i++ {
			if _, err := app.Exec(ctx, `SELECT pg_logical_emit_message(false, 'pgtrail.event', $1::text)`, signed); err != nil {
				t.Fatal(err)
			}
		}
		testdb.Exec(t, f.db, `SELECT pg_logical_emit_message(true, 'flush', '') FROM set_config('synchronous_commit', 'on', true)`)
		testdb.Streamed(t, f.db)
		rows, err := f.db.Query(ctx, `SELECT format('seq %s %s %s actor=%s db_user=%s txid=%s event_id=%s', seq, action_type, resource_id, actor_id, db_user, txid, event_id)
			FROM audit.events WHERE resource_type = $1 ORDER BY seq`, resourceType)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range got {
			t.Logf("chained: %s", g)
		}
		rep, err := verify.DB(ctx, f.db)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("verify db problems: %d", len(rep.Problems))
		if len(got) != original*calls || len(rep.Problems) != 0 {
			t.Errorf("want the %d original(s) only, verify clean: %q, %+v", original*calls, got, rep.Problems)
		}
	}
	t.Run("rolled_back_transactional", func(t *testing.T) {
		replay(t, `BEGIN; SET LOCAL pgtrail.actor_id = 'admin-alice';
			SELECT audit.log_event('ROLE_GRANT', 'role', '%s', 'SUCCESS', '{"granted": "admin"}'); ROLLBACK`, "role", 0)
	})
	// An autonomous event's message is as its writer sent it: emitted again, it claimed to be
	// the same event a second time (same event_id), chained twice.
	t.Run("autonomous", func(t *testing.T) {
		replay(t, `SET pgtrail.actor_id = 'mallory';
			SELECT audit.log_event_autonomous('FAILED_LOGIN', 'login', '%s', 'FAILURE', '{"reason": "bad password"}')`, "login", 1)
	})
	// Replayed after a restart of the stream: the original is chained in an earlier session.
	t.Run("autonomous_after_restart", func(t *testing.T) {
		signed, _ := signedCall(t, `SELECT audit.log_event_autonomous('EXPORT', 'report', '%s', 'SUCCESS')`, "restart")
		testdb.Streamed(t, f.db)
		n := rt16Count(t, f.db, "audit.events", `resource_type = 'report'`)
		if err := f.wait(t); err != nil {
			t.Fatal(err)
		}
		f.start(t, cfg)
		if _, err := app.Exec(ctx, `SELECT pg_logical_emit_message(false, 'pgtrail.event', $1::text)`, signed); err != nil {
			t.Fatal(err)
		}
		testdb.Exec(t, f.db, `SELECT pg_logical_emit_message(true, 'flush', '') FROM set_config('synchronous_commit', 'on', true)`)
		testdb.Streamed(t, f.db)
		if got := rt16Count(t, f.db, "audit.events", `resource_type = 'report'`); got != n {
			t.Errorf("%d report events after the replay, want the %d chained before it", got, n)
		}
	})
}

// TestCaptureLag_LoneAutonomousEvent: an autonomous event waits in the slot of a stream that is
// down, and nothing follows it. verify --max-capture-lag dated it by the transactions around it:
// with none, its age was 0 and it was never reported. What must hold: reported once it has
// waited longer than allowed (its own date is used when nothing follows it).
func TestCaptureLag_LoneAutonomousEvent(t *testing.T) {
	ctx := context.Background()
	f, _ := slotFixture(t, "rt16_lone")
	app := rt16App(t, f, "rt16_lone_app")
	if err := f.wait(t); err != nil { // the stream stops: its slot is kept
		t.Fatal(err)
	}
	rt16Inactive(t, f.db, "rt16_lone")
	if _, err := app.Exec(ctx, `SELECT audit.log_event_autonomous('FAILED_LOGIN', 'user', 'rt16-lone', 'FAILURE')`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // written out by the WAL writer (commits are asynchronous)
	if !rt16SlotHolds(t, f.db, "rt16_lone", "rt16-lone") {
		t.Fatal("the slot does not hold the event")
	}
	conn, err := f.db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	problems, err := verify.CaptureLag(ctx, conn, "rt16_lone", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("an autonomous event waiting 2.5s, verify --max-capture-lag 1s --slot rt16_lone: %+v", problems)
	// (audit.pending may hold something too, reported on its own: the sealer stopped with the
	// stream.)
	reported := false
	for _, p := range problems {
		reported = reported || strings.Contains(p.Detail, "in slot rt16_lone")
	}
	if !reported {
		t.Errorf("an autonomous event waiting 2.5s: %+v, want the slot's wait reported", problems)
	}
}

// TestStream_EventsWaitForAStreamThatReadsThem: a stream older than schema 16 skips transactional
// event messages and acknowledges them, so an upgrade of the schema under it lost every event
// (found by red-teaming). Its registration leaves audit.stream_slots.reads_events false (the
// column's default), as simulated here. What must hold: events then go through audit.pending;
// a stream of this version registering the slot sets it, and events go through the WAL again.
func TestStream_EventsWaitForAStreamThatReadsThem(t *testing.T) {
	f, cfg := slotFixture(t, "events_reader")
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	rt16Inactive(t, f.db, "events_reader")
	testdb.Exec(t, f.db, `UPDATE audit.stream_slots SET reads_events = false`)
	testdb.Exec(t, f.db, `SELECT audit.log_event('LOGIN', 'user', 'old-stream')`)
	if n := rt16Count(t, f.db, "audit.pending", "resource_id = 'old-stream'"); n != 1 {
		t.Errorf("%d rows of audit.pending for the event logged under an old stream, want 1", n)
	}
	f.start(t, cfg)
	waitChained(t, f.db, "user", 1)
	for deadline := time.Now().Add(30 * time.Second); rt16Count(t, f.db, "audit.stream_slots", "reads_events") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream did not register its slot as reading events within 30s")
		}
	}
	testdb.Exec(t, f.db, `SELECT audit.log_event('LOGIN', 'user', 'new-stream')`)
	if n := rt16Count(t, f.db, "audit.pending", "resource_id = 'new-stream'"); n != 0 {
		t.Errorf("%d rows of audit.pending for the event logged under this stream, want it in the WAL", n)
	}
	waitChained(t, f.db, "user", 2)
}

// TestStream_SecondArchiveSlotIsNoGap: a second stream (a second archive) creates its slot after
// the first chained events from the WAL. The first stream's slot read that WAL: nothing was
// lost, and a CAPTURE_GAP entry for the new slot (as `make demo` got) would be false. What must
// hold: no gap recorded; the second archive gets every entry from the table.
func TestStream_SecondArchiveSlotIsNoGap(t *testing.T) {
	f, _ := slotFixture(t, "first_archive")
	testdb.Exec(t, f.db, `SELECT audit.log_event('LOGIN', 'user', 'alice')`)
	waitChained(t, f.db, "user", 1)
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	second := &fixture{db: f.db, url: f.url, sink: fileSink(t)}
	cfg2 := second.config(t)
	cfg2.Slot = "second_archive"
	second.start(t, cfg2)
	for deadline := time.Now().Add(30 * time.Second); rt16Count(t, f.db, "audit.stream_slots", "slot = 'second_archive'") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second stream did not register its slot within 30s")
		}
	}
	testdb.Exec(t, f.db, `SELECT audit.log_event('LOGIN', 'user', 'bob')`)
	waitChained(t, f.db, "user", 2)
	second.drained(t)
	if n := rt16Count(t, f.db, "audit.events", "action_type = 'CAPTURE_GAP'"); n != 0 {
		t.Errorf("%d CAPTURE_GAP entries for a second archive's new slot, want none", n)
	}
}

// TestSealOnce_ConfirmsTheSlot: SealOnce (pgtrail seal --once, and pgtrail stream
// --exit-when-caught-up) returns only once PostgreSQL has taken the slot's new position. Tried:
// returning right after sending the last standby status while the walsender is busy sending
// (here, other sessions' logical messages): closing the connection with its data unread resets
// it, the walsender dies writing and never reads the status, and the slot kept what was chained
// (CI: verify --max-capture-lag then reported events seal --once had chained). What must hold:
// after each return the slot's confirmed position is past everything committed before the call.
func TestSealOnce_ConfirmsTheSlot(t *testing.T) {
	f := walFixture(t)
	cfg := f.config(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	noise := make(chan struct{})
	go func() {
		defer close(noise)
		for ctx.Err() == nil {
			f.db.Exec(ctx, `SELECT pg_logical_emit_message(false, 'noise', repeat('x', 500)) FROM generate_series(1, 20)`)
		}
	}()
	defer func() { cancel(); <-noise }()
	for i := 0; i < 10; i++ {
		var before string
		if err := f.db.QueryRow(ctx, `INSERT INTO accounts VALUES ($1, 'o', 1) RETURNING pg_current_wal_insert_lsn()::text`, i).Scan(&before); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := cdc.SealOnce(ctx, cfg); err != nil {
			t.Fatalf("SealOnce %d: %v", i, err)
		}
		t.Logf("SealOnce %d: %s", i, time.Since(start))
		var confirmed string
		var past bool
		if err := f.db.QueryRow(ctx, `SELECT confirmed_flush_lsn::text, confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = 'pgtrail'`,
			before).Scan(&confirmed, &past); err != nil {
			t.Fatal(err)
		}
		if !past {
			t.Fatalf("SealOnce %d returned with the slot confirmed at %s, before %s (committed before the call)", i, confirmed, before)
		}
	}
	waitChained(t, f.db, "public.accounts", 10)
}
