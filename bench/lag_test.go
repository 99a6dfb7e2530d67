package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
)

// chainEvents builds n chained events from seq first on, over tenants tenants (one data file each).
func chainEvents(first int64, n, tenants int, prev []byte) []pgtrail.Event {
	if prev == nil {
		prev = pgtrail.GenesisHash
	}
	out := make([]pgtrail.Event, n)
	for i := range out {
		seq := first + int64(i)
		tenant := fmt.Sprintf("t%02d", seq%int64(tenants))
		e := pgtrail.Event{Seq: seq, EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", seq),
			OccurredAt: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), TxID: uint64(seq), ActionType: "UPDATE",
			ResourceType: "public.accounts", Outcome: "SUCCESS", ActorID: "app", TenantID: &tenant, DBUser: "app",
			ChangedColumns: []string{"balance"}, PrevHash: prev}
		sum, _ := e.Hash(nil)
		e.EntryHash = sum[:]
		prev = e.EntryHash
		out[i] = e
	}
	return out
}

// failingDigests refuses digest Puts after the first ok ones.
type failingDigests struct {
	archive.Sink
	ok int
}

func (f *failingDigests) Put(ctx context.Context, key string, data []byte) error {
	if strings.HasPrefix(key, archive.DigestsPrefix) {
		if f.ok == 0 {
			return errors.New("refused")
		}
		f.ok--
	}
	return f.Sink.Put(ctx, key, data)
}

// TestArchiveWatcher_Poll: a batch counts from the poll that sees every one of its rows under a
// digest, not before; batches archived before prime do not count.
func TestArchiveWatcher_Poll(t *testing.T) {
	ctx := context.Background()
	sink, err := archive.Open(ctx, "file://"+t.TempDir(), archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := chainEvents(1, 10, 1, nil)
	if err := (&archive.Writer{Sink: sink}).WriteBatch(ctx, old); err != nil {
		t.Fatal(err)
	}
	w := newArchiveWatcher(sink)
	if err := w.prime(ctx); err != nil {
		t.Fatal(err)
	}

	// 12 files: digest keys 10.json and 11.json sort before 2.json.
	batch := chainEvents(11, 120, 12, old[len(old)-1].EntryHash)
	fd := &failingDigests{Sink: sink, ok: 3}
	wr := &archive.Writer{Sink: fd}
	if err := wr.WriteBatch(ctx, batch); err == nil {
		t.Fatal("WriteBatch succeeded with digests refused")
	}
	if err := w.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.through(); got != 0 {
		t.Fatalf("through %d after a partial batch, want 0", got)
	}
	fd.ok = 1 << 30
	if err := wr.WriteBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := w.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.through(); got != 130 {
		t.Fatalf("through %d, want 130", got)
	}
	for _, seq := range []int64{11, 77, 130} {
		if at, ok := w.seenAt(seq); !ok || at.Before(before) {
			t.Errorf("seq %d: seen %v at %s, want at the last poll", seq, ok, at)
		}
	}
	for _, seq := range []int64{5, 131} {
		if _, ok := w.seenAt(seq); ok {
			t.Errorf("seq %d seen: it is not in a batch written after prime", seq)
		}
	}
	// The next batch follows; the listing skips the complete ones.
	if err := wr.WriteBatch(ctx, chainEvents(131, 5, 1, batch[len(batch)-1].EntryHash)); err != nil {
		t.Fatal(err)
	}
	if err := w.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.through(); got != 135 {
		t.Fatalf("through %d, want 135", got)
	}
}
