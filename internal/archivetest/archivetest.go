// Package archivetest reads a whole archive back for tests.
package archivetest

import (
	"context"
	"testing"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/archive"
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
