package backoff

import (
	"context"
	"testing"
	"time"
)

// TestDelay: each attempt's wait lies in [half, all] of first doubled per attempt, capped at
// limit, and never overflows into a negative or zero wait however many attempts were made.
func TestDelay(t *testing.T) {
	for _, c := range []struct {
		first, limit time.Duration
		attempt      int
		want         time.Duration // before jitter
	}{
		{100 * time.Millisecond, 30 * time.Second, 1, 100 * time.Millisecond},
		{100 * time.Millisecond, 30 * time.Second, 2, 200 * time.Millisecond},
		{100 * time.Millisecond, 30 * time.Second, 10, 30 * time.Second},
		{time.Second, time.Minute, 0, time.Second},
		{time.Second, time.Minute, 1 << 20, time.Minute},
		{time.Hour, time.Minute, 1, time.Minute},
	} {
		for range 100 {
			if d := Delay(c.first, c.limit, c.attempt); d < c.want/2 || d > c.want {
				t.Fatalf("Delay(%v, %v, %d) = %v, want within [%v, %v]", c.first, c.limit, c.attempt, d, c.want/2, c.want)
			}
		}
	}
}

// TestSleep: a canceled context ends the wait at once and says so.
func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep of 1ms with a live context: false, want true")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) || time.Since(start) > time.Second {
		t.Error("Sleep with a canceled context did not return false at once")
	}
}
