// Package verifytest builds synthetic, correctly chained audit trails and archives for tests and
// benchmarks of package verify (and for make bench), without a database.
package verifytest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/eventcopy"
)

// Start is the occurred_at of the first synthetic event.
var Start = time.Date(2024, 3, 1, 22, 0, 0, 0, time.UTC)

// Events returns n events chained from seq 1, each with a canonical encoding of about size bytes
// (at least ~300), looking like captured UPDATEs of an accounts table: four tenants (one NULL),
// one event every 2 s from Start, so that a long trail spans several days (and a batch of the
// archive several files). The output depends only on size: Events(m, size) starts with
// Events(n, size) for m > n, so a test can extend a trail.
func Events(n, size int) []pgtrail.Event {
	rng := rand.New(rand.NewPCG(uint64(size), 1))
	tenants := []*string{ptr("acme"), ptr("globex"), ptr("initech"), nil}
	events := make([]pgtrail.Event, n)
	prev := pgtrail.GenesisHash
	var buf []byte
	for i := range events {
		e := &events[i]
		id := rng.Uint64()
		*e = pgtrail.Event{
			Seq:             int64(i + 1),
			EventID:         fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(id), uint16(id>>32), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()&(1<<48-1)),
			OccurredAt:      Start.Add(time.Duration(i) * 2 * time.Second),
			TxID:            uint64(1000 + i/2),
			ActionType:      "UPDATE",
			ResourceType:    "public.accounts",
			ResourceID:      ptr(fmt.Sprint(rng.IntN(1_000_000))),
			Outcome:         "SUCCESS",
			ActorID:         fmt.Sprintf("user-%d", rng.IntN(500)),
			ActorIP:         ptr(fmt.Sprintf("10.%d.%d.%d", rng.IntN(256), rng.IntN(256), rng.IntN(256))),
			ActorUserAgent:  ptr("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"),
			RequestID:       ptr(fmt.Sprintf("req-%016x", rng.Uint64())),
			TenantID:        tenants[i%len(tenants)],
			DBUser:          "app",
			ApplicationName: ptr("payments-api"),
			ClientAddr:      ptr("10.0.0.5"),
			ChangedColumns:  []string{"balance", "updated_at"},
			PrevHash:        prev,
		}
		e.BeforeState = ptr(fmt.Sprintf(`{"id": %s, "owner": "customer-%d", "balance": %d.%02d, "updated_at": "2024-03-01T10:00:00.%06d+00:00"}`,
			*e.ResourceID, rng.IntN(100000), rng.IntN(100000), rng.IntN(100), rng.IntN(1000000)))
		after := fmt.Sprintf(`{"id": %s, "note": "%%s", "owner": "customer-%d", "balance": %d.%02d, "updated_at": "2024-03-01T10:00:01.%06d+00:00"}`,
			*e.ResourceID, rng.IntN(100000), rng.IntN(100000), rng.IntN(100), rng.IntN(1000000))
		e.AfterState = ptr(fmt.Sprintf(after, ""))
		buf = pgtrail.AppendCanonical(buf[:0], e)
		e.AfterState = ptr(fmt.Sprintf(after, noise(rng, max(0, size-len(buf)))))
		var sum [sha256.Size]byte
		sum, buf = e.Hash(buf)
		e.EntryHash = sum[:]
		prev = e.EntryHash
	}
	return events
}

// noise returns n printable characters that compress about as well as real text.
func noise(rng *rand.Rand, n int) string {
	const words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
	var b strings.Builder
	for b.Len() < n {
		i := rng.IntN(len(words) - 12)
		b.WriteString(words[i : i+1+rng.IntN(11)])
	}
	return b.String()[:n]
}

func ptr(s string) *string { return &s }

// WriteArchive archives events into sink in batches of batchSize (the last one may be shorter),
// with digests signed by key (unsigned when key is nil), as the stream daemon does: the sink is
// marked as an archive first (archive.Mark), so that it is one even with no events.
func WriteArchive(ctx context.Context, sink archive.Sink, key ed25519.PrivateKey, events []pgtrail.Event, batchSize int) error {
	if err := archive.Mark(ctx, sink); err != nil {
		return err
	}
	w := &archive.Writer{Sink: sink, Key: key}
	for len(events) > 0 {
		n := min(batchSize, len(events))
		if err := w.WriteBatch(ctx, events[:n]); err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}

// Canonical returns the canonical encodings of events, for measuring raw hashing speed.
func Canonical(events []pgtrail.Event) [][]byte {
	out := make([][]byte, len(events))
	for i := range events {
		out[i] = pgtrail.AppendCanonical(nil, &events[i])
	}
	return out
}

// ChainSHA256 folds h = SHA-256(h ‖ entry) over entries from the genesis hash and returns h: the
// raw cost of hash chaining, which verification is measured against.
func ChainSHA256(entries [][]byte) [sha256.Size]byte {
	var h [sha256.Size]byte
	d := sha256.New()
	for _, e := range entries {
		d.Reset()
		d.Write(h[:])
		d.Write(e)
		d.Sum(h[:0])
	}
	return h
}

// LoadDB appends events to audit.events with COPY and moves the chain head to the last one, as a
// superuser with triggers off (session_replication_role = replica): a large trail in seconds,
// where sealing it would take minutes. The events must continue the chain in the database. Their
// fields must be in the form PostgreSQL prints them (inet without /32, jsonb's key order and
// spacing), as Events makes them, or verification reports them modified.
func LoadDB(ctx context.Context, conn *pgx.Conn, events []pgtrail.Event) error {
	if len(events) == 0 {
		return nil
	}
	var buf bytes.Buffer
	for i := range events {
		eventcopy.WriteRow(&buf, &events[i])
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return err
	}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, &buf, eventcopy.Statement); err != nil {
		return fmt.Errorf("copy events: %w", err)
	}
	last := events[len(events)-1]
	if _, err := tx.Exec(ctx, "UPDATE audit.chain_head SET seq = $1, entry_hash = $2, sealed_at = now()", last.Seq, last.EntryHash); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// OddEvents returns events with the values the encoding finds awkward: NULLs everywhere they
// may be, empty strings, empty and quoted changed_columns, multi-byte text.
func OddEvents() []pgtrail.Event {
	s := func(v string) *string { return &v }
	h := bytes.Repeat([]byte{7}, sha256.Size)
	base := pgtrail.Event{EventID: "00000000-0000-4000-8000-000000000001", OccurredAt: time.UnixMicro(1700000000123456),
		TxID: 1 << 62, ActionType: "UPDATE", ResourceType: `"odd ""table"""`, Outcome: "SUCCESS", ActorID: "",
		DBUser: "päß", PrevHash: h, EntryHash: h}
	evs := []pgtrail.Event{base, base, base, base}
	evs[1].ResourceID, evs[1].ActorIP, evs[1].ActorIPRaw, evs[1].ActorUserAgent = s(""), s("::1"), s("not an ip"), s("tab\there")
	evs[1].RequestID, evs[1].TenantID, evs[1].ApplicationName, evs[1].ClientAddr = s("r"), s(""), s("a"), s("10.0.0.0/8")
	evs[1].ChangedColumns = []string{"a,b", "NULL", "", `"q"`, `back\slash`, "{x}", " "}
	evs[1].BeforeState, evs[1].AfterState, evs[1].Details = s(`{"a": 1}`), s(`{}`), s(`{"é": "\"x\""}`)
	evs[2].ChangedColumns = []string{"one"}
	evs[2].TenantID = s("_under")
	evs[3].Details = s("")
	for i := range evs {
		evs[i].Seq = int64(i + 1)
	}
	return evs
}
