// Package alert evaluates real-time alert rules on the events the stream daemon archives and
// sends the alerts to webhooks.
//
// The pieces: Parse/Load read a rules file (Config); an Engine evaluates rules on events, pure
// and single-threaded, with sliding windows by occurred_at and a cooldown per rule and key; an
// Observer (a cdc.Observer) feeds the Engine from the stream and delivers each alert on
// background workers — to every webhook of its rule, and as an ALERT event into the trail
// itself. See docs/alerts.md.
package alert

import (
	"time"

	"github.com/pgtrail/pgtrail"
)

// ActionAlert is the action_type of the audit events that record alerts. Events of this type are
// never evaluated, so an alert cannot trigger another one.
const ActionAlert = "ALERT"

// Alert is one firing of a rule, as webhooks receive it (JSON) and as the ALERT event records it
// (details).
type Alert struct {
	// Rule is the rule's name.
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	// Key is what the rule grouped by, e.g. "ip:203.0.113.7"; one alert per rule and key per
	// cooldown.
	Key     string `json:"key"`
	Summary string `json:"summary"`
	// Events are the events that made the rule fire (for brute_force, those in the window);
	// empty for tampering seen only in the WAL.
	Events []EventRef `json:"events"`
	// FirstSeq and LastSeq are the lowest and highest seq of Events; for tampering seen in the WAL, the affected entry when
	// known (else 0).
	FirstSeq int64 `json:"first_seq"`
	LastSeq  int64 `json:"last_seq"`
	// FiredAt is when the daemon raised the alert (its clock, not the events').
	FiredAt time.Time `json:"fired_at"`

	id string // sent as X-Pgtrail-Alert-Id, the same on every retry
}

// EventRef is the part of an event an alert carries.
type EventRef struct {
	Seq          int64     `json:"seq"`
	EventID      string    `json:"event_id"`
	OccurredAt   time.Time `json:"occurred_at"`
	ActorID      string    `json:"actor_id"`
	ActorIP      *string   `json:"actor_ip"` // actor_ip, else actor_ip_raw
	ActionType   string    `json:"action_type"`
	ResourceType string    `json:"resource_type"`
	ResourceID   *string   `json:"resource_id"`
}

func refOf(e *pgtrail.Event) EventRef {
	ip := e.ActorIP
	if ip == nil {
		ip = e.ActorIPRaw
	}
	return EventRef{Seq: e.Seq, EventID: e.EventID, OccurredAt: e.OccurredAt, ActorID: e.ActorID, ActorIP: ip,
		ActionType: e.ActionType, ResourceType: e.ResourceType, ResourceID: e.ResourceID}
}
