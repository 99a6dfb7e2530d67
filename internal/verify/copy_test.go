package verify

import (
	"context"
	"errors"
	"testing"
)

// TestBatchPool_Get: a stream's pool makes batches only while none is free and fewer than its
// size exist, hands back the ones returned to it, and stops waiting when the run is cancelled.
func TestBatchPool_Get(t *testing.T) {
	ctx := context.Background()
	p := newBatchPool(2)
	a, err := p.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a.pool <- a // checked and returned before the next get: reused, nothing made
	if b, _ := p.get(ctx); b != a || p.made != 1 {
		t.Fatalf("got %p after returning %p (made %d); want the returned batch, one made", b, a, p.made)
	}
	b, err := p.get(ctx) // none free, one more may be made
	if err != nil || b == a || p.made != 2 {
		t.Fatalf("second batch: %v, same as first %v, made %d", err, b == a, p.made)
	}
	stop := errors.New("stopped")
	cctx, cancel := context.WithCancelCause(ctx)
	cancel(stop)
	if _, err := p.get(cctx); !errors.Is(err, stop) || p.made != 2 {
		t.Fatalf("full pool, cancelled: err %v, made %d; want the cause and no third batch", err, p.made)
	}
	b.pool <- b
	if c, err := p.get(cctx); err != nil || c != b {
		t.Fatalf("a free batch is handed out even when cancelled: got %p, %v", c, err)
	}
}
