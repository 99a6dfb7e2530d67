package verify_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/internal/pace"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/verify"
	"github.com/pgtrail/pgtrail/internal/verify/verifytest"
)

// trail returns a database whose chain holds n entries (n >= 0).
func trail(t *testing.T, n int) *pgxpool.Pool {
	t.Helper()
	db, _ := testdb.New(t)
	if n > 0 {
		testdb.Exec(t, db, fmt.Sprintf(`SELECT audit.log_event('LOGIN', 'session', g::text) FROM generate_series(1, %d) g`, n))
	}
	if got := testdb.Seal(t, db); got != int64(n) {
		t.Fatalf("sealed %d entries, want %d", got, n)
	}
	return db
}

func TestDB_Clean(t *testing.T) {
	for _, n := range []int{0, 1, 500} {
		t.Run(fmt.Sprintf("Entries%d", n), func(t *testing.T) {
			rep, err := verify.DB(context.Background(), trail(t, n))
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Intact() || rep.Entries != int64(n) || rep.HeadSeq != int64(n) {
				t.Fatalf("clean trail of %d entries: %+v", n, rep)
			}
		})
	}
}

// TestDB_Tampering plays a superuser who bypasses the guard triggers
// (session_replication_role = replica) and rewrites the trail; each change must be reported
// with the right seq and kind.
func TestDB_Tampering(t *testing.T) {
	cases := []struct {
		name   string
		tamper string
		seq    int64
		kind   verify.Kind
	}{
		{"ModifiedField", `UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 5`, 5, verify.Modified},
		{"ModifiedJSON", `UPDATE audit.events SET details = '{"x": 1}' WHERE seq = 7`, 7, verify.Modified},
		{"ModifiedTimestamp", `UPDATE audit.events SET occurred_at = occurred_at + interval '1 microsecond' WHERE seq = 2`, 2, verify.Modified},
		{"DeletedRow", `DELETE FROM audit.events WHERE seq = 5`, 5, verify.Deleted},
		{"DeletedTail", `DELETE FROM audit.events WHERE seq >= 9`, 9, verify.Deleted},
		{"DeletedFirst", `DELETE FROM audit.events WHERE seq = 1`, 1, verify.Deleted},
		{"InsertedDuplicate", `INSERT INTO audit.events SELECT (jsonb_populate_record(e, jsonb_build_object(
			'event_id', gen_random_uuid(), 'occurred_at', e.occurred_at + interval '1 microsecond', 'actor_id', 'mallory'))).*
			FROM audit.events e WHERE seq = 4`, 4, verify.Inserted},
		{"InsertedBeyondHead", `INSERT INTO audit.events SELECT e.seq + 1, gen_random_uuid(), e.occurred_at, e.txid, 'LOGIN',
			'session', 'forged', 'SUCCESS', 'mallory', NULL, NULL, NULL, NULL, NULL, 'postgres', NULL, NULL, '{}', NULL, NULL, NULL,
			e.entry_hash, e.entry_hash FROM audit.events e WHERE seq = 10;
			UPDATE audit.events e SET entry_hash = sha256(e.prev_hash || audit.canonical(e)) WHERE seq = 11`, 11, verify.Inserted},
		{"Reordered", `UPDATE audit.events SET seq = CASE seq WHEN 3 THEN 4 ELSE 3 END WHERE seq IN (3, 4)`, 3, verify.Reordered},
		{"RehashedAfterEdit", `UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 6;
			UPDATE audit.events e SET entry_hash = sha256(e.prev_hash || audit.canonical(e)) WHERE seq = 6`, 7, verify.Relinked},
		{"ChainHeadRewritten", `UPDATE audit.chain_head SET entry_hash = sha256('x')`, 10, verify.Modified},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := trail(t, 10)
			testdb.Exec(t, db, `BEGIN; SET LOCAL session_replication_role = replica; `+c.tamper+`; COMMIT`)
			rep, err := verify.DB(context.Background(), db)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Intact() {
				t.Fatalf("%s went undetected", c.tamper)
			}
			first := rep.Problems[0]
			if first.Seq != c.seq || first.Kind != c.kind {
				t.Errorf("first problem = seq %d %s (%s), want seq %d %s; all: %+v", first.Seq, first.Kind, first.Detail, c.seq, c.kind, rep.Problems)
			}
		})
	}
}

// TestDB_PartitionDropped drops the monthly partition that holds entries 4 to 6 (their capture
// time moved a month back before sealing, so the chain over them is valid): the gap must be
// reported as deleted at seq 4.
func TestDB_PartitionDropped(t *testing.T) {
	db, _ := testdb.New(t)
	testdb.Exec(t, db, `SELECT audit.log_event('LOGIN', 'session', g::text) FROM generate_series(1, 10) g`)
	testdb.Exec(t, db, `BEGIN; SET LOCAL session_replication_role = replica;
		UPDATE audit.pending SET occurred_at = occurred_at - interval '1 month' WHERE resource_id IN ('4', '5', '6'); COMMIT`)
	testdb.Seal(t, db)
	testdb.Exec(t, db, `DO $$ BEGIN
		EXECUTE format('DROP TABLE audit.%I', 'events_' || to_char(now() AT TIME ZONE 'UTC' - interval '1 month', 'YYYY_MM'));
	END $$`)
	rep, err := verify.DB(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Intact() || rep.Problems[0].Seq != 4 || rep.Problems[0].Kind != verify.Deleted {
		t.Fatalf("dropped partition: %+v", rep.Problems)
	}
}

// TestDB_AwkwardValues verifies entries holding the values the canonical encoding finds awkward
// (NULLs, quotes in column names, inet forms, tabs, multi-byte text), whose hashes PostgreSQL
// computed: the COPY decoder must read them exactly as audit.canonical does.
func TestDB_AwkwardValues(t *testing.T) {
	db, _ := testdb.New(t)
	testdb.Exec(t, db, `CREATE TABLE "odd ""table""" (id text PRIMARY KEY, "a,b" text, "NULL" text, "{x}" int, " " int, "päß" jsonb, pw text);
		SELECT audit.enable('"odd ""table"""', '{pw}')`)
	for _, s := range []string{
		`INSERT INTO "odd ""table""" VALUES ('k1', 'x', NULL, 1, 2, '{"z": [1, 2.50], "a": "é"}', 'secret')`,
		`SET pgtrail.actor_ip = '::ffff:10.0.0.1'; SET pgtrail.user_agent = E'tab\there'; SET pgtrail.tenant_id = '';
		 UPDATE "odd ""table""" SET "a,b" = 'y', "NULL" = 'n', pw = 'other'; RESET ALL`,
		`SET pgtrail.actor_ip = '10.0.0.0/8'; DELETE FROM "odd ""table"""; RESET ALL`,
		`SET pgtrail.actor_ip = 'not an address'; SELECT audit.log_event('EXPORT', 'report', E'multi\nline', 'UNAUTHORIZED', '{"rows": 1e3}'); RESET ALL`,
	} {
		testdb.Exec(t, db, s)
	}
	testdb.Seal(t, db)
	rep, err := verify.DB(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact() || rep.Entries < 6 {
		t.Fatalf("awkward but untouched entries: %+v", rep)
	}
}

// TestVerifier_DBSince runs incrementally from a checkpoint at seq 10 after 5 more entries: only
// those are walked, the result agrees with a full run, and the checkpointed entry itself must be
// unchanged.
func TestVerifier_DBSince(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*pgxpool.Pool, *verify.Checkpoint) {
		db := trail(t, 10)
		rep, err := verify.DB(ctx, db)
		if err != nil || !rep.Intact() || rep.Checkpoint == nil || rep.Checkpoint.Seq != 10 {
			t.Fatalf("full run: %v %+v", err, rep)
		}
		testdb.Exec(t, db, `SELECT audit.log_event('LOGIN', 'session', g::text) FROM generate_series(11, 15) g`)
		testdb.Seal(t, db)
		return db, rep.Checkpoint
	}
	t.Run("AgreesWithFullRun", func(t *testing.T) {
		db, cp := setup(t)
		inc, err := (&verify.Verifier{Since: cp}).DB(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		full, err := verify.DB(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if !inc.Intact() || inc.Entries != 5 || inc.FirstSeq != 11 || inc.LastSeq != 15 {
			t.Fatalf("incremental run: %+v", inc)
		}
		if !full.Intact() || *full.Checkpoint != *inc.Checkpoint {
			t.Fatalf("full run ends at %+v, incremental at %+v", full.Checkpoint, inc.Checkpoint)
		}
	})
	cases := []struct {
		name   string
		tamper string
		seq    int64
		kind   verify.Kind
	}{
		// Tried: the checkpointed entry edited. Detected: it no longer matches the checkpoint.
		{"CheckpointedEntryModified", `UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 10`, 10, verify.Modified},
		// Tried: the checkpointed entry edited and rehashed, the next entry relinked. Detected:
		// its hash is not the checkpoint's.
		{"CheckpointedEntryRehashed", `UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 10;
			UPDATE audit.events e SET entry_hash = sha256(e.prev_hash || audit.canonical(e)) WHERE seq = 10;
			UPDATE audit.events SET prev_hash = (SELECT entry_hash FROM audit.events WHERE seq = 10) WHERE seq = 11;
			UPDATE audit.events e SET entry_hash = sha256(e.prev_hash || audit.canonical(e)) WHERE seq = 11`, 10, verify.Modified},
		// Tried: the checkpointed entry deleted. Detected: it is gone.
		{"CheckpointedEntryDeleted", `DELETE FROM audit.events WHERE seq = 10`, 10, verify.Deleted},
		// Tried: the tail cut back before the checkpoint, the chain head moved back with it.
		// Detected: the checkpointed entry is gone.
		{"TailTruncatedBeforeCheckpoint", `DELETE FROM audit.events WHERE seq >= 8;
			UPDATE audit.chain_head SET seq = 7, entry_hash = (SELECT entry_hash FROM audit.events WHERE seq = 7)`, 10, verify.Deleted},
		// Tried: an entry after the checkpoint edited. Detected as in a full run.
		{"NewEntryModified", `UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 13`, 13, verify.Modified},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, cp := setup(t)
			testdb.Exec(t, db, `BEGIN; SET LOCAL session_replication_role = replica; `+c.tamper+`; COMMIT`)
			rep, err := (&verify.Verifier{Since: cp}).DB(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Intact() || rep.Problems[0].Seq != c.seq || rep.Problems[0].Kind != c.kind {
				t.Fatalf("first problem: %+v; want seq %d %s", rep.Problems, c.seq, c.kind)
			}
		})
	}
	// An incremental run does not read what came before the checkpoint: an edit there is found
	// by the next full run.
	t.Run("OldEntryModifiedNeedsFullRun", func(t *testing.T) {
		db, cp := setup(t)
		testdb.Exec(t, db, `BEGIN; SET LOCAL session_replication_role = replica; UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 3; COMMIT`)
		inc, err := (&verify.Verifier{Since: cp}).DB(ctx, db)
		if err != nil || !inc.Intact() {
			t.Fatalf("incremental run: %v %+v", err, inc)
		}
		full, err := verify.DB(ctx, db)
		if err != nil || full.Intact() || full.Problems[0].Seq != 3 {
			t.Fatalf("full run: %v %+v", err, full)
		}
	})
}

// TestDB_LoadedTrail loads a synthetic trail with verifytest.LoadDB (what the benchmarks use)
// and verifies it: intact, so the loader writes what PostgreSQL hashes the same way.
func TestDB_LoadedTrail(t *testing.T) {
	db, _ := testdb.New(t)
	conn, err := db.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if err := verifytest.LoadDB(context.Background(), conn.Conn(), verifytest.Events(3000, 500)); err != nil {
		t.Fatal(err)
	}
	rep, err := verify.DB(context.Background(), db)
	if err != nil || !rep.Intact() || rep.Entries != 3000 {
		t.Fatalf("loaded trail: %v %+v", err, rep)
	}
}

// TestCopyQuery_InetText checks what the COPY that DB reads with relies on: abbrev(inet) prints
// every address as inet's output function does (which audit.canonical hashes, through format).
// Were it to differ, entries would be reported modified.
func TestCopyQuery_InetText(t *testing.T) {
	db, _ := testdb.New(t)
	rows, err := db.Query(context.Background(), `
	WITH v(x) AS (SELECT unnest(ARRAY['10.0.0.1', '10.0.0.1/32', '10.0.0.0/8', '10.1.2.3/8', '0.0.0.0/0', '255.255.255.255',
	    '::1', '::', '::/0', '::ffff:10.0.0.1', '::ffff:10.0.0.1/128', '::10.0.0.1', '::ffff:0:10.0.0.1', 'fe80::1/64',
	    '2001:db8::1', '2001:db8:0:0:1:0:0:1', '2001:0:0:1::1', '1:0:0:0:0:0:0:8', '0:0:0:0:0:ffff:1.2.3.4/120', '1::',
	    '::2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8/127', '192.168.1.5/24', '::ffff:1.2.3.4/96', '1:2::3:4/32']::inet[])
	  UNION ALL SELECT ('10.' || a || '.' || b || '.1/' || (a % 33))::inet FROM generate_series(0, 255) a, generate_series(0, 10) b
	  UNION ALL SELECT (to_hex(a) || ':0:' || to_hex(b) || '::' || to_hex(a * b) || '/' || (a % 129))::inet
	    FROM generate_series(0, 300) a, generate_series(0, 3) b)
	SELECT format('%s', x), abbrev(x) FROM v WHERE format('%s', x) IS DISTINCT FROM abbrev(x)`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var out, abbrev string
		if err := rows.Scan(&out, &abbrev); err != nil {
			t.Fatal(err)
		}
		t.Errorf("inet output %q, abbrev %q", out, abbrev)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestDB_Streams verifies a trail long enough to be read in several chunks by parallel COPY
// streams, intact and then with damage at a chunk boundary and inside a later chunk: the same
// report as with one stream.
func TestDB_Streams(t *testing.T) {
	ctx := context.Background()
	db, _ := testdb.New(t)
	loadChunked(t, db)
	for _, streams := range []int{1, 3, 0} {
		want := streams
		if streams == 0 { // the default: the test server is on this machine
			want = max(1, min(verify.DefaultDBStreams, runtime.GOMAXPROCS(0)/2))
		}
		rep, err := (&verify.Verifier{DBStreams: streams}).DB(ctx, db)
		if err != nil || !rep.Intact() || rep.Entries != 20000 || rep.Checkpoint.Seq != 20000 || rep.Streams != want {
			t.Fatalf("%d streams (want %d): %v %+v", streams, want, err, rep)
		}
	}
	damageChunks(t, db)
	for _, streams := range []int{1, 3} {
		rep, err := (&verify.Verifier{DBStreams: streams}).DB(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		checkDamagedChunks(t, fmt.Sprintf("%d streams", streams), rep)
	}
}

// loadChunked loads a trail of 20000 entries into db: more than two chunks of parallel reading.
func loadChunked(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if err := verifytest.LoadDB(ctx, conn.Conn(), verifytest.Events(20000, 300)); err != nil {
		t.Fatal(err)
	}
}

// damageChunks deletes the first row of loadChunked's second chunk and modifies one inside its
// third, as a superuser with the guard triggers off.
func damageChunks(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	testdb.Exec(t, db, `BEGIN; SET LOCAL session_replication_role = replica;
		DELETE FROM audit.events WHERE seq = 8193; UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 16500; COMMIT`)
}

// checkDamagedChunks checks that rep names damageChunks' two changes, and only them.
func checkDamagedChunks(t *testing.T, what string, rep *verify.Report) {
	t.Helper()
	if len(rep.Problems) != 2 || rep.Problems[0].Seq != 8193 || rep.Problems[0].Kind != verify.Deleted ||
		rep.Problems[1].Seq != 16500 || rep.Problems[1].Kind != verify.Modified || rep.Entries != 19999 {
		t.Errorf("%s: %+v", what, rep.Problems)
	}
}

// TestDB_TLS: tried: verify db over TLS (sslmode=require, as managed servers demand), with
// parallel streams whose connections read the socket through the pacer below TLS. Must hold:
// the same reports as over plain TCP, intact and then with a deleted and a modified row.
func TestDB_TLS(t *testing.T) {
	ctx := context.Background()
	db, _ := testdb.NewTLS(t)
	loadChunked(t, db)
	// The pacer must be found beneath TLS, or the streams would read unpaced.
	cfg := db.Config().ConnConfig.Copy()
	plain, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	if verify.Paced(plain.PgConn()) {
		t.Error("a connection not dialed with pace.Dial reads through a pacer")
	}
	cfg.DialFunc = pace.Dial(cfg.DialFunc)
	paced, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer paced.Close(ctx)
	if !verify.Paced(paced.PgConn()) {
		t.Error("a TLS connection dialed with pace.Dial: its pacer is not found")
	}
	for _, q := range []verify.Querier{db, paced} {
		rep, err := (&verify.Verifier{DBStreams: 3}).DB(ctx, q)
		if err != nil || !rep.Intact() || rep.Entries != 20000 || rep.Streams != 3 {
			t.Fatalf("intact trail over TLS (%T): %v %+v", q, err, rep)
		}
	}
	damageChunks(t, db)
	rep, err := (&verify.Verifier{DBStreams: 3}).DB(ctx, paced)
	if err != nil {
		t.Fatal(err)
	}
	checkDamagedChunks(t, "damaged trail over TLS", rep)
}

// TestDB_StreamsRefused: tried: verify db with 3 streams as a role limited to one connection, so
// that the server refuses the extra streams. Must hold: the one connection reads every chunk,
// and the report is what 3 streams would give (intact, then the damaged row named).
func TestDB_StreamsRefused(t *testing.T) {
	ctx := context.Background()
	db, url := testdb.New(t)
	loadChunked(t, db)
	role := "verifier_" + strings.TrimPrefix(db.Config().ConnConfig.Database, "t_")
	testdb.Exec(t, db, fmt.Sprintf(`CREATE ROLE %q LOGIN CONNECTION LIMIT 1 IN ROLE pgtrail_auditor`, role))
	t.Cleanup(func() { testdb.Exec(t, db, fmt.Sprintf(`DROP ROLE %q`, role)) })
	one := testdb.Pool(t, strings.Replace(url, "postgres@", role+"@", 1))
	for _, damaged := range []bool{false, true} {
		if damaged {
			testdb.Exec(t, db, `BEGIN; SET LOCAL session_replication_role = replica;
				UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 16500; COMMIT`)
		}
		rep, err := (&verify.Verifier{DBStreams: 3}).DB(ctx, one)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Streams != 1 || rep.Entries != 20000 {
			t.Fatalf("%d streams, %d entries; want the one allowed connection to read all 20000", rep.Streams, rep.Entries)
		}
		if ok := rep.Intact() == !damaged && (!damaged || len(rep.Problems) == 1 && rep.Problems[0].Seq == 16500); !ok {
			t.Errorf("damaged %v: intact %v, problems %+v", damaged, rep.Intact(), rep.Problems)
		}
	}
}
