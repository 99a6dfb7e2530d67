// Package search answers the everyday investigation questions — what did this actor do, who
// touched this record, which logins failed — against the database (audit.events, or
// audit.events_masked for readers without access to the unmasked trail) and against the Parquet
// archive, with the same filter and the same results.
package search

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/archive"
)

// NoTenant as Filter.Tenant selects events without a tenant_id, as the archive's tenant=_none
// partition and Athena's tenant = '_none' do.
const NoTenant = archive.TenantNone

// Filter selects audit events. Zero fields select everything; set fields must all match.
type Filter struct {
	// Actor is the actor_id.
	Actor string `json:"actor,omitempty"`
	// ResourceType and ResourceID: the table (schema.table) and primary key for row changes, the
	// caller's pair for application events. ResourceID needs ResourceType.
	ResourceType string  `json:"resource_type,omitempty"`
	ResourceID   *string `json:"resource_id,omitempty"`
	// Actions: any of these action types.
	Actions []string `json:"actions,omitempty"`
	// Outcome: SUCCESS, FAILURE or UNAUTHORIZED.
	Outcome string `json:"outcome,omitempty"`
	// Tenant is the tenant_id; NoTenant selects events without one.
	Tenant *string `json:"tenant,omitempty"`
	// Since (inclusive) and Until (exclusive) bound occurred_at.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Limit caps the number of events returned; 0 returns all.
	Limit int `json:"limit,omitempty"`
	// NewestFirst orders by occurred_at descending instead of ascending (seq breaks ties).
	NewestFirst bool `json:"newest_first,omitempty"`
	// IncludeUnverified (archive searches) also reads data files no digest covers, and files
	// without checking their SHA-256 against their digest.
	IncludeUnverified bool `json:"include_unverified,omitempty"`
}

var outcomes = []string{"SUCCESS", "FAILURE", "UNAUTHORIZED"}

// Normalize upper-cases action types and the outcome, drops empty and repeated action types,
// and returns the first problem found.
func (f *Filter) Normalize() error {
	var actions []string
	for _, a := range f.Actions {
		a = strings.ToUpper(strings.TrimSpace(a))
		if a != "" && !slices.Contains(actions, a) {
			actions = append(actions, a)
		}
	}
	f.Actions = actions
	f.Outcome = strings.ToUpper(strings.TrimSpace(f.Outcome))
	switch {
	case f.Outcome != "" && !slices.Contains(outcomes, f.Outcome):
		return fmt.Errorf("outcome %q: want SUCCESS, FAILURE or UNAUTHORIZED", f.Outcome)
	case f.ResourceID != nil && f.ResourceType == "":
		return errors.New("a resource id needs a resource type (TYPE:ID)")
	case !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until):
		return fmt.Errorf("since (%s) must be before until (%s)", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	case f.Limit < 0:
		return errors.New("limit must not be negative")
	}
	return nil
}

// ParseResource splits "TYPE[:ID]" at its first colon: "public.users:42" is type public.users, id
// 42; "customer" is a type alone. A type containing a colon cannot be given this way.
func ParseResource(s string) (typ string, id *string) {
	typ, rest, found := strings.Cut(s, ":")
	if !found {
		return s, nil
	}
	return typ, &rest
}

// Match reports whether e passes f (all but Limit).
func (f *Filter) Match(e *pgtrail.Event) bool {
	switch {
	case f.Actor != "" && e.ActorID != f.Actor:
		return false
	case f.ResourceType != "" && e.ResourceType != f.ResourceType:
		return false
	case f.ResourceID != nil && (e.ResourceID == nil || *e.ResourceID != *f.ResourceID):
		return false
	case len(f.Actions) > 0 && !slices.Contains(f.Actions, e.ActionType):
		return false
	case f.Outcome != "" && e.Outcome != f.Outcome:
		return false
	case !f.Since.IsZero() && e.OccurredAt.Before(f.Since):
		return false
	case !f.Until.IsZero() && !e.OccurredAt.Before(f.Until):
		return false
	}
	if f.Tenant != nil {
		if *f.Tenant == NoTenant {
			return e.TenantID == nil
		}
		return e.TenantID != nil && *e.TenantID == *f.Tenant
	}
	return true
}

// less orders events as results are ordered: by occurred_at, then seq.
func less(a, b *pgtrail.Event, newestFirst bool) int {
	c := a.OccurredAt.Compare(b.OccurredAt)
	if c == 0 {
		c = compareInt(a.Seq, b.Seq)
	}
	if newestFirst {
		return -c
	}
	return c
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Result is what a search found.
type Result struct {
	// Source is "database" or the archive URL.
	Source string `json:"source"`
	// Masked: the events come from audit.events_masked (PII and addresses masked, no hashes).
	Masked bool `json:"masked"`
	// Truncated: more events matched than Filter.Limit.
	Truncated bool `json:"truncated"`
	// Unverified are the archive's data files skipped because no digest covers them (an upload
	// in progress, or a file someone added): Filter.IncludeUnverified reads them.
	Unverified []string        `json:"unverified_files,omitempty"`
	Events     []pgtrail.Event `json:"-"`
}
