package chain_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/verify"
)

// TestSealer_ConcurrentWriters runs 8 writers with savepoints rolled back and whole transactions
// aborted while the sealer chains in the background. What must hold: one intact chain, every
// committed row's entry exactly once, nothing of a rolled-back (sub)transaction, and the entries
// of one transaction contiguous.
func TestSealer_ConcurrentWriters(t *testing.T) {
	db, _ := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, db, `CREATE TABLE items (writer int, n int, part text, PRIMARY KEY (writer, n, part)); SELECT audit.enable('items')`)
	testdb.Seal(t, db)

	s := &chain.Sealer{DB: db, Interval: 10 * time.Millisecond}
	s.Start(ctx)
	defer s.Stop()

	const writers, txns = 8, 60
	var mu sync.Mutex
	committed := map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for n := 0; n < txns; n++ {
				keys, err := writeTxn(ctx, db, w, n, rng)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, k := range keys {
					committed[k] = true
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.Stop()
	testdb.Seal(t, db)

	rep, err := verify.DB(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact() || rep.Unsealed != 0 {
		t.Fatalf("chain not intact after concurrent writes: %+v", rep)
	}
	rows, err := db.Query(ctx, `SELECT seq, txid::text, after_state->>'writer', after_state->>'n', after_state->>'part'
	                              FROM audit.events WHERE resource_type = 'public.items' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	type span struct{ first, last, count int64 }
	spans := map[string]*span{}
	for rows.Next() {
		var seq int64
		var txid, w, n, part string
		if err := rows.Scan(&seq, &txid, &w, &n, &part); err != nil {
			t.Fatal(err)
		}
		k := w + "/" + n + "/" + part
		if seen[k] {
			t.Errorf("entry %s chained twice", k)
		}
		seen[k] = true
		if !committed[k] {
			t.Errorf("entry %s chained but its write was rolled back", k)
		}
		sp := spans[txid]
		if sp == nil {
			sp = &span{first: seq}
			spans[txid] = sp
		}
		sp.last, sp.count = seq, sp.count+1
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for k := range committed {
		if !seen[k] {
			t.Errorf("committed write %s missing from the chain", k)
		}
	}
	for txid, sp := range spans {
		if sp.last-sp.first+1 != sp.count {
			t.Errorf("transaction %s is not contiguous in the chain: seq %d..%d holds %d of its entries", txid, sp.first, sp.last, sp.count)
		}
	}
	if len(committed) < writers*txns/2 {
		t.Fatalf("only %d committed writes: the test exercised too little", len(committed))
	}
}

// writeTxn writes one transaction: part a, a savepoint with part b (rolled back one time in three),
// part c; one transaction in four is rolled back entirely. It returns the committed keys.
func writeTxn(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, w, n int, rng *rand.Rand) ([]string, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('pgtrail.actor_id', $1, true)`, "writer-"+strconv.Itoa(w)); err != nil {
		return nil, err
	}
	key := func(p string) string { return fmt.Sprintf("%d/%d/%s", w, n, p) }
	keys := []string{key("a"), key("c")}
	if _, err := tx.Exec(ctx, `INSERT INTO items VALUES ($1, $2, 'a')`, w, n); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `SAVEPOINT s; INSERT INTO items VALUES (`+strconv.Itoa(w)+`, `+strconv.Itoa(n)+`, 'b')`); err != nil {
		return nil, err
	}
	if rng.IntN(3) == 0 {
		if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT s`); err != nil {
			return nil, err
		}
	} else {
		keys = append(keys, key("b"))
	}
	if _, err := tx.Exec(ctx, `INSERT INTO items VALUES ($1, $2, 'c')`, w, n); err != nil {
		return nil, err
	}
	if rng.IntN(4) == 0 {
		return nil, tx.Rollback(ctx)
	}
	return keys, tx.Commit(ctx)
}

// TestCanonical_GoMatchesSQL checks byte for byte that pgtrail.AppendCanonical (Go) and
// audit.canonical (SQL) encode the same entries, with the awkward values each field can hold.
func TestCanonical_GoMatchesSQL(t *testing.T) {
	db, _ := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, db, `CREATE TABLE "odd ""table""" (id text PRIMARY KEY, "a,b" text, "NULL" text, "{x}" int, " " int, "päß" jsonb, pw text)`)
	testdb.Exec(t, db, `SELECT audit.enable('"odd ""table"""', '{pw}')`)
	for _, s := range []string{
		`INSERT INTO "odd ""table""" VALUES ('k1', 'x', NULL, 1, 2, '{"z": [1, 2.50], "a": "é\u00e9"}'::jsonb - 'a', 'secret')`,
		`SET pgtrail.actor_ip = '::ffff:10.0.0.1'; SET pgtrail.user_agent = E'tab\there'; SET pgtrail.tenant_id = '';
		 UPDATE "odd ""table""" SET "a,b" = 'y', "NULL" = 'n', pw = 'other'; RESET ALL`,
		`SET pgtrail.actor_ip = '10.0.0.0/8'; DELETE FROM "odd ""table"""; RESET ALL`,
		`SELECT audit.log_event('EXPORT', 'report', E'multi\nline', 'UNAUTHORIZED', '{"rows": 1e3, "q": "\"quoted\""}')`,
	} {
		testdb.Exec(t, db, s)
	}
	testdb.Seal(t, db)
	rows, err := db.Query(ctx, `SELECT audit.canonical(e) FROM audit.events e ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	sqlCanon, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	// Read the entries the way the verifier does and encode them in Go.
	var goCanon [][]byte
	rep, err := verify.DB(ctx, db)
	if err != nil || !rep.Intact() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	err = verify.Each(ctx, db, func(e *pgtrail.Event) error {
		goCanon = append(goCanon, pgtrail.AppendCanonical(nil, e))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(goCanon) != len(sqlCanon) || len(goCanon) < 6 {
		t.Fatalf("%d Go encodings, %d SQL encodings", len(goCanon), len(sqlCanon))
	}
	for i := range goCanon {
		if !bytes.Equal(goCanon[i], sqlCanon[i]) {
			t.Errorf("entry %d differs:\n go: %q\nsql: %q", i+1, goCanon[i], sqlCanon[i])
		}
	}
}
