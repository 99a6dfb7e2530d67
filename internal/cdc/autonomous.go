package cdc

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgtrail/pgtrail"
)

// Autonomous events (schema 15): audit.log_event_autonomous writes an application event as a
// non-transactional logical message, which the WAL keeps whether or not the caller's transaction
// commits (a FAILED_LOGIN in a transaction that then fails). The stream chains it in WAL order,
// as it chains the changes of tables in mode wal.

// eventPrefix is the prefix of audit.log_event_autonomous's messages.
const eventPrefix = "pgtrail.event"

// autonomousEvent is what audit.log_event_autonomous emits, as its JSON keys: the event and the
// caller's session context.
type autonomousEvent struct {
	sessionContext
	EventID      string          `json:"event_id"`
	OccurredAt   time.Time       `json:"occurred_at"`
	ActionType   string          `json:"action_type"`
	ResourceType string          `json:"resource_type"`
	ResourceID   *string         `json:"resource_id"`
	Outcome      string          `json:"outcome"`
	Details      json.RawMessage `json:"details"`
	// Autonomous: written by audit.log_event_autonomous, outside any transaction; false: by
	// audit.log_event in a transaction (schema 16 signs which writer it was; nil: schema 15,
	// whose only writer was the autonomous one).
	Autonomous *bool `json:"autonomous"`
}

// What audit.log_event_autonomous accepts; a message that says otherwise is not its.
var (
	autonomousAction = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,62}$`)
	autonomousUUID   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// signedBody returns the body of a message "<json>\n<hex MAC>" whose MAC checks with key
// (SHA-256(key ‖ SHA-256(key ‖ json)), as audit.emit_signed_context and
// audit.log_event_autonomous write it), or nil.
func signedBody(content, key []byte) []byte {
	i := bytes.LastIndexByte(content, '\n')
	if i < 0 || len(key) == 0 {
		return nil
	}
	body, mac := content[:i], content[i+1:]
	if len(mac) != 2*sha256.Size {
		return nil
	}
	inner := sha256.Sum256(append(append([]byte(nil), key...), body...))
	want := sha256.Sum256(append(append([]byte(nil), key...), inner[:]...))
	got := make([]byte, sha256.Size)
	if n, err := hex.Decode(got, mac); err != nil || n != sha256.Size || !hmac.Equal(got, want[:]) {
		return nil
	}
	return body
}

// decodeAutonomous reads an autonomous event's message. It returns nil when the message is not
// one of audit.log_event_autonomous's (any session can emit a message with the prefix): its MAC
// does not check (signed false); or, signed, when its content cannot be read as what the
// function writes (an error then says why).
func decodeAutonomous(content, key []byte) (a *autonomousEvent, signed bool, err error) {
	body := signedBody(content, key)
	if body == nil {
		return nil, false, nil
	}
	a = &autonomousEvent{}
	if err := json.Unmarshal(body, a); err != nil {
		return nil, true, err
	}
	switch {
	case !autonomousAction.MatchString(a.ActionType), a.ResourceType == "", !autonomousUUID.MatchString(a.EventID),
		a.Outcome != "SUCCESS" && a.Outcome != "FAILURE" && a.Outcome != "UNAUTHORIZED", a.OccurredAt.IsZero():
		return nil, true, fmt.Errorf("fields out of form (action %q, resource type %q, event id %q, outcome %q)",
			a.ActionType, a.ResourceType, a.EventID, a.Outcome)
	}
	return a, true, nil
}

// autonomous takes an autonomous event's message: it waits with the changes of mode wal not
// chained yet, and is chained in its place among them. pgoutput gives a non-transactional
// message the LSN where its record ends, which is where the next record (often the caller's own
// commit) starts: that is its position, and what may be acknowledged once it is chained. One
// past it would tell PostgreSQL a commit starting there was had already.
func (r *receiver) autonomous(ctx context.Context, msg *pglogrepl.LogicalDecodingMessage) error {
	a, err := r.eventMessage(ctx, msg, "audit.log_event_autonomous", "autonomous event")
	if a == nil {
		return err
	}
	if a.Autonomous != nil && !*a.Autonomous {
		// A transactional writer's message, copied out of the WAL and emitted again outside any
		// transaction (found by red-teaming: a ROLE_GRANT rolled back was chained this way).
		r.log.Warn("ignored a transactional event message emitted outside its transaction (replayed)", "lsn", msg.LSN, "event_id", a.EventID)
		return nil
	}
	if !r.pending() {
		r.batchStart = time.Now()
	}
	end := msg.LSN
	r.unsealed = append(r.unsealed, walTx{commit: a.OccurredAt, end: end, changes: []change{a.change()}})
	r.unsealedN++
	r.batchCommits = append(r.batchCommits, a.OccurredAt)
	r.batchLSN = end
	if r.mayFlush() && (len(r.batch)+r.unsealedN >= r.cfg.BatchEvents || r.batchBytes >= r.cfg.BatchBytes || r.cutAt > 0) {
		return r.flush(ctx)
	}
	return nil
}

// change is the event as one change of its transaction.
func (a *autonomousEvent) change() change {
	return change{action: a.ActionType, ctx: &a.sessionContext, event: a}
}

// transactionalEvent takes an application event audit.log_event wrote as a transactional
// message (schema 16): it is chained with the transaction's changes, in its place among them,
// when the transaction commits, and never if it rolls back. Only a message of this very
// transaction counts: one copied from another (its xid says so) is not believed.
func (r *receiver) transactionalEvent(ctx context.Context, msg *pglogrepl.LogicalDecodingMessage) error {
	a, err := r.eventMessage(ctx, msg, "audit.log_event", "application event")
	if a == nil {
		return err
	}
	if a.Autonomous == nil || *a.Autonomous || !sameXID(a.XID, r.txXID) {
		r.log.Warn("ignored an event message of another transaction (replayed)", "lsn", msg.LSN, "xid", r.txXID, "its_xid", a.XID)
		return nil
	}
	r.txChanges = append(r.txChanges, a.change())
	return nil
}

// eventMessage reads an event message that writer (the SQL function) wrote: nil when it is not
// believed (any session can emit a message with the prefix; logged), or when it cannot be read:
// the writer returned its event_id, so it is recorded as a CAPTURE_GAP entry (kind), never
// dropped quietly.
func (r *receiver) eventMessage(ctx context.Context, msg *pglogrepl.LogicalDecodingMessage, writer, kind string) (*autonomousEvent, error) {
	a, signed, err := decodeAutonomous(msg.Content, r.ctxKey)
	switch {
	case !signed:
		r.log.Warn("ignored an event message that is not "+writer+"'s (forged)", "lsn", msg.LSN)
		return nil, nil
	case err != nil:
		r.log.Error("CAPTURE GAP: an event message cannot be read; recorded as a gap", "kind", kind, "lsn", msg.LSN, "err", err)
		return nil, r.recordFlagged(ctx, kind, msg.LSN.String(), map[string]any{
			"capture_warning": "an event " + writer + " wrote cannot be read: " + err.Error(),
			"lsn":             msg.LSN.String(), "bytes": len(msg.Content)})
	}
	return a, nil
}

// sameXID reports whether xid8, a transaction's full id as text, is the 32-bit xid of the WAL.
func sameXID(xid8 string, xid uint32) bool {
	v, err := strconv.ParseUint(xid8, 10, 64)
	return err == nil && uint32(v) == xid
}

// entry is the unchained entry of an autonomous event.
func (a *autonomousEvent) entry() pgtrail.Event {
	e := pgtrail.Event{EventID: a.EventID, OccurredAt: a.OccurredAt.UTC().Truncate(time.Microsecond), ActionType: a.ActionType,
		ResourceType: a.ResourceType, ResourceID: a.ResourceID, Outcome: a.Outcome, ChangedColumns: []string{}}
	// Schema 16 leaves the key out for SQL NULL details, so JSON null is kept; schema 15 wrote
	// null for both.
	if len(a.Details) > 0 && (a.Autonomous != nil || string(a.Details) != "null") {
		d := string(a.Details)
		e.Details = &d
	}
	return e
}
