package auditctx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Actions commonly recorded with Log. Any upper-case word of letters, digits and underscores
// (at most 63 characters, starting with a letter) is accepted.
const (
	ActionLogin       = "LOGIN"
	ActionLogout      = "LOGOUT"
	ActionFailedLogin = "FAILED_LOGIN"
	ActionExport      = "EXPORT"
	ActionViewPII     = "VIEW_PII"
)

// Outcome is how the recorded action ended.
type Outcome string

// The outcomes audit.log_event accepts.
const (
	Success      Outcome = "SUCCESS"
	Failure      Outcome = "FAILURE"
	Unauthorized Outcome = "UNAUTHORIZED"
)

// Event is an application event that is not a table write, recorded by Log.
type Event struct {
	// Action is what happened, e.g. ActionLogin. Required.
	Action string
	// ResourceType is the kind of thing acted upon, e.g. "user" or "report". Required.
	ResourceType string
	// ResourceID identifies the thing acted upon; empty means none.
	ResourceID string
	// Outcome defaults to Success.
	Outcome Outcome
	// Details is encoded with encoding/json into the entry's details; nil means none. It is stored
	// in the tamper-evident trail for good: keep secrets and needless personal data out of it.
	Details any
	// Autonomous records the event even if the transaction rolls back (a FAILED_LOGIN whose
	// transaction then fails): audit.log_event_autonomous, which writes it to the WAL at once for
	// pgtrail stream to chain. It needs the stream's replication slot (refused without one) and
	// an application event type (not one of pgtrail's own).
	Autonomous bool
}

// ErrInvalidEvent is returned (wrapped) by Log and LogSQL for an Event that audit.log_event would
// refuse. They check before sending anything, so the caller's transaction stays usable.
var ErrInvalidEvent = errors.New("invalid audit event")

// The rule audit.log_event enforces on action_type.
var actionPattern = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,62}$`)

// logEventSQL records an event with the transaction's current settings.
const logEventSQL = `SELECT audit.log_event($1, $2, $3, $4, $5::jsonb)`

// logEventWithActorSQL first applies an Actor to the transaction, as setSettingsSQL does with
// is_local true, then records the event. The materialized CTE is evaluated before the outer
// target list, so log_event sees the new settings.
const logEventWithActorSQL = `WITH ctx AS MATERIALIZED (
  SELECT set_config('pgtrail.actor_id', $6, true), set_config('pgtrail.actor_ip', $7, true),
         set_config('pgtrail.user_agent', $8, true), set_config('pgtrail.request_id', $9, true),
         set_config('pgtrail.tenant_id', $10, true))
SELECT audit.log_event($1, $2, $3, $4, $5::jsonb) FROM ctx`

// logStatement returns the statement and arguments that record e with ctx's Actor, if any.
func logStatement(ctx context.Context, e Event) (string, []any, error) {
	args, err := e.args()
	if err != nil {
		return "", nil, err
	}
	q := logEventSQL
	a, ok := From(ctx)
	if ok {
		q, args = logEventWithActorSQL, append(args, settingArgs(a)...)
	}
	if e.Autonomous {
		q = strings.Replace(q, "audit.log_event(", "audit.log_event_autonomous(", 1)
	}
	return q, args, nil
}

// args validates e and returns the arguments of audit.log_event.
func (e Event) args() ([]any, error) {
	if !actionPattern.MatchString(e.Action) {
		return nil, fmt.Errorf("%w: action %q must be an upper-case word like LOGIN or VIEW_PII", ErrInvalidEvent, e.Action)
	}
	if e.ResourceType == "" {
		return nil, fmt.Errorf("%w: resource type must not be empty", ErrInvalidEvent)
	}
	outcome := e.Outcome
	switch outcome {
	case "":
		outcome = Success
	case Success, Failure, Unauthorized:
	default:
		return nil, fmt.Errorf("%w: outcome %q must be SUCCESS, FAILURE or UNAUTHORIZED", ErrInvalidEvent, outcome)
	}
	var resourceID, details any
	if e.ResourceID != "" {
		resourceID = settingValue(e.ResourceID)
	}
	if e.Details != nil {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return nil, fmt.Errorf("%w: encode details: %v", ErrInvalidEvent, err)
		}
		if string(b) != "null" {
			details = string(jsonWithoutNUL(b))
		}
	}
	return []any{e.Action, settingValue(e.ResourceType), resourceID, string(outcome), details}, nil
}

// jsonWithoutNUL replaces the escape \u0000 in JSON strings, which jsonb refuses (and with it the
// caller's transaction), by U+FFFD. b is encoding/json output: a backslash only starts an escape.
func jsonWithoutNUL(b []byte) []byte {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+5 < len(b) && string(b[i+1:i+6]) == "u0000" {
			copy(b[i+2:i+6], "fffd")
		}
		i++ // skip the escaped character, which may be a backslash
	}
	return b
}
