package cdc_test

// The chaining of a handed-off batch runs on the uploader while the receiving goes on (3518636).
// A review of that change found these, each failing on it and passing since: a configuration
// change that chained on the loop while the uploader chained (a change lost, others batched
// twice), the configuration persisted before the changes under the old one were chained, and a
// race on the upload's error.

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgtrail/pgtrail/internal/testdb"
)

// slowImages makes public.slow (mode wal) take 2 s to build row images: the domain check sleeps
// when it runs as pgtrail_typer (the stream's images), not when the application inserts.
func slowImages(t *testing.T, f *fixture) {
	t.Helper()
	testdb.Exec(t, f.db, `CREATE FUNCTION public.slow_check(v int) RETURNS boolean LANGUAGE plpgsql AS $f$
		BEGIN IF current_user = 'pgtrail_typer' THEN PERFORM pg_sleep(2); END IF; RETURN true; END $f$;
		CREATE DOMAIN slowint AS int CHECK (public.slow_check(VALUE));
		CREATE TABLE slow (id int PRIMARY KEY, v slowint);
		SELECT audit.enable('slow', '{}', NULL, 'wal');
		CREATE TABLE other (id int PRIMARY KEY)`)
}

func chainedCount(t *testing.T, f *fixture, resourceType string) int {
	t.Helper()
	var n int
	if err := f.db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events WHERE resource_type = $1`, resourceType).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStream_AsyncSealConfigChangeWhileSealing: a batch with a change A of a table in mode wal is handed
// to the uploader, which is still building A's entry when a change B of a table in mode wal and
// a configuration change C arrive. configCommitted chains B on the loop (chainWAL) while the
// uploader chains A: B is chained first with the head's wal_lsn at B's end, A's sealWAL then
// fails ("wal_lsn moved"), the session restarts and skips A as chained already (end <= wal_lsn).
// A must be in the trail.
func TestStream_AsyncSealConfigChangeWhileSealing(t *testing.T) {
	f := walFixture(t)
	slowImages(t, f)
	cfg := f.config(t)
	f.start(t, cfg)
	waitArchived(t, f, 30*time.Second)

	testdb.Exec(t, f.db, `INSERT INTO slow VALUES (1, 1)`)                  // A
	time.Sleep(500 * time.Millisecond)                                      // past the batch age: handed off, its image building
	testdb.Exec(t, f.db, `INSERT INTO accounts VALUES (1, 'b', 1)`)         // B
	testdb.Exec(t, f.db, `SELECT audit.enable('other', '{}', NULL, 'wal')`) // C
	waitChained(t, f.db, "public.accounts", 1)
	deadline := time.Now().Add(20 * time.Second)
	for chainedCount(t, f, "public.slow") == 0 {
		if time.Now().After(deadline) {
			var head, lsn string
			f.db.QueryRow(context.Background(), `SELECT seq::text, wal_lsn::text FROM audit.chain_head`).Scan(&head, &lsn)
			t.Fatalf("the change to public.slow (made in mode wal) was never chained (chain head seq %s, wal_lsn %s)", head, lsn)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStream_AsyncSealConfigPersistedBeforeSealed: a batch with a change A of public.slow (mode wal) is
// handed to the uploader; while it builds A's entry, public.slow is disabled (C).
// configCommitted persists the configuration after C although A, made before C, is not chained
// yet. The stream then dies before A is chained (here: a stop whose shutdown timeout runs out,
// as a crash would). Restarted, it reads A under the persisted configuration, where public.slow
// is not audited: A is dropped without a trace. A must be in the trail.
func TestStream_AsyncSealConfigPersistedBeforeSealed(t *testing.T) {
	f := walFixture(t)
	slowImages(t, f)
	cfg := f.config(t)
	cfg.ShutdownTimeout = 300 * time.Millisecond
	f.start(t, cfg)
	waitArchived(t, f, 30*time.Second)

	testdb.Exec(t, f.db, `INSERT INTO slow VALUES (1, 1)`) // A
	time.Sleep(500 * time.Millisecond)                     // handed off, its image building (2 s)
	testdb.Exec(t, f.db, `SELECT audit.disable('slow')`)   // C
	time.Sleep(500 * time.Millisecond)                     // C read and persisted
	err := f.wait(t)                                       // "crash": A's seal abandoned
	t.Logf("first run: %v", err)

	f.start(t, f.config(t))
	testdb.Exec(t, f.db, `INSERT INTO accounts VALUES (1, 'after', 1)`)
	waitChained(t, f.db, "public.accounts", 1)
	waitArchived(t, f, 30*time.Second)
	if n := chainedCount(t, f, "public.slow"); n != 1 {
		t.Fatalf("entries of public.slow: %d, want 1 (the insert made while it was in mode wal)", n)
	}
}

// TestStream_AsyncSealConfigChangeAfterSealDuplicates: as TestStream_AsyncSealConfigChangeWhileSealing, but the
// handed-off batch A is chained (the uploader's sealWAL commits) before the loop chains B for
// configCommitted: the loop's tip is still where it was before A (awaitSealed has not run: A's
// rows come back through the slot only after B's transaction), so addEntries reads A's entries
// from the table as a gap and batches them a second time. The next batch then starts before the
// archive's end: a CHAIN BREAK is reported though nothing was tampered with, the archive refuses
// the batch, the session restarts, and the replayed witness chains a second CAPTURE_GAP entry.
// Here the head is held locked while A is sealed, and B's transaction has a change made with
// capture off, whose CAPTURE_GAP entry (recordFlagged) makes the loop wait until A is chained.
func TestStream_AsyncSealConfigChangeAfterSealDuplicates(t *testing.T) {
	ctx := context.Background()
	f := walFixture(t)
	testdb.Exec(t, f.db, `CREATE TABLE trig (id int PRIMARY KEY); SELECT audit.enable('trig', '{}', NULL, 'trigger');
		CREATE TABLE other (id int PRIMARY KEY)`)
	f.start(t, f.config(t))
	testdb.Exec(t, f.db, `INSERT INTO accounts VALUES (0, 'settled', 1)`) // past the setup's configuration changes
	waitChained(t, f.db, "public.accounts", 1)
	waitArchived(t, f, 30*time.Second)

	// waiting waits up to 5 s for a backend waiting on a lock with a query like like.
	waiting := func(like string) bool {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var n int
			if err := f.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`, like).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return true
			}
		}
		return false
	}
	lock, err := f.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, `SELECT FROM audit.chain_head FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	testdb.Exec(t, f.db, `INSERT INTO accounts VALUES (1, 'a', 1)`)                          // A
	if !waiting(`SELECT seq, entry_hash, wal_lsn::text FROM audit.chain_head FOR UPDATE%`) { // A's sealWAL
		t.Fatal("A's sealWAL is not waiting for the chain head")
	}
	off := `ALTER EVENT TRIGGER pgtrail_capture_check DISABLE; ALTER EVENT TRIGGER pgtrail_capture_drop DISABLE; ALTER EVENT TRIGGER pgtrail_ddl DISABLE;`
	on := `ALTER EVENT TRIGGER pgtrail_capture_check ENABLE ALWAYS; ALTER EVENT TRIGGER pgtrail_capture_drop ENABLE ALWAYS; ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;`
	testdb.Exec(t, f.db, `BEGIN; INSERT INTO accounts VALUES (2, 'b', 1); SELECT audit.enable('other', '{}', NULL, 'wal');`+off+
		`ALTER TABLE trig DISABLE TRIGGER pgtrail_capture; INSERT INTO trig VALUES (1); ALTER TABLE trig ENABLE ALWAYS TRIGGER pgtrail_capture;`+on+`COMMIT`) // B, C
	// The loop's recordFlagged (the loop itself waits in A's sealWAL when it chains synchronously).
	t.Logf("recordFlagged waiting behind A's seal: %v", waiting(`%h.seq, h.entry_hash, $1::jsonb::text%`))
	if err := lock.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitChained(t, f.db, "public.accounts", 3)
	testdb.Exec(t, f.db, `INSERT INTO accounts VALUES (3, 'c', 1)`)
	waitChained(t, f.db, "public.accounts", 4)
	waitArchived(t, f, 30*time.Second)
	if n := testutil.ToFloat64(f.metrics.ChainBreaks); n != 0 {
		t.Errorf("%v CHAIN BREAKs reported; nothing was tampered with", n)
	}
	if n := testutil.ToFloat64(f.metrics.Errors.WithLabelValues("session")); n != 0 {
		t.Errorf("%v sessions interrupted", n)
	}
	// The restarted session reads B's transaction again, and its witness records the bypass again.
	time.Sleep(2 * time.Second)
	var gaps int
	if err := f.db.QueryRow(ctx, `SELECT count(*) FROM audit.events WHERE action_type = 'CAPTURE_GAP' AND resource_type = 'public.trig'`).Scan(&gaps); err != nil {
		t.Fatal(err)
	}
	if gaps != 1 {
		t.Errorf("%d CAPTURE_GAP entries for the one change made to trig with capture off, want 1", gaps)
	}
	f.drained(t)
}

// TestStream_AsyncSealSealedErrRace (fails under -race only): while a handed-off batch is stored (the
// archive held), the stream's own entries come back through the slot and awaitSealed reads u.err
// (if u.err != nil), which the uploader writes when store returns (u.err = r.store(...)), with nothing
// ordering the two. At level info and without heartbeats, as the debug logging's handler lock
// and the pool would otherwise order them by chance.
func TestStream_AsyncSealSealedErrRace(t *testing.T) {
	f := walFixture(t)
	sink := &gatedSink{Sink: f.sink}
	f.sink = sink
	cfg := f.config(t)
	cfg.Logger = slog.New(slog.NewTextHandler(testLog(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.HeartbeatInterval = 0
	cfg.StandbyInterval = time.Hour
	f.start(t, cfg)
	waitArchived(t, f, 30*time.Second)
	for k := 0; k < 10; k++ {
		sink.close()
		testdb.Exec(t, f.db, fmt.Sprintf(`INSERT INTO accounts VALUES (%d, 'a', 1)`, k))
		waitChained(t, f.db, "public.accounts", k+1)
		time.Sleep(300 * time.Millisecond)
		sink.open()
		waitArchived(t, f, 30*time.Second)
	}
}
