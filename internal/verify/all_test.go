package verify_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/cdc"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// both is a trail in a database and its archive.
type both struct {
	db   *pgxpool.Pool
	url  string
	sink archive.Sink
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

// newBoth seals n entries of two tenants and archives the first archived of them from the
// database, in batches of 10, with the archive package's writer as the stream daemon does.
func newBoth(t *testing.T, n, archived int) *both {
	t.Helper()
	db, url := testdb.New(t)
	if n > 0 {
		testdb.Exec(t, db, fmt.Sprintf(`SELECT set_config('pgtrail.tenant_id', (ARRAY['acme', 'globex'])[g %% 2 + 1], false),
			audit.log_event('LOGIN', 'session', g::text) FROM generate_series(1, %d) g`, n))
	}
	testdb.Seal(t, db)
	sink, err := archive.Open(context.Background(), "file://"+t.TempDir(), archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := archive.Mark(context.Background(), sink); err != nil { // as the stream does at its start
		t.Fatal(err)
	}
	pub, priv := archive.GenerateKey()
	b := &both{db: db, url: url, sink: sink, pub: pub, priv: priv}
	var events []pgtrail.Event
	err = chain.Read(context.Background(), db, 1, int64(archived), func(e *pgtrail.Event) error {
		events = append(events, *e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &archive.Writer{Sink: sink, Key: priv}
	for len(events) > 0 {
		k := min(10, len(events))
		if err := w.WriteBatch(context.Background(), events[:k]); err != nil {
			t.Fatal(err)
		}
		events = events[k:]
	}
	return b
}

// tamper runs sql as a superuser with the guard triggers off.
func (b *both) tamper(t *testing.T, sql string) {
	t.Helper()
	testdb.Exec(t, b.db, `BEGIN; SET LOCAL session_replication_role = replica; `+sql+`; COMMIT`)
}

// rechainSQL recomputes prev_hash and entry_hash of every entry from seq on, and moves the chain
// head to the end: what a superuser does to hide a change from the database's own chain.
func rechainSQL(from int) string {
	return fmt.Sprintf(`DO $$ DECLARE h bytea; r record; BEGIN
		SELECT entry_hash INTO h FROM audit.events WHERE seq = %d;
		h := COALESCE(h, decode(repeat('00', 32), 'hex'));
		FOR r IN SELECT seq FROM audit.events WHERE seq >= %d ORDER BY seq LOOP
			UPDATE audit.events e SET prev_hash = h WHERE e.seq = r.seq;
			UPDATE audit.events e SET entry_hash = sha256(e.prev_hash || audit.canonical(e)) WHERE e.seq = r.seq
			RETURNING e.entry_hash INTO h;
		END LOOP;
		UPDATE audit.chain_head SET seq = (SELECT max(seq) FROM audit.events), entry_hash = h;
	END $$`, from-1, from)
}

func TestAll_Clean(t *testing.T) {
	for _, n := range []int{0, 1, 45} {
		t.Run(fmt.Sprintf("Entries%d", n), func(t *testing.T) {
			b := newBoth(t, n, n)
			rep, err := verify.All(context.Background(), b.db, b.sink, b.pub)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Intact() || rep.Entries != int64(n) || rep.CrossChecked != int64(n) || rep.Archive.Entries != int64(n) {
				t.Fatalf("clean trail and archive of %d entries: %+v%s", n, rep, describe(rep.Problems))
			}
			if n > 0 && (rep.Checkpoint == nil || rep.Checkpoint.Scope != "all" || rep.Checkpoint.Seq != int64(n)) {
				t.Errorf("checkpoint = %+v", rep.Checkpoint)
			}
		})
	}
}

// TestAll_StreamingLag archives 30 of 50 entries: the 20 others are in flight while younger than
// the lag, and missing from the archive once older.
func TestAll_StreamingLag(t *testing.T) {
	b := newBoth(t, 50, 30)
	rep, err := verify.All(context.Background(), b.db, b.sink, b.pub)
	if err != nil || !rep.Intact() {
		t.Fatalf("entries younger than the lag: %v %+v%s", err, rep, describe(rep.Problems))
	}
	rep, err = (&verify.Verifier{ArchiveLag: time.Nanosecond}).All(context.Background(), b.db, b.sink, b.pub)
	if err != nil {
		t.Fatal(err)
	}
	checkFound(t, rep, want{verify.MissingFromArchive, 31, ""})
	if len(rep.Problems) != 1 {
		t.Errorf("want one problem for the run of 20 entries: %s", describe(rep.Problems))
	}
}

// TestAll_Tampering rewrites the database after its 40 entries were archived, each time
// recomputing the chain after the change and moving the chain head, so that the database's own
// check finds nothing. The cross-check against the archive must name each change.
func TestAll_Tampering(t *testing.T) {
	cases := []struct {
		name string
		sql  string
		want want
	}{
		// Tried: a forged entry inserted at seq 20, later entries renumbered.
		{"ForgedInsert", `UPDATE audit.events SET seq = -seq WHERE seq >= 20;
			UPDATE audit.events SET seq = -seq + 1 WHERE seq < 0;
			INSERT INTO audit.events SELECT (jsonb_populate_record(e, jsonb_build_object('seq', 20,
				'event_id', gen_random_uuid(), 'actor_id', 'mallory'))).* FROM audit.events e WHERE seq = 21;
			` + rechainSQL(20), want{verify.Inserted, 20, ""}},
		// Tried: entry 20 deleted, later entries renumbered.
		{"Deleted", `DELETE FROM audit.events WHERE seq = 20;
			UPDATE audit.events SET seq = -seq WHERE seq > 20;
			UPDATE audit.events SET seq = -seq - 1 WHERE seq < 0;
			` + rechainSQL(20), want{verify.Deleted, 20, ""}},
		// Tried: entries 20 and 21 swapped.
		{"Reordered", `UPDATE audit.events SET seq = CASE seq WHEN 20 THEN 21 ELSE 20 END WHERE seq IN (20, 21);
			` + rechainSQL(20), want{verify.Reordered, 20, ""}},
		// Tried: entry 20 edited.
		{"Modified", `UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 20; ` + rechainSQL(20), want{verify.Modified, 20, ""}},
		// Tried: entry 20 replaced by another (new event_id).
		{"Replaced", `UPDATE audit.events SET event_id = gen_random_uuid() WHERE seq = 20; ` + rechainSQL(20), want{verify.Modified, 20, ""}},
		// Tried: the tail after seq 30 deleted, the chain head moved back.
		{"TailTruncated", `DELETE FROM audit.events WHERE seq > 30;
			UPDATE audit.chain_head SET seq = 30, entry_hash = (SELECT entry_hash FROM audit.events WHERE seq = 30)`,
			want{verify.MissingFromDatabase, 31, ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBoth(t, 40, 40)
			b.tamper(t, c.sql)
			if rep, err := verify.DB(context.Background(), b.db); err != nil || !rep.Intact() {
				t.Fatalf("the database check alone should not see this (the point of the cross-check): %v%s", err, describe(rep.Problems))
			}
			rep, err := verify.All(context.Background(), b.db, b.sink, b.pub)
			if err != nil {
				t.Fatal(err)
			}
			checkFound(t, rep, c.want)
			for _, p := range rep.Problems {
				if p.Source != verify.SourceCross {
					t.Errorf("problem outside the cross-check: %+v", p)
				}
			}
		})
	}
}

// TestAll_StreamedToS3 archives with the stream daemon itself (logical replication into an S3
// bucket with Object Lock) and verifies all: intact; then a forged entry inserted in the
// database with the chain recomputed after it must be found by the cross-check.
func TestAll_StreamedToS3(t *testing.T) {
	ctx := context.Background()
	srv := testenv.S3(t)
	bucket := testenv.S3Bucket(t, srv)
	db, url := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE accounts (id int PRIMARY KEY, balance int); SELECT audit.enable('accounts')`)
	testdb.Exec(t, db, `INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 60) g; UPDATE accounts SET balance = 1 WHERE id % 3 = 0`)
	testdb.Seal(t, db)
	sink, err := archive.Open(ctx, "s3://"+bucket+"/trail", archive.Options{Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Retention: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv := archive.GenerateKey()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	slot := fmt.Sprintf("verify_%d", rand.Uint32())
	stream, err := cdc.New(cdc.Config{ConnConfig: cfg, Slot: slot, BatchEvents: 25,
		BatchAge: 50 * time.Millisecond, ExitWhenCaughtUp: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		&archive.Writer{Sink: sink, Key: priv})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := stream.Run(runCtx); err != nil {
		t.Fatalf("stream: %v", err)
	}
	t.Cleanup(func() { db.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot) })

	rep, err := verify.All(ctx, db, sink, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact() || rep.CrossChecked < 81 || rep.Archive.Files < 2 {
		t.Fatalf("streamed archive: %+v%s", rep, describe(rep.Problems))
	}

	b := &both{db: db}
	b.tamper(t, `UPDATE audit.events SET seq = -seq WHERE seq >= 30;
		UPDATE audit.events SET seq = -seq + 1 WHERE seq < 0;
		INSERT INTO audit.events SELECT (jsonb_populate_record(e, jsonb_build_object('seq', 30,
			'event_id', gen_random_uuid(), 'actor_id', 'mallory'))).* FROM audit.events e WHERE seq = 31;
		`+rechainSQL(30))
	rep, err = verify.All(ctx, db, sink, pub)
	if err != nil {
		t.Fatal(err)
	}
	checkFound(t, rep, want{verify.Inserted, 30, ""})
}

// TestVerifier_Pruned removes the first 15 of 40 entries from the database, as retention pruning
// does once they are archived: told where the chain now starts, DB and All find both intact; not
// told, they report the entries missing; and the first remaining entry must still link to the
// pruned prefix.
func TestVerifier_Pruned(t *testing.T) {
	ctx := context.Background()
	b := newBoth(t, 40, 40)
	var hash []byte
	if err := b.db.QueryRow(ctx, `SELECT entry_hash FROM audit.events WHERE seq = 15`).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	b.tamper(t, `DELETE FROM audit.events WHERE seq <= 15`)
	v := &verify.Verifier{Pruned: &verify.PrunedPrefix{Seq: 15, EntryHash: hash}}
	rep, err := v.DB(ctx, b.db)
	if err != nil || !rep.Intact() || rep.Entries != 25 || rep.FirstSeq != 16 {
		t.Fatalf("pruned database: %v %+v%s", err, rep, describe(rep.Problems))
	}
	all, err := v.All(ctx, b.db, b.sink, b.pub)
	if err != nil || !all.Intact() || all.CrossChecked != 25 || all.Archive.Entries != 40 {
		t.Fatalf("pruned database against the full archive: %v %+v%s", err, all, describe(all.Problems))
	}
	unaware, err := verify.All(ctx, b.db, b.sink, b.pub)
	if err != nil {
		t.Fatal(err)
	}
	checkFound(t, unaware, want{verify.Deleted, 1, ""})

	// Tried: the first entry after the prune relinked to another hash. Detected: relinked.
	b.tamper(t, `UPDATE audit.events SET prev_hash = sha256('x') WHERE seq = 16;
		UPDATE audit.events e SET entry_hash = sha256(e.prev_hash || audit.canonical(e)) WHERE seq = 16`)
	rep, err = v.DB(ctx, b.db)
	if err != nil {
		t.Fatal(err)
	}
	checkFound(t, rep, want{verify.Relinked, 16, ""})
}
