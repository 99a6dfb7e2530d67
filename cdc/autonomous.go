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
	a, signed, err := decodeAutonomous(msg.Content, r.ctxKey)
	switch {
	case !signed:
		r.log.Warn("ignored an event message that is not audit.log_event_autonomous's (forged)", "lsn", msg.LSN)
		return nil
	case err != nil:
		// audit.log_event_autonomous wrote it and returned its event_id: never lose it quietly.
		r.log.Error("CAPTURE GAP: an autonomous event cannot be read; recorded as a gap", "lsn", msg.LSN, "err", err)
		return r.recordFlagged(ctx, "autonomous event", msg.LSN.String(), map[string]any{
			"capture_warning": "an event audit.log_event_autonomous wrote cannot be read: " + err.Error(),
			"lsn":             msg.LSN.String(), "bytes": len(msg.Content)})
	}
	if !r.pending() {
		r.batchStart = time.Now()
	}
	end := msg.LSN
	r.unsealed = append(r.unsealed, walTx{commit: a.OccurredAt, end: end, event: a})
	r.unsealedN++
	r.batchCommits = append(r.batchCommits, a.OccurredAt)
	r.batchLSN = end
	if r.mayFlush() && (len(r.batch)+r.unsealedN >= r.cfg.BatchEvents || r.batchBytes >= r.cfg.BatchBytes || r.cutAt > 0) {
		return r.flush(ctx)
	}
	return nil
}

// entry is the unchained entry of an autonomous event.
func (a *autonomousEvent) entry() pgtrail.Event {
	e := pgtrail.Event{EventID: a.EventID, OccurredAt: a.OccurredAt.UTC().Truncate(time.Microsecond), ActionType: a.ActionType,
		ResourceType: a.ResourceType, ResourceID: a.ResourceID, Outcome: a.Outcome, ChangedColumns: []string{}}
	if len(a.Details) > 0 && string(a.Details) != "null" {
		d := string(a.Details)
		e.Details = &d
	}
	return e
}
