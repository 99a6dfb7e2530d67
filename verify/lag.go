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
	if slotDB == nil {
		// Application events are written to the WAL only while a stream's slot exists.
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
	age, err := oldestUnchained(ctx, db, slot)
	if err != nil {
		return nil, err
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

// oldestUnchained reads the slot's pending changes without consuming them (at most a bounded
// number) and returns the age of the oldest committed transaction that changed a table in mode
// wal or wrote an application event, or of the oldest autonomous event (its occurred_at), 0 when
// there is none.
func oldestUnchained(ctx context.Context, db CaptureConn, slot string) (time.Duration, error) {
	rows, err := db.Query(ctx, `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, 100000,
	                              'proto_version', '1', 'publication_names', 'pgtrail', 'messages', 'true')`, slot)
	if err != nil {
		return 0, fmt.Errorf("read slot %s: %w", slot, err)
	}
	defer rows.Close()
	var commit time.Time
	audit := map[uint32]bool{}
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return 0, fmt.Errorf("read slot %s: %w", slot, err)
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
		case *pglogrepl.InsertMessage:
			if !audit[m.RelationID] {
				return time.Since(commit), nil
			}
		case *pglogrepl.UpdateMessage:
			if !audit[m.RelationID] {
				return time.Since(commit), nil
			}
		case *pglogrepl.DeleteMessage:
			if !audit[m.RelationID] {
				return time.Since(commit), nil
			}
		case *pglogrepl.TruncateMessage:
			return time.Since(commit), nil
		case *pglogrepl.LogicalDecodingMessage:
			if m.Prefix != "pgtrail.event" {
				continue // context messages, heartbeats, probes
			}
			if m.Transactional {
				return time.Since(commit), nil
			}
			// Written outside any transaction: its own time says how long it has waited
			// ("<json>\n<MAC>"; unreadable, it is as old as the transaction before it).
			var body struct {
				OccurredAt time.Time `json:"occurred_at"`
			}
			if i := bytes.LastIndexByte(m.Content, '\n'); i > 0 && json.Unmarshal(m.Content[:i], &body) == nil && !body.OccurredAt.IsZero() {
				return time.Since(body.OccurredAt), nil
			}
			return time.Since(commit), nil
		}
	}
	return 0, rows.Err()
}
