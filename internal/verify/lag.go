package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// CaptureLagged: committed changes have waited longer than the allowed capture lag to reach the
// chain (no sealer or stream running, or one falling behind), or cannot reach it (the slot of
// tables in mode wal is gone).
const CaptureLagged Kind = "capture_lag"

// ErrStandby: the capture lag is checked on the primary, not on a standby.
var ErrStandby = errors.New("the database is a standby: capture lag is checked on the primary")

// DefaultMaxCaptureLag is how long a committed change may wait to be chained before verify says so.
const DefaultMaxCaptureLag = 3 * time.Minute

// CaptureConn is what CaptureLag needs: a connection (it writes a probe and waits).
type CaptureConn interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// CaptureLag checks that nothing committed has waited longer than max to be chained: the oldest
// entry of audit.pending (trigger capture, DDL, events when no stream reads the WAL), and, when
// tables are in mode wal or the slot is a stream's (audit.stream_slots: application events are
// written to the WAL, schema 15 and 16), what the slot holds. With a stream reading the slot, a message committed now must
// be confirmed within max; with none, the slot's pending changes are read without consuming
// them and the oldest change to a table in mode wal dates the lag. It returns the problems found;
// an error means it could not check.
func CaptureLag(ctx context.Context, db CaptureConn, slot string, max time.Duration) ([]Problem, error) {
	var problems []Problem
	add := func(format string, args ...any) {
		problems = append(problems, Problem{Kind: CaptureLagged, Source: SourceDB, Detail: fmt.Sprintf(format, args...)})
	}
	var standby bool
	if err := db.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&standby); err != nil {
		return nil, fmt.Errorf("read capture state: %w", err)
	}
	if standby {
		// A standby neither seals nor holds the primary's logical slot: check on the primary.
		return nil, ErrStandby
	}
	var pendingAge *float64
	var walTables, streamed bool
	var slotDB *string
	var active bool
	err := db.QueryRow(ctx, `
		SELECT (SELECT extract(epoch FROM clock_timestamp() - min(occurred_at))::float8 FROM audit.pending),
		       EXISTS (SELECT FROM audit.audited_tables WHERE mode = 'wal'),
		       EXISTS (SELECT FROM audit.stream_slots WHERE slot = $1),
		       (SELECT database::text FROM pg_replication_slots WHERE slot_name = $1),
		       COALESCE((SELECT active FROM pg_replication_slots WHERE slot_name = $1), false)`, slot).
		Scan(&pendingAge, &walTables, &streamed, &slotDB, &active)
	if err != nil {
		return nil, fmt.Errorf("read capture state: %w", err)
	}
	if pendingAge != nil && time.Duration(*pendingAge*float64(time.Second)) > max {
		add("the oldest entry in audit.pending has waited %s to be sealed (more than %s): is pgtrail stream or pgtrail seal running?",
			time.Duration(*pendingAge*float64(time.Second)).Round(time.Second), max)
	}
	// A stream's slot that is gone took what waited in it (application events, with no table
	// in mode wal) with it: the stream records the gap when it starts again under that name;
	// until then, or if it never does, verify says so. A stream given up on purpose is taken
	// out of audit.stream_slots by a superuser.
	gone, err := goneSlots(ctx, db)
	if err != nil {
		return nil, err
	}
	for _, g := range gone {
		if g != slot || !walTables {
			add("the replication slot %s that pgtrail stream read is gone: what waited in it (application events written to the WAL) is lost unless a stream starts again with --slot %s, which records the gap; a stream given up on purpose is removed with DELETE FROM audit.stream_slots WHERE slot = '%s'", g, g, g)
		}
	}
	if slotDB == nil {
		if walTables {
			add("tables are in mode wal but the replication slot %s is gone: their changes are not captured", slot)
		}
		return problems, nil
	}
	if !walTables && !streamed {
		return problems, nil
	}
	if active {
		return append(problems, probe(ctx, db, slot, max)...), nil
	}
	age, full, err := oldestUnchained(ctx, db, slot)
	if err != nil {
		return nil, err
	}
	if full && age == 0 {
		// Anyone can write messages into the WAL; a flood of them must not hide what follows.
		add("slot %s holds more than %d unread changes and messages, and no pgtrail stream reads it", slot, peekLimit)
	}
	if age > max {
		add("changes to tables in mode wal or application events have waited %s in slot %s to be chained (more than %s), and no pgtrail stream reads it (pgtrail seal --once chains them)",
			age.Round(time.Second), slot, max)
	}
	return problems, nil
}

// probe commits a message now and waits up to max for the stream to confirm it: everything
// committed before it is then chained and archived.
func probe(ctx context.Context, db CaptureConn, slot string, max time.Duration) []Problem {
	var lsn string
	err := db.QueryRow(ctx, `SELECT (pg_logical_emit_message(true, 'pgtrail', 'verify-probe') + 0)::text
	                           FROM set_config('synchronous_commit', 'on', true)`).Scan(&lsn)
	if err != nil {
		return []Problem{{Kind: CaptureLagged, Source: SourceDB, Detail: "could not write the capture probe, so the stream's lag is unknown: " + err.Error()}}
	}
	deadline := time.Now().Add(max)
	for {
		var done bool
		if err := db.QueryRow(ctx, `SELECT COALESCE((SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1), false)`,
			slot, lsn).Scan(&done); err == nil && done {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return []Problem{{Kind: CaptureLagged, Source: SourceDB, Detail: fmt.Sprintf(
				"the stream reading slot %s did not chain and archive what was committed before %s within %s", slot, time.Now().Add(-max).UTC().Format(time.RFC3339), max)}}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// goneSlots lists the slots audit.stream_slots names that no longer exist in this database.
func goneSlots(ctx context.Context, db CaptureConn) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT t.slot FROM audit.stream_slots t WHERE NOT EXISTS (
	                              SELECT FROM pg_replication_slots s WHERE s.slot_name = t.slot AND s.database = current_database())
	                            ORDER BY t.slot`)
	if err != nil {
		return nil, fmt.Errorf("read the stream's slots: %w", err)
	}
	defer rows.Close()
	var gone []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("read the stream's slots: %w", err)
		}
		gone = append(gone, s)
	}
	return gone, rows.Err()
}

// peekLimit bounds what oldestUnchained reads of a slot.
const peekLimit = 100_000

// oldestUnchained reads the slot's pending changes without consuming them (at most peekLimit)
// and returns the age of the oldest committed transaction that changed a table in mode wal or
// wrote an application event, or of the oldest autonomous event, 0 when there is none; full
// says the limit was reached. A message's content is anyone's to write: an autonomous event is
// dated by the commit before it; first in the slot, by the one after it or its own date,
// whichever is older (a forged date can raise a false alarm while no stream reads the slot, never
// hide a real event: found by red-teaming, a lone event was not reported at all).
func oldestUnchained(ctx context.Context, db CaptureConn, slot string) (age time.Duration, full bool, err error) {
	rows, err := db.Query(ctx, `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2,
	                              'proto_version', '1', 'publication_names', 'pgtrail', 'messages', 'true')`, slot, peekLimit)
	if err != nil {
		return 0, false, fmt.Errorf("read slot %s: %w", slot, err)
	}
	defer rows.Close()
	var commit time.Time
	undated := false         // an autonomous event before any transaction
	var ownAge time.Duration // the oldest of their own dates
	audit := map[uint32]bool{}
	n := 0
	for rows.Next() {
		n++
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return 0, false, fmt.Errorf("read slot %s: %w", slot, err)
		}
		msg, err := pglogrepl.Parse(data)
		if err != nil {
			continue
		}
		switch m := msg.(type) {
		case *pglogrepl.RelationMessage:
			audit[m.RelationID] = m.Namespace == "audit"
		case *pglogrepl.BeginMessage:
			commit = m.CommitTime
			if undated {
				return max(time.Since(commit), ownAge), false, nil
			}
		case *pglogrepl.InsertMessage:
			if !audit[m.RelationID] {
				return time.Since(commit), false, nil
			}
		case *pglogrepl.UpdateMessage:
			if !audit[m.RelationID] {
				return time.Since(commit), false, nil
			}
		case *pglogrepl.DeleteMessage:
			if !audit[m.RelationID] {
				return time.Since(commit), false, nil
			}
		case *pglogrepl.TruncateMessage:
			return time.Since(commit), false, nil
		case *pglogrepl.LogicalDecodingMessage:
			switch {
			case m.Prefix != "pgtrail.event":
				// context messages, heartbeats, probes
			case m.Transactional:
				return time.Since(commit), false, nil
			case commit.IsZero():
				undated = true
				ownAge = max(ownAge, messageAge(m.Content))
			default:
				return time.Since(commit), false, nil
			}
		}
	}
	if undated {
		return ownAge, false, rows.Err()
	}
	return 0, n >= peekLimit, rows.Err()
}

// messageAge is how long ago an event message ("<json>\n<MAC>") says it was written, 0 when it
// does not say or says the future.
func messageAge(content []byte) time.Duration {
	var body struct {
		OccurredAt time.Time `json:"occurred_at"`
	}
	i := bytes.LastIndexByte(content, '\n')
	if i < 0 || json.Unmarshal(content[:i], &body) != nil || body.OccurredAt.IsZero() {
		return 0
	}
	return max(time.Since(body.OccurredAt), 0)
}
