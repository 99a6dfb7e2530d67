// Package chain runs the sealer: the loop that chains committed audit entries into audit.events by
// calling audit.seal() (see docs/design.md for why chaining happens off the writers' path).
package chain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Querier is what the sealer needs from a connection or pool.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DefaultBatch is the most entries one audit.seal() call chains.
const DefaultBatch = 50000

// DefaultInterval is how often the sealer looks for entries to seal.
const DefaultInterval = 200 * time.Millisecond

// SealOnce calls audit.seal(batch) until it finds nothing more to seal and returns how many
// entries it chained. Entries of transactions still open stay pending.
func SealOnce(ctx context.Context, db Querier, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultBatch
	}
	var total int64
	for {
		var n int64
		if err := db.QueryRow(ctx, "SELECT audit.seal($1)", batch).Scan(&n); err != nil {
			return total, fmt.Errorf("seal: %w", err)
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
	}
}

// Sealer calls SealOnce every Interval until stopped.
type Sealer struct {
	DB       Querier
	Interval time.Duration
	Batch    int
	Logger   *slog.Logger
	// OnSeal, when set, is called after each round that sealed entries.
	OnSeal func(n int64)

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Start runs the loop in the background. Errors are logged and retried at the next tick: a
// sealer that stops would let pending entries pile up, and the next round catches up.
func (s *Sealer) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	interval := s.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			n, err := SealOnce(ctx, s.DB, s.Batch)
			switch {
			case err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil:
				log.Error("seal failed, retrying", "err", err)
			case n > 0:
				log.Debug("sealed", "entries", n)
				if s.OnSeal != nil {
					s.OnSeal(n)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends the loop and waits for it. Safe to call twice.
func (s *Sealer) Stop() {
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
	})
	s.wg.Wait()
}
