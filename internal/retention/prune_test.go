package retention_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archive/file"
	"github.com/pgtrail/pgtrail/internal/chain"
	"github.com/pgtrail/pgtrail/internal/eventtest"
	"github.com/pgtrail/pgtrail/internal/retention"
	"github.com/pgtrail/pgtrail/internal/testdb"
	"github.com/pgtrail/pgtrail/internal/testenv"
	"github.com/pgtrail/pgtrail/internal/timeexpr"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m)) }

// monthsAgo is the first day (UTC) of the month n months before the current one.
func monthsAgo(n int) time.Time {
	now := time.Now().UTC()
	return time.Date(now.Year(), now.Month()-time.Month(n), 1, 0, 0, 0, 0, time.UTC)
}

func partitionName(m time.Time) string { return "events_" + m.Format("2006_01") }

// trail is a database whose chain starts with events in old monthly partitions.
type trail struct {
	db  *pgxpool.Pool
	url string
	// old are the partitions of 20, 19 and 18 months ago, three events each (tenants acme,
	// globex and none), seq 1-9.
	old []time.Time
}

// oldEvent is an event of an old month: written straight into audit.pending with its time, as
// the capture trigger would have written it then.
type oldEvent struct {
	at     time.Time
	tenant *string
	action string
}

// setup creates the old partitions (as they would have been created then, without the DDL
// events their creation records today), writes events into them in the transactions given
// (each inner slice is one transaction, so chain order follows the slices), then two current
// events, and seals.
func setup(t *testing.T, txs [][]oldEvent) *trail {
	t.Helper()
	db, url := testdb.New(t)
	tr := &trail{db: db, url: url, old: []time.Time{monthsAgo(20), monthsAgo(19), monthsAgo(18)}}
	var ddl strings.Builder
	ddl.WriteString("BEGIN; ALTER EVENT TRIGGER pgtrail_ddl DISABLE;")
	for _, m := range tr.old {
		fmt.Fprintf(&ddl, "CREATE TABLE audit.%s PARTITION OF audit.events FOR VALUES FROM ('%s') TO ('%s');",
			pgx.Identifier{partitionName(m)}.Sanitize(), m.Format(time.RFC3339), m.AddDate(0, 1, 0).Format(time.RFC3339))
	}
	ddl.WriteString("ALTER EVENT TRIGGER pgtrail_ddl ENABLE; COMMIT")
	testdb.Exec(t, db, ddl.String())
	if txs == nil {
		txs = [][]oldEvent{nil}
		for _, m := range tr.old {
			for _, tenant := range []*string{eventtest.Str("acme"), eventtest.Str("globex"), nil} {
				txs[0] = append(txs[0], oldEvent{m.AddDate(0, 0, 9), tenant, "LOGIN"})
			}
		}
	}
	for _, tx := range txs {
		batch := &pgx.Batch{}
		batch.Queue("BEGIN")
		for _, e := range tx {
			batch.Queue(`INSERT INTO audit.pending (occurred_at, action_type, resource_type, outcome, actor_id, tenant_id)
			              VALUES ($1, $2, 'session', 'SUCCESS', 'u', $3)`, e.at, e.action, e.tenant)
		}
		batch.Queue("COMMIT")
		if err := db.SendBatch(context.Background(), batch).Close(); err != nil {
			t.Fatal(err)
		}
	}
	testdb.Exec(t, db, `SELECT audit.log_event('LOGIN', 'session', 'now-1'); SELECT audit.log_event('LOGIN', 'session', 'now-2')`)
	testdb.Seal(t, db)
	return tr
}

// events reads the whole chain.
func (tr *trail) events(t *testing.T) []pgtrail.Event {
	t.Helper()
	var out []pgtrail.Event
	err := chain.Read(context.Background(), tr.db, 1, math.MaxInt64, func(e *pgtrail.Event) error {
		out = append(out, *e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// conn is a superuser connection of its own (Prune runs a transaction on it).
func (tr *trail) conn(t *testing.T, user string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(tr.url)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		cfg.User = user
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// partitions lists what is left of the old ones.
func (tr *trail) partitions(t *testing.T) []string {
	t.Helper()
	var left []string
	for _, m := range tr.old {
		var exists bool
		if err := tr.db.QueryRow(context.Background(), `SELECT to_regclass('audit.' || $1) IS NOT NULL`, partitionName(m)).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			left = append(left, partitionName(m))
		}
	}
	return left
}

func (tr *trail) anchors(t *testing.T) []retention.Anchor {
	t.Helper()
	a, err := retention.LoadAnchors(context.Background(), tr.db)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var age18 = timeexpr.Age{Months: 18}

func key(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv := archive.GenerateKey()
	return pub, priv
}

func actions(res *retention.PruneResult) string {
	var parts []string
	for _, p := range res.Partitions {
		parts = append(parts, string(p.Action))
	}
	return strings.Join(parts, " ")
}

// TestPrune_ArchivedAndVerified prunes twice: the partitions go, each prune leaves a signed
// anchor the rest of the chain links to, and records a PRUNE event; a dry run before changes
// nothing.
func TestPrune_ArchivedAndVerified(t *testing.T) {
	tr := setup(t, nil)
	ctx := context.Background()
	all := tr.events(t)
	sink := eventtest.Archive(t, all, 4)
	pub, priv := key(t)

	dry, err := retention.Prune(ctx, tr.conn(t, ""), retention.PruneConfig{OlderThan: age18, Sink: sink, ArchiveURL: "file:///a", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(dry); got != "prune prune" || dry.Anchor == nil || dry.Anchor.Seq != 6 || dry.Anchor.Signature != "" {
		t.Fatalf("dry run: actions %q, anchor %+v; want both candidates pruned at seq 6, unsigned", got, dry.Anchor)
	}
	if left := tr.partitions(t); len(left) != 3 || len(tr.anchors(t)) != 0 {
		t.Fatalf("dry run changed something: partitions %v, anchors %v", left, tr.anchors(t))
	}

	res, err := retention.Prune(ctx, tr.conn(t, ""), retention.PruneConfig{OlderThan: age18, Sink: sink, ArchiveURL: "file:///a", Key: priv})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(res); got != "prune prune" || res.Refused() {
		t.Fatalf("prune: %q, want both pruned: %+v", got, res.Partitions)
	}
	if left := tr.partitions(t); !slices.Equal(left, []string{partitionName(tr.old[2])}) {
		t.Errorf("partitions left: %v, want only %s", left, partitionName(tr.old[2]))
	}
	anchors := tr.anchors(t)
	if len(anchors) != 1 || anchors[0].Seq != 6 || anchors[0].FirstSeq != 1 || anchors[0].Rows != 6 {
		t.Fatalf("anchors = %+v, want one for seq 1-6", anchors)
	}
	if err := anchors[0].Verify(pub); err != nil {
		t.Errorf("anchor signature: %v", err)
	}
	other, _ := key(t)
	if err := anchors[0].Verify(other); !errors.Is(err, retention.ErrAnchorKey) {
		t.Errorf("anchor verified with another key: %v", err)
	}
	forged := anchors[0]
	forged.Seq = 5
	if err := forged.Verify(pub); !errors.Is(err, retention.ErrAnchorSignature) {
		t.Errorf("altered anchor verified: %v", err)
	}
	assertChainFrom(t, tr, anchors[len(anchors)-1])

	testdb.Seal(t, tr.db)
	var details map[string]any
	if err := tr.db.QueryRow(ctx, `SELECT details FROM audit.events WHERE action_type = 'PRUNE'`).Scan(&details); err != nil {
		t.Fatalf("PRUNE event: %v", err)
	}
	if details["last_seq"] != 6.0 || details["rows"] != 6.0 || details["archive"] != "file:///a" {
		t.Errorf("PRUNE details = %v", details)
	}

	// The next month, a month later: the chain is cut again from the anchor.
	res, err = retention.Prune(ctx, tr.conn(t, ""), retention.PruneConfig{OlderThan: timeexpr.Age{Months: 17}, Sink: sink, ArchiveURL: "file:///a", Key: priv})
	if err != nil {
		t.Fatal(err)
	}
	anchors = tr.anchors(t)
	if actions(res) != "prune" || len(anchors) != 2 || anchors[1].FirstSeq != 7 || anchors[1].Seq != 9 {
		t.Fatalf("second prune: %q, anchors %+v; want seq 7-9 anchored", actions(res), anchors)
	}
	assertChainFrom(t, tr, anchors[1])

	// Where verify starts the chain: the newest anchor, once every anchor checks.
	if seq, h, err := retention.ChainStart(ctx, tr.db, pub); err != nil || seq != 9 || hex.EncodeToString(h) != anchors[1].EntryHash {
		t.Errorf("ChainStart = %d, %x, %v; want seq 9 and its hash", seq, h, err)
	}
	if _, _, err := retention.ChainStart(ctx, tr.db, nil); !errors.Is(err, retention.ErrPrunedNoKey) {
		t.Errorf("ChainStart without the key: %v", err)
	}
	if _, _, err := retention.ChainStart(ctx, tr.db, other); !errors.Is(err, retention.ErrAnchorKey) {
		t.Errorf("ChainStart with another key: %v", err)
	}
	// Tried, as a superuser: removing the first anchor, so that the chain seems to start later.
	// What must hold: refused as a gap in the anchors' ranges.
	tx, err := tr.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica; DELETE FROM audit.chain_anchors WHERE seq = 6`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := retention.ChainStart(ctx, tx, pub); err == nil || !strings.Contains(err.Error(), "an anchor is missing") {
		t.Errorf("ChainStart with the first anchor removed: %v", err)
	}
}

// assertChainFrom recomputes what is left of the chain from the anchor.
func assertChainFrom(t *testing.T, tr *trail, a retention.Anchor) {
	t.Helper()
	prev, err := a.EntryHashBytes()
	if err != nil {
		t.Fatal(err)
	}
	expect := a.Seq + 1
	var buf []byte
	var n int
	err = chain.Read(context.Background(), tr.db, 1, math.MaxInt64, func(e *pgtrail.Event) error {
		n++
		var sum [32]byte
		sum, buf = e.Hash(buf)
		if e.Seq != expect || !bytes.Equal(e.PrevHash, prev) || !bytes.Equal(sum[:], e.EntryHash) {
			return fmt.Errorf("seq %d (want %d) does not continue the chain from the anchor at seq %d", e.Seq, expect, a.Seq)
		}
		expect++
		prev = e.EntryHash
		return nil
	})
	if err != nil || n == 0 {
		t.Errorf("chain after the anchor: %v (%d entries)", err, n)
	}
}

// TestPrune_Refused tries pruning where it must not happen; in each case the partitions named
// must survive with their rows, and no anchor for them may be written.
func TestPrune_Refused(t *testing.T) {
	ctx := context.Background()
	_, priv := key(t)
	cases := []struct {
		name string
		// arrange returns the archive to prune against.
		arrange func(t *testing.T, tr *trail) archive.Sink
		want    string // actions of the two candidates
		reason  string // in the first refused or kept candidate's reason
		// survive: how many of the three old partitions must remain.
		survive int
	}{
		{"ArchiveEmpty", func(t *testing.T, tr *trail) archive.Sink {
			s, _ := file.New(t.TempDir())
			return s
		}, "refuse keep", "not archived", 3},
		{"ArchiveBehind", func(t *testing.T, tr *trail) archive.Sink {
			return eventtest.Archive(t, tr.events(t)[:4], 4) // seq 1-4: the first month only
		}, "prune refuse", "not archived", 2},
		{"RowModified", func(t *testing.T, tr *trail) archive.Sink {
			s := eventtest.Archive(t, tr.events(t), 4)
			testdb.Exec(t, tr.db, `BEGIN; SET LOCAL session_replication_role = replica; UPDATE audit.events SET actor_id = 'mallory' WHERE seq = 5; COMMIT`)
			return s
		}, "refuse refuse", "seq 5: its content does not match", 3},
		{"ArchiveDiffers", func(t *testing.T, tr *trail) archive.Sink {
			evs := tr.events(t)
			evs[5].ActorID = "someone-else" // seq 6, the cut; rehashed from there on, so the archive is self-consistent
			for i := range evs {
				evs[i].EntryHash = nil
			}
			return eventtest.Archive(t, eventtest.Chain(evs), 4)
		}, "refuse refuse", "the archive's seq 6 differs", 3},
		{"RetentionPolicy", func(t *testing.T, tr *trail) archive.Sink {
			testdb.Exec(t, tr.db, `INSERT INTO audit.retention_policies (tenant_id, action_type, keep, archive_retention) VALUES ('globex', 'LOGIN', '10 years', '10 years')`)
			return eventtest.Archive(t, tr.events(t), 4)
		}, "keep keep", "tenant globex keeps LOGIN events for 10 years", 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := setup(t, nil)
			sink := c.arrange(t, tr)
			res, err := retention.Prune(ctx, tr.conn(t, ""), retention.PruneConfig{OlderThan: age18, Sink: sink, ArchiveURL: "file:///a", Key: priv})
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(res); got != c.want {
				t.Errorf("actions %q, want %q: %+v", got, c.want, res.Partitions)
			}
			var reason string
			for _, p := range res.Partitions {
				if p.Action != retention.ActionPrune {
					reason = p.Reason
					break
				}
			}
			if !strings.Contains(reason, c.reason) {
				t.Errorf("reason %q, want one saying %q", reason, c.reason)
			}
			if left := tr.partitions(t); len(left) != c.survive {
				t.Errorf("partitions left: %v, want %d", left, c.survive)
			}
			if c.survive == 3 && len(tr.anchors(t)) != 0 {
				t.Errorf("an anchor was written: %+v", tr.anchors(t))
			}
		})
	}
}

// TestPrune_Interleaved puts a later month's entry before an earlier month's in chain order (a
// long transaction across the month boundary): the earlier month must wait for the later one,
// and both go together once both are due.
func TestPrune_Interleaved(t *testing.T) {
	ctx := context.Background()
	_, priv := key(t)
	acme := eventtest.Str("acme")
	for _, c := range []struct {
		name      string
		olderThan timeexpr.Age
		want      string
		survive   int
	}{
		{"SecondMonthNotDue", timeexpr.Age{Months: 19}, "keep", 3},
		{"BothDue", age18, "prune prune", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			m0, m1 := monthsAgo(20), monthsAgo(19)
			tr := setup(t, [][]oldEvent{
				{{m0.AddDate(0, 0, 3), acme, "LOGIN"}},
				{{m1.Add(time.Minute), acme, "LOGIN"}},            // seq 2, in the second month
				{{m1.Add(-time.Minute), acme, "LOGIN"}},           // seq 3, in the first month
				{{m1.AddDate(0, 0, 5), acme, "LOGIN"}},            // seq 4
				{{monthsAgo(18).AddDate(0, 0, 1), acme, "LOGIN"}}, // seq 5
			})
			sink := eventtest.Archive(t, tr.events(t), 100)
			res, err := retention.Prune(ctx, tr.conn(t, ""), retention.PruneConfig{OlderThan: c.olderThan, Sink: sink, ArchiveURL: "file:///a", Key: priv})
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(res); got != c.want {
				t.Errorf("actions %q, want %q: %+v", got, c.want, res.Partitions)
			}
			if c.want == "keep" && !strings.Contains(res.Partitions[0].Reason, "interleave") {
				t.Errorf("reason %q, want it to name the interleaving", res.Partitions[0].Reason)
			}
			if left := tr.partitions(t); len(left) != c.survive {
				t.Errorf("partitions left %v, want %d", left, c.survive)
			}
		})
	}
}

// TestPrune_Permissions tries to prune without being a superuser and without a key, and to call
// the SQL function with a wrong anchor: all refused, nothing dropped. An auditor may dry-run.
func TestPrune_Permissions(t *testing.T) {
	tr := setup(t, nil)
	ctx := context.Background()
	sink := eventtest.Archive(t, tr.events(t), 4)
	_, priv := key(t)
	role := "auditor_" + strings.ReplaceAll(partitionName(tr.old[0]), "events_", "")
	testdb.Exec(t, tr.db, "CREATE ROLE "+role+" LOGIN IN ROLE pgtrail_auditor")
	t.Cleanup(func() { tr.db.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role) })

	auditor := tr.conn(t, role)
	if _, err := retention.Prune(ctx, auditor, retention.PruneConfig{OlderThan: age18, Sink: sink, Key: priv}); !errors.Is(err, retention.ErrNotSuperuser) {
		t.Errorf("prune as an auditor: err = %v, want ErrNotSuperuser", err)
	}
	if res, err := retention.Prune(ctx, auditor, retention.PruneConfig{OlderThan: age18, Sink: sink, DryRun: true}); err != nil || actions(res) != "prune prune" {
		t.Errorf("dry run as an auditor: %v, %+v", err, res)
	}
	if _, err := retention.Prune(ctx, tr.conn(t, ""), retention.PruneConfig{OlderThan: age18, Sink: sink}); !errors.Is(err, retention.ErrNoSigningKey) {
		t.Errorf("prune without a key: err = %v, want ErrNoSigningKey", err)
	}
	calls := []struct {
		name string
		conn *pgx.Conn
		sql  string
	}{
		{"WrongHash", tr.conn(t, ""), `SELECT audit.prune_partitions(ARRAY['audit.` + partitionName(tr.old[0]) + `']::regclass[], 1, 3, '\x` + strings.Repeat("00", 32) + `', 'x', now(), '\x` + strings.Repeat("00", 32) + `', '\x` + strings.Repeat("00", 64) + `')`},
		{"NotAPrefix", tr.conn(t, ""), `SELECT audit.prune_partitions(ARRAY['audit.` + partitionName(tr.old[1]) + `']::regclass[], 4, 6, (SELECT entry_hash FROM audit.events WHERE seq = 6), 'x', now(), '\x` + strings.Repeat("00", 32) + `', '\x` + strings.Repeat("00", 64) + `')`},
		{"DefaultPartition", tr.conn(t, ""), `SELECT audit.prune_partitions(ARRAY['audit.events_default']::regclass[], 1, 1, '\x00', 'x', now(), '\x00', '\x00')`},
		{"Auditor", auditor, `SELECT audit.prune_partitions(ARRAY['audit.` + partitionName(tr.old[0]) + `']::regclass[], 1, 3, (SELECT entry_hash FROM audit.events WHERE seq = 3), 'x', now(), '\x` + strings.Repeat("00", 32) + `', '\x` + strings.Repeat("00", 64) + `')`},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.conn.Exec(ctx, c.sql); err == nil {
				t.Errorf("%s succeeded, want a refusal", c.sql)
			}
		})
	}
	if left := tr.partitions(t); len(left) != 3 {
		t.Errorf("partitions left %v, want all 3", left)
	}
}
