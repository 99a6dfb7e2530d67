// Package backoff is the one retry wait of pgtrail's loops that try again (the stream's sessions
// and uploads, alert and verification webhooks): exponential, capped, with jitter so that many
// retrying clients do not hit a recovering server in step.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay is the wait before retry number attempt (1 for the first retry): first doubled per
// attempt up to limit, then a uniformly drawn point between half of that and all of it.
func Delay(first, limit time.Duration, attempt int) time.Duration {
	d := first << min(max(attempt-1, 0), 30)
	if d <= 0 || d > limit {
		d = limit
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d or until ctx is done; it reports whether the full wait elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
