package verify_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/verify"
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
