package cdc_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archivetest"
	"github.com/pgtrail/pgtrail/internal/cdc"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// fixture is a database with an audited table, a sink and a running stream.
type fixture struct {
	db      *pgxpool.Pool
	url     string
	sink    archive.Sink
	metrics *cdc.Metrics
	cancel  context.CancelFunc
	done    chan error
	exited  chan struct{} // closed when Run has returned
	sealer  *chain.Sealer
	// noSealer: only testdb.Seal seals.
	noSealer bool
}

func fileSink(t *testing.T) archive.Sink {
	sink, err := archive.Open(context.Background(), "file://"+t.TempDir(), archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return sink
}

// bothSinks are the sinks a test runs against in turn.
var bothSinks = []struct {
	name string
	sink func(t *testing.T) archive.Sink
}{
	{"File", fileSink},
	{"S3", func(t *testing.T) archive.Sink { return s3Sink(t, testenv.S3(t)) }},
}

func s3Sink(t *testing.T, srv *testenv.S3Server) archive.Sink {
	bucket := testenv.S3Bucket(t, srv)
	sink, err := archive.Open(context.Background(), "s3://"+bucket+"/trail", archive.Options{
		Endpoint: srv.Endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Retention: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return sink
}

func setup(t *testing.T, sink archive.Sink) *fixture {
	t.Helper()
	db, url := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric); SELECT audit.enable('accounts')`)
	return &fixture{db: db, url: url, sink: sink}
}

func (f *fixture) config(t *testing.T) cdc.Config {
	cfg, err := pgx.ParseConfig(f.url)
	if err != nil {
		t.Fatal(err)
	}
	f.metrics = cdc.NewMetrics(nil)
	return cdc.Config{ConnConfig: cfg, BatchEvents: 200, BatchAge: 50 * time.Millisecond,
		StandbyInterval: time.Second, HeartbeatInterval: 200 * time.Millisecond, ShutdownTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testLog(), &slog.HandlerOptions{Level: slog.LevelDebug})), Metrics: f.metrics}
}

// start runs a stream and a sealer in the background.
func (f *fixture) start(t *testing.T, cfg cdc.Config) {
	t.Helper()
	s, err := cdc.New(cfg, &archive.Writer{Sink: f.sink})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, exited := make(chan error, 1), make(chan struct{})
	f.cancel, f.done, f.exited = cancel, done, exited
	go func() {
		// The channels of this run: a second start replaces the fixture's.
		done <- s.Run(ctx)
		close(exited)
	}()
	if !f.noSealer {
		f.sealer = &chain.Sealer{DB: f.db, Interval: 20 * time.Millisecond, Logger: cfg.Logger}
		f.sealer.Start(ctx)
	}
	// Before the database is dropped: it cannot be while the stream's slot is active, and the
	// server's walsender may outlive the stream's connection for a moment.
	t.Cleanup(func() {
		f.stop()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Error("stream did not stop within 30s of cancel")
			return
		}
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var active bool
			err := f.db.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_replication_slots
				WHERE database = current_database() AND active)`).Scan(&active)
			if err != nil || !active {
				return
			}
		}
	})
}

// stop cancels the stream and returns Run's result (nil when already stopped).
func (f *fixture) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	if f.sealer != nil {
		f.sealer.Stop()
	}
	f.cancel = nil
}

func (f *fixture) wait(t *testing.T) error {
	t.Helper()
	f.stop()
	select {
	case err := <-f.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("stream did not stop within 30s of cancel")
		return nil
	}
}

// write runs n transactions on writers goroutines, each inserting one account and updating it.
func write(t *testing.T, db *pgxpool.Pool, from, n, writers int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := from + w; i < from+n; i += writers {
				_, err := db.Exec(context.Background(), `BEGIN;
					SELECT set_config('pgtrail.actor_id', 'writer`+fmt.Sprint(w)+`', true);
					INSERT INTO accounts VALUES (`+fmt.Sprint(i)+`, 'o', 1);
					UPDATE accounts SET balance = 2 WHERE id = `+fmt.Sprint(i)+`; COMMIT`)
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// dbEvents returns every sealed event of the database.
func dbEvents(t *testing.T, db *pgxpool.Pool) []pgtrail.Event {
	t.Helper()
	var out []pgtrail.Event
	err := chain.Read(context.Background(), db, 1, 1<<62, func(e *pgtrail.Event) error {
		out = append(out, *e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitArchived waits until the archive holds every sealed entry (everything pending sealed first).
func waitArchived(t *testing.T, f *fixture, timeout time.Duration) {
	t.Helper()
	testdb.Seal(t, f.db)
	var head int64
	if err := f.db.QueryRow(context.Background(), "SELECT seq FROM audit.chain_head").Scan(&head); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		st, err := (&archive.Writer{Sink: f.sink}).Resume(context.Background())
		if err == nil && st.LastSeq >= head {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive reached seq %d of %d within %s (err %v)", st.LastSeq, head, timeout, err)
		}
		select {
		case runErr := <-f.done:
			t.Fatalf("stream stopped on its own at seq %d of %d: %v", st.LastSeq, head, runErr)
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sameEvents compares archive and database entry by entry, every field.
func sameEvents(t *testing.T, got, want []pgtrail.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("archive holds %d entries, database %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.OccurredAt.Equal(w.OccurredAt) {
			t.Fatalf("seq %d: occurred_at %s in archive, %s in database", w.Seq, g.OccurredAt, w.OccurredAt)
		}
		g.OccurredAt = w.OccurredAt
		if len(g.ChangedColumns) == 0 && len(w.ChangedColumns) == 0 {
			g.ChangedColumns = w.ChangedColumns
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("seq %d differs:\narchive  %+v\ndatabase %+v", w.Seq, g, w)
		}
		var sum [32]byte
		sum, _ = g.Hash(nil)
		if !bytes.Equal(sum[:], g.EntryHash) {
			t.Fatalf("seq %d: archived entry does not hash to its entry_hash", g.Seq)
		}
	}
}

// TestStream_EndToEnd writes under concurrency while streaming, into each sink, and reads the
// archive back: every entry once, in chain order, every field as in the database.
func TestStream_EndToEnd(t *testing.T) {
	for _, s := range bothSinks {
		t.Run(s.name, func(t *testing.T) {
			f := setup(t, s.sink(t))
			// Entries sealed before the stream first starts are backfilled from the table.
			write(t, f.db, 0, 50, 2)
			testdb.Seal(t, f.db)
			f.start(t, f.config(t))
			write(t, f.db, 50, 600, 8)
			waitArchived(t, f, 60*time.Second)
			if err := f.wait(t); err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
			got, want := archivetest.Events(t, f.sink), dbEvents(t, f.db)
			if len(want) < 1300 {
				t.Fatalf("only %d entries written", len(want))
			}
			sameEvents(t, got, want)
			var lag int64
			if err := f.db.QueryRow(context.Background(), `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
				FROM pg_replication_slots WHERE slot_name = 'pgtrail'`).Scan(&lag); err != nil {
				t.Fatal(err)
			}
			if testutil.ToFloat64(f.metrics.Events) == 0 {
				t.Error("events metric did not move")
			}
			t.Logf("slot confirmed position %d bytes behind the WAL end after stop", lag)
		})
	}
}

// TestStream_IdleHeartbeat checks that an idle database's slot keeps moving: heartbeats are
// acknowledged, so the slot's confirmed position follows the WAL end.
func TestStream_IdleHeartbeat(t *testing.T) {
	f := setup(t, fileSink(t))
	f.start(t, f.config(t))
	write(t, f.db, 0, 5, 1)
	waitArchived(t, f, 30*time.Second)
	var before, after string
	q := `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'pgtrail'`
	if err := f.db.QueryRow(context.Background(), q).Scan(&before); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for after <= before && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		if err := f.db.QueryRow(context.Background(), q).Scan(&after); err != nil {
			t.Fatal(err)
		}
	}
	if after == before {
		t.Fatalf("idle slot did not advance from %s in 20s", before)
	}
}

// TestStream_Tampering updates and deletes audit.events as a superuser with triggers disabled:
// the daemon must count it, record a TAMPERING event, and keep archiving.
func TestStream_Tampering(t *testing.T) {
	f := setup(t, fileSink(t))
	f.start(t, f.config(t))
	write(t, f.db, 0, 5, 1)
	waitArchived(t, f, 30*time.Second)
	testdb.Exec(t, f.db, `BEGIN; SET LOCAL session_replication_role = replica;
		UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 3; DELETE FROM audit.events WHERE seq = 4; COMMIT`)
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(f.metrics.Tampering) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := testutil.ToFloat64(f.metrics.Tampering); n != 2 {
		t.Fatalf("tampering metric = %v, want 2", n)
	}
	write(t, f.db, 100, 3, 1)
	waitArchived(t, f, 30*time.Second)
	var recorded int
	if err := f.db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events WHERE action_type = 'TAMPERING'`).Scan(&recorded); err != nil || recorded != 2 {
		t.Fatalf("TAMPERING events recorded: %d (%v), want 2", recorded, err)
	}
	archived := archivetest.Events(t, f.sink)
	if archived[2].ActorID == "mallory" {
		t.Error("the archive took the tampered value: it must keep what was streamed at insert time")
	}
	if n := countAction(archived, "TAMPERING"); n != 2 {
		t.Errorf("%d TAMPERING events archived, want 2", n)
	}
}

func countAction(evs []pgtrail.Event, action string) int {
	n := 0
	for _, e := range evs {
		if e.ActionType == action {
			n++
		}
	}
	return n
}

// testLog is where stream logs go: nowhere, unless PGTRAIL_TEST_LOG is set.
func testLog() io.Writer {
	if os.Getenv("PGTRAIL_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// TestStream_S3Outage stops the S3 server while writes go on, then starts it again: the stream
// must retry on its own, lose nothing and duplicate nothing.
func TestStream_S3Outage(t *testing.T) {
	srv := testenv.S3(t)
	f := setup(t, s3Sink(t, srv))
	f.start(t, f.config(t))
	write(t, f.db, 0, 100, 4)
	waitArchived(t, f, 30*time.Second)

	srv.Stop(t)
	write(t, f.db, 100, 200, 4) // the database keeps working; the slot holds the WAL
	testdb.Seal(t, f.db)
	time.Sleep(time.Second) // let the stream fail a few uploads
	if n := testutil.ToFloat64(f.metrics.Errors.WithLabelValues("archive")); n == 0 {
		t.Error("no archive error counted during the outage")
	}
	srv.Start(t)
	waitArchived(t, f, 60*time.Second)
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	sameEvents(t, archivetest.Events(t, f.sink), dbEvents(t, f.db))
}

// TestStream_PostgresRestart restarts PostgreSQL under the stream: it must reconnect, resume from
// the slot and archive what was written after the restart.
func TestStream_PostgresRestart(t *testing.T) {
	f := setup(t, fileSink(t))
	f.start(t, f.config(t))
	write(t, f.db, 0, 100, 4)
	waitArchived(t, f, 30*time.Second)

	testenv.PostgresCluster(t).Restart(t)
	f.db.Reset() // drop the pool's dead connections
	write(t, f.db, 100, 200, 4)
	waitArchived(t, f, 60*time.Second)
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	sameEvents(t, archivetest.Events(t, f.sink), dbEvents(t, f.db))
}

// gatedSink holds back the Puts of data files while closed.
type gatedSink struct {
	archive.Sink
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (g *gatedSink) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = make(chan struct{})
}

func (g *gatedSink) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.gate)
	g.gate = nil
}

func (g *gatedSink) Put(ctx context.Context, key string, data []byte) error {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil && strings.HasPrefix(key, archive.EventsPrefix) {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Sink.Put(ctx, key, data)
}

// TestStream_ReceivesWhileUploading holds an upload back: the stream must go on reading the WAL
// (its reported write position passes WAL written after the held batch), and acknowledge
// nothing of the held batch or after it until the batch is durable.
func TestStream_ReceivesWhileUploading(t *testing.T) {
	sink := &gatedSink{Sink: fileSink(t)}
	f := setup(t, sink)
	f.noSealer = true
	cfg := f.config(t)
	cfg.HeartbeatInterval = 0 // only the seals below commit after the mark
	f.start(t, cfg)
	write(t, f.db, 0, 50, 2)
	waitArchived(t, f, 30*time.Second)
	ctx := context.Background()
	var held int64
	if err := f.db.QueryRow(ctx, "SELECT seq FROM audit.chain_head").Scan(&held); err != nil {
		t.Fatal(err)
	}

	sink.close()
	write(t, f.db, 50, 50, 2)
	// The first seal after the archive's end: the stream may acknowledge WAL up to its commit
	// record (keepalives report positions inside its inserts), and none of it or after it.
	var before string
	tx, err := f.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, "SELECT audit.seal() > 0, pg_current_wal_insert_lsn()::text").Scan(new(bool), &before); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	testdb.Seal(t, f.db)
	time.Sleep(200 * time.Millisecond) // past the batch age: the batch is uploading (held)
	write(t, f.db, 100, 50, 2)
	testdb.Seal(t, f.db)
	var after string
	if err := f.db.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&after); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var read, confirmed bool
		err := f.db.QueryRow(ctx, `SELECT COALESCE(r.write_lsn >= $1::pg_lsn, false), COALESCE(s.confirmed_flush_lsn <= $2::pg_lsn, true)
			FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'pgtrail'`,
			after, before).Scan(&read, &confirmed)
		if err != nil {
			t.Fatal(err)
		}
		if !confirmed {
			t.Fatal("the slot's confirmed position passed the held batch before it was durable")
		}
		if read {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream stopped reading the WAL while a batch was uploading")
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, err := (&archive.Writer{Sink: sink.Sink}).Resume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastSeq != held {
		t.Fatalf("archive at seq %d while the upload was held, want %d", st.LastSeq, held)
	}

	sink.open()
	waitArchived(t, f, 30*time.Second)
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	sameEvents(t, archivetest.Events(t, sink.Sink), dbEvents(t, f.db))
}

// TestStream_PoisonValues: any role sets a 1 MB actor id, tenant id and request id, and logs an
// event with 1 MB arguments, while the stream runs into each sink. What must survive: those
// entries and every one after them, in the database and the archive, field for field (a tenant
// id becomes part of each data file's key: a long one must not make the key unwritable).
func TestStream_PoisonValues(t *testing.T) {
	big := `(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 32768) i)` // 1 MiB
	for _, s := range bothSinks {
		t.Run(s.name, func(t *testing.T) {
			f := setup(t, s.sink(t))
			f.start(t, f.config(t))
			write(t, f.db, 0, 5, 1)
			testdb.Exec(t, f.db, `BEGIN;
				SELECT set_config('pgtrail.actor_id', `+big+`, true), set_config('pgtrail.tenant_id', `+big+`, true),
				       set_config('pgtrail.request_id', `+big+`, true);
				INSERT INTO accounts VALUES (100, 'poison', 1);
				SELECT audit.log_event('VIEW_PII', `+big+`, `+big+`);
				COMMIT`)
			write(t, f.db, 5, 10, 2)
			waitArchived(t, f, 60*time.Second)
			if err := f.wait(t); err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
			got, want := archivetest.Events(t, f.sink), dbEvents(t, f.db)
			sameEvents(t, got, want)
			var poisoned, after int
			for _, e := range want {
				if len(e.ActorID) == 1<<20 && e.TenantID != nil && len(*e.TenantID) == 1<<20 {
					poisoned++
				}
				if e.ResourceID != nil && *e.ResourceID == "9" {
					after++
				}
			}
			if poisoned != 2 || after != 2 {
				t.Errorf("entries with the full 1 MiB values: %d (want 2); entries of the last write after them: %d (want 2)", poisoned, after)
			}
		})
	}
}

// walFixture is a database with accounts in mode 'wal' (the slot created first, as `pgtrail
// enable --mode wal` does) and a stream into a file sink.
func walFixture(t *testing.T) *fixture {
	t.Helper()
	db, url := testdb.New(t)
	testdb.Exec(t, db, `SELECT pg_create_logical_replication_slot('pgtrail', 'pgoutput')`)
	testdb.Exec(t, db, `CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric);
		SELECT audit.enable('accounts', '{}', NULL, 'wal')`)
	return &fixture{db: db, url: url, sink: fileSink(t)}
}

// TestStream_WALCapture captures a table in mode 'wal': the stream chains its changes from the
// WAL and archives them. Then a superuser changes rows with the table's triggers disabled (the
// bypass of trigger capture): what must survive is every change in the trail, the bypassed ones
// flagged, and the archive equal to the database.
func TestStream_WALCapture(t *testing.T) {
	f := walFixture(t)
	f.start(t, f.config(t))
	testdb.Exec(t, f.db, `BEGIN; SELECT set_config('pgtrail.actor_id', 'alice', true), set_config('pgtrail.actor_ip', '203.0.113.7/32', true);
		INSERT INTO accounts VALUES (1, 'alice', 10.50), (2, 'bob', 3);
		UPDATE accounts SET balance = 11 WHERE id = 1;
		SELECT set_config('pgtrail.actor_id', 'bob', true);
		DELETE FROM accounts WHERE id = 2; COMMIT`)
	testdb.Exec(t, f.db, `SET session_replication_role = replica; UPDATE accounts SET owner = 'eve' WHERE id = 1; RESET session_replication_role`)
	testdb.Exec(t, f.db, `BEGIN; ALTER TABLE accounts DISABLE TRIGGER ALL; UPDATE accounts SET balance = 1000000 WHERE id = 1;
		ALTER TABLE accounts ENABLE ALWAYS TRIGGER pgtrail_context; COMMIT`)
	// Any session can emit a message with the context's prefix: a forged one (claiming alice),
	// after the genuine one or instead of it, must not be believed.
	forged := `SELECT pg_logical_emit_message(true, 'pgtrail.context', '{"xid": "' || pg_current_xact_id() || '", "db_user": "alice", "actor_id": "alice", "client_addr": "10.9.9.9"}' || E'\n' || repeat('0', 64))`
	testdb.Exec(t, f.db, `BEGIN; UPDATE accounts SET balance = 2 WHERE id = 1; `+forged+`; UPDATE accounts SET balance = 3 WHERE id = 1; COMMIT`)
	testdb.Exec(t, f.db, `BEGIN; ALTER TABLE accounts DISABLE TRIGGER pgtrail_context; `+forged+`; UPDATE accounts SET balance = 4 WHERE id = 1;
		ALTER TABLE accounts ENABLE ALWAYS TRIGGER pgtrail_context; COMMIT`)
	testdb.Exec(t, f.db, `TRUNCATE accounts`)
	write(t, f.db, 10, 20, 4)
	waitChained(t, f.db, "public.accounts", 9+40)
	want := f.drained(t)

	var acts []string
	for _, e := range want {
		if e.ResourceType != "public.accounts" || e.ActorID == "writer0" || strings.HasPrefix(e.ActorID, "writer") {
			continue
		}
		a := e.ActionType + ":" + e.ActorID + ":" + str(e.ResourceID)
		if e.Details != nil && strings.Contains(*e.Details, "capture_warning") {
			a += ":flagged"
		}
		acts = append(acts, a)
	}
	wantActs := []string{"CREATE:alice:1", "CREATE:alice:2", "UPDATE:alice:1", "DELETE:bob:2", "UPDATE:postgres:1",
		"UPDATE:(unknown):1:flagged", "UPDATE:postgres:1", "UPDATE:postgres:1", "UPDATE:(unknown):1:flagged", "TRUNCATE:postgres:<nil>"}
	if strings.Join(acts, " ") != strings.Join(wantActs, " ") {
		t.Errorf("entries:\n got %v\nwant %v", acts, wantActs)
	}
	// The bypasses are caught: verify db names the flagged entries and the two CAPTURE_GAP
	// entries of the context trigger disabled (schema 10), and nothing else.
	rep, err := verify.DB(context.Background(), f.db)
	if err != nil {
		t.Fatal(err)
	}
	var gaps int
	if err := f.db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events WHERE action_type = 'CAPTURE_GAP'`).Scan(&gaps); err != nil {
		t.Fatal(err)
	}
	warned := 0
	for _, p := range rep.Problems {
		if p.Kind == verify.CaptureWarning {
			warned++
		}
	}
	if gaps != 2 || warned != 4 || len(rep.Problems) != 4 {
		t.Errorf("verify db problems = %+v (%d CAPTURE_GAP entries), want four capture_warning: two flagged changes, two gaps", rep.Problems, gaps)
	}
	for _, e := range want {
		if e.ActionType == "UPDATE" && e.ActorID == "alice" {
			if str(e.BeforeState) != `{"id": 1, "owner": "alice", "balance": 10.50}` || str(e.AfterState) != `{"id": 1, "owner": "alice", "balance": 11}` ||
				strings.Join(e.ChangedColumns, ",") != "balance" || str(e.ActorIP) != "203.0.113.7" {
				t.Errorf("update entry: %+v", e)
			}
		}
	}
}

// drained waits until the stream has archived everything, stops it, checks that the archive
// holds what audit.events holds, and returns the entries.
func (f *fixture) drained(t *testing.T) []pgtrail.Event {
	t.Helper()
	waitArchived(t, f, 60*time.Second)
	if err := f.wait(t); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	want := dbEvents(t, f.db)
	sameEvents(t, archivetest.Events(t, f.sink), want)
	return want
}

// dropSlot drops the slot pgtrail as a superuser would, once the walsender that read it (which
// may outlive the stream's connection for a moment) lets go of it.
func dropSlot(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := db.Exec(context.Background(), `SELECT pg_drop_replication_slot('pgtrail')`)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("drop slot: %v", err)
		}
	}
}

// waitChained waits until audit.events holds n entries of resourceType.
func waitChained(t *testing.T, db *pgxpool.Pool, resourceType string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var got int
		if err := db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events WHERE resource_type = $1`, resourceType).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries of %s chained within 60s, want %d", got, resourceType, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func str(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// TestStream_WALTypeFidelity: row images built from the WAL must equal to_jsonb of the row (what
// trigger capture records), for every kind of column: arrays, enums, composites, numeric, json,
// bytea, tsvector, a domain, times, and a 1 MB TOASTed text that an UPDATE leaves untouched (the
// WAL then sends it as "unchanged"); also for a partitioned table and across ALTER TABLE.
func TestStream_WALTypeFidelity(t *testing.T) {
	f := walFixture(t)
	testdb.Exec(t, f.db, `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
		CREATE TYPE pair AS (a int, b text);
		CREATE DOMAIN positive AS int CHECK (VALUE > 0);
		CREATE TABLE typed (id int PRIMARY KEY, arr int[], tarr text[], m mood, p pair, n numeric(10,3), j json, jb jsonb,
		  b bytea, ts tsvector, d positive, t timestamptz, iv interval, big text, f float8, u uuid, ip inet, bits bit varying);
		SELECT audit.enable('typed', '{}', NULL, 'wal');
		CREATE TABLE parted (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
		CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
		SELECT audit.enable('parted', '{}', NULL, 'wal');
		CREATE TABLE expect (step int, img jsonb)`)
	f.start(t, f.config(t))
	testdb.Exec(t, f.db, `INSERT INTO typed VALUES (1, '{1,NULL,3}', '{"a b","c,d",NULL}', 'happy', '(1,"x y")', 12.5, '{"k": [1, 2], "k": 3}',
		  '{"z": 1, "a": {"b": null}}', '\x00ff', 'a fat cat', 7, '2024-02-29 23:59:59.123456+05', '1 mon 2 days 03:04:05',
		  (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 32768) i), 'NaN', gen_random_uuid(), '10.1.2.3/8', B'101');
		INSERT INTO expect SELECT 1, to_jsonb(x) FROM typed x;
		UPDATE typed SET n = n + 0.001, tarr = tarr || 'e"f'::text WHERE id = 1;
		INSERT INTO expect SELECT 2, to_jsonb(x) FROM typed x;
		ALTER TABLE typed ADD COLUMN extra text DEFAULT 'new';
		UPDATE typed SET d = 8 WHERE id = 1;
		INSERT INTO expect SELECT 3, to_jsonb(x) FROM typed x;
		INSERT INTO parted VALUES (1, 'eu', 'a'), (2, 'us', 'b');
		UPDATE parted SET v = 'c' WHERE id = 2;
		INSERT INTO expect SELECT 4, to_jsonb(p) FROM parted p WHERE id = 2`)
	waitChained(t, f.db, "public.typed", 3)
	waitChained(t, f.db, "public.parted", 3)
	checks := []struct{ name, sql string }{
		{"Insert", `SELECT after_state = (SELECT img FROM expect WHERE step = 1) FROM audit.events WHERE resource_type = 'public.typed' AND action_type = 'CREATE'`},
		{"UpdateBefore", `SELECT before_state = (SELECT img FROM expect WHERE step = 1) FROM audit.events WHERE resource_type = 'public.typed' AND action_type = 'UPDATE' ORDER BY seq LIMIT 1`},
		{"UpdateAfterUnchangedToast", `SELECT after_state = (SELECT img FROM expect WHERE step = 2) FROM audit.events WHERE resource_type = 'public.typed' AND action_type = 'UPDATE' ORDER BY seq LIMIT 1`},
		{"ChangedColumns", `SELECT changed_columns = '{n,tarr}' FROM audit.events WHERE resource_type = 'public.typed' AND action_type = 'UPDATE' ORDER BY seq LIMIT 1`},
		{"AfterAlterTable", `SELECT after_state = (SELECT img FROM expect WHERE step = 3) AND changed_columns = '{d}' FROM audit.events WHERE resource_type = 'public.typed' AND action_type = 'UPDATE' ORDER BY seq DESC LIMIT 1`},
		{"PartitionedUnderRoot", `SELECT after_state = (SELECT img FROM expect WHERE step = 4) AND resource_id = '2,us' FROM audit.events WHERE resource_type = 'public.parted' AND action_type = 'UPDATE'`},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			var ok bool
			if err := f.db.QueryRow(context.Background(), c.sql).Scan(&ok); err != nil || !ok {
				var got string
				f.db.QueryRow(context.Background(), `SELECT string_agg(e.seq || ' ' || e.action_type || ' ' || coalesce(e.details::text, '') || ' ' ||
					regexp_replace(coalesce(e.before_state::text, '-') || ' -> ' || coalesce(e.after_state::text, '-'), '[0-9a-f]{60,}', '<big>', 'g'), E'\n' ORDER BY e.seq)
					|| E'\nexpected: ' || (SELECT string_agg(x.step || ' ' || regexp_replace(x.img::text, '[0-9a-f]{60,}', '<big>', 'g'), E'\n' ORDER BY x.step) FROM expect x)
					FROM audit.events e WHERE e.resource_type = 'public.typed'`).Scan(&got)
				t.Errorf("%s: %v (%v); entries:\n%s", c.sql, ok, err, got)
			}
		})
	}
	rep, err := verify.DB(context.Background(), f.db)
	if err != nil || !rep.Intact() {
		var flagged string
		f.db.QueryRow(context.Background(), `SELECT string_agg(seq || ' ' || action_type || ' ' || resource_type || ' ' || details::text, E'\n') FROM audit.events WHERE details ? 'capture_warning'`).Scan(&flagged)
		t.Errorf("verify db: %v %+v\n%s", err, rep.Problems, flagged)
	}
}

// TestStream_WALPoisonImage: the table's owner tightens a domain after a value was stored, so
// that the value no longer converts to its type when the stream builds the row images. What must
// survive: that change (its values kept as text, flagged) and every change after it.
func TestStream_WALPoisonImage(t *testing.T) {
	f := walFixture(t)
	testdb.Exec(t, f.db, `CREATE DOMAIN small AS int;
		CREATE TABLE gauges (id int PRIMARY KEY, level small, note text);
		SELECT audit.enable('gauges', '{}', NULL, 'wal');
		INSERT INTO gauges VALUES (1, 100, 'a');
		ALTER DOMAIN small ADD CONSTRAINT under_ten CHECK (VALUE < 10) NOT VALID`)
	f.start(t, f.config(t))
	testdb.Exec(t, f.db, `UPDATE gauges SET note = 'b' WHERE id = 1`)
	testdb.Exec(t, f.db, `INSERT INTO gauges VALUES (2, 5, 'after')`)
	waitChained(t, f.db, "public.gauges", 3)
	var after, warning string
	err := f.db.QueryRow(context.Background(), `SELECT
		(SELECT after_state::text FROM audit.events WHERE resource_type = 'public.gauges' AND action_type = 'UPDATE'),
		(SELECT details ->> 'capture_warning' FROM audit.events WHERE resource_type = 'public.gauges' AND action_type = 'UPDATE')`).Scan(&after, &warning)
	if err != nil || after != `{"id": "1", "note": "b", "level": "100"}` || !strings.Contains(warning, "under_ten") {
		t.Errorf("update entry after %s, warning %q (%v)", after, warning, err)
	}
	var next string
	if err := f.db.QueryRow(context.Background(), `SELECT after_state::text FROM audit.events WHERE resource_type = 'public.gauges' AND resource_id = '2'`).Scan(&next); err != nil || next != `{"id": 2, "note": "after", "level": 5}` {
		t.Errorf("entry after the poison: %s (%v)", next, err)
	}
	waitArchived(t, f, 30*time.Second)
}

// TestStream_WALOwnerCode: the owner of a table in mode wal (a plain role) puts code in its types
// that the stream runs when it types the row images: a domain CHECK and a cast to json, each
// trying to make the owner a superuser (directly, and after RESET ROLE) while the stream runs as a
// superuser. What must hold: the owner gains nothing, and its changes are still in the trail.
func TestStream_WALOwnerCode(t *testing.T) {
	f := walFixture(t)
	testdb.Exec(t, f.db, `CREATE ROLE wal_owner_app LOGIN; GRANT CREATE ON SCHEMA public TO wal_owner_app`)
	owner := testdb.Pool(t, strings.Replace(f.url, "postgres@", "wal_owner_app@", 1))
	if err := owner.Ping(context.Background()); err != nil {
		t.Skipf("cannot connect as the owner role with this URL (%v)", err)
	}
	testdb.Exec(t, owner, `
		CREATE FUNCTION public.escalate(v int) RETURNS boolean LANGUAGE plpgsql AS $f$
		BEGIN
		  BEGIN EXECUTE 'ALTER ROLE wal_owner_app SUPERUSER'; EXCEPTION WHEN others THEN NULL; END;
		  BEGIN RESET ROLE; EXECUTE 'ALTER ROLE wal_owner_app SUPERUSER'; EXCEPTION WHEN others THEN NULL; END;
		  BEGIN SET ROLE postgres; EXECUTE 'ALTER ROLE wal_owner_app SUPERUSER'; EXCEPTION WHEN others THEN NULL; END;
		  RETURN true;
		END $f$;
		CREATE DOMAIN sneaky AS int CHECK (public.escalate(VALUE));
		CREATE TYPE mood AS ENUM ('sad', 'happy');
		CREATE FUNCTION public.mood_json(m mood) RETURNS json LANGUAGE plpgsql AS $f$
		BEGIN PERFORM public.escalate(1); RETURN to_json(m::text); END $f$;
		CREATE CAST (mood AS json) WITH FUNCTION public.mood_json(mood);
		CREATE TABLE owned (id int PRIMARY KEY, s sneaky, m mood)`)
	testdb.Exec(t, f.db, `SELECT audit.enable('owned', '{}', NULL, 'wal')`)
	f.start(t, f.config(t))
	testdb.Exec(t, owner, `INSERT INTO owned VALUES (1, 1, 'happy'); UPDATE owned SET m = 'sad'`)
	waitChained(t, f.db, "public.owned", 2)
	var super bool
	if err := f.db.QueryRow(context.Background(), `SELECT rolsuper FROM pg_roles WHERE rolname = 'wal_owner_app'`).Scan(&super); err != nil || super {
		t.Errorf("the table owner's code ran with the stream's rights: rolsuper = %v (%v)", super, err)
	}
	var after string
	if err := f.db.QueryRow(context.Background(), `SELECT after_state::text FROM audit.events WHERE resource_type = 'public.owned' AND action_type = 'UPDATE'`).Scan(&after); err != nil ||
		!strings.Contains(after, `"m": "sad"`) {
		t.Errorf("update entry: %s (%v)", after, err)
	}
}

// TestStream_WALSlotDropped: a superuser stops the stream, drops its slot and changes rows of a
// table in mode wal; those changes never reach any slot. What must happen when the stream
// starts again: a CAPTURE_GAP entry in the trail naming the range, verify db reporting it, and
// every later change captured.
func TestStream_WALSlotDropped(t *testing.T) {
	f := walFixture(t)
	f.start(t, f.config(t))
	testdb.Exec(t, f.db, `INSERT INTO accounts VALUES (1, 'a', 1)`)
	waitChained(t, f.db, "public.accounts", 1)
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	dropSlot(t, f.db)
	testdb.Exec(t, f.db, `UPDATE accounts SET balance = 1000000 WHERE id = 1`) // lost: no slot
	f.start(t, f.config(t))
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var active bool
		f.db.QueryRow(context.Background(), `SELECT COALESCE((SELECT active FROM pg_replication_slots WHERE slot_name = 'pgtrail'), false)`).Scan(&active)
		if active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream did not create its slot again")
		}
	}
	testdb.Exec(t, f.db, `UPDATE accounts SET balance = 2 WHERE id = 1`)
	waitChained(t, f.db, "public.accounts", 2)
	var gaps int
	var details string
	if err := f.db.QueryRow(context.Background(), `SELECT count(*), max(details::text) FROM audit.events WHERE action_type = 'CAPTURE_GAP'`).Scan(&gaps, &details); err != nil || gaps != 1 ||
		!strings.Contains(details, `"from_lsn"`) || !strings.Contains(details, "public.accounts") {
		t.Errorf("CAPTURE_GAP entries: %d, details %s (%v)", gaps, details, err)
	}
	rep, err := verify.DB(context.Background(), f.db)
	if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Kind != verify.CaptureWarning {
		t.Errorf("verify db: %v %+v, want the gap reported", err, rep.Problems)
	}
	waitArchived(t, f, 30*time.Second)
}

// TestCaptureLag: verify's capture-lag check (pgtrail verify --max-capture-lag) against a table in
// mode wal. A change waiting in the slot with no stream running, longer than allowed: reported.
// With a stream chaining: nothing to report. The slot dropped: reported.
func TestCaptureLag(t *testing.T) {
	f := walFixture(t)
	ctx := context.Background()
	conn, err := f.db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	testdb.Seal(t, f.db) // what enable left in audit.pending
	testdb.Exec(t, f.db, `INSERT INTO accounts VALUES (1, 'a', 1)`)
	time.Sleep(1100 * time.Millisecond)
	problems, err := verify.CaptureLag(ctx, conn, "pgtrail", time.Second)
	if err != nil || len(problems) != 1 || problems[0].Kind != verify.CaptureLagged || !strings.Contains(problems[0].Detail, "no pgtrail stream") {
		t.Errorf("a change waiting with no stream: %+v, %v", problems, err)
	}
	if problems, err := verify.CaptureLag(ctx, conn, "pgtrail", time.Minute); err != nil || len(problems) != 0 {
		t.Errorf("within the allowed lag: %+v, %v", problems, err)
	}
	f.start(t, f.config(t))
	waitChained(t, f.db, "public.accounts", 1)
	if problems, err := verify.CaptureLag(ctx, conn, "pgtrail", 30*time.Second); err != nil || len(problems) != 0 {
		t.Errorf("with a stream chaining: %+v, %v", problems, err)
	}
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	dropSlot(t, f.db)
	if problems, err := verify.CaptureLag(ctx, conn, "pgtrail", time.Minute); err != nil || len(problems) != 1 || !strings.Contains(problems[0].Detail, "is gone") {
		t.Errorf("slot dropped: %+v, %v", problems, err)
	}
}

// TestStream_WALOwnerCodeSession: the owner's code that the stream runs to type row images goes
// further (found by a second red-team pass): it changes its session's search_path for good and
// shadows functions and catalog views the stream uses, hoping that the stream's later queries
// (as a superuser) run them; it also refuses to end (catching the statement timeout); and any
// role emits a context message whose MAC is too short, which once crashed the stream. What must
// hold: the owner gains nothing, the stream goes on, and every change is in the trail (the
// stalled ones with text images, flagged).
func TestStream_WALOwnerCodeSession(t *testing.T) {
	f := walFixture(t)
	testdb.Exec(t, f.db, `CREATE ROLE wal_session_app LOGIN; CREATE SCHEMA owned AUTHORIZATION wal_session_app; GRANT USAGE ON SCHEMA owned TO PUBLIC`)
	owner := testdb.Pool(t, strings.Replace(f.url, "postgres@", "wal_session_app@", 1))
	testdb.Exec(t, owner, `
		CREATE FUNCTION owned.escalate() RETURNS void LANGUAGE plpgsql AS $f$
		BEGIN
		  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN EXECUTE 'ALTER ROLE wal_session_app SUPERUSER'; END IF;
		END $f$;
		CREATE FUNCTION owned.pg_current_snapshot() RETURNS pg_snapshot LANGUAGE plpgsql AS $f$
		BEGIN PERFORM owned.escalate(); RETURN pg_catalog.pg_current_snapshot(); END $f$;
		CREATE FUNCTION owned.to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS $f$
		BEGIN PERFORM owned.escalate(); RETURN pg_catalog.to_regclass($1); END $f$;
		CREATE FUNCTION owned.taint(v int) RETURNS boolean LANGUAGE plpgsql AS $f$
		BEGIN
		  PERFORM set_config('search_path', 'owned, pg_catalog', false);
		  EXECUTE 'CREATE TEMP VIEW IF NOT EXISTS pg_replication_slots AS SELECT * FROM pg_catalog.pg_replication_slots WHERE owned.escalate() IS NULL';
		  RETURN true;
		EXCEPTION WHEN others THEN RETURN true;
		END $f$;
		CREATE FUNCTION owned.stall(v int) RETURNS boolean LANGUAGE plpgsql AS $f$
		BEGIN
		  IF current_user = 'pgtrail_typer' THEN
		    LOOP BEGIN PERFORM pg_sleep(0.2); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP;
		  END IF;
		  RETURN true;
		END $f$;
		CREATE DOMAIN owned.tainted AS int CHECK (owned.taint(VALUE));
		CREATE DOMAIN owned.stalling AS int CHECK (owned.stall(VALUE));
		CREATE TABLE owned.a (id int PRIMARY KEY, v owned.tainted);
		CREATE TABLE owned.b (id int PRIMARY KEY, v owned.stalling)`)
	testdb.Exec(t, f.db, `SELECT audit.enable('owned.a', '{}', NULL, 'wal'); SELECT audit.enable('owned.b', '{}', NULL, 'wal')`)
	cfg := f.config(t)
	cfg.ImagesTimeout = 2 * time.Second
	f.start(t, cfg)
	testdb.Exec(t, owner, `INSERT INTO owned.a VALUES (1, 1); INSERT INTO owned.b VALUES (1, 1)`)
	testdb.Exec(t, owner, `SELECT pg_logical_emit_message(true, 'pgtrail.context', E'{}\n' || repeat('00', 40)); UPDATE owned.a SET v = 2`)
	testdb.Exec(t, f.db, `INSERT INTO accounts VALUES (7, 'after', 1)`)
	waitChained(t, f.db, "public.accounts", 1)
	waitChained(t, f.db, "owned.a", 2)
	waitChained(t, f.db, "owned.b", 1)
	var super bool
	if err := f.db.QueryRow(context.Background(), `SELECT rolsuper FROM pg_roles WHERE rolname = 'wal_session_app'`).Scan(&super); err != nil || super {
		t.Errorf("the owner's code reached the stream's rights: rolsuper = %v (%v)", super, err)
	}
	var warning string
	if err := f.db.QueryRow(context.Background(), `SELECT details ->> 'capture_warning' FROM audit.events WHERE resource_type = 'owned.b'`).Scan(&warning); err != nil ||
		!strings.Contains(warning, "did not finish") {
		t.Errorf("the stalled image: warning %q (%v), want it kept as text and flagged", warning, err)
	}
}

// TestStream_WALCaptureBroken: a superuser takes a table in mode wal out of the publication (no
// event trigger records that) and gives it back its default replica identity, so that its
// changes no longer reach the trail whole. What must happen: a CAPTURE_GAP entry for each
// problem when the stream next looks, and verify db reporting them.
func TestStream_WALCaptureBroken(t *testing.T) {
	f := walFixture(t)
	testdb.Exec(t, f.db, `ALTER PUBLICATION pgtrail DROP TABLE accounts; ALTER TABLE accounts REPLICA IDENTITY DEFAULT`)
	f.start(t, f.config(t))
	var n int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := f.db.QueryRow(context.Background(), `SELECT count(*) FROM audit.events WHERE action_type = 'CAPTURE_GAP' AND resource_id = 'public.accounts'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if n != 2 {
		t.Fatalf("CAPTURE_GAP entries for accounts: %d, want 2 (out of the publication, replica identity)", n)
	}
	rep, err := verify.DB(context.Background(), f.db)
	if err != nil || len(rep.Problems) != 2 || rep.Problems[0].Kind != verify.CaptureWarning {
		t.Errorf("verify db: %v %+v, want both reported", err, rep.Problems)
	}
}

// TestStream_WALConfigInOrder: a table's configuration (mode, excluded columns, audited or not)
// changes while its changes wait in the slot (no stream running, or a stream that lags). Each
// change must be chained as configured when it was made: what must survive is every change made
// in mode wal, and an excluded column kept out of the entries made while it was excluded, even
// when the exclusion is lifted before the stream reads them, and across a restart of the stream.
func TestStream_WALConfigInOrder(t *testing.T) {
	f := walFixture(t)
	testdb.Exec(t, f.db, `CREATE TABLE ledger (id int PRIMARY KEY, memo text)`)
	for _, q := range []string{
		`SELECT audit.enable('accounts', '{owner}', NULL, 'wal')`,
		`INSERT INTO accounts VALUES (1, 'excluded-1', 1)`,
		`SELECT audit.enable('accounts', '{}', NULL, 'wal')`, // the exclusion lifted
		`UPDATE accounts SET balance = 2 WHERE id = 1`,
		`SELECT audit.enable('accounts', '{}', NULL, 'trigger')`, // to mode trigger
		`UPDATE accounts SET balance = 3 WHERE id = 1`,
		`SELECT audit.enable('ledger', '{}', NULL, 'wal')`,
		`INSERT INTO ledger VALUES (1, 'made while audited')`,
		`SELECT audit.disable('ledger')`,
		`INSERT INTO ledger VALUES (2, 'made after')`,
	} {
		testdb.Exec(t, f.db, q)
	}
	f.start(t, f.config(t))
	waitChained(t, f.db, "public.accounts", 3)
	waitChained(t, f.db, "public.ledger", 1)

	// Part two: the stream reads a new exclusion and acknowledges it; stopped, a change is made
	// under it, then the exclusion is lifted. Restarted, the stream must still exclude.
	testdb.Exec(t, f.db, `SELECT audit.enable('ledger', '{memo}', NULL, 'wal')`)
	testdb.Exec(t, f.db, `INSERT INTO ledger VALUES (3, 'excluded-3')`)
	waitChained(t, f.db, "public.ledger", 2)
	waitArchived(t, f, 30*time.Second)
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var behind bool // the slot's confirmed position past everything so far
		if err := f.db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn < pg_current_wal_insert_lsn() - 1024 FROM pg_replication_slots WHERE slot_name = 'pgtrail'`).Scan(&behind); err != nil {
			t.Fatal(err)
		}
		if !behind {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot was not acknowledged up to the stream's last change")
		}
	}
	testdb.Exec(t, f.db, `UPDATE ledger SET memo = 'excluded-4' WHERE id = 3`)
	testdb.Exec(t, f.db, `SELECT audit.enable('ledger', '{}', NULL, 'wal')`)
	testdb.Exec(t, f.db, `UPDATE ledger SET memo = 'shown-5' WHERE id = 3`)
	f.start(t, f.config(t))
	waitChained(t, f.db, "public.ledger", 4)
	waitArchived(t, f, 30*time.Second)

	var got []string
	for _, e := range dbEvents(t, f.db) {
		if e.ResourceType == "public.accounts" || e.ResourceType == "public.ledger" {
			got = append(got, e.ActionType+" "+e.ResourceType+" "+str(e.BeforeState)+" "+str(e.AfterState))
		}
	}
	want := []string{
		`CREATE public.accounts <nil> {"id": 1, "balance": 1}`,
		`UPDATE public.accounts {"id": 1, "owner": "excluded-1", "balance": 1} {"id": 1, "owner": "excluded-1", "balance": 2}`,
		`UPDATE public.accounts {"id": 1, "owner": "excluded-1", "balance": 2} {"id": 1, "owner": "excluded-1", "balance": 3}`,
		`CREATE public.ledger <nil> {"id": 1, "memo": "made while audited"}`,
		`CREATE public.ledger <nil> {"id": 3}`,
		`UPDATE public.ledger {"id": 3} {"id": 3}`,
		`UPDATE public.ledger {"id": 3, "memo": "excluded-4"} {"id": 3, "memo": "shown-5"}`,
	}
	slices.Sort(got)
	slices.Sort(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestStream_WALPartitionWrites: an application writes straight into a partition of a table in
// mode wal, which fires no statement trigger of the partitioned table. What must survive: its
// context (those changes are not flagged as made without one), also in a partition created after
// the table was enabled, which gets the context trigger and REPLICA IDENTITY FULL when it is
// created (schema 13; before, it was a capture problem until `pgtrail enable` ran again).
func TestStream_WALPartitionWrites(t *testing.T) {
	f := walFixture(t)
	testdb.Exec(t, f.db, `CREATE TABLE orders (id int, region text, total int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('eu');
		CREATE TABLE orders_us PARTITION OF orders FOR VALUES IN ('us');
		SELECT audit.enable('orders', '{}', NULL, 'wal')`)
	f.start(t, f.config(t))
	testdb.Exec(t, f.db, `BEGIN; SELECT set_config('pgtrail.actor_id', 'carol', true);
		INSERT INTO orders VALUES (1, 'eu', 10);
		INSERT INTO orders_us VALUES (2, 'us', 20);
		UPDATE orders_eu SET total = 11 WHERE id = 1; COMMIT`)
	waitChained(t, f.db, "public.orders", 3)
	rows, err := f.db.Query(context.Background(), `SELECT action_type || ':' || actor_id || ':' || COALESCE(details->>'capture_warning', 'ok')
		FROM audit.events WHERE resource_type = 'public.orders' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := "CREATE:carol:ok CREATE:carol:ok UPDATE:carol:ok"; strings.Join(got, " ") != want {
		t.Errorf("entries %v, want %s", got, want)
	}

	// A partition created later gets its capture at once (schema 13): context trigger and
	// REPLICA IDENTITY FULL, so a write straight into it carries who made it.
	testdb.Exec(t, f.db, `CREATE TABLE orders_ap PARTITION OF orders FOR VALUES IN ('ap')`)
	var problems string
	if err := f.db.QueryRow(context.Background(), `SELECT COALESCE(string_agg(table_name || ': ' || problem, '; ' ORDER BY problem), '') FROM audit.capture_problems()`).Scan(&problems); err != nil || problems != "" {
		t.Errorf("capture problems after a new partition: %q (%v), want none", problems, err)
	}
	testdb.Exec(t, f.db, `BEGIN; SELECT set_config('pgtrail.actor_id', 'dave', true); INSERT INTO orders_ap VALUES (3, 'ap', 30); COMMIT`)
	waitChained(t, f.db, "public.orders", 4)
	var last string
	if err := f.db.QueryRow(context.Background(), `SELECT action_type || ':' || actor_id || ':' || COALESCE(details->>'capture_warning', 'ok')
		FROM audit.events WHERE resource_type = 'public.orders' ORDER BY seq DESC LIMIT 1`).Scan(&last); err != nil || last != "CREATE:dave:ok" {
		t.Errorf("a write straight into the new partition: %q (%v), want CREATE:dave:ok", last, err)
	}
}

// TestStream_BackfillCompletesInterruptedBatch: a crash left the archive with a batch of 90
// entries half written (its data file, no digest), and those entries reach the stream only from
// audit.events (sealed before its slot existed). Tried: resuming with BatchEvents 20, smaller
// than the interrupted batch; the backfill cut it at 20 entries, the writer refused that batch (a
// retry must rewrite exactly the interrupted one) and the stream retried it forever, archiving
// nothing more. Must survive: the interrupted batch completed as it was begun, everything after
// it archived, the archive equal to the database.
func TestStream_BackfillCompletesInterruptedBatch(t *testing.T) {
	ctx := context.Background()
	f := setup(t, fileSink(t))
	write(t, f.db, 0, 60, 2)
	testdb.Seal(t, f.db)
	events := dbEvents(t, f.db)
	if err := (&archive.Writer{Sink: f.sink}).WriteBatch(ctx, events[:10]); err != nil {
		t.Fatal(err)
	}
	crashing := &archive.Writer{Sink: &archivetest.FlakySink{Sink: f.sink, N: 1}}
	if _, err := crashing.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := crashing.WriteBatch(ctx, events[10:100]); err == nil {
		t.Fatal("the batch was written whole: no crash to recover from")
	}
	if st, err := (&archive.Writer{Sink: f.sink}).Resume(ctx); err != nil || st.LastSeq != 10 || st.PartialBatchLast != 100 {
		t.Fatalf("archive after the crash: %+v, %v; want complete through 10, batch 11-100 interrupted", st, err)
	}

	cfg := f.config(t)
	cfg.BatchEvents = 20
	f.start(t, cfg)
	waitArchived(t, f, 30*time.Second)
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	sameEvents(t, archivetest.Events(t, f.sink), dbEvents(t, f.db))
	if st, err := (&archive.Writer{Sink: f.sink}).Resume(ctx); err != nil || st.PartialBatchLast != 0 {
		t.Fatalf("archive after the stream: %+v, %v; want no batch left interrupted", st, err)
	}
}

// TestStream_TriggerModeWitness: in mode trigger the WAL witnesses the capture triggers. Tried,
// as a superuser: each way to change an audited row with its capture off, with the event
// triggers that would record turning it off (version 10) disabled first; and deleting a
// captured entry from audit.pending before the sealer got to it. Must survive: each is a
// CAPTURE_GAP entry naming the table that verify reports (exit 1); pgtrail's own work and
// every ordinary change (several rows per statement, an update of an excluded column only, a
// row moved between partitions, TRUNCATE, a switch to mode wal inside a transaction) raise none.
func TestStream_TriggerModeWitness(t *testing.T) {
	ctx := context.Background()
	f := setup(t, fileSink(t))
	f.noSealer = true // the sealer runs when a case says so: a deleted entry must still be pending
	testdb.Exec(t, f.db, `CREATE TABLE users (id int PRIMARY KEY, email text, secret text);
		SELECT audit.enable('users', '{secret}', NULL, 'trigger');
		CREATE TABLE orders (id int, region text, total int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('eu');
		CREATE TABLE orders_us PARTITION OF orders FOR VALUES IN ('us');
		SELECT audit.enable('orders', '{}', NULL, 'trigger');
		CREATE TABLE switched (id int PRIMARY KEY, v int);
		SELECT audit.enable('switched', '{}', NULL, 'trigger');
		INSERT INTO users VALUES (1, 'a@example.com', 's'), (2, 'b@example.com', 's');
		INSERT INTO orders VALUES (1, 'eu', 10), (2, 'us', 20)`)
	cfg := f.config(t)
	cfg.WitnessAge = 300 * time.Millisecond
	f.start(t, cfg)
	gaps := func() (n int) {
		t.Helper()
		testdb.Seal(t, f.db)
		if err := f.db.QueryRow(ctx, `SELECT count(*) FROM audit.events WHERE action_type = 'CAPTURE_GAP'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Let the stream catch up with what was just done, then make sure nothing was flagged.
	settle := func() {
		t.Helper()
		waitArchived(t, f, 30*time.Second)
		time.Sleep(4 * cfg.WitnessAge) // a deleted entry is looked for after WitnessAge
		waitArchived(t, f, 30*time.Second)
	}
	ordinary := `BEGIN; SELECT set_config('pgtrail.actor_id', 'alice', true);
		INSERT INTO users VALUES (3, 'c@example.com', 's'), (4, 'd@example.com', 's');
		UPDATE users SET email = email || '.org';
		UPDATE users SET secret = 't' WHERE id = 1;
		UPDATE orders SET region = 'us' WHERE id = 1;
		DELETE FROM users WHERE id = 4;
		SELECT audit.log_event('LOGIN', 'session', 'alice');
		COMMIT;
		BEGIN; UPDATE switched SET v = 1; SELECT audit.enable('switched', '{}', NULL, 'wal'); INSERT INTO switched VALUES (1, 2); COMMIT;
		SELECT audit.enable('switched', '{}', NULL, 'trigger');
		TRUNCATE orders`
	waitArchived(t, f, 30*time.Second) // the stream has made its slot
	testdb.Exec(t, f.db, ordinary)
	settle()
	if n := gaps(); n != 0 {
		t.Fatalf("ordinary changes with capture on raised %d CAPTURE_GAP entries, want 0", n)
	}
	off := `ALTER EVENT TRIGGER pgtrail_capture_check DISABLE; ALTER EVENT TRIGGER pgtrail_capture_drop DISABLE; ALTER EVENT TRIGGER pgtrail_ddl DISABLE;`
	on := `ALTER EVENT TRIGGER pgtrail_capture_check ENABLE ALWAYS; ALTER EVENT TRIGGER pgtrail_capture_drop ENABLE ALWAYS; ALTER EVENT TRIGGER pgtrail_ddl ENABLE ALWAYS;`
	cases := []struct {
		name, sql, table string
	}{
		{"TriggersDisabled", off + `ALTER TABLE users DISABLE TRIGGER ALL; UPDATE users SET email = 'mallory@example.com' WHERE id = 1;
			ALTER TABLE users ENABLE TRIGGER ALL; ALTER TABLE users ENABLE ALWAYS TRIGGER pgtrail_capture;
			ALTER TABLE users ENABLE ALWAYS TRIGGER pgtrail_capture_truncate;` + on, "public.users"},
		{"OneOfTwoUncaptured", off + `BEGIN; UPDATE users SET email = 'x' WHERE id = 2; ALTER TABLE users DISABLE TRIGGER pgtrail_capture;
			UPDATE users SET email = 'y' WHERE id = 3; ALTER TABLE users ENABLE ALWAYS TRIGGER pgtrail_capture; COMMIT;` + on, "public.users"},
		{"InsertUncaptured", off + `ALTER TABLE users DISABLE TRIGGER pgtrail_capture; INSERT INTO users VALUES (9, 'z', 's');
			ALTER TABLE users ENABLE ALWAYS TRIGGER pgtrail_capture;` + on, "public.users"},
		{"PendingEntryDeleted", `UPDATE users SET email = 'w' WHERE id = 2; SET session_replication_role = replica;
			DELETE FROM audit.pending WHERE resource_type = 'public.users'; RESET session_replication_role`, "public.users"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := gaps()
			testdb.Exec(t, f.db, c.sql)
			settle()
			var named bool
			if err := f.db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM audit.events WHERE action_type = 'CAPTURE_GAP' AND resource_type = $1
				AND details ? 'capture_warning')`, c.table).Scan(&named); err != nil {
				t.Fatal(err)
			}
			if after := gaps(); after <= before || !named {
				t.Errorf("%d CAPTURE_GAP entries before, %d after (one naming %s: %v)", before, after, c.table, named)
			}
		})
	}
	rep, err := verify.DB(ctx, f.db)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Intact() {
		t.Error("verify db: intact; want the gaps reported")
	}
}

// TestStream_WitnessHostileInputs: what any role can write into audit.pending, and ordinary
// settings and DDL, against the witness of trigger capture (found by red-teaming schema 12).
// Tried: a capture row forged beside a change to a table in mode wal (it used to make the stream
// leave the change to the sealer, which had only the forged row: the real change was never
// chained); capture rows naming tables in another database or with too many dots (the stream
// looked them up, failed, and restarted forever); a database whose DateStyle is not ISO (every
// change in mode trigger was a false CAPTURE_GAP); renaming a partitioned table in mode trigger
// (false CAPTURE_GAPs under its old name). Must survive: the real change chained, the stream
// running, no CAPTURE_GAP entry.
func TestStream_WitnessHostileInputs(t *testing.T) {
	ctx := context.Background()
	f := walFixture(t)
	testdb.Exec(t, f.db, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET datestyle = %L', current_database(), 'SQL, DMY'); END $$;
		INSERT INTO accounts VALUES (1, 'o', 10);
		CREATE TABLE parts (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu');
		SELECT audit.enable('parts', '{}', NULL, 'trigger')`)
	f.start(t, f.config(t))
	testdb.Exec(t, f.db, `BEGIN; UPDATE accounts SET balance = 999 WHERE id = 1;
		INSERT INTO audit.pending (action_type, resource_type, resource_id, outcome, before_state, after_state)
		VALUES ('UPDATE', 'public.accounts', '1', 'SUCCESS', '{"id": 1, "balance": 10}', '{"id": 1, "balance": 11}'); COMMIT;
		INSERT INTO audit.pending (action_type, resource_type, outcome) VALUES ('CREATE', 'otherdb.public.t', 'SUCCESS'), ('UPDATE', 'a.b.c.d', 'SUCCESS');
		INSERT INTO parts VALUES (1, 'eu');
		ALTER TABLE parts RENAME TO parts_renamed;
		INSERT INTO parts_renamed VALUES (2, 'eu');
		UPDATE accounts SET balance = 1000 WHERE id = 1`)
	waitChained(t, f.db, "public.accounts", 3) // the insert and both updates: the stream goes on
	waitArchived(t, f, 30*time.Second)
	var real, gaps int
	if err := f.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE resource_type = 'public.accounts' AND after_state ->> 'balance' = '999'),
		count(*) FILTER (WHERE action_type = 'CAPTURE_GAP') FROM audit.events`).Scan(&real, &gaps); err != nil {
		t.Fatal(err)
	}
	if real != 1 {
		t.Errorf("the change to balance 999 beside a forged capture row: %d entries, want 1", real)
	}
	if gaps != 0 {
		rows, _ := f.db.Query(ctx, `SELECT details::text FROM audit.events WHERE action_type = 'CAPTURE_GAP'`)
		got, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		t.Errorf("%d CAPTURE_GAP entries, want 0: %v", gaps, got)
	}
}

// TestSealOnce_Interrupted: seal --once is stopped (its context ends: SIGTERM, a timeout) while
// it cannot finish, here because another session holds the chain head. It used to return no
// error, so `pgtrail seal --once` exited 0 with the change not chained. Must survive: an error,
// and the change chained by the next run.
func TestSealOnce_Interrupted(t *testing.T) {
	f := walFixture(t)
	testdb.Exec(t, f.db, `INSERT INTO accounts VALUES (1, 'o', 1)`)
	cfg := f.config(t)
	ctx := context.Background()
	lock, err := f.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `LOCK TABLE audit.chain_head IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := cdc.SealOnce(short, cfg); err == nil {
		t.Error("SealOnce stopped before it could chain anything, and returned no error")
	}
	lock.Rollback(ctx)
	if _, err := cdc.SealOnce(ctx, cfg); err != nil {
		t.Fatalf("SealOnce once the head is free: %v", err)
	}
	waitChained(t, f.db, "public.accounts", 1)
}

// TestStream_AutonomousEvents: audit.log_event_autonomous records an application event even when
// the caller's transaction rolls back (schema 15). Tried, as an application role: a FAILED_LOGIN
// logged in a transaction that then rolls back, a LOGIN logged in the middle of a transaction of
// changes in mode wal; the function's message forged (any session can emit one with its prefix)
// to claim another actor and a reserved type; the function called with a reserved type and with
// pgtrail's own details keys. What must survive: the two genuine events, once each across a
// restart of the stream, in WAL order (the LOGIN before the changes its transaction committed
// after it), with the caller's context, in audit.events and the archive; nothing forged; a chain
// that verifies. Without a slot to read it the function refuses rather than lose the event.
func TestStream_AutonomousEvents(t *testing.T) {
	f := walFixture(t)
	testdb.Exec(t, f.db, `CREATE ROLE auto_app LOGIN; GRANT SELECT, INSERT, UPDATE ON accounts TO auto_app`)
	cfg, err := pgx.ParseConfig(f.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = "auto_app"
	app, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	f.start(t, f.config(t))
	waitSlot(t, f.db)
	ctx := context.Background()
	if _, err := app.Exec(ctx, `BEGIN; SET LOCAL pgtrail.actor_id = 'mallory'; SET LOCAL pgtrail.actor_ip = '198.51.100.9';
		SELECT audit.log_event_autonomous('FAILED_LOGIN', 'user', 'alice', 'FAILURE', '{"reason": "bad password", "tries": null}'); ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, `BEGIN; INSERT INTO accounts VALUES (1, 'alice', 1);
		SELECT audit.log_event_autonomous('LOGIN', 'user', 'alice'); UPDATE accounts SET balance = 2 WHERE id = 1; COMMIT`); err != nil {
		t.Fatal(err)
	}
	forged := `{"event_id": "00000000-0000-4000-8000-000000000001", "occurred_at": "2026-01-01T00:00:00Z", "xid": "1",
		"action_type": "%s", "resource_type": "user", "outcome": "SUCCESS", "db_user": "alice", "actor_id": "alice"}`
	for _, action := range []string{"LOGIN", "TAMPERING"} {
		if _, err := app.Exec(ctx, `SELECT pg_logical_emit_message(false, 'pgtrail.event', $1::text || E'\n' || repeat('0', 64))`,
			fmt.Sprintf(forged, action)); err != nil {
			t.Fatal(err)
		}
	}
	for _, call := range []string{
		`SELECT audit.log_event_autonomous('TAMPERING', 'audit.events', '1', 'FAILURE')`,
		`SELECT audit.log_event_autonomous('UPDATE', 'public.accounts', '1')`,
		`SELECT audit.log_event_autonomous('LOGIN', 'user', 'alice', 'SUCCESS', '{"capture_warning": "cry wolf"}')`,
	} {
		if _, err := app.Exec(ctx, call); err == nil {
			t.Errorf("%s: accepted, want refused", call)
		}
	}
	waitChained(t, f.db, "user", 2)
	waitArchived(t, f, 60*time.Second)
	// Again after a restart: the slot sends nothing twice.
	f.stop()
	if err := f.wait(t); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	f.start(t, f.config(t))
	testdb.Exec(t, f.db, `UPDATE accounts SET balance = 3`)
	waitChained(t, f.db, "public.accounts", 3)
	want := f.drained(t)
	var acts []string
	for _, e := range want {
		switch e.ResourceType {
		case "user":
			acts = append(acts, fmt.Sprintf("%s:%s:%s:%s:%s:%s:%s", e.ActionType, e.Outcome, str(e.ResourceID), e.ActorID, str(e.ActorIP), e.DBUser, str(e.Details)))
		case "public.accounts":
			acts = append(acts, e.ActionType)
		}
	}
	wantActs := []string{`FAILED_LOGIN:FAILURE:alice:mallory:198.51.100.9:auto_app:{"tries": null, "reason": "bad password"}`,
		"LOGIN:SUCCESS:alice:auto_app:<nil>:auto_app:<nil>", "CREATE", "UPDATE", "UPDATE"}
	if strings.Join(acts, " ") != strings.Join(wantActs, " ") {
		t.Errorf("entries:\n got %q\nwant %q", acts, wantActs)
	}
	rep, err := verify.DB(ctx, f.db)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 {
		t.Errorf("verify db: %+v", rep.Problems)
	}

	db, _ := testdb.New(t)
	if _, err := db.Exec(ctx, `SELECT audit.log_event_autonomous('LOGIN', 'user', 'alice')`); err == nil ||
		!strings.Contains(err.Error(), "no logical replication slot") {
		t.Errorf("without a slot: %v, want refused (no logical replication slot)", err)
	}

	// With no table in mode wal, a slot created anew after autonomous events were chained from
	// the WAL may have lost some (emitted while it was gone): a CAPTURE_GAP entry says so.
	g := setup(t, fileSink(t))
	gcfg := g.config(t)
	gcfg.Slot = "pgtrail_autonomous" // slot names are the cluster's: f's database has pgtrail
	g.start(t, gcfg)
	waitSlot(t, g.db)
	testdb.Exec(t, g.db, `SELECT audit.log_event_autonomous('LOGIN', 'user', 'bob')`)
	waitChained(t, g.db, "user", 1)
	g.stop()
	if err := g.wait(t); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := g.db.Exec(ctx, `SELECT pg_drop_replication_slot('pgtrail_autonomous')`); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("drop slot: %v", err)
		}
	}
	g.start(t, gcfg)
	waitChained(t, g.db, "replication slot", 1)
}

// waitSlot waits until a stream has registered its slot (audit.stream_slots): from then on
// audit.log_event_autonomous writes.
func waitSlot(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var ok bool
		if err := db.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM audit.stream_slots)`).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no slot made within 30s")
		}
	}
}

// TestStream_SlotMovedBySuperuser: a superuser drops the slot and creates it again with SQL, or
// advances it, while no stream reads it, and changes a table in mode wal meanwhile: the WAL of
// that change is never read. Found open by the hostile-roles suite (a CAPTURE_GAP entry came only
// when the stream created the slot itself). What must survive: a CAPTURE_GAP entry for each move,
// naming the WAL range, and none for an ordinary restart.
func TestStream_SlotMovedBySuperuser(t *testing.T) {
	f := walFixture(t)
	ctx := context.Background()
	gaps := func() (n int) {
		t.Helper()
		if err := f.db.QueryRow(ctx, `SELECT count(*) FROM audit.events WHERE action_type = 'CAPTURE_GAP' AND resource_type = 'replication slot'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	run := func(write string, entries int) {
		t.Helper()
		f.start(t, f.config(t))
		testdb.Exec(t, f.db, write)
		waitChained(t, f.db, "public.accounts", entries)
		f.drained(t)
	}
	run(`INSERT INTO accounts VALUES (1, 'alice', 1)`, 1)
	run(`UPDATE accounts SET balance = 2`, 2) // an ordinary restart
	if n := gaps(); n != 0 {
		t.Fatalf("%d CAPTURE_GAP entries after ordinary restarts, want 0", n)
	}
	for i, move := range []struct {
		name string
		do   func()
	}{
		{"dropped and created again", func() {
			dropSlot(t, f.db)
			testdb.Exec(t, f.db, `UPDATE accounts SET balance = 1000000`)
			testdb.Exec(t, f.db, `SELECT pg_create_logical_replication_slot('pgtrail', 'pgoutput')`)
		}},
		{"advanced", func() {
			// (Committed synchronously: the test cluster's commits are not, and the slot advances
			// only over WAL written out.)
			testdb.Exec(t, f.db, `BEGIN; SET LOCAL synchronous_commit = on; UPDATE accounts SET balance = 2000000; COMMIT`)
			// Once the walsender that read it (which may outlive the stream's connection for a
			// moment) lets go of it.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				_, err := f.db.Exec(ctx, `SELECT pg_replication_slot_advance('pgtrail', pg_current_wal_lsn())`)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("advance the slot: %v", err)
				}
			}
		}},
	} {
		move.do()
		run(`UPDATE accounts SET owner = 'bob'`, 3+i) // the UPDATE made meanwhile is lost
		if n := gaps(); n != i+1 {
			t.Errorf("slot %s: %d CAPTURE_GAP entries for the slot, want %d", move.name, n, i+1)
		}
	}
	rep, err := verify.DB(ctx, f.db)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 2 {
		t.Errorf("verify db: %+v, want the two gaps", rep.Problems)
	}
}

// TestStream_AutonomousEventAckKeepsCommit: pgoutput gives a non-transactional message the LSN
// where its record ends, which is where the caller's own commit starts. Found by red-teaming: the
// stream confirmed one byte past it, and a stream that stopped after confirming the event but
// before chaining the caller's transaction never got that transaction again. Tried: BEGIN;
// INSERT into a table in mode wal; an autonomous event; COMMIT, with the INSERT's images slow
// to build (a domain whose check sleeps as pgtrail_typer), and the stream stopped meanwhile.
// What must survive: the INSERT, chained by the next run.
func TestStream_AutonomousEventAckKeepsCommit(t *testing.T) {
	f := walFixture(t)
	testdb.Exec(t, f.db, `CREATE TABLE slow_wait (s int); INSERT INTO slow_wait VALUES (6); GRANT SELECT ON slow_wait TO PUBLIC;
		CREATE FUNCTION public.slow_check(v text) RETURNS boolean LANGUAGE plpgsql AS $f$
		BEGIN IF current_user = 'pgtrail_typer' THEN PERFORM pg_sleep((SELECT s FROM public.slow_wait)); END IF; RETURN true; END $f$;
		CREATE DOMAIN slow_text AS text CHECK (public.slow_check(VALUE));
		CREATE TABLE slow (id int PRIMARY KEY, v slow_text);
		SELECT audit.enable('slow', '{}', NULL, 'wal')`)
	cfg := f.config(t)
	cfg.BatchEvents, cfg.ImagesTimeout = 1, time.Minute
	f.start(t, cfg)
	waitSlot(t, f.db)
	testdb.Exec(t, f.db, `BEGIN; INSERT INTO slow VALUES (1, 'kept'); SELECT audit.log_event_autonomous('LOGIN', 'user', 'alice'); COMMIT`)
	waitChained(t, f.db, "user", 1)
	time.Sleep(2 * time.Second) // the event confirmed; the INSERT's images still being built
	f.stop()
	f.wait(t)
	testdb.Exec(t, f.db, `UPDATE slow_wait SET s = 0`)
	f.start(t, cfg)
	waitChained(t, f.db, "public.slow", 1)
}

// TestStream_WALUnconstrainedChar: a column of type character or bit without a length. Found by
// red-teaming: audit.row_images cast its texts to format_type(type, NULL), "character", which is
// char(1): "hello" was kept as "h", and a change to the column left no trace. What must survive:
// the whole value, and the change, whichever path builds the images (Go for a table of common
// types, the query with a jsonb column beside it), as trigger capture has them.
func TestStream_WALUnconstrainedChar(t *testing.T) {
	f := walFixture(t)
	ctx := context.Background()
	testdb.Exec(t, f.db, `CREATE TABLE bp_go (id int PRIMARY KEY, c bpchar);
		CREATE TABLE bp_sql (id int PRIMARY KEY, c bpchar, j jsonb, b bit varying);
		SELECT audit.enable('bp_go', '{}', NULL, 'wal'), audit.enable('bp_sql', '{}', NULL, 'wal')`)
	f.start(t, f.config(t))
	testdb.Exec(t, f.db, `INSERT INTO bp_go VALUES (1, 'hello'); INSERT INTO bp_sql VALUES (1, 'hello', '{}', B'101');
		UPDATE bp_go SET c = 'help!'; UPDATE bp_sql SET c = 'help!'`)
	for _, tb := range []string{"public.bp_go", "public.bp_sql"} {
		waitChained(t, f.db, tb, 2)
	}
	rows, err := f.db.Query(ctx, `SELECT resource_type, after_state->>'c', changed_columns::text FROM audit.events
		WHERE resource_type LIKE 'public.bp_%' AND action_type = 'UPDATE' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var rt, c, changed string
		if err := rows.Scan(&rt, &c, &changed); err != nil {
			t.Fatal(err)
		}
		n++
		if c != "help!" || changed != "{c}" {
			t.Errorf("%s: after_state c = %q, changed %s; want help! and {c}", rt, c, changed)
		}
	}
	if n != 2 {
		t.Errorf("%d UPDATE entries, want 2", n)
	}
}

// TestStream_AutonomousUnreadable: an autonomous event the function wrote must never vanish. A
// message whose MAC checks but whose content the stream cannot read (here made with the key, as
// only a superuser could) is a CAPTURE_GAP entry; details nested deeper than any reader takes are
// refused by the function (found by red-teaming: 10,001 levels returned an event_id and the
// stream dropped the event as damaged).
func TestStream_AutonomousUnreadable(t *testing.T) {
	f := walFixture(t)
	f.start(t, f.config(t))
	waitSlot(t, f.db)
	testdb.Exec(t, f.db, `CREATE FUNCTION deep(n int) RETURNS jsonb LANGUAGE plpgsql AS $f$
		DECLARE j jsonb := '1'; BEGIN FOR i IN 1..n LOOP j := jsonb_build_array(j); END LOOP; RETURN jsonb_build_object('k', j); END $f$`)
	if _, err := f.db.Exec(context.Background(), `SELECT audit.log_event_autonomous('DEEP', 'depth', 'x', 'SUCCESS', deep(10001))`); err == nil ||
		!strings.Contains(err.Error(), "deeper than 256") {
		t.Errorf("details 10,001 deep: %v, want refused", err)
	}
	testdb.Exec(t, f.db, `SELECT audit.log_event_autonomous('DEEP', 'depth', 'ok', 'SUCCESS', deep(200))`)
	testdb.Exec(t, f.db, `SELECT pg_logical_emit_message(false, 'pgtrail.event', v || E'\n' || encode(sha256(k.key || sha256(k.key || convert_to(v, 'UTF8'))), 'hex'))
		FROM audit.context_key k, (SELECT '{"event_id": "not a uuid", "action_type": "LOGIN"}'::text AS v) m`)
	waitChained(t, f.db, "depth", 1)
	waitChained(t, f.db, "autonomous event", 1)
}

// TestStream_AppEventsThroughWAL: where a stream reads the WAL, audit.log_event writes an
// application event (and the event trigger a DDL event) as a transactional logical message, not
// a row of audit.pending (schema 16), and the stream chains it with its transaction's changes,
// in its place among them. Tried: an
// event in a transaction that rolls back, a forged message and a signed message replayed into
// another transaction, details too deep for a message reader. What must survive: the committed
// event, in order, with its transaction's id and its caller's context; nothing of the rolled
// back, forged or replayed ones; the deep one through audit.pending.
func TestStream_AppEventsThroughWAL(t *testing.T) {
	f := walFixture(t)
	f.noSealer = true // an event left in audit.pending is never chained: the test would see it
	testdb.Exec(t, f.db, `CREATE ROLE wal_app LOGIN; GRANT SELECT, INSERT, UPDATE ON accounts TO wal_app`)
	cfg, err := pgx.ParseConfig(f.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = "wal_app"
	ctx := context.Background()
	app, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	f.start(t, f.config(t))
	waitSlot(t, f.db)

	var id string
	if err := app.QueryRow(ctx, `SELECT set_config('pgtrail.actor_id', 'carol', false)`).Scan(new(string)); err != nil {
		t.Fatal(err)
	}
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`INSERT INTO accounts VALUES (1, 'alice', 1)`,
		`SELECT audit.log_event('VIEW_PII', 'user', 'alice', 'SUCCESS', '{"field": "ssn"}')::text`,
		`UPDATE accounts SET balance = 2 WHERE id = 1`,
		`SELECT audit.log_event('LOGOUT', 'user', 'alice')::text`} {
		if strings.Contains(q, "VIEW_PII") {
			err = tx.QueryRow(ctx, q).Scan(&id)
		} else {
			_, err = tx.Exec(ctx, q)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, `BEGIN; SELECT audit.log_event('LOGIN', 'user', 'rolled-back'); ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	forged := `{"event_id": "00000000-0000-4000-8000-000000000002", "occurred_at": "2026-01-01T00:00:00Z", "xid": "1",
		"action_type": "LOGIN", "resource_type": "user", "resource_id": "forged", "outcome": "SUCCESS", "db_user": "alice"}`
	if _, err := app.Exec(ctx, `SELECT pg_logical_emit_message(true, 'pgtrail.event', $1::text || E'\n' || repeat('0', 64))`, forged); err != nil {
		t.Fatal(err)
	}
	// A signed message of one transaction (the superuser can make one), emitted in another.
	var signed string
	if err := f.db.QueryRow(ctx, `SELECT audit.event_message(gen_random_uuid(), 'LOGIN', 'user', 'replayed', 'SUCCESS', NULL, false)`).Scan(&signed); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Exec(ctx, `SELECT pg_logical_emit_message(true, 'pgtrail.event', $1::text)`, signed); err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat(`{"a": `, 300) + "1" + strings.Repeat("}", 300)
	if _, err := app.Exec(ctx, `SELECT audit.log_event('DEEP', 'user', 'deep', 'SUCCESS', $1::jsonb)`, deep); err != nil {
		t.Fatal(err)
	}
	// A DDL event goes through the WAL too, in its place before the change that follows it.
	testdb.Exec(t, f.db, `ALTER TABLE accounts ADD COLUMN note text; UPDATE accounts SET balance = 3`)
	waitChained(t, f.db, "public.accounts", 3)
	var pending []string
	if err := f.db.QueryRow(ctx, `SELECT COALESCE(array_agg(action_type || ' ' || resource_type || ' ' || COALESCE(resource_id, '-') ORDER BY id), '{}') FROM audit.pending
		WHERE resource_type = 'user' OR details->>'query' LIKE '%ADD COLUMN note%'`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if strings.Join(pending, ",") != "DEEP user deep" {
		t.Errorf("audit.pending holds %q, want only the deep event's row", pending)
	}
	testdb.Seal(t, f.db)
	got := f.drained(t)
	var acts []string
	var txids []uint64
	for _, e := range got {
		switch e.ResourceType {
		case "user":
			acts = append(acts, fmt.Sprintf("%s:%s:%s:%s:%s", e.ActionType, str(e.ResourceID), e.ActorID, e.DBUser, str(e.Details)))
			if e.ActionType == "VIEW_PII" && e.EventID != id {
				t.Errorf("VIEW_PII event_id %s, log_event returned %s", e.EventID, id)
			}
		case "public.accounts":
			acts = append(acts, e.ActionType)
		case "table":
			if strings.Contains(str(e.Details), "ADD COLUMN note") {
				acts = append(acts, e.ActionType+":"+str(e.ResourceID))
			}
		}
		if e.ResourceType == "public.accounts" && len(txids) < 3 || e.ActionType == "VIEW_PII" || e.ActionType == "LOGOUT" {
			txids = append(txids, e.TxID)
		}
	}
	want := []string{"CREATE", `VIEW_PII:alice:carol:wal_app:{"field": "ssn"}`, "UPDATE", "LOGOUT:alice:carol:wal_app:<nil>",
		"DDL:public.accounts", "UPDATE", "DEEP:deep:carol:wal_app:" + deep}
	if strings.Join(acts, " ") != strings.Join(want, " ") {
		t.Errorf("entries:\n got %.300q\nwant %.300q", acts, want)
	}
	if len(txids) < 4 || txids[0] != txids[1] || txids[1] != txids[2] || txids[2] != txids[3] {
		t.Errorf("txids of CREATE, VIEW_PII, UPDATE, LOGOUT: %v, want one transaction's", txids)
	}
	rep, err := verify.DB(ctx, f.db)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 {
		t.Errorf("verify db: %+v", rep.Problems)
	}
}
