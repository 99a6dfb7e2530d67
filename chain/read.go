package chain

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail"
)

// eventsQuery reads entries in chain order with every field in the form the canonical encoding
// uses: inet through its output function, jsonb as text.
const eventsQuery = `
SELECT seq, event_id::text, occurred_at, txid::text, action_type, resource_type, resource_id, outcome,
       actor_id, CASE WHEN actor_ip IS NOT NULL THEN format('%s', actor_ip) END, actor_ip_raw,
       actor_user_agent, request_id, tenant_id, db_user, application_name,
       CASE WHEN client_addr IS NOT NULL THEN format('%s', client_addr) END,
       changed_columns, before_state::text, after_state::text, details::text, prev_hash, entry_hash
  FROM audit.events WHERE seq BETWEEN $1 AND $2 ORDER BY seq, occurred_at`

// Reader is what Read needs from a connection or pool.
type Reader interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Read calls fn for every entry of audit.events with from <= seq <= to, in chain order,
// streaming: memory stays flat however long the trail is. The event passed to fn is reused
// between calls; copy what must outlive the call.
func Read(ctx context.Context, db Reader, from, to int64, fn func(*pgtrail.Event) error) error {
	rows, err := db.Query(ctx, eventsQuery, from, to)
	if err != nil {
		return fmt.Errorf("read audit.events: %w", err)
	}
	defer rows.Close()
	var e pgtrail.Event
	var txid string
	for rows.Next() {
		e = pgtrail.Event{}
		if err := rows.Scan(&e.Seq, &e.EventID, &e.OccurredAt, &txid, &e.ActionType, &e.ResourceType,
			&e.ResourceID, &e.Outcome, &e.ActorID, &e.ActorIP, &e.ActorIPRaw, &e.ActorUserAgent,
			&e.RequestID, &e.TenantID, &e.DBUser, &e.ApplicationName, &e.ClientAddr, &e.ChangedColumns,
			&e.BeforeState, &e.AfterState, &e.Details, &e.PrevHash, &e.EntryHash); err != nil {
			return fmt.Errorf("read audit.events: %w", err)
		}
		if e.TxID, err = strconv.ParseUint(txid, 10, 64); err != nil {
			return fmt.Errorf("read audit.events seq %d: bad txid %q: %w", e.Seq, txid, err)
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read audit.events: %w", err)
	}
	return nil
}
