// Package pgtrail holds the types every part of pgtrail shares: the audit event as it is stored in
// audit.events and archived, and the canonical encoding its hash chain is computed over.
//
// The subpackages do the work: sql (schema migrations), cdc (logical replication → events),
// archive (events → Parquet → sink), verify (chain and digest checks).
package pgtrail

import (
	"time"
)

// Event is one sealed row of audit.events: a captured DML change, an application event or a DDL
// command, with its place in the hash chain. Pointer fields are nullable columns.
type Event struct {
	Seq             int64     // position in the chain, 1-based, no gaps
	EventID         string    // uuid, lowercase hyphenated
	OccurredAt      time.Time // microsecond precision
	TxID            uint64    // top-level transaction id (xid8) that wrote the event
	ActionType      string    // CREATE, UPDATE, DELETE, LOGIN, FAILED_LOGIN, EXPORT, DDL, ...
	ResourceType    string    // table name (schema.table) for DML, caller-chosen otherwise
	ResourceID      *string   // primary key value(s) for DML
	Outcome         string    // SUCCESS, FAILURE or UNAUTHORIZED
	ActorID         string    // pgtrail.actor_id, or the database user when unset
	ActorIP         *string   // pgtrail.actor_ip when it parses as inet, in PostgreSQL's inet text form
	ActorIPRaw      *string   // pgtrail.actor_ip as given, when it did not parse
	ActorUserAgent  *string   // pgtrail.user_agent
	RequestID       *string   // pgtrail.request_id
	TenantID        *string   // pgtrail.tenant_id
	DBUser          string    // session_user of the writing connection
	ApplicationName *string   // application_name of the writing connection
	ClientAddr      *string   // inet_client_addr() of the writing connection
	ChangedColumns  []string  // columns whose value differs between before and after state
	BeforeState     *string   // jsonb text, as PostgreSQL prints it
	AfterState      *string   // jsonb text, as PostgreSQL prints it
	Details         *string   // jsonb text for application and DDL events
	PrevHash        []byte    // entry hash of Seq-1 (32 zero bytes for Seq 1)
	EntryHash       []byte    // SHA-256(PrevHash ‖ Canonical)
}
