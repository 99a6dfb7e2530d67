// Package archivetest reads a whole archive back and makes archives fail, for tests.
package archivetest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
)

// Events returns every archived event sorted by seq. It fails the test when a seq is archived
// twice or missing below the highest one.
func Events(t testing.TB, sink archive.Sink) []pgtrail.Event {
	t.Helper()
	ctx := context.Background()
	keys, err := sink.List(ctx, archive.EventsPrefix)
	if err != nil {
		t.Fatal(err)
	}
	bySeq := map[int64]pgtrail.Event{}
	var maxSeq int64
	for _, k := range keys {
		data, err := sink.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := archive.DecodeParquet(data)
		if err != nil {
			t.Fatalf("decode %s: %v", k, err)
		}
		for _, e := range evs {
			if _, dup := bySeq[e.Seq]; dup {
				t.Errorf("seq %d archived twice (again in %s)", e.Seq, k)
			}
			bySeq[e.Seq] = e
			maxSeq = max(maxSeq, e.Seq)
		}
	}
	out := make([]pgtrail.Event, 0, len(bySeq))
	for s := int64(1); s <= maxSeq; s++ {
		e, ok := bySeq[s]
		if !ok {
			t.Fatalf("seq %d missing from the archive (highest %d)", s, maxSeq)
		}
		out = append(out, e)
	}
	return out
}

// FlakySink passes the first N Puts to Sink and fails every later one with a network error, as
// an archive going away in the middle of a batch does; N < 0 never fails.
type FlakySink struct {
	archive.Sink
	mu sync.Mutex
	N  int
}

func (f *FlakySink) Put(ctx context.Context, key string, data []byte) error {
	f.mu.Lock()
	ok := f.N != 0
	if f.N > 0 {
		f.N--
	}
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("put %s: %w", key, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	}
	return f.Sink.Put(ctx, key, data)
}

// Recover ends the outage: every later Put reaches Sink.
func (f *FlakySink) Recover() {
	f.mu.Lock()
	f.N = -1
	f.mu.Unlock()
}
