package verify

import (
	"context"
	"testing"
	"time"
)

// TestSlicePool_Reuse: the slices of a walk's batches are reused rather than made afresh (each
// fresh one costs page faults), the best fitting first, and the free list stays bounded.
func TestSlicePool_Reuse(t *testing.T) {
	var p slicePool[entry]
	small, large := p.get(100), p.get(1000)
	if cap(small) < 100 || cap(large) < 1000 || len(small) != 0 {
		t.Fatalf("get(100), get(1000): caps %d, %d, len %d", cap(small), cap(large), len(small))
	}
	p.put(append(large, entry{seq: 1}))
	p.put(small)
	if got := p.get(90); &got[:1][0] != &small[:1][0] || len(got) != 0 {
		t.Errorf("get(90) did not return the smallest free slice that fits, emptied")
	}
	if got := p.get(500); &got[:1][0] != &large[:1][0] {
		t.Errorf("get(500) did not reuse the large slice")
	}
	if got := p.get(2000); cap(got) < 2000 {
		t.Errorf("get(2000) with nothing free: cap %d", cap(got))
	}
	if got := p.get(1 << 40); cap(got) > 2<<20 {
		t.Errorf("get(1<<40): cap %d; a batch range read from a key name must not size memory", cap(got))
	}
	for i := range 3 * maxFreeSlices {
		p.put(make([]entry, 0, i+1))
	}
	if len(p.free) != maxFreeSlices {
		t.Errorf("%d slices kept, want at most %d", len(p.free), maxFreeSlices)
	}
	for _, s := range p.free {
		if cap(s) <= 2*maxFreeSlices {
			t.Errorf("kept a slice of cap %d: the smallest should be dropped first", cap(s))
		}
	}
}

// TestSlicePool_Largest: a read of unknown size gets the largest free buffer, and nil from an
// empty pool.
func TestSlicePool_Largest(t *testing.T) {
	var p slicePool[byte]
	if got := p.largest(); got != nil {
		t.Fatalf("largest() of an empty pool = %d bytes of room, want nil", cap(got))
	}
	for _, n := range []int{10, 1000, 100} {
		p.put(make([]byte, 5, n))
	}
	for _, want := range []int{1000, 100, 10} {
		if got := p.largest(); cap(got) != want || len(got) != 0 {
			t.Errorf("largest() = len %d cap %d, want an empty slice of cap %d", len(got), cap(got), want)
		}
	}
}

// TestReadAhead_Readers: the read-ahead starts with one reader, starts one more for each time a
// worker had to wait, never more than maxReaders, hands on every batch, and closes its output
// once its input is closed.
func TestReadAhead_Readers(t *testing.T) {
	out := make(chan *batchJob)
	ra := startReadAhead(context.Background(), nil, &slicePool[byte]{}, out)
	send := func(n int) {
		for range n {
			j := &batchJob{keys: &batchKeys{}} // nothing to read: fetchBatch only marks it read
			ra.in <- j
			if got := <-out; got != j || !got.fetched {
				t.Fatalf("handed on %p (read %v), want %p read", got, got.fetched, j)
			}
		}
	}
	waitReaders := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for ra.readers() != want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := ra.readers(); got != want {
			t.Fatalf("readers: %d, want %d", got, want)
		}
	}
	send(5)
	if got := ra.readers(); got != 1 {
		t.Fatalf("readers with no worker waiting: %d, want 1", got)
	}
	ra.starved()
	ra.starved()
	waitReaders(3)
	send(5)
	for range 3 * maxReaders {
		ra.starved()
	}
	waitReaders(maxReaders)
	send(20)
	ra.close()
	select {
	case _, ok := <-out:
		if ok {
			t.Fatal("a batch came out that was never sent")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("output not closed after the input was")
	}
}
