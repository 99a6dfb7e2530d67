package chain

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgtrail/pgtrail"
)

// eventsQuery reads entries in chain order with every field in the form the canonical encoding
// uses (pgtrail.Columns).
var eventsQuery = "SELECT " + pgtrail.SelectList(true) + " FROM audit.events WHERE seq BETWEEN $1 AND $2 ORDER BY seq, occurred_at"

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
	scan := pgtrail.NewRowScanner()
	for rows.Next() {
		if err := rows.Scan(scan.Targets()...); err != nil {
			return fmt.Errorf("read audit.events: %w", err)
		}
		e, err := scan.Event()
		if err != nil {
			return fmt.Errorf("read audit.events: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read audit.events: %w", err)
	}
	return nil
}
