package cdc

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// decodeAutonomous reads an autonomous event's message, or returns nil when it is not one of
// audit.log_event_autonomous's (any session can emit a message with the prefix): its MAC does
// not check, or its content is not what the function writes.
func decodeAutonomous(content, key []byte) *autonomousEvent {
	body := signedBody(content, key)
	if body == nil {
		return nil
	}
	var a autonomousEvent
	if err := json.Unmarshal(body, &a); err != nil {
		return nil
	}
	switch {
	case !autonomousAction.MatchString(a.ActionType), a.ResourceType == "", !autonomousUUID.MatchString(a.EventID),
		a.Outcome != "SUCCESS" && a.Outcome != "FAILURE" && a.Outcome != "UNAUTHORIZED", a.OccurredAt.IsZero():
		return nil
	}
	return &a
}

// autonomous takes an autonomous event's message: it waits with the changes of mode wal not
// chained yet, and is chained in its place among them. Its position is one past the message's
// LSN: a transaction that ends where the message starts comes before it.
func (r *receiver) autonomous(ctx context.Context, msg *pglogrepl.LogicalDecodingMessage) error {
	a := decodeAutonomous(msg.Content, r.ctxKey)
	if a == nil {
		r.log.Warn("ignored an event message that is not audit.log_event_autonomous's (forged or damaged)", "lsn", msg.LSN)
		return nil
	}
	if !r.pending() {
		r.batchStart = time.Now()
	}
	end := msg.LSN + 1
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
