// Package eventtest builds hash-chained audit events and archives for tests that need events at
// chosen times (the database stamps events with the clock, so old ones cannot be written there).
package eventtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/archive/file"
)

// Str returns a pointer to s.
func Str(s string) *string { return &s }

// Chain numbers events from 1 in the order given and links their hashes from the genesis hash,
// filling the fields tests usually leave out (event_id, txid, db_user, changed_columns).
func Chain(events []pgtrail.Event) []pgtrail.Event {
	out := slices.Clone(events)
	prev := pgtrail.GenesisHash
	var buf []byte
	for i := range out {
		e := &out[i]
		e.Seq = int64(i + 1)
		if e.EventID == "" {
			e.EventID = fmt.Sprintf("00000000-0000-4000-8000-%012d", e.Seq)
		}
		if e.TxID == 0 {
			e.TxID = uint64(1000 + e.Seq)
		}
		if e.DBUser == "" {
			e.DBUser = "app"
		}
		if e.Outcome == "" {
			e.Outcome = "SUCCESS"
		}
		if e.ChangedColumns == nil {
			e.ChangedColumns = []string{}
		}
		e.OccurredAt = e.OccurredAt.UTC().Truncate(time.Microsecond)
		e.PrevHash = slices.Clone(prev)
		var sum [32]byte
		sum, buf = e.Hash(buf)
		e.EntryHash = sum[:]
		prev = e.EntryHash
	}
	return out
}

// Archive writes events (chained, in seq order) to a new file sink in batches of batchSize and
// returns the sink.
func Archive(t testing.TB, events []pgtrail.Event, batchSize int) *file.Sink {
	t.Helper()
	sink, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	Append(t, sink, events, batchSize)
	return sink
}

// Append archives events to sink in batches of batchSize.
func Append(t testing.TB, sink archive.Sink, events []pgtrail.Event, batchSize int) {
	t.Helper()
	w := &archive.Writer{Sink: sink}
	for len(events) > 0 {
		n := min(batchSize, len(events))
		if err := w.WriteBatch(context.Background(), events[:n]); err != nil {
			t.Fatalf("archive events %d-%d: %v", events[0].Seq, events[n-1].Seq, err)
		}
		events = events[n:]
	}
}
