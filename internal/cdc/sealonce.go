package cdc

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
	"github.com/pgtrail/pgtrail/internal/backoff"
)

// SealOnce chains every change to a table in mode 'wal' committed before it started, as the
// stream does, and returns: for `pgtrail seal --once` when no stream runs. It writes no archive:
// the slot moves past the changes once they are in audit.events, and the stream, when it next
// runs, archives them from the table (as it does entries sealed before its slot existed).
// cfg.ExitWhenCaughtUp is implied; cfg.Slot must not be in use by a running stream.
func SealOnce(ctx context.Context, cfg Config) (int64, error) {
	cfg = cfg.withDefaults()
	waited, err := awaitRunningStream(ctx, cfg)
	if err != nil || waited {
		return 0, err
	}
	cfg.ExitWhenCaughtUp = true
	t := &tableOnly{}
	s, err := New(cfg, t)
	if err != nil {
		return 0, err
	}
	t.s = s
	if err := s.Run(ctx); err != nil {
		return t.sealed, err
	}
	// Run stops without an error when ctx ends (a daemon asked to stop): here that means it
	// stopped before it caught up, which a script must not read as done.
	if ctx.Err() != nil {
		return t.sealed, fmt.Errorf("stopped before everything committed before the start was chained (%d entries chained): %w", t.sealed, ctx.Err())
	}
	return t.sealed, nil
}

// awaitRunningStream waits, when a stream holds the slot, until it has acknowledged the WAL
// written before the call (so chained and archived everything committed before it), and
// reports whether it did.
func awaitRunningStream(ctx context.Context, cfg Config) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var target string
	var active bool
	// The insert position, not the write position: a transaction committed asynchronously
	// before the call may not be written yet, and is committed before it all the same.
	err = conn.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text, COALESCE((SELECT active FROM pg_replication_slots WHERE slot_name = $1), false)`,
		cfg.Slot).Scan(&target, &active)
	if err != nil || !active {
		return false, err
	}
	cfg.Logger.Info("a stream holds the slot: waiting for it to chain what was committed before now", "slot", cfg.Slot, "lsn", target)
	for {
		var done, still bool
		err := conn.QueryRow(ctx, `SELECT COALESCE(confirmed_flush_lsn >= $2::pg_lsn, false), COALESCE(active, false)
		                             FROM pg_replication_slots WHERE slot_name = $1`, cfg.Slot, target).Scan(&done, &still)
		if err != nil {
			return false, fmt.Errorf("watch slot %s: %w", cfg.Slot, err)
		}
		if done {
			return true, nil
		}
		if !still {
			return false, nil // the stream stopped: do the work here
		}
		if !backoff.Sleep(ctx, 100*time.Millisecond) {
			return false, ctx.Err()
		}
	}
}

// tableOnly is the archive of SealOnce: it stands where audit.events ends and keeps nothing.
type tableOnly struct {
	s      *Stream
	sealed int64
}

// Resume reports the chain head as archived, so that nothing is read back from the table.
func (t *tableOnly) Resume(ctx context.Context) (archive.ResumeState, error) {
	var st archive.ResumeState
	if err := t.s.pool.QueryRow(ctx, "SELECT seq, entry_hash FROM audit.chain_head").Scan(&st.LastSeq, &st.LastEntryHash); err != nil {
		return st, fmt.Errorf("read chain head: %w", err)
	}
	return st, nil
}

// WriteBatch counts what was chained.
func (t *tableOnly) WriteBatch(_ context.Context, events []pgtrail.Event) error {
	t.sealed += int64(len(events))
	return nil
}
